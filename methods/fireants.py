"""``fireants-syn``: FireANTs' symmetric normalisation (Jena et al. 2024), a PyTorch SyN that runs on CPU and CUDA.

Needs FireANTs 1.5.0, installed in two steps because its wheel pins ``SimpleITK==2.2.1``, which conflicts with
regbench's ``SimpleITK>=2.3`` (pip refuses the combination; FireANTs itself runs with SimpleITK 2.5)::

    pip install "regbench[fireants]"              # FireANTs' run-time dependencies
    pip install --no-deps "fireants==1.5.0"       # FireANTs without its SimpleITK pin

Without it the method is left out of ``--methods '*'`` and naming it is one error with those commands.

Settings (keyword options): ``scales`` (4, 2, 1) and ``iterations`` (200, 100, 50) per level, ``loss``
(``cc``, local cross-correlation with a ``cc_kernel_size`` window of 5 pixels; or ``mi``, ``mse``), Adam with
``lr`` 0.5, ``smooth_grad_sigma`` 1.0 and ``smooth_warp_sigma`` 0.5 pixels (FireANTs' example settings for
SyN), ``device`` (``auto``: CUDA where present, else CPU).

Convention: FireANTs returns the moved coordinates of every fixed pixel in the moving image's normalised
[-1, 1] coordinates, x (the last array axis) first, corners aligned. regbench converts them to a displacement
in voxels, channel k along array axis k, and moves the image and the labels with its own warper (linear,
nearest); 2-D and 3-D. In 3-D, FireANTs 1.5.0 (CPU, without its fused CUDA ops) hardly moves on a grid that
is not a cube: a 1.5-voxel shift of a smooth 16 × 32 × 32 volume came back as (0.0, 0.2, 0.3) voxels, of a
32³ one as (1.5, 1.5, 1.5) and its own moved image agreed. So a non-cubic volume is resampled (trilinear,
corners aligned) onto a cube of its longest side, registered there, and the normalised coordinates, which do
not depend on the grid, are sampled back at the volume's voxels (that shift then came back as 1.5 ± 0.04;
tested). FireANTs' ``scales`` then shrink every axis of the cube alike; the test checks that
this reproduces FireANTs' own moved image. SyN's forward map composes the forward half-warp with the inverse
of the reverse half-warp, which FireANTs computes by a short optimisation of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interface import Registration, validate_images
from ..registry import MethodMeta, register_method
from ..warp import resize_volume, warp


def _import_fireants() -> tuple[Any, Any, Any]:
    """FireANTs' classes, imported quietly: on import it prints its fused-ops status, logs warnings about them
    and adds a handler to the root logger; the handler is removed again, the messages are dropped."""
    root_handlers = list(logging.root.handlers)
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from fireants.io.image import BatchedImages, Image
            from fireants.registration.syn import SyNRegistration
    finally:
        logging.disable(logging.NOTSET)
        logging.root.handlers[:] = root_handlers
    for name in list(logging.root.manager.loggerDict):  # its modules set their own loggers to INFO
        if name.split(".")[0] == "fireants":
            logging.getLogger(name).setLevel(logging.ERROR)
    return Image, BatchedImages, SyNRegistration


@register_method(
    "fireants-syn",
    MethodMeta(
        display_name="FireANTs SyN",
        dims=(2, 3),
        requires=("fireants",),
        install_hint='pip install "regbench[fireants]" && pip install --no-deps "fireants==1.5.0" (FireANTs pins SimpleITK==2.2.1, which regbench\'s SimpleITK>=2.3 excludes)',
    ),
)
class FireANTsSyN:
    """FireANTs SyN; every setting is a keyword option."""

    name = "fireants-syn"
    parallel_safe = True  # on CPU; on CUDA the runner evaluates it in the main process (an instance's own say)

    def __init__(
        self,
        scales: Sequence[float] = (4, 2, 1),
        iterations: Sequence[int] = (200, 100, 50),
        loss: str = "cc",
        cc_kernel_size: int = 5,
        lr: float = 0.5,
        smooth_grad_sigma: float = 1.0,
        smooth_warp_sigma: float = 0.5,
        device: str = "auto",
    ) -> None:
        from ..trainer import resolve_device

        self.scales = [float(s) for s in scales]
        self.iterations = [int(i) for i in iterations]
        if len(self.scales) != len(self.iterations) or not self.scales:
            raise ValueError(f"fireants-syn needs one iteration count per scale, got scales {list(scales)} and iterations {list(iterations)}")
        if loss not in ("cc", "mi", "mse"):
            raise ValueError(f"fireants-syn loss must be 'cc', 'mi' or 'mse', got {loss!r}")
        self.loss = loss
        self.cc_kernel_size = int(cc_kernel_size)
        self.lr = float(lr)
        self.smooth_grad_sigma = float(smooth_grad_sigma)
        self.smooth_warp_sigma = float(smooth_warp_sigma)
        self.device = resolve_device(device)
        self.parallel_safe = self.device.type == "cpu"

    def options(self) -> dict[str, Any]:
        keys = ("scales", "iterations", "loss", "cc_kernel_size", "lr", "smooth_grad_sigma", "smooth_warp_sigma")
        return {**{k: getattr(self, k) for k in keys}, "device": str(self.device)}

    def _registration(self, fixed: np.ndarray, moving: np.ndarray) -> tuple[Any, Any, Any]:
        import SimpleITK as sitk

        Image, BatchedImages, SyNRegistration = _import_fireants()

        def batch(array: np.ndarray) -> Any:
            return BatchedImages([Image(sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32)), device=str(self.device))])

        fixed_batch, moving_batch = batch(fixed), batch(moving)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            registration = SyNRegistration(
                self.scales,
                self.iterations,
                fixed_batch,
                moving_batch,
                loss_type=self.loss,
                cc_kernel_size=self.cc_kernel_size,
                optimizer="Adam",
                optimizer_lr=self.lr,
                smooth_grad_sigma=self.smooth_grad_sigma,
                smooth_warp_sigma=self.smooth_warp_sigma,
                progress_bar=False,
            )
            registration.optimize()
        return registration, fixed_batch, moving_batch

    @staticmethod
    def coordinates_to_flow(coordinates: np.ndarray) -> np.ndarray:
        """(*shape, ndim) normalised moving-image coordinates (x, the last array axis, first; corners aligned) ->
        (ndim, *shape) voxel flow, channel k along array axis k. 2-D and 3-D."""
        shape = coordinates.shape[:-1]
        ndim = len(shape)
        grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
        return np.stack([(coordinates[..., ndim - 1 - k] + 1) / 2 * (shape[k] - 1) - grid[k] for k in range(ndim)]).astype(np.float32)

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=(2, 3))
        import torch

        cube = fixed.ndim == 3 and len(set(fixed.shape)) > 1
        if cube:  # FireANTs 1.5.0 hardly moves on a 3-D grid that is not a cube (see the module's docstring)
            side = (max(fixed.shape),) * 3  # the same normalised coordinates: its answer on the cube is its answer here
            registration, fixed_batch, moving_batch = self._registration(resize_volume(fixed, side), resize_volume(moving, side))
        else:
            registration, fixed_batch, moving_batch = self._registration(fixed, moving)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            coordinates = registration.get_warped_coordinates(fixed_batch, moving_batch)[0].detach().cpu().numpy()
        if cube:  # normalised coordinates do not depend on the grid: sample them back at the volume's voxels
            coordinates = np.moveaxis(resize_volume(np.moveaxis(coordinates, -1, 0), fixed.shape), 0, -1)
        flow = self.coordinates_to_flow(coordinates)
        return Registration(moved=warp(moving, flow), flow=flow)
