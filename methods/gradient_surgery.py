"""Gradient surgery between the similarity and smoothness gradients (GSMorph, MICCAI 2023, Algorithm 1).

- ``gsmorph`` — LayerwiseProjection: per parameter tensor ("layer"; conv weight, conv bias, BN weight and BN
  bias are separate groups, 75 in the U-Net), if ⟨g_sim, g_reg⟩ < 0 then g = g_sim − ⟨g_sim,g_reg⟩/‖g_reg‖²·g_reg,
  else g = g_sim. g_reg itself is never added.
- ``gs-pcgrad`` — GlobalProjection: the same one-sided rule on the whole network's flattened gradient.
- ``gs-agr`` — AgreementRandom: per element, keep g_sim where sign(g_sim) = sign(g_reg); elsewhere Gaussian noise
  with standard deviation = mean |g_sim| over all elements of the network (the reference code's scale).

Each combiner also reports its conflict share: the fraction of groups (layer-wise), of the network (global:
0 or 1) or of elements (agreement) where the two gradients conflicted. It stays on the device.
"""

from __future__ import annotations

from typing import Any

import torch

from ..deep import DeepRegistration, deep_option_names, settings_from_options
from ..registry import register_method

EPS = 1e-20


class LayerwiseProjection:
    needs_separate_gradients = True

    def __call__(self, g_sim: list[torch.Tensor], g_reg: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        dots = torch.stack([(s * r).sum() for s, r in zip(g_sim, g_reg)])
        norms = torch.stack([(r * r).sum() for r in g_reg])
        conflict = dots < 0
        coef = torch.where(conflict, dots / norms.clamp_min(EPS), torch.zeros_like(dots))
        return [s - c * r for s, r, c in zip(g_sim, g_reg, coef)], conflict.float().mean()


class GlobalProjection:
    needs_separate_gradients = True

    def __call__(self, g_sim: list[torch.Tensor], g_reg: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        dot = sum((s * r).sum() for s, r in zip(g_sim, g_reg))
        norm = sum((r * r).sum() for r in g_reg)
        conflict = dot < 0
        coef = torch.where(conflict, dot / norm.clamp_min(EPS), torch.zeros_like(dot))
        return [s - coef * r for s, r in zip(g_sim, g_reg)], conflict.float()


class AgreementRandom:
    needs_separate_gradients = True

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None  # the trainer hands over its seeded noise generator

    def __call__(self, g_sim: list[torch.Tensor], g_reg: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        total = sum(s.numel() for s in g_sim)
        scale = sum(s.abs().sum() for s in g_sim) / total
        out, disagree = [], 0
        for s, r in zip(g_sim, g_reg):
            agree = torch.sign(s) == torch.sign(r)
            noise = torch.randn(s.shape, generator=self.generator, device=s.device, dtype=s.dtype) * scale
            out.append(torch.where(agree, s, noise))
            disagree = disagree + (~agree).sum()
        return out, disagree / total


COMBINERS = {"gsmorph": LayerwiseProjection, "gs-pcgrad": GlobalProjection, "gs-agr": AgreementRandom}
DISPLAY_NAMES = {"gsmorph": "GSMorph", "gs-pcgrad": "GS-PCGrad", "gs-agr": "GS-Agr"}


def _factory(name: str, combiner: type):
    def make(device: str = "auto", progress: bool = False, **train_options: Any) -> DeepRegistration:
        return DeepRegistration(name, combiner(), settings_from_options(train_options), device=device, progress=progress)

    make.__doc__ = f"{name}: the paper's U-Net trained with {combiner.__name__}; options: device and TrainSettings fields."
    make.profile_options = DeepRegistration.profile_options  # type: ignore[attr-defined]
    make.option_names = deep_option_names()  # type: ignore[attr-defined]
    make.display_name = DISPLAY_NAMES[name]  # type: ignore[attr-defined]
    return make


for _name, _combiner in COMBINERS.items():
    register_method(_name)(_factory(_name, _combiner))
