"""The dask backend: the same runner on a dask.distributed cluster (local, any scheduler, SLURM).

Needs ``pip install "regbench[dask]"`` (dask.distributed, dask-jobqueue). What changes against the default
(joblib processes on this machine):

- **Where.** ``cluster: local`` starts a LocalCluster (``--jobs`` single-threaded worker processes);
  ``scheduler``/``scheduler_file`` connect to a running cluster; ``cluster: slurm`` starts dask-jobqueue
  SLURMClusters from the ``slurm`` settings: a ``cpu`` pool and an optional ``gpu`` pool whose workers
  advertise the resource ``GPU=1``. One scheduler serves both pools (the GPU pool's jobs are added to the CPU
  cluster's worker spec).
- **What is sent.** Workers get a :class:`~regbench.execution.MethodSpec` (name, options as given, model file), never a method
  object: a model pickled on a GPU driver does not load on a CPU worker, and ``device="auto"`` is resolved on
  the worker. Built methods are cached per worker process by spec. Each case task carries its pair (a few
  hundred kB in 2-D), never a scattered copy: that lives only on workers, and dies with the last that holds it.
- **Training** is one task per (method, seed) that needs the ``GPU`` resource where the cluster has GPU
  workers (anywhere otherwise); it trains into ``RUN/models/...`` on the filesystem the workers share and
  resumes from its checkpoint if it runs again. Deep evaluation asks for ``GPU`` too; classical cases run on
  any worker, meanwhile.
- **Provenance.** Every case records the host (and the GPU's name where one was used); the manifest records
  the cluster, and a worker whose regbench, torch, SimpleITK, ANTsPy or plugin versions differ from the
  driver's is refused with the difference named.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, MissingExtraError, RegbenchError
from .execution import TrainingTask
from .pool import CaseFailure, workers_ignore_sigint

INSTALL_HINT = 'pip install "regbench[dask]"'
GPU = "GPU"  # the worker resource a GPU worker advertises (dask-worker --resources GPU=1)
NO_WORKER_PATIENCE_S = 300.0  # a cluster without any worker this long, with cases pending, ends the run


def require_dask() -> None:
    from importlib import metadata

    for distribution in ("distributed",):
        try:
            metadata.version(distribution)
        except metadata.PackageNotFoundError:
            raise MissingExtraError(f"--backend dask needs dask.distributed, which is not installed: {INSTALL_HINT}") from None


# --------------------------------------------------------------------------------------- provenance
def software_versions() -> dict[str, str | None]:
    """The versions that must agree between driver and workers: regbench, torch, SimpleITK, ANTsPy and every
    installed regbench plugin distribution."""
    from importlib import metadata

    def version(distribution: str) -> str | None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return None

    versions = {d: version(d) for d in ("regbench", "torch", "SimpleITK", "antspyx")}
    for ep in metadata.entry_points(group="regbench.methods"):
        if ep.dist is not None:
            versions[f"plugin {ep.dist.name}"] = ep.dist.version
    return versions


def check_worker_versions(client: Any, ours: dict[str, str | None] | None = None) -> dict[str, dict[str, str | None]]:
    """Every worker's versions, refused with the first difference named when one differs from the driver's
    (``ours``: the driver's, by default :func:`software_versions` here)."""
    ours = software_versions() if ours is None else ours
    theirs = client.run(software_versions)
    for worker, versions in sorted(theirs.items()):
        for key in sorted(set(ours) | set(versions)):
            if ours.get(key) != versions.get(key):
                raise ConfigError(
                    f"dask worker {worker} runs {key} {versions.get(key) or 'not installed'}, the driver {ours.get(key) or 'not installed'}: "
                    "install the same versions on the workers (same environment or image)"
                )
    return theirs


def has_gpu_workers(client: Any) -> bool:
    return any(w.get("resources", {}).get(GPU, 0) >= 1 for w in client.scheduler_info(n_workers=-1)["workers"].values())


def cluster_record(config: Any, client: Any) -> dict[str, Any]:
    """What the manifest keeps about the cluster."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {
        "backend": "dask",
        "cluster": config.cluster or "external",
        "scheduler": client.scheduler.address if client.scheduler else None,
        "workers": [
            {"address": a, "host": w.get("host"), "nthreads": w.get("nthreads"), "resources": w.get("resources", {})} for a, w in sorted(workers.items())
        ],
    }


# ------------------------------------------------------------------------------------------- clusters
SLURM_KEYS = (
    "cores",
    "memory",
    "processes",
    "walltime",
    "queue",
    "account",
    "job_extra_directives",
    "job_script_prologue",
    "worker_extra_args",
    "local_directory",
    "log_directory",
    "interface",
    "python",
    "jobs",
    "job_name",
)


def _slurm_options(pool: str, settings: dict[str, Any]) -> tuple[dict[str, Any], int]:
    unknown = sorted(set(settings) - set(SLURM_KEYS))
    if unknown:
        raise ConfigError(f"slurm.{pool}: unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(SLURM_KEYS)}")
    options = {k: v for k, v in settings.items() if k != "jobs"}
    jobs = settings.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"slurm.{pool}.jobs must be a non-negative integer (SLURM jobs to start), got {jobs!r}")
    for key in ("cores", "memory"):
        if key not in options:
            raise ConfigError(f"slurm.{pool} needs {key!r} (dask-jobqueue needs the resources of one job)")
    options.setdefault("processes", 1)
    if pool == "gpu":
        options["worker_extra_args"] = [*options.get("worker_extra_args", []), "--resources", f"{GPU}=1"]
    options.setdefault("job_name", f"regbench-{pool}")
    return options, jobs


def slurm_cluster(slurm: dict[str, Any]) -> Any:
    """A SLURMCluster for the ``cpu`` pool; the ``gpu`` pool's jobs join the same scheduler as extra entries of
    its worker spec (dask-jobqueue renders one job class per cluster; a SpecCluster takes one spec per
    worker). ``cluster.regbench_job_scripts`` holds both pools' job scripts (``sbatch`` files)."""
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import SLURMJob

    cpu_options, cpu_jobs = _slurm_options("cpu", slurm["cpu"])
    cluster: Any = SLURMCluster(**cpu_options, scheduler_options={"dashboard_address": ":0"})
    cluster.regbench_job_scripts = {"cpu": cluster.job_script()}
    if cpu_jobs:
        cluster.scale(jobs=cpu_jobs)
    if "gpu" in slurm:
        gpu_options, gpu_jobs = _slurm_options("gpu", slurm["gpu"])
        shared = {k: v for k, v in cluster.new_spec["options"].items() if k in ("config_name", "interface", "protocol", "security")}
        options = {**shared, **gpu_options}
        cluster.regbench_job_scripts["gpu"] = SLURMJob(scheduler=cluster.scheduler_address, name="regbench-gpu", **options).job_script()
        for index in range(gpu_jobs):
            cluster.worker_spec[f"regbench-gpu-{index}"] = {"cls": SLURMJob, "options": options}
        if gpu_jobs:
            cluster.sync(cluster._correct_state)
    return cluster


@dataclass
class Cluster:
    """The run's view of a dask cluster: the client, whether GPU workers exist, what the manifest records."""

    client: Any
    gpu_workers: bool
    record: dict[str, Any]
    gpu_resource: str = GPU

    def submit_cases(
        self,
        fn: Any,
        method: Any,
        pairs: list[Any],
        args: tuple[Any, ...],
        examples: set[Any],
        gpu: bool,
        flows: Collection[Any] = frozenset(),
        method_name: str = "method",
    ) -> Iterator[tuple[Any, Any]]:
        """``fn(method, pair, *args)`` for every pair, one task each, yielding ``(pair, row)`` as they finish
        (``method_name`` names the tasks on dask's dashboard).

        At most one task per worker thread is submitted at a time: when a worker dies, the scheduler blames
        the tasks it held, so it must hold only the one it was running. Such a task is rerun on another
        worker (up to ``distributed.scheduler.allowed-failures`` times, dask's default 3: a pre-empted or
        ``scancel``-ed SLURM job loses nothing); a task whose workers all died yields a
        :class:`~regbench.pool.CaseFailure` instead of ending the run. A cluster left without any worker for
        :data:`NO_WORKER_PATIENCE_S` is an error, not a hang (dask's nanny has been seen not to restart a
        worker after several deaths in a few seconds). Tasks still pending when the caller stops (Ctrl-C, an
        error) are cancelled."""
        from distributed import KilledWorker

        resources = {self.gpu_resource: 1} if gpu else None
        tag = uuid.uuid4().hex[:8]
        waiting = list(pairs)[::-1]
        pair_of: dict[Any, Any] = {}  # pending future -> its pair
        no_worker_since: float | None = None
        last_check = time.monotonic()
        capacity = self._capacity(gpu)  # asked again when a case finishes and every 5 s, not at every poll
        try:
            while waiting or pair_of:
                while waiting and len(pair_of) < capacity:
                    pair = waiting.pop()
                    key = f"regbench-case-{method_name}-{pair.case_id}-{tag}"
                    # pure=False: a rerun of the command submits again
                    future = self.client.submit(
                        fn, method, pair, *args, keep_example=pair.key in examples, keep_flow=pair.key in flows, resources=resources, pure=False, key=key
                    )
                    pair_of[future] = pair
                done = [f for f in pair_of if f.done()]  # a local check: the client learns of results as they come
                if not done:
                    time.sleep(0.05)
                    if time.monotonic() - last_check > 5:
                        no_worker_since, last_check = self._check_workers(no_worker_since), time.monotonic()
                        capacity = self._capacity(gpu)
                    continue
                capacity = self._capacity(gpu)
                for future in done:
                    try:
                        row = future.result()
                    except KilledWorker as exc:
                        tries = exc.args[2] + 1 if len(exc.args) > 2 and isinstance(exc.args[2], int) else None
                        row = CaseFailure(f"worker died: {'the ' + str(tries) if tries else 'every'} dask worker(s) that ran it died (KilledWorker)")
                    yield pair_of.pop(future), row
        finally:
            self.client.cancel([f for f in pair_of if not f.done()])

    def _check_workers(self, no_worker_since: float | None) -> float | None:
        """When the cluster first had no worker (None while it has one); an error after the patience."""
        if self.client.nthreads():
            return None
        now = time.monotonic()
        if no_worker_since is None:
            return now
        if now - no_worker_since > NO_WORKER_PATIENCE_S:
            raise RegbenchError(
                f"the dask cluster ({self.client.scheduler.address}) has had no worker for {NO_WORKER_PATIENCE_S:.0f} s"
                " with cases pending; finished cases are stored: run the same command to resume"
            )
        return no_worker_since

    def _capacity(self, gpu: bool) -> int:
        """Tasks the cluster runs at once: its worker threads (GPU workers only, for ``gpu``); at least 1."""
        if gpu:  # scheduler_info is refreshed every few seconds only; nthreads() asks the scheduler now
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            return max(1, sum(1 for w in workers if w.get("resources", {}).get(self.gpu_resource)))
        return max(1, sum(self.client.nthreads().values()))

    def submit_training(self, task: TrainingTask) -> Any:
        """One training task; on a GPU worker where there are any."""
        resources = {self.gpu_resource: 1} if self.gpu_workers else None
        # pure=False: a retried run submits again and the task resumes from its checkpoint
        return self.client.submit(task, resources=resources, pure=False, key=f"regbench-train-{task.name}-{task.seed}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def open_cluster(config: Any, wait_for_workers: float = 60.0) -> Iterator[Cluster]:
    """The dask cluster for ``config`` (started or connected), its workers' versions checked against ours;
    closed (with whatever it still runs cancelled) on the way out."""
    with open_client(config) as client:
        if client.scheduler_info(n_workers=-1)["workers"] == {}:
            try:
                client.wait_for_workers(1, timeout=wait_for_workers)
            except Exception:
                raise ConfigError(f"the dask cluster ({client.scheduler.address}) has no worker after {wait_for_workers:.0f} s") from None
        versions = check_worker_versions(client)
        record = cluster_record(config, client)
        record["worker_versions"] = versions
        yield Cluster(client, has_gpu_workers(client), record)


@contextlib.contextmanager
def open_client(config: Any) -> Iterator[Any]:
    """A dask Client for the run's backend settings; the cluster regbench started is closed afterwards."""
    require_dask()
    import logging
    import os

    # dask logs every worker, client and scheduler event at INFO; regbench's own log (INFO) would pass them on.
    # Workers regbench starts log errors only (a Ctrl-C would otherwise print each cancelled task).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from distributed import Client, LocalCluster

    cluster = None
    if config.scheduler is not None:
        client = Client(config.scheduler, set_as_default=False)
    elif config.scheduler_file is not None:
        if not Path(config.scheduler_file).exists():
            raise ConfigError(f"scheduler_file {config.scheduler_file} does not exist (dask-scheduler --scheduler-file writes it)")
        client = Client(scheduler_file=config.scheduler_file, set_as_default=False)
    elif config.cluster == "slurm":
        cluster = slurm_cluster(config.slurm)
        client = Client(cluster, set_as_default=False)
    else:
        workers = config.jobs if config.jobs > 0 else (os.cpu_count() or 1)
        import dask

        # dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers: glibc then returns freed memory to the
        # system after every training step and the next step faults it back in; training ran ~3x slower than in
        # the driver. The workers regbench starts keep glibc's default.
        # And on one machine a training's OpenMP threads share the cores with the other workers' cases: threads
        # that spin while waiting slow everything (measured: a 10-epoch training beside FireANTs cases took
        # 92.8 s, with both changes 51.1 s; alone 28.8 s). Neither changes a number.
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items() if k != "MALLOC_TRIM_THRESHOLD_"}
        environ.setdefault("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        with workers_ignore_sigint(), dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            # Ctrl-C reaches the driver only, which cancels and closes the cluster
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")  # any free port: never a clash
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
