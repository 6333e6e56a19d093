"""regbench.levels: metrics against a declared level of the test data (stress curves)."""

import numpy as np
import pandas as pd
import pytest

from regbench.levels import level_frame, retrained_rows, stress_latex, stress_markdown, stress_order


def _cases():
    """Two methods at motion levels 0.5 and 2 on two subjects (a pair each); ``deep`` trained at two seeds."""
    rows = []
    for level, drop in (("0.5", 0.0), ("2", 0.3)):
        for subject, offset in (("s1", 0.0), ("s2", 0.1)):
            case = f"{subject}-0+motion{level}"
            rows.append({"method": "initial", "seed": np.nan, "dice": 0.7 - drop + offset, "hd95": 5.0 + 10 * drop})
            for seed, noise in ((0, 0.02), (1, -0.02)):
                rows.append({"method": "deep", "seed": seed, "dice": 0.9 - drop / 3 + offset + noise, "hd95": 3.0 + drop})
            for row in rows[-3:]:
                row.update(dataset="synthetic", case_id=case, subject=subject, by_motion=level, status="ok")
    rows.append({"dataset": "synthetic", "method": "initial", "seed": np.nan, "case_id": "x+motion2", "subject": "s3", "by_motion": "2", "status": "failed"})
    return pd.DataFrame(rows)


def test_each_point_is_the_mean_over_pairs_of_the_seed_means_with_the_seeds_spread():
    frame = level_frame(_cases(), "motion").set_index(["method", "level"])
    assert list(frame.index) == [("deep", 0.5), ("deep", 2.0), ("initial", 0.5), ("initial", 2.0)]  # levels as numbers, in order
    initial = frame.loc[("initial", 2.0)]
    assert initial["dice_mean"] == pytest.approx(0.45) and initial["n_pairs"] == 2 and initial["n_subjects"] == 2  # the failed case: not a point
    assert initial["dice_std"] == pytest.approx(np.std([0.4, 0.5], ddof=1)) and initial["n_seeds"] == 1 and np.isnan(initial["dice_seed_low"])
    deep = frame.loc[("deep", 2.0)]
    assert deep["dice_mean"] == pytest.approx(0.85) and deep["n_seeds"] == 2  # the seeds' noise cancels in each pair's mean
    assert deep["dice_seed_low"] == pytest.approx(0.83) and deep["dice_seed_high"] == pytest.approx(0.87)
    assert "epe_mm_mean" not in frame and level_frame(_cases(), "vendor").empty  # absent metrics and levels: nothing


def test_the_tables_put_levels_in_columns_and_methods_in_rows_in_table_units():
    frame = level_frame(_cases(), "motion")
    names = {"deep": "Deep", "initial": "Initial"}
    text = stress_markdown(frame, "motion", "motion (× as drawn)", ["initial", "deep"], names.get, str)
    assert "### Dice (%) against motion (× as drawn): synthetic" in text and "| Method | 0.5 | 2 |" in text
    assert "| Initial | 75.00 ± 7.07 | 45.00 ± 7.07 |" in text and "| Deep | 95.00 ± 7.07 | 85.00 ± 7.07 |" in text
    assert "### HD95 (mm) against motion" in text and "| Initial | 5.00 ± 0.00 | 8.00 ± 0.00 |" in text
    # A method whose case failed at a level: its cell says over how many of the level's pairs.
    cases = _cases()
    failed = (cases["method"] == "deep") & (cases["case_id"] == "s2-0+motion2")
    cases.loc[failed, "status"] = "failed"
    text = stress_markdown(level_frame(cases, "motion"), "motion", "motion (× as drawn)", ["initial", "deep"], names.get, str)
    assert "| Deep | 95.00 ± 7.07 | 80.00 (1 of 2) |" in text and "| Initial | 75.00 ± 7.07 | 45.00 ± 7.07 |" in text
    latex = stress_latex(frame, "motion", "motion (× as drawn)", ["initial", "deep"], names.get, str, "tab:s")
    assert r"\label{tab:s-dice}" in latex and r"\label{tab:s-hd95}" in latex and r"Dice (\%) against motion" in latex
    assert r"Initial & 75.00 $\pm$ 7.07 & 45.00 $\pm$ 7.07 \\" in latex


def test_retrained_rows_take_each_level_from_the_run_trained_at_it():
    own = _cases()
    half = own[own["by_motion"] == "0.5"].assign(dice=0.99)  # a run retrained at 0.5: its own scores
    half = pd.concat([half, half.assign(by_motion="2", case_id="stray")])  # a value it was not trained at: not read
    rows = retrained_rows(own, {"motion": {"0.5": half, "2": None}}, ["deep"])
    assert set(rows["method"]) == {"deep+retrained"} and "stray" not in set(rows["case_id"])
    at_half, at_two = rows[rows["by_motion"] == "0.5"], rows[rows["by_motion"] == "2"]
    assert len(at_half) == 4 and (at_half["dice"] == 0.99).all()  # two pairs × two seeds, from the level run
    own_deep_two = own[(own["method"] == "deep") & (own["by_motion"] == "2")]
    assert at_two["dice"].tolist() == own_deep_two["dice"].tolist()  # "." : the run's own models were trained at 2
    assert stress_order(["deep", "voxelmorph-m+retrained", "initial", "deep+retrained", "voxelmorph-m"]) == [
        "initial",
        "voxelmorph-m",
        "voxelmorph-m+retrained",
        "deep",
        "deep+retrained",
    ]  # paper order (a name it does not know last), each retrained key after its method
    frame = level_frame(pd.concat([own, rows]), "motion")
    names = {"deep": "Deep", "initial": "Initial", "deep+retrained": "Deep (retrained per level)"}
    text = stress_markdown(frame, "motion", "motion", stress_order(frame["method"]), names.get, str)
    assert "| Deep (retrained per level) | 99.00 ± 0.00 | 85.00 ± 7.07 |" in text


@pytest.mark.slow
def test_a_run_with_motion_levels_writes_the_stress_table_and_figure(tmp_path, capsys):
    """The declared level reaches the plan, the manifest, the stress table and its figure, and ``--by`` (about 8 s: a
    whole run of two methods, figures drawn because they are what is tested)."""
    import json

    from regbench.cli import main

    run = tmp_path / "run"
    args = ["run", "--profile", "smoke", "--methods", "initial,demons", "--dataset-option", "test_motion=[0.5, 1, 2]", "--out", str(run), "--no-progress"]
    assert main([*args, "--dry-run"]) == 0
    assert "  levels: motion (motion (× as drawn)): the report draws each metric against it" in capsys.readouterr().out
    assert main([*args, "--figures"]) == 0
    assert json.loads((run / "manifest.json").read_text())["dataset_info"]["levels"] == {"motion": "motion (× as drawn)"}
    frame = pd.read_csv(run / "report" / "stress_motion.csv")
    assert sorted(frame["level"].unique()) == [0.5, 1.0, 2.0] and set(frame["method"]) == {"initial", "demons"}
    assert (frame.groupby("method")["n_pairs"].sum() == 12).all()  # the smoke profile's 12 pairs: 4 slices at each level
    initial = frame[frame["method"] == "initial"].set_index("level")["dice_mean"]
    assert initial[0.5] > initial[1.0] > initial[2.0]  # the overlap left to recover shrinks as the motion grows
    demons = frame[frame["method"] == "demons"].set_index("level")["dice_mean"]
    assert (demons > initial).all()
    assert "| Method | 0.5 | 1 | 2 |" in (run / "report" / "stress_motion.md").read_text()
    assert (run / "report" / "figures" / "stress_motion.png").stat().st_size > 10_000
    assert main(["report", str(run), "--by", "motion", "--no-figures"]) == 0


@pytest.mark.slow
def test_the_stress_and_arc_tables_compile(tmp_path):
    """Both new LaTeX tables through pdflatex (the ±, ×, λ and – their cells and captions hold)."""
    import os
    import shutil
    import subprocess

    from regbench.front import arc_frame, arc_latex

    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    if engine is None:
        if os.environ.get("REGBENCH_REQUIRE_LATEX"):
            pytest.fail("REGBENCH_REQUIRE_LATEX is set but no pdflatex is on PATH")
        pytest.skip("no LaTeX engine installed (apt install texlive-latex-base texlive-latex-recommended)")
    stress = stress_latex(level_frame(_cases(), "motion"), "motion", "motion (× as drawn)", ["initial", "deep"], str, str, "tab:s")
    points = pd.DataFrame(
        [
            {"dataset": "d", "method": m, "seed": s, "case_id": "c", "sdlogj": c, "dice": d, "status": "ok"}
            for m, s, c, d in [("a", 0, 0.1, 0.7), ("b", 0, 0.3, 0.8), ("a", 1, 0.1, 0.6), ("b", 1, 0.3, 0.75)]
        ]
    )
    arc = arc_latex(arc_frame(points, pd.DataFrame(), {"VoxelMorph λ grid": ["a", "b"]}, {}), str)
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + stress + "\n" + arc + "\n\\end{document}\n")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.slow
def test_retrain_per_level_trains_again_at_each_other_level_and_reports_it_beside(tmp_path, capsys, with_plugins):
    """``--retrain-per-level`` (about 6 s: a run and its level run, of a trainable identity): planned, a run at the
    level its own training is not at, rows of its own in the stress table; refused where there is nothing to retrain."""
    import json

    from regbench.cli import main

    run = tmp_path / "run"
    args = ["run", "--profile", "smoke", "--methods", "initial,trained-identity", "--out", str(run), "--no-progress", "--no-figures"]
    levels = ["--dataset-option", "test_motion=[0.5, 1]", "--retrain-per-level"]
    assert main([*args, *levels, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "retrained per level: trained-identity\n" in plan and f"  motion 0.5: 6 pairs, trained and scored in {run / 'retrained' / 'motion-0.5'}" in plan
    assert "  motion 1: 6 pairs, this run's own models (its training pairs are drawn at it)" in plan
    assert main([*args, *levels]) == 0
    level_run = run / "retrained" / "motion-0.5"
    assert (level_run / "models" / "trained-identity" / "fitted_in.txt").is_file() and not (run / "retrained" / "motion-1").exists()
    manifest = json.loads((level_run / "manifest.json").read_text())
    assert manifest["fingerprint"]["dataset_options"]["motion"] == 0.5 and list(manifest["methods"]) == ["trained-identity"]
    frame = pd.read_csv(run / "report" / "stress_motion.csv").set_index(["method", "level"])
    assert frame.loc[("trained-identity+retrained", 0.5), "n_pairs"] == frame.loc[("trained-identity", 0.5), "n_pairs"] == 6
    assert ("initial+retrained", 0.5) not in frame.index  # nothing trained, nothing retrained
    # The identity leaves each pair as it is: retrained or not, the same scores on the same cases.
    assert frame.loc[("trained-identity+retrained", 0.5), "dice_mean"] == pytest.approx(frame.loc[("initial", 0.5), "dice_mean"])
    assert "| trained-identity (retrained per level) |" in (run / "report" / "stress_motion.md").read_text()
    smoke = ["run", "--profile", "smoke", "--no-progress", "--dry-run"]
    assert main([*smoke, "--methods", "initial,trained-identity", "--out", str(tmp_path / "x"), "--retrain-per-level"]) == 2
    assert "retrain_per_level: the test pairs of dataset 'synthetic' carry no level it declares" in capsys.readouterr().err
    assert main([*smoke, "--methods", "initial", "--out", str(tmp_path / "y"), *levels]) == 2
    assert "retrain_per_level retrains the run's trained methods, and none of initial is trained" in capsys.readouterr().err
