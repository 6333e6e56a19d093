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
[-1, 1] coordinates, x (column) first, corners aligned. regbench converts them to a displacement in pixels,
rows first, and moves the image and the labels with its own warper (bilinear, nearest); the test checks that
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
from ..warp import warp


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
        """(H, W, 2) normalised moving-image coordinates (x first, corners aligned) -> (2, H, W) pixel flow, rows first."""
        h, w = coordinates.shape[:2]
        rows = (coordinates[..., 1] + 1) / 2 * (h - 1)
        cols = (coordinates[..., 0] + 1) / 2 * (w - 1)
        grid_r, grid_c = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        return np.stack([rows - grid_r, cols - grid_c]).astype(np.float32)

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        fixed, moving = validate_images(fixed, moving)
        import torch

        registration, fixed_batch, moving_batch = self._registration(fixed, moving)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            coordinates = registration.get_warped_coordinates(fixed_batch, moving_batch)[0].detach().cpu().numpy()
        flow = self.coordinates_to_flow(coordinates)
        return Registration(moved=warp(moving, flow), flow=flow)
