"""Gradient surgery between the similarity and smoothness gradients (GSMorph, MICCAI 2023, Algorithm 1).

- ``gsmorph`` — LayerwiseProjection: per parameter tensor ("layer"; conv weight, conv bias, BN weight and BN
  bias are separate groups, 75 in the U-Net), if ⟨g_sim, g_reg⟩ < 0 then g = g_sim − ⟨g_sim,g_reg⟩/‖g_reg‖²·g_reg,
  else g = g_sim. g_reg itself is never added.
- ``gs-pcgrad`` — GlobalProjection: the same one-sided rule on the whole network's flattened gradient.
- ``gs-agr`` — AgreementRandom: per element of the whole network's gradient, keep g_sim where
  sign(g_sim) = sign(g_reg) (two exact zeros agree); elsewhere Gaussian noise of standard deviation ``scale``.
  ``noise_scale`` says which scale (N: all elements of the network; A: the agreeing ones; m = agree · g_sim):

  - ``masked-mean`` (default; the authors' code, wulalago/GSMorph ``AgrRand``): Σ|m| / N, the mean over all
    elements of the masked gradient;
  - ``agreeing-mean`` (Mansilla et al. 2021's Agr-Rand): Σ|m| / |A|, the mean |g_sim| over the agreeing elements;
  - ``mean``: Σ|g_sim| / N, unmasked (what regbench used before; larger by about N / |A| than the authors').

Each combiner also reports its conflict share: the fraction of groups (layer-wise), of the network (global:
0 or 1) or of elements (agreement) where the two gradients conflicted. It stays on the device.
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import torch

from ..deep import DeepRegistration, deep_meta, settings_from_options
from ..errors import ConfigError
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
        dot = cast(torch.Tensor, sum((s * r).sum() for s, r in zip(g_sim, g_reg)))
        norm = cast(torch.Tensor, sum((r * r).sum() for r in g_reg))
        conflict = dot < 0
        coef = torch.where(conflict, dot / norm.clamp_min(EPS), torch.zeros_like(dot))
        return [s - coef * r for s, r in zip(g_sim, g_reg)], conflict.float()


NOISE_SCALES = ("masked-mean", "agreeing-mean", "mean")


class AgreementRandom:
    needs_separate_gradients = True

    def __init__(self, noise_scale: str = "masked-mean") -> None:
        if noise_scale not in NOISE_SCALES:
            raise ConfigError(f"gs-agr noise_scale must be one of {', '.join(NOISE_SCALES)}, got {noise_scale!r}")
        self.noise_scale = noise_scale
        self.generator: torch.Generator | None = None  # the trainer hands over its seeded noise generator

    def options(self) -> dict[str, Any]:
        return {"noise_scale": self.noise_scale}

    def __call__(self, g_sim: list[torch.Tensor], g_reg: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        agree = [torch.sign(s) == torch.sign(r) for s, r in zip(g_sim, g_reg)]
        total = sum(s.numel() for s in g_sim)
        n_agree = cast(torch.Tensor, sum(a.sum() for a in agree))
        if self.noise_scale == "mean":
            scale = sum(s.abs().sum() for s in g_sim) / total
        else:
            masked_sum = sum(torch.where(a, s, torch.zeros_like(s)).abs().sum() for s, a in zip(g_sim, agree))
            scale = masked_sum / (total if self.noise_scale == "masked-mean" else torch.clamp(n_agree, min=1))
        out = []
        for s, a in zip(g_sim, agree):
            noise = torch.randn(s.shape, generator=self.generator, device=s.device, dtype=s.dtype) * scale
            out.append(torch.where(a, s, noise))
        return out, (total - n_agree) / total


COMBINERS = {"gsmorph": LayerwiseProjection, "gs-pcgrad": GlobalProjection, "gs-agr": AgreementRandom}
DISPLAY_NAMES = {"gsmorph": "GSMorph", "gs-pcgrad": "GS-PCGrad", "gs-agr": "GS-Agr"}


def _factory(name: str, combiner: type):
    # A combiner's own options (gs-agr's noise_scale) are taken from the method's options; the rest train it.
    own_names = set(inspect.signature(combiner).parameters)

    def make(device: str = "auto", progress: bool = False, **options: Any) -> DeepRegistration:
        own = {k: options.pop(k) for k in list(options) if k in own_names}
        return DeepRegistration(name, combiner(**own), settings_from_options(options), device=device, progress=progress)

    make.__doc__ = f"{name}: the paper's U-Net trained with {combiner.__name__}; options: device, TrainSettings fields" + (
        f" and {', '.join(sorted(own_names))}." if own_names else "."
    )
    return make


for _name, _combiner in COMBINERS.items():
    register_method(
        _name,
        deep_meta(
            DISPLAY_NAMES[_name],
            set(inspect.signature(_combiner).parameters),
            # Declared so that the run directory binds them: a run trained under another default is refused, not reused.
            default_options={k: p.default for k, p in inspect.signature(_combiner).parameters.items()},
            epoch_cost=1.6,  # two backward passes: GSMorph's epoch 1.58× VoxelMorph-m's (Zen 3, AVX2, 2 threads)
        ),
    )(_factory(_name, _combiner))
