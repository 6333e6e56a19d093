"""Paired statistics: Wilcoxon signed-rank tests of every method against reference methods, Holm-corrected.

Pairs are matched on (dataset, case id) over cases where both methods succeeded and the metric is
defined. One family (for Holm) = one reference, one dataset and one metric across the compared methods: the
cells of one table column. scipy does the test (two-sided, zero differences dropped as in Wilcoxon's
original method), statsmodels the correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

STATS_COLUMNS = [
    "dataset",
    "reference",
    "method",
    "metric",
    "n_pairs",
    "median_difference",
    "statistic",
    "p_value",
    "p_holm",
    "significant",
]


def paired_tests(per_case: pd.DataFrame, references: Sequence[str], metrics: Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """One row per (dataset, reference, method, metric); ``median_difference`` is method − reference."""
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    ok = per_case[per_case["status"] == "ok"]
    rows = []
    for dataset, data in ok.groupby("dataset", sort=False):
        indexed = data.set_index("case_id")
        methods = list(dict.fromkeys(data["method"]))
        for reference in references:
            if reference not in methods:
                continue
            ref = indexed[indexed["method"] == reference]
            for metric in metrics:
                if metric not in data:
                    continue
                family = []
                for method in methods:
                    if method == reference:
                        continue
                    other = indexed[indexed["method"] == method]
                    both = pd.concat([other[metric], ref[metric]], axis=1, join="inner", keys=["m", "r"]).dropna()
                    diff = (both["m"] - both["r"]).to_numpy(float)
                    row = {
                        "dataset": dataset,
                        "reference": reference,
                        "method": method,
                        "metric": metric,
                        "n_pairs": len(both),
                        "median_difference": float(np.median(diff)) if len(diff) else np.nan,
                        "statistic": np.nan,
                        "p_value": np.nan,
                    }
                    if len(diff) and np.any(diff != 0):
                        result = wilcoxon(both["m"], both["r"], zero_method="wilcox", alternative="two-sided")
                        row.update(statistic=float(result.statistic), p_value=float(result.pvalue))
                    elif len(diff):
                        row["p_value"] = 1.0  # identical on every pair: no evidence of a difference
                    family.append(row)
                tested = [r for r in family if not np.isnan(r["p_value"])]
                if tested:
                    reject, p_holm, _, _ = multipletests([r["p_value"] for r in tested], alpha=alpha, method="holm")
                    for r, p, rej in zip(tested, p_holm, reject):
                        r.update(p_holm=float(p), significant=bool(rej))
                for r in family:
                    r.setdefault("p_holm", np.nan)
                    r.setdefault("significant", False)
                rows.extend(family)
    return pd.DataFrame(rows, columns=STATS_COLUMNS)


def significance_marks(stats: pd.DataFrame, reference: str, symbol: str = r"\dagger") -> dict[tuple[str, str, str], str]:
    """(dataset, method, metric) → symbol where the method differs from ``reference`` (Holm-corrected)."""
    hits = stats[(stats["reference"] == reference) & stats["significant"].astype(bool)]
    return {(r.dataset, r.method, r.metric): symbol for r in hits.itertuples()}
