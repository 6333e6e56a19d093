"""What a worker does, whichever path sent it: the serial loop, joblib/loky processes (regbench.pool) or a dask
worker (regbench.distributed). One place for case evaluation, warm-up, thread limits, method specs and the
training task, so the three paths (and ``regbench perf``) compute a case the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import traceback
import uuid
import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from .config import RunConfig, get_profile
from .errors import ConfigError
from .interface import DeclaresLabels, HasNotes, Pair, RunsOnDevice, check_moved_agrees_with_flow, register_pair, validate_registration
from .learn2reg import CONVENTION as CONVENTION_L2R
from .learn2reg import evaluate_kit
from .metrics import UNDECLARED_LABELS, ScoringSettings, evaluate
from .pool import CaseFailure, Task, run_isolated
from .registry import DATASETS, METHODS, is_trainable, meta_of
from .rundir import BASE_METRICS, checkpoint, final_model, group_column

log = logging.getLogger("regbench")


# --------------------------------------------------------------------------------------------- threads
def limit_threads(n: int | None) -> None:
    """Cap the threads of torch and ITK in this process (one per worker when several processes run)."""
    if n is None:
        return
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    except ImportError:  # pragma: no cover - SimpleITK is a dependency
        pass


def driver_threads() -> int:
    import torch

    return torch.get_num_threads()


# ------------------------------------------------------------------------------------------ building
def create_method(name: str, options: dict[str, Any], config: RunConfig | None = None) -> Any:
    """``METHODS.create`` whose errors name the method and where its options came from."""
    try:
        return METHODS.create(name, **options)
    except ConfigError as exc:
        if f"{name!r}" in str(exc) or f" {name} " in str(exc):
            raise
        if config is None:
            origin = "its options"
        elif config.source:
            origin = f"method_options of config file {config.source} or profile {config.profile}"
        else:
            origin = f"profile {config.profile} or method_options"
        raise type(exc)(f"method {name!r} (options from {origin}): {exc}") from None


def build_dataset(config: RunConfig, refresh: bool = False) -> Any:
    """The run's dataset; ``refresh``: prepared from its files again, ignoring its cache (where it keeps one)."""
    options = {**get_profile(config.profile).dataset_options.get(config.dataset, {}), **config.dataset_options}
    if refresh and "refresh" in (DATASETS.option_names(config.dataset) or set()):
        options["refresh"] = True
    elif refresh:
        log.info("dataset %r keeps no cache: --refresh has nothing to refresh", config.dataset)
    dataset = DATASETS.create(config.dataset, **options)
    for note in dataset.notes() if isinstance(dataset, HasNotes) else ():
        log.warning("dataset %r: %s", config.dataset, note)
    return dataset


@dataclass(frozen=True)
class MethodSpec:
    """What a worker needs to build a method: its name, its options (as given: ``device="auto"`` is resolved
    where it is built) and, for a trained method, the model file to load."""

    name: str
    options_json: str
    model_path: str | None = None

    @classmethod
    def of(cls, name: str, options: dict[str, Any], model_path: Path | None = None) -> MethodSpec:
        return cls(name, json.dumps(options, sort_keys=True, default=str), str(model_path) if model_path else None)

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json)

    def build(self) -> Any:
        method = METHODS.create(self.name, **self.options)
        if self.model_path is not None:
            method.load(Path(self.model_path))
        return method


_BUILT: dict[MethodSpec, Any] = {}  # per worker process


def built_method(spec: MethodSpec) -> Any:
    """The method for ``spec``, built once per process (each task unpickles the spec, not a model)."""
    method = _BUILT.get(spec)
    if method is None:
        if len(_BUILT) >= 4:  # a worker serves methods one after another: keep a few, free the rest
            _BUILT.pop(next(iter(_BUILT)))
        method = _BUILT[spec] = spec.build()
        with contextlib.suppress(AttributeError):  # copies of one spec share the warm-up
            setattr(method, WARM_UP_KEY, spec)
    return method


# ------------------------------------------------------------------------------------------- warm-up
_WARMED: set[Any] = set()  # warm-up keys of the method objects warmed up in this process
WARM_UP_KEY = "_regbench_warm_up_key"


def mark_for_warm_up(method: Any) -> None:
    """Give ``method`` a key that survives pickling, so that the copies a worker unpickles (one per task)
    are warmed up once per process, not once per case."""
    if getattr(method, WARM_UP_KEY, None) is None:
        with contextlib.suppress(AttributeError):  # an object that takes no attributes is warmed up per copy
            setattr(method, WARM_UP_KEY, uuid.uuid4().hex)


def _warm_up_once(method: Any, pair: Pair) -> None:
    """One untimed registration per method and process: library loading (ANTs ~1.3 s), first-call
    allocations and CUDA kernels selection stay out of ``time_s``."""
    key = getattr(method, WARM_UP_KEY, None) or id(method)
    if key in _WARMED:
        return
    _WARMED.add(key)
    try:
        register_pair(method, pair)
    except Exception:  # the timed call reports the failure
        pass


# ---------------------------------------------------------------------------------------------- a case
def where_am_i(device: Any = None) -> dict[str, Any]:
    """The host, the dask worker (its address; None outside a dask worker) and the GPU's name when
    ``device`` is a CUDA device."""
    gpu = None
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(device)
    worker = None
    if "distributed" in sys.modules:  # a dask worker has imported it; importing it here took 0.7 s per process
        from distributed import get_worker

        try:
            worker = get_worker().address
        except ValueError:  # imported, but not in a dask worker
            pass
    return {"host": socket.gethostname(), "worker": worker, "gpu": gpu}


def case_seed(seed: int, method: str, pair: Pair) -> int:
    """A per-case seed that does not depend on order or on the number of workers."""
    return zlib.crc32(f"{seed}/{method}/{pair.case_id}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class CaseSettings:
    """What every case of one method's scoring shares: the dataset's name (rows carry it), the run's seed (each
    case's own is drawn from it, the method and the pair), the threads a worker may use (None: leave them) and how
    cases are scored."""

    dataset: str
    seed: int
    threads: int | None
    scoring: ScoringSettings

    @classmethod
    def of(cls, config: RunConfig, threads: int | None) -> CaseSettings:
        return cls(config.dataset, config.seed, threads, ScoringSettings.of(config))


def evaluate_case(method: Any, pair: Pair, settings: CaseSettings, keep_example: bool = False, keep_flow: bool = False) -> dict[str, Any]:
    """Register one pair and score it; any exception becomes a failed row with its reason.

    ``method``: a method object, or a :class:`MethodSpec` (built once per process). With ``keep_example`` the
    row carries the moved image and flow under ``"_example"`` (for the qualitative figure), with ``keep_flow``
    the flow under ``"_flow"`` (``keep_flows``: for export); the runner saves them and never stores them in the
    table."""
    limit_threads(settings.threads)
    if isinstance(method, MethodSpec):
        method = built_method(method)
    row = case_key(method.name, settings.dataset, pair)
    scoring = settings.scoring
    row.update(where_am_i(method.device if isinstance(method, RunsOnDevice) else None))
    import torch

    s = case_seed(settings.seed, method.name, pair)
    np.random.seed(s)
    torch.manual_seed(s)
    try:
        _warm_up_once(method, pair)
        start = time.perf_counter()
        registration = register_pair(method, pair)
        elapsed = time.perf_counter() - start
        validate_registration(registration, pair.fixed.shape)  # a NaN flow fails the case, never scores
        check_moved_agrees_with_flow(pair.moving, registration)  # a flow in other units fails, never ranks
        row.update(evaluate(pair, registration, scoring.hd95_convention, scoring.jacobian_scheme, ndv_mask=scoring.ndv_mask))
        if CONVENTION_L2R in scoring.conventions:  # the kit's numbers, in their own l2r_ columns
            row.update(evaluate_kit(pair, registration.flow))
        # A method that reads results computed elsewhere (time_measured False) has no time to report.
        row.update(time_s=elapsed if meta_of(method).time_measured else float("nan"), status="ok", reason="")
        if keep_example:
            row["_example"] = {"moved": registration.moved.astype(np.float32), "flow": registration.flow.astype(np.float32)}
        if keep_flow:
            row["_flow"] = {"flow": registration.flow.astype(np.float32)}
    except Exception as exc:  # a failing case is recorded, the run goes on
        row.update(_failure(f"{type(exc).__name__}: {exc}".strip()))
        log.debug("case %s/%s failed:\n%s", method.name, pair.case_id, traceback.format_exc())
    return row


def _failure(reason: str) -> dict[str, Any]:
    return {**{k: float("nan") for k in BASE_METRICS}, "n_skipped": 0, "skipped": "", "status": "failed", "reason": reason}


def failed_case_row(name: str, dataset: str, pair: Pair, reason: str) -> dict[str, Any]:
    """The row of a case that produced no row of its own (its worker died, or it timed out)."""
    return {**case_key(name, dataset, pair), **_failure(reason)}


def case_key(method: str, dataset: str, pair: Pair) -> dict[str, Any]:
    """The key columns of a case's row (rundir.KEY_COLUMNS but the seed, which the runner adds) and its group
    attributes (rundir.group_column)."""
    return {"method": method, "dataset": dataset, "case_id": pair.case_id, "subject": pair.subject, **{group_column(k): v for k, v in pair.groups.items()}}


def case_geometry(pairs: Sequence[Pair]) -> dict[str, Any]:
    """What the run's test images are on: ``spacing_mm`` (the most common spacing, array-axis order), ``spacings``
    (how many distinct spacings the pairs have) and ``through_plane_axis`` (the axis of thick slices, or None)."""
    from collections import Counter

    from .pyramid import through_plane_axis

    counts = Counter(tuple(round(float(s), 6) for s in pair.spacing) for pair in pairs)
    if not counts:
        return {}
    spacing = counts.most_common(1)[0][0]
    return {"spacing_mm": list(spacing), "spacings": len(counts), "through_plane_axis": through_plane_axis(spacing)}


def case_groups(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """The group attributes the pairs carry: name → its values in sorted order."""
    seen: dict[str, set[str]] = {}
    for pair in pairs:
        for name, value in pair.groups.items():
            seen.setdefault(name, set()).add(str(value))
    return {name: sorted(values) for name, values in seen.items()}


# ------------------------------------------------------------------------------------------- training
def run_labels(config: RunConfig, dataset: Any = None) -> dict[str, int]:
    """The labels a run's cases are scored on: :func:`dataset_labels` of its dataset."""
    return dataset_labels(config.dataset, dataset)


def dataset_labels(name: str, dataset: Any = None) -> dict[str, int]:
    """The labels the cases of dataset ``name`` are scored on: what the dataset object declares
    (``declared_labels()``, for a dataset whose labels come with its files), else its registration's
    (``DatasetMeta.labels``), else regbench.metrics.UNDECLARED_LABELS."""
    if isinstance(dataset, DeclaresLabels) and (found := dataset.declared_labels()) is not None:
        return dict(found)
    declared = DATASETS.meta(name).labels
    return dict(UNDECLARED_LABELS if declared is None else declared)


def dataset_pairs(dataset: Any, split: str, labels: Mapping[str, int] | None = None) -> list[Pair]:
    """A split's pairs, each carrying the labels its dataset declares (``DatasetMeta.labels``) unless it sets
    its own."""
    pairs = list(dataset.pairs(split))
    if labels is not None:
        for pair in pairs:
            if pair.labels is None:
                pair.labels = dict(labels)
    return pairs


def train_or_load(method: Any, dataset: Any, model_dir: Path, retrain: bool = False, labels: Mapping[str, int] | None = None) -> None:
    """Load the model directory's final model if this run trained the method already; otherwise fit
    (resuming from its checkpoint) on the train and val splits (with the dataset's declared ``labels``) and
    save it."""
    final = final_model(model_dir)
    if final.exists() and not retrain:
        method.load(final)
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    method.fit(dataset_pairs(dataset, "train", labels), dataset_pairs(dataset, "val", labels), workdir=model_dir)
    method.save(final)
    # The checkpoint only serves resuming an interrupted training (HyperMorph's is 1.5 GB with AdamW state).
    checkpoint(model_dir).unlink(missing_ok=True)


@dataclass(frozen=True)
class TrainingTask:
    """One (method, seed) trained into ``directory`` (``RUN/models/...``) on a dask worker, on the filesystem
    the workers share. Idempotent: a task that runs again (a lost worker, a walltime) resumes from the
    checkpoint, or loads the final model when an earlier run of it finished; every write is atomic.

    ``threads``: torch threads for CPU training (dask starts its workers with one); the same count as the
    driver's gives a LocalCluster the default backend's numbers, bit for bit (CPU results depend on it).
    ``one_at_a_time``: trainings wait for each other (a cluster-wide semaphore): on one machine, two
    multi-threaded trainings at once oversubscribe the cores (measured: 45 s each instead of 5 s)."""

    config: RunConfig
    name: str
    options: dict[str, Any]
    seed: int | None
    directory: str
    retrain: bool
    threads: int | None = None
    one_at_a_time: bool = False
    at_once: int | None = None  # how many trainings ran side by side with it on this machine (recorded)

    def __call__(self) -> dict[str, Any]:
        import torch

        torch.set_num_threads(self.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
        options = {**self.options, "seed": self.seed} if self.seed is not None else self.options
        method = create_method(self.name, options, self.config)
        with contextlib.ExitStack() as stack:
            if self.one_at_a_time:
                from distributed import Semaphore

                stack.enter_context(Semaphore(max_leases=1, name="regbench-training"))
            started = time.perf_counter()
            dataset = build_dataset(self.config)
            train_or_load(method, dataset, Path(self.directory), retrain=self.retrain, labels=run_labels(self.config, dataset))
        return {
            **where_am_i(method.device if isinstance(method, RunsOnDevice) else None),
            "threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - started, 1),
            **({"trainings_at_once": self.at_once} if self.at_once else {}),
        }


#: What one training holds on a GPU, for choosing how many run at once: peaks measured on an H200 at 128 px,
#: batch 32, fp32 (docs/methods.md, "On a GPU") were 1.5-1.6 GiB for VoxelMorph and the gradient-surgery
#: variants (about 800 float32 values per voxel of the batch) and 2.8 GiB for HyperMorph (about 1400); twice
#: HyperMorph's per voxel for headroom, plus the process's own CUDA context and workspace.
GPU_BYTES_PER_BATCH_VOXEL = 2 * 1400 * 4
GPU_CONTEXT_BYTES = 1 << 30


def gpu_training_bytes(options: Mapping[str, Any], image_shape: Sequence[int]) -> int:
    """The memory one training of these options is taken to hold on a GPU (see :data:`GPU_BYTES_PER_BATCH_VOXEL`)."""
    batch = int(options.get("batch_size", 32))
    return GPU_CONTEXT_BYTES + GPU_BYTES_PER_BATCH_VOXEL * batch * int(np.prod(image_shape))


def gpu_slots(pending: Sequence[Mapping[str, Any]], image_shape: Sequence[int], free_bytes: int, host_threads: int) -> int:
    """How many of the ``pending`` trainings' options fit on one GPU at once: as many as the free memory holds at
    the largest one's estimate (:func:`gpu_training_bytes`, 90% of what is free), at most one per host thread
    (each process launches its own kernels), at least one."""
    largest = max(gpu_training_bytes(o, image_shape) for o in pending)
    return max(1, min(len(pending), int(0.9 * free_bytes) // largest, host_threads))


def gpu_free_bytes(device: Any) -> int:
    """Free memory on ``device`` now (CUDA's own count: other processes' use included)."""
    import torch

    return int(torch.cuda.mem_get_info(device)[0])


def side_by_side_trainings(
    config: RunConfig,
    built: dict[str, tuple[dict[str, Any], Any]],
    units: Sequence[tuple[str, int | None]],
    model_dir: Any,
    retrain: bool,
    image_shape: Sequence[int] | None = None,
) -> tuple[list[tuple[tuple[str, int | None], TrainingTask]], int]:
    """The trainings to run side by side on this machine, longest first, and how many at once; ([], 1) when
    one at a time (in the driver, with all its threads) is what applies.

    On a CPU: side by side when ``config.parallel_trainings`` (default: ``config.jobs``) is at least 2 and at least
    two (method, seed) units are to be trained by methods whose cases may run in worker processes. Each then
    gets (the driver's torch threads ÷ trainings at once) threads. Measured on a 2-core AMD EPYC (Zen 3, AVX2):
    two 1-thread trainings of VoxelMorph-m did 10% more steps per second in total than one with 2 threads, of
    GSMorph 18%.

    On a GPU (two or more units whose models are on one CUDA device, ``image_shape`` given): as many at once as
    its free memory holds (:func:`gpu_slots`), at most ``config.parallel_trainings``. One training at
    128 px launches small kernels and uses a sliver of a large GPU (docs/methods.md, "On a GPU"); each process
    trains as it would alone, so its numbers for its seed are those of one at a time. CPU units then train one
    at a time in the driver, as they do beside a GPU.

    ``model_dir(name, seed)`` is the unit's model directory."""
    pending: list[tuple[str, int | None, dict[str, Any], Any]] = []
    for name, seed in units:
        options, method = built[name]
        if not is_trainable(method) or (final_model(model_dir(name, seed)).exists() and not retrain):
            continue
        pending.append((name, seed, options, _cuda_device(method)))
    on_gpu = [u for u in pending if u[3] is not None]
    gpus = {str(u[3]) for u in on_gpu}
    if len(on_gpu) >= 2 and len(gpus) == 1 and image_shape is not None and config.parallel_trainings != 1:
        chosen = on_gpu
        slots = gpu_slots([u[2] for u in on_gpu], image_shape, gpu_free_bytes(on_gpu[0][3]), driver_threads())
        slots = min(slots, config.parallel_trainings or slots)
    else:
        chosen = [u for u in pending if u[3] is None and parallel_safe(built[u[0]][1])]
        slots = config.parallel_trainings or config.jobs
    slots = min(slots, len(chosen))
    if slots < 2:
        return [], 1
    threads = max(1, driver_threads() // slots)
    cost = lambda unit: float(unit[2].get("epochs", 1)) * METHODS.meta(unit[0]).epoch_cost  # noqa: E731
    ordered = sorted(chosen, key=cost, reverse=True)  # stable: equal costs keep the run's method order
    tasks = [((n, s), TrainingTask(config, n, o, s, str(model_dir(n, s)), retrain, threads, at_once=slots)) for n, s, o, _ in ordered]
    return tasks, slots


def is_cuda(device: Any) -> bool:
    """Whether ``device`` (a torch.device or its name) is a CUDA device."""
    return getattr(device, "type", str(device)).startswith("cuda")


def _cuda_device(method: Any) -> Any:
    """The CUDA device a method's model is on, else None."""
    device = method.device if isinstance(method, RunsOnDevice) else None
    return device if device is not None and is_cuda(device) else None


# -------------------------------------------------------------------------------------- many cases
def iterate_cases(
    method: Any, pairs: Sequence[Pair], config: RunConfig, examples: set[str], cluster: Any = None, spec: Any = None, flows: Collection[str] = frozenset()
) -> Iterator[dict[str, Any]]:
    """Score ``pairs`` with ``method``, yielding rows as they finish (in any order); the pairs whose key is in
    ``examples`` keep their moved image and flow, those in ``flows`` their flow (:func:`evaluate_case`).

    joblib processes on this machine (``config.jobs``), or, with ``cluster``, tasks on the dask cluster:
    one task per pair, one per worker thread at a time (rows stream back one by one; see
    :meth:`~regbench.distributed.Cluster.submit_cases`), the method
    sent as ``spec`` (built and cached on each worker), deep methods on GPU workers where the cluster has them."""
    args_for = lambda threads: (CaseSettings.of(config, threads),)  # noqa: E731
    task_method = spec if spec is not None else method  # what workers receive; a spec is its own warm-up key
    if spec is None:
        mark_for_warm_up(method)
    if cluster is not None:  # n_jobs means nothing to dask, and the jobs == 1 shortcut would bypass the cluster
        gpu = cluster.gpu_workers and is_trainable(method)
        cases = cluster.submit_cases(
            evaluate_case, task_method, list(pairs), args_for(None if gpu else 1), examples, gpu=gpu, flows=set(flows), method_name=method.name
        )
        for pair, row in cases:
            yield _row_of_failure(method.name, config.dataset, pair, row) if isinstance(row, CaseFailure) else row
        return
    parallel = parallel_safe(method)
    jobs = config.jobs if parallel else 1
    threads = 1 if jobs != 1 else None
    args = args_for(threads)
    if jobs == 1 and not (parallel and isolates_cases(method)):
        for pair in pairs:
            yield evaluate_case(method, pair, *args, keep_example=pair.key in examples, keep_flow=pair.key in flows)
        return
    by_key = {pair.key: pair for pair in pairs}
    tasks = [Task(pair.key, (task_method, pair, *args), {"keep_example": pair.key in examples, "keep_flow": pair.key in flows}) for pair in pairs]
    for key, row in run_isolated(evaluate_case, tasks, jobs, config.case_timeout_for(method.name)):
        yield _row_of_failure(method.name, config.dataset, by_key[cast(str, key)], row) if isinstance(row, CaseFailure) else row


def _row_of_failure(name: str, dataset: str, pair: Pair, failure: CaseFailure) -> dict[str, Any]:
    """A case whose worker died or that timed out: one warning, and its failed row."""
    log.warning("%s: case %s failed: %s", name, pair.case_id, failure.reason)
    return failed_case_row(name, dataset, pair, failure.reason)


def parallel_safe(method: Any) -> bool:
    """Whether ``method``'s cases may run in several processes: declared (``MethodMeta.parallel_safe``), and not
    on a CUDA device (:class:`RunsOnDevice`: a model there is evaluated in the main process)."""
    on_gpu = isinstance(method, RunsOnDevice) and is_cuda(method.device)
    return bool(meta_of(method).parallel_safe and not on_gpu)


def isolates_cases(method: Any) -> bool:
    """Whether ``method``'s cases run in a worker process even with --jobs 1, so that a crash in it (a segfault
    in native code, ``os._exit``) or a hang fails the case, not the run: methods that declare
    ``isolate_cases=True`` (regbench's wrappers of native libraries) and every method from outside regbench
    unless it declares ``isolate_cases=False``."""
    declared = meta_of(method).isolate_cases  # a plugin without metadata: its class's isolate_cases attribute
    if declared is not None:
        return bool(declared)
    return type(method).__module__.split(".")[0] != "regbench"
