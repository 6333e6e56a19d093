"""Registration metrics with explicit units and conventions.

- Dice: 2|A∩B| / (|A|+|B|), a fraction in [0, 1] (tables show %).
- HD95: mm, from the image spacing. Convention ``pooled`` (default, medpy's ``hd95``): the 95th percentile of
  the surface distances of both directions pooled together. ``max`` (MONAI, DeepMind surface-distance): the
  larger of the two directed 95th percentiles; 7–20% higher on cardiac masks. Surfaces are the mask minus
  its erosion with the 4-neighbourhood (as medpy).
- MSE: mean squared intensity difference of moved and fixed images in [0, 1] (tables show ×10⁻²).
- Jacobian determinant of φ(p) = p + u(p), u in pixels: det(I + ∇u). Difference scheme ``central``
  (default, ``np.gradient``: central differences inside, one-sided at the border) or ``forward``
  (forward differences, last row/column repeated). NJD: % of pixels with det < 0. SDlogJ: standard
  deviation of log(det) with det clipped to [1e-9, 1e9].
- Absent structures (no silent NaN dropping): a structure absent from both the fixed label and the warped
  moving label has no Dice; a structure absent from either has no HD95. These are left NaN, listed in the
  per-case ``skipped`` column and counted in ``n_skipped``; the per-case means average the structures that
  were evaluated. A structure present in one map only scores Dice 0 (a real miss).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .interface import Pair, Registration
from .study import DEFAULT_STUDY


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is read: its unit, direction, and the scale and header tables use."""

    name: str
    unit: str
    higher_is_better: bool
    table_scale: float = 1.0
    table_header: str = ""
    description: str = ""
    label: str = ""  # plain-text header with the table unit (Markdown tables, figure axes)

    @property
    def short_label(self) -> str:
        """The plain-text header without its unit ("Dice (%)" -> "Dice"): where a value follows in other units."""
        return self.label.split(" (")[0] or self.name


LabelMap = Mapping[str, int]  # a dataset's labels: display name → value in its label maps
LABELLED_METRICS = ("dice", "hd95")  # the metrics that have a column per label (dice_<key>, hd95_<key>)


def label_key(name: str) -> str:
    """A label's column suffix: its display name in lower case, runs of other characters as one underscore
    ("LV" → "lv", "Left ventricle" → "left_ventricle")."""
    key = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
    if not key:
        raise ValueError(f"label name {name!r} has no letter or digit to name its columns by")
    return key


#: The labels of a dataset that declares none, and of run directories written before runs recorded theirs: the
#: default study's.
UNDECLARED_LABELS: dict[str, int] = dict(DEFAULT_STUDY.labels)


def pair_labels(pair: Pair) -> dict[str, int]:
    """The labels a pair is scored on: its dataset's declaration (``Pair.labels``), else :data:`UNDECLARED_LABELS`."""
    return dict(pair.labels if pair.labels is not None else UNDECLARED_LABELS)


def _label_spec(spec: MetricSpec, name: str, description: str) -> MetricSpec:
    """``spec`` of one label (``dice_lv``): its column, headers naming the label, ``description`` filled with it."""
    header = spec.table_header.replace(" (", f" {name} (", 1)
    label = spec.label.replace(" (", f" {name} (", 1)
    column = f"{spec.name}_{label_key(name)}"
    return MetricSpec(column, spec.unit, spec.higher_is_better, spec.table_scale, header, description.format(name), label)


def _per_label(spec: MetricSpec, description: str, labels: LabelMap) -> dict[str, MetricSpec]:
    """``spec`` and its per-label versions (``dice_lv``, ...), in that order."""
    per_label = (_label_spec(spec, name, description) for name in labels)
    return {spec.name: spec, **{s.name: s for s in per_label}}


def metric_specs(labels: LabelMap) -> dict[str, MetricSpec]:
    """Every per-case metric of a run scored on ``labels``, in per_case.csv's column order."""
    return {
        **_per_label(MetricSpec("dice", "fraction", True, 100.0, r"Dice (\%)", "mean Dice over the labels", "Dice (%)"), "Dice of {}", labels),
        **_per_label(MetricSpec("hd95", "mm", False, 1.0, "HD95 (mm)", "mean HD95 over the labels", "HD95 (mm)"), "HD95 of {}", labels),
        "mse": MetricSpec("mse", "intensity^2", False, 100.0, r"MSE ($10^{-2}$)", "mean squared error, images in [0,1]", "MSE (×10⁻²)"),
        "njd": MetricSpec("njd", "%", False, 1.0, r"NJD (\%)", "% of pixels with det(Jacobian) < 0", "NJD (%)"),
        "ndv": MetricSpec("ndv", "%", False, 1.0, r"NDV (\%)", "non-diffeomorphic area (2-D, NDA) or volume (3-D), % (Liu et al. 2024)", "NDV (%)"),
        "sdlogj": MetricSpec("sdlogj", "1", False, 1.0, "SDlogJ", "std of log Jacobian determinant", "SDlogJ"),
        "epe_mm": MetricSpec("epe_mm", "mm", False, 1.0, "EPE (mm)", "end-point error vs ground truth in the labelled region", "EPE (mm)"),
        "tre_mm": MetricSpec("tre_mm", "mm", False, 1.0, "TRE (mm)", "target registration error at the fixed image's landmarks", "TRE (mm)"),
        "time_s": MetricSpec("time_s", "s", False, 1000.0, "Time (ms)", "registration time per pair", "Time (ms/pair)"),
    }


#: The metrics of a run on the labels of datasets that declare none (:data:`UNDECLARED_LABELS`); ``metric_specs`` gives
#: any other run's.
METRICS: dict[str, MetricSpec] = metric_specs(UNDECLARED_LABELS)


def with_structures(metrics: list[str], columns: Sequence[str] | None = None) -> list[str]:
    """Each metric followed by its per-label columns where it has them (Table 1 with --per-structure):
    those of ``columns`` (a per-case table's, in their order) or of :data:`METRICS`."""
    available = list(columns) if columns is not None else list(METRICS)
    return [c for metric in metrics for c in available if c == metric or (metric in LABELLED_METRICS and c.startswith(f"{metric}_"))]


def spec_of(column: str, names: Mapping[str, str] | None = None) -> MetricSpec:
    """The MetricSpec of a per-case column, per-label ones included; ``names``: label key → display name as the
    run recorded them (else a per-label column not in :data:`METRICS` is named by its key)."""
    names = names or {}
    for metric in LABELLED_METRICS:
        key = column[len(metric) + 1 :] if column.startswith(f"{metric}_") else None
        if key and (key in names or column not in METRICS):
            return _label_spec(METRICS[metric], names.get(key, key), f"{metric} of {{}}")
    return METRICS[column]


HD95_CONVENTIONS = ("pooled", "max")
JACOBIAN_SCHEMES = ("central", "forward")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks; NaN when both are empty (undefined, see the module's policy)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    footprint = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=footprint, iterations=1)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from a's surface pixels to b's surface, and from b's to a's."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    sa, sb = _surface(a), _surface(b)
    from scipy import ndimage

    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    return to_b[sa], to_a[sb]


def hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] = (1.0, 1.0), convention: str = "pooled") -> float:
    """95th-percentile Hausdorff distance in mm; NaN if either mask is empty."""
    if convention not in HD95_CONVENTIONS:
        raise ValueError(f"unknown HD95 convention {convention!r}; use one of {HD95_CONVENTIONS}")
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if not a.any() or not b.any():
        return float("nan")
    d_ab, d_ba = surface_distances(a, b, spacing)
    if convention == "pooled":
        return float(np.percentile(np.hstack((d_ab, d_ba)), 95))
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.mean((a - b) ** 2))


def _check_flow(flow: np.ndarray) -> np.ndarray:
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim not in (3, 4) or flow.shape[0] != flow.ndim - 1:
        raise ValueError(f"flow must have shape (2, H, W) or (3, D, H, W), got {flow.shape}")
    return flow


def _det(m: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Determinant of a 2×2 or 3×3 matrix of arrays (m[row][column]), elementwise."""
    if len(m) == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def jacobian_determinant(flow: np.ndarray, scheme: str = "central") -> np.ndarray:
    """det(I + ∇u) per voxel for a (ndim, *shape) voxel flow (channel k along array axis k), 2-D or 3-D."""
    flow = _check_flow(flow)
    n = flow.shape[0]
    if scheme == "central":
        d = [np.gradient(flow[c]) for c in range(n)]  # d[c][k] = ∂u_c/∂x_k
    elif scheme == "forward":
        d = [[np.diff(flow[c], axis=k, append=np.take(flow[c], [-1], axis=k)) for k in range(n)] for c in range(n)]
    else:
        raise ValueError(f"unknown Jacobian scheme {scheme!r}; use one of {JACOBIAN_SCHEMES}")
    if n == 2:  # spelled out as before, so that 2-D numbers do not move by a rounding
        return (1.0 + d[0][0]) * (1.0 + d[1][1]) - d[0][1] * d[1][0]
    return _det([[float(c == k) + d[c][k] for k in range(n)] for c in range(n)])


def simplex_jacobians(flow: np.ndarray) -> list[np.ndarray]:
    """The Jacobians of the simplices around each pixel or voxel under φ = id + u (Liu et al., IJCV 2024),
    each normalised so that the identity gives 1. 2-D: the four triangles of the one-sided differences (D+
    and D− along each axis). 3-D: the eight corner tetrahedra of the one-sided differences, then the two central
    tetrahedra of a cube's two five-tetrahedra splits (from the diagonals in each plane, forward and backward).
    The displacement is replicated one voxel past the border; full size. The central-difference determinant is the mean of
    the corner ones (the determinant is multilinear), so it can be positive while one of them is not."""
    u = _check_flow(flow)
    n = u.shape[0]
    shape = u.shape[1:]
    phi = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")) + u
    # The displacement replicated past the border (not φ: a replicated φ maps the outward edges to 0, which
    # makes the border's simplices degenerate and its diagonal tetrahedra flip on a smooth field).
    grid = np.stack(np.meshgrid(*[np.arange(-1, s + 1, dtype=np.float64) for s in shape], indexing="ij"))
    padded = grid + np.pad(u, [(0, 0)] + [(1, 1)] * n, mode="edge")
    steps: dict[tuple[tuple[int, ...], int], np.ndarray] = {}

    def step(direction: tuple[int, ...], sign: int) -> np.ndarray:
        """φ(p + d) − φ(p) for sign +1, φ(p) − φ(p − d) for −1: the mapped edge along d (each computed once)."""
        if (direction, sign) not in steps:
            index = (slice(None), *(slice(1 + sign * o, 1 + sign * o + s) for o, s in zip(direction, shape)))
            shifted = padded[index]
            steps[(direction, sign)] = shifted - phi if sign > 0 else phi - shifted
        return steps[(direction, sign)]

    unit = [tuple(int(i == k) for i in range(n)) for k in range(n)]
    jacobians = []
    for combination in itertools.product((1, -1), repeat=n):
        edges = [step(unit[k], s) for k, s in enumerate(combination)]  # edges[k][c] = D_k φ_c
        jacobians.append(_det([[edges[k][c] for k in range(n)] for c in range(n)]))
    if n == 3:
        diagonals = [(1, 1, 0), (1, 0, 1), (0, 1, 1)]  # the xy, xz and yz planes
        reference = _det([[np.asarray(float(d[c])) for d in diagonals] for c in range(3)])  # the identity's (−2)
        for sign in (1, -1):
            edges = [step(d, sign) for d in diagonals]
            jacobians.append(_det([[edges[k][c] for k in range(3)] for c in range(3)]) / reference)
    return jacobians


def non_diffeomorphic_share(flow: np.ndarray, mask: np.ndarray | None = None, crop: int = 0) -> float:
    """NDA (2-D) or NDV (3-D) in % (Liu et al., IJCV 2024): the area or volume of the simplices
    (:func:`simplex_jacobians`) that the deformation turns inside out, which the central-difference count (NJD)
    can miss. Written from the formulas in the paper, not from its GPL package. NDA(p) = Σ −½·min(J, 0)/2 over
    the four triangles (each half a pixel); NDV(v) = Σ −½·min(J, 0)/6 over the ten tetrahedra. ``mask``: the
    voxels it is summed over and divided by (None: all; the fixed or moving foreground where a study asks);
    ``crop``: voxels left out on every side after the measure is taken on the whole field (LUMIR's 1)."""
    jacobians = simplex_jacobians(flow)
    weight = 2.0 if len(jacobians) == 4 else 6.0
    per_voxel = sum(-0.5 * np.minimum(j, 0.0) / weight for j in jacobians)
    if crop:
        inner = (slice(crop, -crop),) * per_voxel.ndim
        per_voxel = per_voxel[inner]
        mask = None if mask is None else np.asarray(mask)[inner]
    if mask is None:
        return float(100.0 * per_voxel.sum() / per_voxel.size)
    mask = np.asarray(mask, dtype=bool)
    return float(100.0 * per_voxel[mask].sum() / max(int(mask.sum()), 1))


def njd(flow: np.ndarray, scheme: str = "central") -> float:
    """Percentage of pixels whose Jacobian determinant is negative (folding)."""
    return float(100.0 * np.mean(jacobian_determinant(flow, scheme) < 0))


def sdlogj(flow: np.ndarray, scheme: str = "central") -> float:
    return float(np.std(np.log(np.clip(jacobian_determinant(flow, scheme), 1e-9, 1e9))))


def endpoint_error(flow: np.ndarray, flow_gt: np.ndarray, spacing: tuple[float, ...], mask: np.ndarray | None = None) -> float:
    """Mean Euclidean distance (mm) between two voxel flows, inside ``mask`` if given."""
    flow = np.asarray(flow, np.float64)
    diff = (flow - np.asarray(flow_gt, np.float64)) * np.asarray(spacing, np.float64).reshape(-1, *([1] * (flow.ndim - 1)))
    err = np.sqrt((diff**2).sum(0))
    return float(err[mask].mean() if mask is not None and mask.any() else err.mean())


def target_registration_error(flow: np.ndarray, fixed_points: Any, moving_points: Any, spacing: tuple[float, ...]) -> float:
    """Mean distance (mm) between where the flow sends each fixed point, p + u(p), and its moving point: u
    interpolated linearly at the points (as the warper samples), points in voxel indices, the spacing applied once
    to the difference. (Learn2Reg's kit interpolates u with cubic splines.)"""
    from scipy.ndimage import map_coordinates

    fixed = np.asarray(fixed_points, np.float64)
    moving = np.asarray(moving_points, np.float64)
    flow = np.asarray(flow, np.float64)
    if fixed.shape != moving.shape or fixed.ndim != 2 or fixed.shape[1] != flow.shape[0]:
        raise ValueError(f"points must be two (N, {flow.shape[0]}) arrays of matching rows, got {fixed.shape} and {moving.shape}")
    displacement = np.stack([map_coordinates(component, fixed.T, order=1, mode="nearest") for component in flow], axis=1)
    error_mm = (fixed + displacement - moving) * np.asarray(spacing, np.float64)
    return float(np.sqrt((error_mm**2).sum(1)).mean())


#: Where NDA/NDV is summed and divided: every voxel; the fixed image's region of interest; the moving image's.
#: An image's region is its dataset's mask where it gives one (Pair.fixed_mask, moving_mask: Learn2Reg's
#: masksTr), else its foreground, intensity > 0 (LUMIR's rule for skull-stripped brains is the moving one's).
NDV_MASKS = ("none", "fixed", "moving")


def ndv_mask_of(pair: Pair, rule: str) -> np.ndarray | None:
    """The voxels NDA/NDV is taken over under ``rule`` (one of :data:`NDV_MASKS`); None: all of them."""
    if rule not in NDV_MASKS:
        raise ValueError(f"ndv_mask {rule!r} is not one of {NDV_MASKS}")
    if rule == "none":
        return None
    mask = pair.fixed_mask if rule == "fixed" else pair.moving_mask
    if mask is not None:
        return np.asarray(mask, bool)
    return np.asarray(pair.fixed if rule == "fixed" else pair.moving) > 0


@dataclass(frozen=True)
class ScoringSettings:
    """How every case of a run is scored: the metrics' conventions, one object for the whole run (the plan's)."""

    hd95_convention: str = "pooled"
    jacobian_scheme: str = "central"
    ndv_mask: str = "none"
    conventions: tuple[str, ...] = ()  # extra scorings named by convention (learn2reg: the kit's l2r_ columns)

    @classmethod
    def of(cls, config: Any) -> ScoringSettings:
        """A run config's (a :class:`regbench.config.RunConfig`)."""
        return cls(config.hd95_convention, config.jacobian_scheme, config.ndv_mask, tuple(config.resolved_conventions()))


def evaluate(
    pair: Pair,
    registration: Registration,
    hd95_convention: str = "pooled",
    jacobian_scheme: str = "central",
    quick: bool = False,
    ndv_mask: str = "none",
) -> dict[str, Any]:
    """All per-case metrics of one registration (see the module docstring for conventions; ``ndv_mask``: where
    NDA/NDV is measured, :data:`NDV_MASKS`).

    ``quick``: Dice and NJD only (training's validation passes; HD95's surface distances would cost more than
    the network's forward pass)."""
    row: dict[str, Any] = {}
    skipped: list[str] = []
    overlap = ("dice",) if quick else ("dice", "hd95")
    keys = {label_key(name): value for name, value in pair_labels(pair).items()}  # column suffix → label value
    fixed_label, moving_label = pair.fixed_label, pair.moving_label
    if fixed_label is not None and moving_label is not None:
        warped = registration.warp_label(moving_label)
        for s, value in keys.items():
            f, m = np.asarray(fixed_label) == value, np.asarray(warped) == value
            row[f"dice_{s}"] = dice(f, m)
            if not quick:
                row[f"hd95_{s}"] = hd95(f, m, pair.spacing, hd95_convention)
            skipped += [f"{k}_{s}" for k in overlap if np.isnan(row[f"{k}_{s}"])]
    else:  # scored on what it has: image and Jacobian metrics; the label metrics are NaN, and say why
        row.update({f"{k}_{s}": float("nan") for k in overlap for s in keys})
        missing = "fixed" if fixed_label is None else "moving"
        skipped += [f"{k}_{s} (no {missing} label)" for k in overlap for s in keys]
    for k in overlap:
        values = [row[f"{k}_{s}"] for s in keys if not np.isnan(row[f"{k}_{s}"])]
        row[k] = float(np.mean(values)) if values else float("nan")
    row["njd"] = njd(registration.flow, jacobian_scheme)
    if quick:
        return row
    row["mse"] = mse(registration.moved, pair.fixed)
    row["sdlogj"] = sdlogj(registration.flow, jacobian_scheme)
    row["ndv"] = non_diffeomorphic_share(registration.flow, ndv_mask_of(pair, ndv_mask))
    heart = None if pair.fixed_label is None else pair.fixed_label > 0  # EPE over the labelled structures, else everywhere
    row["epe_mm"] = endpoint_error(registration.flow, pair.flow_gt, pair.spacing, heart) if pair.flow_gt is not None else float("nan")
    has_points = pair.fixed_points is not None and pair.moving_points is not None
    row["tre_mm"] = target_registration_error(registration.flow, pair.fixed_points, pair.moving_points, pair.spacing) if has_points else float("nan")
    row["n_skipped"] = len(skipped)
    row["skipped"] = ";".join(skipped)
    return row
