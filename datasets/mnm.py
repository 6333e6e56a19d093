"""``mnm``: the M&Ms-1 challenge download as distributed, labelled cases only.

Layout: ``ROOT/Training/Labeled/<CODE>/``, ``ROOT/Validation/<CODE>/`` and ``ROOT/Testing/<CODE>/`` with
``<CODE>_sa.nii.gz`` (4-D cine: rows, columns, slices, time) and ``<CODE>_sa_gt.nii.gz`` (4-D, labelled at
ED and ES); cases without ``_sa_gt`` (``Training/Unlabeled``) are not used. The metadata CSV at the root
(``211230_M&Ms_Dataset_information_diagnosis_opendataset.csv``, or the older
``201014_M&Ms_Dataset_Information_-_opendataset.csv``) gives ED and ES as **0-based** time indices, and the
vendor and centre kept as case metadata. M&M labels are 1 LV, 2 Myo, 3 RV: the reverse of the common
convention, mapped here. Preparation, split and cache: :mod:`regbench.datasets.cine`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..registry import DatasetMeta, register_dataset
from .cine import CineCase, CineDataset, check_case, iterate_dirs, read_nifti, relabel
from .labels import CARDIAC_LABELS

LABELS = {1: 3, 2: 2, 3: 1}  # M&M (1 LV, 2 Myo, 3 RV) → common (3 LV, 2 Myo, 1 RV)
CSV_NAMES = ("211230_M&Ms_Dataset_information_diagnosis_opendataset.csv", "201014_M&Ms_Dataset_Information_-_opendataset.csv")
SUBSETS = ("Training/Labeled", "Validation", "Testing")
META_COLUMNS = {"VendorName": "vendor_name", "Vendor": "vendor", "Centre": "centre", "Pathology": "pathology"}


@register_dataset("mnm", DatasetMeta(display_name="M&M", labels=CARDIAC_LABELS))
class MnM(CineDataset):
    """M&Ms-1 (Campello et al., 2021): labelled cases from four vendors and six centres. Root: --root or $REGBENCH_MNM_ROOT."""

    name = "mnm"
    env_var = "REGBENCH_MNM_ROOT"
    group_keys = ("vendor", "centre", "pathology")  # from the metadata CSV (Pathology only in its 2021 version)

    @cached_property
    def metadata(self) -> tuple[Path, dict[str, dict[str, str]]]:
        import pandas as pd

        path = next((self.root / n for n in CSV_NAMES if (self.root / n).exists()), None)
        if path is None:
            raise DataError(f"{self.root}: the M&M metadata CSV is missing (expected {CSV_NAMES[0]!r} or {CSV_NAMES[1]!r})")
        try:
            table = pd.read_csv(path, dtype=str)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the metadata CSV ({type(exc).__name__}: {exc})") from None
        table.columns = [c.strip() for c in table.columns]
        missing = [c for c in ("External code", "ED", "ES") if c not in table]
        if missing:
            raise DataError(f"{path}: column(s) {missing} missing")
        return path, {str(r["External code"]).strip(): r for r in table.to_dict("records")}

    @cached_property
    def _folders(self) -> dict[str, Path]:
        folders = {}
        for subset in SUBSETS:
            for folder in iterate_dirs(self.root / subset, lambda p: (p / f"{p.name}_sa_gt.nii.gz").exists()):
                folders[folder.name] = folder
        if not folders:
            raise DataError(f"{self.root}: no labelled M&M cases (expected Training/Labeled/<CODE>/<CODE>_sa_gt.nii.gz ...)")
        return folders

    def case_ids(self) -> list[str]:
        return list(self._folders)

    def load_case(self, subject: str) -> CineCase:
        folder = self._folders[subject]
        csv_path, rows = self.metadata
        if subject not in rows:
            raise DataError(f"{csv_path}: case code {subject!r} (folder {folder}) is not in the metadata CSV")
        row = rows[subject]
        image_path, label_path = folder / f"{subject}_sa.nii.gz", folder / f"{subject}_sa_gt.nii.gz"
        image, zooms = read_nifti(image_path, 4, "4-D cine image")
        label, _ = read_nifti(label_path, 4, "4-D label")
        if image.shape != label.shape:
            raise DataError(f"{label_path}: label shape {label.shape} differs from image shape {image.shape} ({image_path})")
        frames = {}
        for key in ("ED", "ES"):
            value = str(row.get(key, "")).strip()
            if not value.lstrip("-").isdigit():
                raise DataError(f"{csv_path}: {key} of {subject!r} must be a time index, got {value!r}")
            frames[key] = int(value)
            if not 0 <= frames[key] < image.shape[3]:
                raise DataError(f"{csv_path}: {key} = {frames[key]} of {subject!r} is outside the time range 0..{image.shape[3] - 1} of {image_path}")
        files = {"ed_image": image_path, "es_image": image_path, "ed_label": label_path, "es_label": label_path}
        case = CineCase(
            subject,
            np.ascontiguousarray(image[..., frames["ED"]]),
            np.ascontiguousarray(image[..., frames["ES"]]),
            np.ascontiguousarray(label[..., frames["ED"]]),
            np.ascontiguousarray(label[..., frames["ES"]]),
            (zooms[0], zooms[1]),
            meta={m: str(row[c]).strip() for c, m in META_COLUMNS.items() if c in row} | {"subset": str(folder.parent.relative_to(self.root))},
            slice_mm=zooms[2],
        )
        check_case(case, files)
        case.ed_label, case.es_label = relabel(case.ed_label, LABELS), relabel(case.es_label, LABELS)
        return case


@register_dataset("mnm3d", DatasetMeta(display_name="M&M 3-D", labels=CARDIAC_LABELS, dims=(3,)))
class MnM3D(MnM):
    """M&M as volumes: one ES→ED pair per subject, every slice of the stack cropped in-plane as ``mnm``'s slices
    and centred in ``depth`` slices (default 16; the rule: :meth:`regbench.datasets.cine.Preparation._volume`),
    recorded in the manifest and cached apart from the slices."""

    name = "mnm3d"

    def __init__(self, root: str | Path | None = None, depth: int = 16, **options: Any) -> None:
        super().__init__(root, depth=depth, **options)
