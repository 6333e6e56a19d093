"""``acdc``: the ACDC challenge download as distributed (``training/``, and ``testing/`` when present).

Layout: ``ROOT/training/patientNNN/`` (lower case, three digits; other folders there are skipped, and
``data check`` names each) with ``Info.cfg`` (``Key: value`` lines, ``Key = value`` read alike; ED and ES are
1-based frame numbers matching the file names, NbFrame the number of frames) and ``patientNNN_frameYY.nii.gz`` +
``patientNNN_frameYY_gt.nii.gz`` (3-D: rows, columns, slices) for the ED and ES frames. Labels are already
the common convention (1 RV, 2 Myo, 3 LV). Group, Height and Weight are kept as case metadata. Preparation,
split and cache: :mod:`regbench.datasets.cine`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..registry import DatasetMeta, register_dataset
from .cine import CineCase, CineDataset, check_case, iterate_dirs, read_nifti, relabel
from .labels import CARDIAC_LABELS

LABELS = {1: 1, 2: 2, 3: 3}  # ACDC → common: identical (RV 1, Myo 2, LV 3)
SUBSETS = ("training", "testing")
PATIENT_FOLDER = re.compile(r"patient\d{3}")


def read_info(path: Path) -> dict[str, str]:
    """``Info.cfg`` as a dict; DataError naming the file if it is missing or lacks ED or ES."""
    if not path.exists():
        raise DataError(f"{path} is missing (every ACDC patient folder has one, with the ED and ES frame numbers)")
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        separator = next((s for s in (":", "=") if s in line), None)  # ACDC writes "ED: 1"; converted copies "ED = 1"
        if separator is not None:
            key, value = line.split(separator, 1)
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if key not in info:
            raise DataError(f"{path}: key {key!r} is missing (lines 'ED: 1' and 'ES: 10', 1-based frame numbers)")
        if not info[key].isdigit():
            raise DataError(f"{path}: {key} must be a frame number, got {info[key]!r}")
    return info


@register_dataset("acdc", DatasetMeta(display_name="ACDC", labels=CARDIAC_LABELS))
class ACDC(CineDataset):
    """ACDC (Bernard et al., 2018): 150 subjects, ED/ES frames labelled. Root: --root or $REGBENCH_ACDC_ROOT."""

    name = "acdc"
    env_var = "REGBENCH_ACDC_ROOT"
    group_keys = ("group",)  # Info.cfg's Group: the pathology (NOR, MINF, DCM, HCM, RV)

    @cached_property
    def _folders(self) -> dict[str, Path]:
        folders = {p.name: p for subset in SUBSETS for p in iterate_dirs(self.root / subset, lambda p: PATIENT_FOLDER.fullmatch(p.name) is not None)}
        if not folders:
            raise DataError(f"{self.root}: no ACDC patient folders under training/ or testing/ (expected training/patient001/ ...)")
        return folders

    def case_ids(self) -> list[str]:
        return list(self._folders)

    def skipped_entries(self) -> list[str]:
        """Folders under training/ and testing/ that are not ``patientNNN``: not read (``Patient002``, ``patient2``)."""
        return [
            f"{p}: not a patientNNN folder (lower case, three digits): skipped"
            for subset in SUBSETS
            for p in iterate_dirs(self.root / subset, lambda p: PATIENT_FOLDER.fullmatch(p.name) is None)
        ]

    def load_case(self, subject: str) -> CineCase:
        folder = self._folders[subject]
        info = read_info(folder / "Info.cfg")
        frames = {}
        for key in ("ED", "ES"):
            number = int(info[key])
            if "NbFrame" in info and info["NbFrame"].isdigit() and not 1 <= number <= int(info["NbFrame"]):
                raise DataError(f"{folder / 'Info.cfg'}: {key} = {number} is outside the frames 1..{info['NbFrame']}")
            frames[key] = number
        files = {}
        for frame, key in (("ed", "ED"), ("es", "ES")):
            stem = f"{subject}_frame{frames[key]:02d}"
            files[f"{frame}_image"], files[f"{frame}_label"] = folder / f"{stem}.nii.gz", folder / f"{stem}_gt.nii.gz"
        volumes = {}
        for name, path in files.items():
            volumes[name], zooms = read_nifti(path, 3, name.replace("_", " ") + " (3-D)")
            if name == "ed_image":
                spacing, slice_mm = (zooms[0], zooms[1]), zooms[2]
        case = CineCase(
            subject,
            volumes["ed_image"],
            volumes["es_image"],
            volumes["ed_label"],
            volumes["es_label"],
            spacing,
            meta={k.lower(): info[k] for k in ("Group", "Height", "Weight") if k in info} | {"subset": folder.parent.name},
            slice_mm=slice_mm,
        )
        check_case(case, files)
        case.ed_label, case.es_label = relabel(case.ed_label, LABELS), relabel(case.es_label, LABELS)
        return case


@register_dataset("acdc3d", DatasetMeta(display_name="ACDC 3-D", labels=CARDIAC_LABELS, dims=(3,)))
class ACDC3D(ACDC):
    """ACDC as volumes: one ES→ED pair per subject, every slice of the stack cropped in-plane as ``acdc``'s slices
    and centred in ``depth`` slices (default 16; the rule: :meth:`regbench.datasets.cine.Preparation._volume`),
    recorded in the manifest and cached apart from the slices."""

    name = "acdc3d"

    def __init__(self, root: str | Path | None = None, depth: int = 16, **options: Any) -> None:
        super().__init__(root, depth=depth, **options)
