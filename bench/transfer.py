"""Carrying a tuned λ from one dataset to another, against the methods that need no λ.

A λ family (methods that differ only by a weight and declare it, e.g. ``voxelmorph.<λ>``) is tuned on a *source*
run by one stated rule on its **validation** split — never on the pairs it is scored on: each member's last
validated epoch (the validation Dice and NJD its training recorded, averaged over its training seeds), and the
member with the best validation Dice among those whose validation NJD is within a folding budget (none within it:
the member that folds least, said). The tuned λ is then read in a *target* run that trained the same family, and
set beside, on the target's scored (test) pairs:

- the λ tuned on the target's own validation split (what tuning in-domain reaches), and
- every other trained method of the target ("other method": the hyper-parameter-free ones, GSMorph, GS-PCGrad,
  GS-Agr, VoxelMorph-diff; and HyperMorph, at the test-time λ it chose on the target's own validation split).

Each row is the mean over the method's training seeds of its per-seed mean over the scored pairs, with Student's t
interval over seeds; ΔDice is its mean minus the transferred λ's, with Welch's interval over the two sets of seed
means (NaN with fewer than two seeds on either side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DEFAULT_NJD_BUDGET
from .convergence import run_verdicts
from .errors import DataError
from .front import t_interval
from .naming import Names
from .rundir import RunDir, read_manifest_for_report
from .tables import booktabs_table, markdown_table


@dataclass(frozen=True)
class TuningRule:
    """Best validation Dice among the members whose validation NJD (%) is at most ``njd_budget``."""

    njd_budget: float = DEFAULT_NJD_BUDGET

    def describe(self) -> str:
        return (
            f"best validation Dice among the λ whose validation NJD ≤ {self.njd_budget:g} % (last validated epoch, "
            "mean over training seeds; none within the budget: the λ that folds least)"
        )


@dataclass(frozen=True)
class Tuned:
    """A family tuned on one run: the chosen member, its value, and every candidate the rule weighed."""

    run: Path
    family: str
    method: str
    value: float
    within_budget: bool
    candidates: pd.DataFrame  # method, value, n_seeds, val_dice, val_njd, within_budget


def validation_points(run_dir: Path) -> pd.DataFrame:
    """One row per trained (method, seed) of a run: the last validated epoch's Dice and NJD."""
    rows = []
    for (method, seed), path in RunDir(run_dir).history_files().items():
        try:
            history = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{path} cannot be read ({exc}): its training's validation is needed to tune λ") from None
        validated = history.dropna(subset=["val_dice"]) if "val_dice" in history else history.iloc[0:0]
        if validated.empty:
            continue
        last = validated.iloc[-1]
        rows.append(
            {"method": method, "seed": seed, "epoch": int(last["epoch"]), "val_dice": float(last["val_dice"]), "val_njd": float(last.get("val_njd", np.nan))}
        )
    return pd.DataFrame(rows, columns=["method", "seed", "epoch", "val_dice", "val_njd"])


def _names(run_dir: Path) -> Names:
    return Names.from_manifests([read_manifest_for_report(run_dir, [])])


def tune(run_dir: Path, rule: TuningRule = TuningRule(), family: str | None = None) -> Tuned:
    """The member of ``family`` (default: the run's largest λ family) that ``rule`` chooses on the run's validation
    split. A run without a validated family of two or more members is one DataError naming it."""
    run_dir = Path(run_dir)
    points = validation_points(run_dir)
    names = _names(run_dir)
    families = names.family_members(list(dict.fromkeys(points["method"])))
    families = {label: members for label, members in families.items() if len(members) > 1}
    if family is None:
        if not families:
            raise DataError(
                f"{run_dir} has no λ family of two or more validated trainings to tune (e.g. --methods voxelmorph.1e-3,voxelmorph.1e-2 "
                "with validation, as the tradeoff profile runs)"
            )
        family = max(families, key=lambda label: len(families[label]))
    elif family not in families:
        raise DataError(f"{run_dir} has no validated trainings of the λ family {family!r} to tune (it has: {', '.join(families) or 'none'})")
    members = families[family]
    mine = points[points["method"].isin(members)]
    candidates = (
        mine.groupby("method", sort=False)
        .agg(n_seeds=("val_dice", "size"), val_dice=("val_dice", "mean"), val_njd=("val_njd", "mean"))
        .reindex(members)
        .reset_index()
    )
    candidates.insert(1, "value", [names.families[m][1] for m in members])
    candidates["within_budget"] = candidates["val_njd"] <= rule.njd_budget
    if candidates["within_budget"].any():
        chosen = candidates[candidates["within_budget"]].sort_values(["val_dice", "value"], ascending=[False, True]).iloc[0]
    else:
        chosen = candidates.sort_values(["val_njd", "value"]).iloc[0]
    return Tuned(run_dir, family, str(chosen["method"]), float(chosen["value"]), bool(chosen["within_budget"]), candidates)


def _seed_means(run_dir: Path) -> pd.DataFrame:
    """Per (method, seed): the mean Dice, NJD and SDlogJ over the run's scored pairs."""
    from .report import load_per_case

    per_case = load_per_case(run_dir, [])
    ok = per_case[per_case["status"] == "ok"].copy()
    ok["seed"] = ok["seed"].fillna(-1) if "seed" in ok else -1
    columns = [c for c in ("dice", "njd", "sdlogj") if c in ok]
    means = ok.groupby(["method", "seed"], sort=False)[columns].mean().reset_index()
    counts = ok.groupby(["method", "seed"], sort=False).size().rename("n_pairs").reset_index()
    return means.merge(counts, on=["method", "seed"])


def _welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    interval = result.confidence_interval(level)
    return float(interval.low), float(interval.high)


def run_label(run: Path, other: Path) -> str:
    """How tables name a run: its folder's name, or its path where both runs' folders share a name."""
    return run.name if run.name != other.name else str(run)


def transfer_frame(source: Path, target: Path, rule: TuningRule = TuningRule(), tuned_runs: Mapping[Path, Tuned] | None = None) -> pd.DataFrame:
    """The rows of one direction, source → target (module docstring): the transferred λ first, then the λ tuned
    on the target, then every other trained method of the target. ``tuned_runs``: runs already tuned by ``rule``
    (their largest family), so that both directions tune each run once."""
    source, target = Path(source), Path(target)
    source_name, target_name = run_label(source, target), run_label(target, source)
    known = tuned_runs or {}
    tuned = known.get(source) or tune(source, rule)
    in_domain = known.get(target)
    if in_domain is None or in_domain.family != tuned.family:
        in_domain = tune(target, rule, family=tuned.family)
    target_members = dict(zip(in_domain.candidates["method"], in_domain.candidates["value"]))
    transferred = [m for m, v in target_members.items() if np.isclose(v, tuned.value, rtol=1e-9, atol=0.0)]
    if not transferred:
        raise DataError(
            f"{target} did not train λ = {tuned.value:g} (tuned on {source}); its {tuned.family!r} has "
            f"{', '.join(f'{v:g}' for v in target_members.values())}: train the same grid on both"
        )
    seeds = _seed_means(target)
    trained = {method for method, _ in RunDir(target).history_files()}
    others = [m for m in dict.fromkeys(seeds["method"]) if m in trained and m not in target_members]
    roles = [(transferred[0], f"λ tuned on {source_name}"), (in_domain.method, f"λ tuned on {target_name}")] + [(m, "other method") for m in others]
    base = seeds[seeds["method"] == transferred[0]]["dice"].to_numpy()
    names = _names(target)
    verdicts = run_verdicts(target)
    rows = []
    for index, (method, role) in enumerate(roles):
        mine = seeds[seeds["method"] == method]
        dice = mine["dice"].to_numpy()
        low, high = t_interval(dice)
        delta_low, delta_high = _welch(dice, base)
        njd = float(mine["njd"].mean()) if "njd" in mine else float("nan")
        rows.append(
            {
                "source": source_name,
                "target": target_name,
                "role": role,
                "transferred": index == 0,
                "method": method,
                "display_name": names.method(method),
                "lam": target_members.get(method, np.nan),
                "n_seeds": len(mine),
                "n_pairs": int(mine["n_pairs"].min()) if len(mine) else 0,
                "dice": float(np.mean(dice)) if len(dice) else float("nan"),
                "dice_low": low,
                "dice_high": high,
                "njd": njd,
                "sdlogj": float(mine["sdlogj"].mean()) if "sdlogj" in mine else float("nan"),
                "within_budget": bool(njd <= rule.njd_budget),
                "delta_dice": float(np.mean(dice) - np.mean(base)) if len(dice) and len(base) else float("nan"),
                "delta_low": delta_low,
                "delta_high": delta_high,
                "converged": method in verdicts and verdicts[method].converged,
                "train_minutes": verdicts[method].train_seconds / 60.0 if method in verdicts else float("nan"),
                "tuned_on_source": tuned.method,
                "source_within_budget": tuned.within_budget,
            }
        )
    return pd.DataFrame(rows)


def _cells(frame: pd.DataFrame) -> list[list[str]]:
    out = []
    for _, row in frame.iterrows():
        first = bool(row["transferred"])
        interval = "–" if np.isnan(row["dice_low"]) else f"[{100 * row['dice_low']:.2f}, {100 * row['dice_high']:.2f}]"
        delta = "–" if first else f"{100 * row['delta_dice']:+.2f}"
        delta_interval = "–" if first or np.isnan(row["delta_low"]) else f"[{100 * row['delta_low']:+.2f}, {100 * row['delta_high']:+.2f}]"
        verdict = (
            "–"
            if first
            else ("one seed" if np.isnan(row["delta_low"]) else "better" if row["delta_low"] > 0 else "worse" if row["delta_high"] < 0 else "not separable")
        )
        out.append(
            [
                f"{row['source']} → {row['target']}",
                str(row["role"]),
                str(row["display_name"]) + ("" if row["converged"] else "‡"),
                str(row["n_seeds"]),
                f"{100 * row['dice']:.2f}",
                interval,
                f"{row['njd']:.3f}",
                f"{row['sdlogj']:.3f}",
                delta,
                delta_interval,
                verdict,
            ]
        )
    return out


HEADERS = ["Transfer", "Role", "Method", "Seeds", "Dice (%)", "95 % CI", "NJD (%)", "SDlogJ", "ΔDice vs transferred", "95 % CI (Welch)", "Verdict"]


def caption(rule: TuningRule) -> str:
    return (
        f"A λ tuned on one dataset carried to another. Tuning rule: {rule.describe()}. Rows: the transferred λ, the λ "
        "tuned on the target's own validation split, and each other trained method; Dice, NJD and SDlogJ on the target's "
        "scored pairs, mean over training seeds of each seed's mean over pairs, with Student's t interval over seeds; "
        "ΔDice, Dice points against the transferred λ, with Welch's interval over seed means; Verdict: better or worse "
        "when the interval excludes 0; ‡: training not converged by regbench's rule (or too short to judge), so not a ranking."
    )


def transfer_markdown(frame: pd.DataFrame, rule: TuningRule) -> str:
    return markdown_table(HEADERS, _cells(frame)) + f"\n\n{caption(rule)}\n"


def transfer_latex(frame: pd.DataFrame, rule: TuningRule, label: str = "tab:transfer") -> str:
    return booktabs_table(HEADERS, _cells(frame), caption(rule), label, "lll" + "r" * (len(HEADERS) - 4) + "l")


def tuning_markdown(tuned: Sequence[Tuned], rule: TuningRule) -> str:
    """The candidates each run's tuning weighed: λ, seeds, validation Dice and NJD, and which was chosen."""
    headers = ["Tuned on", "λ", "Seeds", "Validation Dice (%)", "Validation NJD (%)", "Within budget", "Chosen"]
    rows = []
    for t in tuned:
        other = next((u for u in tuned if u is not t), t)
        for _, row in t.candidates.iterrows():
            rows.append(
                [
                    run_label(t.run, other.run),
                    f"{row['value']:g}",
                    str(row["n_seeds"]),
                    f"{100 * row['val_dice']:.2f}",
                    f"{row['val_njd']:.3f}",
                    "yes" if row["within_budget"] else "no",
                    "**yes**" if row["method"] == t.method else "",
                ]
            )
    return markdown_table(headers, rows) + f"\n\nRule: {rule.describe()}.\n"


def write_transfer(run_a: Path, run_b: Path, rule: TuningRule = TuningRule(), out: Path | None = None) -> list[Path]:
    """Both directions, A → B and B → A: ``transfer.{md,csv,tex}`` and ``tuning.md`` in ``out`` (default
    RUN_B/report). Returns the written paths, the Markdown table first."""
    run_a, run_b = Path(run_a), Path(run_b)
    for run in (run_a, run_b):
        RunDir(run).require_per_case()
    if run_a.resolve() == run_b.resolve():
        raise DataError(f"RUN_A and RUN_B are the same run ({run_a}): a transfer needs two")
    tuned = [tune(run_a, rule), tune(run_b, rule)]
    known = {run_a: tuned[0], run_b: tuned[1]}
    frame = pd.concat([transfer_frame(run_a, run_b, rule, known), transfer_frame(run_b, run_a, rule, known)], ignore_index=True)
    out_dir = Path(out) if out is not None else RunDir(run_b).report
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("transfer.md", transfer_markdown(frame, rule)),
        ("transfer.csv", frame.to_csv(index=False)),
        ("transfer.tex", transfer_latex(frame, rule)),
        ("tuning.md", tuning_markdown(tuned, rule)),
    ):
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written
