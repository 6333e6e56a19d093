"""Displacement fields written by other tools, converted once into regbench's convention.

regbench's convention: a flow ``(ndim, *shape)`` in voxels of the image it is scored on, component k along array
axis k, a pull-back field: ``moved(p) = moving(p + u(p))``. A :class:`FieldConvention` says how a file departs
from it, and :func:`to_regbench` undoes each departure in one fixed order:

1. ``layout``: ``channel_first`` ``(ndim, *shape)`` or ``channel_last`` ``(*shape, ndim)``;
2. ``resolution``: ``full``, or ``half``: resampled to the image's shape (quadratic spline, as Learn2Reg's kit)
   with ``half_values`` saying whether the values are in full-resolution voxels (``full``, Learn2Reg's) or in
   the half-resolution grid's (``half``: doubled; only for voxel units);
3. ``axis_order``: ``array`` (component k along array axis k), ``reversed`` (x first: ITK/SimpleITK, grid_sample's
   last axis), or a permutation (component i is along array axis ``axis_order[i]``);
4. ``units`` and ``kind``: ``voxel``, ``mm`` (divided by the spacing of its axis; coordinates from an origin at
   voxel 0) or ``normalised`` (grid_sample's [-1, 1] with ``align_corners``); ``displacement``, or ``coordinates``
   (the sampling positions: the identity grid is subtracted);
5. ``direction``: ``pull`` (regbench's), or ``push`` (a forward map x → x + v(x)): inverted by fixed-point
   iteration.

:data:`CONVERTER_VERSION` changes whenever a conversion's numbers would; the manifest records it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

CONVERTER_VERSION = 1

LAYOUTS = ("channel_first", "channel_last")
UNITS = ("voxel", "mm", "normalised")
DIRECTIONS = ("pull", "push")
RESOLUTIONS = ("full", "half")
KINDS = ("displacement", "coordinates")
INVERSION_ITERATIONS = 50


@dataclass(frozen=True)
class FieldConvention:
    """How a field file is written; the defaults are regbench's own convention."""

    layout: str = "channel_first"
    axis_order: str | tuple[int, ...] = "array"
    units: str = "voxel"
    align_corners: bool = True  # for normalised units: grid_sample's setting the field was made with
    direction: str = "pull"
    resolution: str = "full"
    half_values: str = "full"  # for half resolution: the values' voxels, full-resolution (Learn2Reg) or half
    kind: str = "displacement"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key, allowed in (
            ("layout", LAYOUTS),
            ("units", UNITS),
            ("direction", DIRECTIONS),
            ("resolution", RESOLUTIONS),
            ("half_values", RESOLUTIONS),
            ("kind", KINDS),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"field convention {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if isinstance(self.axis_order, str):
            if self.axis_order not in ("array", "reversed"):
                raise ConfigError(f"field convention axis_order must be 'array', 'reversed' or a permutation such as [2, 1, 0], got {self.axis_order!r}")
        else:
            order = tuple(int(a) for a in self.axis_order)
            if sorted(order) != list(range(len(order))):
                raise ConfigError(f"field convention axis_order {list(self.axis_order)!r} is not a permutation of 0..{len(order) - 1}")
            object.__setattr__(self, "axis_order", order)
        if not isinstance(self.align_corners, bool):
            raise ConfigError(f"field convention align_corners must be true or false, got {self.align_corners!r}")

    def record(self) -> dict[str, Any]:
        """The convention as plain values (manifest, options)."""
        out = asdict(self)
        out.pop("extra")
        if isinstance(self.axis_order, tuple):
            out["axis_order"] = list(self.axis_order)
        return out

    def components(self, ndim: int) -> list[int]:
        """The array axis of each stored component, in stored order."""
        if self.axis_order == "array":
            return list(range(ndim))
        if self.axis_order == "reversed":
            return list(reversed(range(ndim)))
        order = [int(a) for a in self.axis_order]
        if len(order) != ndim:
            raise ConfigError(f"field convention axis_order {order} has {len(order)} entries; the images are {ndim}-D")
        return order


def to_regbench(
    field_array: np.ndarray, convention: FieldConvention, shape: Sequence[int], spacing: Sequence[float], source: str = "the field", invert: bool = True
) -> np.ndarray:
    """``field_array`` written in ``convention`` as regbench's flow for images of ``shape`` and ``spacing`` (mm):
    ``(ndim, *shape)`` float32, voxels, component k along axis k, pull. ``source`` names the file in errors.
    ``invert=False`` leaves a push field uninverted (the convention probe inverts it on a coarser grid)."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    array = np.asarray(field_array, dtype=np.float64)
    if array.ndim != ndim + 1:
        raise ConfigError(f"{source}: a field for {ndim}-D images of shape {shape} has {ndim + 1} axes, this one has shape {array.shape}")
    if convention.layout == "channel_last":
        array = np.moveaxis(array, -1, 0)
    if array.shape[0] != ndim:
        where = "last" if convention.layout == "channel_last" else "first"
        raise ConfigError(
            f"{source}: shape {np.asarray(field_array).shape} has {array.shape[0]} components on its {where} axis, expected {ndim} (layout {convention.layout})"
        )
    if convention.resolution == "half":
        array = _upsampled(array, shape, source)
        if convention.half_values == "half" and convention.units == "voxel":
            array = array * 2.0
    if array.shape[1:] != shape:
        raise ConfigError(f"{source}: field grid {array.shape[1:]} differs from the images' {shape} (resolution {convention.resolution})")
    ordered = np.empty_like(array)
    for stored, axis in enumerate(convention.components(ndim)):
        ordered[axis] = array[stored]
    flow = _in_voxels(ordered, convention, shape, spacing)
    if convention.direction == "push" and invert:
        flow = invert_displacement(flow)
    return flow.astype(np.float32)


def from_regbench(flow: np.ndarray, convention: FieldConvention, spacing: Sequence[float]) -> np.ndarray:
    """The inverse of :func:`to_regbench` at full resolution (exports, tests): regbench's flow written in
    ``convention``. Half resolution is not written."""
    if convention.resolution != "full":
        raise ConfigError("fields are written at full resolution only")
    flow = np.asarray(flow, dtype=np.float64)
    ndim, shape = flow.shape[0], flow.shape[1:]
    if convention.direction == "push":
        flow = invert_displacement(flow)
    values = flow.copy()
    if convention.kind == "coordinates":
        values = values + _identity(shape)
    if convention.units == "mm":
        values = values * np.reshape(np.asarray(spacing, dtype=np.float64), (ndim,) + (1,) * ndim)
    elif convention.units == "normalised":
        scale = np.reshape([_normalised_scale(n, convention.align_corners) for n in shape], (ndim,) + (1,) * ndim)
        values = values / scale - (1.0 if convention.kind == "coordinates" else 0.0) * _normalised_offset(shape, convention.align_corners)
    stored = np.stack([values[axis] for axis in convention.components(ndim)])
    if convention.layout == "channel_last":
        stored = np.moveaxis(stored, 0, -1)
    return stored.astype(np.float32)


def _identity(shape: Sequence[int]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))


def _normalised_scale(n: int, align_corners: bool) -> float:
    """Voxels per normalised unit along an axis of n voxels (grid_sample's mapping)."""
    return (n - 1) / 2.0 if align_corners else n / 2.0


def _normalised_offset(shape: Sequence[int], align_corners: bool) -> np.ndarray:
    """The normalised coordinate of voxel 0 is −1 (align_corners) or −1 + 1/n: the offset, per axis, so that
    voxel = (c + offset) · scale."""
    ndim = len(shape)
    offsets = [1.0 if align_corners else 1.0 - 1.0 / n for n in shape]
    return np.reshape(np.asarray(offsets), (ndim,) + (1,) * ndim)


def _in_voxels(values: np.ndarray, convention: FieldConvention, shape: tuple[int, ...], spacing: Sequence[float]) -> np.ndarray:
    ndim = len(shape)
    if convention.units == "mm":
        spacing_arr = np.asarray(spacing, dtype=np.float64)
        if spacing_arr.shape != (ndim,) or not np.all(spacing_arr > 0):
            raise ConfigError(f"fields in mm need a positive spacing per axis, got {tuple(spacing)}")
        values = values / np.reshape(spacing_arr, (ndim,) + (1,) * ndim)
    elif convention.units == "normalised":
        scale = np.reshape([_normalised_scale(n, convention.align_corners) for n in shape], (ndim,) + (1,) * ndim)
        if convention.kind == "coordinates":
            values = values + _normalised_offset(shape, convention.align_corners)
        values = values * scale
    if convention.kind == "coordinates":
        values = values - _identity(shape)
    return values


def _upsampled(array: np.ndarray, shape: tuple[int, ...], source: str) -> np.ndarray:
    from scipy.ndimage import zoom

    factors = [t / s for t, s in zip(shape, array.shape[1:])]
    if any(not 1.5 <= f <= 2.5 for f in factors):
        raise ConfigError(f"{source}: a half-resolution field of grid {array.shape[1:]} does not fit images of shape {shape}")
    return np.stack([zoom(component, factors, order=2) for component in array])


def invert_displacement(flow: np.ndarray, iterations: int = INVERSION_ITERATIONS) -> np.ndarray:
    """The displacement w with w(p) = −flow(p + w(p)) (fixed-point iteration, linear interpolation): the
    inverse map of p → p + flow(p), as a field on the same grid. Exact where the map is invertible and smooth;
    near the border values from outside the grid are taken from its edge."""
    from scipy.ndimage import map_coordinates

    flow = np.asarray(flow, dtype=np.float64)
    grid = _identity(flow.shape[1:])
    inverse = -flow.copy()
    for _ in range(iterations):
        points = grid + inverse
        inverse = -np.stack([map_coordinates(component, points, order=1, mode="nearest") for component in flow])
    return inverse


def alternatives(convention: FieldConvention, ndim: int) -> list[tuple[str, FieldConvention, float]]:
    """The plausible mistakes in a declared convention, one departure each: (what it would mean, the convention
    it implies, the sign to apply). The other layout (components first or last), other axis orders, the other
    units, the other kind, the other direction, and the field negated."""
    import dataclasses
    import itertools

    declared = convention.components(ndim)
    out: list[tuple[str, FieldConvention, float]] = []
    for layout in LAYOUTS:
        if layout != convention.layout:
            out.append((layout.replace("_", " "), dataclasses.replace(convention, layout=layout), 1.0))
    for order in itertools.permutations(range(ndim)):
        if list(order) != declared:
            text = "x-first (axes reversed)" if list(order) == list(reversed(range(ndim))) else f"axes in order {list(order)}"
            out.append((text, dataclasses.replace(convention, axis_order=tuple(order)), 1.0))
    for units in UNITS:
        if units != convention.units:
            out.append((f"in {units} units", dataclasses.replace(convention, units=units), 1.0))
    for kind in KINDS:
        if kind != convention.kind:
            out.append((f"{kind}, not {convention.kind}", dataclasses.replace(convention, kind=kind), 1.0))
    other = "push" if convention.direction == "pull" else "pull"
    out.append((f"{other} fields, not {convention.direction}", dataclasses.replace(convention, direction=other), 1.0))
    out.append(("negated (pointing from moving to fixed)", convention, -1.0))
    return out


def files_digest(paths: Sequence[Path]) -> str:
    """sha256 over the files' names and contents, in the order given: binds a run to the files it scored."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(Path(path).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
