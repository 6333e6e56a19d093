"""The run directory: its layout, its manifest and its format version, in one place.

A run directory is regbench's stored contract: ``regbench report`` reads one made by another machine or an
older regbench, and a run resumes one it made before. Every path and manifest key is spelled here and only
here; the other modules ask :class:`RunDir` for a path and :class:`Manifest` for a value.

Layout (format :data:`FORMAT_VERSION`)::

    cases.jsonl          the store: one JSON line per finished case (regbench.store)
    manifest.json        settings, method options and info, environment, format_version
    per_case.csv         one row per case, columns PER_CASE_COLUMNS (+ provenance: host, worker, gpu)
    per_point.csv        optional: one row per case and point of a per-point measure (a case row's list value)
    summary.csv          per method: mean/std/n per metric, counts, the training verdict
    split.json           subjects of the train/val/test splits
    lock.json            the writer's lock (regbench.lock)
    models/METHOD/[seed-S/]  final.pt, checkpoint.pt (while training), history.csv, the method's own files
    curves/METHOD[_seed-S]_sweep.csv  parameter sweeps on the test split, one file per training seed
    examples/pairs/CASE_ID.npz, examples/METHOD/CASE_ID.npz   the qualitative figure's arrays
    flows/METHOD/CASE_ID.npz   every scored case's flow (``flow``), where the run keeps them (``keep_flows``)
    report/              what ``regbench report`` writes

Versions: 1 had no ``format_version`` key (regbench 0.1.0 before the key existed); 2 adds it and the
dataset's display name (``dataset_info``); 3 names a case by the ``case_id`` its dataset declares (``subject``
an optional grouping) where 2 had ``subject`` and ``slice``, and records the dataset's labels and image
dimensions in ``dataset_info``. Older directories are migrated when read (a format-2 case's id is
``SUBJECT-SLICE``, the name its example files already had; its labels :data:`UNDECLARED_LABELS`, its dims 2);
a newer one is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError
from .fileio import atomic_write_text
from .metrics import LABELLED_METRICS, METRICS, UNDECLARED_LABELS

if TYPE_CHECKING:
    import pandas as pd

FORMAT_VERSION = 3

CASES_FILE = "cases.jsonl"
MANIFEST_FILE = "manifest.json"
PER_CASE_FILE = "per_case.csv"
PER_POINT_FILE = "per_point.csv"
SUMMARY_FILE = "summary.csv"
SPLIT_FILE = "split.json"
LOCK_FILE = "lock.json"
REPORT_DIR = "report"
MODELS_DIR = "models"
CURVES_DIR = "curves"
EXAMPLES_DIR = "examples"
EXAMPLE_PAIRS_DIR = "pairs"
FLOWS_DIR = "flows"
RETRAINED_DIR = "retrained"  # retrain_per_level: a run of the trained methods per level value
SWEEP_SUFFIX = "_sweep.csv"
SEED_DIR_PREFIX = "seed-"
# In a model directory (the ``workdir`` a trainable method's fit() gets): written by regbench's trainer and runner.
FINAL_MODEL_FILE = "final.pt"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.csv"

# per_case.csv: the case's key, every metric (regbench.metrics' order, a Dice and an HD95 column per label of the
# run), then the rest.
KEY_COLUMNS = ["method", "dataset", "case_id", "subject", "seed"]
GROUP_PREFIX = "by_"  # per_case.csv's column of a case's group attribute NAME (Pair.groups) is by_NAME


def group_column(name: str) -> str:
    """The per-case column of the group attribute ``name``."""
    return GROUP_PREFIX + name


def group_names(columns: Sequence[str]) -> list[str]:
    """The group attributes a per-case table has (its by_NAME columns), in column order."""
    return [c[len(GROUP_PREFIX) :] for c in columns if c.startswith(GROUP_PREFIX)]


METRIC_COLUMNS = list(METRICS)  # those of a run on the labels of datasets that declare none
TRAILING_COLUMNS = ["params", "n_skipped", "skipped", "status", "reason"]
PER_CASE_COLUMNS = KEY_COLUMNS + METRIC_COLUMNS + TRAILING_COLUMNS
BASE_METRICS = [m for m in METRICS if not any(m.startswith(f"{base}_") for base in LABELLED_METRICS)]


def label_keys(columns: Iterable[str]) -> list[str]:
    """The label keys of a per-case table's per-label columns (``dice_<key>``, ``hd95_<key>``), in order."""
    keys: list[str] = []
    for column in columns:
        for metric in LABELLED_METRICS:
            if column.startswith(f"{metric}_") and column[len(metric) + 1 :] not in keys:
                keys.append(column[len(metric) + 1 :])
    return keys


def metric_columns(keys: Sequence[str]) -> list[str]:
    """Every metric column of a run whose labels have ``keys``, in per_case.csv's order."""
    return [c for metric in BASE_METRICS for c in [metric, *([f"{metric}_{k}" for k in keys] if metric in LABELLED_METRICS else [])]]


REQUIRED_COLUMNS = ("method", "dataset", "case_id", "status")  # what a report cannot do without
# Format 2 keyed a case by these; format 3 by its case id, "SUBJECT-SLICE" for them.
FORMAT_2_CASE_COLUMNS = ("subject", "slice")


def migrate_case_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored case (a ``cases.jsonl`` line) of format 2 in format 3; a format-3 row unchanged."""
    if "case_id" in row or not all(k in row for k in FORMAT_2_CASE_COLUMNS):
        return row
    migrated = {k: v for k, v in row.items() if k != "slice"}
    migrated["case_id"] = f"{row['subject']}-{int(row['slice'])}"
    return migrated


def migrate_per_case(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-case table of format 2 (``subject``, ``slice`` columns) in format 3 (``case_id``)."""
    if "case_id" in frame.columns or not all(k in frame.columns for k in FORMAT_2_CASE_COLUMNS):
        return frame
    case_id = frame["subject"].astype(str) + "-" + frame["slice"].astype("Int64").astype(str)
    frame = frame.drop(columns="slice")
    frame.insert(int(frame.columns.get_loc("subject")), "case_id", case_id)
    return frame


# ------------------------------------------------------------------------------------------------- layout
class RunDir:
    """The paths of one run directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def cases(self) -> Path:
        return self.root / CASES_FILE

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def per_case(self) -> Path:
        return self.root / PER_CASE_FILE

    @property
    def per_point(self) -> Path:
        return self.root / PER_POINT_FILE

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def split(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_DIR

    @property
    def models(self) -> Path:
        return self.root / MODELS_DIR

    def retrained_dir(self, level: str, value: float) -> Path:
        """The run of the trained methods retrained at ``value`` of ``level`` (``retrain_per_level``)."""
        return self.root / RETRAINED_DIR / f"{level}-{value:g}"

    def model_dir(self, method: str, seed: int | None = None) -> Path:
        """``models/METHOD/`` for the method's own seed, ``models/METHOD/seed-S/`` per training seed."""
        return self.models / method / ("" if seed is None else f"{SEED_DIR_PREFIX}{seed}")

    def final_model(self, method: str, seed: int | None = None) -> Path:
        return final_model(self.model_dir(method, seed))

    def history_files(self) -> dict[tuple[str, int | None], Path]:
        """(method, training seed or None) → ``history.csv`` of each model trained in this run directory."""
        out: dict[tuple[str, int | None], Path] = {}
        for path in sorted(self.models.glob(f"*/{HISTORY_FILE}")):
            out[(path.parent.name, None)] = path
        for path in sorted(self.models.glob(f"*/{SEED_DIR_PREFIX}*/{HISTORY_FILE}")):
            out[(path.parent.parent.name, int(path.parent.name[len(SEED_DIR_PREFIX) :]))] = path
        return out

    def sweep(self, method: str, seed: int | None = None) -> Path:
        """``curves/METHOD_sweep.csv`` for the method's own seed, ``curves/METHOD_seed-S_sweep.csv`` per training
        seed (a run made before sweeps were per seed kept its first seed's in the former, without a seed column)."""
        return self.root / CURVES_DIR / f"{method}{'' if seed is None else f'_{SEED_DIR_PREFIX}{seed}'}{SWEEP_SUFFIX}"

    def sweep_files(self) -> list[Path]:
        return sorted((self.root / CURVES_DIR).glob(f"*{SWEEP_SUFFIX}"))

    @staticmethod
    def example_name(case_id: str) -> str:
        return f"{case_id}.npz"

    @staticmethod
    def example_case(path: Path) -> str:
        """The case id of an example file."""
        return Path(path).stem

    def example_pair(self, case_id: str) -> Path:
        """Fixed and moving images and labels of a pair shown in the qualitative figure."""
        return self.root / EXAMPLES_DIR / EXAMPLE_PAIRS_DIR / self.example_name(case_id)

    def example(self, method: str, case_id: str) -> Path:
        """A method's moved image and flow of an example pair."""
        return self.root / EXAMPLES_DIR / method / self.example_name(case_id)

    def flow(self, method: str, case_id: str) -> Path:
        """A method's flow of a test case, kept where the run keeps every flow (``keep_flows``)."""
        return self.root / FLOWS_DIR / method / self.example_name(case_id)

    def example_pairs(self) -> list[Path]:
        return sorted((self.root / EXAMPLES_DIR / EXAMPLE_PAIRS_DIR).glob("*.npz"))

    def example_methods(self) -> list[str]:
        """Methods with saved examples (folder order of the file system)."""
        folder = self.root / EXAMPLES_DIR
        return [d.name for d in folder.iterdir() if d.is_dir() and d.name != EXAMPLE_PAIRS_DIR] if folder.is_dir() else []

    def holds_results(self) -> bool:
        """Whether a stored case or a model file is here (what a manifest's settings protect)."""
        if self.cases.exists() and self.cases.stat().st_size > 0:
            return True
        return self.models.is_dir() and any(p.is_file() for p in self.models.rglob("*"))

    def require_per_case(self) -> Path:
        """``per_case.csv``, or one error saying why there is none."""
        if self.root.is_file():
            raise DataError(f"{self.root} is a file: pass the run folder (the directory that holds {PER_CASE_FILE})")
        if not self.per_case.exists():
            hint = f" (the run stored cases in {CASES_FILE}; run `regbench run` with the same settings to rewrite it)" if self.cases.exists() else ""
            raise DataError(f"{self.per_case} does not exist: not a regbench run directory, or the run did not finish a case{hint}")
        return self.per_case


def final_model(model_dir: Path) -> Path:
    return Path(model_dir) / FINAL_MODEL_FILE


def checkpoint(model_dir: Path) -> Path:
    return Path(model_dir) / CHECKPOINT_FILE


def history(model_dir: Path) -> Path:
    return Path(model_dir) / HISTORY_FILE


def prepare_run_dir(run_dir: Path, hint: str = "choose another --out") -> None:
    """Create ``run_dir`` and prove it writable before any work, so a bad --out costs nothing."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a directory; give a directory for the run")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"run directory {run_dir} is not writable ({exc.strerror or exc}); {hint}") from None


# ---------------------------------------------------------------------------------------------- fingerprint
# What binds a run directory and what must agree for two run directories of one dataset to share a column group.
FINGERPRINT_KEYS = ("dataset", "dataset_options", "profile", "seed", "hd95_convention", "jacobian_scheme", "max_test_pairs", "ndv_mask", "conventions")


def fingerprint(config: Any, dataset_options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that change every number of a run (``config``: a RunConfig)."""
    values = {
        "dataset": config.dataset,
        "dataset_options": dict(dataset_options),
        "profile": config.profile,
        "seed": config.seed,
        "hd95_convention": config.hd95_convention,
        "jacobian_scheme": config.jacobian_scheme,
        "max_test_pairs": config.resolved_max_test_pairs(),
    }
    if config.ndv_mask != "none":  # recorded where it is not the default: older run directories stay bound as they were
        values["ndv_mask"] = config.ndv_mask
    if config.resolved_conventions():  # likewise: recorded where a run scores more than the strict metrics
        values["conventions"] = list(config.resolved_conventions())
    return json_safe(values)


def fingerprint_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The fingerprint keys whose values differ between ``a`` and ``b``."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def json_safe(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, unknown objects as their str)."""
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------------------------ manifest
class Manifest:
    """``manifest.json``: what a run was made with. Reads and writes go through its methods."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def new(cls, fingerprint: dict[str, Any], config: dict[str, Any], environment: dict[str, Any], dataset_display_name: str) -> Manifest:
        manifest = cls({"format_version": FORMAT_VERSION, "fingerprint": fingerprint, "methods": {}})
        manifest.update_run(config, environment, dataset_display_name)
        return manifest

    def set_dataset(
        self,
        labels: Mapping[str, int],
        dims: int,
        groups: Mapping[str, Sequence[str]] | None = None,
        geometry: Mapping[str, Any] | None = None,
        levels: Mapping[str, str] | None = None,
    ) -> None:
        """The labels the run's cases are scored on (display name → value), its images' dimensions, the group
        attributes its test cases carry (name → the values seen; absent when none), their geometry
        (``spacing_mm``, ``spacings``, ``through_plane_axis``: regbench.execution.case_geometry) and which of the
        groups are levels of a quantity (name → its axis label; absent when none), as its dataset declares them."""
        info = self.data.setdefault("dataset_info", {})
        info.update(labels=dict(labels), dims=int(dims))
        if groups:
            info["groups"] = {name: list(values) for name, values in groups.items()}
        if geometry:
            info["geometry"] = dict(geometry)
        if levels:
            info["levels"] = dict(levels)

    def set_retrained(self, methods: Sequence[str], runs: Mapping[str, Mapping[float, Path | None]], root: Path) -> None:
        """``retrain_per_level``: the methods retrained and, per level and value, the directory of the run that
        trained them at it (relative to the run's; "." where the run's own training is at that value)."""
        self.data["retrained_per_level"] = {
            "methods": list(methods),
            "runs": {
                level: {f"{value:g}": "." if path is None else Path(path).relative_to(root).as_posix() for value, path in by_value.items()}
                for level, by_value in runs.items()
            },
        }

    def retrained(self) -> tuple[list[str], dict[str, dict[str, str]]]:
        """What :meth:`set_retrained` recorded: the retrained methods and level → value (as text) → run directory
        relative to this run's ("." for its own); empty where the run retrained nothing per level."""
        record = self.data.get("retrained_per_level")
        if not isinstance(record, dict):
            return [], {}
        runs = record.get("runs")
        runs = runs if isinstance(runs, dict) else {}
        return [str(m) for m in record.get("methods") or []], {
            str(k): {str(v): str(d) for v, d in by.items()} for k, by in runs.items() if isinstance(by, dict)
        }

    @property
    def levels(self) -> dict[str, str]:
        """The group attributes of the run's test cases that are levels of a quantity (name → its axis label)."""
        info = self.data.get("dataset_info")
        levels = info.get("levels") if isinstance(info, dict) else None
        return {str(k): str(v) for k, v in levels.items()} if isinstance(levels, dict) else {}

    @property
    def geometry(self) -> dict[str, Any]:
        """The test images' spacing and through-plane axis as the run recorded them; {} for runs made before."""
        info = self.data.get("dataset_info")
        geometry = info.get("geometry") if isinstance(info, dict) else None
        return dict(geometry) if isinstance(geometry, dict) else {}

    @property
    def groups(self) -> dict[str, list[str]]:
        """The group attributes the run's test cases carry (name → values); {} when its dataset declares none."""
        info = self.data.get("dataset_info")
        groups = info.get("groups") if isinstance(info, dict) else None
        return {str(k): [str(v) for v in values] for k, values in groups.items()} if isinstance(groups, dict) else {}

    @property
    def dims(self) -> int:
        """The run's image dimensions (a run directory written before runs recorded them was 2-D)."""
        info = self.data.get("dataset_info")
        dims = info.get("dims") if isinstance(info, dict) else None
        return dims if isinstance(dims, int) and not isinstance(dims, bool) else 2

    @property
    def labels(self) -> dict[str, int]:
        """The labels the run's cases were scored on; a run directory written before runs recorded them was
        scored on regbench.metrics.UNDECLARED_LABELS."""
        info = self.data.get("dataset_info")
        labels = info.get("labels") if isinstance(info, dict) else None
        return dict(labels) if isinstance(labels, dict) else dict(UNDECLARED_LABELS)

    def update_run(self, config: dict[str, Any], environment: dict[str, Any], dataset_display_name: str) -> None:
        """This invocation's configuration and environment (a resumed run records the latest)."""
        info = self.data.get("dataset_info")
        kept = info if isinstance(info, dict) else {}  # the recorded labels and dims stay
        self.data.update(config=json_safe(config), environment=environment, dataset_info={**kept, "display_name": dataset_display_name})

    # ---- reading
    @property
    def format_version(self) -> int:
        return int(self.data.get("format_version", 1))

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.data.get("fingerprint") or {}

    @property
    def methods(self) -> dict[str, dict[str, Any]]:
        """Each method's options as given (what binds its stored results)."""
        return self.data.setdefault("methods", {})

    def method_info(self, method: str) -> dict[str, Any]:
        """What the run recorded about ``method``: resolved options, provider, display name, figure family, seeds."""
        info = (self.data.get("method_info") or {}).get(method)
        return info if isinstance(info, dict) else {}

    def precision(self, method: str) -> str:
        """The arithmetic ``method`` trained and registered in (a deep method's ``precision`` option, recorded
        only when not the default): ``fp32`` for every other method and run."""
        options = self.methods.get(method) or {}
        resolved = self.method_info(method).get("resolved_options") or {}
        return str(options.get("precision") or resolved.get("precision") or "fp32")

    def display_names(self) -> dict[str, str]:
        return {m: i["display_name"] for m, i in (self.data.get("method_info") or {}).items() if isinstance(i, dict) and isinstance(i.get("display_name"), str)}

    @property
    def dataset_display_name(self) -> str | None:
        info = self.data.get("dataset_info")
        return info.get("display_name") if isinstance(info, dict) else None

    @property
    def dataset(self) -> str | None:
        """The registered name of the run's dataset."""
        value = (self.data.get("config") or {}).get("dataset")
        return None if value is None else str(value)

    @property
    def profile(self) -> str | None:
        value = (self.data.get("config") or {}).get("profile")
        return None if value is None else str(value)

    @property
    def device(self) -> str:
        return str((self.data.get("environment") or {}).get("device", "unknown device"))

    def params(self, method: str) -> int | None:
        return (self.data.get("methods_params") or {}).get(method)

    def provenance(self) -> dict[str, Any]:
        """What the run was made with, as a reader wants it (name → value, in reading order; absent facts
        left out): regbench's version and commit, when, the profile, the dataset and its facts, the test pairs,
        the seeds, the device, machine and packages, the scoring conventions."""
        environment = self.data.get("environment") or {}
        config = self.data.get("config") or {}
        recorded = self.data.get("dataset_info")
        info: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        packages = environment.get("packages") or {}
        fingerprint = self.fingerprint
        facts = {
            "regbench": f"{packages.get('regbench', '?')} (commit {environment.get('git_commit') or 'unknown'})",
            "written": environment.get("time"),
            "run directory when run": config.get("out"),
            "profile": fingerprint.get("profile"),
            "dataset": f"{self.dataset_display_name or fingerprint.get('dataset')} ({fingerprint.get('dataset')})"
            + (f", {info['dims']}-D" if "dims" in info else ""),
            "dataset options": json.dumps(fingerprint.get("dataset_options") or {}, sort_keys=True),
            "labels": json.dumps(self.labels) if self.labels else None,
            "geometry": json.dumps(self.geometry, sort_keys=True) if self.geometry else None,
            "levels": json.dumps(self.levels) if self.levels else None,
            "test pairs": self.data.get("test_pairs"),
            "seeds": ", ".join(map(str, config["seeds"])) if config.get("seeds") else f"each trained method's own (run seed {fingerprint.get('seed')})",
            "device": environment.get("device"),
            "machine": json.dumps({**(environment.get("machine") or {}), **(environment.get("determinism") or {})}, sort_keys=True),
            "python and packages": f"Python {environment.get('python')}; " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items())),
            "scoring": f"HD95 {fingerprint.get('hd95_convention')}, Jacobian {fingerprint.get('jacobian_scheme')}, NDV over {fingerprint.get('ndv_mask') or 'none'}"
            + (f", conventions {', '.join(fingerprint['conventions'])}" if fingerprint.get("conventions") else ""),
        }
        return {k: v for k, v in facts.items() if v not in (None, "")}

    def method_provenance(self) -> dict[str, dict[str, Any]]:
        """Per method the run recorded: its display name, provider, resolved options and where it trained."""
        out = {}
        for method in self.data.get("method_info") or {}:
            info = self.method_info(method)
            out[method] = {
                k: v
                for k, v in {
                    "display name": info.get("display_name"),
                    "provider": info.get("provider"),
                    "resolved options": json.dumps(info.get("resolved_options") or {}, sort_keys=True, default=str),
                    "trained on": json.dumps(info["trained_on"], sort_keys=True, default=str) if info.get("trained_on") else None,
                    "parameters": self.params(method),
                }.items()
                if v not in (None, "")
            }
        return out

    # ---- recording
    def check_method(self, run_dir: Path, method: str, options: Mapping[str, Any], nothing_scored: bool = False) -> str | None:
        """Refuse options for ``method`` that differ from those its stored results were computed with.
        ``nothing_scored``: the method has no successful case stored (and no model to keep): its old options are
        forgotten, so that fixing what made every case fail (a wrong fields ``pattern``) is the same command again;
        returns what changed, for the caller to say. Otherwise None."""
        options = json_safe(dict(options))
        old = self.methods.get(method)
        if old is not None and old != options:
            diffs = [k for k in sorted(set(old) | set(options)) if old.get(k) != options.get(k)]
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {options.get(k)!r} now" for k in diffs)
            if nothing_scored:
                del self.methods[method]
                return detail
            raise ConfigError(
                f"run directory {run_dir} holds '{method}' run with other options ({detail}) and scored cases under them; "
                "use another --out, or the options it was run with"
            )
        return None

    def check_inputs(self, run_dir: Path, method: str, digests: Mapping[str, str | None], scored: Collection[str]) -> None:
        """Refuse a run where an input that a stored successful case of ``method`` was scored from has changed
        (:class:`regbench.interface.BindsInputs`); failed and unscored cases may have new inputs (they are computed
        again). One error naming the cases."""
        old = (self.data.get("inputs") or {}).get(method) or {}
        changed = sorted(case for case in scored if case in old and old[case] != digests.get(case))
        if changed:
            named = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ConfigError(
                f"run directory {run_dir}: '{method}' scored {len(changed)} case(s) from inputs that have changed since ({named}); "
                "their stored rows would no longer say what the files hold. Put those files back, or score the new files "
                "into another --out (failed and unscored cases may get new files: they are computed again)"
            )

    def record_inputs(self, method: str, digests: Mapping[str, str | None]) -> None:
        self.data.setdefault("inputs", {})[method] = dict(digests)

    def bind_method(self, run_dir: Path, method: str, options: Mapping[str, Any], info: Mapping[str, Any] | None = None) -> None:
        """Record a method's settings (and ``info``: resolved options, provider, display name); refuse to mix
        results of one method name under two settings. Written at once."""
        self.check_method(run_dir, method, options)
        self.methods[method] = json_safe(dict(options))
        if info is not None:
            self.data.setdefault("method_info", {})[method] = json_safe(dict(info))
        self.write(run_dir)

    def set_params(self, method: str, count: int | None) -> None:
        self.data["methods_params"] = {**self.data.get("methods_params", {}), method: count}

    def record_trained_on(self, method: str, seed: int | None, where: Mapping[str, Any]) -> None:
        self.data["method_info"][method].setdefault("trained_on", {})["default" if seed is None else str(seed)] = dict(where)

    def record_input_probe(self, method: str, finding: Mapping[str, Any]) -> None:
        """What a method's ``probe`` found in the inputs it reads (the fields method: its files' convention)."""
        self.data["method_info"][method]["input_probe"] = json_safe(dict(finding))

    def input_suspects(self) -> dict[str, str]:
        """method → what its probe suspects of its inputs, for the methods whose probe named something."""
        infos = self.data.get("method_info") or {}
        return {m: str(i["input_probe"]["suspect"]) for m, i in infos.items() if isinstance(i, dict) and (i.get("input_probe") or {}).get("suspect")}

    def add_seed(self, method: str, seed: int) -> None:
        info = self.data["method_info"][method]
        info["seeds"] = sorted({*info.get("seeds", []), seed})

    def set_cluster(self, record: Mapping[str, Any]) -> None:
        self.data["cluster"] = json_safe(dict(record))

    def set_test_pairs(self, count: int) -> None:
        self.data["test_pairs"] = count

    def write(self, run_dir: Path) -> None:
        atomic_write_text(RunDir(run_dir).manifest, json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n")


def migrate(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A manifest of an older format brought to :data:`FORMAT_VERSION`; a newer one is refused naming both."""
    version = data.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{path}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ConfigError(f"{path} has run-directory format {version}; this regbench reads formats 1 to {FORMAT_VERSION}: upgrade regbench to read it")
    if version == 1:  # 1 → 2: the version key; the dataset's display name is unknown (tables print the dataset's name)
        data = {**data, "format_version": 2}
    if data["format_version"] == 2:  # 2 → 3: the cases' ids are migrated as read (migrate_case_row, migrate_per_case)
        data = {**data, "format_version": 3}
    return data


def read_manifest(run_dir: Path) -> Manifest | None:
    """The run directory's manifest (migrated to the current format), or None when there is none."""
    path = RunDir(run_dir).manifest
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); move it away or choose another --out") from None
    if not isinstance(data, dict) or not isinstance(data.get("methods", {}), dict) or not isinstance(data.get("fingerprint", {}), dict):
        raise ConfigError(
            f"{path} is not a regbench manifest (a JSON object with 'fingerprint' and 'methods' objects, got "
            f"{type(data).__name__}); move it away or choose another --out"
        )
    return Manifest(migrate(data, path))


def bind_run_dir(run_dir: Path, fingerprint: dict[str, Any], config: dict[str, Any], environment: dict[str, Any], dataset_display_name: str) -> Manifest:
    """Create or reopen a run directory; refuse one made for other data or settings."""
    folder = RunDir(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is None:
        if folder.cases.exists():
            raise ConfigError(f"{run_dir} holds {CASES_FILE} but no {MANIFEST_FILE}: not a run directory regbench can resume")
        manifest = Manifest.new(fingerprint, config, environment, dataset_display_name)
    else:
        diffs = fingerprint_differences(manifest.fingerprint, fingerprint)
        if diffs and not folder.holds_results():  # e.g. an earlier run refused for a bad --root: nothing to protect
            manifest = Manifest.new(fingerprint, config, environment, dataset_display_name)
        elif diffs:
            old = manifest.fingerprint
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {fingerprint.get(k)!r} now" for k in diffs)
            raise ConfigError(
                f"run directory {run_dir} holds a run with other settings ({detail}). Use another --out, or the same settings to resume or add methods."
            )
        else:
            manifest.update_run(config, environment, dataset_display_name)
    manifest.write(run_dir)
    return manifest


def read_manifest_for_report(run_dir: Path, problems: list[str]) -> Manifest:
    """The manifest for a report; an empty one when there is none. One that cannot be read is a problem named
    in the report (display names, training times and merge checks are then missing), not a silent {}; a newer
    format is refused (its meaning is unknown here)."""
    path = RunDir(run_dir).manifest
    if not path.exists():
        return Manifest({})
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        data, why = None, f"cannot be read ({type(exc).__name__}: {exc})"
    else:
        why = f"is not a JSON object (got {type(data).__name__})"
    if isinstance(data, dict):
        return Manifest(migrate(data, path))
    problems.append(f"{path} {why}: the report is written without it (no display names, training times or merge checks)")
    return Manifest({})
