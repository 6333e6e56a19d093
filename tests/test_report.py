"""Reports: Table 1/2 structure, bold and daggers, paired statistics, figures, determinism, the paper
comparison, a copied run directory without method code, LaTeX compilation, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from regbench.aggregate import per_case_frame
from regbench.config import load_config
from regbench.errors import DataError
from regbench.report import ReportOptions, write_report
from regbench.runner import run
from regbench.stats import paired_tests

TABLES = ["table1.tex", "table1.md", "table1.csv", "table2.tex", "table2.csv", "stats.csv"]
FIGURES = ["boxplots", "tradeoff", "qualitative", "training"]


DISPLAY = {"initial": "Initial", "voxelmorph-m": "VoxelMorph-m", "gsmorph": "GSMorph", "gs-agr": "GS-Agr"}


def fake_run(path: Path, dataset: str, effects: dict[str, float], n: int = 12, seed: int = 0) -> Path:
    """A run directory with per_case.csv and the manifest's settings and display names: Dice = base + effect +
    noise per pair, the same pairs for all."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.6, 0.8, n)
    rows = []
    for method, effect in effects.items():
        noise = rng.normal(0, 0.01, n)
        for i in range(n):
            dice = float(np.clip(base[i] + effect + noise[i], 0, 1))
            rows.append(
                {
                    "method": method,
                    "dataset": dataset,
                    "case_id": f"s{i:02d}-0",
                    "subject": f"s{i:02d}",
                    "dice": dice,
                    "hd95": 5 - 4 * dice,
                    "mse": 0.02 * (1 - dice),
                    "njd": 0.0 if method == "initial" else 10 * effect**2,
                    "time_s": 0.01,
                    "params": 1968002 if method != "initial" else None,
                    "status": "ok",
                    "reason": "",
                }
            )
    path.mkdir(parents=True)
    per_case_frame(rows).to_csv(path / "per_case.csv", index=False)
    manifest = {
        "fingerprint": {"dataset": dataset, "profile": "paper", "seed": 0},
        "methods": {m: {} for m in effects},
        "method_info": {m: {"display_name": DISPLAY.get(m, m)} for m in effects},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


EFFECTS = {"initial": 0.0, "voxelmorph-m": 0.15, "gsmorph": 0.16, "gs-agr": 0.01}


@pytest.mark.slow
def test_table1_has_one_column_group_per_dataset_bold_best_and_daggers(tmp_path):
    acdc = fake_run(tmp_path / "acdc", "acdc", EFFECTS)
    mnm = fake_run(tmp_path / "mnm", "mnm", EFFECTS, seed=1)
    report = write_report([acdc, mnm], tmp_path / "out", ReportOptions(figures=False))
    tex = (tmp_path / "out" / "table1.tex").read_text()
    assert r"\multicolumn{4}{c}{ACDC} & \multicolumn{4}{c}{M\&M}" in tex and r"\cmidrule(lr){2-5} \cmidrule(lr){6-9}" in tex
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    lines = [line for line in tex.splitlines() if line.startswith(("Initial", "VoxelMorph-m", "GS-Agr", "GSMorph"))]
    assert [line.split(" & ")[0] for line in lines] == ["Initial", "VoxelMorph-m", "GS-Agr", "GSMorph"]  # paper order
    initial, _, agr, gsmorph = (line.split(" & ") for line in lines)
    assert initial[4] == "--" and initial[8].startswith("--")  # no NJD for Initial, as the paper
    assert gsmorph[1].startswith(r"\textbf{")  # best Dice (higher is better)
    assert gsmorph[2].startswith(r"\textbf{")  # best HD95 (lower is better)
    assert r"$^{\dagger}$" in agr[1] and r"$^{\dagger}$" not in gsmorph[1]  # GS-Agr differs from GSMorph
    cells = pd.read_csv(tmp_path / "out" / "table1.csv")
    assert set(cells["dataset"]) == {"acdc", "mnm"} and cells["best"].sum() >= 8
    md = (tmp_path / "out" / "table1.md").read_text()
    assert "| GS-Agr" in md and "†" in md and "ACDC Dice (%)" in md
    assert not report.problems


@pytest.mark.slow
def test_table1_adds_the_flow_error_only_where_the_data_has_a_true_flow(tmp_path):
    acdc = fake_run(tmp_path / "acdc", "acdc", EFFECTS)
    write_report([acdc], tmp_path / "acdc-out", ReportOptions(figures=False))
    assert "EPE" not in (tmp_path / "acdc-out" / "table1.tex").read_text()
    synthetic = fake_run(tmp_path / "synthetic", "synthetic", EFFECTS)
    df = pd.read_csv(synthetic / "per_case.csv")
    df["epe_mm"] = df["method"].map({"initial": 3.0, "voxelmorph-m": 1.2, "gsmorph": 1.5, "gs-agr": 2.5})  # not Dice's order
    df.to_csv(synthetic / "per_case.csv", index=False)
    write_report([synthetic], tmp_path / "synthetic-out", ReportOptions(figures=False))
    tex = (tmp_path / "synthetic-out" / "table1.tex").read_text()
    header = next(line for line in tex.splitlines() if line.startswith("Method"))
    assert header.split(" & ")[-1].startswith("EPE (mm)") and "end-point error of the flow against the ground-truth" in tex
    rows = {line.split(" & ")[0]: line.split(" & ") for line in tex.splitlines() if line.startswith(("VoxelMorph-m", "GSMorph"))}
    assert rows["VoxelMorph-m"][5].startswith(r"\textbf{1.20") and not rows["GSMorph"][5].startswith(r"\textbf")
    assert "EPE (mm)" in (tmp_path / "synthetic-out" / "table1.md").read_text()


def test_statistics_are_scipy_wilcoxon_with_holm(tmp_path):
    per_case = pd.read_csv(fake_run(tmp_path / "r", "acdc", EFFECTS) / "per_case.csv", dtype={"subject": str})
    stats = paired_tests(per_case, ["gsmorph"], ["dice"])
    assert set(stats["method"]) == {"initial", "voxelmorph-m", "gs-agr"}
    a = per_case[per_case["method"] == "gs-agr"].sort_values("subject")["dice"].to_numpy()
    b = per_case[per_case["method"] == "gsmorph"].sort_values("subject")["dice"].to_numpy()
    row = stats[stats["method"] == "gs-agr"].iloc[0]
    assert row["p_value"] == pytest.approx(wilcoxon(a, b).pvalue) and row["n_units"] == row["n_cases"] == 12 and row["unit"] == "subject"
    p = np.sort(stats["p_value"].to_numpy())
    holm = np.minimum(1, np.maximum.accumulate(p * np.arange(len(p), 0, -1)))
    assert np.allclose(np.sort(stats["p_holm"].to_numpy()), holm)
    assert row["median_difference"] < 0 and bool(row["significant"])


@pytest.mark.slow
def test_compare_paper_puts_the_published_numbers_next_to_ours(tmp_path):
    acdc = fake_run(tmp_path / "acdc", "acdc", EFFECTS)
    write_report([acdc], options=ReportOptions(compare_paper=True, figures=False))
    comparison = pd.read_csv(acdc / "report" / "compare_paper.csv")
    row = comparison[(comparison["method"] == "gsmorph") & (comparison["metric"] == "dice")].iloc[0]
    assert row["paper_mean"] == 87.45 and row["paper_std"] == 2.27 and row["unit"] == "%"
    ours = pd.read_csv(acdc / "per_case.csv").query("method == 'gsmorph'")["dice"].mean() * 100
    assert row["ours_mean"] == pytest.approx(ours)
    assert "87.45±2.27" in (acdc / "report" / "compare_paper.md").read_text()
    synthetic = fake_run(tmp_path / "syn", "synthetic", EFFECTS)
    report = write_report([synthetic], options=ReportOptions(compare_paper=True, figures=False))
    assert any("--paper-dataset" in p for p in report.problems)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    config = load_config(None, methods=["initial", "demons", "voxelmorph-m", "gsmorph"], profile="smoke", out=str(out), max_test_pairs=6, figures=True)
    run(config, progress=False)
    return out


@pytest.mark.slow
def test_run_writes_the_report_and_report_again_gives_identical_files(smoke_run, tmp_path):
    report_dir = smoke_run / "report"
    for name in TABLES:
        assert (report_dir / name).stat().st_size > 0, name
    for name in FIGURES:
        for suffix in (".png", ".pdf"):
            assert (report_dir / "figures" / (name + suffix)).stat().st_size > 1000, name + suffix
    before = {p.relative_to(report_dir): p.read_bytes() for p in report_dir.rglob("*") if p.is_file()}
    copied = tmp_path / "copied"
    shutil.copytree(smoke_run, copied)
    shutil.rmtree(copied / "report")
    # A copied run directory, reported by a process that must not import any method plugin.
    code = (
        "import sys; from regbench.cli import main; rc = main(['report', sys.argv[1]]); "
        "loaded = [m for m in sys.modules if m.startswith('regbench.methods') or m == 'ants']; "
        "assert not loaded, loaded; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(copied)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = {p.relative_to(copied / "report"): p.read_bytes() for p in (copied / "report").rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    assert [k for k in before if before[k] != after[k]] == []


@pytest.mark.slow
def test_latex_tables_compile(smoke_run, tmp_path):
    engine = shutil.which("pdflatex") or shutil.which("lualatex")
    if engine is None:
        if os.environ.get("REGBENCH_REQUIRE_LATEX"):
            pytest.fail("REGBENCH_REQUIRE_LATEX is set but no pdflatex is on PATH")
        pytest.skip("no LaTeX engine installed (apt install texlive-latex-base texlive-latex-recommended)")
    grouped = tmp_path / "grouped"  # a caption with every sentence on how sure: shares, tests, groups; a λ in a name
    run = grouped_run(tmp_path)
    df = pd.read_csv(run / "per_case.csv", dtype={"case_id": str, "subject": str})
    pd.concat([df, df[df["method"] == "gsmorph"].assign(method="io-lambda", dice=df["dice"] - 0.01)]).to_csv(run / "per_case.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["method_info"]["io-lambda"] = {"display_name": "IO-λ"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_report([run], grouped, ReportOptions(figures=False, references=("gsmorph",), by="group", resamples=200))
    assert r"IO-$\lambda$" in (grouped / "table1.tex").read_text()
    tables = [smoke_run / "report" / "table1.tex", smoke_run / "report" / "table2.tex", grouped / "table1.tex", grouped / "table1_by_group.tex"]
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
        + "".join(f"\\input{{{table}}}\n" for table in tables)
        + "\\end{document}\n"
    )
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.slow
def test_table_2_lists_parameters_and_milliseconds(tmp_path):
    acdc = fake_run(tmp_path / "acdc", "acdc", EFFECTS)
    write_report([acdc], options=ReportOptions(figures=False))
    tex = (acdc / "report" / "table2.tex").read_text()
    assert r"GSMorph & 1.97M & 10.00$\pm$0.00" in tex and "Initial" not in tex
    assert "milliseconds" in tex and "device" in tex


def test_missing_per_case_is_one_error_naming_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty/per_case.csv does not exist"):
        write_report([tmp_path / "empty"])


def test_missing_required_column_is_named(tmp_path):
    path = fake_run(tmp_path / "r", "acdc", EFFECTS)
    pd.read_csv(path / "per_case.csv").drop(columns="status").to_csv(path / "per_case.csv", index=False)
    with pytest.raises(DataError, match=r"per_case.csv lacks column\(s\) 'status'"):
        write_report([path])


@pytest.mark.slow
def test_missing_metric_and_failed_method_are_reported_and_the_rest_written(tmp_path):
    path = fake_run(tmp_path / "r", "acdc", EFFECTS)
    df = pd.read_csv(path / "per_case.csv", dtype={"reason": str}).drop(columns="hd95")
    failed = df["method"] == "gs-agr"
    df.loc[failed, ["dice", "mse", "njd", "time_s"]] = np.nan
    df.loc[failed, "status"], df.loc[failed, "reason"] = "failed", "RuntimeError: out of memory"
    df.to_csv(path / "per_case.csv", index=False)
    report = write_report([path], options=ReportOptions(figures=True))
    assert any("lacks column 'hd95'" in p for p in report.problems)
    assert any(p.startswith("gs-agr on acdc: all 12 cases failed (RuntimeError: out of memory)") for p in report.problems)
    tex = (path / "report" / "table1.tex").read_text()
    assert "HD95 (mm)" not in tex and "GS-Agr & failed & failed" in tex
    assert (path / "report" / "figures" / "boxplots.png").exists()


@pytest.mark.slow
def test_per_structure_columns_follow_dice_and_hd95(tmp_path):
    path = fake_run(tmp_path / "r", "acdc", EFFECTS)
    df = pd.read_csv(path / "per_case.csv")
    for s in ("lv", "myo", "rv"):
        df[f"dice_{s}"], df[f"hd95_{s}"] = df["dice"], df["hd95"]
    df.to_csv(path / "per_case.csv", index=False)
    write_report([path], options=ReportOptions(per_structure=True, digits=1, figures=False))
    header = next(line for line in (path / "report" / "table1.tex").read_text().splitlines() if line.startswith("Method"))
    assert header.split(" & ")[1:6] == [r"Dice (\%)", r"Dice LV (\%)", r"Dice Myo (\%)", r"Dice RV (\%)", "HD95 (mm)"]
    assert "GSMorph & \\textbf{" in (path / "report" / "table1.tex").read_text()


def test_a_row_over_fewer_pairs_is_marked_not_bold_and_not_tested(tmp_path):
    """A run stopped part-way and resumed with other methods: Demons has 7 of 12 pairs, one more method 1 of 12
    (its mean, the best Dice, would otherwise be bold). Their rows are marked §, never bold, left out of the
    paired tests, and the caption and the report's problems give each one's n."""
    run = fake_run(tmp_path / "run", "acdc", {**EFFECTS, "demons": 0.3, "syn": 0.25})
    df = pd.read_csv(run / "per_case.csv", dtype={"case_id": str, "subject": str})
    keep = ~((df["method"] == "demons") & (df["case_id"] >= "s07")) & ~((df["method"] == "syn") & (df["case_id"] != "s00-0"))
    df[keep].to_csv(run / "per_case.csv", index=False)
    report = write_report([run], tmp_path / "out", ReportOptions(figures=False, references=("gsmorph",)))
    cells = pd.read_csv(tmp_path / "out" / "table1.csv").set_index(["method", "metric"])
    assert cells.loc[("demons", "dice"), "n"] == 7 and cells.loc[("syn", "dice"), "n"] == 1
    assert cells.loc[("demons", "dice"), "mark"] == cells.loc[("syn", "mse"), "mark"] == r"\S"
    assert not cells.loc[["demons", "syn"], "best"].any() and cells.loc[("gsmorph", "dice"), "best"]
    stats = pd.read_csv(tmp_path / "out" / "stats.csv")
    assert not set(stats["method"]) & {"demons", "syn"} and {"initial", "voxelmorph-m", "gs-agr"} <= set(stats["method"])
    tex = (tmp_path / "out" / "table1.tex").read_text()
    assert r"$^{\S}$: over fewer pairs than the table (ACDC: demons 7 of 12; ACDC: syn 1 of 12), so neither bold nor tested." in tex
    demons = next(line for line in tex.splitlines() if line.startswith("demons")).split(" & ")
    assert demons[1].endswith(r"$^{\S}$") and not demons[1].startswith(r"\textbf")
    assert "§" in (tmp_path / "out" / "table1.md").read_text()
    assert [p for p in report.problems if "of the table's 12 pairs" in p] == [
        "demons on acdc scored 7 of the table's 12 pairs: its row is marked § and left out of bold and of the paired tests (run it again with the same settings to score the rest)",
        "syn on acdc scored 1 of the table's 12 pairs: its row is marked § and left out of bold and of the paired tests (run it again with the same settings to score the rest)",
    ]


def test_report_against_an_unknown_method_is_one_error_with_a_did_you_mean(tmp_path, capsys):
    from regbench.cli import main

    run = fake_run(tmp_path / "run", "acdc", EFFECTS)
    assert main(["report", str(run), "--no-figures", "--against", "gsmorf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "regbench: error: --against 'gsmorf' is not a method of this report (did you mean 'gsmorph'?); its methods: gs-agr, gsmorph, initial, voxelmorph-m"
    ]
    assert not (run / "report").exists()
    assert main(["report", str(run), "--no-figures", "--against", "voxelmorph-m"]) == 0


def test_small_things_a_new_user_hits(tmp_path, capsys):
    """A per_case.csv given for its folder; help that hides the profiles or says nothing of positionals; Table 2
    explaining ‡ when nothing trained; the CLI loading torch just to print its help."""
    from regbench.cli import main

    run = fake_run(tmp_path / "run", "acdc", EFFECTS)
    assert main(["report", str(run / "per_case.csv"), "--no-figures"]) == 2
    assert capsys.readouterr().err.strip() == f"regbench: error: {run / 'per_case.csv'} is a file: pass the run folder (the directory that holds per_case.csv)"
    write_report([run], tmp_path / "out", ReportOptions(figures=False))
    assert "ddagger" not in (tmp_path / "out" / "table2.tex").read_text()  # nothing was trained
    for command, expected in (
        (["run"], "{smoke,quick,reproduce,tradeoff,stress,paper}"),
        (["run"], "\nprofiles:\n  smoke"),
        (["report"], "run directories (the folders"),
        (["check-method"], "a registered method's name"),
    ):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert expected in capsys.readouterr().out
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, regbench.cli; print(sorted({'torch', 'scipy', 'pandas'} & set(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


@pytest.mark.slow
def test_report_ndv_puts_ndv_beside_njd_and_names_its_mask(tmp_path):
    run = fake_run(tmp_path / "run", "acdc", EFFECTS)
    df = pd.read_csv(run / "per_case.csv")
    df["ndv"] = df["method"].map({"initial": 0.0, "voxelmorph-m": 0.031, "gsmorph": 0.002, "gs-agr": 0.0})
    df.to_csv(run / "per_case.csv", index=False)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["fingerprint"]["ndv_mask"] = "moving"
    (run / "manifest.json").write_text(json.dumps(manifest))
    write_report([run], tmp_path / "plain", ReportOptions(figures=False))
    assert "NDV" not in (tmp_path / "plain" / "table1.tex").read_text()  # the paper's columns by default
    write_report([run], tmp_path / "ndv", ReportOptions(figures=False, ndv=True))
    tex = (tmp_path / "ndv" / "table1.tex").read_text()
    header = next(line for line in tex.splitlines() if line.startswith("Method"))
    assert [h.split(" (")[0] for h in header.split(" & ")[4:6]] == ["NJD", "NDV"]
    rows = {line.split(" & ")[0]: line.split(" & ") for line in tex.splitlines() if line.startswith(("Initial", "VoxelMorph-m"))}
    assert rows["Initial"][5].startswith("--") and rows["VoxelMorph-m"][5].startswith("0.03")  # a baseline's NDV: a dash
    assert "over the moving image's mask (where the dataset gives one, else its foreground)" in tex and "Liu et al. 2024" in tex


def test_the_caption_says_how_sure_bold_and_marks_are_over_subjects(tmp_path):
    """12 subjects of one slice: the tests are over 12 units, the caption names them, and each bold cell carries the
    share of bootstrap resamples of the subjects in which it stays best (ranks.csv holds every method's ranks)."""
    run = fake_run(tmp_path / "run", "acdc", EFFECTS)
    write_report([run], tmp_path / "out", ReportOptions(figures=False, references=("gsmorph",), resamples=300))
    tex = (tmp_path / "out" / "table1.tex").read_text()
    assert r"$^{\dagger}$: differs from GSMorph (paired Wilcoxon signed-rank test over the 12 subjects, each the mean over its pairs" in tex
    ranks = pd.read_csv(tmp_path / "out" / "ranks.csv")
    dice = ranks[(ranks["metric"] == "dice") & (ranks["rank"] == 1)].set_index("method")["share"]
    assert set(ranks["n_resamples"]) == {300} and set(ranks["n_units"]) == {12} and 0.5 < dice["gsmorph"] <= 1.0
    if dice["gsmorph"] < 1:
        assert f"in which a bold cell stays best (ties included): Dice GSMorph {dice['gsmorph']:.0%}".replace("%", r"\%") in tex
    else:  # the resamples' share is said for the cells that do not always stay best
        assert "bootstrap resamples of the 12 subjects" in tex and "Dice GSMorph" not in tex
    friedman = pd.read_csv(tmp_path / "out" / "friedman.csv").set_index("metric")
    assert friedman.loc["dice", "n_units"] == 12 and friedman.loc["dice", "p_value"] < 1e-3


def grouped_run(tmp_path: Path) -> Path:
    """fake_run's 12 subjects, the even ones in group A, the odd ones in B."""
    run = fake_run(tmp_path / "run", "acdc", EFFECTS)
    df = pd.read_csv(run / "per_case.csv", dtype={"case_id": str, "subject": str})
    df["by_group"] = df["subject"].str[-1].astype(int).map(lambda i: "A" if i % 2 == 0 else "B")
    df.to_csv(run / "per_case.csv", index=False)
    return run


@pytest.mark.slow
def test_report_by_group_tabulates_and_tests_within_each_group(tmp_path):
    report = write_report([grouped_run(tmp_path)], tmp_path / "out", ReportOptions(figures=False, references=("gsmorph",), by="group", resamples=200))
    out = tmp_path / "out"
    assert {"table1_by_group.tex", "table1_by_group.md", "table1_by_group.csv", "stats_by_group.csv", "ranks_by_group.csv"} <= {p.name for p in report.written}
    md = (out / "table1_by_group.md").read_text()
    assert "ACDC: A Dice (%)" in md and "ACDC: B Dice (%)" in md
    stats = pd.read_csv(out / "stats_by_group.csv")
    assert list(stats.columns[:2]) == ["dataset", "group"] and set(stats["dataset"]) == {"acdc"} and set(stats["group"]) == {"A", "B"}
    assert (stats["n_units"] == 6).all() and (stats["unit"] == "subject").all()
    whole = pd.read_csv(out / "stats.csv")
    assert (whole["n_units"] == 12).all()  # the whole table is still over every subject
    assert "test over the 6 subjects of ACDC: A, 6 subjects of ACDC: B" in (out / "table1_by_group.tex").read_text()


def test_report_by_a_group_the_runs_do_not_carry_is_one_error(tmp_path, capsys):
    from regbench.cli import main

    run = grouped_run(tmp_path)
    assert main(["report", str(run), "--no-figures", "--by", "grup"]) == 2
    assert capsys.readouterr().err.strip() == "regbench: error: --by 'grup' is not a group attribute of these runs (did you mean 'group'?); theirs: group"
    plain = fake_run(tmp_path / "plain", "acdc", EFFECTS)
    assert main(["report", str(plain), "--no-figures", "--by", "group"]) == 2
    assert "these runs' cases carry no group attribute" in capsys.readouterr().err
    assert not (plain / "report").exists()


def test_the_report_command_without_flags_builds_the_default_report_options(monkeypatch, tmp_path):
    """The CLI's flags take their defaults from ReportOptions: no flag given, the report gets ReportOptions()."""
    from regbench import cli

    seen = []
    monkeypatch.setattr("regbench.report.write_report", lambda runs, out, options: seen.append(options))
    monkeypatch.setattr(cli, "print_report", lambda report: None)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert seen == [ReportOptions()]
    assert "(default 1000)" in cli.build_parser()._subparsers._group_actions[0].choices["report"].format_help()
