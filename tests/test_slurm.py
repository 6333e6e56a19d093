"""regbench run through dask-jobqueue against a real SLURM cluster (one node, started by ``.ci/slurm-up``).

Skips, saying why, where no SLURM cluster answers: ``.ci/slurm-up`` (as root, with apt) starts one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from regbench.config import RunConfig
from regbench.runner import run

METHODS = ["initial", "demons", "gsmorph"]
PROVENANCE = ["time_s", "host", "worker", "gpu"]
STATUS_FILE = Path("/tmp/regbench-slurm/status")
REPORT_FILE = Path("/tmp/regbench-slurm/tests.log")  # .ci/run prints it after the suite


def _report(line: str) -> None:
    REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(REPORT_FILE, "a") as fh:
        fh.write(line + "\n")


def _slurm_state() -> str | None:
    """None when a SLURM node is idle or busy here, else why not."""
    if shutil.which("sinfo") is None:
        why = STATUS_FILE.read_text().strip() if STATUS_FILE.exists() else "no sinfo on PATH; .ci/slurm-up was not run"
        return f"no SLURM cluster: {why}"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout.split()
    except subprocess.SubprocessError as exc:
        return f"sinfo does not answer: {exc}"
    return None if {"idle", "mixed", "allocated"} & set(states) else f"no usable SLURM node (sinfo says {states or 'nothing'})"


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_slurm_state() is not None, reason=str(_slurm_state()))]
pytest.importorskip("dask_jobqueue")


def _config(tmp_path: Path, methods: list[str]) -> Path:
    path = tmp_path / "slurm.yaml"
    path.write_text(
        "backend: dask\ncluster: slurm\n"
        f"methods: [{', '.join(methods)}]\n"
        "slurm:\n"
        f"  cpu: {{cores: 1, processes: 1, memory: 2GB, walltime: '00:30:00', jobs: 2, log_directory: {tmp_path / 'logs'}}}\n"
    )
    return path


def _cases(run_dir: Path) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "per_case.csv")
    return df.drop(columns=PROVENANCE).sort_values(["method", "case_id"]).reset_index(drop=True)


def _our_jobs(prefix: str = "regbench-") -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1].startswith(prefix)]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "regbench.cli", *args], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_smoke_run_on_slurm_gives_the_default_backends_per_case_table(tmp_path, all_cpu_threads):
    """The default backend trains here with the threads a SLURM job of the one-node cluster gets (all the CPUs):
    under ``pytest -n`` this process has one, and a CPU training's numbers depend on the count."""
    default = run(RunConfig(profile="smoke", methods=METHODS, jobs=2, out=str(tmp_path / "joblib")), progress=False, report=False)
    assert default.ok
    out = tmp_path / "slurm"
    proc = _start(["run", "--config", str(_config(tmp_path, METHODS)), "--profile", "smoke", "--no-progress", "--out", str(out)], {})
    seen: set[str] = set()
    while proc.poll() is None:
        seen.update(_our_jobs())
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert seen, "no regbench-cpu job ever appeared in squeue"
    pd.testing.assert_frame_equal(_cases(out), _cases(tmp_path / "joblib"))  # gsmorph trained in a SLURM job
    rows = pd.read_csv(out / "per_case.csv")
    assert rows["worker"].str.startswith("tcp://").all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cluster"]["cluster"] == "slurm"
    _report(
        f"test_slurm: smoke run ({', '.join(METHODS)}) through dask-jobqueue: SLURM jobs {sorted(seen)} seen in squeue; "
        f"per_case.csv equals the default backend's ({len(rows)} rows, timings and provenance aside)"
    )


def test_scancel_of_a_worker_job_mid_run_loses_nothing(tmp_path, with_plugins):
    """One of the two worker jobs is cancelled while cases stream in: its tasks run again on the other, or the
    rerun of the command computes what is missing; nothing is stored twice and every case ends ok."""
    out = tmp_path / "slurm"
    args = ["run", "--config", str(_config(tmp_path, ["slow-initial"])), "--profile", "smoke", "--no-progress", "--out", str(out)]
    env = {"REGBENCH_TEST_DELAY": "1.0"}
    proc = _start(args, env)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not ((out / "cases.jsonl").exists() and (out / "cases.jsonl").read_text().count("\n") >= 2):
        time.sleep(0.2)
    jobs = _our_jobs()
    assert jobs and proc.poll() is None, "the run ended before a worker job could be cancelled"
    subprocess.run(["scancel", jobs[0]], check=True, timeout=10)
    stdout, stderr = proc.communicate(timeout=600)
    stored = (out / "cases.jsonl").read_text().count("\n")
    if proc.returncode != 0 or stored < 12:  # the run may stop when its workers go; the same command resumes
        again = subprocess.run([sys.executable, "-m", "regbench.cli", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    keys = [r["case_id"] for r in rows if r["status"] == "ok"]
    assert len(keys) == len(set(keys)) == 12
    _report(
        f"test_slurm: scancel of worker job {jobs[0]} after {stored} stored cases (first attempt rc {proc.returncode}); "
        "12 ok cases in the end, none stored twice"
    )
