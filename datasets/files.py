"""``files``: image pairs of your own, listed in a small YAML or CSV file, 2-D or 3-D.

The list (the ``root`` option) names each pair's files, relative to the list's folder or absolute::

    labels: {liver: 1, tumour: 2}        # YAML only: the label maps' values (optional; none: image metrics only)
    pairs:
      - {case_id: p01, fixed: img/p01_0000.nii.gz, moving: img/p01_0001.nii.gz,
         fixed_label: lab/p01_0000.nii.gz, moving_label: lab/p01_0001.nii.gz, subject: p01, split: test}

A CSV has the same columns, one pair per row (``case_id``, ``fixed``, ``moving``; optional ``fixed_label``,
``moving_label``, ``subject``, ``split``); its labels are the values its label files hold, named by value. ``split`` is train, val or test (default
test). A key ``by_NAME`` (lower case, e.g. ``by_site: A``) is a group attribute of the pair: per_case.csv's column
of the same name, and ``regbench report RUN --by NAME`` tabulates and tests each value's subjects apart. Images: NIfTI (nibabel's array in i/j/k order, spacing from the header's zooms), MHA/MHD/NRRD
(SimpleITK's array in z/y/x order, its spacing reversed to match), ``.npz`` (array ``image`` or its one array,
optional ``spacing``) or ``.npy`` (spacing 1); landmarks (``fixed_points``, ``moving_points``): CSV files of
voxel indices in array order, one point per row, matching row by row (scored by TRE); masks (``fixed_mask``,
``moving_mask``, either or both): images whose non-zero voxels are the region of interest, where NDA/NDV is
measured under ``ndv_mask: fixed`` / ``moving``. Fixed and moving must share shape and spacing; intensities are
clipped to the pair's 0.5th and 99.5th percentiles together and scaled to [0, 1]. Every problem is one error
naming the list, the pair and the file; ``regbench data check --dataset files --root LIST`` lists them all.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml

from ..errors import DataError
from ..interface import Pair, check_case_id
from ..registry import DatasetMeta, register_dataset
from .splits import SPLITS

KEYS = ("case_id", "fixed", "moving", "fixed_label", "moving_label", "fixed_points", "moving_points", "fixed_mask", "moving_mask", "subject", "split")
CLIP_PERCENTILES = (0.5, 99.5)
GROUP_KEY = re.compile(r"by_[a-z][a-z0-9_]*")  # by_site: A groups the pair's results (Pair.groups; report --by site)


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """(array, spacing per array axis in mm) of an image file; errors name the file."""
    name = path.name.lower()
    if not path.is_file():
        raise DataError(f"image file {path} does not exist")
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            image = cast(Any, nib.load(str(path)))
            array = np.asarray(image.dataobj)
            return array, tuple(float(z) for z in image.header.get_zooms()[: array.ndim])
        if name.endswith((".mha", ".mhd", ".nrrd")):
            import SimpleITK as sitk

            itk = sitk.ReadImage(str(path))
            return sitk.GetArrayFromImage(itk), tuple(float(s) for s in reversed(itk.GetSpacing()))
        if name.endswith(".npz"):
            with np.load(path) as archive:
                keys = list(archive.keys())
                key = "image" if "image" in keys else ("label" if "label" in keys else None)
                arrays = [k for k in keys if k != "spacing"]
                if key is None and len(arrays) != 1:
                    raise DataError(f"image file {path} holds arrays {keys}: name the image 'image' (and its spacing 'spacing')")
                array = np.asarray(archive[key or arrays[0]])
                spacing = tuple(float(s) for s in archive["spacing"]) if "spacing" in keys else (1.0,) * array.ndim
                return array, spacing
        if name.endswith(".npy"):
            array = np.load(path)
            return array, (1.0,) * array.ndim
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"image file {path} cannot be read ({type(exc).__name__}: {exc})") from None
    raise DataError(f"image file {path}: unknown format (use .nii, .nii.gz, .mha, .mhd, .nrrd, .npz or .npy)")


def read_points(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Landmarks or keypoints: a CSV of one point per row, voxel indices in array-axis order (Learn2Reg's
    keypoint files of nibabel-read images: i, j, k), a header row allowed; each point inside the image."""
    if not path.is_file():
        raise DataError(f"point file {path} does not exist")
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines()) if r and any(c.strip() for c in r)]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]
        points = np.asarray([[float(c) for c in r] for r in rows], np.float64)
    except ValueError as exc:
        raise DataError(f"point file {path}: not a table of numbers ({exc})") from None
    if points.ndim != 2 or points.shape[1] != len(shape) or not len(points):
        raise DataError(f"point file {path}: {len(shape)} coordinates per row expected, got an array of shape {points.shape}")
    if np.any(points < -0.5) or np.any(points > np.asarray(shape) - 0.5):
        raise DataError(f"point file {path}: points outside the image of shape {shape} (voxel indices in array order expected)")
    return points


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def normalised_pair(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images clipped to their joint CLIP_PERCENTILES and scaled by one factor to [0, 1]."""
    low, high = np.percentile(np.concatenate([fixed.ravel(), moving.ravel()]).astype(np.float64), CLIP_PERCENTILES)
    scale = float(high - low) if high > low else 1.0

    def normalise(image: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(image, np.float64) - low) / scale, 0, 1).astype(np.float32)

    return normalise(fixed), normalise(moving)


@dataclass
class FilesCheck:
    """What ``regbench data check`` prints for a list of files."""

    root: Path
    title: str = ""  # the first line; default "files listed in ROOT"
    pairs: int = 0
    readable: int = 0
    split: dict[str, int] = field(default_factory=dict)
    dims: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader left unread: said, not a problem

    def __str__(self) -> str:
        lines = [
            self.title or f"files listed in {self.root}",
            f"  pairs: {self.pairs} listed, {self.readable} readable",
            "  split (pairs): " + ", ".join(f"{name} {self.split.get(name, 0)}" for name in SPLITS),
            f"  dims: {', '.join(f'{d}-D' for d in sorted(self.dims)) or '-'}",
            f"  problems: {len(self.problems)}" + "".join(f"\n    - {p}" for p in self.problems),
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.problems


class PairedFiles:
    """Pairs read from the files a list names (see the module docstring)."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            raise DataError("dataset 'files' needs --root LIST (a YAML or CSV file listing the pairs)")
        self.root = Path(root).expanduser()
        self.rows, self.labels = self._read_list()
        self._cache: dict[str, Pair] = {}

    def declared_labels(self) -> Mapping[str, int]:
        """The labels the list declares; a list that declares none (a CSV): every value in its label files,
        named by its value."""
        if self.labels is None:
            values: set[int] = set()
            for row in self.rows:
                for key in ("fixed_label", "moving_label"):
                    if key in row:
                        values |= {int(v) for v in np.unique(read_image(self._file(row[key]))[0]) if v > 0}
            self.labels = {str(v): v for v in sorted(values)}
        return self.labels

    def _read_list(self) -> tuple[list[dict[str, str]], dict[str, int] | None]:
        if not self.root.is_file():
            raise DataError(f"pair list {self.root} does not exist")
        try:
            if self.root.suffix.lower() == ".csv":
                with open(self.root, newline="") as handle:
                    rows, labels = [dict(r) for r in csv.DictReader(handle)], None
            else:
                data = yaml.safe_load(self.root.read_text()) or {}
                if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
                    raise DataError(f"pair list {self.root}: a mapping with a list 'pairs' expected")
                rows, labels = data["pairs"], data.get("labels")
        except (yaml.YAMLError, csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"pair list {self.root} cannot be read ({type(exc).__name__}: {exc})") from None
        if labels is not None and (not isinstance(labels, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in labels.values())):
            raise DataError(f"pair list {self.root}: labels must map names to positive integers, got {labels!r}")
        seen: set[str] = set()
        out = []
        for index, row in enumerate(rows, start=1):
            where = f"pair list {self.root}, pair {index}"
            if not isinstance(row, dict):
                raise DataError(f"{where}: a mapping of {', '.join(KEYS)} expected, got {row!r}")
            unknown = sorted(k for k in set(row) - set(KEYS) if not GROUP_KEY.fullmatch(str(k)))
            if unknown:
                raise DataError(f"{where}: unknown key {', '.join(repr(k) for k in unknown)}; keys: {', '.join(KEYS)}, and by_NAME for a group attribute")
            for key in ("case_id", "fixed", "moving"):
                if not row.get(key):
                    raise DataError(f"{where}: no {key}")
            clean = {k: str(v) for k, v in row.items() if v not in (None, "")}
            check_case_id(clean["case_id"])
            if clean["case_id"] in seen:
                raise DataError(f"{where}: case id {clean['case_id']!r} listed twice")
            seen.add(clean["case_id"])
            if clean.setdefault("split", "test") not in SPLITS:
                raise DataError(f"{where}: split {clean['split']!r} is not one of {', '.join(SPLITS)}")
            for first, second in (("fixed_label", "moving_label"), ("fixed_points", "moving_points")):
                if (first in clean) != (second in clean):
                    raise DataError(f"{where}: give both {first} and {second}, or neither")
            out.append(clean)
        return out, (None if labels is None else {str(k): int(v) for k, v in labels.items()})

    def _file(self, name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.root.parent / path

    def _pair(self, row: dict[str, str]) -> Pair:
        if row["case_id"] in self._cache:
            return self._cache[row["case_id"]]
        where = f"pair {row['case_id']!r} of {self.root}"
        (fixed, spacing), (moving, moving_spacing) = (read_image(self._file(row[k])) for k in ("fixed", "moving"))
        if fixed.ndim not in (2, 3):
            raise DataError(f"{where}: {self._file(row['fixed'])} is {fixed.ndim}-D; images must be 2-D or 3-D")
        if fixed.shape != moving.shape or not np.allclose(spacing, moving_spacing, rtol=1e-4):
            raise DataError(
                f"{where}: fixed {fixed.shape} at {spacing} mm and moving {moving.shape} at {moving_spacing} mm differ: resample them to one grid first"
            )
        labels: list[np.ndarray | None] = [None, None]
        if "fixed_label" in row:
            for i, key in enumerate(("fixed_label", "moving_label")):
                label, _ = read_image(self._file(row[key]))
                if label.shape != fixed.shape:
                    raise DataError(f"{where}: label {self._file(row[key])} has shape {label.shape}, the images {fixed.shape}")
                if not np.allclose(label, np.round(label)):
                    raise DataError(f"{where}: label {self._file(row[key])} has non-integer values")
                labels[i] = np.round(label).astype(np.uint8 if label.max() < 256 else np.int32)
        points: list[np.ndarray | None] = [None, None]
        if "fixed_points" in row:
            points = [read_points(self._file(row[key]), fixed.shape) for key in ("fixed_points", "moving_points")]
            if points[0].shape != points[1].shape:  # type: ignore[union-attr]
                raise DataError(f"{where}: {self._file(row['fixed_points'])} and {self._file(row['moving_points'])} list different numbers of points")
        masks = [self._mask(row[key], fixed.shape, where) if key in row else None for key in ("fixed_mask", "moving_mask")]
        fixed_n, moving_n = normalised_pair(fixed, moving)
        pair = Pair(
            fixed_n,
            moving_n,
            labels[0],
            labels[1],
            tuple(spacing),
            row["case_id"],
            subject=row.get("subject"),
            labels=self.declared_labels(),
            groups={key[len("by_") :]: value for key, value in row.items() if GROUP_KEY.fullmatch(key)},
            fixed_points=points[0],
            moving_points=points[1],
            fixed_mask=masks[0],
            moving_mask=masks[1],
        )
        self._cache[row["case_id"]] = pair
        return pair

    def _mask(self, name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
        """A mask file as bool (its non-zero voxels), the image's shape and not empty; errors name the file."""
        mask, _ = read_image(self._file(name))
        if mask.shape != shape:
            raise DataError(f"{where}: mask {self._file(name)} has shape {mask.shape}, the images {shape}")
        if not np.any(mask):
            raise DataError(f"{where}: mask {self._file(name)} is empty (no non-zero voxel)")
        return np.asarray(mask) != 0

    def pairs(self, split: str) -> list[Pair]:
        return [self._pair(row) for row in self.rows if row["split"] == split]

    def split(self) -> dict[str, list[str]]:
        return {name: [r["case_id"] for r in self.rows if r["split"] == name] for name in SPLITS}

    def options(self) -> dict[str, Any]:
        return {"root": str(self.root)}

    def check_title(self) -> str:
        return f"files listed in {self.root}"

    def notes(self) -> list[str]:
        """What the reader left unread, one sentence each (a list names every file it reads: nothing)."""
        return []

    def check(self) -> FilesCheck:
        """Read every pair; every problem at once."""
        summary = FilesCheck(self.root, self.check_title(), pairs=len(self.rows), notes=self.notes())
        for row in self.rows:
            summary.split[row["split"]] = summary.split.get(row["split"], 0) + 1
            try:
                summary.dims.add(self._pair(row).fixed.ndim)
                summary.readable += 1
            except DataError as exc:
                summary.problems.append(str(exc))
        if len(summary.dims) > 1:
            summary.problems.append(f"the list mixes {' and '.join(f'{d}-D' for d in sorted(summary.dims))} pairs: one dimension per list")
        if not summary.split.get("test"):
            summary.problems.append("no pair in the test split: give split: test to the pairs to score")
        return summary


register_dataset("files", DatasetMeta(display_name="Files", dims=(2, 3), option_names=frozenset({"root"})))(PairedFiles)
