"""What a new user gets wrong, and what must never happen silently: each mistake is one clear message and a
non-zero exit; no wrong number is scored; no finished work is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regbench import ConfigError, Registration, check_method
from regbench.cli import main
from regbench.config import RunConfig
from regbench.errors import DataError
from regbench.interface import validate_images
from regbench.registry import METHODS
from regbench.report import ReportOptions, write_report
from regbench.runner import run
from regbench.store import RunStore

SMOKE = ["--profile", "smoke", "--no-progress"]


class Controlled:
    """A method whose behaviour the test switches: 'ok', 'nan' (one NaN flow pixel), 'raise' or 'odd' (fails on odd slices)."""

    mode = "ok"
    calls: list[tuple[int, int]] = []
    display_name = "Controlled (test)"
    isolate_cases = False  # its mode is switched in this process: cases run here, not in a worker

    def __init__(self, strength: float = 1.0) -> None:
        self.name = "controlled"
        self.strength = strength

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        Controlled.calls.append(fixed.shape)
        mode = Controlled.mode
        if mode == "raise" or (mode == "odd" and int(fixed.sum() * 1000) % 2):
            raise RuntimeError("controlled failure")
        flow = np.zeros((2, *fixed.shape), np.float32)
        if mode == "nan":
            flow[0, 3, 3] = np.nan
        return Registration(moved=moving.copy(), flow=flow)


@pytest.fixture
def controlled():
    METHODS.add("controlled", Controlled)
    Controlled.mode, Controlled.calls = "ok", []
    yield Controlled
    METHODS.remove("controlled")


def cli(*args: str) -> tuple[int, str, str]:
    """main() in this process (registered test methods are visible); (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------ wrong numbers
def test_a_nan_flow_fails_the_case_and_the_run_exits_non_zero(tmp_path, controlled):
    controlled.mode = "nan"
    code, _, err = cli("run", "--methods", "initial,controlled", "--out", str(tmp_path / "r"), *SMOKE)
    df = pd.read_csv(tmp_path / "r" / "per_case.csv")
    bad = df[df.method == "controlled"]
    assert (bad.status == "failed").all() and bad["dice"].isna().all()
    assert bad["reason"].str.contains("flow has 1 non-finite value").all()
    assert code == 1 and "method controlled: every case failed" in err
    table = (tmp_path / "r" / "report" / "table1.md").read_text()
    assert "failed" in table and "**" not in table.split("Controlled (test)")[1].splitlines()[0]


@pytest.mark.slow
def test_same_run_twice_is_read_once_and_runs_of_one_dataset_merge_or_are_refused(tmp_path, controlled):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run(RunConfig(methods=["initial"], profile="smoke", out=str(a)), progress=False, report=False)
    run(RunConfig(methods=["initial", "controlled"], profile="smoke", out=str(b)), progress=False, report=False)
    run(RunConfig(methods=["initial"], profile="smoke", out=str(c), seed=1), progress=False, report=False)
    once = write_report([a], tmp_path / "once", ReportOptions(figures=False))
    twice = write_report([a, a], tmp_path / "twice", ReportOptions(figures=False))
    assert (tmp_path / "once" / "table1.csv").read_text() == (tmp_path / "twice" / "table1.csv").read_text()
    assert any("more than once" in p for p in twice.problems) and not any("more than once" in p for p in once.problems)
    merged = write_report([a, b], tmp_path / "merged", ReportOptions(figures=False))
    cells = pd.read_csv(tmp_path / "merged" / "table1.csv")
    assert set(cells.method) == {"initial", "controlled"} and (cells.n == 12).all()  # 12 pairs, not 24
    assert any("12 case(s) appear in more than one run directory" in p for p in merged.problems)
    with pytest.raises(DataError, match=r"both hold 'synthetic' with different settings \(seed: 0 vs 1\)"):
        write_report([a, c], tmp_path / "refused", ReportOptions(figures=False))


# ------------------------------------------------------------------------------------ lost work
@pytest.mark.slow
def test_failed_cases_are_retried_by_the_next_run_and_good_ones_are_kept(tmp_path, controlled):
    out = tmp_path / "r"
    controlled.mode = "odd"
    code, _, err = cli("run", "--methods", "controlled", "--out", str(out), *SMOKE)
    first = pd.read_csv(out / "per_case.csv")
    n_failed = int((first.status == "failed").sum())
    assert 0 < n_failed < 12 and code == 0 and f"controlled: {n_failed} of 12 case(s) failed (" in err
    controlled.mode, controlled.calls = "ok", []
    code, stdout, _ = cli("run", "--methods", "controlled", "--out", str(out), *SMOKE)
    assert code == 0 and f"controlled: {n_failed} pairs computed, {12 - n_failed} already stored ({n_failed} failed before and retried)" in stdout
    assert len(controlled.calls) == n_failed + 1  # the retried cases and one warm-up; good cases untouched
    second = pd.read_csv(out / "per_case.csv")
    assert len(second) == 12 and (second.status == "ok").all()
    columns = ["case_id", "dice", "hd95", "mse", "njd"]
    kept = first.loc[first.status == "ok", columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(second[columns].merge(kept[["case_id"]]), kept)


def test_a_damaged_line_inside_the_store_is_an_error_not_a_truncation(tmp_path):
    out = tmp_path / "r"
    run(RunConfig(methods=["initial"], profile="smoke", out=str(out)), progress=False, report=False)
    cases = out / "cases.jsonl"
    lines = cases.read_text().splitlines(keepends=True)
    cases.write_text("".join(lines[:3]) + "{garbage\n" + "".join(lines[4:]))
    with pytest.raises(ConfigError, match=r"cases.jsonl line 4 is damaged .* the 8 line\(s\) after it are intact"):
        RunStore(out)
    assert cases.read_text().count("\n") == 12  # nothing truncated


@pytest.mark.slow
def test_a_typo_in_method_options_stops_before_any_work_and_binds_nothing(tmp_path):
    out = tmp_path / "r"
    config = tmp_path / "c.yaml"
    config.write_text("methods: [initial, demons]\nprofile: smoke\nmethod_options:\n  demons: {iteration: [5, 2]}\n")
    code, _, err = cli("run", "--config", str(config), "--out", str(out), "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert "method 'demons' has no option 'iteration' (did you mean 'iterations'?)" in err
    assert not (out / "cases.jsonl").exists() and not (out / "manifest.json").exists()
    config.write_text("methods: [initial, demons]\nprofile: smoke\nmethod_options:\n  demon: {iterations: [5, 2]}\n")
    code, _, err = cli("run", "--config", str(config), "--out", str(out), "--no-progress")
    assert code == 2 and "method_options names unknown method 'demon' (did you mean 'demons'?)" in err
    config.write_text("methods: [initial, demons]\nprofile: smoke\nmethod_options:\n  demons: {iterations: [5, 2]}\n")
    code, stdout, _ = cli("run", "--config", str(config), "--out", str(out), "--no-progress")
    assert code == 0 and "demons: 12 pairs computed" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["methods"]["demons"] == {"iterations": [5, 2]}
    resolved = manifest["method_info"]["demons"]["resolved_options"]
    assert resolved["iterations"] == [5, 2] and resolved["shrink_factors"] == [2, 1] and resolved["variant"] == "diffeomorphic"
    assert manifest["method_info"]["demons"]["provider"].startswith("regbench ")
    assert manifest["method_info"]["demons"]["display_name"] == "Demons"


@pytest.mark.slow
def test_a_method_that_cannot_run_at_all_exits_non_zero(tmp_path, controlled):
    controlled.mode = "raise"
    code, _, err = cli("run", "--methods", "initial,controlled", "--out", str(tmp_path / "r"), *SMOKE)
    assert code == 1 and "method controlled: every case failed (" in err and ": RuntimeError: controlled failure" in err
    assert (pd.read_csv(tmp_path / "r" / "per_case.csv").query("method == 'initial'").status == "ok").all()


class UntrainableModel(Controlled):
    """Trainable, but its training fails: the method cannot run at all."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "untrainable"

    def fit(self, train_pairs, val_pairs, workdir=None):
        raise RuntimeError("out of memory (pretend)")

    def save(self, path):
        pass

    def load(self, path):
        pass


@pytest.mark.slow
def test_a_method_whose_training_fails_exits_non_zero_and_the_others_are_kept(tmp_path, controlled):
    METHODS.add("untrainable", UntrainableModel)
    try:
        code, _, err = cli("run", "--methods", "initial,untrainable", "--out", str(tmp_path / "r"), *SMOKE)
    finally:
        METHODS.remove("untrainable")
    assert code == 1 and "regbench: error: method untrainable did not run: RuntimeError: out of memory (pretend)" in err
    assert (pd.read_csv(tmp_path / "r" / "per_case.csv").status == "ok").sum() == 12  # initial's cases


# ------------------------------------------------------------------------------------ plugin authors
class NonFiniteFlow:
    name = "nonfinite"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        flow = np.zeros((2, *fixed.shape), np.float32)
        flow[1, 5, 5] = np.inf
        return Registration(moved=moving.copy(), flow=flow)


class SwapsChannels:
    """Registers correctly, then reports the flow with its channels swapped (moved image from the right flow)."""

    name = "swaps"

    def register(self, fixed, moving):
        from regbench.methods.demons import SimpleITKDemons

        reg = SimpleITKDemons().register(fixed, moving)
        return Registration(moved=reg.moved, flow=reg.flow[::-1].copy())


def test_check_method_catches_swapped_channels_by_a_known_displacement():
    report = check_method(SwapsChannels())
    failed = {r.name: r.message for r in report.failures}
    assert "recovers a known displacement" in failed and "channels reversed" in failed["recovers a known displacement"]
    assert check_method("demons").ok


def test_check_method_names_the_flow_when_the_flow_is_not_finite():
    failed = {r.name: r.message for r in check_method(NonFiniteFlow()).failures}
    assert failed["finite outputs"] == "flow has 1 non-finite value(s) (NaN/inf) of 8192"
    assert "moved agrees with flow" not in failed  # not repeated in other words


def _plugin_dist(root: Path, module: str, source: str, entry: str) -> Path:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module.replace('_', '-')}-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(f"[regbench.methods]\n{entry}\n")
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    root = tmp_path / "plugins"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    saved = (METHODS._entry_points, dict(METHODS._factories), dict(METHODS._origins), dict(METHODS._providers))
    METHODS._entry_points = None
    yield root
    METHODS._entry_points, METHODS._factories, METHODS._origins, METHODS._providers = saved


def test_plugin_import_failure_and_name_mismatch_are_one_line_each(plugin_dir):
    _plugin_dist(plugin_dir, "broken_plugin", "import does_not_exist_anywhere\n", "broken = broken_plugin")
    code, _, err = cli("check-method", "broken")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "method 'broken' cannot be loaded: entry point 'broken' = 'broken_plugin'" in err and "No module named 'does_not_exist_anywhere'" in err


def test_entry_point_name_must_equal_the_registered_name(plugin_dir):
    source = """
    import numpy as np
    from regbench import Registration, register_method

    @register_method("my-method-v2")
    class Mine:
        name = "my-method-v2"
        def register(self, fixed, moving):
            return Registration(moved=moving, flow=np.zeros((2, *fixed.shape), np.float32))
    """
    _plugin_dist(plugin_dir, "renamed_plugin", source, "my-method = renamed_plugin")
    code, _, err = cli("check-method", "my-method")
    assert code == 2 and "it registered 'my-method-v2' instead" in err and "entry point's name must equal" in err


@pytest.mark.slow
def test_plugin_display_name_and_provider_reach_the_manifest_and_table(tmp_path, plugin_dir):
    source = """
    import numpy as np
    from regbench import Registration, register_method
    from regbench.interface import validate_images

    @register_method("shifty")
    class Shifty:
        name = "shifty"
        display_name = "Shifty (ours)"
        def __init__(self, amount: float = 0.0):
            self.amount = amount
        def register(self, fixed, moving):
            fixed, moving = validate_images(fixed, moving)
            return Registration(moved=moving.copy(), flow=np.full((2, *fixed.shape), self.amount, np.float32))
    """
    _plugin_dist(plugin_dir, "shifty_plugin", source, "shifty = shifty_plugin")
    code, _, _ = cli("run", "--methods", "initial,shifty", "--out", str(tmp_path / "r"), *SMOKE)
    assert code == 0
    info = json.loads((tmp_path / "r" / "manifest.json").read_text())["method_info"]["shifty"]
    assert info == {"display_name": "Shifty (ours)", "provider": "shifty-plugin 2.0", "resolved_options": {"amount": 0.0}}
    assert "| Shifty (ours)" in (tmp_path / "r" / "report" / "table1.md").read_text()


# ------------------------------------------------------------------------------------ outputs people share
@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        run(RunConfig(methods=["initial"], profile="smoke", out=str(tmp_path / "r"), max_test_pairs=2), progress=False)
    finally:
        os.umask(old)
    for name in ("per_case.csv", "summary.csv", "manifest.json", "report/table1.tex", "split.json"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == mode, name


def _two_dataset_report(tmp_path: Path, layout: str) -> Path:
    from test_report import EFFECTS, fake_run

    runs = [fake_run(tmp_path / f"{d}-{layout}", d, EFFECTS, seed=i) for i, d in enumerate(("acdc", "mnm"))]
    out = tmp_path / f"report-{layout}"
    write_report(runs, out, ReportOptions(figures=False, per_structure=True, layout=layout))
    return out / "table1.tex"


def _compile(tmp_path: Path, table: Path, documentclass: str = "\\documentclass{article}") -> str:
    engine = shutil.which("pdflatex")
    if engine is None:
        if os.environ.get("REGBENCH_REQUIRE_LATEX"):
            pytest.fail("REGBENCH_REQUIRE_LATEX is set but no pdflatex is on PATH")
        pytest.skip("no LaTeX engine installed (apt install texlive-latex-base texlive-latex-recommended)")
    doc = tmp_path / f"{table.parent.name}.tex"
    doc.write_text(f"{documentclass}\n\\usepackage{{booktabs}}\n\\usepackage{{graphicx}}\n\\begin{{document}}\n\\input{{{table}}}\n\\end{{document}}\n")
    done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    return (tmp_path / doc.with_suffix(".log").name).read_text(errors="replace")


@pytest.mark.slow
def test_wide_table1_fits_the_page_with_fit_and_wide_layouts(tmp_path):
    assert "Overfull \\hbox" in _compile(tmp_path, _two_dataset_report(tmp_path, "plain"))  # the problem
    for layout, documentclass in (("fit", "\\documentclass{article}"), ("wide", "\\documentclass[twocolumn]{article}"), ("auto", "\\documentclass{article}")):
        table = _two_dataset_report(tmp_path, layout)
        assert ("table*" in table.read_text()) == (layout == "wide")
        assert "Overfull \\hbox" not in _compile(tmp_path, table, documentclass), layout


# ------------------------------------------------------------------------------------ interruptions
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["joblib", pytest.param("dask", marks=pytest.mark.slow)])
def test_ctrl_c_stops_a_parallel_run_with_one_line_and_it_resumes(tmp_path, with_plugins, backend):
    """Also under dask (a LocalCluster): the store grows case by case while the run goes, Ctrl-C cancels the
    cluster's pending tasks with one line, and the rerun computes only the missing cases."""
    if backend == "dask":
        pytest.importorskip("distributed")
    out = tmp_path / "r"
    env = {**os.environ, "REGBENCH_TEST_DELAY": "0.3"}
    args = [sys.executable, "-m", "regbench.cli", "run", "--methods", "slow-initial", "--jobs", "2", "--backend", backend, "--out", str(out), *SMOKE]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not ((out / "cases.jsonl").exists() and (out / "cases.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "regbench: interrupted; finished cases are stored, run the same command to resume"
    stored = (out / "cases.jsonl").read_text().count("\n")
    assert 2 <= stored < 12
    done = subprocess.run(args, env={**env, "REGBENCH_TEST_DELAY": "0"}, capture_output=True, text=True)
    assert done.returncode == 0 and f"slow-initial: {12 - stored} pairs computed, {stored} already stored" in done.stdout


# ------------------------------------------------------------------------------------ the mistakes table
def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    if os.path.isdir("/sys") and not os.access("/sys", os.W_OK) or _unwritable("/sys"):
        return Path("/sys/regbench-out")
    pytest.skip("no read-only folder to test with (running as root, /sys writable)")


def _unwritable(path: str) -> bool:
    try:
        os.mkdir(os.path.join(path, "regbench-probe"))
    except OSError:
        return True
    os.rmdir(os.path.join(path, "regbench-probe"))
    return False


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "r"
    run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False)
    return out


MISTAKES = [
    # (id, argv (RUN = a finished run, TMP = a fresh folder, FILE = a regular file), exit code, message)
    ("max-pairs 0", ["run", "--methods", "initial", "--max-pairs", "0", "--out", "TMP"], 2, "max_test_pairs (--max-pairs) must be a positive integer, got 0"),
    ("max-pairs -1", ["run", "--methods", "initial", "--max-pairs", "-1", "--out", "TMP"], 2, "must be a positive integer, got -1"),
    ("methods ,", ["run", "--methods", ",", "--out", "TMP"], 2, "no method given"),
    ("methods typo", ["run", "--methods", "gsmorh", "--out", "TMP"], 2, "unknown method 'gsmorh'. Did you mean 'gsmorph'"),
    ("profile typo", ["run", "--profile", "quik"], 2, "invalid choice: 'quik'"),
    ("jobs 0", ["run", "--methods", "initial", "--jobs", "0", "--out", "TMP"], 2, "jobs must be a positive integer or -1"),
    ("seed not a number", ["run", "--seed", "abc"], 2, "invalid int value: 'abc'"),
    ("negative seed", ["run", "--methods", "initial", "--seed", "-3", "--out", "TMP"], 2, "seed must be a non-negative integer, got -3"),
    ("out is a file", ["run", "--methods", "initial", "--out", "FILE"], 2, "is a file, not a directory"),
    ("out read-only", ["run", "--methods", "initial", "--out", "READONLY"], 2, "is not writable"),
    ("device gpu", ["run", "--methods", "initial", "--device", "gpu", "--out", "TMP"], 2, "device must be 'auto', 'cpu' or 'cuda[:N]', got 'gpu'"),
    ("device cuda, no GPU", ["run", "--methods", "initial", "--device", "cuda", "--out", "TMP"], 2, "device 'cuda' asked for, but CUDA is not available here"),
    ("dataset typo", ["run", "--dataset", "acdcc", "--methods", "initial", "--out", "TMP"], 2, "unknown dataset 'acdcc'. Did you mean 'acdc'"),
    ("acdc without root", ["run", "--dataset", "acdc", "--methods", "initial", "--out", "TMP"], 2, "--root"),
    ("root missing", ["run", "--dataset", "acdc", "--root", "TMP/nowhere", "--methods", "initial", "--out", "TMP"], 2, "acdc root folder does not exist"),
    ("config missing", ["run", "--config", "TMP/none.yaml"], 2, "none.yaml does not exist"),
    ("config is a folder", ["run", "--config", "TMP"], 2, "cannot be read"),
    (
        "other settings, same out",
        ["run", "--methods", "initial", "--profile", "smoke", "--max-pairs", "2", "--seed", "5", "--out", "RUN"],
        2,
        "holds a run with other settings (seed: 0 there, 5 now)",
    ),
    (
        "other max-pairs, same out",
        ["run", "--methods", "initial", "--profile", "smoke", "--max-pairs", "3", "--out", "RUN"],
        2,
        "holds a run with other settings (max_test_pairs: 2 there, 3 now)",
    ),
    ("report: no run", ["report", "TMP"], 2, "per_case.csv does not exist"),
    ("report: same dataset, other settings", ["report", "RUN", "OTHER"], 2, "with different settings (seed: 0 vs 7)"),
    ("report: digits -1", ["report", "RUN", "--digits", "-1"], 2, "--digits must be 0 or more"),
    ("report: alpha 5", ["report", "RUN", "--alpha", "5"], 2, "--alpha must be between 0 and 1, got 5.0"),
    ("report: layout typo", ["report", "RUN", "--layout", "narrow"], 2, "invalid choice: 'narrow'"),
    ("report: out is a file", ["report", "RUN", "--out", "FILE"], 2, "is a file, not a directory"),
    ("report: read-only out", ["report", "RUN", "--out", "READONLY"], 2, "use --out DIR to write the report elsewhere"),
    ("check-method typo", ["check-method", "demon"], 2, "unknown method 'demon'. Did you mean 'demons'"),
    ("train a classical method", ["train", "initial", "--profile", "smoke", "--out", "TMP"], 2, "method 'initial' is not trainable"),
    ("data check on synthetic", ["data", "check", "--dataset", "synthetic"], 2, "is not read from disk"),
    ("perf pairs 0", ["perf", "--pairs", "0"], 2, "--pairs must be at least 1, got 0"),
    ("perf size 8", ["perf", "--size", "8"], 2, "--size must be at least 32, got 8"),
    ("perf compile mode typo", ["perf", "--compile-mode", "max-autotune"], 2, "invalid choice: 'max-autotune'"),
    ("unknown command", ["runn"], 2, "invalid choice: 'runn'"),
    (
        "seeds not numbers",
        ["run", "--methods", "gsmorph", "--seeds", "a,b", "--out", "TMP"],
        2,
        "--seeds must be comma-separated non-negative integers (e.g. 0,1,2), got 'a,b'",
    ),
    ("seeds repeated", ["run", "--methods", "gsmorph", "--seeds", "1,1", "--out", "TMP"], 2, "seeds has duplicates: [1, 1]"),
    ("YAML lr as text", ["run", "--config", "LRYAML", "--out", "TMP"], 2, "lr must be a positive number, got '5e-3' (YAML reads 5e-3 as text: write 5.0e-3)"),
]


@pytest.mark.parametrize("argv, code, message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_clear_message_and_a_non_zero_exit(argv, code, message, tmp_path, finished_run, tmp_path_factory):
    import torch

    if "--device" in argv and "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    other = tmp_path / "other"
    if "OTHER" in argv:
        run(RunConfig(methods=["initial"], profile="smoke", out=str(other), max_test_pairs=2, seed=7), progress=False, report=False)
    lr_yaml = tmp_path / "lr.yaml"
    lr_yaml.write_text("methods: [gsmorph]\nprofile: smoke\nmethod_options:\n  gsmorph: {lr: 5e-3}\n")
    places = {"TMP": str(tmp_path), "RUN": str(finished_run), "FILE": str(a_file), "OTHER": str(other), "LRYAML": str(lr_yaml)}
    if "READONLY" in argv:
        places["READONLY"] = str(_read_only_dir(tmp_path))
    argv = [places.get(a, a.replace("TMP", str(tmp_path))) for a in argv]
    before = sorted(p.name for p in finished_run.iterdir())
    got, _, err = cli(*argv)
    assert got == code, err
    assert message in err, err
    assert "Traceback" not in err and sum(line.startswith("regbench") for line in err.splitlines()) == 1, err  # argparse adds usage
    assert sorted(p.name for p in finished_run.iterdir()) == before


@pytest.mark.slow
def test_smoke_models_are_small_and_their_validation_curves_truthful(tmp_path):
    out = tmp_path / "r"
    run(RunConfig(methods=["gsmorph", "hypermorph"], profile="smoke", out=str(out), max_test_pairs=2, sweep=False), progress=False, report=False)
    assert (out / "models" / "hypermorph" / "final.pt").stat().st_size < 30e6  # 0.5 GB with the paper's 64 units
    for method in ("gsmorph", "hypermorph"):
        history = pd.read_csv(out / "models" / method / "history.csv")
        # Validation runs on BatchNorm statistics re-estimated as after training (else Dice is ~0 at smoke).
        assert (history["val_dice"] > 0.6).all(), (method, history)
