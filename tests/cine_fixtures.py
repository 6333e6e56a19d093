"""Small ACDC and M&M downloads in their official layouts, written by the tests (no real data committed).

Every subject has a heart of LV (disk), Myo (ring) and RV (crescent) on 4 slices of 96×80 pixels (smaller
than the 128 crop, so it is padded); the apical slice has no RV. Between ED and ES the LV is unchanged and the
RV moves by 3 pixels, so with the labels mapped correctly Initial has dice_lv = 1 and dice_rv < 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

SHAPE = (96, 80, 4)
SPACING = (1.5, 1.4, 8.0)
ACDC_LABELS = {"lv": 3, "myo": 2, "rv": 1}
MNM_LABELS = {"lv": 1, "myo": 2, "rv": 3}
MNM_CSV = "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"


def heart(rv_shift: int, labels: dict[str, int], centre: tuple[int, int] = (48, 44)) -> np.ndarray:
    r, c = np.mgrid[: SHAPE[0], : SHAPE[1]]
    out = np.zeros(SHAPE, np.uint8)
    dist = np.hypot(r - centre[0], c - centre[1])
    for z in range(SHAPE[2]):
        rv = (np.hypot(r - centre[0], c - (centre[1] - 20 + rv_shift)) < 14) & (dist >= 16)
        if z < SHAPE[2] - 1:  # no RV at the apex
            out[..., z][rv] = labels["rv"]
        out[..., z][(dist >= 11) & (dist < 16)] = labels["myo"]
        out[..., z][dist < 11] = labels["lv"]
    return out


def image_of(label: np.ndarray, labels: dict[str, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = {labels["lv"]: 900.0, labels["myo"]: 300.0, labels["rv"]: 700.0}
    img = np.full(label.shape, 150.0, np.float32)
    for value, intensity in values.items():
        img[label == value] = intensity
    return img + rng.normal(0, 20, label.shape).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(SPACING + ((1.0,) if data.ndim == 4 else ()))
    nib.save(img, str(path))


def make_acdc(root: Path, n: int = 5, labels: dict[str, int] = ACDC_LABELS, groups: Sequence[str] = ("NOR",)) -> Path:
    """``n`` patients; patient i's Info.cfg Group is groups[(i - 1) % len(groups)]."""
    for i in range(1, n + 1):
        name = f"patient{i:03d}"
        folder = root / ("training" if i <= n - 1 else "testing") / name
        folder.mkdir(parents=True)
        group = groups[(i - 1) % len(groups)]
        (folder / "Info.cfg").write_text(f"ED: 1\nES: 10\nGroup: {group}\nHeight: 180.0\nNbFrame: 30\nWeight: 80.0\n")
        for frame, shift in ((1, 0), (10, 3)):
            label = heart(shift, labels)
            save_nifti(folder / f"{name}_frame{frame:02d}_gt.nii.gz", label)
            save_nifti(folder / f"{name}_frame{frame:02d}.nii.gz", image_of(label, labels, seed=i * 100 + frame))
    return root


def make_mnm(root: Path, n: int = 5, frames: int = 12, ed: int = 0, es: int = 9) -> Path:
    codes = [f"A{i}B{i}C{i}" for i in range(n)]
    rows = ["External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight"]
    for k, code in enumerate(codes):
        subset = "Training/Labeled" if k < n - 2 else ("Validation" if k == n - 2 else "Testing")
        folder = root / subset / code
        image = np.zeros(SHAPE + (frames,), np.float32)
        label = np.zeros(SHAPE + (frames,), np.uint8)
        for t in range(frames):
            shift = 3 if t == es else 0
            image[..., t] = image_of(heart(shift, MNM_LABELS), MNM_LABELS, seed=k * 100 + t)
        label[..., ed] = heart(0, MNM_LABELS)
        label[..., es] = heart(3, MNM_LABELS)
        save_nifti(folder / f"{code}_sa.nii.gz", image)
        save_nifti(folder / f"{code}_sa_gt.nii.gz", label)
        rows.append(f"{code},Siemens,A,{1 + k % 2},{ed},{es},60,NOR,M,175,80")
    (root / "Training" / "Unlabeled" / "X9Y9Z9").mkdir(parents=True)  # unlabelled: never used
    (root / MNM_CSV).write_text("\n".join(rows) + "\n")
    return root
