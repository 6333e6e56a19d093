"""``convexadam``: ConvexAdam (Siebert, Hansen, Heinrich 2021; Learn2Reg 2021 and 2022 winner), MIND-SSC features,
a coupled convex optimisation over a discrete displacement search, then Adam instance optimisation with a
diffusion penalty, through the ``convexadam`` package (Apache-2.0, PyTorch, CPU or CUDA). 3-D only.

Needs the extra: ``pip install "regbench[convexadam]"``; without it the method is left out of ``--methods '*'``
and naming it is one error with that command.

Defaults are ``convex_adam_pt``'s (the package's own, its command line's too): MIND radius 1 and dilation 2
(``mind_r``, ``mind_d``), a convex stage on a grid of 6 voxels (``grid_sp``) searching ±4 grid steps
(``disp_hw``), inverse consistency (``ic``), then 80 Adam steps (``iterations``, the package's
``selected_niter``) on a grid of 2 voxels (``grid_sp_adam``) with the diffusion penalty's weight 1.25
(``lambda_weight``; 0 skips the Adam stage) and no final smoothing (``smooth``, the package's
``selected_smooth``, an odd kernel size). ``device`` (``auto``: CUDA where present, else CPU); float16 on CUDA as
the package does, float32 on the CPU (the package's own fall-back). Deterministic on the CPU: nothing is drawn
at random.

Convention: ConvexAdam returns a displacement in voxels, component k along array axis k, such that the moving
image sampled at p + d(p) matches the fixed image at p (Learn2Reg's convention): regbench's ``moved(p) =
moving(p + flow(p))`` as it is. It assumes isotropic voxels (Learn2Reg's tasks are resampled to them), so an
anisotropic pair (the runner passes it through ``register_pair``) is resampled, trilinear with corners aligned,
onto a grid of its finest spacing, registered there, and the field sampled back at the pair's voxels with each
component rescaled into them (the test checks a known shift through it). Its correlation needs three coarse
cells along each axis, so a volume with an axis under ``3 × grid_sp`` voxels is padded there on both sides by
repeating its border, and the field cropped back. regbench's warper moves the image and the labels with the flow.

The package calls ``warnings.filterwarnings("ignore")`` when it is imported, which would silence every warning
of the run; regbench restores the filters it found, and ignores only the package's own warnings during a call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, pad_short_axes, relative_spacing
from ..registry import MethodMeta, register_method
from ..warp import resize_volume, warp

DIMS = (3,)


def _import_convex_adam() -> Callable[..., np.ndarray]:
    """``convex_adam_pt``, imported with the process's warning filters left as they were."""
    filters = list(warnings.filters)
    try:
        from convexAdam.convex_adam_MIND import convex_adam_pt
    finally:
        warnings.filters[:] = filters  # type: ignore[index]  # a list at run time; typeshed says Sequence
    return convex_adam_pt


@register_method(
    "convexadam",
    MethodMeta(display_name="ConvexAdam", requires=("convexadam",), install_hint='pip install "regbench[convexadam]"', dims=DIMS),
)
class ConvexAdam(SpacingAware):
    """ConvexAdam; every setting is a keyword option."""

    name = "convexadam"
    parallel_safe = True  # on CPU; on CUDA the runner evaluates it in the main process (an instance's own say)

    def __init__(
        self,
        mind_r: int = 1,
        mind_d: int = 2,
        lambda_weight: float = 1.25,
        grid_sp: int = 6,
        disp_hw: int = 4,
        iterations: int = 80,
        smooth: int = 0,
        grid_sp_adam: int = 2,
        ic: bool = True,
        device: str = "auto",
    ) -> None:
        from ..trainer import resolve_device

        for option, value, least in (
            ("mind_r", mind_r, 1),
            ("mind_d", mind_d, 1),
            ("grid_sp", grid_sp, 1),
            ("disp_hw", disp_hw, 1),
            ("iterations", iterations, 0),
            ("smooth", smooth, 0),
            ("grid_sp_adam", grid_sp_adam, 1),
        ):
            if not (isinstance(value, (int, np.integer)) and value >= least):
                raise ValueError(f"convexadam {option} must be a whole number of at least {least}, got {value!r}")
        if smooth and smooth % 2 == 0:
            raise ValueError(f"convexadam smooth must be 0 (none) or an odd kernel size, got {smooth!r}")
        if not lambda_weight >= 0:
            raise ValueError(f"convexadam lambda_weight must be 0 or more, got {lambda_weight!r}")
        self.mind_r, self.mind_d, self.grid_sp, self.disp_hw = int(mind_r), int(mind_d), int(grid_sp), int(disp_hw)
        self.lambda_weight = float(lambda_weight)
        self.iterations, self.smooth, self.grid_sp_adam = int(iterations), int(smooth), int(grid_sp_adam)
        self.ic = bool(ic)
        self.device = resolve_device(device)
        self.parallel_safe = self.device.type == "cpu"

    def options(self) -> dict[str, Any]:
        keys = ("mind_r", "mind_d", "lambda_weight", "grid_sp", "disp_hw", "iterations", "smooth", "grid_sp_adam", "ic")
        return {**{k: getattr(self, k) for k in keys}, "device": str(self.device)}

    def displacement(self, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
        """ConvexAdam's (3, *shape) voxel displacement for isotropic volumes, padded where an axis is too short."""
        import torch

        convex_adam_pt = _import_convex_adam()
        (fixed, moving), crop = pad_short_axes(3 * self.grid_sp, fixed, moving)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"convexAdam(\.|$)")
            field = convex_adam_pt(
                np.asarray(fixed, np.float32),
                np.asarray(moving, np.float32),
                mind_r=self.mind_r,
                mind_d=self.mind_d,
                lambda_weight=self.lambda_weight,
                grid_sp=self.grid_sp,
                disp_hw=self.disp_hw,
                selected_niter=self.iterations,
                selected_smooth=self.smooth,
                grid_sp_adam=self.grid_sp_adam,
                ic=self.ic,
                dtype=torch.float16 if self.device.type == "cuda" else torch.float32,
                device=self.device,
            )
        return np.ascontiguousarray(np.moveaxis(np.asarray(field, np.float32), -1, 0)[(slice(None),) + crop])

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=DIMS)
        relative = np.asarray(relative_spacing(spacing, fixed.ndim))
        shape = np.asarray(fixed.shape)
        grid = np.rint((shape - 1) * relative).astype(int) + 1  # the finest spacing along every axis
        if np.array_equal(grid, shape):
            flow = self.displacement(fixed, moving)
        else:
            field = self.displacement(resize_volume(fixed, tuple(grid)), resize_volume(moving, tuple(grid)))
            # sampled back at the pair's voxels; one grid voxel is (shape - 1) / (grid - 1) of the pair's
            flow = resize_volume(field, tuple(shape)) * ((shape - 1) / (grid - 1)).reshape(3, 1, 1, 1).astype(np.float32)
        flow = flow.astype(np.float32)
        return Registration(moved=warp(moving, flow), flow=flow)
