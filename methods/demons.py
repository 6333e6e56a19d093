"""``demons`` and ``demons-fastsym``: SimpleITK's demons family (Vercauteren et al. 2009) as plugins.

Multi-resolution: at each level, both images are smoothed (σ = shrink/2 pixels) and shrunk, the displacement
field from the coarser level is resampled as the initial field, and the filter runs its iterations. The
field is smoothed after each iteration with ``smoothing_sigma`` pixels (a Gaussian on the displacement, the
diffeomorphic demons' "fluid-elastic" regulariser is ``update_sigma``). 2-D and 3-D alike: images are built
with unit spacing, so SimpleITK's displacement (physical units, x, the last array axis, first) is regbench's
flow in voxels with its channels reversed. On an anisotropic pair (the runner passes the spacing through
``register_pair``) a level shrinks the coarse axis only once the fine ones have caught up
(:mod:`regbench.pyramid`; e.g. 10 × 4 × 4 mm voxels, factor 2: (1, 2, 2)) and the field's σ is the same in mm
along every axis; isotropic pairs shrink and smooth every axis alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, relative_spacing, shrink_factors
from ..registry import MethodMeta, register_method

VARIANTS = {
    "diffeomorphic": sitk.DiffeomorphicDemonsRegistrationFilter,
    "fastsymmetric": sitk.FastSymmetricForcesDemonsRegistrationFilter,
    "classic": sitk.DemonsRegistrationFilter,
}


def _image(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))


def _smooth_along(image: sitk.Image, factors: Sequence[int]) -> sitk.Image:
    """A Gaussian of σ = factor/2 voxels along each array axis whose factor is above 1 (ITK counts x first)."""
    for axis, factor in enumerate(factors):
        if factor > 1:
            image = sitk.RecursiveGaussian(image, factor / 2.0, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, len(factors) - 1 - axis)
    return image


class SimpleITKDemons(SpacingAware):
    """Demons registration with a coarse-to-fine schedule; every setting is a keyword option."""

    name = "demons"  # the registered name (demons, demons-fastsym) is set by the factory

    def __init__(
        self,
        variant: str = "diffeomorphic",
        iterations: Sequence[int] = (30, 10),
        shrink_factors: Sequence[int] = (2, 1),
        smoothing_sigma: float = 2.0,
        update_sigma: float = 0.0,
        max_step_length: float = 2.0,
        threads: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"demons variant {variant!r} is not one of {sorted(VARIANTS)}")
        if len(iterations) != len(shrink_factors):
            raise ValueError(f"iterations {tuple(iterations)} and shrink_factors {tuple(shrink_factors)} need one entry per level")
        self.variant = variant
        self.iterations = tuple(int(i) for i in iterations)
        self.shrink_factors = tuple(int(s) for s in shrink_factors)
        self.smoothing_sigma = float(smoothing_sigma)
        self.update_sigma = float(update_sigma)
        self.max_step_length = float(max_step_length)
        self.threads = threads

    def _filter(self, iterations: int, spacing: Sequence[float] | None, ndim: int) -> Any:
        f: Any = VARIANTS[self.variant]()
        f.SetNumberOfIterations(iterations)
        f.SetSmoothDisplacementField(self.smoothing_sigma > 0)
        if spacing is None:
            f.SetStandardDeviations(self.smoothing_sigma or 1.0)
        else:  # the same σ in mm along every axis: fewer voxels along the coarse one (x first for ITK)
            f.SetStandardDeviations([(self.smoothing_sigma or 1.0) / s for s in relative_spacing(spacing, ndim)[::-1]])
        f.SetSmoothUpdateField(self.update_sigma > 0)
        f.SetUpdateFieldStandardDeviations(self.update_sigma or 1.0)
        if hasattr(f, "SetMaximumUpdateStepLength"):
            f.SetMaximumUpdateStepLength(self.max_step_length)
        if self.threads:
            f.SetNumberOfThreads(self.threads)
        return f

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=DIMS)
        ndim = fixed.ndim
        f_img, m_img = _image(fixed), _image(moving)
        field: sitk.Image | None = None
        for shrink, iterations in zip(self.shrink_factors, self.iterations):
            per_axis = shrink_factors(shrink, spacing, ndim)
            if spacing is not None and shrink > 1:  # σ = factor/2 along each shrunk axis only
                f_lvl, m_lvl = (sitk.Shrink(_smooth_along(img, per_axis), per_axis[::-1]) for img in (f_img, m_img))
            elif shrink > 1:
                f_lvl = sitk.Shrink(sitk.SmoothingRecursiveGaussian(f_img, shrink / 2.0), [shrink] * ndim)
                m_lvl = sitk.Shrink(sitk.SmoothingRecursiveGaussian(m_img, shrink / 2.0), [shrink] * ndim)
            else:
                f_lvl, m_lvl = f_img, m_img
            # Levels share physical space (Shrink keeps the origin of pixel centres and scales the spacing),
            # so the previous field resamples onto this grid and keeps its (physical = full-res pixel) units.
            initial = (
                sitk.Resample(field, f_lvl, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
                if field is not None
                else sitk.Image(f_lvl.GetSize(), sitk.sitkVectorFloat64, ndim)
            )
            initial.CopyInformation(f_lvl)
            field = self._filter(iterations, spacing, ndim).Execute(f_lvl, m_lvl, initial)
        assert field is not None
        if field.GetSize() != f_img.GetSize():
            field = sitk.Resample(field, f_img, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat64)
        xyz = sitk.GetArrayFromImage(field)  # (*shape, ndim), components x first (the last array axis)
        flow = np.moveaxis(xyz, -1, 0)[::-1].astype(np.float32)  # channel k along array axis k
        transform = sitk.DisplacementFieldTransform(sitk.Image(field))
        moved = sitk.GetArrayFromImage(sitk.Resample(m_img, f_img, transform, sitk.sitkLinear, 0.0))

        def warp_label(label: np.ndarray) -> np.ndarray:
            img = sitk.GetImageFromArray(np.ascontiguousarray(label))
            return sitk.GetArrayFromImage(sitk.Resample(img, f_img, transform, sitk.sitkNearestNeighbor, 0))

        return Registration(moved=moved.astype(np.float32), flow=flow, label_warper=warp_label)

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("variant", "iterations", "shrink_factors", "smoothing_sigma", "update_sigma", "max_step_length")}


_OPTION_NAMES = frozenset(inspect.signature(SimpleITKDemons).parameters) - {"variant"}
# Wraps a C++ library: its cases run in a worker process, so a crash fails the case, not the run.
DIMS = (2, 3)
_META = dict(option_names=_OPTION_NAMES, isolate_cases=True, dims=DIMS)


@register_method("demons", MethodMeta(display_name="Demons", **_META))
def demons(**options: Any) -> SimpleITKDemons:
    """Diffeomorphic demons (SimpleITK), two levels (shrink 2, 1), 30 + 10 iterations, field σ 2 px."""
    m = SimpleITKDemons(**{"variant": "diffeomorphic", **options})
    m.name = "demons"
    return m


@register_method("demons-fastsym", MethodMeta(display_name="Demons (fast symmetric)", **_META))
def demons_fastsym(**options: Any) -> SimpleITKDemons:
    """Fast symmetric forces demons (SimpleITK), same schedule as ``demons``."""
    m = SimpleITKDemons(**{"variant": "fastsymmetric", **options})
    m.name = "demons-fastsym"
    return m
