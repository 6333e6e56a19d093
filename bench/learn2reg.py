"""The Learn2Reg evaluation kit's metrics, computed as the kit computes them, beside regbench's strict ones.

A run asked for the ``learn2reg`` convention (``conventions: [learn2reg]``, the default on Learn2Reg tasks)
stores these per-case columns, all prefixed ``l2r_`` so that they never share a column with the strict ones; the
report tabulates them in their own table (``learn2reg.md``) with the kit's aggregates and its rank table. Written
from the kit's behaviour (MDL-UzL/L2R ``evaluation/``; docs/metrics.md), not from its code.

- ``l2r_dice``: the moving label warped by nearest-neighbour sampling at p + u(p) (``map_coordinates`` order 0,
  0 outside); a label absent from the fixed or the (unwarped) moving map is NaN; the case's value is the NaN-mean
  over labels. Per label: ``l2r_dice_<label>``.
- ``l2r_hd95``: the robust Hausdorff distance of DeepMind's surface-distance with spacing 1, **voxels**: the
  surface is the set of 2×2×2 (2-D: 2×2) blocks that straddle the mask's boundary, each weighted by the area
  (length) of its marching-cubes (squares) surface element; the 95th percentile of each direction's distances
  by area, the larger of the two. NaN where Dice is; inf where the warped label vanished (the kit's).
  Per label: ``l2r_hd95_<label>``.
- ``l2r_sdlogj``: J = I + ∇u by central differences ([-0.5, 0, 0.5], zero outside the field), cropped by 2
  voxels on every side, then std(log(clip(det J + 3, 1e-9, 1e9))): the "+3" is the kit's. For det J near 1 it is
  about a quarter of std(log det J). Where the task's evaluation is masked (a pair's ``meta[KIT_MASKED]``), the
  std is over the fixed mask's voxels.
- ``l2r_folds``: the kit's folding count, voxels with det J + 3 ≤ 0 after the clip: always 0.
- ``l2r_tre_mm``: u interpolated at the fixed points by cubic splines (``map_coordinates`` order 3, 0 outside),
  ‖fixed + u − moving‖ per point times the spacing, mean over points.
- ``l2r_ndv``: NDV (NDA in 2-D) as LUMIR reports it: the strict simplex measure summed over the moving image's
  foreground (intensity > 0), one voxel cropped at the border, in %.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from .interface import Pair
from .metrics import MetricSpec, _det, dice, label_key, non_diffeomorphic_share, pair_labels

CONVENTION = "learn2reg"
PREFIX = "l2r_"
JACOBIAN_CROP = 2  # voxels cropped on every side before SDlogJ (the kit's)
NDV_CROP = 1  # LUMIR's
LOG_OFFSET = 3.0  # the kit's "+3" inside the log
#: ``Pair.meta`` key a dataset sets where the kit evaluates SDlogJ inside the fixed image's mask (a task's
#: ``masked_evaluation``); the pair's ``fixed_mask`` is then the region (none: the whole field, as the kit's).
KIT_MASKED = "learn2reg_masked_evaluation"

#: The kit's columns (those with a value per label are also ``<name>_<label>``), how the report reads them.
KIT_METRICS: dict[str, MetricSpec] = {
    "l2r_dice": MetricSpec("l2r_dice", "fraction", True, 1.0, "DSC", "NaN-mean Dice over labels (Learn2Reg kit)", "DSC"),
    "l2r_hd95": MetricSpec("l2r_hd95", "voxels", False, 1.0, "HD95 (vox)", "max of the directed 95th percentiles, voxels (Learn2Reg kit)", "HD95 (vox)"),
    "l2r_sdlogj": MetricSpec("l2r_sdlogj", "1", False, 1.0, "SDlogJ(+3)", "std of log(det J + 3), cropped by 2 (Learn2Reg kit)", "SDlogJ(+3)"),
    "l2r_folds": MetricSpec("l2r_folds", "voxels", False, 1.0, "Folds", "voxels with det J + 3 <= 0 (Learn2Reg kit; always 0)", "Folds"),
    "l2r_tre_mm": MetricSpec("l2r_tre_mm", "mm", False, 1.0, "TRE (mm)", "cubic-spline TRE at the fixed points (Learn2Reg kit)", "TRE (mm)"),
    "l2r_ndv": MetricSpec("l2r_ndv", "%", False, 1.0, r"NDV (\%)", "non-diffeomorphic volume over the moving foreground (LUMIR)", "NDV (%)"),
}
PER_LABEL = ("l2r_dice", "l2r_hd95")
#: A case row's per-point TRE (a list: per_point.csv's column of this name), what the kit's rank table ranks.
POINT_TRE = "l2r_tre_mm_point"

# The surface element of each configuration of a 2×2×2 block (bit b set: the voxel at BLOCK_OFFSETS[3][b] is inside
# the mask), unit spacing: the area of the marching-cubes surface through the edge midpoints, a configuration and its
# complement sharing one surface (Lorensen's table), which is what DeepMind's surface-distance weights surfels by.
# Generated from scikit-image's marching_cubes(method="lorensen"); tests/test_learn2reg.py regenerates it.
_S2, _S3 = 2.0**0.5, 3.0**0.5
_AREAS = (0.0, _S3 / 8, _S3 / 4, 3 * _S3 / 8, _S2 / 2, _S3 / 2, _S2 / 2 + _S3 / 8, 1.0, 0.5 + 3 * _S3 / 8, 3 * _S3 / 4, 0.5 + _S3 / 2, _S2, _S2 / 2 + _S3 / 2)
_AREA_OF_CODE = (
    "011414281248488714282839266c6ca81248266c23896ac848876ca86ac8b6641226486c236a89c8486c87a86ab6c864236a6ab635a3a36289c8c864a3626221"
    "1226263a468c8c98263a3a536ba6a632468c6ba68a78c6848c98a632c6846221466b8ca68ac678848ca69832c66284218ac6c662938282417884842182414110"
)
BLOCK_OFFSETS = {n: tuple(itertools.product((0, 1), repeat=n)) for n in (2, 3)}


@cache
def surfel_areas(ndim: int) -> np.ndarray:
    """Surface-element area (3-D) or contour length (2-D) of each block configuration, unit spacing. 2-D: the
    marching-squares segments through the edge midpoints (one corner in or out: √2/2; two sharing an edge: 1; two
    diagonal ones: two segments, √2)."""
    if ndim == 3:
        return np.array([_AREAS[int(c, 16)] for c in _AREA_OF_CODE])
    lengths = np.zeros(16)
    for code in range(1, 15):
        inside = bin(code).count("1")
        lengths[code] = _S2 / 2 if inside in (1, 3) else (_S2 if code in (0b0110, 0b1001) else 1.0)
    return lengths


def _block_codes(mask: np.ndarray) -> np.ndarray:
    """The configuration code of every 2×2(×2) block of ``mask`` (one fewer along each axis)."""
    codes = np.zeros(tuple(s - 1 for s in mask.shape), np.int64)
    for bit, offset in enumerate(BLOCK_OFFSETS[mask.ndim]):
        codes |= mask[tuple(slice(o, o + s) for o, s in zip(offset, codes.shape))].astype(np.int64) << bit
    return codes


def _area_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if not len(distances):
        return float("inf")
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(areas[order]) / areas.sum()
    return float(distances[order][min(int(np.searchsorted(cumulative, percent / 100.0)), len(distances) - 1)])


def kit_hd95(a: np.ndarray, b: np.ndarray, percent: float = 95.0) -> float:
    """Robust Hausdorff distance in voxels between masks ``a`` and ``b`` as DeepMind's surface-distance computes it
    with spacing 1 (Learn2Reg's HD95; see the module docstring); inf when either mask is empty."""
    from scipy.ndimage import distance_transform_edt

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() or not b.any():
        return float("inf")
    both = np.argwhere(a | b)
    box = tuple(slice(lo, hi + 3) for lo, hi in zip(both.min(0), both.max(0)))  # padded by 1 on each side, below
    table = surfel_areas(a.ndim)
    full = len(table) - 1
    borders, areas = [], []
    for mask in (a, b):
        codes = _block_codes(np.pad(mask, 1)[box])
        border = (codes != 0) & (codes != full)
        borders.append(border)
        areas.append(table[codes[border]])
    to_a, to_b = (distance_transform_edt(~border) for border in borders)
    return max(_area_percentile(to_b[borders[0]], areas[0], percent), _area_percentile(to_a[borders[1]], areas[1], percent))


def kit_jacobian_determinant(flow: np.ndarray) -> np.ndarray:
    """det(I + ∇u) of a (ndim, *shape) voxel flow by the kit's central differences (zero outside the field),
    cropped by :data:`JACOBIAN_CROP` voxels on every side."""
    from scipy.ndimage import correlate1d

    u = np.asarray(flow, np.float64)
    n = u.shape[0]
    grad = [[correlate1d(u[c], [-0.5, 0.0, 0.5], axis=k, mode="constant", cval=0.0) for k in range(n)] for c in range(n)]
    det = _det([[float(c == k) + grad[c][k] for k in range(n)] for c in range(n)])
    return det[(slice(JACOBIAN_CROP, -JACOBIAN_CROP),) * n]


def kit_sdlogj(flow: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int]:
    """(SDlogJ with the kit's +3, the kit's folding count) of a voxel flow; with ``mask`` (the fixed image's, the
    field's shape), the std is taken over the mask's voxels inside the crop, as the kit's masked evaluation
    (``np.ma`` with ``1 - mask``: voxels where the mask is 1; regbench's masks are its non-zero voxels). An empty
    masked region gives NaN."""
    shifted = np.clip(kit_jacobian_determinant(flow) + LOG_OFFSET, 1e-9, 1e9)
    logs = np.log(shifted)
    if mask is not None:
        inside = np.asarray(mask, bool)[(slice(JACOBIAN_CROP, -JACOBIAN_CROP),) * logs.ndim]
        logs = logs[inside]
    return (float(logs.std()) if logs.size else float("nan")), int((shifted <= 0).sum())


def kit_warp_label(label: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``label`` sampled at p + u(p) by nearest neighbour, 0 outside (the kit's ``map_coordinates`` order 0)."""
    from scipy.ndimage import map_coordinates

    grid = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in label.shape], indexing="ij")
    return map_coordinates(np.asarray(label), np.asarray(grid) + np.asarray(flow, np.float64), order=0, mode="constant", cval=0)


def kit_tre_points(flow: np.ndarray, fixed_points: Any, moving_points: Any, spacing: tuple[float, ...]) -> np.ndarray:
    """‖fixed + u(fixed) − moving‖ in mm per point, u by cubic splines at the fixed points (the kit's)."""
    from scipy.ndimage import map_coordinates

    fixed = np.asarray(fixed_points, np.float64)
    moving = np.asarray(moving_points, np.float64)
    displacement = np.stack([map_coordinates(np.asarray(c, np.float64), fixed.T, order=3) for c in flow], axis=1)
    return np.linalg.norm((fixed + displacement - moving) * np.asarray(spacing, np.float64), axis=1)


def kit_tre_mm(flow: np.ndarray, fixed_points: Any, moving_points: Any, spacing: tuple[float, ...]) -> float:
    """Mean of :func:`kit_tre_points`: the case's TRE in mm (the kit's)."""
    return float(kit_tre_points(flow, fixed_points, moving_points, spacing).mean())


def lumir_ndv(flow: np.ndarray, moving: np.ndarray) -> float:
    """NDV (NDA in 2-D) in % over the moving image's foreground, :data:`NDV_CROP` voxel cropped (LUMIR's)."""
    return non_diffeomorphic_share(flow, np.asarray(moving) > 0, crop=NDV_CROP)


def kit_overlap(fixed_label: np.ndarray, moving_label: np.ndarray, flow: np.ndarray, labels: Mapping[str, int]) -> dict[str, float]:
    """``l2r_dice``/``l2r_hd95`` per label and their NaN-means (a label absent from either map: NaN)."""
    warped = kit_warp_label(moving_label, flow)
    per_label: dict[str, dict[str, float]] = {metric: {} for metric in PER_LABEL}
    for name, value in labels.items():
        key = label_key(name)
        f, m, w = np.asarray(fixed_label) == value, np.asarray(moving_label) == value, warped == value
        present = bool(f.any() and m.any())
        per_label["l2r_dice"][f"l2r_dice_{key}"] = dice(f, w) if present else float("nan")
        per_label["l2r_hd95"][f"l2r_hd95_{key}"] = kit_hd95(f, w) if present else float("nan")
    row: dict[str, float] = {}
    for metric, values in per_label.items():  # the mean first, then its labels (per_case.csv's order)
        row[metric] = float(np.nanmean(list(values.values()))) if any(np.isfinite(list(values.values()))) else float("nan")
        row.update(values)
    return row


def evaluate_kit(pair: Pair, flow: np.ndarray) -> dict[str, Any]:
    """Every ``l2r_`` column of one registration (see the module docstring), and :data:`POINT_TRE`'s list."""
    labels = pair_labels(pair)
    row: dict[str, Any]
    if pair.fixed_label is not None and pair.moving_label is not None:
        row = dict(kit_overlap(pair.fixed_label, pair.moving_label, flow, labels))
    else:
        row = {f"{metric}{suffix}": float("nan") for metric in PER_LABEL for suffix in ["", *(f"_{label_key(n)}" for n in labels)]}
    row["l2r_sdlogj"], folds = kit_sdlogj(flow, pair.fixed_mask if pair.meta.get(KIT_MASKED) else None)
    row["l2r_folds"] = float(folds)
    has_points = pair.fixed_points is not None and pair.moving_points is not None
    points = kit_tre_points(flow, pair.fixed_points, pair.moving_points, pair.spacing) if has_points else None
    row["l2r_tre_mm"] = float(points.mean()) if points is not None else float("nan")
    if points is not None:  # per point too (per_point.csv): the kit ranks TRE over every point, and TRE30 over the hardest
        row[POINT_TRE] = [float(v) for v in points]
    row["l2r_ndv"] = lumir_ndv(flow, pair.moving)
    return row
