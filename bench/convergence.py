"""Did a deep method's training converge? A verdict read from its ``history.csv``, so that no table ranks
under-trained models as if they were finished.

The rule (``CONVERGENCE_RULE``): compare the mean validation Dice of the last quarter of training with that of
the quarter before it (epochs in (3E/4, E] and (E/2, 3E/4] for E epochs). Training is still improving, i.e. has
not converged, when the gain exceeds both ``tolerance`` (0.5 Dice points) and two standard errors of the
difference of the two means (Welch: sqrt(s3²/n3 + s4²/n4)), so that a curve that only scatters around a level
(GS-Agr's noisy updates) is not taken for a rising one. A run with fewer than ``min_points`` (5) validation points
in either quarter cannot be judged and counts as not converged (smoke's 2 epochs, quick's 10). A
falling validation Dice also counts as converged: the model no longer improves, whatever else it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .rundir import RunDir


@dataclass(frozen=True)
class ConvergenceRule:
    metric: str = "val_dice"
    tolerance: float = 0.005  # Dice as a fraction: 0.5 points
    # Validation points needed in each of the last two quarters: fewer cannot show a plateau (and two standard
    # errors of 2-3 points are so wide that a still-rising curve would pass).
    min_points: int = 5

    def describe(self) -> str:
        return (
            f"validation Dice still rising from the third to the last quarter of training, by more than "
            f"{100 * self.tolerance:.1f} points and more than two standard errors"
        )


CONVERGENCE_RULE = ConvergenceRule()


@dataclass(frozen=True)
class Verdict:
    converged: bool
    epochs: int
    train_seconds: float
    gain: float | None  # last-quarter minus third-quarter mean of the metric, or None when not judged
    reason: str

    def as_columns(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "epochs": self.epochs,
            "train_minutes": self.train_seconds / 60.0,
            "convergence_gain": math.nan if self.gain is None else self.gain,
        }


def judge(history: pd.DataFrame, rule: ConvergenceRule = CONVERGENCE_RULE) -> Verdict:
    """The verdict for one training history (``epoch``, ``seconds`` and the rule's metric per epoch)."""
    if history.empty or "epoch" not in history:
        return Verdict(False, 0, 0.0, None, "no training history")
    epochs = int(history["epoch"].max())
    seconds = float(pd.to_numeric(history.get("seconds", pd.Series(dtype=float)), errors="coerce").sum())
    points = history[["epoch", rule.metric]].dropna() if rule.metric in history else history.iloc[0:0][["epoch"]]
    third = points[(points["epoch"] > epochs / 2) & (points["epoch"] <= 3 * epochs / 4)]
    last = points[points["epoch"] > 3 * epochs / 4]
    if len(third) < rule.min_points or len(last) < rule.min_points:
        return Verdict(
            False,
            epochs,
            seconds,
            None,
            f"{epochs} epochs with {len(points)} validation point(s): too few to judge (needs {rule.min_points} in each of the last two quarters)",
        )
    gain = float(last[rule.metric].mean() - third[rule.metric].mean())
    noise = 2.0 * math.sqrt(third[rule.metric].var(ddof=1) / len(third) + last[rule.metric].var(ddof=1) / len(last))
    threshold = max(rule.tolerance, noise)
    converged = gain <= threshold
    return Verdict(
        converged,
        epochs,
        seconds,
        gain,
        f"validation Dice {gain * 100:+.2f} points from the third to the last quarter of {epochs} epochs "
        f"({'within' if converged else 'above'} the threshold {threshold * 100:.2f}: the larger of "
        f"{rule.tolerance * 100:.1f} and two standard errors)",
    )


def run_verdicts(run_dir: Path, rule: ConvergenceRule = CONVERGENCE_RULE) -> dict[str, Verdict]:
    """Per method of a run directory: its verdict; with several training seeds, converged only if every seed
    converged, epochs of the longest and training time summed (the reason names the worst seed)."""
    by_method: dict[str, list[tuple[int | None, Verdict]]] = {}
    for (method, seed), path in RunDir(run_dir).history_files().items():
        try:
            history = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            history = pd.DataFrame()
        by_method.setdefault(method, []).append((seed, judge(history, rule)))
    return {method: combine([(f"seed {seed}", v) for seed, v in verdicts], "seeds") for method, verdicts in by_method.items()}


def combine(labelled: list[tuple[str, Verdict]], what: str) -> Verdict:
    """One verdict over several trainings (seeds, datasets): converged only if all converged, epochs of the
    longest, training time summed; the reason names the worst one (``what``: the kind counted)."""
    if len(labelled) == 1:
        return labelled[0][1]
    label, worst = max(labelled, key=lambda lv: (not lv[1].converged, lv[1].gain if lv[1].gain is not None else math.inf))
    verdicts = [v for _, v in labelled]
    return Verdict(
        all(v.converged for v in verdicts),
        max(v.epochs for v in verdicts),
        sum(v.train_seconds for v in verdicts),
        worst.gain,
        f"{sum(v.converged for v in verdicts)}/{len(verdicts)} {what} converged; {label}: {worst.reason}",
    )
