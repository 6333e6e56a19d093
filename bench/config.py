"""Run configuration: the profiles (smoke, quick, reproduce, paper), all in this module, and YAML/flag loading
with strict keys."""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import ConfigError, RegbenchError
from .metrics import HD95_CONVENTIONS, JACOBIAN_SCHEMES, NDV_MASKS
from .pool import DEFAULT_CASE_TIMEOUT_S

FIGURES_ENV = "REGBENCH_FIGURES"  # 0: runs write their report without figures, unless told otherwise

#: Metric conventions a run can score beside the strict ones (RunConfig.conventions).
CONVENTIONS = ("learn2reg",)

# `regbench transfer`'s default folding budget when it tunes λ: validation NJD (% of pixels with det J ≤ 0).
DEFAULT_NJD_BUDGET = 1.0

# The deep methods' arithmetic (TrainSettings.precision; regbench.trainer.precision_mode says what each means).
PRECISIONS = ("fp32", "tf32", "bf16")
COMPILE_MODES = ("none", "default", "reduce-overhead")  # TrainSettings.compile_mode


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


@dataclass(frozen=True)
class Profile:
    """How big a run is: data, test pairs, the deep methods' training budget, and per-method exceptions."""

    name: str
    description: str
    dataset_options: dict[str, dict[str, Any]]  # defaults per dataset name
    max_test_pairs: int | None = None
    methods: tuple[str, ...] = ("*",)  # when the run names none
    seeds: tuple[int, ...] | None = None  # training seeds when the run names none (None: each method's own)
    # Every deep method's training settings (regbench.trainer.TrainSettings fields) under this profile.
    training: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method, over its profile_options
    # On volumes (a dataset that declares dims (3,)): training settings over ``training``, and per-method options
    # over ``method_options``. A dataset that declares several dimensions gets the 2-D settings.
    volume_training: dict[str, Any] = field(default_factory=dict)
    volume_method_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def training_for(self, dims: int = 2) -> dict[str, Any]:
        """The deep methods' training settings for ``dims``-D images."""
        return {**self.training, **(self.volume_training if dims == 3 else {})}

    def options_for(self, method: str, dims: int = 2) -> dict[str, Any]:
        """This profile's own options of ``method`` for ``dims``-D images."""
        return {**self.method_options.get(method, {}), **(self.volume_method_options.get(method, {}) if dims == 3 else {})}


def training_options(profile: str, dims: int = 2) -> dict[str, Any]:
    """The profile's deep-training settings for ``dims``-D images: the deep methods' ``profile_options``."""
    return get_profile(profile).training_for(dims)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        "seconds: 8 synthetic subjects at 64 px, deep methods 2 epochs (synthetic3d: 10 volumes of 10 x 48 x 48, "
        "deep methods 10 epochs at batch 2), FireANTs 50/25/10 iterations; never converged; for tests and check-method",
        {"synthetic": {"n_subjects": 8, "image_size": 64}, "synthetic3d": {"n_subjects": 10, "image_size": 48}},
        max_test_pairs=12,
        # A few steps on tiny data: seconds.
        training={"epochs": 2, "batch_size": 4, "val_every": 1, "max_val_pairs": 4, "recalibrate_bn": True},
        # HyperMorph's hypernetwork shrunk to 2 units (5.9M parameters, a 24 MB model file instead of 0.5 GB): smoke
        # runs prove the pipeline, not the method. (At seed 3407 both 2-unit dense layers' units are dead at λ ≥ 0
        # from initialisation: the embedding is 0 and λ has no effect.)
        # FireANTs with a quarter of its iterations per level (50, 25, 10 instead of 200, 100, 50): the same Dice on
        # the smoke data (93.0 % on volumes, 96.0 % in 2-D, over 4 test pairs each) in a quarter of the time (volumes
        # 5.1 s a pair instead of 20.8 s; regbench registers a stack on a cube of its longest side).
        method_options={"hypermorph": {"hyper_units": 2}, "fireants-syn": {"iterations": [50, 25, 10]}},
        # Volumes: 7 training volumes, so 2 steps of batch 4 left every deep method at or below Initial; 30 steps of
        # batch 2 put each above it (README). ~10 s per method on 2 cores.
        volume_training={"epochs": 10, "batch_size": 2},
    ),
    "quick": Profile(
        "quick",
        "the README demo: all methods on 40 synthetic subjects at 64 px (3 mm pixels), deep methods 10 epochs "
        "(not converged: tables mark them); 6-18 minutes on 2 CPU cores (README and docs/profiles-and-results.md name the CPUs); "
        "synthetic3d: 40 volumes of 10 x 48 x 48, deep methods 8 epochs at batch 2 with a cosine lr decay, about 8.5 minutes with --jobs 2",
        {"synthetic": {"n_subjects": 40, "image_size": 64}, "synthetic3d": {"n_subjects": 40, "image_size": 48}},
        # 64-px images, short training that fits the budget with the other methods; validation every epoch so that
        # the convergence verdict has points to judge (it says: not converged).
        training={"epochs": 10, "batch_size": 16, "val_every": 1, "max_val_pairs": 16},
        # Volumes (30 training volumes of 10 x 48 x 48; 64 px took 11 min with 6 epochs): 120 steps of batch 2 fit the
        # 10-minute budget with the classical methods. With a constant lr the last epoch's weights were a random
        # draw (VoxelMorph-diff 73.4 % Dice); the cosine decay settles them (88.6 %). HyperMorph with 8 hyper units:
        # 53.0M parameters (64 would be 383M on volumes).
        volume_training={"epochs": 8, "batch_size": 2, "lr_schedule": "cosine"},
        volume_method_options={"hypermorph": {"hyper_units": 8}},
    ),
    "reproduce": Profile(
        "reproduce",
        "the paper's findings on CPU: the paper's ten methods (by default) on the quick profile's data (synthetic, "
        "64 px), deep methods trained 120 epochs (GS-Agr 240) at batch 32 with a cosine lr decay (converged by the "
        "rule in regbench.convergence); about 90 minutes on 2 CPU cores",
        {"synthetic": {"n_subjects": 40, "image_size": 64}},
        # The paper's ten by default; methods beyond the paper are added by name or with '*'.
        methods=("paper",),
        # The paper's batch (32) and lr, 120 epochs with the lr annealed (cosine) so that the last epoch's weights,
        # which the paper evaluates, are settled rather than one draw from an oscillation; validated every 2 epochs
        # (15 points per quarter for the convergence rule). At batch 16 GSMorph's projection settled on
        # VoxelMorph-l's operating point; with a constant lr VoxelMorph-m's last-epoch NJD was as high as -s's;
        # 100 epochs at batch 32 left GSMorph rising by 0.59 points in the last quarter.
        training={"epochs": 120, "batch_size": 32, "lr_schedule": "cosine", "val_every": 2, "max_val_pairs": 16},
        # GS-Agr replaces ~80% of its gradient entries by noise and learns slowly: with noise_scale "mean" it had not
        # converged at 120 epochs (+5.25 points over the last quarter at seed 3407) and settled at 240 (+0.38); with
        # the default "masked-mean" it is still rising at 240 (+1.21 at seed 3407, +0.79 at seed 0: not converged,
        # and its tables say so).
        method_options={"gs-agr": {"epochs": 240}},
    ),
    "tradeoff": Profile(
        "tradeoff",
        "the trade-off study (`--methods tradeoff`, seeds 0,1,2): VoxelMorph at 9 λ from 1e-4 to 1, HyperMorph, "
        "VoxelMorph-diff, GS-Agr, GS-PCGrad and GSMorph on 24 synthetic subjects at 64 px split 14/5/5, deep methods "
        "10 epochs at batch 16 with a cosine lr decay, HyperMorph with 8 hyper units; about 13 minutes per dataset on 2 CPU cores with --jobs 2",
        {"synthetic": {"n_subjects": 24, "image_size": 64, "split": [0.6, 0.2, 0.2]}},
        methods=("tradeoff",),
        seeds=(0, 1, 2),
        # The last epoch's weights are scored, so the lr is annealed to settle them (as in reproduce); validation
        # every epoch on 16 validation pairs is what `regbench transfer` tunes λ on. Sized for the whole study (two
        # datasets of 42 trainings each) to fit 30 minutes on 2 cores: 28 subjects and HyperMorph's 64 hyper units
        # took 18 minutes per dataset on a Zen 4 (HyperMorph 117 s a training, four VoxelMorphs' worth).
        training={"epochs": 10, "batch_size": 16, "lr_schedule": "cosine", "val_every": 1, "max_val_pairs": 16},
        method_options={"hypermorph": {"hyper_units": 8}},
    ),
    "stress": Profile(
        "stress",
        "stress curves: every method on the quick profile's data with each test pair drawn at 0.25, 0.5, 1, 1.5 and 2 "
        "times the drawn motion (test_motion; 310 test pairs, synthetic3d 40 volumes), deep methods trained once at the "
        "drawn motion as in quick (--retrain-per-level: also at each level); report/stress_motion.md and figures/stress_motion",
        {
            "synthetic": {"n_subjects": 40, "image_size": 64, "test_motion": [0.25, 0.5, 1.0, 1.5, 2.0]},
            "synthetic3d": {"n_subjects": 40, "image_size": 48, "test_motion": [0.25, 0.5, 1.0, 1.5, 2.0]},
        },
        # The quick profile's training: the networks see only the drawn motion, so the curve also shows how far
        # what they learnt carries to smaller and larger motion.
        training={"epochs": 10, "batch_size": 16, "val_every": 1, "max_val_pairs": 16},
        volume_training={"epochs": 8, "batch_size": 2, "lr_schedule": "cosine"},
        volume_method_options={"hypermorph": {"hyper_units": 8}},
    ),
    "paper": Profile(
        "paper",
        "the paper's settings: 128×128 images, AdamW lr 5e-3, batch 32, 500 epochs, seed 3407 (GPU); synthetic3d: "
        "100 volumes of 10 x 128 x 128 with the same settings",
        # Volumes keep the paper's settings: a step at 16 x 128 x 128 (padded) held 0.37 GiB per volume (VoxelMorph-m;
        # GSMorph 0.42; counted on a CPU), so batch 32 needs ~14 GiB, HyperMorph's 383M parameters with AdamW 6 GiB more.
        {"synthetic": {"n_subjects": 100, "image_size": 128}, "synthetic3d": {"n_subjects": 100, "image_size": 128}},
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        close = difflib.get_close_matches(name, PROFILES, n=1)
        raise ConfigError(f"unknown profile {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; use one of {', '.join(PROFILES)}")
    return PROFILES[name]


@dataclass
class RunConfig:
    """Everything ``regbench run`` needs. YAML files use the same keys; unknown keys are errors."""

    # The config file it was read from (errors about its method_options name it); set by load_config, not a key.
    source: ClassVar[str | None] = None
    dataset: str = "synthetic"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    methods: list[str] | None = None  # None: the profile's (reproduce: "paper", the paper's ten; others: "*")
    profile: str = "quick"
    jobs: int = 1
    out: str | None = None
    seed: int = 0
    device: str = "auto"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    hd95_convention: str = "pooled"
    jacobian_scheme: str = "central"
    # Where NDA/NDV (the `ndv` column) is measured: "none" (every voxel), "fixed" or "moving" (that image's region:
    # its dataset's mask where it gives one, else its foreground, intensity > 0; LUMIR's rule is the moving image's).
    ndv_mask: str = "none"
    # Metric conventions scored beside regbench's strict ones, in columns of their own (prefix l2r_) and a table of
    # their own: "learn2reg" (the Learn2Reg kit's DSC, HD95 in voxels, SDlogJ of log(J+3), cubic-spline TRE, and
    # LUMIR's NDV; regbench.learn2reg). None: the dataset's (learn2reg on Learn2Reg tasks, none elsewhere).
    conventions: list[str] | None = None
    max_test_pairs: int | None = None
    sweep: bool = True  # methods with a sweep (HyperMorph's λ) also score their grid on the test split
    # Each trained method trained again at each value of the test pairs' declared level (DatasetMeta.levels: the
    # synthetic heart's motion, with test_motion), every split drawn at that value, and scored on that value's pairs:
    # a run of the trained methods per value in RUN/retrained/LEVEL-VALUE/ (at the value the run's own training
    # pairs are drawn at, the run's own models). The stress table adds a row "METHOD (retrained per level)". Not bound.
    retrain_per_level: bool = False
    example_pairs: int = 2  # the first N test pairs keep each method's moved image and flow (figures)
    # The report written at the end of a run draws its figures (PNG and PDF); false: its tables and statistics only
    # (`regbench report RUN` draws them later). Where neither the config nor --no-figures says, $REGBENCH_FIGURES=0
    # turns them off (the test suite's setting: figures are drawn where figures are tested). Not bound.
    figures: bool = field(default_factory=lambda: os.environ.get(FIGURES_ENV, "1") != "0")
    # Every scored case's flow kept (flows/METHOD/CASE_ID.npz, float32 compressed; a method's first seed), for
    # `regbench export`: true (every method), false, or a list of method names or patterns. Not bound: raised on a
    # run that has scored cases, the same command computes the missing flows (a trained method from its model).
    keep_flows: bool | list[str] = False
    # Training seeds: each trainable method is trained (and evaluated) once per seed; None: once, with the
    # method's own seed (the deep methods': 3407, the paper's). Classical methods run once either way.
    seeds: list[int] | None = None
    # Where the work runs. "joblib": processes on this machine (--jobs). "dask": a dask.distributed cluster
    # through joblib's dask backend (pip install "regbench[dask]"): a LocalCluster (cluster: local), a SLURM
    # cluster regbench starts with dask-jobqueue (cluster: slurm, pools in `slurm`), or a running scheduler
    # (scheduler: tcp://host:8786, or scheduler_file). See regbench.distributed.
    backend: str = "joblib"
    cluster: str | None = None
    scheduler: str | None = None
    scheduler_file: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    # Time limit per case, in seconds, for cases run in worker processes (every method with jobs > 1; with
    # jobs 1, plugins from outside regbench and methods that declare isolate_cases): a case over it fails
    # ("timed out after N s") and its worker is replaced. A number, null (no limit) or a mapping
    # {METHOD: seconds, default: seconds}.
    case_timeout_s: Any = DEFAULT_CASE_TIMEOUT_S
    # Trainings at once with the joblib backend, each in its own process with (torch threads ÷ N) threads, when
    # two or more trainable methods that run on CPU (or on one GPU) are to be trained. None: --jobs's number (on
    # a GPU: as many as its free memory holds). 1: one at a time in this process with all threads. CPU results
    # depend on the thread count; the manifest records it.
    parallel_trainings: int | None = None

    def __post_init__(self) -> None:
        if self.methods is None:
            self.methods = list(get_profile(self.profile).methods)
        if self.seeds is None and (profile_seeds := get_profile(self.profile).seeds) is not None:
            self.seeds = list(profile_seeds)
        if isinstance(self.methods, str):
            self.methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        if not isinstance(self.methods, list) or not all(isinstance(m, str) for m in self.methods):
            raise ConfigError(f"methods must be a list of names or patterns, got {self.methods!r}")
        self.methods = [m.strip() for m in self.methods if m.strip()]
        if not self.methods:
            raise ConfigError("no method given (methods is empty); name at least one, e.g. --methods initial,gsmorph, or '*' for all")
        get_profile(self.profile)
        if self.max_test_pairs is not None and (isinstance(self.max_test_pairs, bool) or not isinstance(self.max_test_pairs, int) or self.max_test_pairs < 1):
            raise ConfigError(f"max_test_pairs (--max-pairs) must be a positive integer, got {self.max_test_pairs!r}; leave it out to evaluate every test pair")
        if self.parallel_trainings is not None and (
            isinstance(self.parallel_trainings, bool) or not isinstance(self.parallel_trainings, int) or self.parallel_trainings < 1
        ):
            raise ConfigError(f"parallel_trainings must be a positive integer (or null: --jobs's number), got {self.parallel_trainings!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        if isinstance(self.seeds, int) and not isinstance(self.seeds, bool):
            self.seeds = [self.seeds]
        if self.seeds is not None:
            if not isinstance(self.seeds, list) or not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
                raise ConfigError(f"seeds must be a non-empty list of non-negative integers (e.g. --seeds 0,1,2), got {self.seeds!r}")
            if len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"seeds has duplicates: {self.seeds!r}")
        if isinstance(self.keep_flows, str):
            self.keep_flows = [m.strip() for m in self.keep_flows.split(",") if m.strip()]
        if not isinstance(self.keep_flows, bool) and not (isinstance(self.keep_flows, list) and all(isinstance(m, str) for m in self.keep_flows)):
            raise ConfigError(f"keep_flows must be true, false or a list of method names or patterns (--keep-flows [METHODS]), got {self.keep_flows!r}")
        if not isinstance(self.figures, bool):
            raise ConfigError(f"figures must be true or false, got {self.figures!r}")
        if not isinstance(self.retrain_per_level, bool):
            raise ConfigError(f"retrain_per_level (--retrain-per-level) must be true or false, got {self.retrain_per_level!r}")
        if isinstance(self.example_pairs, bool) or not isinstance(self.example_pairs, int) or self.example_pairs < 0:
            raise ConfigError(f"example_pairs must be a non-negative integer, got {self.example_pairs!r}")
        if self.hd95_convention not in HD95_CONVENTIONS:
            raise ConfigError(f"hd95_convention {self.hd95_convention!r} is not one of {HD95_CONVENTIONS}")
        if self.jacobian_scheme not in JACOBIAN_SCHEMES:
            raise ConfigError(f"jacobian_scheme {self.jacobian_scheme!r} is not one of {JACOBIAN_SCHEMES}")
        if self.ndv_mask not in NDV_MASKS:
            raise ConfigError(f"ndv_mask {self.ndv_mask!r} is not one of {NDV_MASKS}")
        if isinstance(self.conventions, str):
            self.conventions = [c.strip() for c in self.conventions.split(",") if c.strip()]
        if self.conventions is not None:
            unknown = [c for c in self.conventions if c not in CONVENTIONS] if isinstance(self.conventions, list) else [self.conventions]
            if unknown:
                close = difflib.get_close_matches(str(unknown[0]), CONVENTIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"conventions: {', '.join(map(repr, unknown))} is not one of {', '.join(CONVENTIONS)}{hint}; the strict metrics are always scored"
                )
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs == 0 or self.jobs < -1:
            raise ConfigError(f"jobs must be a positive integer or -1 (all cores), got {self.jobs!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        for key in ("dataset_options", "method_options"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"{key} must be a mapping, got {type(getattr(self, key)).__name__}")
        for name, options in self.method_options.items():
            if not isinstance(options, dict):
                raise ConfigError(f"method_options[{name!r}] must be a mapping of option: value, got {options!r}")
        self._check_backend()
        limits = self.case_timeout_s if isinstance(self.case_timeout_s, dict) else {"default": self.case_timeout_s}
        for key, limit in limits.items():
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0):
                raise ConfigError(
                    f"case_timeout_s{'' if not isinstance(self.case_timeout_s, dict) else f'[{key!r}]'} must be a positive number of seconds or null (no limit), got {limit!r}"
                )

    def case_timeout_for(self, method: str) -> float | None:
        """The per-case time limit of ``method`` in seconds (None: no limit)."""
        if isinstance(self.case_timeout_s, dict):
            return self.case_timeout_s.get(method, self.case_timeout_s.get("default", DEFAULT_CASE_TIMEOUT_S))
        return self.case_timeout_s

    def _check_backend(self) -> None:
        if self.backend not in ("joblib", "dask"):
            raise ConfigError(f"backend must be 'joblib' or 'dask', got {self.backend!r}")
        where = {k: getattr(self, k) for k in ("cluster", "scheduler", "scheduler_file") if getattr(self, k) is not None}
        if self.backend == "joblib":
            if where or self.slurm:
                given = ", ".join(f"{k.replace('_', '-')} {v!r}" for k, v in where.items()) or "slurm settings"
                raise ConfigError(f"{given} only apply to the dask backend: add --backend dask (backend: dask)")
            return
        if len(where) > 1:
            raise ConfigError(f"give one of cluster, scheduler and scheduler_file for the dask backend, got {', '.join(where)}")
        if self.cluster is None and not where:
            self.cluster = "local"  # --backend dask alone: a LocalCluster with --jobs workers
        if self.cluster is not None and self.cluster not in ("local", "slurm"):
            raise ConfigError(f"cluster must be 'local' or 'slurm', got {self.cluster!r} (a running cluster: --scheduler tcp://host:8786)")
        if not isinstance(self.slurm, dict):
            raise ConfigError(f"slurm must be a mapping with a 'cpu' and an optional 'gpu' pool, got {type(self.slurm).__name__}")
        if self.cluster == "slurm":
            unknown = sorted(set(self.slurm) - {"cpu", "gpu"})
            if unknown or not isinstance(self.slurm.get("cpu"), dict) or not isinstance(self.slurm.get("gpu", {}), dict):
                raise ConfigError(
                    "slurm needs a 'cpu' pool and may have a 'gpu' pool, each a mapping of dask-jobqueue SLURMCluster "
                    f"settings (cores, memory, walltime, queue, job_extra_directives, jobs); got keys {sorted(self.slurm) or 'none'}"
                )
        elif self.slurm:
            raise ConfigError("slurm settings only apply to cluster: slurm (--cluster slurm)")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("results") / f"{self.dataset}-{self.profile}"

    def resolved_conventions(self) -> tuple[str, ...]:
        """The conventions scored beside the strict metrics: those given, else the dataset's declared ones."""
        if self.conventions is not None:
            return tuple(self.conventions)
        from .registry import DATASETS

        return tuple(DATASETS.meta(self.dataset).conventions) if self.dataset in DATASETS.names() else ()

    def keeps_flows(self, method: str) -> bool:
        """Whether ``keep_flows`` asks for every scored case's flow of ``method`` (a name or fnmatch pattern)."""
        if isinstance(self.keep_flows, bool):
            return self.keep_flows
        return any(fnmatch.fnmatchcase(method, pattern) for pattern in self.keep_flows)

    def resolved_max_test_pairs(self) -> int | None:
        return self.max_test_pairs if self.max_test_pairs is not None else get_profile(self.profile).max_test_pairs


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` → [0, 1, 2]; anything else is a ConfigError naming the value."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise ConfigError(f"--seeds has an empty entry in {text!r}: give comma-separated non-negative integers, e.g. 0,1,2")
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated non-negative integers (e.g. 0,1,2), got {text!r}") from None
    return seeds


def parse_dataset_options(items: list[str]) -> dict[str, Any]:
    """``--dataset-option motion=1.4 --dataset-option noise=[0.04,0.07]`` → {"motion": 1.4, "noise": [0.04, 0.07]}
    (each value read as YAML); anything else is a ConfigError naming the entry."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--dataset-option takes KEY=VALUE (e.g. motion=1.4), got {item!r}")
        try:
            options[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--dataset-option {item!r}: the value is not valid YAML ({exc})") from None
    return options


def config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def _key_hint(key: str, loaded: dict[str, Any]) -> str:
    """Where an unknown top-level key of a config file belongs: a close config key, else an option of the file's
    dataset (``root:`` is ``dataset_options: {root: ...}``), else nothing."""
    if close := difflib.get_close_matches(key, config_keys(), n=1):
        return f" (did you mean {close[0]!r}?)"
    from .registry import DATASETS

    dataset = str(loaded.get("dataset") or RunConfig.dataset)
    try:
        options = DATASETS.option_names(dataset) or set()
    except RegbenchError:  # an unknown dataset is reported by the run, with its own did-you-mean
        options = set()
    if key in options:
        return f" (an option of dataset {dataset!r}: put it under dataset_options: {{{key}: ...}})"
    return ""


def load_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """A RunConfig from an optional YAML file, then flag overrides (None means 'not given')."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(loaded).__name__}")
        unknown = [k for k in loaded if k not in config_keys()]
        if unknown:
            hints = "; ".join(f"{k!r}{_key_hint(str(k), loaded)}" for k in unknown)
            raise ConfigError(f"config file {path}: unknown key {hints}. Known keys: {', '.join(config_keys())}")
        values.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "dataset_options" and isinstance(values.get(key), dict):
            value = {**values[key], **value}  # --root adds to the file's dataset options
        values[key] = value
    try:
        config = RunConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad configuration{f' in config file {path}' if path is not None else ''}: {exc}") from None
    setattr(config, "source", str(path) if path is not None else None)  # noqa: B010 - named in errors about its method_options; not a key
    return config
