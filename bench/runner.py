"""``regbench run``: dataset → pairs → methods → registrations → metrics → store → tables.

Cases run under joblib (``jobs`` processes, one thread each when several run) and each finished case is
stored at once; a run started again with the same settings skips what is stored. Trainable methods are
trained (or loaded) on the train split first, with checkpoints under ``RUN/models/METHOD/``.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from joblib import Parallel, delayed

from .config import RunConfig, get_profile
from .errors import ConfigError, RegbenchError
from .interface import Pair, is_trainable, num_parameters
from .metrics import evaluate
from .provenance import environment
from .registry import DATASETS, METHODS, method_sort_key
from .report import write_run_tables
from .store import RunStore, bind_method, bind_run_dir, write_manifest

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


_WARMED: set[int] = set()  # ids of method objects warmed up in this process


def _warm_up_once(method: Any, pair: Pair) -> None:
    """One untimed registration per method and process: library loading (ANTs ~1.3 s), first-call
    allocations and CUDA kernels selection stay out of ``time_s``."""
    if id(method) in _WARMED:
        return
    _WARMED.add(id(method))
    try:
        method.register(pair.fixed, pair.moving)
    except Exception:  # the timed call reports the failure
        pass


def evaluate_case(method: Any, pair: Pair, dataset: str, seed: int, threads: int | None, hd95_convention: str, jacobian_scheme: str) -> dict[str, Any]:
    """Register one pair and score it; any exception becomes a failed row with its reason."""
    limit_threads(threads)
    row: dict[str, Any] = {"method": method.name, "dataset": dataset, "subject": pair.subject, "slice": int(pair.slice)}
    import torch

    s = case_seed(seed, method.name, pair)
    np.random.seed(s)
    torch.manual_seed(s)
    try:
        _warm_up_once(method, pair)
        start = time.perf_counter()
        registration = method.register(pair.fixed, pair.moving)
        elapsed = time.perf_counter() - start
        row.update(evaluate(pair, registration, hd95_convention, jacobian_scheme))
        row.update(time_s=elapsed, status="ok", reason="")
    except Exception as exc:  # a failing case is recorded, the run goes on
        row.update({k: float("nan") for k in FAILED_METRICS})
        row.update(n_skipped=0, skipped="", status="failed", reason=f"{type(exc).__name__}: {exc}".strip())
        log.debug("case %s/%s/%s failed:\n%s", method.name, pair.subject, pair.slice, traceback.format_exc())
    return row


def method_options(name: str, config: RunConfig) -> dict[str, Any]:
    """A method's options: its profile defaults, then seed/device where it takes them, then the config's."""
    factory = METHODS.get(name)
    options: dict[str, Any] = {}
    profile_options = getattr(factory, "profile_options", None)
    if callable(profile_options):
        options.update(profile_options(config.profile))
    params = inspect.signature(factory).parameters
    if "seed" in params:
        options["seed"] = config.seed
    if "device" in params:
        options["device"] = config.device
    options.update(config.method_options.get(name, {}))
    return options


def build_dataset(config: RunConfig) -> Any:
    options = {**get_profile(config.profile).dataset_options.get(config.dataset, {}), **config.dataset_options}
    return DATASETS.create(config.dataset, **options)


def dataset_options(dataset: Any) -> dict[str, Any]:
    fn = getattr(dataset, "options", None)
    return fn() if callable(fn) else {}


def _iterate_cases(method: Any, pairs: Sequence[Pair], config: RunConfig) -> Iterator[dict[str, Any]]:
    jobs = config.jobs if getattr(method, "parallel_safe", True) else 1
    threads = 1 if jobs != 1 else None
    args = (config.dataset, config.seed, threads, config.hd95_convention, config.jacobian_scheme)
    if jobs == 1:
        for pair in pairs:
            yield evaluate_case(method, pair, *args)
        return
    yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(evaluate_case)(method, pair, *args) for pair in pairs
    )


def train_or_load(method: Any, dataset: Any, model_dir: Path, retrain: bool = False) -> None:
    """Load ``final.pt`` if this run trained the method already; otherwise fit (resuming) and save it."""
    final = model_dir / "final.pt"
    if final.exists() and not retrain:
        method.load(final)
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    method.fit(dataset.pairs("train"), dataset.pairs("val"), workdir=model_dir)
    method.save(final)


def train(config: RunConfig, name: str, progress: bool = True, retrain: bool = False) -> Path:
    """Train one method on the dataset's train split into ``RUN/models/NAME/`` (resuming); no evaluation."""
    config.methods = [name]
    dataset = build_dataset(config)
    manifest = bind_run_dir(config.out_dir, _json_safe(_fingerprint(config, dataset)), {"config": _json_safe(asdict(config)), "environment": environment()})
    options = method_options(name, config)
    bind_method(config.out_dir, manifest, name, options)
    method = METHODS.create(name, **options)
    if not is_trainable(method):
        raise ConfigError(f"method {name!r} is not trainable (it has no fit/save/load)")
    if hasattr(method, "progress"):
        method.progress = progress
    model_dir = config.out_dir / "models" / name
    train_or_load(method, dataset, model_dir, retrain=retrain)
    return model_dir / "final.pt"


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


def run(config: RunConfig, progress: bool = True, retrain: bool = False) -> RunResult:
    """Run (or resume) a benchmark; returns what was computed. Tables are rewritten at the end."""
    from tqdm.auto import tqdm

    methods = METHODS.resolve(config.methods)
    methods.sort(key=method_sort_key)
    dataset = build_dataset(config)
    run_dir = config.out_dir
    manifest = bind_run_dir(run_dir, _json_safe(_fingerprint(config, dataset)), {"config": _json_safe(asdict(config)), "environment": environment()})
    store = RunStore(run_dir)
    test_pairs = dataset.pairs("test")
    if (limit := config.resolved_max_test_pairs()) is not None:
        test_pairs = test_pairs[:limit]
    manifest["test_pairs"] = len(test_pairs)
    result = RunResult(run_dir)
    for name in methods:
        try:
            options = method_options(name, config)
            bind_method(run_dir, manifest, name, options)
            done = store.done(name)
            pending = [p for p in test_pairs if (p.subject, int(p.slice)) not in done]
            result.skipped[name] = len(test_pairs) - len(pending)
            if not pending:
                continue
            method = METHODS.create(name, **options)
            if is_trainable(method):
                if hasattr(method, "progress"):
                    method.progress = progress  # epoch bar with the losses
                train_or_load(method, dataset, run_dir / "models" / name, retrain=retrain)
            manifest["methods_params"] = {**manifest.get("methods_params", {}), name: num_parameters(method)}
            write_manifest(run_dir, manifest)
        except RegbenchError:
            raise  # configuration errors stop the run with their own message
        except Exception as exc:
            result.failed_methods[name] = f"{type(exc).__name__}: {exc}"
            log.error("method %s could not run: %s", name, result.failed_methods[name])
            continue
        bar = tqdm(total=len(pending), desc=f"{name:>14}", unit="pair", disable=not progress, leave=True)
        count = 0
        for row in _iterate_cases(method, pending, config):
            row["params"] = manifest["methods_params"].get(name)
            store.append(row)
            count += 1
            bar.update(1)
        bar.close()
        result.evaluated[name] = count
    write_run_tables(run_dir, store.all_rows(), manifest)
    return result


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
