"""``learn2reg``: a Learn2Reg task folder as released (``--root`` the folder or its ``{TASK}_dataset.json``).

What is read, and the choices made where the task says nothing (``../docs/datasets.md`` has the same list):

- ``{TASK}_dataset.json``: ``training`` (entries with ``image`` and optional ``label``, ``mask``, ``keypoints``,
  ``landmarks``), the scored pairs ``registration_val`` (or the later schema's ``validation_paired`` /
  ``validation``) and ``registration_test`` (or ``test_paired``): lists of ``{fixed, moving}`` paths relative to
  the task folder; ``labels`` (value → name; ``0``/background left out; none declared: the values found in the
  label files, named by value); ``pairings`` (``paired``: the time points of one case are registered to each
  other; else unpaired).
- Image names ``TASK_CCCC_MMMM.nii.gz`` (CCCC the case, MMMM the time point or modality). A pair's case id is
  ``CCCC_MMMM_CCCC_MMMM`` (fixed, then moving): the long name Learn2Reg's submissions use, so the fields of a
  submission read as ``fields.<tag>`` with ``pattern: disp_{case_id}.nii.gz``. Its subject is the fixed case.
- Per image: the label map, keypoints and landmarks named by the ``training`` entry, else found beside it by
  the kit's rule (``imagesTr`` → ``labelsTr``, ``keypointsTr``, ``landmarksTr``, ``.csv`` for points). Points are
  voxel indices (i, j, k) of the nibabel-read image; landmarks are preferred to keypoints (``points`` option:
  ``auto``, ``landmarks``, ``keypoints`` or ``none``). A pair is scored on labels (or points) only when both of
  its images have them; a pair with neither is scored by TRE where it has points, else by its images and
  folding alone. Masks (the entry's ``mask``, else ``masksTr``) are read where they exist: NDA/NDV under
  ``ndv_mask: fixed`` / ``moving`` is taken over them.
- Splits: ``test`` is the scored list chosen by ``scored`` (``val``, default: ``registration_val``, whose labels
  are released; ``test``: ``registration_test``, when you hold its images). Training pairs come from the
  ``training`` images that no scored pair uses (no scored image is ever trained on): ``paired`` tasks pair each
  case's first time point (fixed) with each later one; unpaired tasks pair consecutive cases of one modality
  (sorted by name, fixed then moving). The last tenth of them (at least one when there are two or more) is
  ``val``, the rest ``train``.

Intensities, spacing, shapes and every error are the ``files`` dataset's (:mod:`regbench.datasets.files`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..interface import FILE_NAME_KEYS, Pair
from ..learn2reg import KIT_MASKED
from ..registry import DatasetMeta, register_dataset
from .files import PairedFiles

SCORED_KEYS = {"val": ("registration_val", "validation_paired", "validation"), "test": ("registration_test", "test_paired")}
POINT_KINDS = {"auto": ("landmarks", "keypoints"), "landmarks": ("landmarks",), "keypoints": ("keypoints",), "none": ()}
NAME = re.compile(r"_(\d{4})_(\d{4})\.nii(\.gz)?$")
VAL_FRACTION = 10  # one training pair in ten validates
EVALUATION_SPLIT = {"val": "VAL", "test": "TEST"}  # the kit's evaluation config names
POINT_KEY = re.compile(r"(keypoints|landmarks)(\d\d)?")
POINT_FOLDER = re.compile(r"(keypoints|landmarks)(\d\d)?T[rs]")


def _point_keys(entries: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {key for entry in entries.values() for key in entry if POINT_KEY.fullmatch(key)}


def image_key(path: str) -> tuple[str, str]:
    """(case, time point) of a Learn2Reg image name ``TASK_CCCC_MMMM.nii.gz``."""
    match = NAME.search(path)
    if match is None:
        raise DataError(f"image {path!r} is not named TASK_CCCC_MMMM.nii.gz (Learn2Reg's names: case and time point, four digits each)")
    return match.group(1), match.group(2)


def pair_id(fixed: str, moving: str) -> str:
    """The long Learn2Reg name of a pair, ``CCCC_MMMM_CCCC_MMMM`` (fixed, then moving)."""
    return "_".join((*image_key(fixed), *image_key(moving)))


def task_json(root: Path) -> Path:
    """The task's ``{TASK}_dataset.json``: ``root`` itself, or the one such file in the folder ``root``."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(f"Learn2Reg task {root} does not exist (give the task folder or its TASK_dataset.json)")
    found = sorted(root.glob("*_dataset.json"))
    if len(found) != 1:
        named = f": {', '.join(p.name for p in found)}" if found else ""
        raise DataError(f"Learn2Reg task folder {root} holds {len(found)} *_dataset.json files{named}; give --root the one to read")
    return found[0]


def find_evaluation_config(folder: Path, scored: str, given: str | Path | None) -> Path | None:
    """The kit's evaluation config of the scored pairs (``{TASK}_VAL_evaluation_config.json`` for ``val``, ``_TEST_``
    for ``test``): ``given``, else the one such file in the task folder, else None."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise DataError(f"learn2reg option evaluation_config: {path} does not exist (the kit's TASK_{EVALUATION_SPLIT[scored]}_evaluation_config.json)")
        return path
    found = sorted(folder.glob(f"*_{EVALUATION_SPLIT[scored]}_evaluation_config.json"))
    if len(found) > 1:
        raise DataError(f"Learn2Reg task folder {folder} holds {len(found)} evaluation configs ({', '.join(p.name for p in found)}); give evaluation_config")
    return found[0] if found else None


def masked_rule(config: Path | None, masked: bool | None) -> tuple[bool, str]:
    """Whether the kit's SDlogJ is taken inside the fixed image's mask, and what says so: the ``masked`` option,
    else the evaluation config's ``masked_evaluation`` (absent: false, as the kit reads it), else unmasked (the
    released dataset JSON does not say; OASIS has masks and is evaluated unmasked)."""
    if masked is not None:
        return masked, "the masked option"
    if config is None:
        return False, "no evaluation config: the kit's default"
    try:
        value = json.loads(config.read_text()).get("masked_evaluation", False)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise DataError(f"Learn2Reg evaluation config {config} cannot be read ({type(exc).__name__}: {exc})") from None
    return bool(value), f"{config.name}'s masked_evaluation"


class Learn2RegTask(PairedFiles):
    """The pairs of a Learn2Reg task folder (see the module docstring)."""

    def __init__(
        self, root: str | Path | None = None, scored: str = "val", points: str = "auto", masked: bool | None = None, evaluation_config: str | Path | None = None
    ) -> None:
        if root is None:
            raise DataError("dataset 'learn2reg' needs --root TASK_FOLDER (the folder holding TASK_dataset.json)")
        if scored not in SCORED_KEYS:
            raise DataError(f"learn2reg option scored={scored!r}: use one of {', '.join(SCORED_KEYS)}")
        if points not in POINT_KINDS:
            raise DataError(f"learn2reg option points={points!r}: use one of {', '.join(POINT_KINDS)}")
        if masked is not None and not isinstance(masked, bool):
            raise DataError(f"learn2reg option masked={masked!r}: use true or false (leave it out to follow the task's evaluation config)")
        self.scored, self.points = scored, points
        path = task_json(Path(root).expanduser())
        self.evaluation_config = find_evaluation_config(path.parent, scored, evaluation_config)
        self.masked, self.masked_from = masked_rule(self.evaluation_config, masked)
        super().__init__(path)

    def _read_list(self) -> tuple[list[dict[str, str]], dict[str, int] | None]:
        try:
            task = json.loads(self.root.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"Learn2Reg task file {self.root} cannot be read ({type(exc).__name__}: {exc})") from None
        if not isinstance(task, dict):
            raise DataError(f"Learn2Reg task file {self.root}: a JSON object expected")
        self.task_name = str(task.get("name") or self.root.name.removesuffix("_dataset.json"))
        entries = {self._norm(e["image"]): e for e in task.get("training", []) if isinstance(e, dict) and "image" in e}
        key = next((k for k in SCORED_KEYS[self.scored] if task.get(k)), None)
        if key is None:
            raise DataError(f"Learn2Reg task file {self.root} lists no {self.scored} pairs (looked for {', '.join(SCORED_KEYS[self.scored])})")
        scored = []
        for index, entry in enumerate(task[key], start=1):
            if not isinstance(entry, dict) or not entry.get("fixed") or not entry.get("moving"):
                raise DataError(f"Learn2Reg task file {self.root}, {key}[{index}]: a mapping with fixed and moving expected, got {entry!r}")
            scored.append((self._norm(entry["fixed"]), self._norm(entry["moving"])))
        used = {image for pair in scored for image in pair}
        training = self._training_pairs(sorted(set(entries) - used), str(task.get("pairings", "")).lower() == "paired")
        n_val = max(1, len(training) // VAL_FRACTION) if len(training) >= 2 else 0
        splits = ["train"] * (len(training) - n_val) + ["val"] * n_val
        self._missing_masks: dict[str, list[str]] = {}  # mask file named by the JSON but absent -> the pairs it was for
        rows = [self._row(f, m, "test", entries) for f, m in scored] + [self._row(f, m, s, entries) for (f, m), s in zip(training, splits)]
        self._notes = self._unread(rows, entries)
        return rows, self._labels(task.get("labels"))

    def _unread(self, rows: list[dict[str, str]], entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """What the task holds that this reader leaves unread, one sentence each: training-entry keys it does not
        know, and scored pairs without points where the task has point files (they get no TRE)."""
        notes = []
        if self._missing_masks:
            first, cases = next(iter(self._missing_masks.items()))
            notes.append(
                f"{len(self._missing_masks)} mask file(s) the task names do not exist (e.g. {first}, for {cases[0]}): those images have "
                "no mask, as the kit evaluates them (unmasked, with a warning)"
            )
        unmasked = [row["case_id"] for row in rows if row["split"] == "test" and "fixed_mask" not in row]
        if self.masked and unmasked:
            notes.append(
                f"the kit's SDlogJ is masked ({self.masked_from}), but {len(unmasked)} scored pair(s) have no fixed mask (e.g. {unmasked[0]}): "
                "theirs is taken over the whole field, as the kit's"
            )
        unknown = sorted({key for entry in entries.values() for key in entry} - {"image", "label", "mask"} - {k for k in _point_keys(entries)})
        if unknown:
            notes.append(
                f"{self.root}: training entries carry {', '.join(map(repr, unknown))}, which regbench does not read (it reads image, label, mask, keypoints[AB], landmarks)"
            )
        folders = sorted(p.name for p in self.root.parent.iterdir() if p.is_dir() and POINT_FOLDER.fullmatch(p.name))
        if self.points == "none" or not (folders or _point_keys(entries)):
            return notes
        scored = [row for row in rows if row["split"] == "test"]
        bare = [row for row in scored if "fixed_points" not in row]
        if bare:
            example = bare[0]
            looked = [f"{self.point_kind(kind, example['fixed'], example['moving'])}Tr" for kind in POINT_KINDS[self.points]]
            notes.append(
                f"{len(bare)} of {len(scored)} scored pairs have no points by the kit's rule (e.g. {example['case_id']}: looked in "
                f"{' and '.join(looked)} for both images; the task has {', '.join(folders) or 'point entries'}): they get no TRE"
            )
        return notes

    def notes(self) -> list[str]:
        return list(self._notes)

    @staticmethod
    def _norm(path: str) -> str:
        return str(path).removeprefix("./")

    @staticmethod
    def _training_pairs(images: list[str], paired: bool) -> list[tuple[str, str]]:
        by_case: dict[str, list[str]] = {}
        by_modality: dict[str, list[str]] = {}
        for image in images:
            case, point = image_key(image)
            by_case.setdefault(case, []).append(image)
            by_modality.setdefault(point, []).append(image)
        if paired:
            return [(min(group), other) for group in by_case.values() for other in sorted(group)[1:]]
        return [(a, b) for group in by_modality.values() for a, b in zip(group, group[1:])]

    def _found(self, image: str, entry: Mapping[str, Any], kind: str, folder: str, suffix: str) -> str | None:
        """The file of ``kind`` for ``image``: the training entry's, else beside it by the kit's folder rule. A
        point file is a ``.csv`` whatever the entry says (ThoraxCBCT's entries name ``.nii.gz``; the kit reads
        the ``.csv``)."""
        if entry.get(kind):
            named = self._norm(entry[kind])
            return re.sub(r"\.nii(\.gz)?$", suffix, named) if suffix else named
        guess = image.replace("images", folder, 1)
        guess = re.sub(r"\.nii(\.gz)?$", suffix, guess) if suffix else guess
        return guess if (self.root.parent / guess).is_file() else None

    @staticmethod
    def point_kind(kind: str, fixed: str, moving: str) -> str:
        """The kit's name for a pair's points of ``kind``: keypoints of two time points A ≠ B found by matching
        the images are ``keypointsAB`` (``keypoints01Tr/``, the training entries' ``keypoints01``; A < B as
        numbers), except fixed 0000 with moving 0001, which like equal time points reads ``keypoints``
        (evaluation.py's rule). Landmarks are one set per image: ``landmarks``."""
        (_, a), (_, b) = image_key(fixed), image_key(moving)
        if kind != "keypoints" or a == b or (a, b) == ("0000", "0001"):
            return kind
        low, high = sorted((int(a), int(b)))
        return f"{kind}{low}{high}"

    def _row(self, fixed: str, moving: str, split: str, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        row = {"case_id": pair_id(fixed, moving), "fixed": fixed, "moving": moving, "subject": image_key(fixed)[0], "split": split}
        labels = [self._found(image, entries.get(image, {}), "label", "labels", "") for image in (fixed, moving)]
        if all(labels):
            row.update(fixed_label=str(labels[0]), moving_label=str(labels[1]))
        for image, key in ((fixed, "fixed_mask"), (moving, "moving_mask")):
            mask = self._found(image, entries.get(image, {}), "mask", "masks", "")
            if mask and not (self.root.parent / mask).is_file():  # named by the JSON, not there: the kit warns and goes on unmasked
                self._missing_masks.setdefault(mask, []).append(row["case_id"])
            elif mask:
                row[key] = str(mask)
        for kind in POINT_KINDS[self.points]:
            named = self.point_kind(kind, fixed, moving)
            points = [self._found(image, entries.get(image, {}), named, named, ".csv") for image in (fixed, moving)]
            if all(points):
                row.update(fixed_points=str(points[0]), moving_points=str(points[1]))
                break
        return row

    def _labels(self, declared: Any) -> dict[str, int] | None:
        if not declared:
            return None  # the values in the label files, named by value
        if not isinstance(declared, dict):
            raise DataError(f"Learn2Reg task file {self.root}: labels must map values to names, got {declared!r}")
        labels: dict[str, int] = {}
        for value, name in declared.items():
            try:
                number = int(value)
            except ValueError:
                raise DataError(f"Learn2Reg task file {self.root}: label value {value!r} is not an integer") from None
            if number > 0 and str(name).lower() != "background":
                labels[str(name) if str(name) not in labels else f"{name}_{number}"] = number
        return labels or None

    def _pair(self, row: dict[str, str]) -> Pair:
        """The files dataset's pair, with the names a field file pattern may use (:data:`FILE_NAME_KEYS`): the kit's
        short names ``disp_{fixed_case}_{moving_case}`` beside the long ``disp_{case_id}``."""
        pair = super()._pair(row)
        (fixed_case, fixed_time), (moving_case, moving_time) = image_key(row["fixed"]), image_key(row["moving"])
        pair.meta[FILE_NAME_KEYS] = {"fixed_case": fixed_case, "fixed_time": fixed_time, "moving_case": moving_case, "moving_time": moving_time}
        if self.masked and row["split"] == "test":
            pair.meta[KIT_MASKED] = True  # the kit's SDlogJ over the fixed mask, where the pair has one
        return pair

    def options(self) -> dict[str, Any]:
        """Bound into the run: the task, what is scored, and the kit's SDlogJ rule with what decided it."""
        return {
            "root": str(self.root),
            "task": self.task_name,
            "scored": self.scored,
            "points": self.points,
            "masked_evaluation": self.masked,
            "masked_from": self.masked_from,
            "evaluation_config": None if self.evaluation_config is None else str(self.evaluation_config),
        }

    def check_title(self) -> str:
        return f"Learn2Reg task {self.task_name} ({self.root}; scored: {self.scored})"


register_dataset(
    "learn2reg",
    DatasetMeta(
        display_name="Learn2Reg", dims=(3,), option_names=frozenset({"root", "scored", "points", "masked", "evaluation_config"}), conventions=("learn2reg",)
    ),
)(Learn2RegTask)
