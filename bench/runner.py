"""``regbench run``: dataset → pairs → methods → registrations → metrics → store → tables.

Cases run under joblib (``jobs`` processes, one thread each when several run) and each finished case is
stored at once; a run started again with the same settings skips what is stored. Trainable methods are
trained (or loaded) on the train split first, with checkpoints in their model directory (regbench.rundir).
What a worker does is regbench.execution's; this module is the driver.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from .config import RunConfig
from .convergence import run_verdicts
from .errors import ConfigError, RegbenchError
from .execution import (
    MethodSpec,
    TrainingTask,
    case_groups,
    create_method,
    driver_threads,
    iterate_cases,
    run_labels,
    side_by_side_trainings,
    train_or_load,
)
from .fileio import atomic_write_npz, atomic_write_text
from .interface import CONSISTENCY_MESSAGE, BindsInputs, BindsRun, DeclaresSplit, HasOptions, Pair, ProbesInputs, ReportsProgress, num_parameters
from .lock import RunDirectoryLock
from .options import resolved_options
from .plan import LevelRun, LoadedRun, RunPlan, check_device, load_pairs, plan_run, precheck, run_dims
from .pool import SideBySide
from .provenance import environment
from .registry import DATASETS, METHODS, is_trainable
from .report import ReportOptions, write_report, write_run_tables
from .rundir import Manifest, RunDir, bind_run_dir, fingerprint, prepare_run_dir
from .rundir import history as history_path
from .store import RunStore

log = logging.getLogger("regbench")


#: How many failed cases (and their reasons) a run's terminal output names per method.
FAILURES_SHOWN = 3


@dataclass
class RunResult:
    run_dir: Path
    evaluated: dict[str, int] = field(default_factory=dict)  # method -> cases computed in this call
    skipped: dict[str, int] = field(default_factory=dict)  # method -> cases already stored
    failed_methods: dict[str, str] = field(default_factory=dict)  # method -> why it could not run at all
    all_cases_failed: dict[str, str] = field(default_factory=dict)  # method -> first reason, no case succeeded
    some_cases_failed: dict[str, int] = field(default_factory=dict)  # method -> failed cases (others succeeded)
    # method -> its first failed cases' (case id, reason), where some or all failed: printed, the rest in per_case.csv
    first_failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)  # method -> test cases stored as successful
    # method -> (cases whose moved image disagrees with their flow, cases, first such reason), where most do
    wrong_convention: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)  # method -> failed cases computed again in this call
    refilled: dict[str, int] = field(default_factory=dict)  # method -> scored cases registered again for their kept flow
    not_converged: dict[str, str] = field(default_factory=dict)  # trained method -> why its training did not converge
    unavailable: dict[str, str] = field(default_factory=dict)  # method a pattern matched, left out: why (extra missing, dims)
    report: Any = None  # the regbench.report.Report written at the end

    @property
    def ok(self) -> bool:
        """False when a method could not run, none of a method's cases succeeded, or most of its flows are in
        another convention than its moved images (the CLI exits 1)."""
        return not (self.failed_methods or self.all_cases_failed or self.wrong_convention)


def build_methods(config: RunConfig, plan: RunPlan) -> dict[str, tuple[dict[str, Any], Any]]:
    """Build every method of the plan with its options (resolved for the data's dims) before any work starts: a bad
    option (with did-you-mean) is one ConfigError naming the method, raised before anything is computed or
    recorded. name → (options, object)."""
    names = [m.name for m in plan.methods]
    built = {}
    for name in names:
        options = dict(plan.method(name).options)
        method = create_method(name, options, config)
        if config.seeds and is_trainable(method) and "seed" not in (METHODS.option_names(name) or {"seed"}):
            raise ConfigError(f"method {name!r} takes no 'seed' option, so --seeds cannot train it once per seed")
        built[name] = (options, method)
    return built


def bound_options(options: Mapping[str, Any], method: Any) -> dict[str, Any]:
    """What the run directory binds for a method: its options, plus what the method itself declares through
    ``binding()`` (the fields method: the digest of the files it scores), so that results computed from other
    inputs are refused rather than reused."""
    return {**options, **(method.binding() if isinstance(method, BindsRun) else {})}


def method_info(name: str, options: dict[str, Any], method: Any) -> dict[str, Any]:
    """What the manifest records beside the given options: the options the method actually resolved (its own
    ``options()`` where it has one, else the factory's defaults plus those given), the distribution that
    provides it, its display name and what the figures need of its declared metadata (family, sweep, loss note)."""
    meta = METHODS.meta(name)
    info: dict[str, Any] = {
        "display_name": METHODS.display_name(name),
        "provider": METHODS.provider(name),
        "resolved_options": resolved_options(name, options, method),
    }
    if meta.family is not None:
        info["family"] = {"label": meta.family[0], "value": meta.family[1]}
    if meta.sweep is not None:
        info["sweep"] = {"column": meta.sweep[0], "symbol": meta.sweep[1]}
    if meta.loss_note is not None:
        info["loss_note"] = meta.loss_note
    return info


def check_methods_against_store(
    config: RunConfig, manifest: Manifest, store: RunStore, built: Mapping[str, tuple[dict[str, Any], Any]], test_pairs: Sequence[Pair]
) -> dict[str, dict[str, str | None]]:
    """Before anything runs: each method's options against those its stored cases were computed with, and the
    inputs of a method that reads them (:class:`BindsInputs`) against those its scored cases read. A method with
    no successful case stored and no model (e.g. every fields case failed on a wrong pattern) takes its new
    options, said in a line; its failed cases are computed again. Returns each input-reading method's digests."""
    inputs = {}
    for name, (options, method) in built.items():
        scored = {case for (m, case, _), row in store.rows.items() if m == name and row.get("status") == "ok"}
        changed = manifest.check_method(config.out_dir, name, bound_options(options, method), nothing_scored=not scored and not is_trainable(method))
        if changed:
            log.warning("%s: no case was scored under its stored options (%s): it runs with the new ones", name, changed)
        if isinstance(method, BindsInputs):
            inputs[name] = method.input_digests(test_pairs)
            manifest.check_inputs(config.out_dir, name, inputs[name], scored)
    return inputs


def dataset_options(dataset: Any) -> dict[str, Any]:
    return dataset.options() if isinstance(dataset, HasOptions) else {}


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


def training_seeds(config: RunConfig, method: Any) -> list[int | None]:
    """The seeds a method runs with: each of ``config.seeds`` for a trainable method, else [None] (once, with
    the method's own seed)."""
    return list(config.seeds) if config.seeds and is_trainable(method) else [None]


def save_example_pair(run_dir: RunDir, pair: Pair) -> None:
    """The images and labels of a pair shown in the qualitative figure."""
    path = run_dir.example_pair(pair.case_id)
    if path.exists():
        return
    arrays = {"fixed": pair.fixed, "moving": pair.moving, "spacing": np.asarray(pair.spacing, np.float64)}
    arrays.update({k: v for k, v in (("fixed_label", pair.fixed_label), ("moving_label", pair.moving_label)) if v is not None})
    atomic_write_npz(path, arrays)


def bind(config: RunConfig, dataset: Any) -> Manifest:
    """Create or reopen the run directory for ``config`` and ``dataset`` (refused when its settings differ)."""
    return bind_run_dir(config.out_dir, fingerprint(config, dataset_options(dataset)), asdict(config), environment(), DATASETS.display_name(config.dataset))


def train(config: RunConfig, name: str, progress: bool = True, retrain: bool = False, refresh: bool = False) -> Path:
    """Train one method on the dataset's train split into its model directory (resuming); no evaluation."""
    config.methods = [name]
    check_device(config.device)
    precheck(config)
    if not METHODS.meta(name).trainable:
        raise ConfigError(f"method {name!r} is not trainable (it has no fit/save/load)")
    prepare_run_dir(config.out_dir)
    run_dir = RunDir(config.out_dir)
    with RunDirectoryLock(config.out_dir):
        loaded = plan_run(config, refresh)  # a bad dataset is refused before the run directory is bound
        options, method = build_methods(config, loaded.plan)[name]
        if not is_trainable(method):
            raise ConfigError(f"method {name!r} is not trainable (it has no fit/save/load)")
        dataset, labels = loaded.dataset, dict(loaded.plan.dataset.labels)
        manifest = bind(config, dataset)
        manifest.set_dataset(labels, loaded.plan.dataset.dims)
        manifest.bind_method(config.out_dir, name, bound_options(options, method), method_info(name, options, method))
        for seed in training_seeds(config, method):
            if seed is not None:
                method = create_method(name, {**options, "seed": seed}, config)
            if isinstance(method, ReportsProgress):
                method.progress = progress
            train_or_load(method, dataset, run_dir.model_dir(name, seed), retrain=retrain, labels=labels)
    return run_dir.final_model(name, seed)


def write_split(run_dir: RunDir, dataset: Any) -> None:
    """The subjects of each split, saved with the run (a user may pass the file back as split_file)."""
    if isinstance(dataset, DeclaresSplit):
        atomic_write_text(run_dir.split, json.dumps(dataset.split(), indent=1) + "\n")


def write_sweep(path: Path, method: Any, pairs: Sequence[Pair], dataset: str, seed: int | None = None) -> None:
    """A method's parameter sweep on the test pairs (per parameter value and pair; the training seed of the model
    swept in column ``seed``), for the reports."""
    import pandas as pd

    rows = [{"method": method.name, "dataset": dataset, "seed": seed, **row} for row in method.sweep(pairs)]
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))


def run(config: RunConfig, progress: bool = True, retrain: bool = False, report: bool = True, refresh: bool = False) -> RunResult:
    """Run (or resume) a benchmark; returns what was computed. Tables and the report are rewritten at the end.
    ``refresh``: the dataset's pairs are prepared from its files again, ignoring its cache."""
    # Everything a user can get wrong is checked before any work: device, run directory, the data, every
    # method's options (resolved for the data's real dimension: regbench.plan).
    check_device(config.device)
    precheck(config)
    if config.backend == "joblib" or config.cluster == "local":
        config.jobs = capped_jobs(config.jobs)
    prepare_run_dir(config.out_dir)
    with RunDirectoryLock(config.out_dir):  # before anything is written; the settings are bound under it
        loaded = plan_run(config, refresh)
        built = build_methods(config, loaded.plan)
        from .distributed import open_cluster

        # On dask, the workers' versions are checked here, before any work.
        level_runs = [r for r in loaded.plan.level_runs if r.out_dir is not None]
        with open_cluster(config) if config.backend == "dask" else contextlib.nullcontext() as cluster:
            result = execute(config, loaded, built, cluster, progress, retrain, report and not level_runs)
        for level_run in level_runs:
            retrained_at(config, loaded.plan, level_run, result, progress, retrain, refresh)
        if report and level_runs:
            result.report = write_report([config.out_dir], options=ReportOptions(figures=config.figures))
        return result


def retrained_at(config: RunConfig, plan: RunPlan, level_run: LevelRun, result: RunResult, progress: bool, retrain: bool, refresh: bool) -> None:
    """``retrain_per_level``: the run's trained methods trained and scored at one level value, in a run of their own
    (``level_run.out_dir``: resumable as any run; no report, examples, flows or sweeps of its own: the run's report
    reads its cases into the stress table). What failed there is added to ``result``, named with the level."""
    assert level_run.out_dir is not None and level_run.dataset_options is not None
    at = f"retrained at {level_run.level} {level_run.value:g}"
    log.info("%s: %s in %s", at, ", ".join(m.name for m in plan.methods if m.trainable), level_run.out_dir)
    sub = replace(
        config,
        out=str(level_run.out_dir),
        dataset_options=dict(level_run.dataset_options),
        methods=[m.name for m in plan.methods if m.trainable],
        max_test_pairs=level_run.test_pairs,  # the run's pairs at this value: the first slices of each subject, as there
        example_pairs=0,
        keep_flows=False,
        sweep=False,
        figures=False,
        retrain_per_level=False,
    )
    sub_result = run(sub, progress, retrain, report=False, refresh=refresh)
    for name, why in sub_result.failed_methods.items():
        result.failed_methods[f"{name} ({at})"] = why
    for name, why in sub_result.all_cases_failed.items():
        result.all_cases_failed[f"{name} ({at})"] = why
    for name, n in sub_result.some_cases_failed.items():
        result.some_cases_failed[f"{name} ({at})"] = n


@dataclass
class RunContext:
    """What every (method, seed) unit of one run shares."""

    config: RunConfig
    run_dir: RunDir
    built: dict[str, tuple[dict[str, Any], Any]]  # name -> (options, method object; None once done)
    manifest: Manifest
    store: RunStore
    dataset: Any
    test_pairs: list[Pair]
    examples: set[str]  # case ids of the pairs whose moved images and flows are kept
    result: RunResult
    cluster: Any  # a regbench.distributed.Cluster, or None
    progress: bool
    retrain: bool


def execute(
    config: RunConfig, loaded: LoadedRun, built: dict[str, Any], cluster: Any = None, progress: bool = False, retrain: bool = False, report: bool = False
) -> RunResult:
    """Execute a plan (:func:`regbench.plan.plan_run`, or one built by hand: the seam tests use) into
    ``config.out_dir``, which the caller has prepared and holds: bind the run directory, train or load, score the
    pending cases, write the tables (and the report with ``report``). ``built``: name → (options, method)."""
    run_dir = RunDir(config.out_dir)
    plan, dataset, pairs = loaded.plan, loaded.dataset, loaded.pairs
    methods = [m.name for m in plan.methods]
    unavailable = dict(plan.left_out)
    if "train" not in pairs and any(is_trainable(m) for _, m in built.values()):  # a factory that declared no training
        pairs.update(load_pairs(dataset, ("train", "val"), plan.dataset.labels, name=config.dataset))
        run_dims(pairs, config.dataset)
    labels, dims = dict(plan.dataset.labels), plan.dataset.dims
    test_pairs = pairs["test"]
    manifest = bind(config, dataset)
    manifest.set_dataset(labels, dims, case_groups(test_pairs), plan.dataset.geometry, plan.dataset.levels)
    if plan.level_runs:
        runs: dict[str, dict[float, Path | None]] = {}
        for level_run in plan.level_runs:
            runs.setdefault(level_run.level, {})[level_run.value] = level_run.out_dir
        manifest.set_retrained([m.name for m in plan.methods if m.trainable], runs, config.out_dir)
    store = RunStore(config.out_dir)
    inputs = check_methods_against_store(config, manifest, store, built, test_pairs)
    if cluster is not None:
        manifest.set_cluster(cluster.record)
    write_split(run_dir, dataset)
    test_pairs = test_pairs[: plan.test_pairs]  # the plan applied max_test_pairs
    manifest.set_test_pairs(len(test_pairs))
    example_pairs = test_pairs[: config.example_pairs]
    for pair in example_pairs:
        save_example_pair(run_dir, pair)
    result = RunResult(config.out_dir, unavailable=unavailable)
    context = RunContext(config, run_dir, built, manifest, store, dataset, test_pairs, {p.key for p in example_pairs}, result, cluster, progress, retrain)
    # (method, seed, first seed of the method); under dask, every training is submitted now and its method is
    # evaluated as soon as it finishes, while the classical methods run on the other workers.
    units = [(name, seed, index == 0) for name in methods for index, seed in enumerate(training_seeds(config, built[name][1]))]
    trainings: dict[tuple[str, int | None], Any] = {}
    if cluster is not None:
        local = config.cluster == "local"  # one machine: train as the default backend does, one at a time
        for name, seed, _ in units:
            if is_trainable(built[name][1]):
                trainings[(name, seed)] = cluster.submit_training(
                    TrainingTask(config, name, built[name][0], seed, str(run_dir.model_dir(name, seed)), retrain, driver_threads() if local else None, local)
                )
    for name in methods:
        options, method = built[name]
        manifest.bind_method(config.out_dir, name, bound_options(options, method), method_info(name, options, method))
        if name in inputs:
            manifest.record_inputs(name, inputs[name])
    # Without a cluster, two or more CPU trainings (or trainings on one GPU) run side by side in processes of
    # their own (regbench.pool.SideBySide), once the methods without a training have used the cores.
    with_work = [(n, s) for n, s, first in units if _has_work(context, n, s, first)]
    image_shape = test_pairs[0].fixed.shape if test_pairs else None  # for the memory trainings on a GPU hold
    side_by_side, slots = ([], 1) if cluster is not None else side_by_side_trainings(config, built, with_work, run_dir.model_dir, retrain, image_shape)
    side_by_side_pool: list[SideBySide] = []

    def start_side_by_side() -> None:
        names = ", ".join(n if s is None else f"{n} (seed {s})" for (n, s), _ in side_by_side)
        log.info("training %s: %d at a time, %d thread(s) each", names, slots, side_by_side[0][1].threads)
        side_by_side_pool.append(SideBySide(side_by_side, slots))
        trainings.update(cast(dict[tuple[str, int | None], Any], side_by_side_pool[0].futures))
        watch.start()

    watch = _SideBySideProgress(side_by_side, slots, progress)
    remaining = {name: sum(n == name for n, _, _ in units) for name in methods}
    try:
        later = {key for key, _ in side_by_side}
        for name, seed, first in _unit_order(units, trainings, later, start_side_by_side if side_by_side else None, watch):
            _run_unit(context, name, seed, first, trainings.get((name, seed)))
            remaining[name] -= 1
            if not remaining[name]:
                built[name] = (built[name][0], None)  # free the model before the next method
    finally:
        if cluster is not None:
            cluster.client.cancel([f for f in trainings.values() if not f.done()])
        for pool in side_by_side_pool:
            pool.stop()
        watch.close()
    test_keys = {p.key for p in test_pairs}
    for name in methods:
        if any(unit == name or unit.startswith(f"{name} (seed ") for unit in result.failed_methods):
            continue
        rows = [r for (m, case, _), r in store.rows.items() if m == name and case in test_keys]
        failures = [r for r in rows if r.get("status") != "ok"]
        result.scored[name] = len(rows) - len(failures)
        if failures:
            result.first_failures[name] = [(str(r["case_id"]), str(r.get("reason") or "no reason recorded")) for r in failures[:FAILURES_SHOWN]]
        disagreeing = [r for r in failures if str(r.get("reason", "")).startswith(f"InputError: {CONSISTENCY_MESSAGE}")]
        if 2 * len(disagreeing) > len(rows):  # a method's convention, not a case's accident
            result.wrong_convention[name] = (len(disagreeing), len(rows), str(disagreeing[0]["reason"]))
        elif rows and len(failures) == len(rows):
            result.all_cases_failed[name] = str(failures[0].get("reason") or "no reason recorded")
        elif failures:
            result.some_cases_failed[name] = len(failures)
    write_run_tables(config.out_dir, store.all_rows(), manifest.labels)
    verdicts = run_verdicts(config.out_dir)
    result.not_converged = {m: verdicts[m].reason for m in methods if m in verdicts and not verdicts[m].converged}
    if report:
        result.report = write_report([config.out_dir], options=ReportOptions(figures=config.figures))
    return result


def _unit_order(
    units: list[tuple[str, int | None, bool]],
    trainings: dict[tuple[str, int | None], Any],
    later: set[tuple[str, int | None]] = frozenset(),  # type: ignore[assignment]
    start_later: Callable[[], None] | None = None,
    watch: Callable[[], None] = lambda: None,
) -> Iterator[tuple[str, int | None, bool]]:
    """Units without a training task first (in order), then the trained ones: as their trainings finish on a
    dask cluster, in order once all have finished when they train side by side on this machine. ``later``: units whose training tasks ``start_later()`` adds to ``trainings`` once the others are done;
    ``watch()`` is called every few seconds while local trainings run (their progress bar)."""
    yield from (u for u in units if (u[0], u[1]) not in trainings and (u[0], u[1]) not in later)
    if start_later is not None:
        start_later()
    if not trainings:
        return
    futures = list(trainings.values())
    if isinstance(futures[0], concurrent.futures.Future):  # side by side on this machine
        # Their cases are scored once every training has finished, in the run's order: a registration timed
        # beside a running training measures the contention (Table 2's ms per pair doubled), not the method.
        _wait_watching(futures, watch)
        yield from (u for u in units if (u[0], u[1]) in trainings)
        return
    from distributed import as_completed

    unit_of = {trainings[(n, s)].key: (n, s, f) for n, s, f in units if (n, s) in trainings}
    for future in as_completed(futures, loop=futures[0].client.loop):  # dask's may hand back other objects of a key
        yield unit_of[future.key]


def _sweeps(context: RunContext, name: str, seed: int | None, first: bool) -> bool:
    """Whether this unit scores its method's sweep: a method that has one, at each training seed, not yet written
    (a run made before sweeps were per seed wrote its first seed's as the seedless file)."""
    if not (context.config.sweep and METHODS.meta(name).sweep is not None) or context.run_dir.sweep(name, seed).exists():
        return False
    return not (first and seed is not None and context.run_dir.sweep(name).exists())


def _has_work(context: RunContext, name: str, seed: int | None, first: bool) -> bool:
    """Whether a unit has cases to score, kept arrays to complete or a sweep to write (a unit without any is not
    even trained)."""
    done = context.store.done(name, seed)
    examples, flows = kept_arrays(context, name, first)
    return any(p.key not in done or missing_arrays(context.run_dir, name, p, examples, flows) for p in context.test_pairs) or _sweeps(
        context, name, seed, first
    )


def _wait_watching(futures: list[concurrent.futures.Future], watch: Callable[[], None], every_s: float = 5.0) -> None:
    """Until every future is done, calling ``watch()`` every ``every_s`` seconds and when one finishes."""
    pending = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=every_s, return_when=concurrent.futures.FIRST_COMPLETED)
        watch()


class _SideBySideProgress:
    """One bar for the trainings side by side: epochs done (rows of their history.csv) of all epochs."""

    def __init__(self, tasks: list[tuple[tuple[str, int | None], TrainingTask]], slots: int, enabled: bool) -> None:
        self.histories = [history_path(Path(task.directory)) for _, task in tasks]
        self.total = sum(int(task.options.get("epochs", 0) or 0) for _, task in tasks)
        self.slots, self.enabled = slots, enabled
        self.bar: Any = None

    def start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total or None, desc=f"training ×{self.slots}", unit="epoch", disable=not self.enabled, leave=False)

    def __call__(self) -> None:
        if self.bar is None:
            return
        done = 0
        for path in self.histories:
            with contextlib.suppress(OSError):
                done += max(0, len(path.read_text().splitlines()) - 1)  # a header, then one row per epoch
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def probe_inputs(manifest: Manifest, name: str, probe: Callable[[Sequence[Pair]], Any], pairs: Sequence[Pair]) -> None:
    """A method that reads results computed elsewhere may check them before they are scored (``probe(pairs)``:
    the fields method reads its files under other conventions). Its finding goes into the manifest (the report
    marks the row) and, where it names a suspect, into a warning."""
    finding = probe(pairs)
    if finding is None:
        return
    manifest.record_input_probe(name, finding)
    if finding.get("suspect"):
        log.warning("%s: %s", name, finding["message"])


def kept_arrays(context: RunContext, name: str, first: bool) -> tuple[set[str], set[str]]:
    """The case keys whose arrays a method keeps at this seed: the example pairs' moved image and flow, and where
    ``keep_flows`` names the method, every other test case's flow (both for the method's first seed only)."""
    if not first:
        return set(), set()
    flows = {p.key for p in context.test_pairs if p.key not in context.examples} if context.config.keeps_flows(name) else set()
    return set(context.examples), flows  # an example holds its flow: kept once


def missing_arrays(run_dir: RunDir, name: str, pair: Pair, examples: set[str], flows: set[str]) -> bool:
    """Whether a scored case lacks an array the run keeps (``example_pairs`` or ``keep_flows`` raised since)."""
    return (pair.key in examples and not run_dir.example(name, pair.case_id).is_file()) or (
        pair.key in flows and not run_dir.flow(name, pair.case_id).is_file()
    )


#: How far a case registered again for its arrays may score from its stored row before they are not kept.
REFILL_TOLERANCE = 1e-5


def _same_scores(stored: Mapping[str, Any], row: Mapping[str, Any], name: str) -> bool:
    """A scored case registered again only to keep its flow: the arrays are kept only where they give the stored
    row's Dice and MSE (a method that is not deterministic, or a model changed since, would otherwise export flows
    that do not reproduce the table). Said in a warning where they do not."""
    for metric in ("dice", "mse"):
        a, b = float(stored.get(metric, np.nan)), float(row.get(metric, np.nan))
        if not (np.isnan(a) and np.isnan(b)) and not abs(a - b) <= REFILL_TOLERANCE:
            log.warning(
                "%s: case %s registered again to keep its flow scores %s %.6g, stored %.6g: its flow is not kept (the method is not deterministic here)",
                name,
                row["case_id"],
                metric,
                b,
                a,
            )
            return False
    return True


def _run_unit(context: RunContext, name: str, seed: int | None, first: bool, training: Any) -> None:
    """Train (or load, or wait for the cluster's training task ``training``) and evaluate one method at one seed."""
    from tqdm.auto import tqdm

    config, run_dir, manifest, store, result, test_pairs = context.config, context.run_dir, context.manifest, context.store, context.result, context.test_pairs
    options, method = context.built[name]
    unit = name if seed is None else f"{name} (seed {seed})"
    retrain = context.retrain
    try:
        done, failed = store.done(name, seed), store.failed(name, seed)
        pending = [p for p in test_pairs if p.key not in done]
        result.skipped[unit] = len(test_pairs) - len(pending)
        result.retried[unit] = sum(p.key in failed for p in pending)
        examples, flows = kept_arrays(context, name, first)
        refill = [p for p in test_pairs if p.key in done and missing_arrays(run_dir, name, p, examples, flows)]
        sweep_path = run_dir.sweep(name, seed)
        sweeps = _sweeps(context, name, seed, first)
        if not pending and not sweeps and not refill:
            return
        if seed is not None:  # the same options, trained from this seed
            method = create_method(name, {**options, "seed": seed}, config)
        if is_trainable(method):
            if isinstance(method, ReportsProgress):
                method.progress = context.progress  # epoch bar with the losses
            if training is not None:  # trained by a task on the cluster: load what it wrote
                manifest.record_trained_on(name, seed, training.result())
                retrain = False
            train_or_load(method, context.dataset, run_dir.model_dir(name, seed), retrain=retrain, labels=run_labels(context.config, context.dataset))
            if seed is not None:
                manifest.add_seed(name, seed)
        manifest.set_params(name, num_parameters(method))
        if first and isinstance(method, ProbesInputs):
            probe_inputs(manifest, name, method.probe, test_pairs)
        manifest.write(config.out_dir)
    except RegbenchError:
        raise  # configuration errors stop the run with their own message
    except Exception as exc:
        result.failed_methods[unit] = f"{type(exc).__name__}: {exc}"
        log.error("method %s could not run: %s", unit, result.failed_methods[unit])
        return
    spec = None
    final = run_dir.final_model(name, seed)
    if context.cluster is not None or (is_trainable(method) and final.exists()):
        # Workers build the method from its spec (a trained one loads its final model once per process) instead
        # of unpickling it with every case: HyperMorph's 0.5 GB model cost ~1.3 s per case that way.
        spec_options = {**options, "seed": seed} if seed is not None else options
        spec = MethodSpec.of(name, spec_options, final if is_trainable(method) else None)
    bar = tqdm(total=len(pending) + len(refill), desc=f"{unit:>14}", unit="pair", disable=not context.progress, leave=True)
    count = 0
    stored = {str(row["case_id"]): row for (m, _, e), row in store.rows.items() if m == name and e == seed}
    for row in iterate_cases(method, pending + refill, config, examples, cluster=context.cluster, spec=spec, flows=flows):
        arrays = {path: row.pop(key) for key, path in (("_example", run_dir.example), ("_flow", run_dir.flow)) if key in row}
        bar.update(1)
        if str(row["case_id"]) in done:  # scored before: only its kept arrays were missing
            if row.get("status") == "ok" and _same_scores(stored[str(row["case_id"])], row, name):
                for path, array in arrays.items():
                    atomic_write_npz(path(name, row["case_id"]), array)
                result.refilled[unit] = result.refilled.get(unit, 0) + 1
            continue
        for path, array in arrays.items():  # saved before the row: a stored case always has its arrays
            atomic_write_npz(path(name, row["case_id"]), array)
        row["seed"] = seed
        row["params"] = manifest.params(name)
        store.append(row)
        count += 1
    bar.close()
    result.evaluated[unit] = count
    if sweeps:
        write_sweep(sweep_path, method, test_pairs, config.dataset, seed)
