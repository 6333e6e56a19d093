"""A Learn2Reg-layout task written by the tests: small 3-D volumes with labels and keypoints, a paired task.

Six cases (by default) with two time points each (``T_CCCC_0000`` fixed, ``T_CCCC_0001`` moving); the last two
(0005 and 0006) are the ``registration_val`` pairs. Every moving image, label and point set is its fixed one shifted by SHIFT voxels along
array axis 1, so the pull field u = +SHIFT along axis 1 aligns every pair exactly (away from the wrapped border)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHIFT = 2
SHAPE = (12, 16, 10)
SPACING = (1.5, 1.0, 2.0)
LABELS = {"0": "background", "1": "outer", "2": "inner"}


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random(SHAPE).astype(np.float32) * 0.2
    label = np.zeros(SHAPE, np.uint8)
    centre = np.array(SHAPE) // 2 + rng.integers(-1, 2, 3)
    label[tuple(slice(c - 3, c + 3) for c in centre)] = 1
    label[tuple(slice(c - 1, c + 2) for c in centre)] = 2
    image[label > 0] += 0.4 + 0.2 * label[label > 0]
    points = np.array([centre, centre + [2, -3, 1], centre + [-3, 2, -2]], np.float64)
    return image, label, points


def _nifti(path: Path, array: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.diag([*SPACING, 1.0])), str(path))


def write_task(root: Path, name: str = "T", cases: int = 6, scored: int = 2) -> Path:
    """The task folder ``root`` (created): ``{name}_dataset.json``, imagesTr, labelsTr, keypointsTr; ``cases``
    cases, the last ``scored`` of them the registration_val pairs."""
    for folder in ("imagesTr", "labelsTr", "keypointsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    training = []
    for number in range(1, cases + 1):
        case = f"{number:04d}"
        image, label, points = _case(number)
        for point, (img, lab, pts) in (
            ("0000", (image, label, points)),
            ("0001", (np.roll(image, SHIFT, axis=1), np.roll(label, SHIFT, axis=1), points + [0, SHIFT, 0])),
        ):
            stem = f"{name}_{case}_{point}"
            _nifti(root / "imagesTr" / f"{stem}.nii.gz", img)
            _nifti(root / "labelsTr" / f"{stem}.nii.gz", lab)
            (root / "keypointsTr" / f"{stem}.csv").write_text("\n".join(",".join(f"{c:g}" for c in p) for p in pts) + "\n")
            training.append({"image": f"./imagesTr/{stem}.nii.gz", "label": f"./labelsTr/{stem}.nii.gz", "keypoints": f"./keypointsTr/{stem}.csv"})
    task = {
        "name": name,
        "labels": LABELS,
        "pairings": "paired",
        "tensorImageShape": {"0": list(SHAPE)},
        "training": training,
        "registration_val": [
            {"fixed": f"./imagesTr/{name}_{c}_0000.nii.gz", "moving": f"./imagesTr/{name}_{c}_0001.nii.gz"}
            for c in (f"{n:04d}" for n in range(cases - scored + 1, cases + 1))
        ],
        "registration_test": [],
    }
    (root / f"{name}_dataset.json").write_text(json.dumps(task, indent=2))
    return root


def shift_field(kit_layout: bool = True) -> np.ndarray:
    """The known transform's pull field: +SHIFT voxels along axis 1; Learn2Reg's layout (D, H, W, 3) or regbench's."""
    flow = np.zeros((3, *SHAPE), np.float32)
    flow[1] = SHIFT
    return np.moveaxis(flow, 0, -1) if kit_layout else flow


def write_fields(folder: Path, flows: dict[str, np.ndarray]) -> Path:
    """``disp_{case_id}.nii.gz`` per pair (Learn2Reg's long names, channel last, voxels)."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    for case_id, flow in flows.items():
        nib.save(nib.Nifti1Image(np.asarray(flow, np.float32), np.eye(4)), str(folder / f"disp_{case_id}.nii.gz"))
    return folder
