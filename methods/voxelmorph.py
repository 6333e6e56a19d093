"""``voxelmorph-s/-m/-l``: the paper's U-Net trained on sim + λ·smooth (λ = 0.001, 0.01, 0.1)."""

from __future__ import annotations

from typing import Any

import torch

from ..deep import DeepRegistration, deep_option_names, settings_from_options
from ..registry import register_method

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
    make.profile_options = DeepRegistration.profile_options  # type: ignore[attr-defined]
    make.option_names = deep_option_names("lam")  # type: ignore[attr-defined]
    make.display_name = DISPLAY_NAMES[name]  # type: ignore[attr-defined]
    return make


for _name, _weight in LAMBDAS.items():
    register_method(_name)(_factory(_name, _weight))
