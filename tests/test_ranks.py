"""regbench.ranks at its own seam: the bootstrap over units (not cases) of each method's rank, ties, the
Friedman test with Nemenyi's post-hoc, and the two figures drawn from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import friedmanchisquare

from regbench import figures
from regbench.naming import Names
from regbench.ranks import best_shares, friedman_frame, friedman_tests, rank_bootstrap
from regbench.stats import TOO_FEW


def cases(values: dict[str, list[list[float]]], metric: str = "dice") -> pd.DataFrame:
    """Rows of each method's ``values[method][subject][slice]``."""
    rows = []
    for method, per_subject in values.items():
        for s, per_slice in enumerate(per_subject):
            for k, value in enumerate(per_slice):
                rows.append({"dataset": "d", "method": method, "case_id": f"s{s}-{k}", "subject": f"s{s}", "status": "ok", metric: value})
    return pd.DataFrame(rows)


def test_the_bootstrap_resamples_subjects_not_slices():
    """A is far better on subject 0's six slices, B slightly better on subject 1's: A is best on the data and on
    any resample holding subject 0, i.e. 3 of 4 equally likely resamples of two subjects (a bootstrap of the 12
    slices would keep A best almost always)."""
    per_case = cases({"a": [[0.9] * 6, [0.7] * 6], "b": [[0.7] * 6, [0.72] * 6]})
    ranks = rank_bootstrap(per_case, ["dice"], n_resamples=4000, seed=0)
    shares = best_shares(ranks)
    assert shares[("d", "a", "dice")] == pytest.approx(0.75, abs=0.03) and shares[("d", "b", "dice")] == pytest.approx(0.25, abs=0.03)
    assert set(ranks.loc[ranks["method"] == "a", "observed_rank"]) == {1} and set(ranks["n_units"]) == {2}
    assert np.allclose(ranks.groupby("method")["share"].sum(), 1.0)  # each method's ranks over all resamples
    assert ranks.equals(rank_bootstrap(per_case, ["dice"], n_resamples=4000, seed=0))  # seeded


def test_ties_as_printed_share_the_better_rank_and_lower_is_better_where_declared():
    """NJD (lower is better): two methods at 0 are both first in every resample; a third at 0.004 % rounds to 0.00
    as Table 1 prints it (2 digits), so it ties too; one at 0.2 % is last. A baseline left out competes for no rank."""
    per_case = cases({"x": [[0.0]] * 6, "y": [[0.0]] * 6, "z": [[0.004]] * 6, "w": [[0.2]] * 6, "initial": [[0.0]] * 6}, metric="njd")
    ranks = rank_bootstrap(per_case, ["njd"], competitors=lambda d, m, methods: [x for x in methods if x != "initial"], n_resamples=200)
    shares = best_shares(ranks)
    assert shares[("d", "x", "njd")] == shares[("d", "y", "njd")] == shares[("d", "z", "njd")] == 1.0 and shares[("d", "w", "njd")] == 0.0
    assert "initial" not in set(ranks["method"]) and set(ranks.loc[ranks["method"] == "w", "observed_rank"]) == {4}


def test_friedman_over_units_with_nemenyi_and_too_few_units_said():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 8)
    values = {m: [[b + shift + rng.normal(0, 0.005)] for b in base] for m, shift in (("a", 0.1), ("b", 0.05), ("c", 0.0))}
    result = friedman_tests(cases(values), ["dice"])[0]
    unit_means = [np.array([v[0] for v in values[m]]) for m in ("a", "b", "c")]
    assert result.row["p_value"] == pytest.approx(friedmanchisquare(*(-u for u in unit_means)).pvalue) and result.row["n_units"] == 8
    assert list(result.mean_ranks) == pytest.approx([1.0, 2.0, 3.0]) and result.nemenyi.loc["a", "c"] < 0.05
    few = friedman_tests(cases({m: v[:4] for m, v in values.items()}), ["dice"])
    assert friedman_frame(few).iloc[0]["verdict"] == TOO_FEW and few[0].nemenyi.empty
    assert friedman_tests(cases({m: values[m] for m in ("a", "b")}), ["dice"]) == []  # two methods: Wilcoxon's job


def test_rank_and_critical_difference_figures_are_drawn(tmp_path):
    rng = np.random.default_rng(1)
    values = {m: [[0.7 + shift + rng.normal(0, 0.02)] for _ in range(8)] for m, shift in (("a", 0.05), ("b", 0.04), ("c", 0.0))}
    per_case = cases(values)
    written = figures.rank_frequencies(rank_bootstrap(per_case, ["dice"], n_resamples=200), tmp_path / "ranks", Names())
    written += figures.critical_difference(friedman_tests(per_case, ["dice"]), tmp_path / "cd", Names())
    assert [p.name for p in written] == ["ranks.png", "ranks.pdf", "cd.png", "cd.pdf"] and all(p.stat().st_size > 1000 for p in written)
    assert figures.critical_difference(friedman_tests(cases({m: v[:3] for m, v in values.items()}), ["dice"]), tmp_path / "none", Names()) == []
