"""regbench.stats at its own seam: paired tests over units (subjects, else cases), the verdict when units are too
few, the Hodges–Lehmann effect size with its bootstrap interval, the exact test where |differences| tie."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, wilcoxon

from regbench.aggregate import unit_name, unit_values
from regbench.stats import DIFFERS, IDENTICAL, NO_EVIDENCE, TOO_FEW, hl_interval, hodges_lehmann, min_units, out_of_reach, paired_tests, signed_rank_test


def slices(subject_effects: list[float], per_subject: int, with_subjects: bool = True, seed_values: tuple[float, ...] = (0.0,)) -> pd.DataFrame:
    """Rows of two methods on ``per_subject`` identical slices per subject: the reference at Dice 0.8, the other at
    0.8 + the subject's effect (+ each seed's offset, one row per seed)."""
    rows = []
    for s, effect in enumerate(subject_effects):
        for k in range(per_subject):
            case = {"dataset": "d", "case_id": f"s{s:02d}-{k}", "subject": f"s{s:02d}" if with_subjects else None, "status": "ok"}
            rows.append({**case, "method": "ref", "dice": 0.8})
            rows += [{**case, "method": "new", "dice": 0.8 + effect + offset, "seed": i} for i, offset in enumerate(seed_values)]
    return pd.DataFrame(rows)


EFFECTS_10 = [0.02, 0.03, -0.01, 0.05, 0.04, 0.015, 0.025, -0.005, 0.035, 0.045]  # 8 of 10 subjects better


def test_slices_of_a_subject_are_one_unit_not_six():
    """10 subjects x 6 identical slices: over the 60 slices the test would claim p < 1e-4; over the subjects it is
    the 10-unit exact p, and stats.csv says so (unit, 10 units, 60 cases)."""
    per_case = slices(EFFECTS_10, 6)
    per_slice = paired_tests(slices(EFFECTS_10, 6, with_subjects=False), ["ref"], ["dice"]).iloc[0]
    assert per_slice["unit"] == "case" and per_slice["n_units"] == 60 and per_slice["p_value"] < 1e-4
    row = paired_tests(per_case, ["ref"], ["dice"]).iloc[0]
    assert (row["unit"], row["n_units"], row["n_cases"], row["test"]) == ("subject", 10, 60, "exact")
    assert row["p_value"] == pytest.approx(wilcoxon(np.array(EFFECTS_10), method="exact").pvalue) and row["p_value"] > 1e-3
    assert row["verdict"] == DIFFERS and row["significant"]


def test_too_few_units_is_said_not_tested():
    """2 subjects of 6 slices (the smoke profile's test split): no p-value, never significant, a verdict that says
    why; 6 units is the fewest a two-sided exact test can decide at 0.05."""
    row = paired_tests(slices([0.05, 0.06], 6), ["ref"], ["dice"]).iloc[0]
    assert (row["n_units"], row["n_cases"], row["verdict"]) == (2, 12, TOO_FEW)
    assert np.isnan(row["p_value"]) and np.isnan(row["p_holm"]) and not row["significant"] and np.isnan(row["ci_low"])
    assert row["hl_difference"] == pytest.approx(0.055)  # the effect is still estimated
    assert min_units(0.05) == 6 and min_units(0.01) == 8 and 2 / 2**5 > 0.05 >= 2 / 2**6
    six = paired_tests(slices([0.05] * 6, 1, with_subjects=False), ["ref"], ["dice"]).iloc[0]
    assert six["verdict"] == DIFFERS and six["p_value"] == pytest.approx(2 / 2**6)


def test_identical_methods_are_said_identical():
    row = paired_tests(slices([0.0] * 8, 2), ["ref"], ["dice"]).iloc[0]
    assert row["verdict"] == IDENTICAL and row["p_value"] == 1.0 and not row["significant"]


def test_a_unit_is_the_mean_over_its_cases_and_seeds():
    per_case = slices([0.02, 0.04], 3, seed_values=(0.0, 0.01))
    per_case.loc[per_case["case_id"] == "s00-0", "dice"] += 0.3  # one slice of one subject, both seeds and the reference
    values = unit_values(per_case, ["dice"]).set_index(["method", "unit"])["value"]
    assert values[("new", "s00")] == pytest.approx(0.8 + 0.1 + 0.02 + 0.005)
    assert values[("ref", "s00")] == pytest.approx(0.9) and values[("new", "s01")] == pytest.approx(0.845)
    assert unit_name(per_case) == "subject" and unit_name(per_case.assign(subject=None)) == "case"
    assert unit_name(per_case.assign(subject=np.where(per_case["case_id"].str.startswith("s00"), None, per_case["subject"]))) == "subject or case"


def test_hodges_lehmann_is_the_median_of_walsh_averages_with_a_seeded_interval():
    rng = np.random.default_rng(3)
    d = rng.normal(0.5, 1.0, 9)
    walsh = [(a + b) / 2 for a, b in itertools.combinations_with_replacement(d, 2)]
    assert hodges_lehmann(d) == pytest.approx(np.median(walsh))
    low, high = hl_interval(d, seed=1)
    assert low < hodges_lehmann(d) < high and (low, high) == hl_interval(d, seed=1) != hl_interval(d, seed=2)


def test_tied_differences_get_the_exact_sign_flip_test():
    """With tied |differences| scipy's exact null distribution does not hold; the test enumerates every sign
    flip of the midranks instead (here all 2^8, against a brute-force count)."""
    d = np.array([1.0, 1.0, 2.0, -1.0, 3.0, 2.0, 4.0, -2.0])
    test, statistic, p = signed_rank_test(d)
    ranks = rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    expected = ranks.sum() / 2
    flips = [sum(r for r, sign in zip(ranks, signs) if sign) for signs in itertools.product([0, 1], repeat=len(d))]
    brute = np.mean([abs(t - expected) >= abs(observed - expected) - 1e-9 for t in flips])
    assert test.startswith("exact (sign-flip") and p == pytest.approx(brute)


def test_holm_runs_over_the_tested_rows_only():
    """A family of three: one method tested over 8 subjects, one identical, one over too few units. Holm adjusts
    the one p-value only (the others have none to adjust)."""
    per_case = slices([0.03, 0.02, 0.04, 0.01, 0.05, 0.02, 0.03, -0.01], 2)
    same = per_case[per_case["method"] == "ref"].assign(method="same")
    few = per_case[(per_case["method"] == "new") & per_case["subject"].isin(["s00", "s01"])].assign(method="few")
    stats = paired_tests(pd.concat([per_case, same, few]), ["ref"], ["dice"]).set_index("method")
    assert stats.loc["new", "p_holm"] == stats.loc["new", "p_value"] and stats.loc["few", "verdict"] == TOO_FEW
    assert stats.loc["same", "verdict"] == IDENTICAL and stats.loc["new", "verdict"] in (DIFFERS, NO_EVIDENCE)


def test_holm_out_of_reach_is_said_when_units_are_too_few_for_the_family():
    """7 subjects: an exact test's smallest p is 2/128; four methods in a column make Holm's smallest 4 x 2/128 =
    0.0625 > 0.05, so no mark is possible however clear the differences; three methods keep 0.047 within reach."""
    base = slices([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07], 2)
    ref, new = base[base["method"] == "ref"], base[base["method"] == "new"]
    four = pd.concat([ref, *(new.assign(method=f"m{i}", dice=new["dice"] + i) for i in range(4))])
    stats = paired_tests(four, ["ref"], ["dice"])
    assert (stats["p_value"] == 2 / 2**7).all() and not stats["significant"].any()
    assert out_of_reach(stats, "ref", 0.05) == {"d": (7, 4, pytest.approx(0.0625))}
    three = paired_tests(four[four["method"] != "m3"], ["ref"], ["dice"])
    assert three["significant"].all() and out_of_reach(three, "ref", 0.05) == {}
