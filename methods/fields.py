"""``fields``: score displacement fields another tool wrote, one file per pair, as a method of its own.

Each named instance is a row: ``fields.<tag>`` (as timm's ``name.tag`` variants) with its options in the run's
``method_options`` (the folder, the file pattern, the convention the files were written in). For each pair the
runner calls ``register_pair(pair)``: the file named by ``pattern`` (``{case_id}``, ``{subject}``) is read,
converted once into regbench's convention by :func:`regbench.fields.to_regbench`, and the moving image is warped
by regbench's warper, so that the field is scored exactly like a method's flow. A missing or unreadable file
fails that case, naming the file. Each case's file digest is kept in the run directory: a scored case whose file
changed is refused by name (never silently reused), a failed case's file may be added or replaced and is scored
by the same command again; registration time is not measured (``MethodMeta.time_measured`` False: Table 2 shows n/a).
Before scoring, :meth:`Fields.probe` reads the files under the plausible wrong conventions too and names one
that scores clearly better (the run warns; Table 1 marks the row).

Files: ``.npz`` (its one array, or ``key``), ``.npy``, NIfTI ``.nii``/``.nii.gz`` (nibabel's array, i/j/k order,
singleton axes after the spatial ones dropped: ITK's 5-D vector fields), ``.mha``/``.mhd``/``.nrrd`` (SimpleITK's
array: z/y/x order, components last). The array is taken as the library returns it; the convention says the rest.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import ConfigError, InputError
from ..fields import (
    CONVERTER_VERSION,
    DIRECTIONS,
    KINDS,
    LAYOUTS,
    RESOLUTIONS,
    UNITS,
    FieldConvention,
    alternatives,
    files_digest,
    invert_displacement,
    to_regbench,
)
from ..interface import FILE_NAME_KEYS, Pair, Registration
from ..metrics import dice, pair_labels
from ..registry import MethodMeta, register_method
from ..warp import warp, warp_label

PATTERN = "{case_id}.npz"
# The convention probe: on up to PROBE_PAIRS labelled pairs, every alternative of the declared convention is scored
# by mean Dice; one that beats the declared reading by PROBE_MARGIN (5 Dice points) or more is named in a warning
# and the row is marked in Table 1. A right convention is not beaten by that much: a wrong one loses it at once.
PROBE_PAIRS = 8
PROBE_MARGIN = 0.05
# Each reading is scored on a copy subsampled by an integer step so that it holds at most about PROBE_VOXELS voxels
# (a push field is inverted there): on 128³ volumes, step 3, the probe's twelve readings cost a fraction of scoring
# the folder instead of several times it. Smaller images are probed whole.
PROBE_VOXELS = 48**3
PROBE_CONFIRMED = 3  # alternatives the subsampled screen passes on to full resolution
PROBE_INVERSION_ITERATIONS = 10  # a push reading's fixed-point inversion in the probe (the run's: 50)


def _mean_dice(fixed_label: np.ndarray, moving_label: np.ndarray, flow: np.ndarray, pair: Pair) -> float:
    """Mean Dice over the pair's labels of ``moving_label`` warped by ``flow`` (nearest) against ``fixed_label``:
    what the probe compares readings by, without the moved image or the Jacobian."""
    warped = warp_label(moving_label, flow)
    values = [dice(fixed_label == value, warped == value) for value in pair_labels(pair).values()]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _subsampled_reading(
    array: np.ndarray, convention: FieldConvention, coarse_shape: tuple[int, ...], spacing: Sequence[float], step: int, source: str
) -> np.ndarray | None:
    """The reading of ``array`` at every ``step``-th voxel, in full-resolution voxels, converted from the stored
    array's own every ``step``-th voxel (cheap) where that commutes with the conversion (full resolution,
    displacements, voxel or mm units); None otherwise, or where this reading cannot have that grid (the whole
    conversion then says why)."""
    if convention.resolution != "full" or convention.kind != "displacement" or convention.units == "normalised":
        return None
    ndim = len(coarse_shape)
    cut = (slice(None, None, step),) * ndim
    raw = np.asarray(array)
    if raw.ndim != ndim + 1:
        return None
    raw = raw[cut + (slice(None),)] if convention.layout == "channel_last" else raw[(slice(None),) + cut]
    try:
        return to_regbench(raw, convention, coarse_shape, spacing, source=source, invert=False)
    except ConfigError:
        return None


def _inverted(flow: np.ndarray, step: int) -> np.ndarray:
    """A push field's inverse for the probe (PROBE_INVERSION_ITERATIONS fixed-point steps): on the grid itself where
    ``step`` is 1, else on the grid subsampled by ``step`` and upsampled (linear), in full-resolution voxels."""
    if step == 1:
        return invert_displacement(flow, PROBE_INVERSION_ITERATIONS)
    from scipy.ndimage import zoom

    cut = (slice(None, None, step),) * (flow.ndim - 1)
    coarse = invert_displacement(np.ascontiguousarray(flow[(slice(None),) + cut]) / step, PROBE_INVERSION_ITERATIONS)
    factors = [n / c for n, c in zip(flow.shape[1:], coarse.shape[1:])]
    return np.stack([zoom(component, factors, order=1) for component in coarse]) * step


def probe_step(shape: Sequence[int]) -> int:
    """The subsampling step of the probe's copy of images of ``shape`` (1: whole)."""
    return max(1, math.ceil((math.prod(shape) / PROBE_VOXELS) ** (1 / len(shape)) - 1e-9))


def load_field_file(path: Path, key: str | None = None) -> np.ndarray:
    """The array stored in ``path`` (see the module docstring for the formats); errors name the file."""
    name = path.name.lower()
    try:
        if name.endswith(".npz"):
            with np.load(path) as archive:
                keys = list(archive.keys())
                if key is not None:
                    if key not in keys:
                        raise InputError(f"field file {path} has no array {key!r} (it has {', '.join(keys)})")
                    return np.asarray(archive[key])
                if len(keys) != 1:
                    raise InputError(f"field file {path} holds {len(keys)} arrays ({', '.join(keys)}): give the option key")
                return np.asarray(archive[keys[0]])
        if name.endswith(".npy"):
            return np.load(path)
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            array = np.asarray(cast(Any, nib.load(str(path))).dataobj)
            while array.ndim > 4 and 1 in array.shape[3:]:  # ITK writes vector fields as (X, Y, Z, 1, 3)
                array = np.squeeze(array, axis=3 + array.shape[3:].index(1))
            return array
        if name.endswith((".mha", ".mhd", ".nrrd")):
            import SimpleITK as sitk

            return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"field file {path} does not exist") from None
    except Exception as exc:
        raise InputError(f"field file {path} cannot be read ({type(exc).__name__}: {exc})") from None
    raise InputError(f"field file {path}: unknown format (use .npz, .npy, .nii, .nii.gz, .mha, .mhd or .nrrd)")


CONVENTION_FILE = "convention.json"  # what `regbench export` writes beside the fields it writes


def declared_in_folder(folder: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The options ``given`` (None: not given), completed from the folder's ``convention.json`` where it has one
    (``pattern``, ``key`` and the ``convention`` that export records): a folder written by ``regbench export`` is
    read as it was written without the user retyping it. An option given with another value than the file's is a
    ConfigError naming both: the file describes these very files, so one of the two is wrong."""
    given = {k: v for k, v in given.items() if v is not None}
    path = folder / CONVENTION_FILE
    if not path.is_file():
        return given
    try:
        record = json.loads(path.read_text())
        stated = {"pattern": record["pattern"], "key": record.get("key"), **record["convention"]}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as the convention of its fields ({type(exc).__name__}: {exc}): fix or remove it") from None
    stated = {k: v for k, v in stated.items() if v is not None}
    for name, value in given.items():
        if name in stated and _as_option(value) != _as_option(stated[name]):
            raise ConfigError(
                f"fields option {name}: {value!r} contradicts {path}, which says {stated[name]!r} for these files: "
                f"remove the option (the file's is read), or fix the file if it is wrong"
            )
    return {**stated, **given}


def _as_option(value: Any) -> Any:
    """A value as options compare it (YAML gives [2, 1, 0] where a record may hold a tuple)."""
    return list(value) if isinstance(value, (list, tuple)) else value


class Fields:
    """Reads and scores one folder of fields; see the module docstring."""

    def __init__(self, folder: str | Path | None = None, pattern: str | list[str] | None = None, key: str | None = None, **convention: Any) -> None:
        if folder is None:
            raise ConfigError("fields needs the option folder (method_options: {fields.TAG: {folder: PATH, ...}})")
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise ConfigError(f"fields folder {self.folder} does not exist or is not a folder")
        declared = declared_in_folder(self.folder, {"pattern": pattern, "key": key, **convention})
        self.read_from_file = (self.folder / CONVENTION_FILE).is_file()
        pattern, key, convention = declared.pop("pattern", None) or PATTERN, declared.pop("key", None), declared
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ConfigError(f"fields pattern must be a file name pattern or a list of them, got {pattern!r}")
        for one in patterns:
            if not any(field for _, field, _, _ in string.Formatter().parse(one)):
                raise ConfigError(f"fields pattern {one!r} names no pair: use {{case_id}} (or {{subject}}, or a name the dataset gives), e.g. {PATTERN!r}")
        self.pattern: str | list[str] = pattern
        self.patterns = patterns
        self.key = key
        self.convention = FieldConvention(**convention)
        self.name = "fields"

    def paths_for(self, pair: Pair) -> list[Path]:
        """The files ``pattern`` names for ``pair``, one per pattern (a list of patterns: alternatives, in order)."""
        names = {"case_id": pair.case_id, "subject": pair.subject, **pair.meta.get(FILE_NAME_KEYS, {})}
        paths = []
        for pattern in self.patterns:
            try:
                paths.append(self.folder / pattern.format(**names))
            except (KeyError, IndexError) as exc:
                raise ConfigError(f"fields pattern {pattern!r} names {exc}, which case {pair.case_id!r} does not give (it gives {', '.join(names)})") from None
        return paths

    def path_for(self, pair: Pair) -> Path:
        """The pair's file: the first of :meth:`paths_for` that exists, else the first (named in the error)."""
        paths = self.paths_for(pair)
        return next((path for path in paths if path.is_file()), paths[0])

    def register_pair(self, pair: Pair) -> Registration:
        path = self.path_for(pair)
        if not path.is_file():
            tried = self.paths_for(pair)
            where = f"{tried[0]} does not exist" if len(tried) == 1 else f"none of {', '.join(map(str, tried))} exists"
            raise InputError(f"no field for case {pair.case_id!r}: {where}")
        flow = to_regbench(load_field_file(path, self.key), self.convention, pair.fixed.shape, pair.spacing, source=f"field file {path}")
        return Registration(moved=warp(pair.moving, flow), flow=flow)

    def probe(self, pairs: Sequence[Pair]) -> dict[str, Any] | None:
        """Score the declared convention and each of its alternatives (regbench.fields.alternatives) on up to
        PROBE_PAIRS labelled pairs whose files exist, by mean Dice. Returns the scores and, where an alternative
        beats the declared reading by PROBE_MARGIN or more, ``suspect`` (what it would mean) and ``message``;
        None where no pair can be probed.

        Cost: Dice alone (no moved image, no Jacobian). Images above PROBE_VOXELS are screened on a copy
        subsampled by :func:`probe_step`, and the declared reading and the PROBE_CONFIRMED best alternatives of that
        screen are scored again at full resolution, which decides; a push reading is inverted on the subsampled
        grid and upsampled (the run itself inverts at full resolution)."""
        usable = [p for p in pairs if p.fixed_label is not None and p.moving_label is not None and self.path_for(p).is_file()][:PROBE_PAIRS]
        if not usable:
            return None
        arrays = [load_field_file(self.path_for(p), self.key) for p in usable]
        readings = [("as declared", self.convention, 1.0), *alternatives(self.convention, usable[0].fixed.ndim)]
        steps = [probe_step(p.fixed.shape) for p in usable]
        unreadable: dict[str, str] = {}  # reading -> why the files cannot be read so

        def score(convention: FieldConvention, sign: float, coarse: bool) -> float:
            dice = []
            for pair, step, array in zip(usable, steps, arrays):
                source = str(self.path_for(pair))
                if coarse and step > 1:
                    cut = (slice(None, None, step),) * pair.fixed.ndim
                    small = _subsampled_reading(array, convention, pair.fixed[cut].shape, pair.spacing, step, source)
                    if small is None:  # a reading that does not commute with subsampling: converted whole, then cut
                        full = to_regbench(array, convention, pair.fixed.shape, pair.spacing, source=source, invert=False)
                        small = np.ascontiguousarray(full[(slice(None),) + cut])
                    flow = sign * small / step  # in voxels of the copy
                    flow = invert_displacement(flow, PROBE_INVERSION_ITERATIONS) if convention.direction == "push" else flow
                    dice.append(_mean_dice(pair.fixed_label[cut], pair.moving_label[cut], flow, pair))
                else:
                    full = to_regbench(array, convention, pair.fixed.shape, pair.spacing, source=source, invert=False)
                    flow = sign * (_inverted(full, step) if convention.direction == "push" else full)
                    dice.append(_mean_dice(pair.fixed_label, pair.moving_label, flow, pair))
            return float(np.nanmean(dice))

        screened = max(steps) > 1
        scores: dict[str, float] = {}
        for label, convention, sign in readings:
            try:
                scores[label] = score(convention, sign, coarse=screened)
            except ConfigError as exc:
                unreadable[label] = str(exc)  # a reading the files cannot have (another grid): not a candidate
        if "as declared" not in scores:
            raise ConfigError(self._unreadable_as_declared(unreadable["as declared"], scores, len(usable)))
        result: dict[str, Any] = {"pairs": len(usable), "margin": PROBE_MARGIN, "step": max(steps)}
        if screened:  # the screen picks the contenders; full resolution decides between them and the declared reading
            result["screen_dice"] = dict(scores)
            contenders = sorted((k for k in scores if k != "as declared"), key=lambda k: -scores[k])[:PROBE_CONFIRMED]
            by_label = {label: (convention, sign) for label, convention, sign in readings}
            scores = {k: score(*by_label[k], coarse=False) for k in ["as declared", *contenders]}
        result["dice"] = scores
        declared = scores["as declared"]
        best_label, best = max(((k, v) for k, v in scores.items() if k != "as declared"), key=lambda kv: kv[1], default=("", -1.0))
        if best >= declared + PROBE_MARGIN:
            result["suspect"] = best_label
            result["message"] = (
                f"these fields look {best_label}: Dice {best:.3f} read so vs {declared:.3f} as declared "
                f"({', '.join(f'{k} {v}' for k, v in self.convention.record().items())}), on {len(usable)} pairs"
            )
        return result

    def _unreadable_as_declared(self, why: str, scores: dict[str, float], n_pairs: int) -> str:
        """The one line a run stops with when no file can be read under the declared convention: why, and the
        reading that scores best where one can be read (each case would fail with the same error otherwise)."""
        declared = ", ".join(f"{k} {v}" for k, v in self.convention.record().items())
        text = f"fields in {self.folder} cannot be read as declared ({declared}): {why}"
        if scores:
            best, dice = max(scores.items(), key=lambda kv: kv[1])
            return (
                text
                + f"; read as {best} they score Dice {dice:.3f} on {n_pairs} pairs: declare that convention (docs/methods.md#fields-from-other-tools-fieldstag)"
            )
        return text + "; no single change of the convention reads them either: declare how they were written (layout, axis_order, units, ...)"

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        raise ConfigError("fields reads one file per pair: it is scored through register_pair(pair) (regbench run), not register(fixed, moving)")

    def input_digests(self, pairs: Sequence[Pair]) -> dict[str, str | None]:
        """Each pair's file, by its sha256 (None: no file): the run directory keeps them, so that a case scored
        from a file is refused once that file changes, while a failed case's file may be added or replaced."""
        return {pair.case_id: files_digest([path]) if (path := self.path_for(pair)).is_file() else None for pair in pairs}

    def binding(self) -> dict[str, Any]:
        """Bound into the run directory beside the options: the converter's version (and the convention a
        folder's convention.json declared). The files themselves are bound case by case (input_digests)."""
        bound: dict[str, Any] = {"fields_converter": CONVERTER_VERSION}
        if self.read_from_file:  # what the folder's convention.json declared binds the run as options given do
            bound["fields_declared"] = self.options()
        return bound

    def options(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "pattern": self.pattern, "key": self.key, **self.convention.record()}


@register_method(
    "fields",
    MethodMeta(
        display_name="Fields",
        dims=(2, 3),
        tagged=True,
        option_names=frozenset(
            {"folder", "pattern", "key", "layout", "axis_order", "units", "align_corners", "direction", "resolution", "half_values", "kind"}
        ),
        isolate_cases=False,
        time_measured=False,  # reading a file says nothing of the tool's speed
    ),
)
def make_fields(**options: Any) -> Fields:
    return Fields(**options)


# What `regbench methods` prints of it: the options and each convention value, from the converter's own lists.
make_fields.__doc__ = (
    "Fields another tool wrote, one file per pair: folder, pattern ('{case_id}.npz'), key, or the folder's "
    f"convention.json; the convention: layout {'|'.join(LAYOUTS)}, axis_order array|reversed|[i, j, k], "
    f"units {'|'.join(UNITS)}, align_corners true|false, direction {'|'.join(DIRECTIONS)}, "
    f"resolution and half_values {'|'.join(RESOLUTIONS)}, kind {'|'.join(KINDS)} (first: the default)."
)
