"""Real cine-MRI datasets on disk (ACDC, M&M): one preparation, one cache, one split, one check.

A layout reader (``acdc.py``, ``mnm.py``) finds the cases of a download and loads one case as a
:class:`CineCase` (ED and ES volumes and labels in the common label convention, in-plane spacing, metadata),
raising :class:`~regbench.errors.DataError` naming the file and key at fault. Everything after that is here,
the same for every dataset, following the paper's protocol (ES moving, ED fixed, 2-D short-axis slices,
128×128 crops centred on the heart, intensities in [0, 1]). The authors did not publish their preparation;
regbench's choices, each an option recorded in the run manifest:

- ``slice_rule``: ``"all-structures"`` (default) keeps a slice when LV, Myo and RV are all labelled in both
  frames; ``"lv"`` when the LV is labelled in both; ``"all"`` keeps every slice.
- Crop: ``crop`` pixels square, centred on the centre of the bounding box of the subject's ED labels over its
  kept slices (one centre per subject, so the slices of a subject stay aligned). Images smaller than the crop
  are zero-padded (counted in the pair's ``meta["padded"]`` and by ``data check``), never skipped.
- Resampling: ``spacing_mm=None`` (default) keeps the native in-plane spacing (ACDC 1.37–1.68 mm); a number
  resamples in-plane to that spacing first (linear for images, nearest for labels).
- Intensities: clipped to the ``clip_percentiles`` (default 1st and 99th) of the subject's ED and ES volumes
  together, then scaled to [0, 1] (one scaling for both frames, so intensity changes between them remain).

Prepared pairs are cached (``.npz``, written atomically: a failure leaves no partial cache) under
``cache_dir`` (default ``$REGBENCH_CACHE`` or ``~/.cache/regbench``), keyed by the root's absolute path, the
preparation options, :data:`PREPARATION_VERSION` and the size and modification time of every file under the
root: changing an option prepares anew, and so does changing, adding or removing a file (with a warning; the
stale cache is removed). ``refresh=True`` (``--refresh``) prepares anew regardless.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import atomic_write_bytes
from ..interface import Pair
from .labels import CARDIAC_LABELS, slice_case_id
from .splits import SPLITS, read_split_file, split_subjects

MIN_SUBJECTS = 3  # one per split (regbench.datasets.splits.split_subjects)
log = logging.getLogger("regbench")
PREPARATION_VERSION = 1  # bump when preparation changes the numbers: old caches are then not used
SLICE_RULES = ("all-structures", "lv", "all")


@dataclass
class CineCase:
    """One subject's ED and ES frames: volumes (rows, columns, slices) and labels in the common convention."""

    subject: str
    ed_image: np.ndarray
    es_image: np.ndarray
    ed_label: np.ndarray
    es_label: np.ndarray
    spacing: tuple[float, float]  # mm per pixel along (rows, columns)
    meta: dict[str, Any] = field(default_factory=dict)
    slice_mm: float | None = None  # through-plane: mm from one slice to the next (the volumes' spacing along axis 0)


def read_nifti(path: Path, ndim: int, what: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Data and voxel sizes of a NIfTI file; DataError naming the file if missing, unreadable or not ``ndim``-D."""
    import nibabel as nib

    if not path.exists():
        raise DataError(f"{path}: {what} file is missing")
    try:
        img: Any = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel, gzip and zlib raise many types for corrupt or truncated files
        raise DataError(f"{path}: cannot read {what} as NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim != ndim:
        raise DataError(f"{path}: {what} must be {ndim}-D, got shape {data.shape}")
    return data, tuple(float(z) for z in img.header.get_zooms())


def check_case(case: CineCase, files: dict[str, Path]) -> None:
    """Shapes, finite intensities and label values of a loaded case; ``files`` names ed/es image/label files."""
    for frame in ("ed", "es"):
        image, label = getattr(case, f"{frame}_image"), getattr(case, f"{frame}_label")
        if image.shape != label.shape:
            raise DataError(f"{files[frame + '_label']}: label shape {label.shape} differs from image shape {image.shape} ({files[frame + '_image']})")
        if not np.all(np.isfinite(image)):
            raise DataError(f"{files[frame + '_image']}: {int(np.size(image) - np.isfinite(image).sum())} non-finite intensities (NaN/inf)")
        values = set(np.unique(label).tolist())
        if not values <= {0.0, 1.0, 2.0, 3.0}:
            raise DataError(f"{files[frame + '_label']}: label values {sorted(values - {0.0, 1.0, 2.0, 3.0})} outside {{0, 1, 2, 3}}")
    if case.ed_image.shape != case.es_image.shape:
        raise DataError(f"{files['es_image']}: ES shape {case.es_image.shape} differs from ED shape {case.ed_image.shape} ({files['ed_image']})")


def relabel(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map a dataset's label values to the common convention (0 background, 1 RV, 2 Myo, 3 LV)."""
    out = np.zeros(label.shape, np.uint8)
    for source, target in mapping.items():
        out[label == source] = target
    return out


@dataclass(frozen=True)
class Preparation:
    slice_rule: str = "all-structures"
    crop: int = 128
    spacing_mm: float | None = None
    clip_percentiles: tuple[float, float] = (1.0, 99.0)
    depth: int | None = None  # None: 2-D slices; a number: one volume pair per subject of this many slices

    def __post_init__(self) -> None:
        if self.slice_rule not in SLICE_RULES:
            raise ConfigError(f"slice_rule must be one of {SLICE_RULES}, got {self.slice_rule!r}")
        if int(self.crop) < 16 or int(self.crop) % 16:
            raise ConfigError(f"crop must be a positive multiple of 16 (the U-Net's), got {self.crop!r}")
        if self.spacing_mm is not None and not float(self.spacing_mm) > 0:
            raise ConfigError(f"spacing_mm must be positive or null, got {self.spacing_mm!r}")
        low, high = self.clip_percentiles
        if not 0 <= low < high <= 100:
            raise ConfigError(f"clip_percentiles must be two numbers 0 ≤ low < high ≤ 100, got {list(self.clip_percentiles)}")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1):
            raise ConfigError(f"depth must be a positive number of slices, got {self.depth!r}")

    def keep(self, ed: np.ndarray, es: np.ndarray) -> bool:
        if self.slice_rule == "all":
            return True
        wanted = CARDIAC_LABELS.values() if self.slice_rule == "all-structures" else [CARDIAC_LABELS["LV"]]
        return all(np.any(ed == v) and np.any(es == v) for v in wanted)

    def pairs(self, case: CineCase) -> list[Pair]:
        """The kept slices of a case as prepared pairs (fixed = ED, moving = ES); with ``depth``, its volume pair."""
        ed_img, es_img, ed_lab, es_lab, spacing = case.ed_image, case.es_image, case.ed_label, case.es_label, case.spacing
        if self.spacing_mm is not None:
            ed_img, es_img, ed_lab, es_lab = (
                _resample(v, spacing, float(self.spacing_mm), order) for v, order in ((ed_img, 1), (es_img, 1), (ed_lab, 0), (es_lab, 0))
            )
            spacing = (float(self.spacing_mm), float(self.spacing_mm))
        if self.depth is not None:
            return self._volume(case, (ed_img, es_img, ed_lab, es_lab), spacing)
        kept = [z for z in range(ed_img.shape[2]) if self.keep(ed_lab[..., z], es_lab[..., z])]
        if not kept:
            return []
        normalise = self.normaliser(ed_img, es_img)
        centre = _label_centre(ed_lab[..., kept], fallback=ed_img.shape[:2])
        pairs = []
        for z in kept:
            crops = [_crop(a[..., z], centre, int(self.crop)) for a in (ed_img, es_img, ed_lab, es_lab)]
            fixed, moving = (normalise(c[0]) for c in crops[:2])
            padded = crops[0][1]
            pairs.append(
                Pair(
                    fixed=fixed,
                    moving=moving,
                    fixed_label=crops[2][0].astype(np.uint8),
                    moving_label=crops[3][0].astype(np.uint8),
                    spacing=spacing,
                    case_id=slice_case_id(case.subject, z),
                    subject=case.subject,
                    meta={**case.meta, "slice": z, "padded": padded},
                )
            )
        return pairs

    def normaliser(self, ed_image: np.ndarray, es_image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """Intensities to [0, 1]: clipped to ``clip_percentiles`` of both frames together, one scaling for both."""
        low, high = np.percentile(np.concatenate([ed_image.ravel(), es_image.ravel()]), self.clip_percentiles)
        scale = float(high - low) if high > low else 1.0
        return lambda image: np.clip((image - low) / scale, 0, 1).astype(np.float32)

    def _volume(self, case: CineCase, volumes: tuple[np.ndarray, ...], spacing: tuple[float, float]) -> list[Pair]:
        """The through-plane rule: every slice of the stack (none dropped by ``slice_rule``), each cropped in-plane
        as the 2-D slices are (one centre per subject, from its ED labels), stacked along axis 0 in file order and
        centred in ``depth`` slices: zero slices added equally before and after (one more after when odd) where
        the stack is shorter, the central ``depth`` kept where it is longer. ``meta`` records the stack's slices
        and the padding or the slices dropped before and after; no labels at all: no pair."""
        assert self.depth is not None
        ed_img, es_img, ed_lab, es_lab = volumes
        if not (np.any(ed_lab) and np.any(es_lab)):
            return []
        if case.slice_mm is None:
            raise DataError(f"{case.subject}: no through-plane spacing (slice_mm) to prepare a volume")
        normalise = self.normaliser(ed_img, es_img)
        centre = _label_centre(ed_lab, fallback=ed_img.shape[:2])
        n = ed_img.shape[2]
        padded = False
        stacks = []
        for volume in (ed_img, es_img, ed_lab, es_lab):
            crops = [_crop(volume[..., z], centre, int(self.crop)) for z in range(n)]
            padded = padded or any(c[1] for c in crops)
            stacks.append(np.stack([c[0] for c in crops]))
        stacks[:2] = [normalise(a) for a in stacks[:2]]
        if n < self.depth:
            before, after = (self.depth - n) // 2, self.depth - n - (self.depth - n) // 2
            stacks = [np.pad(a, ((before, after), (0, 0), (0, 0))) for a in stacks]
            through_plane = {"pad": [before, after]}
        else:
            drop = (n - self.depth) // 2
            stacks = [a[drop : drop + self.depth] for a in stacks]
            through_plane = {"dropped": [drop, n - self.depth - drop]}
        fixed, moving = stacks[:2]
        return [
            Pair(
                fixed=fixed,
                moving=moving,
                fixed_label=stacks[2].astype(np.uint8),
                moving_label=stacks[3].astype(np.uint8),
                spacing=(float(case.slice_mm), *spacing),
                case_id=case.subject,
                subject=case.subject,
                meta={**case.meta, "slices": n, **through_plane, "padded": padded},
            )
        ]


# A plausibility check of the label order: the myocardium encloses the LV, so nearly all of the LV's in-plane
# border is Myo (the fixtures: 100%; the basal slices' outflow tract lowers it a little on real hearts), while an
# RV read as the LV borders Myo only along the septum.
LV_ENCLOSURE_MIN = 0.5


def lv_enclosure(label: np.ndarray) -> float | None:
    """The share of the pixels bordering the LV in-plane (4-neighbours outside it) that are Myo, over the slices
    of a (rows, columns, slices) label volume where both are labelled; None where no slice has both."""
    from scipy import ndimage

    lv, myo = label == CARDIAC_LABELS["LV"], label == CARDIAC_LABELS["Myo"]
    both = lv.any(axis=(0, 1)) & myo.any(axis=(0, 1))
    if not both.any():
        return None
    cross = ndimage.generate_binary_structure(2, 1)[..., None]  # in-plane 4-neighbours, never across slices
    border = ndimage.binary_dilation(lv[..., both], structure=cross) & ~lv[..., both]
    return float((border & myo[..., both]).sum() / max(int(border.sum()), 1))


def _resample(volume: np.ndarray, spacing: tuple[float, float], target: float, order: int) -> np.ndarray:
    from scipy import ndimage

    factors = (spacing[0] / target, spacing[1] / target, 1.0)
    return ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)


def _label_centre(labels: np.ndarray, fallback: tuple[int, int]) -> tuple[int, int]:
    rows, cols = np.nonzero(np.any(labels > 0, axis=2))
    if not len(rows):
        return fallback[0] // 2, fallback[1] // 2
    return (int(rows.min() + rows.max() + 1) // 2, int(cols.min() + cols.max() + 1) // 2)


def _crop(image: np.ndarray, centre: tuple[int, int], size: int) -> tuple[np.ndarray, bool]:
    """size × size around centre; zero padding where the image is too small or the window leaves it."""
    out = np.zeros((size, size), image.dtype)
    top, left = centre[0] - size // 2, centre[1] - size // 2
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, image.shape[0]), min(left + size, image.shape[1])
    out[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    padded = (r1 - r0, c1 - c0) != (size, size)
    return out, padded


# ---------------------------------------------------------------------------------------------- dataset
class CineDataset:
    """A dataset read from disk by a layout reader, prepared, split by subject and cached."""

    name = "cine"
    env_var = ""
    # Case metadata (CineCase.meta keys) the results can be grouped by: each pair's Pair.groups.
    group_keys: tuple[str, ...] = ()

    def __init__(
        self,
        root: str | Path | None = None,
        slice_rule: str = "all-structures",
        crop: int = 128,
        spacing_mm: float | None = None,
        clip_percentiles: Sequence[float] = (1.0, 99.0),
        seed: int = 0,
        split_fractions: Sequence[float] = (0.75, 0.05, 0.20),
        split_file: str | Path | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        refresh: bool = False,
        depth: int | None = None,
    ) -> None:
        root = root or os.environ.get(self.env_var)
        if not root:
            raise ConfigError(f"dataset {self.name!r} needs its folder: --root PATH, dataset_options: {{root: PATH}} or ${self.env_var}")
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: {self.name} root folder does not exist")
        self.preparation = Preparation(slice_rule, int(crop), spacing_mm, tuple(float(p) for p in clip_percentiles), depth)  # type: ignore[arg-type]
        if len(split_fractions) != 3 or any(f < 0 for f in split_fractions) or not np.isclose(sum(split_fractions), 1.0):
            raise ConfigError(f"split_fractions must be three non-negative numbers summing to 1, got {list(split_fractions)}")
        self.seed = int(seed)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        self.split_file = Path(split_file).expanduser().resolve() if split_file else None
        self.cache = bool(cache)
        self.refresh = bool(refresh)  # not an option of the data (not in options()): how to read them once
        self.cache_dir = Path(cache_dir or os.environ.get("REGBENCH_CACHE") or Path.home() / ".cache" / "regbench").expanduser()
        self._pairs: dict[str, list[Pair]] | None = None

    # -- what a layout reader provides -------------------------------------------------------------------
    def case_ids(self) -> list[str]:
        raise NotImplementedError

    def load_case(self, subject: str) -> CineCase:
        raise NotImplementedError

    def skipped_entries(self) -> list[str]:
        """What the layout reader saw under the root but does not read, one line each (for ``data check``)."""
        return []

    # -- dataset interface -------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "slice_rule": self.preparation.slice_rule,
            "crop": self.preparation.crop,
            "spacing_mm": self.preparation.spacing_mm,
            "clip_percentiles": list(self.preparation.clip_percentiles),
            "seed": self.seed,
            "split_fractions": list(self.split_fractions),
            "split_file": str(self.split_file) if self.split_file else None,
            "preparation_version": PREPARATION_VERSION,
            # Volumes only (2-D options, and so their caches, stay as they were): the through-plane rule's depth.
            **({"depth": self.preparation.depth, "through_plane": "all slices, centred in depth"} if self.preparation.depth is not None else {}),
        }

    def subjects(self) -> list[str]:
        return sorted(self.case_ids())

    def split(self) -> dict[str, list[str]]:
        """From ``split_file`` (JSON or YAML: train/val/test lists of subjects), else 75/5/20 by ``seed``."""
        names = self.subjects()
        if self.split_file is not None:
            return read_split_file(self.split_file, names)
        return split_subjects(names, self.seed, self.split_fractions)

    def pairs(self, split: str) -> list[Pair]:
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if self._pairs is None:
            self._pairs = self._load_or_prepare()
            for pair in (p for prepared in self._pairs.values() for p in prepared):
                pair.groups = {k: str(pair.meta[k]).strip() for k in self.group_keys if str(pair.meta.get(k, "")).strip().lower() not in ("", "nan", "none")}
        subjects = set(self.split()[split])
        return [p for s in self.subjects() if s in subjects for p in self._pairs.get(s, [])]

    # -- cache ---------------------------------------------------------------------------------------------
    def _options_key(self) -> str:
        key = json.dumps({k: v for k, v in self.options().items() if k not in ("seed", "split_fractions", "split_file")}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def cache_path(self) -> Path:
        """The cache of these options and of the files as they are now (size and modification time of each)."""
        return self.cache_dir / f"{self._options_key()}-{files_digest(self.root)}.npz"

    def _load_or_prepare(self) -> dict[str, list[Pair]]:
        path = self.cache_path()
        stale = [p for p in self.cache_dir.glob(f"{self._options_key()}-*.npz") if p != path] if self.cache else []
        if self.cache and path.exists() and not self.refresh:
            try:
                return _read_cache(path)
            except Exception:  # an unreadable cache is prepared again, never trusted
                pass
        if stale and not self.refresh:
            log.warning("%s: files under %s changed since its pairs were prepared: preparing them again", self.name, self.root)
        for old in stale + ([path] if self.refresh and path.exists() else []):
            old.unlink(missing_ok=True)
        prepared = {s: self.preparation.pairs(self.load_case(s)) for s in self.subjects()}
        if self.cache:
            _write_cache(path, prepared)
        return prepared

    # -- validation --------------------------------------------------------------------------------------
    def check(self) -> CheckSummary:
        """Load and prepare every case; collect every problem instead of stopping at the first."""
        summary = CheckSummary(self.name, self.root)
        try:
            ids = self.subjects()
        except DataError as exc:
            summary.problems.append(str(exc))
            return summary
        summary.subjects = len(ids)
        summary.problems += self.skipped_entries()
        for subject in ids:
            try:
                case = self.load_case(subject)
                pairs = self.preparation.pairs(case)
            except DataError as exc:
                summary.problems.append(str(exc))
                continue
            summary.ok_subjects += 1
            summary.slices_total += case.ed_image.shape[2]
            summary.slices_kept += len(pairs)
            summary.spacings.append(case.spacing)
            summary.labels |= set(np.unique(case.ed_label).tolist()) | set(np.unique(case.es_label).tolist())
            summary.padded += int(any(p.meta["padded"] for p in pairs))
            summary.shapes.add(case.ed_image.shape[:2])
            if not pairs:
                summary.problems.append(f"{subject}: no slice kept by slice_rule={self.preparation.slice_rule!r}")
            enclosed = lv_enclosure(case.ed_label)
            if enclosed is not None and enclosed < LV_ENCLOSURE_MIN:
                summary.problems.append(
                    f"{subject}: only {enclosed:.0%} of the LV's border (label {CARDIAC_LABELS['LV']} after mapping) is Myo "
                    f"(label {CARDIAC_LABELS['Myo']}); the myocardium encloses the LV, so are the labels in another order "
                    "(ACDC: 1 RV, 2 Myo, 3 LV; M&M: 1 LV, 2 Myo, 3 RV)?"
                )
        try:
            summary.split = {name: len(members) for name, members in self.split().items()}
        except ConfigError as exc:
            summary.problems.append(str(exc))
            return summary
        if empty := [name for name, size in summary.split.items() if not size]:
            summary.problems.append(
                f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty: a run needs a subject in each "
                f"(75/5/20 by subject: at least {MIN_SUBJECTS} subjects; {len(ids)} found), or give split_file"
            )
        return summary


@dataclass
class CheckSummary:
    dataset: str
    root: Path
    subjects: int = 0
    ok_subjects: int = 0
    slices_total: int = 0
    slices_kept: int = 0
    padded: int = 0
    spacings: list[tuple[float, float]] = field(default_factory=list)
    labels: set[int] = field(default_factory=set)
    shapes: set[tuple[int, int]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    split: dict[str, int] = field(default_factory=dict)  # subjects per split

    def __str__(self) -> str:
        lines = [
            f"{self.dataset} at {self.root}",
            f"  subjects: {self.subjects} found, {self.ok_subjects} readable",
            f"  slices: {self.slices_kept} kept of {self.slices_total}",
        ]
        if self.split:
            lines.append("  split (subjects): " + ", ".join(f"{name} {size}" for name, size in self.split.items()))
        if self.spacings:
            s = np.asarray(self.spacings)
            lines.append(f"  in-plane spacing (mm): rows {s[:, 0].min():.2f}–{s[:, 0].max():.2f}, columns {s[:, 1].min():.2f}–{s[:, 1].max():.2f}")
            lines.append(f"  image sizes: {len(self.shapes)} distinct, {min(self.shapes)} to {max(self.shapes)}; subjects padded to the crop: {self.padded}")
        lines.append(f"  label values (common convention 1 RV, 2 Myo, 3 LV): {sorted(int(v) for v in self.labels)}")
        lines.append(f"  problems: {len(self.problems)}" + "".join(f"\n    - {p}" for p in self.problems))
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.problems


CACHE_FIELDS = ("fixed", "moving", "fixed_label", "moving_label")


def _write_cache(path: Path, prepared: dict[str, list[Pair]]) -> None:
    pairs = [p for subject in sorted(prepared) for p in prepared[subject]]
    arrays: dict[str, Any] = {"subjects": np.asarray(sorted(prepared), dtype=str)}
    if pairs:
        arrays.update({f: np.stack([getattr(p, f) for p in pairs]) for f in CACHE_FIELDS})
    arrays.update(
        subject=np.asarray([p.subject for p in pairs], dtype=str),
        case_id=np.asarray([p.case_id for p in pairs], dtype=str),
        spacing=np.asarray([p.spacing for p in pairs], np.float64).reshape(len(pairs), -1) if pairs else np.zeros((0, 2)),
        meta=np.asarray([json.dumps(p.meta, sort_keys=True, default=str) for p in pairs], dtype=str),
    )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _read_cache(path: Path) -> dict[str, list[Pair]]:
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}  # each npz[k] reads the whole array: read each once
    out: dict[str, list[Pair]] = {str(s): [] for s in data["subjects"]}
    for i, subject in enumerate(data["subject"]):
        out[str(subject)].append(
            Pair(
                fixed=data["fixed"][i],
                moving=data["moving"][i],
                fixed_label=data["fixed_label"][i],
                moving_label=data["moving_label"][i],
                spacing=tuple(float(x) for x in data["spacing"][i]),
                case_id=str(data["case_id"][i]),
                subject=str(subject),
                meta=json.loads(str(data["meta"][i])),
            )
        )
    return out


def files_digest(root: Path) -> str:
    """A digest of every file under ``root``: its path, size and modification time (not its content: reading a
    whole download at every run would cost more than preparing it again)."""
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished or unreadable: preparing will name it
            entries.append(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


def iterate_dirs(parent: Path, predicate: Callable[[Path], bool]) -> Iterator[Path]:
    if parent.is_dir():
        yield from (p for p in sorted(parent.iterdir()) if p.is_dir() and predicate(p))
