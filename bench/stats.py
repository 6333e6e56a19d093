"""Paired statistics over independent units: each method against reference methods, Wilcoxon signed-rank over
the units' means, Holm-corrected, with a Hodges–Lehmann effect size and its bootstrap interval.

The unit of analysis is the subject (:func:`regbench.aggregate.unit_values`): the slices of one subject share
anatomy, motion, contrast and noise, so testing them as if they were independent pairs makes p-values too small
(pseudo-replication). Per method and unit the metric is the mean over the unit's cases (each case already the mean
over training seeds); methods are paired on (dataset, unit) over the units where both have the metric. One family
(for Holm) = one reference, one dataset and one metric across the compared methods: the cells of one table
column. scipy does the test (two-sided, zero differences dropped as in Wilcoxon's original method) and the
bootstrap, statsmodels the correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .aggregate import unit_name, unit_values

STATS_COLUMNS = [
    "dataset",
    "reference",
    "method",
    "metric",
    "unit",
    "n_units",
    "n_cases",
    "median_difference",
    "hl_difference",
    "ci_low",
    "ci_high",
    "test",
    "statistic",
    "p_value",
    "p_holm",
    "significant",
    "verdict",
]

# What each row of stats.csv concludes (its ``verdict`` column).
DIFFERS = "differs"
NO_EVIDENCE = "no significant difference"
TOO_FEW = "too few units to test"
IDENTICAL = "identical on every unit"
NOTHING_PAIRED = "no unit scored by both"

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
EXACT_UP_TO = 50  # units with a difference: scipy's exact null distribution up to here (no ties), as its "auto"
PERMUTATION_UP_TO = 13  # with tied |differences| the exact test is the sign-flip permutation (2^n arrangements)


def min_units(alpha: float) -> int:
    """The fewest units for which a two-sided exact Wilcoxon test can reach ``alpha`` at all: its smallest p with
    n units is 2 / 2^n (n = 5: 0.0625, n = 6: 0.031), so below this no result could be called a difference."""
    return max(1, math.ceil(math.log2(2.0 / alpha)))


def hodges_lehmann(differences: np.ndarray, axis: int = -1) -> np.ndarray:
    """The Hodges–Lehmann estimate of a paired shift: the median of the Walsh averages (d_i + d_j) / 2, i ≤ j, along
    ``axis`` (vectorised, as scipy.stats.bootstrap calls it). The effect size that matches the signed-rank test."""
    d = np.moveaxis(np.asarray(differences, float), axis, -1)
    i, j = np.triu_indices(d.shape[-1])
    return np.median((d[..., i] + d[..., j]) / 2.0, axis=-1)


def hl_interval(differences: np.ndarray, seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the Hodges–Lehmann estimate over units (resampled with replacement,
    seeded). Percentile rather than BCa: BCa's jackknife is undefined on the tied values a handful of units give."""
    from scipy.stats import bootstrap

    d = np.asarray(differences, float)
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    result = bootstrap(
        (d,), hodges_lehmann, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence, method="percentile", batch=200, rng=np.random.default_rng(seed)
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def signed_rank_test(differences: np.ndarray) -> tuple[str, float, float]:
    """(test, statistic, two-sided p) of Wilcoxon's signed-rank test on paired differences, zeros dropped: exact
    where scipy's null distribution is exact (no ties, up to :data:`EXACT_UP_TO` units), an exhaustive sign-flip
    permutation where tied |differences| make it inexact (up to :data:`PERMUTATION_UP_TO`), else the normal
    approximation."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, float)
    nonzero = np.abs(d[d != 0])
    tied = len(np.unique(nonzero)) < len(nonzero)
    if len(nonzero) <= EXACT_UP_TO and not tied:
        test, method = "exact", "exact"
        d = d[d != 0]  # exact on the non-zero differences, as zero_method="wilcox" defines the test
    elif len(nonzero) <= PERMUTATION_UP_TO:
        statistic, p_value = _sign_flip_test(d[d != 0])
        return "exact (sign-flip permutation, ties)", statistic, p_value
    else:
        test, method = "normal approximation", "asymptotic"
    result = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method)
    return test, float(result.statistic), float(result.pvalue)


def _sign_flip_test(differences: np.ndarray) -> tuple[float, float]:
    """Wilcoxon's statistic (the smaller of the positive and negative rank sums, midranks for ties) and its exact
    two-sided p over all 2^n sign flips of the non-zero differences. scipy's PermutationMethod computes the same
    p but calls the statistic once per arrangement (0.25 s at n = 12); here all arrangements are one product."""
    from scipy.stats import rankdata

    ranks = rankdata(np.abs(differences))
    signs = (np.arange(2 ** len(ranks))[:, None] >> np.arange(len(ranks))) & 1  # every arrangement, one per row
    positive = signs @ ranks
    centre = ranks.sum() / 2
    observed = ranks[differences > 0].sum()
    p_value = float(np.mean(np.abs(positive - centre) >= abs(observed - centre) - 1e-9 * ranks.sum()))
    return float(min(observed, ranks.sum() - observed)), p_value


def paired_tests(per_case: pd.DataFrame, references: Sequence[str], metrics: Sequence[str], alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, reference, method, metric) over the dataset's units (see the module's docstring).

    Differences are method − reference: ``median_difference`` of the per-unit differences, ``hl_difference`` their
    Hodges–Lehmann estimate with a 95 % percentile bootstrap interval (``ci_low``, ``ci_high``; only where the
    units are enough to test, :func:`min_units`: on fewer the interval cannot cover what it claims). ``verdict``
    says what the row concludes; fewer units than :func:`min_units` give no p-value and are never significant."""
    from statsmodels.stats.multitest import multipletests

    ok = per_case[per_case["status"] == "ok"]
    values = unit_values(ok, [m for m in metrics if m in ok])
    fewest = min_units(alpha)
    rows = []
    for dataset, data in values.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(data["method"]))
        unit = unit_name(ok[ok["dataset"] == dataset])
        table = {key: group.set_index("unit")[["value", "n_cases"]] for key, group in data.groupby(["metric", "method"], sort=False)}
        for reference in references:
            if reference not in methods:
                continue
            for metric in metrics:
                if (metric, reference) not in table:
                    continue
                ref = table[(metric, reference)]
                family = []
                for method in methods:
                    if method == reference:
                        continue
                    other = table.get((metric, method), ref.iloc[:0])
                    both = other.join(ref, how="inner", suffixes=("_m", "_r"))
                    diff = (both["value_m"] - both["value_r"]).to_numpy(float)
                    n = len(diff)
                    row = {
                        "dataset": dataset,
                        "reference": reference,
                        "method": method,
                        "metric": metric,
                        "unit": unit,
                        "n_units": n,
                        "n_cases": int(both["n_cases_m"].sum()),
                        "median_difference": float(np.median(diff)) if n else np.nan,
                        "hl_difference": float(hodges_lehmann(diff)) if n else np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "test": "",
                        "statistic": np.nan,
                        "p_value": np.nan,
                        "verdict": NOTHING_PAIRED,
                    }
                    if n and not np.any(diff != 0):
                        row.update(p_value=1.0, verdict=IDENTICAL, ci_low=0.0, ci_high=0.0)
                    elif n and n < fewest:
                        row["verdict"] = TOO_FEW
                    elif n:
                        test, statistic, p_value = signed_rank_test(diff)
                        low, high = hl_interval(diff, seed)
                        row.update(test=test, statistic=statistic, p_value=p_value, ci_low=low, ci_high=high, verdict=NO_EVIDENCE)
                    family.append(row)
                tested = [r for r in family if r["test"]]
                if tested:
                    reject, p_holm, _, _ = multipletests([r["p_value"] for r in tested], alpha=alpha, method="holm")
                    for r, p, rejected in zip(tested, p_holm, reject):
                        r.update(p_holm=float(p), significant=bool(rejected), verdict=DIFFERS if rejected else NO_EVIDENCE)
                for r in family:
                    r.setdefault("p_holm", r["p_value"] if r["verdict"] == IDENTICAL else np.nan)
                    r.setdefault("significant", False)
                rows.extend(family)
    return pd.DataFrame(rows, columns=STATS_COLUMNS)


def significance_marks(stats: pd.DataFrame, reference: str, symbol: str = r"\dagger") -> dict[tuple[str, str, str], str]:
    """(dataset, method, metric) → symbol where the method differs from ``reference`` (Holm-corrected)."""
    hits = stats[(stats["reference"] == reference) & stats["significant"].astype(bool)]
    return {(r.dataset, r.method, r.metric): symbol for r in hits.itertuples()}


def out_of_reach(stats: pd.DataFrame, reference: str, alpha: float) -> dict[str, tuple[int, int, float]]:
    """dataset → (units, comparisons per column, the smallest Holm-adjusted p they allow) where the tests against
    ``reference`` ran but Holm's correction puts ``alpha`` out of reach: with n units the smallest p of an exact
    test is 2 / 2^n, and Holm multiplies the smallest of m p-values by m (8 subjects, 15 methods: 0.117). No mark
    is then possible whatever the methods do; the caption says so rather than let "no †" read as "no difference"."""
    rows = stats[(stats["reference"] == reference) & stats["test"].fillna("").astype(bool)]
    out = {}
    for dataset, group in rows.groupby("dataset", sort=False):
        family = int(group.groupby("metric").size().max())
        units = int(group["n_units"].max())
        floor = min(1.0, family * 2.0 / 2.0**units) if group["test"].str.startswith("exact").all() else 0.0
        if floor > alpha:
            out[str(dataset)] = (units, family, floor)
    return out


def untestable(stats: pd.DataFrame, reference: str) -> dict[str, int]:
    """dataset → its number of units, for each dataset where no comparison against ``reference`` could be tested
    and some had too few units (the others identical or unpaired): the caption says so instead of leaving the
    absence of marks to be read as 'no difference'."""
    rows = stats[stats["reference"] == reference]
    out = {}
    for dataset, group in rows.groupby("dataset", sort=False):
        if (group["verdict"] == TOO_FEW).any() and not group["verdict"].isin([DIFFERS, NO_EVIDENCE]).any():
            out[str(dataset)] = int(group["n_units"].max())
    return out
