"""``voxelmorph-s/-m/-l``: the paper's U-Net trained on sim + λ·smooth (λ = 0.001, 0.01, 0.1).

``voxelmorph-diff`` (beyond the paper): the diffeomorphic variant (Dalca et al., MICCAI 2018). The same U-Net
predicts a stationary velocity field v, integrated by scaling and squaring (``integration_steps`` = 7: v/2⁷,
then seven self-compositions φ ← φ + φ∘φ with regbench's one warper); the similarity is taken on the image
moved by the integrated flow and the smoothness on v. Training is the one trainer with VoxelMorph's
weighted-sum combiner (λ = ``lam``, default 0.01 as VoxelMorph-m); only the objective differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..deep import DeepRegistration, RegistrationNet, deep_meta, settings_from_options
from ..registry import register_method
from ..trainer import SIMILARITY, smoothness_loss

LAMBDAS = {"voxelmorph-s": 0.001, "voxelmorph-m": 0.01, "voxelmorph-l": 0.1}
DISPLAY_NAMES = {"voxelmorph-s": "VoxelMorph-s", "voxelmorph-m": "VoxelMorph-m", "voxelmorph-l": "VoxelMorph-l"}


class WeightedSum:
    """g = g_sim + λ·g_reg. Needs no separate gradients: the trainer backpropagates sim + λ·reg once."""

    needs_separate_gradients = False

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)

    def __call__(self, g_sim: list[torch.Tensor], g_reg: list[torch.Tensor]) -> tuple[list[torch.Tensor], None]:
        return [s + self.weight * r for s, r in zip(g_sim, g_reg)], None


def _factory(name: str, weight: float):
    def make(device: str = "auto", progress: bool = False, lam: float = weight, **train_options: Any) -> DeepRegistration:
        return DeepRegistration(name, WeightedSum(lam), settings_from_options(train_options), device=device, progress=progress)

    make.__doc__ = f"VoxelMorph with λ = {weight} (smoothness weight); options: lam, device, and TrainSettings fields."
    return make


for _name, _weight in LAMBDAS.items():
    # One family in the figures: the three λ points joined from the smallest λ to the largest.
    register_method(_name, deep_meta(DISPLAY_NAMES[_name], {"lam"}, family=("VoxelMorph λ (s→m→l)", _weight)))(_factory(_name, _weight))


@register_method("voxelmorph", deep_meta("VoxelMorph λ", set(), family=("VoxelMorph λ grid", 0.0), tagged=True, family_value_from_tag=True))
def voxelmorph_at(tag: str, device: str = "auto", progress: bool = False, **train_options: Any) -> DeepRegistration:
    """VoxelMorph at the λ its name gives: ``voxelmorph.1e-3`` is λ = 0.001 (a λ grid is one row per λ, one
    family in the trade-off table and figure). Options: device and TrainSettings fields."""
    return DeepRegistration("voxelmorph", WeightedSum(float(tag)), settings_from_options(train_options), device=device, progress=progress)


# ------------------------------------------------------------------------------------------ voxelmorph-diff
INTEGRATION_STEPS = 7


def integrate_velocity(velocity: torch.Tensor, transformer: torch.nn.Module, steps: int = INTEGRATION_STEPS) -> torch.Tensor:
    """Scaling and squaring: exp(v) ≈ (φ_{v/2^steps})^(2^steps), a displacement in voxels, channel k along
    axis k (2-D or 3-D: the warper takes either)."""
    flow = velocity / (2**steps)
    for _ in range(steps):
        flow = flow + transformer(flow, flow)
    return flow


class DiffeomorphicNet(RegistrationNet):
    """The paper's U-Net predicting a velocity field; ``forward`` returns the integrated displacement, so
    inference (``DeepRegistration.register``) is unchanged."""

    def __init__(self, steps: int = INTEGRATION_STEPS, dims: int = 2) -> None:
        super().__init__(dims)
        self.steps = int(steps)

    def velocity(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.unet(moving, fixed)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return integrate_velocity(self.velocity(moving, fixed), self.transformer, self.steps)


@dataclass
class VelocityObjective:
    """sim(moving ∘ exp(v), fixed) and smooth(v); the combiner weights them (λ)."""

    similarity: str = "mse"
    smoothness: str = "l1"
    weighted_by_combiner = True  # DeepRegistration.options records the combiner's weight as lam

    def __call__(self, model: DiffeomorphicNet, moving: torch.Tensor, fixed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        velocity = model.velocity(moving, fixed)
        flow = integrate_velocity(velocity, model.transformer, model.steps)
        moved = model.transformer(moving, flow)
        return SIMILARITY[self.similarity](moved, fixed), smoothness_loss(velocity, self.smoothness)


class DiffeomorphicRegistration(DeepRegistration):
    """voxelmorph-diff: DeepRegistration with the velocity network and objective."""

    def __init__(self, lam: float, steps: int, settings: Any, device: str = "auto", progress: bool = False) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"voxelmorph-diff integration_steps must be a positive integer, got {steps!r}")
        objective = VelocityObjective(settings.similarity, settings.smoothness)
        build = partial(DiffeomorphicNet, steps)
        super().__init__("voxelmorph-diff", WeightedSum(lam), settings, device=device, build_model=build, objective=objective, progress=progress)
        self.steps = steps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "integration_steps": self.steps}


@register_method("voxelmorph-diff", deep_meta("VoxelMorph-diff", {"lam", "integration_steps"}))
def voxelmorph_diff(
    device: str = "auto", progress: bool = False, lam: float = 0.01, integration_steps: int = INTEGRATION_STEPS, **train_options: Any
) -> DeepRegistration:
    """Diffeomorphic VoxelMorph: velocity field, scaling and squaring; options: lam, integration_steps,
    device, and TrainSettings fields."""
    return DiffeomorphicRegistration(lam, integration_steps, settings_from_options(train_options), device=device, progress=progress)
