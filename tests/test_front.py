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
