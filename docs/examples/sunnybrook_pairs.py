"""Sunnybrook cine slices with expert LV contours at ED and ES as a regbench ``files`` list (ES moving, ED fixed).

Reads the layout of the Sunnybrook subset in the public repository kwu93/image-segmentation (``final_data/``):
``link.csv`` (patient_id,original_id), ``dicoms/PATIENT/N.dcm`` and
``contourfiles/ORIGINAL/i-contours/IM-0001-NNNN-icontour-manual.txt`` (x y per line, in pixels). A slice is kept
where two images of one slice location have an inner contour: the larger LV is ED. Each patient's pairs are
cropped to 128 x 128 around its ED labels and scaled to [0, 1] by the patient's 1st and 99th percentiles.

    python docs/examples/sunnybrook_pairs.py final_data pairs/
    regbench run --dataset files --root pairs/pairs.yaml --methods initial,demons,syn --jobs 2
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml
from skimage.draw import polygon

CROP = 128


def slices(root: Path, patient: str, original: str) -> list[list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]]:
    """Per slice location with two contoured images: [(LV area, image number, image, label, spacing in array
    order)] sorted by area."""
    by_location = defaultdict(list)
    for contour in sorted((root / "contourfiles" / original / "i-contours").glob("IM-0001-*-icontour-manual.txt")):
        number = int(contour.name.split("-")[2])
        itk = sitk.ReadImage(str(root / "dicoms" / patient / f"{number}.dcm"))
        image = sitk.GetArrayFromImage(itk)[0].astype(np.float32)
        points = np.loadtxt(contour)
        label = np.zeros(image.shape, np.uint8)
        label[polygon(points[:, 1], points[:, 0], image.shape)] = 1
        spacing = np.array(itk.GetSpacing()[1::-1], np.float32)  # SimpleITK's (x, y) to rows, columns
        by_location[float(itk.GetMetaData("0020|1041"))].append((int(label.sum()), number, image, label, spacing))
    return [sorted(v, key=lambda t: t[0]) for v in by_location.values() if len(v) == 2]


def main(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(root / "link.csv") as f:
        patients = [(row["patient_id"], row["original_id"]) for row in csv.DictReader(f)]
    entries = []
    for patient, original in patients:
        pairs = slices(root, patient, original)
        if not pairs:
            continue
        low, high = np.percentile(np.concatenate([t[2].ravel() for pair in pairs for t in pair]), (1, 99))
        rows, cols = np.nonzero(np.any([pair[1][3] for pair in pairs], axis=0))
        top = int(np.clip((rows.min() + rows.max()) // 2 - CROP // 2, 0, pairs[0][0][2].shape[0] - CROP))
        left = int(np.clip((cols.min() + cols.max()) // 2 - CROP // 2, 0, pairs[0][0][2].shape[1] - CROP))
        crop = np.s_[top : top + CROP, left : left + CROP]
        for es, ed in pairs:
            case = f"{patient}_ed{ed[1]:03d}_es{es[1]:03d}"
            for phase, (_, _, image, label, spacing) in (("ed", ed), ("es", es)):
                np.savez(out / f"{case}_{phase}.npz", image=np.clip((image[crop] - low) / (high - low), 0, 1), spacing=spacing)
                np.savez(out / f"{case}_{phase}_gt.npz", image=label[crop], spacing=spacing)
            entries.append(
                {"case_id": case, "fixed": f"{case}_ed.npz", "moving": f"{case}_es.npz", "fixed_label": f"{case}_ed_gt.npz",
                 "moving_label": f"{case}_es_gt.npz", "subject": patient, "split": "test"}
            )  # fmt: skip
    (out / "pairs.yaml").write_text(yaml.safe_dump({"labels": {"LV": 1}, "pairs": entries}, sort_keys=False))
    print(f"{len(entries)} pairs in {out / 'pairs.yaml'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
