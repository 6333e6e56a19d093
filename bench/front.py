"""The accuracy–smoothness trade-off front of a tuned family, and where each other method sits against it.

A *family* is a method tuned by a weight (VoxelMorph trained at a grid of λ, HyperMorph's test-time λ curve): each
member is a point (smoothness cost, accuracy) — by default (SDlogJ, Dice), SDlogJ lower is smoother, Dice higher is
better. The family's **front** is its non-dominated set: the points no other member beats on both axes. Between
two front points the front is linear; past its roughest point it is flat (more roughness buys nothing the family
reached); smoother than its smoothest point it is undefined (no λ reached that smoothness).

For any other method (a hyper-parameter-free one: GSMorph, GS-PCGrad, GS-Agr, VoxelMorph-diff) two verdicts:

- **dominated**: some family member is at least as smooth and at least as accurate, and better on one;
- **gap**: its accuracy minus the front's at its smoothness (Dice points × 100 in tables): negative is the
  accuracy tuning λ would have added at equal smoothness; positive lies beyond the front. With several seeds the
  gap is taken per seed against the front of the family's seed means, and its confidence interval is Student's t
  over the seeds (NaN with one seed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


def non_dominated(cost: Sequence[float], score: Sequence[float]) -> np.ndarray:
    """Which points no other point dominates (lower-or-equal cost and higher-or-equal score, one strictly)."""
    c, s = np.asarray(cost, float), np.asarray(score, float)
    keep = np.ones(len(c), bool)
    for i in range(len(c)):
        better = (c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))
        keep[i] = not better.any()
    return keep


@dataclass(frozen=True)
class Front:
    """A family's non-dominated points, by increasing cost (and so increasing score)."""

    cost: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, cost: Sequence[float], score: Sequence[float]) -> Front:
        c, s = np.asarray(cost, float), np.asarray(score, float)
        finite = np.isfinite(c) & np.isfinite(s)
        c, s = c[finite], s[finite]
        if not len(c):
            raise ValueError("a front needs at least one point with a finite cost and score")
        keep = non_dominated(c, s)
        order = np.lexsort((s[keep], c[keep]))
        cost_sorted, score_sorted = c[keep][order], s[keep][order]
        _, first = np.unique(cost_sorted, return_index=True)  # equal costs: non-dominated means equal scores too
        return cls(cost_sorted[first], score_sorted[first])

    def score_at(self, cost: float) -> float:
        """The front's score at ``cost``: linear between its points, flat past the roughest, NaN smoother than the
        smoothest."""
        if cost < self.cost[0]:
            return float("nan")
        if cost >= self.cost[-1]:
            return float(self.score[-1])
        return float(np.interp(cost, self.cost, self.score))

    def dominates(self, cost: float, score: float) -> bool:
        """Whether some front point is at least as good on both axes and better on one."""
        return bool(np.any((self.cost <= cost) & (self.score >= score) & ((self.cost < cost) | (self.score > score))))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student's t confidence interval of the mean of ``values`` (NaN, NaN with fewer than two)."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean() - half), float(v.mean() + half)


def front_verdicts(points: pd.DataFrame, family: Collection[str], cost: str = "sdlogj", score: str = "dice") -> tuple[Front, pd.DataFrame]:
    """The family's front and each method's verdict.

    ``points``: one row per (method, seed) with the mean ``cost`` and ``score`` over the test pairs (a column
    ``seed``; one row per method where it was trained once). The front is drawn through the family's methods'
    seed means. Returns one row per method: n_seeds, the seed means, ``in_family``, ``on_front`` (family members
    on it), ``dominated`` (of the seed means), ``gap`` (mean over seeds of score − front score at that seed's
    cost), ``gap_seeds`` (the seeds it is over: a seed smoother than the front's smoothest point has none),
    ``gap_low``/``gap_high`` (t interval over those seeds)."""
    means = points.groupby("method", sort=False)[[cost, score]].mean()
    members = [m for m in means.index if m in set(family)]
    if not members:
        raise ValueError(f"no member of the family ({', '.join(sorted(family))}) among the points")
    front = Front.of(means.loc[members, cost], means.loc[members, score])
    rows = []
    for method, mean in means.iterrows():
        seeds = points[points["method"] == method]
        gaps = [s - front.score_at(c) for c, s in zip(seeds[cost], seeds[score])]
        low, high = t_interval(gaps)
        in_family = method in set(family)
        on_front = in_family and bool(np.any((front.cost == mean[cost]) & (front.score == mean[score])))
        rows.append(
            {
                "method": method,
                "n_seeds": len(seeds),
                cost: float(mean[cost]),
                score: float(mean[score]),
                "in_family": in_family,
                "on_front": on_front,
                "dominated": front.dominates(float(mean[cost]), float(mean[score])),
                "gap": float(np.nanmean(gaps)) if np.isfinite(gaps).any() else float("nan"),
                "gap_seeds": int(np.isfinite(gaps).sum()),
                "gap_low": low,
                "gap_high": high,
            }
        )
    return front, pd.DataFrame(rows)


def _mean_points(rows: pd.DataFrame, key: Sequence[str], cost: str, score: str) -> pd.DataFrame:
    return rows.groupby(list(key), dropna=False, sort=False)[[cost, score]].mean().reset_index()


def tradeoff_frame(
    per_case: pd.DataFrame,
    sweeps: pd.DataFrame,
    families: Mapping[str, Sequence[str]],
    sweep_columns: Mapping[str, str],
    cost: str = "sdlogj",
    score: str = "dice",
) -> pd.DataFrame:
    """Every method placed against every front of its dataset: each declared family with two or more members in
    the run (the VoxelMorph λ variants), and each method's sweep curve with two or more values (HyperMorph's
    test-time λ; its points named ``METHOD COLUMN=VALUE``). One row per (dataset, front, method outside the front)
    with :func:`front_verdicts`' columns; the scored cases only, each method's seeds its points."""
    if per_case.empty or cost not in per_case or score not in per_case:
        return pd.DataFrame()
    ok = per_case[per_case["status"] == "ok"].copy()
    ok["seed"] = ok["seed"] if "seed" in ok else pd.NA
    rows = []
    for dataset, data in ok.groupby("dataset", sort=False):
        points = _mean_points(data, ["method", "seed"], cost, score)
        fronts: dict[str, tuple[pd.DataFrame, set[str]]] = {}
        for label, members in families.items():
            present = [m for m in members if m in set(points["method"])]
            if len(present) > 1:
                fronts[label] = (points, set(present))
        sweep = sweeps[sweeps["dataset"] == dataset] if len(sweeps) and "dataset" in sweeps else pd.DataFrame()
        for method, curve in sweep.groupby("method", sort=False) if len(sweep) else []:
            column = sweep_columns.get(str(method), "lam")
            if column not in curve or curve[column].nunique() < 2 or cost not in curve:
                continue
            curve = curve.assign(seed=curve["seed"] if "seed" in curve else pd.NA)
            curve_points = _mean_points(curve, [column, "seed"], cost, score)
            curve_points["method"] = [f"{method} {column}={value:g}" for value in curve_points[column]]
            others = points[points["method"] != method]
            fronts[f"{method} {column} sweep"] = (pd.concat([others, curve_points[others.columns]], ignore_index=True), set(curve_points["method"]))
        for label, (table, family) in fronts.items():
            _, verdicts = front_verdicts(table, family, cost, score)
            outside = verdicts[~verdicts["in_family"]].drop(columns=["in_family", "on_front"])
            rows.append(outside.assign(dataset=dataset, front=label))
    if not rows:
        return pd.DataFrame()
    frame = pd.concat(rows, ignore_index=True)
    return frame[["dataset", "front", *[c for c in frame.columns if c not in ("dataset", "front")]]]


TRADEOFF_HEADERS = ["Front", "Method", "Seeds", "{cost}", "Dice (%)", "Dominated", "Gap (Dice points)", "95 % CI over seeds"]


def _tradeoff_cells(frame: pd.DataFrame, method_name: Callable[[str], str]) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        front = str(row["front"])
        if front.endswith(" sweep"):  # "METHOD COLUMN sweep": the method by its display name
            method, column, _ = front.rsplit(" ", 2)
            front = f"{method_name(method)} {column} sweep"
        gap = "–" if np.isnan(row["gap"]) else f"{100 * row['gap']:+.2f}"
        if 0 < row["gap_seeds"] < row["n_seeds"]:  # some seeds smoother than the front reaches
            gap += f" ({row['gap_seeds']} of {row['n_seeds']} seeds)"
        interval = "–" if np.isnan(row["gap_low"]) else f"[{100 * row['gap_low']:+.2f}, {100 * row['gap_high']:+.2f}]"
        rows.append(
            [
                front,
                method_name(str(row["method"])),
                str(row["n_seeds"]),
                f"{row['sdlogj']:.3f}",
                f"{100 * row['dice']:.2f}",
                "yes" if row["dominated"] else "no",
                gap,
                interval,
            ]
        )
    return rows


def tradeoff_caption(cost_label: str = "SDlogJ") -> str:
    return (
        f"Each method against each front of tuned λ (the non-dominated points of a λ family on {cost_label} against Dice; "
        "linear between points, flat past the roughest, undefined smoother than the smoothest): Dominated, some λ is at "
        f"least as smooth and as accurate; Gap, the method's Dice minus the front's at its {cost_label}, per seed, mean "
        "(negative: what tuning λ adds at equal smoothness; a seed smoother than the front's smoothest point has none, "
        "and the seeds it is over are counted when fewer than all); CI: Student's t over those seeds (– with one)."
    )


def tradeoff_markdown(frame: pd.DataFrame, method_name: Callable[[str], str], cost_label: str = "SDlogJ") -> str:
    """The trade-off table: each method against each front, gap in Dice points with its seed interval."""
    from .tables import markdown_table

    headers = [h.format(cost=cost_label) for h in TRADEOFF_HEADERS]
    return markdown_table(headers, _tradeoff_cells(frame, method_name)) + f"\n\n{tradeoff_caption(cost_label)}\n"


def tradeoff_latex(frame: pd.DataFrame, method_name: Callable[[str], str], label: str = "tab:tradeoff", cost_label: str = "SDlogJ") -> str:
    """The trade-off table in LaTeX (booktabs)."""
    from .tables import booktabs_table

    headers = [h.format(cost=cost_label) for h in TRADEOFF_HEADERS]
    return booktabs_table(headers, _tradeoff_cells(frame, method_name), tradeoff_caption(cost_label), label, "llrrrlrl")
