"""The runner end to end: files written, resume after a kill, refusals, failing cases recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from regbench import ConfigError, RegistryError
from regbench.config import RunConfig, load_config
from regbench.execution import driver_threads
from regbench.runner import run

RUN_FILES = ("per_case.csv", "summary.csv", "manifest.json", "report/table1.tex", "report/table2.tex", "report/stats.csv")


def cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench.cli", *args], capture_output=True, text=True, env=env, check=check)


@pytest.mark.slow
def test_smoke_run_writes_the_tables_and_the_report(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--dataset", "synthetic", "--methods", "initial", "--profile", "smoke", "--out", str(out), "--no-progress")
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    df = pd.read_csv(out / "per_case.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(df) == manifest["test_pairs"] == 12  # smoke profile: at most 12 test pairs
    assert df[["case_id"]].drop_duplicates().shape[0] == len(df)
    assert (df["status"] == "ok").all()
    assert 0.4 < df["dice"].mean() < 0.75  # the synthetic pairs' initial overlap
    assert (df["njd"] == 0).all() and df["params"].isna().all()
    assert manifest["environment"]["packages"]["torch"]
    assert manifest["fingerprint"]["dataset_options"]["image_size"] == 64
    table = (out / "report" / "table1.tex").read_text()
    assert r"\toprule" in table and "Initial" in table and r"$\pm$" in table
    assert "initial" in proc.stdout and "table1.tex" in proc.stdout
    assert (out / "examples" / "initial").is_dir() and len(list((out / "examples" / "pairs").glob("*.npz"))) == 2


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["time_s"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_table(tmp_path, with_plugins):
    env = {**os.environ, "REGBENCH_TEST_DELAY": "0.25"}
    args = ["run", "--methods", "initial,slow-initial", "--profile", "smoke", "--no-progress"]
    reference = tmp_path / "reference"
    cli(*args, "--out", str(reference), env={**env, "REGBENCH_TEST_DELAY": "0"})

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "regbench.cli", *args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = out / "cases.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if cases.exists() and sum(1 for line in cases.read_text().splitlines() if '"slow-initial"' in line) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = cases.read_text().count("\n")
    assert 12 < stored < 24, "the kill should land part-way through slow-initial"
    assert not (out / "per_case.csv").exists()

    resumed = cli(*args, "--out", str(out), env=env)
    assert f"slow-initial: {24 - stored} pairs computed, {stored - 12} already stored" in resumed.stdout
    a, b = pd.read_csv(reference / "per_case.csv"), pd.read_csv(out / "per_case.csv")
    pd.testing.assert_frame_equal(_stable(a), _stable(b))


@pytest.mark.slow
def test_torn_last_line_is_dropped_and_recomputed(tmp_path):
    out = tmp_path / "run"
    config = RunConfig(methods=["initial"], profile="smoke", out=str(out))
    run(config, progress=False)
    cases = out / "cases.jsonl"
    lines = cases.read_text().splitlines(keepends=True)
    cases.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # killed mid-write
    result = run(config, progress=False)
    assert result.evaluated["initial"] == 7 and result.skipped["initial"] == 5
    assert len(pd.read_csv(out / "per_case.csv")) == 12


@pytest.mark.slow
def test_adding_methods_is_allowed_other_settings_are_refused(tmp_path, with_plugins):
    out = tmp_path / "run"
    run(RunConfig(methods=["initial"], profile="smoke", out=str(out)), progress=False)
    os.environ["REGBENCH_TEST_DELAY"] = "0"
    result = run(RunConfig(methods=["initial", "slow-initial"], profile="smoke", out=str(out)), progress=False)
    assert result.skipped["initial"] == 12 and result.evaluated["slow-initial"] == 12
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(seed: 0 there, 1 now\)"):
        run(RunConfig(methods=["initial"], profile="smoke", out=str(out), seed=1), progress=False)
    with pytest.raises(ConfigError, match="dataset_options"):
        run(RunConfig(methods=["initial"], profile="smoke", out=str(out), dataset_options={"n_subjects": 9}), progress=False)


def test_failing_cases_are_recorded_and_the_run_goes_on(tmp_path, with_plugins):
    out = tmp_path / "run"
    run(RunConfig(methods=["flaky", "initial"], profile="smoke", out=str(out)), progress=False)
    df = pd.read_csv(out / "per_case.csv")
    flaky = df[df.method == "flaky"]
    failed = flaky[flaky.status == "failed"]
    assert 0 < len(failed) < len(flaky)
    assert (failed["reason"] == "RuntimeError: flaky method failed on purpose").all()
    assert failed["dice"].isna().all()
    assert (df[df.method == "initial"].status == "ok").all()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["flaky", "n_failed"] == len(failed)


def test_bad_input_messages(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: synthetic\nmethod: initial\n")
    with pytest.raises(ConfigError, match=r"unknown key 'method' \(did you mean 'methods'\?\)"):
        load_config(bad)
    with pytest.raises(RegistryError, match="unknown dataset 'synthtic'.*'synthetic'"):
        run(RunConfig(dataset="synthtic", methods=["initial"], profile="smoke", out=str(tmp_path / "x")), progress=False)
    proc = cli("run", "--methods", "voxlemorph", "--profile", "smoke", "--out", str(tmp_path / "y"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("regbench: error: unknown method 'voxlemorph'")
    assert "Traceback" not in proc.stderr


def test_yaml_config_and_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("methods: [initial]\nprofile: smoke\nseed: 4\n")
    config = load_config(cfg, seed=5)
    assert config.methods == ["initial"] and config.profile == "smoke" and config.seed == 5


@pytest.mark.slow
def test_train_command_then_run_reuses_the_model(tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "gsmorph", "--dataset", "synthetic", "--profile", "smoke", "--out", str(out), "--no-progress")
    final = out / "models" / "gsmorph" / "final.pt"
    assert final.is_file() and str(final) in proc.stdout
    history = pd.read_csv(out / "models" / "gsmorph" / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["conflict_share"].between(0, 1).all()
    stamp = final.stat().st_mtime_ns
    cli("run", "--methods", "gsmorph", "--profile", "smoke", "--out", str(out), "--no-progress")
    assert final.stat().st_mtime_ns == stamp  # loaded, not retrained
    df = pd.read_csv(out / "per_case.csv")
    assert (df["params"] == 1_968_002).all() and (df["status"] == "ok").all()
    refused = cli("train", "initial", "--profile", "smoke", "--out", str(out), check=False)
    assert refused.returncode == 2 and "not trainable" in refused.stderr


@pytest.mark.slow
def test_perf_times_a_classical_method_serially_and_in_parallel():
    """`regbench perf` for per-pair methods (its case loop is the runner's)."""
    from regbench.perf import benchmark_pairs, format_case_timings, time_cases

    timing = time_cases("initial", benchmark_pairs(32, 3), jobs=2)
    assert timing.pairs == 3 and timing.wall_jobs1 > 0 and timing.wall_jobsn > 0
    assert "initial" in format_case_timings([timing]) and timing.shape == (32, 32)
    volumes = benchmark_pairs(32, 2, dims=3, depth=12)  # `perf --dims 3`: stacks of the 3-D synthetic heart
    assert [p.fixed.shape for p in volumes] == [(12, 32, 32)] * 2
    assert "12×32×32" in format_case_timings([time_cases("initial", volumes, jobs=1)])


def test_perf_in_3d_refuses_a_method_that_registers_slices_only(capsys, with_plugins):
    from regbench.cli import main

    assert main(["perf", "--dims", "3", "--methods", "initial,slow-initial"]) != 0
    assert "method 'slow-initial' registers 2-D images (its declared dims); perf --dims 3 is 3-D" in capsys.readouterr().err


def test_perf_subnormal_step_restores_threads_and_leaves_subnormals_flushed():
    import torch

    from regbench.perf import format_subnormal_timing, time_subnormal_optimiser_step

    threads = torch.get_num_threads()
    computed, flushed = time_subnormal_optimiser_step(10_000, repeats=2)
    assert computed > 0 and flushed > 0 and torch.get_num_threads() == threads
    assert float(torch.tensor([1e-39]) * 1.0) == 0.0 or not torch.set_flush_denormal(True)  # as training leaves it
    assert "10,000 parameters" in format_subnormal_timing(10_000, computed, flushed)


@pytest.mark.slow
def test_perf_times_training_steps_and_sizes_the_subnormal_step_by_the_largest_model_timed(capsys):
    from regbench.cli import main
    from regbench.perf import time_training_steps
    from regbench.registry import METHODS

    (step,) = time_training_steps(["gsmorph"], size=32, batch=2, steps=1, device="cpu", repeats=1)
    assert step.step_s > 0 and step.inference_ms > 0 and step.validation_ms > 0
    # Counted FLOPs: the U-Net's forward at 32 px is 0.114 GFLOP per pair; a GSMorph step at batch 2 is two
    # forwards and twice two backward passes (each twice a forward, less the stem's unneeded input gradient).
    assert 0.1 < step.inference_gflop < 0.13
    assert 9.5 < step.step_gflop / step.inference_gflop <= 10
    assert step.op_shares is not None and sum(step.op_shares.values()) == pytest.approx(1.0)
    assert step.op_shares["conv bwd"] > 0 and step.op_shares["grid_sample fwd"] > 0 and step.op_shares["optimiser"] > 0
    assert step.parameters == METHODS.create("gsmorph").num_parameters() == 1_968_002
    assert main(["perf", "--methods", "voxelmorph-l", "--size", "32", "--batch", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "voxelmorph-m" in out and "voxelmorph-l" in out  # the reference is added
    assert "AdamW step over 1,968,002 parameters" in out
    assert "throughput against this CPU's dense matmul at the steps' precision (FP32" in out and "% matmul" in out
    assert "share of a training step's operator time" in out and "grid_sample bwd" in out
    assert "gradient combiner alone" not in out  # VoxelMorph's weighted sum has one form


def test_perf_counts_host_waits_per_step_on_a_gpu_only():
    from regbench.perf import StepTiming, format_step_timings, host_syncs_per

    calls = []
    assert host_syncs_per(lambda: calls.append(1), "cpu") is None and not calls  # CPU: not run at all
    row = dict(size=128, batch=32, step_s=0.02, inference_ms=1.0, inference_std_ms=0.1, validation_ms=1.0, full_evaluation_ms=2.0, parameters=10)
    gpu = [StepTiming("voxelmorph-m", **row, device="cuda:0", host_syncs=0.0), StepTiming("hypermorph", **row, device="cuda:0", host_syncs=2.0)]
    assert "host waits for the device per training step (torch.cuda sync debug mode; 0: none): voxelmorph-m 0, hypermorph 2" in format_step_timings(gpu)
    assert "host waits" not in format_step_timings([StepTiming("voxelmorph-m", **row)])


def test_perf_times_each_form_of_a_gradient_combiner_and_names_the_one_training_uses():
    from regbench.perf import format_combiner_timings, time_combiner_forms

    assert time_combiner_forms("voxelmorph-m", device="cpu", repeats=1) is None  # one form
    timings = {name: time_combiner_forms(name, device="cpu", repeats=2) for name in ("gsmorph", "gs-agr")}
    for t in timings.values():
        assert t is not None and t["per_tensor"] > 0 and t["flat"] > 0 and t["used"] == "per_tensor"
    text = format_combiner_timings(timings, "cpu", repeats=2)  # type: ignore[arg-type]
    assert "ms per step on cpu (median of 2" in text and "gs-agr" in text and "(training here uses per_tensor)" in text


@pytest.mark.slow
def test_workers_warm_a_method_up_once_per_process_not_once_per_case(with_plugins, tmp_path, monkeypatch, small_dataset):
    """Each task unpickles its own copy of the method; the warm-up is keyed so that copies share it."""
    from joblib.externals.loky import get_reusable_executor

    from regbench import create_method
    from regbench.config import RunConfig
    from regbench.execution import iterate_cases

    get_reusable_executor().shutdown(wait=True)  # fresh workers, which see the plugin on PYTHONPATH
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("REGBENCH_TEST_CALLS", str(calls))
    monkeypatch.setenv("REGBENCH_TEST_DELAY", "0")
    pairs = small_dataset.pairs("test")[:8]
    rows = list(iterate_cases(create_method("slow-initial"), pairs, RunConfig(methods=["slow-initial"], jobs=2), examples=set()))
    assert [r["status"] for r in rows] == ["ok"] * len(pairs)
    pids = calls.read_text().split()
    workers = set(pids)
    assert len(pids) == len(pairs) + len(workers)  # every case once, plus one warm-up in each worker


def test_counted_flops_of_a_grouped_convolution_equal_those_of_the_batched_one():
    """HyperMorph's per-sample weights run as one grouped conv: the same multiplications as a batch."""
    import torch
    import torch.nn.functional as F

    from regbench.perf import counted_gflop

    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    w, per_sample = torch.randn(6, 8, 3, 3, requires_grad=True), torch.randn(4 * 6, 8, 3, 3, requires_grad=True)
    batched = counted_gflop(lambda: F.conv2d(x, w, padding=1).sum().backward())
    grouped = counted_gflop(lambda: F.conv2d(x.reshape(1, 32, 16, 16), per_sample, padding=1, groups=4).sum().backward())
    assert batched == grouped == 3 * 2 * 4 * 16 * 16 * 6 * 8 * 9 / 1e9  # forward, input and weight gradients


# ------------------------------------------------------------------------------------ trainings side by side
def _metrics(run_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(run_dir / "per_case.csv")
    return table.drop(columns=[c for c in table.columns if c.startswith("time")]).sort_values(["method", "case_id"]).reset_index(drop=True)


@pytest.mark.slow
def test_trainings_side_by_side_give_the_numbers_of_one_at_a_time_with_as_many_threads(tmp_path):
    """--jobs 2 trains the two deep methods at once, in processes of their own with half the threads each; the
    manifest records the count, and the models and rows are those of trainings one after another in this
    process with that many threads."""
    import torch

    from regbench.runner import run

    methods = ["voxelmorph-s", "gsmorph"]
    side = load_config(None, **{"profile": "smoke", "methods": methods, "out": str(tmp_path / "side"), "jobs": 2})
    run(side, progress=False)
    threads = max(1, torch.get_num_threads() // 2)
    manifest = json.loads((tmp_path / "side" / "manifest.json").read_text())
    for name in methods:
        trained_on = manifest["method_info"][name]["trained_on"]["default"]
        assert trained_on["threads"] == threads and trained_on["seconds"] > 0 and trained_on["trainings_at_once"] == 2
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        serial = load_config(None, **{"profile": "smoke", "methods": methods, "out": str(tmp_path / "serial"), "jobs": 2, "parallel_trainings": 1})
        run(serial, progress=False)
    finally:
        torch.set_num_threads(before)
    assert "trained_on" not in json.loads((tmp_path / "serial" / "manifest.json").read_text())["method_info"]["gsmorph"]
    pd.testing.assert_frame_equal(_metrics(tmp_path / "side"), _metrics(tmp_path / "serial"))
    for name in methods:
        histories = [pd.read_csv(tmp_path / d / "models" / name / "history.csv").drop(columns="seconds") for d in ("side", "serial")]
        pd.testing.assert_frame_equal(*histories)


def _planned(tmp_path, monkeypatch, free_gib, names=("voxelmorph-m", "gsmorph", "hypermorph"), cuda=True, **config):
    """What side_by_side_trainings plans for these deep methods at the paper's sizes (batch 32, 128 px) when
    their models are on one CUDA device with ``free_gib`` free (no GPU here: the device is only declared)."""
    import torch

    from regbench import execution

    monkeypatch.setattr(execution, "gpu_free_bytes", lambda device: int(free_gib * 2**30))
    monkeypatch.setattr(execution, "driver_threads", lambda: 16)
    built = {}
    for name in names:
        options = {"batch_size": 32, "epochs": 500}
        method = execution.create_method(name, {**options, "device": "cpu"})
        if cuda:
            method.device = torch.device("cuda:0")
        built[name] = (options, method)
    run_config = load_config(None, **{"profile": "paper", "out": str(tmp_path), **config})
    return execution.side_by_side_trainings(run_config, built, [(n, None) for n in names], lambda n, s: tmp_path / n, False, (128, 128))


def test_trainings_on_one_gpu_run_side_by_side_as_its_free_memory_allows(tmp_path, monkeypatch):
    """Three paper-size trainings (about 6.5 GiB each by the estimate) on an H200's 139 GiB: all at once, each
    recording the count, HyperMorph (the costliest epoch) first; with 15 GiB free two; with 6 GiB none
    side by side; parallel_trainings caps it or (1) keeps one at a time; CPU models follow --jobs as before."""
    tasks, slots = _planned(tmp_path, monkeypatch, 139)
    assert slots == 3 and [key[0] for key, _ in tasks][0] == "hypermorph"
    assert all(task.at_once == 3 and task.threads == 16 // 3 for _, task in tasks)
    assert _planned(tmp_path, monkeypatch, 15)[1] == 2
    assert _planned(tmp_path, monkeypatch, 6) == ([], 1)
    assert _planned(tmp_path, monkeypatch, 139, parallel_trainings=2)[1] == 2
    assert _planned(tmp_path, monkeypatch, 15, parallel_trainings=3)[1] == 2  # a cap, not a count: memory first
    assert _planned(tmp_path, monkeypatch, 139, parallel_trainings=1) == ([], 1)
    assert _planned(tmp_path, monkeypatch, 139, cuda=False) == ([], 1)  # --jobs 1 on a CPU: one at a time
    assert _planned(tmp_path, monkeypatch, 139, cuda=False, jobs=2)[1] == 2


@pytest.mark.slow
def test_a_training_whose_process_dies_fails_its_method_only(tmp_path, with_plugins):
    from regbench.runner import run

    config = load_config(
        None, **{"profile": "smoke", "methods": ["dying-trainer", "trained-identity", "initial"], "out": str(tmp_path), "jobs": 2, "max_test_pairs": 2}
    )
    result = run(config, progress=False, report=False)
    assert result.failed_methods == {"dying-trainer": "RuntimeError: process died: signal 9 (SIGKILL)"}
    pid, threads = (tmp_path / "models" / "trained-identity" / "fitted_in.txt").read_text().split()
    assert int(pid) != os.getpid() and int(threads) == max(1, driver_threads() // 2)
    table = pd.read_csv(tmp_path / "per_case.csv")
    assert set(table["method"]) == {"trained-identity", "initial"} and (table["status"] == "ok").all()


@pytest.mark.slow
@pytest.mark.parametrize("methods, extra", [(["trained-identity", "initial"], {}), (["trained-identity", "voxelmorph-s"], {"parallel_trainings": 1})])
def test_one_training_or_parallel_trainings_1_trains_in_the_driver(tmp_path, with_plugins, methods, extra):
    from regbench.runner import run

    config = load_config(None, **{"profile": "smoke", "methods": methods, "out": str(tmp_path), "jobs": 2, "max_test_pairs": 1, **extra})
    run(config, progress=False, report=False)
    pid, _ = (tmp_path / "models" / "trained-identity" / "fitted_in.txt").read_text().split()
    assert int(pid) == os.getpid()
    assert not any("trained_on" in info for info in json.loads((tmp_path / "manifest.json").read_text())["method_info"].values())


def test_parallel_trainings_is_checked():
    with pytest.raises(ConfigError, match="parallel_trainings must be a positive integer"):
        load_config(None, **{"parallel_trainings": 0})


def test_perf_states_the_gpu_settings_each_precision_runs_under_and_restores_them():
    import torch

    from regbench.perf import dense_matmul_gflops, device_settings, matmul_label

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert device_settings("cuda", "fp32") | {"cudnn_benchmark": None, "deterministic": None} == {
        "precision": "fp32",
        "matmul_tf32": False,
        "cudnn_tf32": False,
        "cudnn_benchmark": None,
        "deterministic": None,
    }
    assert device_settings("cuda", "tf32")["matmul_tf32"] and device_settings("cuda", "tf32")["cudnn_tf32"]
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    assert dense_matmul_gflops(256, repeats=2, precision="bf16") > 0
    assert "(bf16, 2048²" in matmul_label("cpu", "bf16") and "(FP32, 2048²" in matmul_label("cpu", "fp32")


def test_dry_run_prints_what_a_resume_would_compute_and_writes_nothing(tmp_path, capsys):
    from regbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--profile", "smoke", "--methods", "initial", "--out", str(out), "--no-progress"]) == 0
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    capsys.readouterr()
    assert main(["run", "--profile", "smoke", "--methods", "initial,demons", "--out", str(out), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "dataset: synthetic (Synthetic), 2-D, spacing 3 x 3 mm" in plan and "pairs: test 14 (scored: 12, from 2 subjects)" in plan
    assert re.search(r"initial \(Initial\): 12 stored, 0 to compute, about 0 s\n", plan), plan  # estimated from the run's own times
    assert "demons (Demons): 0 stored, 12 to compute\n" in plan
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before  # nothing written


def test_a_dry_run_plans_from_declarations_without_importing_a_method_module(tmp_path):
    """In a fresh process (this one has torch loaded): the quick profile's plan, every method of ``*`` with its
    options, is printed without importing torch or a method module (but one a declaration names), and says what
    the modules would."""
    import subprocess
    import sys

    code = (
        "import sys; from regbench.cli import main; "
        f"assert main(['run', '--profile', 'smoke', '--out', {str(tmp_path / 'run')!r}, '--dry-run']) == 0; "
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('regbench.methods.')); "
        "assert loaded == ['regbench.methods.syn'], loaded"  # its declared profile_options lives there (numpy only)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from regbench.config import RunConfig
    from regbench.plan import plan_run

    imported = plan_run(RunConfig(profile="smoke", out=str(tmp_path / "run")), test_only=True).plan.text()
    assert done.stdout.strip() == imported.strip()
    assert "voxelmorph-m (VoxelMorph-m, trained)" in imported and not (tmp_path / "run").exists()


def test_a_hand_built_plan_is_executed_as_planned_and_resumed(tmp_path):
    """The runner's seam: a plan built by hand (two 16 x 16 pairs, one method) executes without a dataset
    registry, a profile or a CLI; only the planned cases are scored, and executing it again computes nothing."""
    from types import MappingProxyType

    import numpy as np

    from regbench import Pair, create_method
    from regbench.config import RunConfig
    from regbench.plan import DatasetFacts, LoadedRun, MethodPlan, RunPlan, ScoringSettings
    from regbench.rundir import prepare_run_dir
    from regbench.runner import execute

    rng = np.random.default_rng(0)
    label = np.zeros((16, 16), np.uint8)
    label[4:10, 5:12] = 1
    pairs = [
        Pair(rng.random((16, 16), dtype=np.float32), rng.random((16, 16), dtype=np.float32), label, label, (1.0, 1.0), f"c{i}", labels={"A": 1})
        for i in range(3)
    ]

    class Held:  # the dataset a plan was made from: its pairs, already loaded
        def pairs(self, split):
            return pairs if split == "test" else []

    config = RunConfig(dataset="synthetic", profile="smoke", methods=["initial"], out=str(tmp_path / "run"), example_pairs=1)
    facts = DatasetFacts("synthetic", "Synthetic", MappingProxyType({}), 2, MappingProxyType({"A": 1}), MappingProxyType({}), MappingProxyType({"test": 3}), 3)
    entry = MethodPlan("initial", "Initial", False, MappingProxyType({}), (None,), to_compute=2)
    plan = RunPlan(tmp_path / "run", "smoke", facts, (entry,), MappingProxyType({}), ScoringSettings.of(config), 2, 1, False)
    loaded = LoadedRun(plan, Held(), {"test": pairs[:2]})  # the plan scores two of the three pairs
    prepare_run_dir(config.out_dir)
    result = execute(config, loaded, {"initial": ({}, create_method("initial"))})
    assert result.evaluated == {"initial": 2} and result.ok
    table = pd.read_csv(tmp_path / "run" / "per_case.csv")
    assert list(table["case_id"]) == ["c0", "c1"] and (table["dice"] == 1.0).all()
    again = execute(config, loaded, {"initial": ({}, create_method("initial"))})
    assert again.evaluated.get("initial", 0) == 0 and again.skipped == {"initial": 2}
