"""The run plan: what a run will do, decided once from the loaded data before any method is built.

``regbench run`` used to choose methods and resolve their options from the dimensions a dataset *declares*, and
learn the real ones only when the pairs were loaded: a ``files`` dataset (declared 2-D or 3-D) holding volumes
built SyN with its 2-D metric and the deep methods with the 2-D training budget while its manifest said 3-D.
Here the order is: load the pairs (:func:`load_pairs`), read their facts (:class:`DatasetFacts`: dims, labels,
geometry, split sizes), then choose the methods that register those dims and resolve each one's options **for
them** (:class:`MethodPlan`), with one :class:`ScoringSettings`. A :class:`RunPlan` is immutable and prints
itself (``regbench run --dry-run``); the runner executes one.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .catalogue import declarations_only
from .config import RunConfig
from .errors import ConfigError, DataError, InputError
from .execution import build_dataset, case_geometry, dataset_pairs, run_labels
from .interface import DeclaresSplit, DeclaresStructures, DrawsAtLevel, HasOptions, Pair, validate_pair
from .metrics import ScoringSettings
from .options import resolve_method_options
from .registry import DATASETS, METHODS, method_sort_key
from .rundir import RunDir
from .store import RunStore

SPLITS_TRAINED = ("train", "val", "test")
log = logging.getLogger("regbench")


@dataclass(frozen=True)
class DatasetFacts:
    """What the loaded pairs are: read from them, not from what the dataset declares."""

    name: str
    display_name: str
    options: Mapping[str, Any]
    dims: int
    labels: Mapping[str, int]
    geometry: Mapping[str, Any]  # spacing_mm, spacings, through_plane_axis (regbench.execution.case_geometry)
    split_sizes: Mapping[str, int]  # pairs loaded per split (a dry run loads the test split only)
    test_subjects: int
    split_subjects: Mapping[str, int] = field(default_factory=dict)  # subjects (or cases) per split, where the dataset says
    # The declared levels (DatasetMeta.levels) its test pairs carry: group name → the quantity's axis label.
    levels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodPlan:
    """One method of the run: its options resolved for the data's dims, its seeds, what is stored and what is left."""

    name: str
    display_name: str
    trainable: bool
    options: Mapping[str, Any]
    seeds: tuple[int | None, ...]
    stored: int = 0  # test cases stored as scored (first seed's)
    to_compute: int = 0  # test cases a run would compute (every seed's)
    estimate_s: float | None = None  # from the run directory's own timings, where it has them


@dataclass(frozen=True)
class LevelRun:
    """With ``retrain_per_level``: the run's trained methods at one value of a declared level of its test pairs.
    ``dataset_options``: the dataset drawn at that value (every split; :class:`regbench.interface.DrawsAtLevel`),
    trained and scored in ``out_dir`` on its ``test_pairs`` pairs (the same cases as the run's at that value);
    None where the run's own training pairs are at that value (its own models are the retrained ones)."""

    level: str
    value: float
    dataset_options: Mapping[str, Any] | None
    out_dir: Path | None
    test_pairs: int


@dataclass(frozen=True)
class RunPlan:
    out_dir: Path
    profile: str
    dataset: DatasetFacts
    methods: tuple[MethodPlan, ...]
    left_out: Mapping[str, str]  # method a pattern matched, left out: why
    scoring: ScoringSettings
    test_pairs: int  # scored (max_test_pairs applied)
    example_pairs: int
    keep_flows: bool | tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    level_runs: tuple[LevelRun, ...] = ()  # retrain_per_level: one per value of each level the test pairs carry

    def method(self, name: str) -> MethodPlan:
        return next(m for m in self.methods if m.name == name)

    def text(self) -> str:
        """The plan as ``regbench run --dry-run`` prints it."""
        d = self.dataset
        geometry = d.geometry
        spacing = " x ".join(f"{s:g}" for s in geometry.get("spacing_mm", ())) or "-"
        through = geometry.get("through_plane_axis")
        lines = [
            f"run directory: {self.out_dir}",
            f"dataset: {d.name} ({d.display_name}), {d.dims}-D, spacing {spacing} mm"
            + (f", through-plane axis {through}" if through is not None else "")
            + f"; options {dict(d.options) or '{}'}",
            "  pairs: "
            + ", ".join(f"{split} {n}" for split, n in d.split_sizes.items())
            + f" (scored: {self.test_pairs}, from {d.test_subjects} subjects)"
            + ("; subjects per split: " + ", ".join(f"{split} {n}" for split, n in d.split_subjects.items()) if d.split_subjects else ""),
            "  labels: " + (", ".join(f"{k} = {v}" for k, v in d.labels.items()) or "none"),
            *[f"  levels: {name} ({label}): the report draws each metric against it" for name, label in d.levels.items()],
            f"scoring: HD95 {self.scoring.hd95_convention}, Jacobian {self.scoring.jacobian_scheme}, NDV over {self.scoring.ndv_mask}"
            + (f", conventions {', '.join(self.scoring.conventions)}" if self.scoring.conventions else ""),
            f"profile: {self.profile}; example pairs {self.example_pairs}; flows kept: "
            + ("all" if self.keep_flows is True else ", ".join(self.keep_flows) if self.keep_flows else "none"),
            "methods:",
        ]
        for m in self.methods:
            seeds = "" if m.seeds == (None,) else f", seeds {', '.join(str(s) for s in m.seeds)}"
            estimate = f", about {_duration(m.estimate_s)}" if m.estimate_s is not None else ""
            lines.append(f"  {m.name} ({m.display_name}{', trained' if m.trainable else ''}{seeds}): {m.stored} stored, {m.to_compute} to compute{estimate}")
            lines.append(f"    options: {_options_text(m.options)}")
        lines += [f"  left out: {name}: {why}" for name, why in self.left_out.items()]
        if self.level_runs:
            trained = ", ".join(m.name for m in self.methods if m.trainable)
            lines.append(f"retrained per level: {trained}")
            for r in self.level_runs:
                where = "this run's own models (its training pairs are drawn at it)" if r.out_dir is None else f"trained and scored in {r.out_dir}"
                lines.append(f"  {r.level} {r.value:g}: {r.test_pairs} pairs, {where}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _options_text(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "(defaults)"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


# ----------------------------------------------------------------------------------------------- loading
def load_pairs(
    dataset: Any, splits: Sequence[str], labels: Mapping[str, int] | None = None, problems: list[str] | None = None, name: str | None = None
) -> dict[str, list[Pair]]:
    """The dataset's pairs of ``splits`` with its declared ``labels`` (:func:`regbench.execution.dataset_pairs`),
    each checked once where it enters (:func:`validate_pair`: range, label values, shapes, spacing); a bad pair
    is one error naming the dataset, split, case and value, and so is a case id that two pairs share.
    ``problems``: every such error is appended to it instead (``regbench data check`` runs the run's checks so),
    and only the pairs that pass are returned. ``name``: the dataset's registered name, which errors give
    (its class name without it)."""
    structures = dataset.structures if isinstance(dataset, DeclaresStructures) else None  # predates DatasetMeta.labels
    name = name or type(dataset).__name__
    out = {}
    seen: dict[str, str] = {}  # case id → its split
    dims: int | None = None  # the first pair's: a dataset's images share one dimension

    def refused(message: str) -> bool:
        if problems is None:
            raise DataError(message)
        problems.append(message)
        return True

    for split in splits:
        kept = []
        for pair in dataset_pairs(dataset, split, labels):
            try:
                validate_pair(pair, structures)
            except InputError as exc:
                refused(f"dataset {name!r} {split} split, {exc}")
                continue
            dims = pair.fixed.ndim if dims is None else dims
            if pair.fixed.ndim != dims and refused(
                f"dataset {name!r} {split} split, case {pair.case_id!r}: {pair.fixed.ndim}-D images where its other pairs are {dims}-D"
            ):
                continue
            if pair.case_id in seen and refused(
                f"dataset {name!r}: case id {pair.case_id!r} names two pairs ({seen[pair.case_id]} and {split} split); case ids must be unique"
            ):
                continue
            seen[pair.case_id] = split
            kept.append(pair)
        out[split] = kept
    return out


def carried_levels(dataset: str, pairs: Sequence[Pair]) -> dict[str, str]:
    """The dataset's declared levels (DatasetMeta.levels) that ``pairs`` carry as group attributes."""
    declared = DATASETS.meta(dataset).levels or {}
    carried = {name for p in pairs for name in p.groups}
    return {name: str(label) for name, label in declared.items() if name in carried}


def run_dims(pairs: Mapping[str, Sequence[Pair]], dataset: str) -> int:
    """The dimension of a run's images, once its loaded splits are checked (before anything is written): every
    split has a pair (test to score; train and val to train a method), and the pairs' dimension (one for all:
    :func:`load_pairs` checked) is one its dataset declares (``DatasetMeta.dims``: what chose the methods).
    Either failing is one error naming the sizes or the dims."""
    empty = [split for split, split_pairs in pairs.items() if not split_pairs]
    if empty:
        sizes = ", ".join(f"{split} {len(split_pairs)}" for split, split_pairs in pairs.items())
        raise DataError(
            f"dataset {dataset!r} has no pairs in its {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} ({sizes} pairs): "
            "a run needs a test pair, and a train and a val pair to train a method. Give it more subjects (a "
            "75/5/20 split by subject needs at least 3), or a split_file that puts one in each"
        )
    dims = next(p.fixed.ndim for split in pairs.values() for p in split)
    declared = DATASETS.meta(dataset).dims
    if dims not in declared:
        raise DataError(
            f"dataset {dataset!r} declares dims {tuple(declared)} (DatasetMeta.dims) but its pairs are {dims}-D: "
            "declare the dims its images have, so that methods are chosen for them"
        )
    return dims


# ------------------------------------------------------------------------------------------------ planning
def chosen_methods(config: RunConfig, dims: Sequence[int], left_out: dict[str, str]) -> list[str]:
    """The run's methods that register ``dims``-D images, in the tables' order; those a pattern matched but left
    out recorded in ``left_out`` with why. None matching is one error."""
    names = METHODS.resolve(config.methods or [], skipped=left_out, dims=dims, dataset=f"dataset {config.dataset!r}")
    if not names:
        raise ConfigError(f"no method matches {config.methods!r}" + (f" among those installed ({'; '.join(left_out.values())})" if left_out else ""))
    return sorted(names, key=method_sort_key)


def method_options(name: str, config: RunConfig, dims: int) -> dict[str, Any]:
    """A method's options in this run for ``dims``-D images: :func:`regbench.options.resolve_method_options` with
    the run's profile, seed, device and ``method_options``."""
    return resolve_method_options(name, config.profile, config.method_options.get(name), seed=config.seed, device=config.device, dims=dims)


def check_method_options(config: RunConfig, names: Sequence[str] = ()) -> None:
    """Every key of ``method_options`` names a registered method (options for a registered method that is not
    in this run are kept for other runs of the same config). A named instance (``fields.mine``) defined there but
    not among the run's methods ``names`` is said in a warning: its options are its whole definition, so it was most
    likely meant to run."""
    known = METHODS.names()
    for name in config.method_options:
        if name not in known and METHODS.tagged_base(str(name)) is None:
            close = difflib.get_close_matches(str(name), known, n=1)
            raise ConfigError(
                f"method_options names unknown method {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f". Known: {', '.join(known)}."
            )
        if names and METHODS.tagged_base(str(name)) is not None and name not in names:
            log.warning("method_options defines %s, which is not among this run's methods (%s): add it to methods to score it", name, ", ".join(names))


def precheck(config: RunConfig) -> list[str]:
    """What can be checked before the data is loaded and anything is written: the methods the config names (by
    the dims the dataset declares), ``method_options``' keys, and every option name each method accepts. Returns
    the methods chosen so far."""
    declared = tuple(DATASETS.meta(config.dataset).dims)
    names = chosen_methods(config, declared, {})
    check_method_options(config, names)
    for name in names:
        METHODS.check_option_names(name, config.method_options.get(name) or {})
    return names


@dataclass
class LoadedRun:
    """What planning loaded, handed on to the runner so that nothing is loaded twice."""

    plan: RunPlan
    dataset: Any
    pairs: dict[str, list[Pair]]


def plan_run(
    config: RunConfig,
    refresh: bool = False,
    stored: Mapping[str, set[str]] | None = None,
    timings: Mapping[str, float] | None = None,
    test_only: bool = False,
) -> LoadedRun:
    """Load the data and plan the run on it (module docstring): methods chosen by the dimension the dataset
    declares (to know which splits to load: a trained method needs train and val), then narrowed to those that
    register the pairs' real dimension, each with its options resolved for it. ``stored``: method → test case ids
    already scored (a resume's); ``timings``: method → seconds per case (a run directory's own), for estimates;
    ``test_only``: load the test split alone (a dry run: the other splits are counted in subjects)."""
    left_out: dict[str, str] = {}
    declared = tuple(DATASETS.meta(config.dataset).dims)
    names = chosen_methods(config, declared, left_out)
    splits = SPLITS_TRAINED if any(METHODS.meta(n).trainable for n in names) and not test_only else ("test",)
    dataset = build_dataset(config, refresh)
    labels = run_labels(config, dataset)
    pairs = load_pairs(dataset, splits, labels, name=config.dataset)  # a bad dataset is refused before anything is bound
    dims = run_dims(pairs, config.dataset)
    if len(declared) > 1:  # the dataset may hold either: the methods and their options follow what it holds
        names = chosen_methods(config, (dims,), left_out)
    test = pairs["test"]
    limit = config.resolved_max_test_pairs()
    scored = test[:limit] if limit is not None else test
    facts = DatasetFacts(
        name=config.dataset,
        display_name=DATASETS.display_name(config.dataset),
        options=MappingProxyType(dict(dataset.options() if isinstance(dataset, HasOptions) else {})),
        dims=dims,
        labels=MappingProxyType(dict(labels)),
        geometry=MappingProxyType(dict(case_geometry(test))),
        split_sizes=MappingProxyType({split: len(pairs[split]) for split in splits}),
        test_subjects=len({p.subject or p.case_id for p in scored}),
        split_subjects=MappingProxyType({k: len(v) for k, v in dataset.split().items()} if isinstance(dataset, DeclaresSplit) else {}),
        levels=MappingProxyType(carried_levels(config.dataset, test)),
    )
    entries = []
    for name in names:
        meta = METHODS.meta(name)
        seeds: tuple[int | None, ...] = tuple(config.seeds) if config.seeds and meta.trainable else (None,)
        done = (stored or {}).get(name, set())
        pending = sum(p.case_id not in done for p in scored)
        to_compute = pending * len(seeds)
        per_case = (timings or {}).get(name)
        entries.append(
            MethodPlan(
                name=name,
                display_name=METHODS.display_name(name),
                trainable=meta.trainable,
                options=MappingProxyType(method_options(name, config, dims)),
                seeds=seeds,
                stored=len(scored) - pending,
                to_compute=to_compute,
                estimate_s=per_case * to_compute if per_case is not None and math.isfinite(per_case) else None,
            )
        )
    level_runs = plan_level_runs(config, dataset, scored, facts.levels, [e.name for e in entries if e.trainable]) if config.retrain_per_level else ()
    plan = RunPlan(
        out_dir=config.out_dir,
        profile=config.profile,
        dataset=facts,
        methods=tuple(entries),
        left_out=MappingProxyType(dict(left_out)),
        scoring=ScoringSettings.of(config),
        test_pairs=len(scored),
        example_pairs=min(config.example_pairs, len(scored)),
        keep_flows=config.keep_flows if isinstance(config.keep_flows, bool) else tuple(config.keep_flows),
        level_runs=level_runs,
    )
    return LoadedRun(plan, dataset, pairs)


def plan_level_runs(config: RunConfig, dataset: Any, scored: Sequence[Pair], levels: Mapping[str, str], trained: Sequence[str]) -> tuple[LevelRun, ...]:
    """``retrain_per_level``: a :class:`LevelRun` per value of each declared level the scored pairs carry, in
    ``RUN/retrained/LEVEL-VALUE``. Refused, naming what is missing, where the pairs carry no declared level, the
    dataset cannot draw its splits at a level, or none of the run's methods is trained."""
    if not levels:
        raise ConfigError(
            f"retrain_per_level: the test pairs of dataset {config.dataset!r} carry no level it declares (DatasetMeta.levels), so "
            "there is no level to retrain at; draw the test split at several levels (the synthetic heart: --dataset-option "
            "test_motion=[0.5,1,2], or --profile stress) or leave --retrain-per-level out"
        )
    if not isinstance(dataset, DrawsAtLevel):
        raise ConfigError(
            f"retrain_per_level: dataset {config.dataset!r} cannot draw its training pairs at a level (it has no "
            "level_options(level, value): regbench.interface.DrawsAtLevel); leave --retrain-per-level out"
        )
    if not trained:
        raise ConfigError(
            f"retrain_per_level retrains the run's trained methods, and none of {', '.join(config.methods or [])} is trained; "
            "add one (e.g. --methods initial,voxelmorph-m) or leave --retrain-per-level out"
        )
    runs = []
    for level in levels:
        counts: dict[float, int] = {}
        for pair in scored:
            if level in pair.groups:
                value = float(pair.groups[level])
                counts[value] = counts.get(value, 0) + 1
        for value in sorted(counts):
            options = dataset.level_options(level, value)
            out_dir = None if options is None else RunDir(config.out_dir).retrained_dir(level, value)
            runs.append(LevelRun(level, value, None if options is None else MappingProxyType(dict(options)), out_dir, counts[value]))
    return tuple(runs)


def check_device(device: str) -> None:
    """A CUDA device asked for where there is none is refused before any work (not after the CPU methods)."""
    if str(device).startswith("cuda"):
        from .trainer import resolve_device

        resolve_device(str(device))


def dry_run(config: RunConfig) -> RunPlan:
    """The plan ``run`` would execute, with what the run directory already holds (read, never written): the
    data is loaded, no method is built, nothing is computed or recorded. The built-in methods are described by
    their declarations (:mod:`regbench.catalogue`), so that their modules (torch's import) are not loaded."""
    check_device(config.device)
    folder = RunDir(config.out_dir)
    stored: dict[str, set[str]] = {}
    timings: dict[str, float] = {}
    if folder.cases.is_file():
        times: dict[str, list[float]] = {}
        for (method, case, _), row in RunStore(config.out_dir).rows.items():
            if row.get("status") == "ok":
                stored.setdefault(method, set()).add(case)
                if row.get("time_s") is not None and np.isfinite(float(row["time_s"])):
                    times.setdefault(method, []).append(float(row["time_s"]))
        timings = {method: float(np.median(values)) for method, values in times.items()}
    with declarations_only():
        return plan_run(config, stored=stored, timings=timings, test_only=True).plan
