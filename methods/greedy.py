"""``greedy``: PICSL's Greedy (Yushkevich et al. 2016; ITK-SNAP's registration engine), fast greedy diffeomorphic
registration on the CPU, through its Python wrapping ``picsl-greedy`` (Apache-2.0, the compiled library in the
wheel).

Needs the extra: ``pip install "regbench[greedy]"``; without it the method is left out of ``--methods '*'`` and
naming it is one error with that command.

Defaults, from Greedy's documentation (its deformable-registration example, ``-m NCC 2x2x2 -n 100x50x10``) and
its ``--help`` (everything else): normalised cross-correlation of radius 2 voxels along every axis
(``metric="NCC"``, ``radius``; or ``SSD``, ``MI``, ``NMI``), 100, 50 and 10 iterations on three levels
(``iterations``), step 1.0 (``step``, Greedy's ``-e``), Gaussian smoothing of the update and of the warp with
σ 1.732 and 0.7071 voxels (``sigmas``, Greedy's ``-s``), the pure greedy model (or ``stationary_velocity=True``:
Greedy's ``-sv``, a stationary velocity field of 2^6 self-compositions). ``threads`` (default 1: one per worker
under ``--jobs``). Greedy adds white noise of 0.001 times the intensity range to the images under NCC, drawn
from ``-seed``; its seed 0 means "stochastic", so regbench's ``seed`` (the run's, default 0) is passed as ``-seed
seed + 1`` and every run is repeatable. The warp is kept at full precision (``-wp 0``: Greedy otherwise rounds a saved warp to 0.1
voxel).

Convention: Greedy's warp maps a fixed-image point p to p + w(p) in the moving image, in physical units, ITK's x
(the last array axis) first: regbench's ``moved(p) = moving(p + flow(p))`` with the components reversed. The
images are built with unit spacing, or for an anisotropic pair (the runner passes it through ``register_pair``)
with its spacing in units of the finest axis; each component is divided by its axis's relative spacing, which
gives the flow in voxels, 2-D and 3-D. Greedy's metric radius, smoothing σ and pyramid (halving every axis) are
in voxels, so its answer does not depend on the spacing: the test checks that an anisotropic stack gives the flow
of the same voxels at unit spacing, which also checks the conversion. The moved image is Greedy's own (its ``-r`` reslicing, linear); the test checks
that regbench's warper on the flow reproduces it; labels move with regbench's nearest-neighbour warper. ITK's
recursive Gaussian needs 4 voxels along every axis of the coarsest level: a shorter axis (a stack of ten slices: 16 are needed with three levels) is padded on both sides by repeating its
border slices, and the field cropped back (measured on the synthetic stacks, 10 × 64 × 64 at 10 × 3 × 3 mm, four
test pairs: Dice 93.8 %, Initial 69.4 %, 0.6 s a pair).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, pad_short_axes, relative_spacing, voxel_flow
from ..registry import MethodMeta, register_method

DIMS = (2, 3)
METRICS = ("NCC", "SSD", "MI", "NMI")


def itk_image(array: np.ndarray, relative: Sequence[float]) -> Any:
    """A SimpleITK image of ``array`` with ``relative`` spacing per array axis (SimpleITK takes x first)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing([float(s) for s in relative[::-1]])
    return image


# Wraps a C++ library: its cases run in a worker process, so a crash fails the case, not the run.
@register_method(
    "greedy",
    MethodMeta(display_name="Greedy", isolate_cases=True, requires=("picsl-greedy",), install_hint='pip install "regbench[greedy]"', dims=DIMS),
)
class Greedy(SpacingAware):
    """Greedy deformable registration; every setting is a keyword option."""

    name = "greedy"

    def __init__(
        self,
        iterations: Sequence[int] = (100, 50, 10),
        metric: str = "NCC",
        radius: int = 2,
        step: float = 1.0,
        sigmas: Sequence[float] = (1.732, 0.7071),
        stationary_velocity: bool = False,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.iterations = [int(i) for i in iterations]
        if not self.iterations or min(self.iterations) < 0:
            raise ValueError(f"greedy iterations must be one count per level, none negative, got {list(iterations)!r}")
        if metric not in METRICS:
            raise ValueError(f"greedy metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.sigmas = [float(s) for s in sigmas]
        if len(self.sigmas) != 2 or min(self.sigmas) < 0:
            raise ValueError(f"greedy sigmas must be two values (update, warp) in voxels, none negative, got {list(sigmas)!r}")
        for option, value, least in (("radius", radius, 1), ("step", step, 1e-9), ("threads", threads, 1), ("seed", seed, 0)):
            if not value >= least:
                raise ValueError(f"greedy {option} must be at least {least:g}, got {value!r}")
        self.metric = metric
        self.radius = int(radius)
        self.step = float(step)
        self.stationary_velocity = bool(stationary_velocity)
        self.threads = int(threads)
        self.seed = int(seed)

    def options(self) -> dict[str, Any]:
        keys = ("iterations", "metric", "radius", "step", "sigmas", "stationary_velocity", "threads", "seed")
        return {k: getattr(self, k) for k in keys}

    def command(self, ndim: int) -> str:
        """The Greedy command this method runs on ``ndim``-D images (``fixed``, ``moving`` and ``warp`` name the
        in-memory images)."""
        metric = f"NCC {'x'.join([str(self.radius)] * ndim)}" if self.metric == "NCC" else self.metric
        parts = [
            "-i fixed moving",
            f"-m {metric}",
            f"-n {'x'.join(str(i) for i in self.iterations)}",
            f"-e {self.step:g}",
            f"-s {self.sigmas[0]:g}vox {self.sigmas[1]:g}vox",
            "-sv" if self.stationary_velocity else "",
            f"-seed {self.seed + 1} -threads {self.threads} -wp 0 -V 0",
            "-o warp",
        ]
        return " ".join(p for p in parts if p)

    def greedy(self, ndim: int) -> Any:
        import picsl_greedy

        return picsl_greedy.Greedy3D() if ndim == 3 else picsl_greedy.Greedy2D()

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=DIMS)
        import SimpleITK as sitk

        relative = relative_spacing(spacing, fixed.ndim)
        # ITK's recursive Gaussian needs 4 voxels along every axis of the coarsest level, shrunk 2^(levels - 1) times
        (padded_fixed, padded_moving), crop = pad_short_axes(4 * 2 ** (len(self.iterations) - 1), fixed, moving)
        greedy = self.greedy(fixed.ndim)
        log = io.StringIO()  # Greedy's own printing, kept out of the run's output
        images = {"fixed": itk_image(padded_fixed, relative), "moving": itk_image(padded_moving, relative)}
        greedy.execute(self.command(fixed.ndim), out=log, err=log, warp=None, **images)
        flow = np.ascontiguousarray(voxel_flow(sitk.GetArrayFromImage(greedy["warp"]), relative, x_first=True)[(slice(None),) + crop])
        greedy.execute(
            f"-rf fixed -ri LINEAR -rm moving moved -r warp -threads {self.threads} -V 0", out=log, err=log, moved=None, **images
        )  # its own reslicing
        moved = np.ascontiguousarray(sitk.GetArrayFromImage(greedy["moved"])[crop], dtype=np.float32)
        return Registration(moved=moved, flow=flow)
