"""The trade-off front of a tuned family and the distances to it, on hand-made points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regbench.front import Front, front_verdicts, non_dominated, t_interval


def test_the_front_keeps_the_points_no_other_beats_on_both_axes():
    cost = [0.1, 0.2, 0.3, 0.25, 0.5, 0.5]
    score = [0.70, 0.80, 0.85, 0.78, 0.84, 0.85]
    # (0.25, 0.78) loses to (0.2, 0.80); (0.5, 0.84) and (0.5, 0.85) lose to (0.3, 0.85)
    assert non_dominated(cost, score).tolist() == [True, True, True, False, False, False]
    front = Front.of(cost, score)
    assert front.cost.tolist() == [0.1, 0.2, 0.3] and front.score.tolist() == [0.70, 0.80, 0.85]


def test_the_front_is_linear_between_its_points_flat_past_the_roughest_and_undefined_before_the_smoothest():
    front = Front.of([0.1, 0.3, 0.2], [0.70, 0.85, 0.80])
    assert front.score_at(0.15) == pytest.approx(0.75) and front.score_at(0.25) == pytest.approx(0.825)
    assert front.score_at(0.9) == pytest.approx(0.85) and np.isnan(front.score_at(0.05))
    assert front.dominates(0.35, 0.80) and not front.dominates(0.15, 0.76) and not front.dominates(0.2, 0.80)


def test_each_method_is_placed_against_the_family_front_with_a_seed_interval():
    rows = [("vm.a", 0, 0.1, 0.70), ("vm.b", 0, 0.2, 0.80), ("vm.c", 0, 0.3, 0.85)]
    # gs: three seeds at cost 0.15 (front there: 0.75), Dice 0.735, 0.73, 0.725: 1.5 to 2.5 points below the front
    rows += [("gs", s, 0.15, d) for s, d in enumerate([0.735, 0.73, 0.725])]
    rows += [("beyond", 0, 0.25, 0.90), ("too-smooth", 0, 0.05, 0.60)]
    points = pd.DataFrame(rows, columns=["method", "seed", "sdlogj", "dice"])
    front, verdicts = front_verdicts(points, {"vm.a", "vm.b", "vm.c"})
    v = verdicts.set_index("method")
    assert v.loc[["vm.a", "vm.b", "vm.c"], "on_front"].all() and not v.loc["gs", "in_family"]
    assert v.loc["gs", "gap"] == pytest.approx(-0.02) and v.loc["gs", "n_seeds"] == 3
    low, high = t_interval([-0.015, -0.02, -0.025])
    assert (v.loc["gs", "gap_low"], v.loc["gs", "gap_high"]) == pytest.approx((low, high)) and high < 0  # 95 %: below the front
    assert low == pytest.approx(-0.02 - 4.302653 * 0.005 / np.sqrt(3), rel=1e-5)
    assert not v.loc["gs", "dominated"]  # nothing in the family is as smooth as 0.15 and better: below the front, not dominated
    assert v.loc["beyond", "gap"] == pytest.approx(0.90 - 0.825) and not v.loc["beyond", "dominated"]
    assert np.isnan(v.loc["too-smooth", "gap"])  # smoother than any λ reached: no front to compare with
    assert (v.loc["gs", "gap_seeds"], v.loc["too-smooth", "gap_seeds"]) == (3, 0)
    # A method whose seeds straddle the front's smoothest point: its gap is over the seeds that reach it, counted.
    straddle = pd.concat([points, pd.DataFrame([("mixed", 0, 0.05, 0.6), ("mixed", 1, 0.15, 0.74)], columns=points.columns)])
    mixed = front_verdicts(straddle, {"vm.a", "vm.b", "vm.c"})[1].set_index("method").loc["mixed"]
    assert (mixed["n_seeds"], mixed["gap_seeds"]) == (2, 1) and mixed["gap"] == pytest.approx(-0.01) and np.isnan(mixed["gap_low"])
    from regbench.front import tradeoff_markdown

    table = tradeoff_markdown(front_verdicts(straddle, {"vm.a", "vm.b", "vm.c"})[1].assign(front="VM"), str)
    assert "| VM | mixed | 2 | 0.100 | 67.00 | yes | -1.00 (1 of 2 seeds) | – |" in table  # its seed mean: vm.a is as smooth, more accurate
    assert (
        front_verdicts(pd.DataFrame([("vm.a", 0, 0.1, 0.7), ("x", 0, 0.4, 0.6)], columns=points.columns), {"vm.a"})[1].set_index("method").loc["x", "dominated"]
    )
    with pytest.raises(ValueError, match="no member of the family"):
        front_verdicts(points, {"hypermorph"})


def test_the_report_table_places_every_method_against_each_family_and_sweep_front():
    from regbench.front import tradeoff_frame, tradeoff_latex, tradeoff_markdown

    rows = [("vm-a", 0, 0.1, 0.70), ("vm-b", 0, 0.2, 0.80), ("vm-c", 0, 0.3, 0.85), ("hm", 0, 0.25, 0.84)]
    rows += [("gs", s, 0.15, d) for s, d in enumerate([0.735, 0.73, 0.725])]
    per_case = pd.DataFrame(
        [
            {"dataset": "d", "method": m, "seed": s, "case_id": f"c{i}", "sdlogj": c, "dice": d + e, "status": "ok"}
            for m, s, c, d in rows
            for i, e in enumerate((-0.01, 0.01))
        ]
    )
    per_case.loc[len(per_case)] = {"dataset": "d", "method": "gs", "seed": 0, "case_id": "c9", "sdlogj": 9.0, "dice": 0.0, "status": "failed"}  # never a point
    # hm's λ sweep: three λ, each a point (two pairs each); at SDlogJ 0.15 the sweep's front reads 0.76
    sweeps = pd.DataFrame(
        [
            {"dataset": "d", "method": "hm", "lam": lam, "seed": 0, "case_id": f"c{i}", "sdlogj": c, "dice": d}
            for lam, c, d in ((0.9, 0.1, 0.72), (0.5, 0.2, 0.80), (0.1, 0.4, 0.9))
            for i in range(2)
        ]
    )
    frame = tradeoff_frame(per_case, sweeps, {"VM λ": ["vm-a", "vm-b", "vm-c"]}, {"hm": "lam"})
    by = frame.set_index(["front", "method"])
    assert set(frame["front"]) == {"VM λ", "hm lam sweep"}
    assert by.loc[("VM λ", "gs"), "gap"] == pytest.approx(-0.02) and by.loc[("VM λ", "gs"), "n_seeds"] == 3
    assert by.loc[("hm lam sweep", "gs"), "gap"] == pytest.approx(0.73 - 0.76)
    assert ("hm lam sweep", "hm") not in by.index and ("VM λ", "vm-a") not in by.index  # a front is not placed against itself
    assert by.loc[("hm lam sweep", "vm-a"), "dominated"]  # λ = 0.9 is as smooth (0.1) and more accurate (0.72 > 0.70)
    display = {"hm": "HyperMorph", "gs": "GSMorph"}
    text = tradeoff_markdown(frame, lambda m: display.get(m, m))
    assert "| HyperMorph lam sweep | GSMorph | 3 | 0.150 | 73.00 | no | -3.00 |" in text
    latex = tradeoff_latex(frame, lambda m: display.get(m, m), label="tab:t")
    assert r"HyperMorph lam sweep & GSMorph & 3 & 0.150 & 73.00 & no & -3.00 &" in latex and r"\label{tab:t}" in latex
    assert latex.count(r"\\") == len(frame) + 1 and r"95 \% CI" in latex  # a row per placement and the header; escaped


def test_voxelmorph_dot_lambda_is_voxelmorph_at_that_lambda_in_one_family():
    from regbench import ConfigError, create_method
    from regbench.registry import METHODS

    assert METHODS.meta("voxelmorph.1e-3").family == ("VoxelMorph λ grid", 0.001) and METHODS.meta("voxelmorph.1e-3").display_name == "VoxelMorph λ (1e-3)"
    assert create_method("voxelmorph.3e-2").combiner.weight == 0.03
    assert not [m for m in METHODS.resolve("*") if m.startswith("voxelmorph.")] and "voxelmorph" not in METHODS.resolve("*")  # named only
    with pytest.raises(ConfigError, match="its tag 'abc' must be a number"):
        create_method("voxelmorph.abc")
    with pytest.raises(ConfigError, match="has no option 'lam'"):  # λ is the name: one source, never two that disagree
        create_method("voxelmorph.1e-3", lam=0.1)
    from regbench.registry import method_sort_key

    rows = ["voxelmorph.1", "gsmorph", "voxelmorph.1e-4", "fields.b", "voxelmorph.3e-2", "initial"]
    assert sorted(rows, key=method_sort_key) == ["initial", "gsmorph", "voxelmorph.1e-4", "voxelmorph.3e-2", "voxelmorph.1", "fields.b"]  # tables: by λ


@pytest.mark.slow
def test_a_lambda_grid_is_one_row_per_lambda_and_one_front_in_the_report(tmp_path):
    import yaml

    from regbench.cli import main

    grid = ["voxelmorph.1e-3", "voxelmorph.1e-1", "voxelmorph.1"]
    config = {"profile": "smoke", "methods": ["initial", *grid, "gsmorph"], "method_options": {m: {"epochs": 2} for m in [*grid, "gsmorph"]}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--no-progress", "--no-sweep"]) == 0
    frame = pd.read_csv(tmp_path / "run" / "report" / "tradeoff.csv")
    assert set(frame["front"]) == {"VoxelMorph λ grid"} and set(frame["method"]) == {"initial", "gsmorph"}
    assert "| VoxelMorph λ grid | GSMorph |" in (tmp_path / "run" / "report" / "tradeoff.md").read_text()
    # Its ARC's area: over the range of its own points (the only curve), between its lowest and highest Dice.
    (arc,) = pd.read_csv(tmp_path / "run" / "report" / "arc.csv").to_dict("records")
    cases = pd.read_csv(tmp_path / "run" / "per_case.csv")
    grid_points = cases[cases["method"].isin(grid)].groupby("method")[["sdlogj", "dice"]].mean()
    assert arc["front"] == "VoxelMorph λ grid" and arc["points"] == 3 and arc["n_seeds"] == arc["auc_seeds"] == 1
    assert arc["range_low"] == pytest.approx(grid_points["sdlogj"].min()) and arc["range_high"] <= grid_points["sdlogj"].max() + 1e-12
    assert grid_points["dice"].min() <= arc["auc"] <= grid_points["dice"].max()
    assert "| VoxelMorph λ grid | 3 | 1 |" in (tmp_path / "run" / "report" / "arc.md").read_text()


# ------------------------------------------------------------------------------------------- AUC-ARC
def test_the_area_under_a_front_is_its_mean_score_over_the_range_with_known_answers():
    from regbench.front import Front, arc_area

    front = Front.of([0.1, 0.3, 0.5, 0.3], [0.6, 0.8, 0.9, 0.5])  # (0.3, 0.5) is dominated: not on the curve
    assert arc_area(front, 0.1, 0.5) == pytest.approx((0.7 * 0.2 + 0.85 * 0.2) / 0.4)  # 0.775
    assert arc_area(front, 0.2, 0.4) == pytest.approx((0.75 * 0.1 + 0.825 * 0.1) / 0.2)  # between points: interpolated
    short = Front.of([0.1, 0.2], [0.6, 0.8])  # ends at 0.2: flat past its roughest point, as the gaps read it
    assert arc_area(short, 0.1, 0.4) == pytest.approx((0.7 * 0.1 + 0.8 * 0.2) / 0.3)
    assert arc_area(Front.of([0.05], [0.7]), 0.1, 0.4) == pytest.approx(0.7)  # one point, smoother than the range
    late = Front.of([0.2, 0.5], [0.7, 0.9])  # starts rougher than the range: no λ reached 0.1, no area
    assert np.isnan(arc_area(late, 0.1, 0.5)) and np.isnan(arc_area(front, 0.3, 0.3)) and np.isnan(arc_area(front, np.nan, 0.4))


def test_the_common_range_is_what_every_front_spans_by_its_own_points():
    from regbench.front import Front, common_range

    wide, narrow = Front.of([0.1, 0.5], [0.6, 0.9]), Front.of([0.2, 0.3, 0.4], [0.7, 0.8, 0.85])
    assert common_range([wide, narrow]) == (0.2, 0.4)
    apart = Front.of([0.6, 0.7], [0.9, 0.95])  # overlaps neither: no common range
    assert all(np.isnan(common_range([wide, apart]))) and all(np.isnan(common_range([])))
    assert all(np.isnan(common_range([Front.of([0.3], [0.8])])))  # a single point spans no width


def _arc_points(drop=()):
    """VoxelMorph-like family a, b, c at two seeds (seed 1 is 0.1 Dice below seed 0) and one seed of a λ sweep."""
    rows = [("a", 0, 0.1, 0.70), ("b", 0, 0.2, 0.80), ("c", 0, 0.4, 0.90), ("a", 1, 0.1, 0.60), ("b", 1, 0.2, 0.70), ("c", 1, 0.4, 0.80)]
    per_case = pd.DataFrame(
        [{"dataset": "d", "method": m, "seed": s, "case_id": "c0", "sdlogj": c, "dice": d, "status": "ok"} for m, s, c, d in rows if (m, s) not in drop]
    )
    sweeps = pd.DataFrame(
        [
            {"dataset": "d", "method": "hm", "lam": lam, "seed": 0, "case_id": "c0", "sdlogj": c, "dice": d}
            for lam, c, d in ((0.9, 0.15, 0.7), (0.5, 0.25, 0.8), (0.1, 0.3, 0.82))
        ]
    )
    return per_case, sweeps


def test_each_arc_has_its_area_over_the_datasets_common_range_with_a_seed_interval():
    from regbench.front import arc_frame, arc_latex, arc_markdown

    per_case, sweeps = _arc_points()
    frame = arc_frame(per_case, sweeps, {"VM λ": ["a", "b", "c"]}, {"hm": "lam"}).set_index("front")
    # The sweep spans 0.15-0.3, the family 0.1-0.4: the common range is the sweep's.
    assert (frame["range_low"] == 0.15).all() and (frame["range_high"] == 0.3).all()
    seed0 = (0.775 * 0.05 + 0.825 * 0.1) / 0.15  # 0.8083: the front at 0.15, 0.2 and 0.3 is 0.75, 0.8, 0.85
    vm = frame.loc["VM λ"]
    assert vm["auc"] == pytest.approx(seed0 - 0.05) and vm["auc_seeds"] == vm["n_seeds"] == 2 and vm["points"] == 3
    half = 12.7062 * 0.1 / np.sqrt(2) / np.sqrt(2)  # t(0.975, 1 df) × sd of (seed0, seed0 − 0.1) / √2
    assert vm["auc_low"] == pytest.approx(seed0 - 0.05 - half, abs=1e-4) and vm["auc_high"] == pytest.approx(seed0 - 0.05 + half, abs=1e-4)
    assert vm["auc_mean_curve"] == pytest.approx(seed0 - 0.05)  # the seeds are parallel: the same area
    hm = frame.loc["hm lam sweep"]
    assert hm["auc"] == pytest.approx((0.75 * 0.1 + 0.81 * 0.05) / 0.15) and hm["n_seeds"] == 1 and np.isnan(hm["auc_low"])
    text = arc_markdown(frame.reset_index(), {"hm": "HyperMorph"}.get)
    assert "| VM λ | 3 | 2 | 0.150–0.300 | 75.83 | [12.30, 139.36] |" in text and "| HyperMorph lam sweep | 3 | 1 | 0.150–0.300 | 77.00 | – |" in text
    latex = arc_latex(frame.reset_index(), str, label="tab:a")
    assert r"\label{tab:a}" in latex and latex.count(r"\\") == len(frame) + 1


def test_a_seed_whose_arc_starts_rougher_narrows_the_common_range_and_one_without_points_is_counted_out():
    from regbench.front import arc_frame, arc_markdown

    per_case, sweeps = _arc_points(drop={("a", 1)})  # seed 1's curve now starts at 0.2: every curve spans 0.2-0.3
    unscored = per_case[per_case["seed"] == 0].assign(seed=2, sdlogj=np.nan)  # a seed with no finite point
    frame = arc_frame(pd.concat([per_case, unscored]), sweeps, {"VM λ": ["a", "b", "c"]}, {"hm": "lam"}).set_index("front")
    assert (frame["range_low"] == 0.2).all() and (frame["range_high"] == 0.3).all() and frame["range_common"].all()
    vm = frame.loc["VM λ"]
    assert vm["auc_seeds"] == 2 and vm["n_seeds"] == 3 and vm["auc"] == pytest.approx((0.825 + 0.725) / 2)  # seeds 0 and 1, 0.2-0.3
    assert frame.loc["hm lam sweep", "auc"] == pytest.approx((0.775 * 0.05 + 0.81 * 0.05) / 0.1)
    assert "| VM λ | 3 | 3 | 0.200–0.300 | 77.50 (2 of 3 seeds) |" in arc_markdown(frame.reset_index(), str)


def test_the_seed_band_spans_the_seeds_fronts_where_two_are_defined():
    from regbench.front import Front, seed_band

    grid, low, high = seed_band([Front.of([0.1, 0.3], [0.6, 0.8]), Front.of([0.2, 0.4], [0.5, 0.9])], n=4)  # costs 0.1 .. 0.4
    assert np.allclose(grid, [0.1, 0.2, 0.3, 0.4])
    assert np.isnan(low[0]) and np.isnan(high[0])  # only the first seed reaches 0.1
    assert np.allclose(low[1:], [0.5, 0.7, 0.8]) and np.allclose(high[1:], [0.7, 0.8, 0.9])  # the first is flat past 0.3


def test_arcs_that_share_no_range_each_get_their_own_span_marked_own():
    from regbench.front import arc_frame, arc_markdown

    per_case, _ = _arc_points()
    rough = pd.DataFrame(
        [{"dataset": "d", "method": "hm", "lam": lam, "seed": 0, "case_id": "c0", "sdlogj": c, "dice": d} for lam, c, d in ((0.9, 1.0, 0.8), (0.1, 2.0, 0.9))]
    )
    frame = arc_frame(per_case, rough, {"VM λ": ["a", "b", "c"]}, {"hm": "lam"}).set_index("front")
    assert not frame["range_common"].any()
    assert (frame.loc["VM λ", "range_low"], frame.loc["VM λ", "range_high"]) == (0.1, 0.4)
    assert frame.loc["hm lam sweep", "auc"] == pytest.approx(0.85)  # 0.8 to 0.9 across 1.0-2.0
    seed0 = (0.75 * 0.1 + 0.85 * 0.2) / 0.3  # the seed-0 front 0.7, 0.8, 0.9 at 0.1, 0.2, 0.4
    assert frame.loc["VM λ", "auc"] == pytest.approx(seed0 - 0.05)
    assert "| hm lam sweep | 2 | 1 | 1.000–2.000 (own) | 85.00 | – |" in arc_markdown(frame.reset_index(), str)


def test_an_arc_whose_seeds_share_no_range_bounds_nothing_and_gets_no_area():
    from regbench.front import arc_frame, arc_markdown

    per_case, _ = _arc_points()
    # Two seeds of a sweep whose curves do not overlap in SDlogJ (0.15-0.25 and 0.5-0.6): no range of its own.
    sweeps = pd.DataFrame(
        [
            {"dataset": "d", "method": "hm", "lam": lam, "seed": seed, "case_id": "c0", "sdlogj": c, "dice": d}
            for seed, points in ((0, ((0.9, 0.15, 0.7), (0.1, 0.25, 0.8))), (1, ((0.9, 0.5, 0.7), (0.1, 0.6, 0.8))))
            for lam, c, d in points
        ]
    )
    frame = arc_frame(per_case, sweeps, {"VM λ": ["a", "b", "c"]}, {"hm": "lam"}).set_index("front")
    assert (frame.loc["VM λ", "range_low"], frame.loc["VM λ", "range_high"]) == (0.1, 0.4) and frame["range_common"].all()
    hm = frame.loc["hm lam sweep"]
    assert np.isnan(hm["auc"]) and hm["auc_seeds"] == 0 and hm["n_seeds"] == 2  # neither seed's curve spans 0.1-0.4
    assert "| hm lam sweep | 2 | 2 | 0.100–0.400 | – (0 of 2 seeds) | – |" in arc_markdown(frame.reset_index(), str)
