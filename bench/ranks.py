"""How sure each rank is: a bootstrap over units of every method's table mean (how often each method takes each
rank, as challengeR draws it), and the Friedman test with Nemenyi's post-hoc over units for a critical-difference
diagram (Demšar 2006). Pure frame → frame functions on seed-averaged per-case rows; figures draw the results.

The bootstrap resamples units (subjects), not cases: a resample takes every case of each drawn unit, and a method's
mean over those cases is the number Table 1 would print on such a set of subjects (a cluster bootstrap). Ranks are
of the means rounded as the table prints them (table units, ``digits``), so "stays best" is the table's bold on
resampled subjects; ties share the better rank.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregate import UNIT_COLUMN, unit_name, unit_values, units
from .metrics import spec_of
from .report_options import RANK_RESAMPLES
from .stats import TOO_FEW, min_units

RANK_COLUMNS = ["dataset", "metric", "unit", "n_units", "n_resamples", "method", "observed_rank", "rank", "share"]
FRIEDMAN_COLUMNS = ["dataset", "metric", "unit", "n_units", "n_methods", "statistic", "p_value", "verdict"]

# (dataset, metric) -> the methods that compete for the column's best (Table 1's rule: baselines do not compete on
# deformation metrics, rows over fewer pairs never do).
Competitors = Callable[[str, str, Sequence[str]], list[str]]


def _everyone(dataset: str, metric: str, methods: Sequence[str]) -> list[str]:
    return list(methods)


def rank_bootstrap(
    per_case: pd.DataFrame,
    metrics: Sequence[str],
    competitors: Competitors = _everyone,
    digits: int = 2,
    n_resamples: int = RANK_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Long frame (:data:`RANK_COLUMNS`): per dataset, metric and competing method, the share of ``n_resamples``
    bootstrap resamples of the units in which it takes each rank (1 = best; every rank from 1 to the number of
    methods, shares summing to 1), and its rank on the data as they are (``observed_rank``)."""
    ok = per_case[per_case["status"] == "ok"]
    ok = ok.assign(**{UNIT_COLUMN: units(ok)})
    rows = []
    for dataset, data in ok.groupby("dataset", sort=False):
        unit_ids = list(dict.fromkeys(data[UNIT_COLUMN]))
        unit = unit_name(data)
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(len(unit_ids), np.full(len(unit_ids), 1.0 / len(unit_ids)), size=n_resamples)  # units drawn
        weights = np.vstack([np.ones(len(unit_ids), dtype=weights.dtype), weights])  # row 0: the data as they are
        for metric in metrics:
            if metric not in data:
                continue
            methods = competitors(str(dataset), metric, list(dict.fromkeys(data["method"])))
            values = pd.to_numeric(data[metric], errors="coerce")
            keep = data["method"].isin(methods) & values.notna()
            if not keep.any() or len(methods) < 2:
                continue
            grouped = values[keep].groupby([data.loc[keep, "method"], data.loc[keep, UNIT_COLUMN]])
            sums = grouped.sum().unstack().reindex(index=methods, columns=unit_ids).fillna(0.0).to_numpy()
            counts = grouped.count().unstack().reindex(index=methods, columns=unit_ids).fillna(0).to_numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                means = (weights @ sums.T) / (weights @ counts.T)  # (1 + resamples) x methods
            ranks = _ranks(means, metric, digits)
            for k, method in enumerate(methods):
                shares = np.bincount(ranks[1:, k], minlength=len(methods) + 1)[1:] / n_resamples
                for rank, share in enumerate(shares, start=1):
                    rows.append(
                        {
                            "dataset": dataset,
                            "metric": metric,
                            "unit": unit,
                            "n_units": len(unit_ids),
                            "n_resamples": n_resamples,
                            "method": method,
                            "observed_rank": int(ranks[0, k]),
                            "rank": rank,
                            "share": float(share),
                        }
                    )
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def _ranks(means: np.ndarray, metric: str, digits: int) -> np.ndarray:
    """Rank per row (1 = best, ties the better rank, a method without a value last) of means as the table prints them."""
    from scipy.stats import rankdata

    spec = spec_of(metric)
    printed = np.round(means * spec.table_scale, digits)
    loss = np.where(np.isnan(printed), np.inf, -printed if spec.higher_is_better else printed)
    return rankdata(loss, method="min", axis=1).astype(int)


def best_shares(ranks: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(dataset, method, metric) → the share of resamples in which the method is best (rank 1, ties included)."""
    first = ranks[ranks["rank"] == 1]
    return {(str(r.dataset), str(r.method), str(r.metric)): float(r.share) for r in first.itertuples()}


@dataclass(frozen=True)
class Friedman:
    """One Friedman test over units and, where it could run, what the critical-difference diagram draws."""

    row: dict
    mean_ranks: pd.Series  # method -> mean rank over units (1 = best); empty when not tested
    nemenyi: pd.DataFrame  # Nemenyi's pairwise p-values, methods x methods; empty when not tested


def friedman_tests(per_case: pd.DataFrame, metrics: Sequence[str], competitors: Competitors = _everyone, alpha: float = 0.05) -> list[Friedman]:
    """Per dataset and metric: Friedman's test of the competing methods over the units every one of them scored
    (each unit's value its mean over its cases and seeds), with Nemenyi's all-pairs post-hoc
    (scikit-posthocs). Fewer than 3 methods: no test (Wilcoxon answers two); fewer units than a two-sided exact
    signed-rank test needs (:func:`regbench.stats.min_units`): the row says too few units."""
    from scikit_posthocs import posthoc_nemenyi_friedman
    from scipy.stats import friedmanchisquare, rankdata

    ok = per_case[per_case["status"] == "ok"]
    values = unit_values(ok, metrics)
    out = []
    for (dataset, metric), data in values.groupby(["dataset", "metric"], sort=False):
        methods = competitors(str(dataset), str(metric), list(dict.fromkeys(data["method"])))
        if len(methods) < 3:
            continue
        block = data.pivot(index=UNIT_COLUMN, columns="method", values="value").reindex(columns=methods).dropna()
        row = {
            "dataset": dataset,
            "metric": metric,
            "unit": unit_name(ok[ok["dataset"] == dataset]),
            "n_units": len(block),
            "n_methods": len(methods),
            "statistic": np.nan,
            "p_value": np.nan,
            "verdict": TOO_FEW,
        }
        if len(block) < min_units(alpha):
            out.append(Friedman(row, pd.Series(dtype=float), pd.DataFrame()))
            continue
        loss = -block if spec_of(str(metric)).higher_is_better else block
        if (loss.nunique(axis=1) == 1).all():  # every method equal on every unit: nothing to rank
            row.update(p_value=1.0, verdict="identical on every unit")
            out.append(Friedman(row, pd.Series(1.0, index=methods).rename_axis("method"), pd.DataFrame()))
            continue
        result = friedmanchisquare(*(loss[m].to_numpy() for m in methods))
        mean_ranks = pd.Series(rankdata(loss.to_numpy(), axis=1).mean(axis=0), index=methods).rename_axis("method")
        nemenyi = posthoc_nemenyi_friedman(loss.reset_index(drop=True))
        row.update(
            statistic=float(result.statistic),
            p_value=float(result.pvalue),
            verdict="the methods differ" if result.pvalue < alpha else "no significant difference",
        )
        out.append(Friedman(row, mean_ranks, nemenyi))
    return out


def friedman_frame(results: Collection[Friedman]) -> pd.DataFrame:
    """friedman.csv: one row per test (:data:`FRIEDMAN_COLUMNS`)."""
    return pd.DataFrame([r.row for r in results], columns=FRIEDMAN_COLUMNS)
