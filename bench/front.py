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

from collections.abc import Collection, Sequence
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
    cost), ``gap_low``/``gap_high`` (t interval over seeds)."""
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
                "gap_low": low,
                "gap_high": high,
            }
        )
    return front, pd.DataFrame(rows)
