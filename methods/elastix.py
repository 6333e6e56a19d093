"""``elastix-bspline``: elastix's multi-resolution B-spline registration (Klein et al. 2010) through itk-elastix.

Needs the extra: ``pip install "regbench[elastix]"`` (the ``itk-elastix`` package); without it the method is
left out of ``--methods '*'`` and naming it is one error with that command.

The parameter map is elastix's standard B-spline map (``GetDefaultParameterMap("bspline")``: advanced Mattes
mutual information, adaptive stochastic gradient descent, a Gaussian pyramid) with these keyword options:
``grid_spacing`` (final control-point spacing in pixels, default 8), ``resolutions`` (3), ``iterations`` per
resolution (256), ``metric`` (``AdvancedMattesMutualInformation``), ``samples`` (random spatial samples per
iteration, 2048), ``final_interpolation_order`` (the B-spline order elastix resamples its moved image with,
default 1: linear, as regbench's warper and the other methods resample, so that MSE compares registrations, not
interpolators; elastix's own map's 3 resamples noise differently enough that a nearly unmoved pair's moved image
disagrees with ``warp(moving, flow)`` beyond the consistency floor and the case fails) and ``seed`` (elastix's
``RandomSeed``: the sampler is random, the seed makes it repeatable).

Convention: images are built with unit spacing, so transformix's deformation field is in pixels; it maps a
fixed-image point p to p + d(p) in the moving image, which is regbench's ``moved(p) = moving(p + flow(p))``
with ITK's x (the last array axis) first, so the channels are reversed. 2-D and 3-D. On an anisotropic pair
(the runner passes it through ``register_pair``) the images carry the spacing in units of the finest axis, so
the control points are ``grid_spacing`` finest voxels apart in mm along every axis and the pyramid schedule
spares the coarse axis (:mod:`regbench.pyramid`); the field is divided by the relative spacing back into voxels. The test checks that
regbench's warper on that flow reproduces elastix's own moved image (it resamples linearly by default).
Labels are moved by transformix with elastix's nearest-neighbour resampler. elastix and transformix write
their logs and the deformation field into a private temporary directory, removed after each call; they run
with ``threads`` threads (default 1: one per worker under ``--jobs``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, relative_spacing, shrink_factors, voxel_flow
from ..registry import MethodMeta, register_method

DIMS = (2, 3)


def itk_image(array: np.ndarray, relative: Sequence[float] | None = None) -> Any:
    """An ITK image of ``array``; ``relative``: its spacing per array axis (default 1), which ITK takes x first."""
    import itk

    image = itk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    if relative is not None:
        image.SetSpacing([float(s) for s in relative[::-1]])
    return image


# Wraps a C++ library: its cases run in a worker process, so a crash fails the case, not the run.
@register_method(
    "elastix-bspline",
    MethodMeta(display_name="elastix B-spline", isolate_cases=True, requires=("itk-elastix",), install_hint='pip install "regbench[elastix]"', dims=DIMS),
)
class ElastixBSpline(SpacingAware):
    """elastix B-spline registration; every setting is a keyword option."""

    name = "elastix-bspline"

    def __init__(
        self,
        grid_spacing: float = 8.0,
        resolutions: int = 3,
        iterations: int = 256,
        metric: str = "AdvancedMattesMutualInformation",
        samples: int = 2048,
        final_interpolation_order: int = 1,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        for option, value, least in (
            ("grid_spacing", grid_spacing, 1),
            ("resolutions", resolutions, 1),
            ("iterations", iterations, 1),
            ("samples", samples, 16),
            ("threads", threads, 1),
        ):
            if not value >= least:
                raise ValueError(f"elastix-bspline {option} must be at least {least}, got {value!r}")
        if final_interpolation_order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"elastix-bspline final_interpolation_order must be 0 to 5, got {final_interpolation_order!r}")
        self.grid_spacing = float(grid_spacing)
        self.resolutions = int(resolutions)
        self.iterations = int(iterations)
        self.metric = str(metric)
        self.samples = int(samples)
        self.final_interpolation_order = int(final_interpolation_order)
        self.threads = int(threads)
        self.seed = int(seed)

    def options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("grid_spacing", "resolutions", "iterations", "metric", "samples", "final_interpolation_order", "threads", "seed")}

    def parameter_object(self, spacing: Sequence[float] | None = None) -> Any:
        """The elastix parameter map this method runs (one B-spline stage); with an anisotropic ``spacing``, its
        pyramid schedule per axis (:func:`regbench.pyramid.shrink_factors`, x first as elastix reads it)."""
        import itk

        parameters = itk.ParameterObject.New()
        bspline = parameters.GetDefaultParameterMap("bspline", self.resolutions, self.grid_spacing)
        if spacing is not None:
            levels = [shrink_factors(2 ** (self.resolutions - 1 - level), spacing, len(spacing))[::-1] for level in range(self.resolutions)]
            schedule = [str(f) for factors in levels for f in factors]
            bspline["FixedImagePyramidSchedule"] = schedule
            bspline["MovingImagePyramidSchedule"] = schedule
        bspline["Metric"] = [self.metric]
        bspline["MaximumNumberOfIterations"] = [str(self.iterations)]
        bspline["NumberOfSpatialSamples"] = [str(self.samples)]
        bspline["RandomSeed"] = [str(self.seed)]
        bspline["FinalBSplineInterpolationOrder"] = [str(self.final_interpolation_order)]
        parameters.AddParameterMap(bspline)
        return parameters

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=DIMS)
        import itk

        relative = relative_spacing(spacing, fixed.ndim)
        fixed_image, moving_image = itk_image(fixed, relative), itk_image(moving, relative)
        with tempfile.TemporaryDirectory(prefix="regbench-elastix-") as tmp:
            elastix = itk.ElastixRegistrationMethod.New(fixed_image, moving_image)
            elastix.SetParameterObject(self.parameter_object(spacing))
            elastix.SetOutputDirectory(tmp)
            elastix.SetLogToConsole(False)
            elastix.SetNumberOfThreads(self.threads)
            elastix.UpdateLargestPossibleRegion()
            moved = np.asarray(itk.GetArrayFromImage(elastix.GetOutput()), dtype=np.float32)
            transform = elastix.GetTransformParameterObject()
            field = self._transformix(moving_image, transform, tmp, deformation=True)
        flow = voxel_flow(field, relative, x_first=True)  # ITK's components x first, in units of the finest axis

        def warp_label(label: np.ndarray) -> np.ndarray:
            """transformix with nearest-neighbour resampling, through the same transform."""
            nearest = itk.ParameterObject.New()
            for index in range(transform.GetNumberOfParameterMaps()):
                parameter_map = transform.GetParameterMap(index)
                parameter_map["ResampleInterpolator"] = ["FinalNearestNeighborInterpolator"]
                nearest.AddParameterMap(parameter_map)
            with tempfile.TemporaryDirectory(prefix="regbench-elastix-") as tmp:
                warped = self._transformix(itk_image(label, relative), nearest, tmp, deformation=False)
            return np.rint(warped).astype(label.dtype)

        return Registration(moved=moved, flow=flow, label_warper=warp_label)

    def _transformix(self, image: Any, transform: Any, directory: str, deformation: bool) -> np.ndarray:
        import itk

        transformix = itk.TransformixFilter.New(image)
        transformix.SetTransformParameterObject(transform)
        transformix.SetOutputDirectory(directory)
        transformix.SetLogToConsole(False)
        if deformation:
            transformix.ComputeDeformationFieldOn()
        transformix.UpdateLargestPossibleRegion()
        out = transformix.GetOutputDeformationField() if deformation else transformix.GetOutput()
        return np.asarray(itk.GetArrayFromImage(out), dtype=np.float32)
