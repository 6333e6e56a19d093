"""Nothing mixed, nothing hung, nothing lost: the run-directory lock, crashing and hanging methods, input
ranges where data enter, --jobs beyond the cores, SIGTERM, and the small mistakes that used to be tracebacks."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regbench.config import RunConfig, load_config, parse_seeds
from regbench.errors import ConfigError, DataError, InputError, RegbenchError
from regbench.interface import validate_images
from regbench.lock import RunDirectoryLock, RunDirectoryLocked
from regbench.registry import DATASETS
from regbench.rundir import LOCK_FILE
from regbench.runner import run

SMOKE = ["--profile", "smoke", "--no-progress"]


def _cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench.cli", *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def _processes_marked(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds REGBENCH_TEST_MARK=marker (the run and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"REGBENCH_TEST_MARK={marker}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_gone(marker: str, seconds: float = 15) -> list[int]:
    deadline = time.time() + seconds
    while (left := _processes_marked(marker)) and time.time() < deadline:
        time.sleep(0.2)
    return left


# ------------------------------------------------------------------------------------ the lock
def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock until killed."""
    code = f"import sys, time; from regbench.lock import RunDirectoryLock; l = RunDirectoryLock({str(run_dir)!r}, 'regbench run (holder)'); l.acquire(); print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.slow
def test_a_second_run_into_a_directory_in_use_is_refused_naming_the_holder_and_binds_nothing(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        with pytest.raises(RunDirectoryLocked, match=rf"in use by another regbench: PID {holder.pid} on .*regbench run \(holder\)"):
            run(RunConfig(methods=["initial"], profile="smoke", out=str(out)), progress=False, report=False)
        assert not (out / "manifest.json").exists() and not (out / "cases.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the next run takes the lock over (with a note) and runs.
    result = run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False)
    assert result.ok and result.evaluated == {"initial": 2}
    assert (out / LOCK_FILE).read_text() == ""  # released


@pytest.mark.slow
def test_two_concurrent_cli_runs_with_different_settings_never_share_a_directory(tmp_path, with_plugins):
    """The user's case: two terminals, one --out, different epochs. One runs, the other is refused in one line."""
    out = tmp_path / "r"
    env = {"REGBENCH_TEST_DELAY": "0.5"}
    first = subprocess.Popen(
        [sys.executable, "-m", "regbench.cli", "run", "--methods", "slow-initial", "--out", str(out), *SMOKE],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "cases.jsonl").exists():
        time.sleep(0.05)
    second = _cli(["run", "--methods", "slow-initial", "--max-pairs", "3", "--out", str(out), *SMOKE], env)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert second.stderr.startswith(f"regbench: error: run directory {out} is in use by another regbench: PID {first.pid}")
    assert len(second.stderr.strip().splitlines()) == 1
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["case_id"] for r in rows}) == 12  # no duplicate lines
    assert json.loads((out / "manifest.json").read_text())["fingerprint"]["max_test_pairs"] == 12


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ConfigError):
        run(RunConfig(methods=["gsmorph"], profile="smoke", out=str(out), method_options={"gsmorph": {"epochs": "ten"}}), progress=False)
    with RunDirectoryLock(out):  # free again
        pass


# ------------------------------------------------------------------------------------ crashes and hangs
@pytest.mark.slow
# Each way of dying and each number of jobs once, not every combination: a death's reason is read the same way
# whatever the jobs, and the culprit is found the same way whatever killed the worker (each case 20-45 s).
@pytest.mark.parametrize(("crash", "jobs"), [("segv", 2), ("exit", 1)])
def test_a_method_that_kills_its_worker_fails_those_cases_only_and_the_rerun_retries_them(tmp_path, with_plugins, monkeypatch, jobs, crash):
    out = tmp_path / "r"
    # Every 6th pair by content crashes: 3 of the 12 (pairs 1, 5 and 9). Each death rebuilds the pool (a worker
    # importing regbench anew), so every 3rd (6 of 12) doubled the test's time and tested nothing more: with two
    # jobs a crashing case is still in flight beside a sound one, which must be run again and kept.
    monkeypatch.setenv("REGBENCH_TEST_EVERY", "6")  # here (picked() below) as in the runs
    env = {"REGBENCH_TEST_CRASH": crash}
    args = ["run", "--methods", "initial,crashing", "--jobs", str(jobs), "--out", str(out), *SMOKE]
    done = _cli(args, env)
    assert done.returncode == 0, done.stderr  # some cases of crashing succeed: a warning, not an error
    per_case = pd.read_csv(out / "per_case.csv")
    crashing = per_case[per_case["method"] == "crashing"]
    failed = crashing[crashing["status"] != "ok"]
    reason = "worker died: signal 11 (SIGSEGV)" if crash == "segv" else "worker died: exit code 3"
    assert len(crashing) == 12 and 0 < len(failed) < 12
    assert set(failed["reason"]) == {reason}
    assert (per_case[per_case["method"] == "initial"]["status"] == "ok").all()
    assert (out / "report" / "table1.tex").exists()
    assert f"crashing: {len(failed)} of 12 case(s) failed (" in done.stderr
    # The same pairs are picked by content in every process: exactly the picked pairs failed.
    from regbench_testplugin import picked

    from regbench.config import get_profile

    dataset = DATASETS.create("synthetic", **get_profile("smoke").dataset_options["synthetic"])
    keys = {p.case_id for p in dataset.pairs("test")[:12] if picked(p.fixed)}
    assert set(failed["case_id"]) == keys
    again = _cli(args, env)
    assert f"crashing: {len(failed)} pairs computed, {12 - len(failed)} already stored ({len(failed)} failed before and retried)" in again.stdout


@pytest.mark.slow
def test_a_method_that_kills_its_dask_worker_fails_those_cases_only(tmp_path, with_plugins):
    pytest.importorskip("distributed")
    out = tmp_path / "r"
    # No retries on another worker (dask's default is 3): each crashing case kills one worker, not four.
    # One worker: one case in flight, so a death is blamed on exactly the case that caused it. Every 6th pair
    # crashes (3 of 12, apart): dask's nanny has been seen to stop restarting after ~5 deaths in 20 s.
    env = {"REGBENCH_TEST_CRASH": "exit", "REGBENCH_TEST_EVERY": "6", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    done = _cli(["run", "--methods", "initial,crashing", "--backend", "dask", "--cluster", "local", "--jobs", "1", "--out", str(out), *SMOKE], env)
    assert done.returncode == 0, done.stderr
    per_case = pd.read_csv(out / "per_case.csv")
    crashing = per_case[per_case["method"] == "crashing"]
    failed = crashing[crashing["status"] != "ok"]
    from regbench_testplugin import picked

    from regbench.config import get_profile

    dataset = DATASETS.create("synthetic", **get_profile("smoke").dataset_options["synthetic"])
    os.environ["REGBENCH_TEST_EVERY"] = "6"  # picked() here as in the run
    try:
        keys = {p.case_id for p in dataset.pairs("test")[:12] if picked(p.fixed)}
    finally:
        del os.environ["REGBENCH_TEST_EVERY"]
    assert len(crashing) == 12 and 1 <= len(keys) <= 4 and set(failed["case_id"]) == keys
    assert set(failed["reason"]) == {"worker died: the 1 dask worker(s) that ran it died (KilledWorker)"}
    assert (per_case[per_case["method"] == "initial"]["status"] == "ok").all()
    assert (out / "report" / "table1.tex").exists()


def test_a_dask_cluster_left_without_workers_is_an_error_not_a_hang(monkeypatch):
    from regbench import distributed

    class NoWorkers:
        class scheduler:
            address = "tcp://127.0.0.1:1"

        def nthreads(self):
            return {}

    cluster = distributed.Cluster(NoWorkers(), gpu_workers=False, record={})
    monkeypatch.setattr(distributed.time, "monotonic", lambda: 1000.0)
    since = cluster._check_workers(None)
    assert since == 1000.0 and cluster._check_workers(since) == since  # the patience starts
    monkeypatch.setattr(distributed.time, "monotonic", lambda: 1000.0 + distributed.NO_WORKER_PATIENCE_S + 1)
    with pytest.raises(RegbenchError, match=r"tcp://127.0.0.1:1\) has had no worker for 300 s with cases pending; finished cases are stored"):
        cluster._check_workers(since)


@pytest.mark.slow
def test_a_hanging_case_times_out_and_the_others_complete(tmp_path, with_plugins):
    out = tmp_path / "r"
    (tmp_path / "c.yaml").write_text("case_timeout_s: {hanging: 4}\n")
    done = _cli(
        ["run", "--config", str(tmp_path / "c.yaml"), "--methods", "hanging", "--jobs", "2", "--out", str(out), *SMOKE],
        {"REGBENCH_TEST_EVERY": "5"},
        timeout=240,
    )
    per_case = pd.read_csv(out / "per_case.csv")
    failed = per_case[per_case["status"] != "ok"]
    assert 0 < len(failed) < 12 and set(failed["reason"]) == {"timed out after 4 s"}, done.stderr
    assert (per_case["status"] == "ok").sum() == 12 - len(failed)


def test_case_timeout_s_is_checked():
    with pytest.raises(ConfigError, match=r"case_timeout_s\['syn'\] must be a positive number of seconds or null"):
        RunConfig(methods=["initial"], case_timeout_s={"syn": 0})
    config = RunConfig(methods=["initial"], case_timeout_s={"syn": 30, "default": None})
    assert config.case_timeout_for("syn") == 30 and config.case_timeout_for("demons") is None
    assert RunConfig(methods=["initial"]).case_timeout_for("demons") == 900


# ------------------------------------------------------------------------------------ input ranges
class _Scaled:
    """The synthetic dataset with its images times ``scale`` or a label value replaced: a badly written plugin."""

    def __init__(self, scale: float = 1.0, label_from: int | None = None, **options):
        self.inner = DATASETS.create("synthetic", n_subjects=8, image_size=64)
        self.name, self.scale, self.label_from = "scaled", scale, label_from

    def options(self):
        return {"scale": self.scale, "label_from": self.label_from}

    def pairs(self, split):
        import dataclasses

        out = []
        for p in self.inner.pairs(split):
            label = p.moving_label if self.label_from is None else np.where(p.moving_label == self.label_from, 4, p.moving_label)
            out.append(dataclasses.replace(p, fixed=p.fixed * self.scale, moving=p.moving * self.scale, moving_label=label))
        return out


@pytest.fixture
def scaled_dataset():
    DATASETS.add("scaled", _Scaled)
    yield
    DATASETS._factories.pop("scaled", None)
    DATASETS._origins.pop("scaled", None)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"scale": 255.0},
            r"dataset 'scaled' test split, case '\w+-\d+': fixed image has values in \[0\.\d+, 255\], outside \[0, 1\]; normalise intensities",
        ),
        (
            {"label_from": 1},
            r"dataset 'scaled' test split, case '\w+-\d+': moving label has value\(s\) \[4\] outside the dataset's labels \[0, 1, 2, 3\]",
        ),
    ],
)
def test_a_dataset_out_of_range_is_one_error_before_anything_is_written(tmp_path, scaled_dataset, options, message):
    out = tmp_path / "r"
    with pytest.raises(DataError, match=message):
        run(RunConfig(dataset="scaled", dataset_options=options, methods=["initial", "demons"], profile="smoke", out=str(out)), progress=False)
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda a: (a * 255).astype(np.uint8), r"fixed image has dtype uint8; give float images intensity-normalised to \[0, 1\]"),
        (lambda a: a * 1000, r"fixed image has values in \[[\d.]+, 1000\], outside \[0, 1\]"),
    ],
)
def test_register_inputs_out_of_range_are_refused(pairs, make, message):
    pair = pairs[0]
    bad = make(pair.fixed / pair.fixed.max())
    with pytest.raises(InputError, match=message):
        validate_images(bad, pair.moving)
    from regbench import create_method

    with pytest.raises(InputError, match=message):
        create_method("demons").register(bad, pair.moving)


@pytest.mark.slow
def test_a_flow_in_normalised_units_fails_every_case_and_is_not_ranked(tmp_path, with_plugins):
    out = tmp_path / "r"
    done = _cli(["run", "--methods", "initial,normalised-flow", "--out", str(out), *SMOKE])
    assert done.returncode == 1
    assert "regbench: error: method normalised-flow: 12 of 12 cases failed because moved image differs from warp(moving, flow)" in done.stderr
    assert "they agree if the flow has normalised [-1, 1] units (grid_sample, align_corners=True)" in done.stderr
    per_case = pd.read_csv(out / "per_case.csv")
    assert (per_case[per_case["method"] == "normalised-flow"]["status"] == "failed").all()
    row = next(line for line in (out / "report" / "table1.md").read_text().splitlines() if "normalised-flow" in line)
    assert {cell.strip() for cell in row.strip("| ").split("|")[1:]} == {"failed"}, row  # listed as failed, never with numbers


@pytest.mark.slow
def test_a_reversed_flow_on_low_motion_fails_the_method_naming_the_mistake(tmp_path, with_plugins):
    """x-first flows of sub-pixel motion: an absolute MSE bound (2e-3, before) let every case through and ranked
    them; relative to how far the method moved the image, each case fails and the method fails in one line."""
    from regbench import create_dataset
    from regbench.interface import moved_flow_disagreement
    from regbench.registry import METHODS

    method = METHODS.create("reversed-flow")
    pairs = create_dataset("synthetic", n_subjects=8, image_size=64, seed=0).pairs("test")[:12]
    assert all(moved_flow_disagreement(p.moving, method.register(p.fixed, p.moving)) < 2e-3 for p in pairs)  # passed before
    out = tmp_path / "r"
    done = _cli(["run", "--methods", "initial,reversed-flow", "--out", str(out), *SMOKE])
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("regbench: error:")]
    assert len(errors) == 1 and errors[0].startswith("regbench: error: method reversed-flow: 12 of 12 cases failed because moved image differs")
    assert "they agree if the flow has channels in reverse order (x first)" in errors[0] and "regbench check-method reversed-flow" in errors[0]
    per_case = pd.read_csv(out / "per_case.csv")
    assert (per_case[per_case["method"] == "reversed-flow"]["status"] == "failed").all()
    assert (per_case[per_case["method"] == "initial"]["status"] == "ok").all()


# ------------------------------------------------------------------------------------ processes and signals
@pytest.mark.slow
def test_jobs_beyond_the_cores_are_capped_with_one_note(tmp_path, with_plugins):
    from joblib import cpu_count

    marker = uuid.uuid4().hex
    out = tmp_path / "r"
    done = _cli(
        ["run", "--methods", "slow-initial", "--jobs", "999", "--max-pairs", "4", "--out", str(out), *SMOKE],
        {"REGBENCH_TEST_DELAY": "0", "REGBENCH_TEST_MARK": marker},
    )
    assert done.returncode == 0, done.stderr
    assert f"--jobs 999 is more than the {cpu_count()} cores this process may use: running {cpu_count()} worker processes" in done.stderr
    assert json.loads((out / "manifest.json").read_text())["config"]["jobs"] == cpu_count()
    assert _wait_gone(marker) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, line",
    [
        (signal.SIGTERM, 143, "regbench: terminated (SIGTERM); finished cases are stored, run the same command to resume"),
        (signal.SIGINT, 130, "regbench: interrupted; finished cases are stored, run the same command to resume"),
    ],
)
def test_sigterm_and_ctrl_c_stop_the_run_and_every_worker_and_keep_the_store(tmp_path, with_plugins, sig, code, line):
    marker = uuid.uuid4().hex
    out = tmp_path / "r"
    args = [sys.executable, "-m", "regbench.cli", "run", "--methods", "slow-initial", "--jobs", "999", "--out", str(out), *SMOKE]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "REGBENCH_TEST_DELAY": "0.5", "REGBENCH_TEST_MARK": marker},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not ((out / "cases.jsonl").exists() and (out / "cases.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.05)
    # SIGTERM as a scheduler sends it (to the process); SIGINT as a terminal sends it (to the process group).
    os.kill(proc.pid, sig) if sig == signal.SIGTERM else os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert err.strip().splitlines()[-1] == line
    assert _wait_gone(marker) == []
    stored = [json.loads(x) for x in (out / "cases.jsonl").read_text().splitlines()]
    assert 2 <= len(stored) < 12 and all(r["status"] == "ok" for r in stored)
    assert (out / LOCK_FILE).read_text() == ""


# ------------------------------------------------------------------------------------ small mistakes
def test_an_empty_seed_entry_is_an_error():
    with pytest.raises(ConfigError, match=r"--seeds has an empty entry in '0,,1'"):
        parse_seeds("0,,1")
    assert parse_seeds("0,1") == [0, 1]


def test_dataset_options_on_the_command_line_are_yaml_values_over_the_profiles(tmp_path, capsys):
    from regbench.cli import main
    from regbench.config import parse_dataset_options

    assert parse_dataset_options(["motion=1.4", "noise=[0.04, 0.07]", "seed=3"]) == {"motion": 1.4, "noise": [0.04, 0.07], "seed": 3}
    with pytest.raises(ConfigError, match=r"KEY=VALUE .*'motion'"):
        parse_dataset_options(["motion"])
    out = tmp_path / "shifted"
    assert main(["run", "--profile", "smoke", "--methods", "initial", "--dataset-option", "motion=1.5", "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # The profile's options stay; the flag's is added (and binds the run directory).
    assert {"motion": 1.5, "n_subjects": 8}.items() <= manifest["fingerprint"]["dataset_options"].items()
    assert main(["run", "--profile", "smoke", "--methods", "initial", "--out", str(out), "--no-progress"]) == 2
    assert "motion" in capsys.readouterr().err
    assert main(["run", "--profile", "smoke", "--methods", "initial", "--dataset-option", "motion=9", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "motion must be a number in (0, 2]" in capsys.readouterr().err


def test_the_tradeoff_profile_trains_its_study_at_three_seeds_unless_told_otherwise():
    from regbench.registry import METHODS
    from regbench.study import LAMBDA_GRID

    config = RunConfig(profile="tradeoff")
    assert config.methods == ["tradeoff"] and config.seeds == [0, 1, 2]
    assert RunConfig(profile="tradeoff", seeds=[5]).seeds == [5] and RunConfig(profile="quick").seeds is None
    expanded = METHODS.resolve(["tradeoff"])
    assert [f"voxelmorph.{lam}" for lam in LAMBDA_GRID] == [m for m in expanded if m.startswith("voxelmorph.")]
    assert {"gsmorph", "gs-pcgrad", "gs-agr", "voxelmorph-diff", "hypermorph", "initial"} <= set(expanded)


def test_a_bad_option_value_names_the_method_and_the_config_file(tmp_path):
    path = tmp_path / "ten.yaml"
    path.write_text("method_options:\n  gsmorph: {epochs: ten}\n")
    with pytest.raises(
        ConfigError,
        match=rf"method 'gsmorph' \(options from method_options of config file {path} or profile smoke\): epochs must be an integer of at least 1, got 'ten'",
    ):
        run(load_config(path, profile="smoke", methods="gsmorph", out=str(tmp_path / "r")), progress=False)


def test_a_run_refused_for_a_bad_root_does_not_block_the_corrected_run(tmp_path):
    out = tmp_path / "r"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no ACDC patient folders"):
        run(RunConfig(dataset="acdc", dataset_options={"root": str(tmp_path / "empty")}, methods=["initial"], profile="smoke", out=str(out)), progress=False)
    assert not (out / "manifest.json").exists()
    assert run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False).ok


def test_an_empty_run_directory_with_a_stale_manifest_is_rebound(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"fingerprint": {"dataset": "acdc"}, "methods": {}}))
    assert run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False).ok
    with pytest.raises(ConfigError, match="holds a run with other settings"):  # now it holds results
        run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=3), progress=False, report=False)


@pytest.mark.slow
@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', '{"fingerprint": [], "methods": {}}'])
def test_a_manifest_that_is_not_an_object_is_one_error_in_run_and_a_problem_in_report(tmp_path, text):
    from regbench.report import write_report

    out = tmp_path / "r"
    run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False)
    (out / "manifest.json").write_text(text)
    with pytest.raises(ConfigError, match=rf"{out / 'manifest.json'} is not a regbench manifest"):
        run(RunConfig(methods=["initial"], profile="smoke", out=str(out), max_test_pairs=2), progress=False, report=False)
    if text.startswith("["):
        report = write_report([out])
        assert any(f"{out / 'manifest.json'} is not a JSON object (got list)" in p for p in report.problems)
    (out / "manifest.json").write_text("{torn")
    report = write_report([out])
    assert any(f"{out / 'manifest.json'} cannot be read" in p for p in report.problems)


@pytest.mark.parametrize(
    "content, message",
    [
        ("method,dataset,case_id,subject,status,reason\ninitial,synthetic,s1-0,s1,ok,\n", r"has none of Table 1's columns \(dice, hd95, mse, njd\)"),
        ("method,dataset,case_id,subject,seed,dice,hd95,mse,njd,status,reason\n", r"has no cases: nothing to report \(the run scored no pair\)"),
    ],
    ids=["no table 1 columns", "no cases"],
)
def test_a_per_case_csv_the_report_cannot_use_is_one_error(tmp_path, content, message):
    from regbench.report import write_report

    out = tmp_path / "r"
    out.mkdir()
    (out / "per_case.csv").write_text(content)
    with pytest.raises(DataError, match=rf"{out / 'per_case.csv'} {message}"):
        write_report([out])


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    from regbench import fileio, store

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        fileio.atomic_write_text(tmp_path / "manifest.json", "{}")
    assert caught.value.filename == str(tmp_path / "manifest.json") and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    with pytest.raises(OSError) as caught:
        store.RunStore(tmp_path).append({"method": "m", "case_id": "s-0", "status": "ok"})
    assert caught.value.filename == str(tmp_path / "cases.jsonl")
