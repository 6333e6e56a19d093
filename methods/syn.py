"""``syn``: ANTsPy's symmetric normalisation (Avants et al. 2008) as a plugin.

Defaults: ``SyNOnly`` (no affine stage: the pairs are crops centred on the heart of the same acquisition,
so an affine stage would only absorb part of the cardiac contraction; pass ``transform="SyN"`` for affine +
SyN), gradient step 0.2, flow σ 3, total σ 0, iterations (40, 20, 0) over three levels (ANTsPy's defaults:
the full-resolution level only resamples); ANTsPy derives the levels' shrink factors (4, 2, 1) and smoothing
σ (2, 1, 0 voxels) from the number of levels. The metric depends on the images' dimension
(:data:`DEFAULT_METRIC`): on 2-D slices the neighbourhood cross-correlation of radius 4 that the ANTs
documentation gives for images of one modality (antsRegistrationSyN.sh's SyN stage, ANTsPy's ``SyNCC``); on
volumes Mattes mutual information with 32 bins, dense sampling. Measured (docs/methods.md, "SyN's metric"):
on real short-axis cine slices CC closes SyN's gap to Demons, on the thin synthetic stacks (10 slices 10 mm
apart, where a radius of 4 spans most of the stack) Mattes is the better and cheaper one. ``sampling`` is
the metric's parameter: the radius for ``CC`` (default 4), the number of bins for ``mattes`` (default 32).
Repeatable: dense sampling has no random draw, and ITK runs with ``threads`` threads (default 1) and
``--random-seed`` from ``seed``. Every ANTs output goes to a private temporary directory that is removed
after the call, so nothing is left behind in the system temp directory.

ANTs writes the displacement with component k along ANTsPy's array axis k, in physical units. regbench builds
the ANTs images with unit spacing (``register``, and every isotropic pair), or, for an anisotropic pair (the
runner passes it through ``register_pair``), with its spacing in units of the finest axis, so that ANTs shrinks
the coarse axis only once the fine ones have caught up (its own per-axis rule; :mod:`regbench.pyramid`); each
component is divided by its axis's relative spacing, which gives regbench's flow in voxels, 2-D and 3-D (the
smoothing σ stay ANTs' voxel units). With an affine stage, the transforms are composed into one displacement
field first.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, relative_spacing, voxel_flow
from ..registry import MethodMeta, register_method

#: The similarity metrics ANTsPy's ``syn_metric`` takes.
METRICS = ("CC", "mattes", "meansquares", "demons")
#: The metric by image dimension, where none is given; its parameter, where none is given: radius 4 for CC
#: (antsRegistrationSyN.sh's), 32 bins otherwise (ANTsPy's).
DEFAULT_METRIC: dict[int, str] = {2: "CC", 3: "mattes"}


def default_metric(dims: int) -> str:
    """:data:`DEFAULT_METRIC` for ``dims``-D images."""
    return DEFAULT_METRIC[3 if dims == 3 else 2]


def default_options(profile: str, dims: int = 2) -> dict[str, Any]:
    """The dimension's metric as an explicit option, so that a run directory binds it: results computed under
    another metric are refused rather than mixed in."""
    return {"metric": default_metric(dims)}


# Wraps a C++ library: its cases run in a worker process, so a crash fails the case, not the run.
@register_method("syn", MethodMeta(display_name="SyN", isolate_cases=True, dims=(2, 3), profile_options=default_options))
class AntsSyN(SpacingAware):
    """ANTsPy SyN; every setting is a keyword option."""

    name = "syn"

    def __init__(
        self,
        transform: str = "SyNOnly",
        metric: str | None = None,
        sampling: int | None = None,
        iterations: Sequence[int] = (40, 20, 0),
        grad_step: float = 0.2,
        flow_sigma: float = 3.0,
        total_sigma: float = 0.0,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        if transform not in ("SyNOnly", "SyN"):
            raise ValueError(f"syn transform must be 'SyNOnly' or 'SyN', got {transform!r}")
        self.transform = transform
        if metric is not None and metric not in METRICS:
            raise ValueError(f"syn metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.sampling = None if sampling is None else int(sampling)
        self.iterations = tuple(int(i) for i in iterations)
        self.grad_step = float(grad_step)
        self.flow_sigma = float(flow_sigma)
        self.total_sigma = float(total_sigma)
        self.threads = int(threads)
        self.seed = int(seed)

    def metric_for(self, dims: int) -> tuple[str, int]:
        """The metric and its parameter on ``dims``-D images: those given, else :data:`DEFAULT_METRIC`'s."""
        metric = self.metric or default_metric(dims)
        return metric, self.sampling if self.sampling is not None else (4 if metric == "CC" else 32)

    def options(self) -> dict[str, Any]:
        """What it runs with (the manifest's resolved options): the metric's parameter filled in where the metric
        is known, as it is in every run (the dimension's, or the one given); without one it depends on the images."""
        keys = ("transform", "metric", "sampling", "iterations", "grad_step", "flow_sigma", "total_sigma", "threads", "seed")
        resolved = {k: getattr(self, k) for k in keys}
        if self.metric is not None:
            resolved["sampling"] = self.metric_for(2)[1]  # the metric is given: its parameter is the same in 2-D and 3-D
        return resolved

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=(2, 3))
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.threads)
        import ants

        metric, sampling = self.metric_for(fixed.ndim)
        relative = relative_spacing(spacing, fixed.ndim)
        f_img, m_img = ants.from_numpy(fixed, spacing=relative), ants.from_numpy(moving, spacing=relative)
        previous_seed = ants.config._random_seed
        with tempfile.TemporaryDirectory(prefix="regbench-syn-") as tmp:
            try:
                ants.config._random_seed = self.seed  # ANTsPy passes it on as --random-seed
                out = ants.registration(
                    f_img,
                    m_img,
                    type_of_transform=self.transform,
                    outprefix=os.path.join(tmp, "syn_"),
                    syn_metric=metric,
                    syn_sampling=sampling,
                    reg_iterations=self.iterations,
                    grad_step=self.grad_step,
                    flow_sigma=self.flow_sigma,
                    total_sigma=self.total_sigma,
                    aff_metric=metric if metric in ("mattes", "meansquares") else "mattes",  # the affine stage's metrics
                    verbose=False,
                )
            finally:
                ants.config._random_seed = previous_seed
            transforms = out["fwdtransforms"]
            field_path = transforms[0] if len(transforms) == 1 else ants.apply_transforms(f_img, m_img, transforms, compose=os.path.join(tmp, "comp_"))
            field = ants.image_read(field_path)  # read into memory before the directory goes
        flow = voxel_flow(field.numpy(), relative, x_first=False)  # component k along array axis k already
        moved = out["warpedmovout"].numpy().astype(np.float32)

        def warp_label(label: np.ndarray) -> np.ndarray:
            """ANTs' own genericLabel interpolation through the same displacement field."""
            with tempfile.TemporaryDirectory(prefix="regbench-syn-") as tmp:
                path = os.path.join(tmp, "warp.nii.gz")
                ants.image_write(field, path)
                warped = ants.apply_transforms(f_img, ants.from_numpy(label.astype(np.float32), spacing=relative), [path], interpolator="genericLabel")
            return np.rint(warped.numpy()).astype(label.dtype)

        return Registration(moved=moved, flow=flow, label_warper=warp_label)
