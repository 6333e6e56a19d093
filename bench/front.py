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

The front is the family's **accuracy–regularity curve** (ARC; Sideri-Lampretsa, Rueckert and Qiu, arXiv
2503.07185, who draw Dice against a regularity measure over the λ range): the best accuracy tuning λ reaches at
each regularity. Its **area** (AUC-ARC, :func:`arc_area`) is taken over one regularity range common to the curves
compared (:func:`common_range`: from the roughest of their smoothest points to the smoothest of their roughest
points, over every seed's curve, so each spans it by its own points) and divided by the range's width: the mean
accuracy the family reaches across that range, in the score's units, as the mean of its seeds' areas. A curve
is never extended on its smooth side, where no λ reached; where the curves share no range, each is over its own
seeds' shared span and says so.
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


def common_range(fronts: Sequence[Front]) -> tuple[float, float]:
    """The regularity range every front spans by its own points: (the largest smoothest cost, the smallest
    roughest cost). NaN, NaN when there is no front or the ranges do not overlap in more than a point."""
    if not fronts:
        return float("nan"), float("nan")
    low, high = max(float(f.cost[0]) for f in fronts), min(float(f.cost[-1]) for f in fronts)
    return (low, high) if high > low else (float("nan"), float("nan"))


def arc_area(front: Front, low: float, high: float) -> float:
    """The area under ``front`` over the costs [low, high], divided by high − low: the front's mean score over
    that range (linear between its points, flat past its roughest as :meth:`Front.score_at`). NaN where the range
    is empty or not finite, or the front's smoothest point is rougher than ``low`` (it does not reach the start)."""
    from scipy.integrate import trapezoid

    if not (np.isfinite(low) and np.isfinite(high)) or high <= low or front.cost[0] > low:
        return float("nan")
    inside = front.cost[(front.cost > low) & (front.cost < high)]
    costs = np.concatenate([[low], inside, [high]])
    scores = np.array([front.score_at(c) for c in costs])
    return float(trapezoid(scores, costs) / (high - low))


def seed_band(fronts: Sequence[Front], n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spread of several seeds' fronts (ARCs): ``n`` costs from the smoothest start to the roughest end, and at
    each the lowest and highest score of the fronts defined there (NaN where fewer than two are)."""
    if not fronts:
        empty = np.array([], float)
        return empty, empty, empty
    grid = np.linspace(min(float(f.cost[0]) for f in fronts), max(float(f.cost[-1]) for f in fronts), n)
    scores = np.array([[f.score_at(c) for c in grid] for f in fronts])
    defined = np.isfinite(scores).sum(axis=0) >= 2
    with np.errstate(all="ignore"):
        low = np.where(defined, np.nanmin(np.where(np.isfinite(scores), scores, np.inf), axis=0), np.nan)
        high = np.where(defined, np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=0), np.nan)
    return grid, low, high


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
    rows = []
    for dataset, fronts in _fronts_by_dataset(per_case, sweeps, families, sweep_columns, cost, score):
        for label, (table, family) in fronts.items():
            _, verdicts = front_verdicts(table, family, cost, score)
            outside = verdicts[~verdicts["in_family"]].drop(columns=["in_family", "on_front"])
            rows.append(outside.assign(dataset=dataset, front=label))
    if not rows:
        return pd.DataFrame()
    frame = pd.concat(rows, ignore_index=True)
    return frame[["dataset", "front", *[c for c in frame.columns if c not in ("dataset", "front")]]]


def _fronts_by_dataset(
    per_case: pd.DataFrame, sweeps: pd.DataFrame, families: Mapping[str, Sequence[str]], sweep_columns: Mapping[str, str], cost: str, score: str
) -> list[tuple[str, dict[str, tuple[pd.DataFrame, set[str]]]]]:
    """Per dataset, each front's label → (every (method, seed) point of that dataset, the front's members): a
    declared family with two or more members in the run, a method's sweep curve with two or more values (its
    points named ``METHOD COLUMN=VALUE``, in place of the method's own)."""
    if per_case.empty or cost not in per_case or score not in per_case:
        return []
    ok = per_case[per_case["status"] == "ok"].copy()
    ok["seed"] = ok["seed"] if "seed" in ok else pd.NA
    out = []
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
        out.append((str(dataset), fronts))
    return out


def arc_frame(
    per_case: pd.DataFrame,
    sweeps: pd.DataFrame,
    families: Mapping[str, Sequence[str]],
    sweep_columns: Mapping[str, str],
    cost: str = "sdlogj",
    score: str = "dice",
) -> pd.DataFrame:
    """The area under each ARC (the fronts of :func:`tradeoff_frame`) over its dataset's common range.

    One row per (dataset, front): ``points`` (its members: λ values), ``n_seeds``, ``range_low``/``range_high``
    (:func:`common_range` of every seed's front of every ARC of the dataset, so each seed's curve spans it; an ARC
    whose own seeds share no range bounds nothing and gets no area; where the others share none, each is over the
    range its own seeds share, and ``range_common`` is False: such areas do not compare across rows), ``auc`` (the
    mean over seeds of each seed's :func:`arc_area` over that range), ``auc_seeds`` (the seeds with an area),
    ``auc_low``/``auc_high`` (Student's t interval over those seeds; NaN with fewer than two) and
    ``auc_mean_curve`` (the area of the front through the seed means, NaN where it starts rougher)."""
    rows = []
    for dataset, fronts in _fronts_by_dataset(per_case, sweeps, families, sweep_columns, cost, score):
        members_of = {label: table[table["method"].isin(family)] for label, (table, family) in fronts.items()}
        curves_of = {label: seed_fronts(members, cost, score) for label, members in members_of.items()}
        own_spans = {label: common_range([f for f in curves if f is not None]) for label, curves in curves_of.items()}
        common_low, common_high = _intersection(list(own_spans.values()))
        shared = bool(np.isfinite(common_low))
        for label, members in members_of.items():
            # No range common to the dataset's ARCs: each over the span its own seeds share, said so.
            low, high = (common_low, common_high) if shared else own_spans[label]
            areas = [arc_area(f, low, high) if f is not None else float("nan") for f in curves_of[label]]
            finite = [a for a in areas if np.isfinite(a)]
            auc_low, auc_high = t_interval(finite)
            rows.append(
                {
                    "dataset": dataset,
                    "front": label,
                    "points": int(members["method"].nunique()),
                    "n_seeds": len(areas),
                    "range_low": low,
                    "range_high": high,
                    "range_common": shared,
                    "auc": float(np.mean(finite)) if finite else float("nan"),
                    "auc_seeds": len(finite),
                    "auc_low": auc_low,
                    "auc_high": auc_high,
                    "auc_mean_curve": arc_area(Front.of(*_seed_means(members, cost, score)), low, high),
                }
            )
    return pd.DataFrame(rows)


def seed_fronts(members: pd.DataFrame, cost: str, score: str) -> list[Front | None]:
    """Each seed's front through its own points, one row per (point, seed) (None for a seed with no finite point)."""
    fronts: list[Front | None] = []
    for _, g in members.groupby("seed", dropna=False, sort=True):
        finite = np.isfinite(g[cost].to_numpy(float)) & np.isfinite(g[score].to_numpy(float))
        fronts.append(Front.of(g[cost][finite], g[score][finite]) if finite.any() else None)
    return fronts


def _intersection(spans: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The range inside every (low, high) span that is one (an ARC whose seeds share no range has none and
    bounds nothing); NaN, NaN where none is or they do not overlap."""
    spans = [s for s in spans if np.isfinite(s[0])]
    if not spans:
        return float("nan"), float("nan")
    low, high = max(s[0] for s in spans), min(s[1] for s in spans)
    return (low, high) if high > low else (float("nan"), float("nan"))


def _seed_means(members: pd.DataFrame, cost: str, score: str) -> tuple[pd.Series, pd.Series]:
    means = members.groupby("method", sort=False)[[cost, score]].mean()
    return means[cost], means[score]


TRADEOFF_HEADERS = ["Front", "Method", "Seeds", "{cost}", "Dice (%)", "Dominated", "Gap (Dice points)", "95 % CI over seeds"]


def _tradeoff_cells(frame: pd.DataFrame, method_name: Callable[[str], str]) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        front = _front_name(str(row["front"]), method_name)
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


def _front_name(front: str, method_name: Callable[[str], str]) -> str:
    """A front's label as tables print it: "METHOD COLUMN sweep" with the method's display name."""
    if front.endswith(" sweep"):
        method, column, _ = front.rsplit(" ", 2)
        return f"{method_name(method)} {column} sweep"
    return front


def tradeoff_caption(cost_label: str = "SDlogJ") -> str:
    return (
        f"Each method against each front of tuned λ, the family's accuracy–regularity curve (ARC: the non-dominated points of a λ family on {cost_label} against Dice; "
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


ARC_HEADERS = ["ARC", "Points", "Seeds", "{cost} range", "AUC-ARC (Dice %)", "95 % CI over seeds"]


def _arc_cells(frame: pd.DataFrame, method_name: Callable[[str], str]) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        span = "–" if np.isnan(row["range_low"]) else f"{row['range_low']:.3f}–{row['range_high']:.3f}"
        if not row.get("range_common", True):
            span += " (own)"
        auc = "–" if np.isnan(row["auc"]) else f"{100 * row['auc']:.2f}"
        if row["auc_seeds"] < row["n_seeds"]:  # some seeds' curves do not span the range
            auc += f" ({row['auc_seeds']} of {row['n_seeds']} seeds)"
        interval = "–" if np.isnan(row["auc_low"]) else f"[{100 * row['auc_low']:.2f}, {100 * row['auc_high']:.2f}]"
        rows.append([_front_name(str(row["front"]), method_name), str(row["points"]), str(row["n_seeds"]), span, auc, interval])
    return rows


def arc_caption(cost_label: str = "SDlogJ") -> str:
    return (
        f"The area under each accuracy–regularity curve (ARC: a λ family's front of Dice against {cost_label}, linear between "
        f"its points) over the {cost_label} range every curve of the dataset spans by its own points (from the roughest of "
        "their smoothest points to the smoothest of their roughest), divided by the range's width: the mean Dice the family "
        "reaches across the range. Where the dataset's curves share no range, each is over its own span, marked (own): "
        "those areas do not compare across rows. Per seed, each seed's own curve; AUC-ARC is their mean (a seed whose curve "
        "starts rougher than the range has none, and the seeds counted are given when fewer than all); CI: Student's t over "
        "those seeds (– with one)."
    )


def arc_markdown(frame: pd.DataFrame, method_name: Callable[[str], str], cost_label: str = "SDlogJ") -> str:
    """The AUC-ARC table: each ARC's area over the common range, with its seed interval."""
    from .tables import markdown_table

    headers = [h.format(cost=cost_label) for h in ARC_HEADERS]
    return markdown_table(headers, _arc_cells(frame, method_name)) + f"\n\n{arc_caption(cost_label)}\n"


def arc_latex(frame: pd.DataFrame, method_name: Callable[[str], str], label: str = "tab:arc", cost_label: str = "SDlogJ") -> str:
    """The AUC-ARC table in LaTeX (booktabs)."""
    from .tables import booktabs_table

    headers = [h.format(cost=cost_label) for h in ARC_HEADERS]
    return booktabs_table(headers, _arc_cells(frame, method_name), arc_caption(cost_label), label, "lrrlrl")
