"""``io-gsmorph`` and ``io-lambda`` (beyond the paper): each pair's flow optimised at test time, nothing trained.

GSMorph combines the similarity and smoothness gradients of a network's weights by a projection instead of a
weight λ. The same question at test time (instance optimisation; the direction of Zhang et al., arXiv 2410.15767,
Learn2Reg 2024): optimise each pair's flow directly, with the two gradients combined

- ``io-gsmorph``: by GSMorph's layer-wise projection (``LayerwiseProjection``: where the two conflict, the
  similarity gradient's component against the smoothness one is removed; the smoothness gradient is never added);
- ``io-lambda``: by VoxelMorph's weighted sum, g_sim + λ·g_reg (``WeightedSum``, ``lam``, default 0.01 as
  VoxelMorph-m), its λ counterpart.

The flow is a sum of displacement grids at ``levels`` scales from ``finest`` down (1/2^finest of full
resolution, then halving; default 1/2, 1/4, 1/8), each upsampled linearly to full size: these grids are the
"layers" the projection acts on, as a network's parameter tensors are in training. (A full-resolution grid,
``finest: 0``, lets the similarity alone fold more under either rule: on 6 synthetic test pairs, io-gsmorph NJD
7.6 % at full resolution, 3.2 % from 1/2.) Every iteration is one step of regbench's one trainer (``Trainer.step``, the objective of training:
``similarity`` of the moved image, ``smoothness`` of the flow) with AdamW at ``lr`` voxels; ``iterations`` steps
from a zero flow. The flow is in voxels, channel k along array axis k, ``moved(p) = moving(p + u(p))``. Each
registration keeps its per-step conflict shares (``history``), so a run can say how often the two gradients
disagreed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..interface import Registration
from ..nn import SpatialTransformer
from ..registry import MethodMeta, register_method
from ..trainer import PlainObjective, Trainer, TrainSettings, resolve_device
from ..warp import warp
from .gradient_surgery import LayerwiseProjection
from .voxelmorph import WeightedSum

OPTIONS = frozenset({"iterations", "lr", "levels", "finest", "similarity", "smoothness", "device", "seed"})


class PyramidFlow(torch.nn.Module):
    """A flow as the sum of displacement grids at ``levels`` scales, each upsampled linearly to full size."""

    def __init__(self, shape: tuple[int, ...], levels: int, finest: int = 0) -> None:
        super().__init__()
        self.shape = tuple(shape)
        sizes = [tuple(max(1, -(-s // 2**k)) for s in shape) for k in range(finest, finest + levels)]
        self.grids = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(1, len(shape), *size)) for size in sizes])
        self.transformer = SpatialTransformer()

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        mode = "bilinear" if len(self.shape) == 2 else "trilinear"
        flow = torch.zeros(1, len(self.shape), *self.shape, device=self.grids[0].device)
        for grid in self.grids:
            flow = flow + (grid if tuple(grid.shape[2:]) == self.shape else F.interpolate(grid, size=self.shape, mode=mode, align_corners=True))
        return flow


class InstanceOptimisation:
    """Optimises each pair's flow with a gradient combiner (see the module docstring)."""

    parallel_safe = True

    def __init__(
        self,
        name: str,
        combiner: Any,
        iterations: int = 100,
        lr: float = 0.1,
        levels: int = 3,
        finest: int = 1,
        similarity: str = "mse",
        smoothness: str = "l1",
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.name = name
        self.combiner = combiner
        self.iterations, self.levels, self.finest, self.seed = int(iterations), int(levels), int(finest), int(seed)
        self.settings = TrainSettings(lr=float(lr), similarity=similarity, smoothness=smoothness, seed=self.seed)
        self.device = resolve_device(device)
        self.history: list[float | None] = []  # the last registration's conflict share per step

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        torch.manual_seed(self.seed)
        trainer = Trainer(self.settings, self.combiner, self.device, progress=False)
        model = PyramidFlow(tuple(fixed.shape), self.levels, self.finest).to(self.device)
        params = list(model.parameters())
        optimiser = trainer.make_optimiser(params)
        objective = PlainObjective(self.settings.similarity, self.settings.smoothness)
        as_batch = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=self.device)[None, None]  # noqa: E731
        fixed_t, moving_t = as_batch(fixed), as_batch(moving)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        shares = [trainer.step(model, params, optimiser, objective, moving_t, fixed_t, generator)[2] for _ in range(self.iterations)]
        self.history = [None if share is None else float(share) for share in shares]  # read once, after the steps: no sync per step
        with torch.no_grad():
            flow = model(moving_t, fixed_t)[0].cpu().numpy().astype(np.float32)
        return Registration(warp(np.asarray(moving, np.float32), flow), flow)


def _meta(display_name: str, extra: set[str]) -> MethodMeta:
    return MethodMeta(display_name=display_name, dims=(2, 3), option_names=OPTIONS | extra)


@register_method("io-gsmorph", _meta("IO-GSMorph", set()))
def io_gsmorph(**options: Any) -> InstanceOptimisation:
    """Test-time optimisation of each pair's flow, gradients combined by GSMorph's layer-wise projection."""
    return InstanceOptimisation("io-gsmorph", LayerwiseProjection(), **options)


@register_method("io-lambda", _meta("IO-λ", {"lam"}))
def io_lambda(lam: float = 0.01, **options: Any) -> InstanceOptimisation:
    """Test-time optimisation of each pair's flow on sim + λ·smooth (λ = ``lam``), io-gsmorph's λ counterpart."""
    return InstanceOptimisation("io-lambda", WeightedSum(lam), **options)
