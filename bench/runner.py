"""``regbench run``: dataset → pairs → methods → registrations → metrics → store → tables.

Cases run under joblib (``jobs`` processes, one thread each when several run) and each finished case is
stored at once; a run started again with the same settings skips what is stored. Trainable methods are
trained (or loaded) on the train split first, with checkpoints under ``RUN/models/METHOD/``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import time
import traceback
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .config import RunConfig, get_profile
from .convergence import run_verdicts
from .errors import ConfigError, DataError, InputError, RegbenchError
from .interface import Pair, check_moved_agrees_with_flow, is_trainable, num_parameters, validate_pair, validate_registration
from .lock import RunDirectoryLock
from .metrics import evaluate
from .options import resolve_method_options, resolved_options
from .pool import CaseFailure, Task, run_isolated
from .provenance import environment
from .distributed import MethodSpec, built_method, where_am_i
from .registry import DATASETS, METHODS, method_sort_key
from .report import ReportOptions, write_report, write_run_tables
from .store import (
    RunStore, atomic_write_bytes, atomic_write_text, bind_method, bind_run_dir, check_method_binding, prepare_run_dir, write_manifest,
)

log = logging.getLogger("regbench")

FAILED_METRICS = (
    "dice", "dice_lv", "dice_myo", "dice_rv", "hd95", "hd95_lv", "hd95_myo", "hd95_rv",
    "mse", "njd", "sdlogj", "epe_mm", "time_s",
)


@dataclass
class RunResult:
    run_dir: Path
    evaluated: dict[str, int] = field(default_factory=dict)  # method -> cases computed in this call
    skipped: dict[str, int] = field(default_factory=dict)  # method -> cases already stored
    failed_methods: dict[str, str] = field(default_factory=dict)  # method -> why it could not run at all
    all_cases_failed: dict[str, str] = field(default_factory=dict)  # method -> first reason, no case succeeded
    some_cases_failed: dict[str, int] = field(default_factory=dict)  # method -> failed cases (others succeeded)
    retried: dict[str, int] = field(default_factory=dict)  # method -> failed cases computed again in this call
    not_converged: dict[str, str] = field(default_factory=dict)  # trained method -> why its training did not converge
    unavailable: dict[str, str] = field(default_factory=dict)  # method a pattern matched, left out: its extra is missing
    report: Any = None  # the regbench.report.Report written at the end

    @property
    def ok(self) -> bool:
        """False when a method could not run or none of a method's cases succeeded (the CLI exits 1)."""
        return not (self.failed_methods or self.all_cases_failed)


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


def case_seed(seed: int, method: str, pair: Pair) -> int:
    """A per-case seed that does not depend on order or on the number of workers."""
    return zlib.crc32(f"{seed}/{method}/{pair.subject}/{pair.slice}".encode()) & 0x7FFFFFFF


_WARMED: set[Any] = set()  # warm-up keys of the method objects warmed up in this process
WARM_UP_KEY = "_regbench_warm_up_key"


def mark_for_warm_up(method: Any) -> None:
    """Give ``method`` a key that survives pickling, so that the copies a worker unpickles (one per task)
    are warmed up once per process, not once per case."""
    if getattr(method, WARM_UP_KEY, None) is None:
        try:
            setattr(method, WARM_UP_KEY, uuid.uuid4().hex)
        except AttributeError:  # an object that takes no attributes is warmed up per copy
            pass


def _warm_up_once(method: Any, pair: Pair) -> None:
    """One untimed registration per method and process: library loading (ANTs ~1.3 s), first-call
    allocations and CUDA kernels selection stay out of ``time_s``."""
    key = getattr(method, WARM_UP_KEY, None) or id(method)
    if key in _WARMED:
        return
    _WARMED.add(key)
    try:
        method.register(pair.fixed, pair.moving)
    except Exception:  # the timed call reports the failure
        pass


def evaluate_case(method: Any, pair: Pair, dataset: str, seed: int, threads: int | None, hd95_convention: str, jacobian_scheme: str, keep_example: bool = False) -> dict[str, Any]:
    """Register one pair and score it; any exception becomes a failed row with its reason.

    With ``keep_example`` the row carries the moved image and flow under ``"_example"`` (for the
    qualitative figure); the runner saves them and never stores them in the table."""
    limit_threads(threads)
    if isinstance(method, MethodSpec):  # the dask backend sends specs; built once per worker process
        method = built_method(method)
    row: dict[str, Any] = {"method": method.name, "dataset": dataset, "subject": pair.subject, "slice": int(pair.slice)}
    row.update(where_am_i(getattr(method, "device", None)))
    import torch

    s = case_seed(seed, method.name, pair)
    np.random.seed(s)
    torch.manual_seed(s)
    try:
        _warm_up_once(method, pair)
        start = time.perf_counter()
        registration = method.register(pair.fixed, pair.moving)
        elapsed = time.perf_counter() - start
        validate_registration(registration, pair.fixed.shape)  # a NaN flow fails the case, never scores
        check_moved_agrees_with_flow(pair.moving, registration)  # a flow in other units fails, never ranks
        row.update(evaluate(pair, registration, hd95_convention, jacobian_scheme))
        row.update(time_s=elapsed, status="ok", reason="")
        if keep_example:
            row["_example"] = {"moved": registration.moved.astype(np.float32), "flow": registration.flow.astype(np.float32)}
    except Exception as exc:  # a failing case is recorded, the run goes on
        row.update(_failure(f"{type(exc).__name__}: {exc}".strip()))
        log.debug("case %s/%s/%s failed:\n%s", method.name, pair.subject, pair.slice, traceback.format_exc())
    return row


def _failure(reason: str) -> dict[str, Any]:
    return {**{k: float("nan") for k in FAILED_METRICS}, "n_skipped": 0, "skipped": "", "status": "failed", "reason": reason}


def failed_case_row(name: str, dataset: str, pair: Pair, reason: str) -> dict[str, Any]:
    """The row of a case that produced no row of its own (its worker died, or it timed out)."""
    return {"method": name, "dataset": dataset, "subject": pair.subject, "slice": int(pair.slice), **_failure(reason)}


def check_method_options(config: RunConfig) -> None:
    """Every key of ``method_options`` names a registered method (options for a registered method that is not
    in this run are kept for other runs of the same config)."""
    known = METHODS.names()
    for name in config.method_options:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            raise ConfigError(f"method_options names unknown method {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f". Known: {', '.join(known)}.")


def build_methods(config: RunConfig, names: Sequence[str]) -> dict[str, tuple[dict[str, Any], Any]]:
    """Build every method of the run before any work starts: a bad option (with did-you-mean) is one
    ConfigError naming the method, raised before anything is computed or recorded. name → (options, object)."""
    check_method_options(config)
    built = {}
    for name in names:
        options = method_options(name, config)
        method = _create(name, options, config)
        if config.seeds and is_trainable(method) and "seed" not in (METHODS.option_names(name) or {"seed"}):
            raise ConfigError(f"method {name!r} takes no 'seed' option, so --seeds cannot train it once per seed")
        built[name] = (options, method)
    return built


def _create(name: str, options: dict[str, Any], config: RunConfig | None = None) -> Any:
    """``METHODS.create`` whose errors name the method and where its options came from."""
    try:
        return METHODS.create(name, **options)
    except ConfigError as exc:
        if f"{name!r}" in str(exc) or f" {name} " in str(exc):
            raise
        source = getattr(config, "source", None)
        origin = f"method_options of config file {source} or profile {config.profile}" if source else f"profile {config.profile} or method_options" if config else "its options"
        raise type(exc)(f"method {name!r} (options from {origin}): {exc}") from None


def method_info(name: str, options: dict[str, Any], method: Any) -> dict[str, Any]:
    """What the manifest records beside the given options: the options the method actually resolved (its own
    ``options()`` where it has one, else the factory's defaults plus those given), the distribution that
    provides it, and its display name."""
    resolved = resolved_options(name, options, method)
    return {"display_name": METHODS.display_name(name, method), "provider": METHODS.provider(name), "resolved_options": resolved}


def check_device(device: str) -> None:
    """A CUDA device asked for where there is none is refused before any work (not after the CPU methods)."""
    if str(device).startswith("cuda"):
        from .trainer import resolve_device

        resolve_device(str(device))


def method_options(name: str, config: RunConfig) -> dict[str, Any]:
    """A method's options in this run: :func:`regbench.options.resolve_method_options` with the run's profile,
    seed, device and ``method_options``."""
    return resolve_method_options(name, config.profile, config.method_options.get(name), seed=config.seed, device=config.device)


def build_dataset(config: RunConfig) -> Any:
    options = {**get_profile(config.profile).dataset_options.get(config.dataset, {}), **config.dataset_options}
    return DATASETS.create(config.dataset, **options)


def load_pairs(dataset: Any, splits: Sequence[str]) -> dict[str, list[Pair]]:
    """The dataset's pairs of ``splits``, each checked once where it enters (:func:`validate_pair`: range,
    labels, shapes, spacing); a bad pair is one error naming the dataset, split, subject, slice and value."""
    structures = getattr(dataset, "structures", None)
    out = {}
    for split in splits:
        pairs = dataset.pairs(split)
        for pair in pairs:
            try:
                validate_pair(pair, structures)
            except InputError as exc:
                raise DataError(f"dataset {getattr(dataset, 'name', type(dataset).__name__)!r} {split} split, {exc}") from None
        out[split] = pairs
    return out


def dataset_options(dataset: Any) -> dict[str, Any]:
    fn = getattr(dataset, "options", None)
    return fn() if callable(fn) else {}


def _iterate_cases(
    method: Any, pairs: Sequence[Pair], config: RunConfig, examples: set[tuple[str, int]], cluster: Any = None, spec: Any = None
) -> Iterator[dict[str, Any]]:
    """Score ``pairs`` with ``method``, yielding rows as they finish (in any order).

    joblib processes on this machine (``config.jobs``), or, with ``cluster``, tasks on the dask cluster:
    one task per pair, one per worker thread at a time (rows stream back one by one; see
    :meth:`~regbench.distributed.Cluster.submit_cases`), the method
    sent as ``spec`` (built and cached on each worker), deep methods on GPU workers where the cluster has them."""
    args_for = lambda threads: (config.dataset, config.seed, threads, config.hd95_convention, config.jacobian_scheme)  # noqa: E731
    task_method = spec if spec is not None else method  # what workers receive; a spec is its own warm-up key
    if spec is None:
        mark_for_warm_up(method)
    if cluster is not None:  # n_jobs means nothing to dask, and the jobs == 1 shortcut would bypass the cluster
        gpu = cluster.gpu_workers and is_trainable(method)
        cases = cluster.submit_cases(
            evaluate_case, task_method, list(pairs), args_for(None if gpu else 1), examples, gpu=gpu
        )
        for pair, row in cases:
            yield _row_of_failure(method.name, config.dataset, pair, row) if isinstance(row, CaseFailure) else row
        return
    jobs = config.jobs if getattr(method, "parallel_safe", True) else 1
    threads = 1 if jobs != 1 else None
    args = args_for(threads)
    if jobs == 1 and not (getattr(method, "parallel_safe", True) and isolates_cases(method)):
        for pair in pairs:
            yield evaluate_case(method, pair, *args, keep_example=pair.key in examples)
        return
    by_key = {pair.key: pair for pair in pairs}
    tasks = [Task(pair.key, (task_method, pair, *args), {"keep_example": pair.key in examples}) for pair in pairs]
    for key, row in run_isolated(evaluate_case, tasks, jobs, config.case_timeout_for(method.name)):
        yield _row_of_failure(method.name, config.dataset, by_key[key], row) if isinstance(row, CaseFailure) else row


def _row_of_failure(name: str, dataset: str, pair: Pair, failure: CaseFailure) -> dict[str, Any]:
    """A case whose worker died or that timed out: one warning, and its failed row."""
    log.warning("%s: case %s slice %s failed: %s", name, pair.subject, pair.slice, failure.reason)
    return failed_case_row(name, dataset, pair, failure.reason)


def isolates_cases(method: Any) -> bool:
    """Whether ``method``'s cases run in a worker process even with --jobs 1, so that a crash in it (a segfault
    in native code, ``os._exit``) or a hang fails the case, not the run: methods that declare
    ``isolate_cases = True`` (regbench's wrappers of native libraries) and every method from outside
    regbench unless it declares ``isolate_cases = False``."""
    declared = getattr(method, "isolate_cases", None)
    if declared is not None:
        return bool(declared)
    return type(method).__module__.split(".")[0] != "regbench"


def capped_jobs(jobs: int) -> int:
    """``jobs`` worker processes, at most one per core this process may use (``-1``: one per core)."""
    from joblib import cpu_count

    cores = cpu_count()
    if jobs == -1:
        return cores
    if jobs > cores:
        log.warning("--jobs %d is more than the %d cores this process may use: running %d worker processes", jobs, cores, cores)
        return cores
    return jobs


def example_name(subject: str, slice_: int) -> str:
    return f"{subject}-{int(slice_)}.npz"


def save_example_pair(run_dir: Path, pair: Pair) -> None:
    """The images and labels of a pair shown in the qualitative figure (``examples/pairs/``)."""
    path = run_dir / "examples" / "pairs" / example_name(pair.subject, pair.slice)
    if path.exists():
        return
    arrays = {"fixed": pair.fixed, "moving": pair.moving, "spacing": np.asarray(pair.spacing, np.float64)}
    arrays.update({k: v for k, v in (("fixed_label", pair.fixed_label), ("moving_label", pair.moving_label)) if v is not None})
    _save_npz(path, arrays)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def training_seeds(config: RunConfig, method: Any) -> list[int | None]:
    """The seeds a method runs with: each of ``config.seeds`` for a trainable method, else [None] (once, with
    the method's own seed)."""
    return list(config.seeds) if config.seeds and is_trainable(method) else [None]


def model_dir(run_dir: Path, name: str, seed: int | None) -> Path:
    """``models/NAME/`` for the method's own seed, ``models/NAME/seed-S/`` per training seed."""
    return Path(run_dir) / "models" / name / ("" if seed is None else f"seed-{seed}")


def train_or_load(method: Any, dataset: Any, model_dir: Path, retrain: bool = False) -> None:
    """Load ``final.pt`` if this run trained the method already; otherwise fit (resuming) and save it."""
    final = model_dir / "final.pt"
    if final.exists() and not retrain:
        method.load(final)
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    method.fit(dataset.pairs("train"), dataset.pairs("val"), workdir=model_dir)
    method.save(final)
    # The checkpoint only serves resuming an interrupted training (HyperMorph's is 1.5 GB with AdamW state).
    (model_dir / "checkpoint.pt").unlink(missing_ok=True)


def train(config: RunConfig, name: str, progress: bool = True, retrain: bool = False) -> Path:
    """Train one method on the dataset's train split into ``RUN/models/NAME/`` (resuming); no evaluation."""
    config.methods = [name]
    check_device(config.device)
    options, method = build_methods(config, [name])[name]
    if not is_trainable(method):
        raise ConfigError(f"method {name!r} is not trainable (it has no fit/save/load)")
    prepare_run_dir(config.out_dir)
    with RunDirectoryLock(config.out_dir):
        dataset = build_dataset(config)
        load_pairs(dataset, ("train", "val"))  # a bad dataset is refused before the run directory is bound
        manifest = bind_run_dir(config.out_dir, _json_safe(_fingerprint(config, dataset)), {"config": _json_safe(asdict(config)), "environment": environment()})
        bind_method(config.out_dir, manifest, name, options, method_info(name, options, method))
        for seed in training_seeds(config, method):
            if seed is not None:
                method = _create(name, {**options, "seed": seed}, config)
            if hasattr(method, "progress"):
                method.progress = progress
            folder = model_dir(config.out_dir, name, seed)
            train_or_load(method, dataset, folder, retrain=retrain)
    return folder / "final.pt"


def write_split(run_dir: Path, dataset: Any) -> None:
    """The subjects of each split, saved with the run (``split.json``; a user may pass it back as split_file)."""
    import json

    split = getattr(dataset, "split", None)
    if callable(split):
        atomic_write_text(run_dir / "split.json", json.dumps(split(), indent=1) + "\n")


def write_sweep(path: Path, method: Any, pairs: Sequence[Pair], dataset: str) -> None:
    """A method's parameter sweep on the test pairs (per parameter value and pair), for the reports."""
    import pandas as pd

    rows = [{"method": method.name, "dataset": dataset, **row} for row in method.sweep(pairs)]
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))


def _fingerprint(config: RunConfig, dataset: Any) -> dict[str, Any]:
    return {
        "dataset": config.dataset,
        "dataset_options": dataset_options(dataset),
        "profile": config.profile,
        "seed": config.seed,
        "hd95_convention": config.hd95_convention,
        "jacobian_scheme": config.jacobian_scheme,
        "max_test_pairs": config.resolved_max_test_pairs(),
    }


def run(config: RunConfig, progress: bool = True, retrain: bool = False, report: bool = True) -> RunResult:
    """Run (or resume) a benchmark; returns what was computed. Tables and the report are rewritten at the end."""
    unavailable: dict[str, str] = {}
    methods = METHODS.resolve(config.methods, skipped=unavailable)
    if not methods:
        raise ConfigError(f"no method matches {config.methods!r}" + (f" among those installed ({'; '.join(unavailable.values())})" if unavailable else ""))
    methods.sort(key=method_sort_key)
    # Everything a user can get wrong is checked before any work: device, run directory, every method's options.
    check_device(config.device)
    if config.backend == "joblib" or config.cluster == "local":
        config.jobs = capped_jobs(config.jobs)
    run_dir = config.out_dir
    prepare_run_dir(run_dir)
    with RunDirectoryLock(run_dir):  # before anything is written; the settings are bound under it
        built = build_methods(config, methods)
        from .distributed import open_cluster

        # On dask, the workers' versions are checked here, before any work.
        with open_cluster(config) if config.backend == "dask" else contextlib.nullcontext() as cluster:
            return _run_units(config, methods, built, unavailable, cluster, progress, retrain, report)


def train_task(config: RunConfig, name: str, options: dict[str, Any], seed: int | None, directory: str, retrain: bool, threads: int | None = None, one_at_a_time: bool = False) -> dict[str, Any]:
    """One (method, seed) trained on a dask worker into ``directory`` (``RUN/models/...`` on the filesystem
    the workers share). Idempotent: a task that runs again (a lost worker, a walltime) resumes from the
    checkpoint, or loads ``final.pt`` when an earlier run of it finished; every write is atomic.

    ``threads``: torch threads for CPU training (dask starts its workers with one); the same count as the
    driver's gives a LocalCluster the default backend's numbers, bit for bit (CPU results depend on it).
    ``one_at_a_time``: trainings wait for each other (a cluster-wide semaphore): on one machine, two
    multi-threaded trainings at once oversubscribe the cores (measured: 45 s each instead of 5 s)."""
    import torch

    torch.set_num_threads(threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    method = _create(name, {**options, "seed": seed} if seed is not None else options, config)
    with contextlib.ExitStack() as stack:
        if one_at_a_time:
            from distributed import Semaphore

            stack.enter_context(Semaphore(max_leases=1, name="regbench-training"))
        started = time.perf_counter()
        train_or_load(method, build_dataset(config), Path(directory), retrain=retrain)
    return {**where_am_i(getattr(method, "device", None)), "seconds": round(time.perf_counter() - started, 1)}


def _run_units(config: RunConfig, methods: list[str], built: dict[str, Any], unavailable: dict[str, str], cluster: Any, progress: bool, retrain: bool, report: bool) -> RunResult:
    from tqdm.auto import tqdm

    run_dir = config.out_dir
    dataset = build_dataset(config)
    splits = ("train", "val", "test") if any(is_trainable(m) for _, m in built.values()) else ("test",)
    test_pairs = load_pairs(dataset, splits)["test"]  # a bad dataset is refused before the run directory is bound
    manifest = bind_run_dir(run_dir, _json_safe(_fingerprint(config, dataset)), {"config": _json_safe(asdict(config)), "environment": environment()})
    for name, (options, _) in built.items():
        check_method_binding(run_dir, manifest, name, options)
    if cluster is not None:
        manifest["cluster"] = _json_safe(cluster.record)
    store = RunStore(run_dir)
    write_split(run_dir, dataset)
    if (limit := config.resolved_max_test_pairs()) is not None:
        test_pairs = test_pairs[:limit]
    manifest["test_pairs"] = len(test_pairs)
    example_pairs = test_pairs[: config.example_pairs]
    examples = {p.key for p in example_pairs}
    for pair in example_pairs:
        save_example_pair(run_dir, pair)
    result = RunResult(run_dir, unavailable=unavailable)
    # (method, seed, first seed of the method); under dask, every training is submitted now and its method is
    # evaluated as soon as it finishes, while the classical methods run on the other workers.
    units = [(name, seed, index == 0) for name in methods for index, seed in enumerate(training_seeds(config, built[name][1]))]
    trainings: dict[tuple[str, int | None], Any] = {}
    if cluster is not None:
        for name, seed, _ in units:
            if is_trainable(built[name][1]):
                local = config.cluster == "local"  # one machine: train as the default backend does, one at a time
                trainings[(name, seed)] = cluster.submit_training(
                    config, name, built[name][0], seed, str(model_dir(run_dir, name, seed)), retrain, _driver_threads() if local else None, local
                )
    for name in methods:
        options, method = built[name]
        bind_method(run_dir, manifest, name, options, method_info(name, options, method))
    remaining = {name: sum(n == name for n, _, _ in units) for name in methods}
    try:
        for name, seed, first in _unit_order(units, trainings):
            _run_unit(config, name, seed, first, built, manifest, store, dataset, test_pairs, examples, result, cluster, trainings.get((name, seed)), progress, retrain, tqdm)
            remaining[name] -= 1
            if not remaining[name]:
                built[name] = (built[name][0], None)  # free the model before the next method
    finally:
        if cluster is not None:
            cluster.client.cancel([f for f in trainings.values() if not f.done()])
    test_keys = {p.key for p in test_pairs}
    for name in methods:
        if any(unit == name or unit.startswith(f"{name} (seed ") for unit in result.failed_methods):
            continue
        rows = [r for (m, s, z, _), r in store.rows.items() if m == name and (s, z) in test_keys]
        failures = [r for r in rows if r.get("status") != "ok"]
        if rows and len(failures) == len(rows):
            result.all_cases_failed[name] = str(failures[0].get("reason") or "no reason recorded")
        elif failures:
            result.some_cases_failed[name] = len(failures)
    write_run_tables(run_dir, store.all_rows())
    verdicts = run_verdicts(run_dir)
    result.not_converged = {m: verdicts[m].reason for m in methods if m in verdicts and not verdicts[m].converged}
    if report:
        result.report = write_report([run_dir], options=ReportOptions())
    return result


def _driver_threads() -> int:
    import torch

    return torch.get_num_threads()


def _unit_order(units: list[tuple[str, int | None, bool]], trainings: dict[tuple[str, int | None], Any]) -> Iterator[tuple[str, int | None, bool]]:
    """Units without a training task first (in order), then the trained ones as their trainings finish."""
    yield from (u for u in units if (u[0], u[1]) not in trainings)
    if trainings:
        from distributed import as_completed

        unit_of = {trainings[(n, s)].key: (n, s, f) for n, s, f in units if (n, s) in trainings}
        futures = list(trainings.values())
        for future in as_completed(futures, loop=futures[0].client.loop):
            yield unit_of[future.key]


def _run_unit(config: RunConfig, name: str, seed: int | None, first: bool, built: dict[str, Any], manifest: dict[str, Any], store: RunStore,
              dataset: Any, test_pairs: list[Pair], examples: set[tuple[str, int]], result: RunResult, cluster: Any, training: Any,
              progress: bool, retrain: bool, tqdm: Any) -> None:
    """Train (or load, or wait for the cluster's training task) and evaluate one method at one seed."""
    run_dir = config.out_dir
    options, method = built[name]
    unit = name if seed is None else f"{name} (seed {seed})"
    try:
        done, failed = store.done(name, seed), store.failed(name, seed)
        pending = [p for p in test_pairs if p.key not in done]
        result.skipped[unit] = len(test_pairs) - len(pending)
        result.retried[unit] = sum(p.key in failed for p in pending)
        sweep_path = run_dir / "curves" / f"{name}_sweep.csv"
        want_sweep = first and config.sweep and not sweep_path.exists()
        sweeps = want_sweep and callable(getattr(method, "sweep", None))
        if not pending and not sweeps:
            return
        if seed is not None:  # the same options, trained from this seed
            method = _create(name, {**options, "seed": seed}, config)
        if is_trainable(method):
            if hasattr(method, "progress"):
                method.progress = progress  # epoch bar with the losses
            if training is not None:  # trained by a task on the cluster: load what it wrote
                where = training.result()
                manifest["method_info"][name].setdefault("trained_on", {})["default" if seed is None else str(seed)] = where
                retrain = False
            train_or_load(method, dataset, model_dir(run_dir, name, seed), retrain=retrain)
            if seed is not None:
                info = manifest["method_info"][name]
                info["seeds"] = sorted({*info.get("seeds", []), seed})
        manifest["methods_params"] = {**manifest.get("methods_params", {}), name: num_parameters(method)}
        write_manifest(run_dir, manifest)
    except RegbenchError:
        raise  # configuration errors stop the run with their own message
    except Exception as exc:
        result.failed_methods[unit] = f"{type(exc).__name__}: {exc}"
        log.error("method %s could not run: %s", unit, result.failed_methods[unit])
        return
    spec = None
    final = model_dir(run_dir, name, seed) / "final.pt"
    if cluster is not None or (is_trainable(method) and final.exists()):
        # Workers build the method from its spec (a trained one loads final.pt once per process) instead of
        # unpickling it with every case: HyperMorph's 0.5 GB model cost ~1.3 s per case that way.
        from .distributed import MethodSpec

        spec_options = {**options, "seed": seed} if seed is not None else options
        spec = MethodSpec.of(name, spec_options, final if is_trainable(method) else None)
    bar = tqdm(total=len(pending), desc=f"{unit:>14}", unit="pair", disable=not progress, leave=True)
    count = 0
    for row in _iterate_cases(method, pending, config, examples if first else set(), cluster=cluster, spec=spec):
        example = row.pop("_example", None)
        if example is not None:  # saved before the row: a stored case always has its example
            _save_npz(run_dir / "examples" / name / example_name(row["subject"], row["slice"]), example)
        row["seed"] = seed
        row["params"] = manifest["methods_params"].get(name)
        store.append(row)
        count += 1
        bar.update(1)
    bar.close()
    result.evaluated[unit] = count
    if sweeps:
        write_sweep(sweep_path, method, test_pairs, config.dataset)


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
