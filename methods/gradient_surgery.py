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

Each rule is written twice, as torch.optim writes its optimisers (a for-loop and a ``foreach`` form, chosen by
device), and the two are tested equal:

- ``per_tensor`` (CPU): a loop over the parameter tensors, ~6 operations each (458 for GSMorph's 75 tensors,
  605 for GS-PCGrad's, 978 for GS-Agr's). On a CPU an operation costs little to start, and the two forms cost
  the same within noise in a training step (GSMorph, 64 px, batch 16, 2-core Zen 4: 0.23–0.28 s per step either
  way; the combiner alone, 3–28 ms, is faster in one form or the other by the allocator's state), so CPU
  training keeps the loop, and its results bit for bit.
- ``flat`` (CUDA): the whole network's gradient as one vector, each tensor in its memory order (a channels-last
  gradient is not reordered), per-group sums as two batched reductions (:func:`group_sums`), the update handed
  back as views of one result in the gradients' layouts: 21, 10 and 16 operations whatever the number of
  tensors. On a GPU each is a kernel launch of a few µs (the caching allocator makes temporaries free), and none
  waits for the device. Its per-group sums are FP32 norms, less exact than the loop's ``sum()`` (an update's
  relative error ~1e-5 against ~3e-8 on real gradients; one training step's weights agree within 1e-4 of the
  step), and GS-Agr draws its noise for the whole vector at once (element i gets the i-th number, in memory
  order) instead of tensor by tensor. CUDA runs differ from CPU runs anyway; each is repeatable for its seed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from ..deep import DeepRegistration, deep_meta, settings_from_options
from ..errors import ConfigError
from ..registry import register_method
from ..trainer import Gradients

EPS = 1e-20


def _dense(g: torch.Tensor) -> torch.Tensor:
    """``g`` if its memory is dense in a standard order (contiguous or channels-last), else a contiguous copy."""
    if g.is_contiguous():
        return g
    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(g.dim())
    if channels_last is not None and g.is_contiguous(memory_format=channels_last):
        return g
    return g.contiguous()


def _in_memory_order(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``g``'s elements as one vector in the memory order of ``like`` (dense, of ``g``'s shape); a view of ``g``
    where ``g`` is laid out as ``like`` (a channels-last gradient is not copied into NCHW order)."""
    if like.is_contiguous():
        return g.reshape(-1)
    if g.stride() != like.stride():
        g = torch.empty_like(like).copy_(g)  # like's strides (empty_like keeps a dense tensor's)
    return g.as_strided((g.numel(),), (1,))


def flatten(grads: Sequence[torch.Tensor], layout: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors' elements, tensor after tensor, each in the memory order of its ``layout`` tensor (dense: see
    :func:`layout_of`), as one vector (one copy; elementwise rules pair the same elements of two gradients
    flattened with one layout)."""
    return torch.cat([_in_memory_order(g, like) for g, like in zip(grads, layout)])


def layout_of(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor itself where its memory is dense, else a contiguous copy: the layouts to flatten with."""
    return [_dense(g) for g in grads]


def unflatten(flat: torch.Tensor, layout: Sequence[torch.Tensor]) -> Gradients:
    """:func:`flatten` undone: views of ``flat`` with the shapes and strides of ``layout`` (no copy; a gradient
    handed back in its parameter's layout is not copied again by the trainer)."""
    return [piece.as_strided(like.shape, like.stride()) for piece, like in zip(flat.split([g.numel() for g in layout]), layout)]


def group_sums(flat: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """The sum of each consecutive group of ``sizes`` elements of ``flat``, all groups in two batched reductions:
    the L1 norm of the positive entries minus that of the negative ones (torch has no batched signed sum).
    Deterministic, and the error bound is a plain sum's, ε·Σ|x|."""
    positive = torch._foreach_norm(flat.clamp_min(0).split(list(sizes)), 1)
    negative = torch._foreach_norm(flat.clamp_max(0).split(list(sizes)), 1)
    return torch.stack(positive) - torch.stack(negative)


class _Combiner:
    """Dispatch to the ``flat`` form for CUDA gradients and the ``per_tensor`` form otherwise (module docstring)."""

    needs_separate_gradients = True

    FORMS = ("per_tensor", "flat")

    def __call__(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        return getattr(self, self.form_for(g_sim[0].device))(g_sim, g_reg)

    @staticmethod
    def form_for(device: torch.device) -> str:
        """The form training uses for gradients on ``device``."""
        return "flat" if device.type == "cuda" else "per_tensor"

    def per_tensor(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        raise NotImplementedError

    def flat(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        raise NotImplementedError


class LayerwiseProjection(_Combiner):
    def __init__(self) -> None:
        # (group sizes, device) -> each element's group number there: made once, not copied to the device per step.
        self._group_of: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}

    def per_tensor(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        dots = torch.stack([(s * r).sum() for s, r in zip(g_sim, g_reg)])
        norms = torch.stack([(r * r).sum() for r in g_reg])
        conflict = dots < 0
        coef = torch.where(conflict, dots / norms.clamp_min(EPS), torch.zeros_like(dots))
        return [s - c * r for s, r, c in zip(g_sim, g_reg, coef)], conflict.float().mean()

    def flat(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        layout = layout_of(g_sim)
        s, r = flatten(g_sim, layout), flatten(g_reg, layout)
        sizes = tuple(g.numel() for g in g_sim)
        dots = group_sums(s * r, sizes)
        norms = torch.stack(torch._foreach_norm(r.split(list(sizes)), 2)).square()
        conflict = dots < 0
        coef = torch.where(conflict, dots / norms.clamp_min(EPS), torch.zeros_like(dots))
        group_of = self._group_of.get((sizes, s.device))
        if group_of is None:
            group_of = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(s.device)
            self._group_of[(sizes, s.device)] = group_of
        return unflatten(torch.addcmul(s, coef.index_select(0, group_of), r, value=-1), layout), conflict.float().mean()


class GlobalProjection(_Combiner):
    def per_tensor(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        dot = cast(torch.Tensor, sum((s * r).sum() for s, r in zip(g_sim, g_reg)))
        norm = cast(torch.Tensor, sum((r * r).sum() for r in g_reg))
        coef, conflict = _projection_coefficient(dot, norm)
        return [s - coef * r for s, r in zip(g_sim, g_reg)], conflict

    def flat(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        layout = layout_of(g_sim)
        s, r = flatten(g_sim, layout), flatten(g_reg, layout)
        coef, conflict = _projection_coefficient(torch.dot(s, r), torch.dot(r, r))
        return unflatten(torch.addcmul(s, coef, r, value=-1), layout), conflict


def _projection_coefficient(dot: torch.Tensor, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨g_sim,g_reg⟩/‖g_reg‖² where the two conflict (dot < 0), else 0; and the conflict as 0.0 or 1.0."""
    conflict = dot < 0
    return torch.where(conflict, dot / norm.clamp_min(EPS), torch.zeros_like(dot)), conflict.float()


NOISE_SCALES = ("masked-mean", "agreeing-mean", "mean")


class AgreementRandom(_Combiner):
    def __init__(self, noise_scale: str = "masked-mean") -> None:
        if noise_scale not in NOISE_SCALES:
            raise ConfigError(f"gs-agr noise_scale must be one of {', '.join(NOISE_SCALES)}, got {noise_scale!r}")
        self.noise_scale = noise_scale
        self.generator: torch.Generator | None = None  # the trainer hands over its seeded noise generator

    def options(self) -> dict[str, Any]:
        return {"noise_scale": self.noise_scale}

    def _scale(self, total: int, n_agree: torch.Tensor, abs_sum: Callable[[bool], torch.Tensor]) -> torch.Tensor:
        """The noise's standard deviation (module docstring); ``abs_sum(masked)`` is Σ|g_sim| over the network,
        over its agreeing elements if ``masked``."""
        if self.noise_scale == "mean":
            return abs_sum(False) / total
        return abs_sum(True) / (total if self.noise_scale == "masked-mean" else torch.clamp(n_agree, min=1))

    def per_tensor(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        agree = [torch.sign(s) == torch.sign(r) for s, r in zip(g_sim, g_reg)]
        total = sum(s.numel() for s in g_sim)
        n_agree = cast(torch.Tensor, sum(a.sum() for a in agree))
        scale = self._scale(
            total,
            n_agree,
            lambda masked: cast(torch.Tensor, sum((torch.where(a, s, torch.zeros_like(s)) if masked else s).abs().sum() for s, a in zip(g_sim, agree))),
        )
        out = []
        for s, a in zip(g_sim, agree):
            noise = torch.randn(s.shape, generator=self.generator, device=s.device, dtype=s.dtype) * scale
            out.append(torch.where(a, s, noise))
        return out, (total - n_agree) / total

    def flat(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor]:
        layout = layout_of(g_sim)
        s, r = flatten(g_sim, layout), flatten(g_reg, layout)
        agree = torch.sign(s) == torch.sign(r)
        n_agree = agree.sum()
        scale = self._scale(s.numel(), n_agree, lambda masked: (torch.where(agree, s, torch.zeros_like(s)) if masked else s).abs().sum())
        noise = torch.randn(s.shape, generator=self.generator, device=s.device, dtype=s.dtype) * scale
        return unflatten(torch.where(agree, s, noise), layout), (s.numel() - n_agree) / s.numel()


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
