"""Multi-resolution schedules on anisotropic grids: which axes a pyramid level shrinks.

A short-axis stack has slices several times thicker than its pixels; shrinking every axis by the same factor
would leave two or three slices at the coarse levels. The rule (ANTs' for its shrink factors, written here for
the methods whose libraries take per-axis factors): a level's factor applies to the finest axis, and every other
axis gets the factor, at most that one, that brings its shrunk spacing closest to the finest axis's shrunk
spacing. Isotropic grids (every 2-D dataset here, Learn2Reg's volumes) shrink all axes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .interface import Pair, Registration


def relative_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """The spacing in units of the finest axis (isotropic: all 1.0); None (not known): isotropic."""
    if spacing is None:
        return (1.0,) * ndim
    if len(spacing) != ndim or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing {tuple(spacing)!r} must be {ndim} positive values, one per image axis")
    finest = min(spacing)
    return tuple(float(s) / finest for s in spacing)


def voxel_flow(field: np.ndarray, relative: Sequence[float], x_first: bool) -> np.ndarray:
    """A library's (*shape, ndim) displacement in units of the finest axis -> regbench's (ndim, *shape) flow in each
    axis's voxels, channel k along array axis k, float32. ``x_first``: its components are ITK's, x (the last array
    axis) first; otherwise component k is along array axis k already. ``relative``: :func:`relative_spacing`."""
    import numpy as np

    field = np.asarray(field)
    components = np.moveaxis(field[..., ::-1] if x_first else field, -1, 0)
    return np.ascontiguousarray(components / np.reshape(relative, (-1,) + (1,) * (field.ndim - 1))).astype(np.float32)


def is_isotropic(spacing: Sequence[float] | None) -> bool:
    return spacing is None or max(spacing) <= min(spacing) * (1 + 1e-6)


def through_plane_axis(spacing: Sequence[float] | None) -> int | None:
    """The axis of a volume's thick slices (its spacing over 1.5 times every other axis's: a stack of slices), None
    for an image that is not a volume or has no such axis."""
    if spacing is None or len(spacing) != 3:
        return None
    thick = max(range(3), key=lambda k: float(spacing[k]))
    return thick if all(float(spacing[thick]) > 1.5 * float(s) for k, s in enumerate(spacing) if k != thick) else None


def shrink_factors(factor: int, spacing: Sequence[float] | None, ndim: int) -> tuple[int, ...]:
    """Per-axis shrink factors (array-axis order) for a pyramid level of ``factor``."""
    relative = relative_spacing(spacing, ndim)
    target = float(factor)  # the finest axis's spacing after shrinking, in units of its own
    return tuple(min(range(1, factor + 1), key=lambda f: (abs(s * f - target), f)) for s in relative)


class SpacingAware:
    """A method whose schedule reads the pair's spacing (demons, SyN, elastix). The runner calls
    ``register_pair(pair)``, which passes an anisotropic pair's spacing to ``_register``; an isotropic pair's, and
    ``register(fixed, moving)``'s, is None (isotropic voxels), so the two agree wherever the spacing is isotropic."""

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        raise NotImplementedError

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        """Register with isotropic voxels."""
        return self._register(fixed, moving, None)

    def register_pair(self, pair: Pair) -> Registration:
        """Register with the pair's spacing where it is anisotropic (the same as ``register`` where it is not)."""
        return self._register(pair.fixed, pair.moving, None if is_isotropic(pair.spacing) else pair.spacing)


def pad_short_axes(least: int, *images: np.ndarray) -> tuple[list[np.ndarray], tuple[slice, ...]]:
    """``images`` (of one shape) padded on both sides by repeating their border wherever an axis has fewer than
    ``least`` voxels, for a library whose coarsest level or filter needs that many (a stack of ten slices), and
    the slices that crop an array on the padded grid back to the images' own."""
    import numpy as np

    shape = images[0].shape
    pad = [((need := max(0, least - n)) // 2, need - need // 2) for n in shape]
    crop = tuple(slice(before, before + n) for (before, _), n in zip(pad, shape))
    if not any(before or after for before, after in pad):
        return list(images), crop
    return [np.pad(image, pad, mode="edge") for image in images], crop
