"""The two stored contracts: the run directory (one module spells it; a golden directory pins its format) and the
package's import graph (no cycle)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from import_graph import DOT_FILE, ROOT, find_cycle, import_graph, package_modules, to_dot
from regbench import rundir
from regbench.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke-run"
TABLES = ["stats.csv", "ranks.csv", "friedman.csv", "table1.csv", "table1.md", "table1.tex", "table2.csv", "table2.tex"]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "regbench.rundir" in graph["regbench.runner"]  # the walk sees the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_picture_matches_the_source():
    """docs/import-graph.dot (and the SVG drawn from it) is the picture of today's imports: redraw it with
    `python tests/import_graph.py` when they change."""
    assert DOT_FILE.read_text() == to_dot(import_graph()), "stale docs/import-graph.dot: run python tests/import_graph.py"


# Names of the run directory's files and folders and the manifest's keys: only regbench.rundir spells them.
RUN_DIRECTORY_LITERALS = {
    rundir.CASES_FILE,
    rundir.MANIFEST_FILE,
    rundir.PER_CASE_FILE,
    rundir.SUMMARY_FILE,
    rundir.SPLIT_FILE,
    rundir.LOCK_FILE,
    rundir.FINAL_MODEL_FILE,
    rundir.CHECKPOINT_FILE,
    rundir.HISTORY_FILE,
    rundir.MODELS_DIR,
    rundir.CURVES_DIR,
    rundir.EXAMPLES_DIR,
    rundir.SWEEP_SUFFIX,
    "fingerprint",
    "method_info",
    "methods_params",
    "format_version",
    "dataset_info",
    "test_pairs",
}


def test_the_method_catalogue_matches_what_the_modules_declare():
    """The dry run describes built-in methods by bench/catalogue.json; it must say what importing them says."""
    from regbench import catalogue

    assert json.loads(catalogue.FILE.read_text()) == json.loads(catalogue.text(catalogue.collect())), (
        "bench/catalogue.json is stale: run `python -m regbench.catalogue` and commit it"
    )
    declared = catalogue.read()
    assert set(declared) == set(catalogue.METHODS._builtins)
    assert declared["voxelmorph-m"].meta.profile_options("smoke", dims=3) == catalogue.METHODS.meta("voxelmorph-m").profile_options("smoke", dims=3)


def test_only_the_run_directory_module_spells_its_paths_and_manifest_keys():
    found = []
    for module, path in package_modules().items():
        if module == "regbench.rundir" or not module.startswith("regbench."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hits = [name for name in RUN_DIRECTORY_LITERALS if node.value == name or f"/{name}" in node.value or f"{name}/" in node.value]
                if hits and not _in_docstring_or_help(node, path):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def _in_docstring_or_help(node: ast.Constant, path: Path) -> bool:
    """Prose (docstrings, --help texts, messages) may name a file; only a lone literal is a path or key."""
    return " " in node.value


# ---------------------------------------------------------------------------------------- golden run
def test_the_golden_run_directory_reports_byte_identical_tables(tmp_path):
    """A finished smoke run of initial and voxelmorph-s on 4 pairs (format 2; the model's weights left out): today's report
    must read it and write the same tables, byte for byte. A change here is a format change: bump
    FORMAT_VERSION, migrate, and regenerate the golden directory on purpose."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    shutil.rmtree(run / rundir.REPORT_DIR)
    assert main(["report", str(run), "--no-figures", "--against", "voxelmorph-s"]) == 0
    for name in TABLES:
        assert (run / rundir.REPORT_DIR / name).read_bytes() == (GOLDEN / rundir.REPORT_DIR / name).read_bytes(), name


def test_a_format_1_manifest_is_migrated_and_reports_the_same(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    manifest = json.loads((run / rundir.MANIFEST_FILE).read_text())
    del manifest["format_version"], manifest["dataset_info"]  # what a format-1 directory lacks
    (run / rundir.MANIFEST_FILE).write_text(json.dumps(manifest))
    migrated = rundir.read_manifest(run)
    assert migrated is not None and migrated.format_version == rundir.FORMAT_VERSION
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--no-figures", "--against", "voxelmorph-s"]) == 0
    # the dataset's display name of format 1 is the dataset's name: the Markdown and LaTeX say "synthetic"
    assert (tmp_path / "out" / "table1.csv").read_bytes() == (GOLDEN / rundir.REPORT_DIR / "table1.csv").read_bytes()


def test_a_format_2_run_directory_resumes_as_format_3_without_recomputing_a_case(tmp_path, capsys):
    """Format 2 keyed a case by subject and slice; resumed, its cases are read by their case ids (SUBJECT-SLICE),
    none is computed again, the tables are rewritten in format 3 and report the same numbers."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    assert json.loads((run / rundir.MANIFEST_FILE).read_text())["format_version"] == 2
    before = (run / rundir.CASES_FILE).read_bytes()
    args = ["run", "--methods", "initial", "--profile", "smoke", "--max-pairs", "4", "--out", str(run), "--no-progress"]
    assert main(args) == 0
    assert (run / rundir.CASES_FILE).read_bytes() == before  # nothing recomputed, nothing appended
    manifest = rundir.read_manifest(run)
    assert manifest is not None and manifest.format_version == 3 == rundir.FORMAT_VERSION
    assert manifest.dims == 2 and manifest.labels == {"LV": 3, "Myo": 2, "RV": 1}
    table = (run / rundir.PER_CASE_FILE).read_text().splitlines()
    assert table[0].startswith("method,dataset,case_id,subject,seed,") and ",slice," not in table[0]
    assert table[1].startswith("initial,synthetic,synth006-0,synth006,,")
    shutil.rmtree(run / rundir.REPORT_DIR)
    assert main(["report", str(run), "--no-figures", "--against", "voxelmorph-s"]) == 0
    for name in ("stats.csv", "table1.csv"):
        assert (run / rundir.REPORT_DIR / name).read_bytes() == (GOLDEN / rundir.REPORT_DIR / name).read_bytes(), name
    # The resumed run records its images' geometry, which format 2 did not: the caption gains that one sentence.
    geometry = r" Pixel spacing 3 $\times$ 3 mm along array axes 0, 1."
    tex = (run / rundir.REPORT_DIR / "table1.tex").read_text()
    assert geometry in tex and tex.replace(geometry, "") == (GOLDEN / rundir.REPORT_DIR / "table1.tex").read_text()
    assert sorted(p.name for p in (run / "examples" / "initial").iterdir()) == ["synth006-0.npz", "synth006-1.npz"]


def test_a_newer_format_is_refused_in_one_line_naming_both_versions(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    manifest = json.loads((run / rundir.MANIFEST_FILE).read_text())
    manifest["format_version"] = rundir.FORMAT_VERSION + 1
    (run / rundir.MANIFEST_FILE).write_text(json.dumps(manifest))
    assert main(["report", str(run), "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"run-directory format {rundir.FORMAT_VERSION + 1}" in err[0]
    assert f"formats 1 to {rundir.FORMAT_VERSION}" in err[0] and str(run / rundir.MANIFEST_FILE) in err[0]
    assert main(["run", "--methods", "initial", "--profile", "smoke", "--max-pairs", "2", "--out", str(run), "--no-progress"]) == 2
    assert "upgrade regbench" in capsys.readouterr().err


@pytest.mark.parametrize("column", ["dice", "hd95_rv", "njd", "epe_mm", "time_s"])
def test_per_case_columns_come_from_the_metric_registry(column):
    from regbench.metrics import METRICS

    assert column in METRICS and column in rundir.PER_CASE_COLUMNS
    assert rundir.PER_CASE_COLUMNS[len(rundir.KEY_COLUMNS) : len(rundir.KEY_COLUMNS) + len(METRICS)] == list(METRICS)
