"""The dask backend: same numbers as the default backend, training and deep evaluation on GPU workers only,
SLURM job scripts from the YAML, worker versions checked, and clear errors for bad backend settings.
(Interruption and resume under dask: tests/test_hardening.py, test_ctrl_c_stops_a_parallel_run...)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

pytest.importorskip("distributed")

from regbench.config import RunConfig, load_config  # noqa: E402
from regbench.errors import ConfigError  # noqa: E402
from regbench.runner import run  # noqa: E402

METHODS = ["initial", "demons", "gsmorph"]
PROVENANCE = ["time_s", "host", "worker", "gpu"]


def _cases(run_dir) -> pd.DataFrame:
    df = pd.read_csv(run_dir / "per_case.csv")
    return df.drop(columns=PROVENANCE).sort_values(["method", "case_id"]).reset_index(drop=True)


@pytest.mark.slow
def test_local_cluster_gives_the_default_backends_per_case_table(tmp_path):
    default = run(RunConfig(profile="smoke", methods=METHODS, jobs=2, out=str(tmp_path / "joblib")), progress=False, report=False)
    dask = run(RunConfig(profile="smoke", methods=METHODS, jobs=2, backend="dask", cluster="local", out=str(tmp_path / "dask")), progress=False, report=False)
    assert default.ok and dask.ok
    pd.testing.assert_frame_equal(_cases(tmp_path / "dask"), _cases(tmp_path / "joblib"))  # gsmorph trained on a worker
    rows = pd.read_csv(tmp_path / "dask" / "per_case.csv")
    assert rows["worker"].str.startswith("tcp://").all() and rows["host"].notna().all()
    assert pd.read_csv(tmp_path / "joblib" / "per_case.csv")["worker"].isna().all()
    manifest = json.loads((tmp_path / "dask" / "manifest.json").read_text())
    assert manifest["cluster"]["cluster"] == "local" and len(manifest["cluster"]["workers"]) == 2
    assert manifest["method_info"]["gsmorph"]["trained_on"]["default"]["worker"].startswith("tcp://")


@pytest.fixture
def cluster_with_a_fake_gpu():
    """One plain worker and one advertising the resource GPU=1 (no real GPU: the resource is what routes)."""
    from distributed import Client, LocalCluster, Nanny

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0")
    cluster.worker_spec["fake-gpu"] = {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}}
    cluster.sync(cluster._correct_state)
    client = Client(cluster, set_as_default=False)
    client.wait_for_workers(2, timeout=60)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    gpu = [address for address, w in workers.items() if w.get("resources", {}).get("GPU")]
    yield cluster.scheduler_address, gpu[0], set(workers)
    client.close()
    cluster.close()


@pytest.mark.slow
def test_training_and_deep_evaluation_land_on_the_gpu_worker_only(tmp_path, cluster_with_a_fake_gpu):
    address, gpu_worker, all_workers = cluster_with_a_fake_gpu
    out = tmp_path / "run"
    result = run(RunConfig(profile="smoke", methods=METHODS, backend="dask", scheduler=address, out=str(out)), progress=False, report=False)
    assert result.ok
    rows = pd.read_csv(out / "per_case.csv")
    assert set(rows.loc[rows.method == "gsmorph", "worker"]) == {gpu_worker}
    assert set(rows.loc[rows.method != "gsmorph", "worker"]) <= all_workers
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method_info"]["gsmorph"]["trained_on"]["default"]["worker"] == gpu_worker
    assert manifest["cluster"]["cluster"] == "external"
    assert (out / "models" / "gsmorph" / "final.pt").exists() and (out / "models" / "gsmorph" / "history.csv").exists()


def test_slurm_job_scripts_carry_the_yaml_settings(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from regbench.distributed import slurm_cluster

    config = tmp_path / "slurm.yaml"
    config.write_text(
        "backend: dask\ncluster: slurm\nslurm:\n"
        "  cpu: {cores: 4, memory: 16GB, walltime: '02:00:00', queue: short, jobs: 0}\n"
        "  gpu: {cores: 8, memory: 64GB, walltime: '12:00:00', queue: gpu, job_extra_directives: ['--gres=gpu:1'], jobs: 0}\n"
    )
    settings = load_config(config)
    cluster = slurm_cluster(settings.slurm)
    try:
        cpu, gpu = cluster.regbench_job_scripts["cpu"], cluster.regbench_job_scripts["gpu"]
    finally:
        cluster.close()
    for line in ("#SBATCH -p short", "#SBATCH --cpus-per-task=4", "#SBATCH -t 02:00:00", "#SBATCH -J regbench-cpu"):
        assert line in cpu, cpu
    assert "--gres" not in cpu and "GPU=1" not in cpu
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH -t 12:00:00", "#SBATCH --gres=gpu:1", "--resources GPU=1"):
        assert line in gpu, gpu
    assert "--mem=60G" in gpu and "--mem=15G" in cpu  # dask-jobqueue writes GiB


def test_bad_slurm_settings_name_the_pool_and_key():
    pytest.importorskip("dask_jobqueue")
    from regbench.distributed import slurm_cluster

    with pytest.raises(ConfigError, match=r"slurm.gpu: unknown setting\(s\) 'gres'"):
        slurm_cluster({"cpu": {"cores": 1, "memory": "1GB", "jobs": 0}, "gpu": {"cores": 1, "memory": "1GB", "gres": "gpu:1"}})
    with pytest.raises(ConfigError, match=r"slurm.cpu needs 'memory'"):
        slurm_cluster({"cpu": {"cores": 1}})
    with pytest.raises(ConfigError, match="needs a 'cpu' pool"):
        RunConfig(backend="dask", cluster="slurm", slurm={"gpu": {}})


@pytest.mark.slow
def test_a_worker_with_other_versions_is_refused_naming_the_package():
    from distributed import Client, LocalCluster
    from regbench.distributed import check_worker_versions, software_versions

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster, set_as_default=False) as client:
        versions = check_worker_versions(client)  # same environment: accepted
        assert len(versions) == 1 and next(iter(versions.values()))["regbench"] == software_versions()["regbench"]
        driver = {**software_versions(), "torch": "0.0.1"}
        with pytest.raises(ConfigError, match=r"runs torch 2\.\S+, the driver 0\.0\.1"):
            check_worker_versions(client, driver)


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--cluster", "local"], "cluster 'local' only apply to the dask backend: add --backend dask"),
        (["--scheduler", "tcp://x:8786"], "scheduler 'tcp://x:8786' only apply to the dask backend"),
        (["--backend", "dask", "--cluster", "local", "--scheduler", "tcp://x:1"], "give one of cluster, scheduler and scheduler_file"),
        (["--backend", "dask", "--scheduler-file", "/nonexistent/s.json"], "scheduler_file /nonexistent/s.json does not exist"),
    ],
)
def test_bad_backend_flags_are_one_line(tmp_path, flags, message):
    done = subprocess.run(
        [sys.executable, "-m", "regbench.cli", "run", "--profile", "smoke", "--methods", "initial", "--out", str(tmp_path / "r"), *flags],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: ") and message in lines[0], lines
