"""``hypermorph``: a λ-conditioned hypernetwork on the paper's U-Net (Hoopes et al., IPMI 2021), in PyTorch.

Design (voxelmorph's TensorFlow ``HyperVxmDense``, on the paper's U-Net instead of VoxelMorph's):

- A hypernetwork of ``hyper_layers`` dense layers (``hyper_units`` each, ReLU) maps λ ∈ [0, 1] to an
  embedding; every 3×3 conv of the U-Net except the flow head gets its weight and bias from a linear head on
  that embedding. BatchNorm layers and the flow head are ordinary parameters. Defaults 4 × 64 are
  voxelmorph's; they give the ~126M parameters the paper reports (64 × the U-Net's conv weights).
- Training uses the one :class:`~regbench.trainer.Trainer`; what differs is the model and the
  :class:`HyperObjective`: λ is drawn per sample (uniform, with probability ``extreme_share`` from {0, 1})
  and the loss is mean((1−λ)·MSE/σ²) + mean(λ·smooth), σ = 0.05. Both terms are already weighted, so the
  combiner is VoxelMorph's weighted sum with weight 1 (one backward pass). The hypernetwork's dense layers
  train at ``hyper_lr`` (1e-4, voxelmorph's HyperMorph lr), everything else at the run's lr (see ``HYPER_LR``).
- Relation to VoxelMorph's λ: (1−λ)·MSE/σ² + λ·smooth ∝ MSE + σ²·λ/(1−λ)·smooth, so
  λ_vxm = σ²·λ/(1−λ): VoxelMorph-s (0.001) ↔ λ ≈ 0.286, -m (0.01) ↔ λ = 0.8, -l (0.1) ↔ λ ≈ 0.976.
- After training, λ is chosen on the validation split over ``selection_grid``: by default the λ with the best
  mean Dice; ``max_njd`` restricts the choice to λ whose mean NJD (%) is at most that bound. The whole
  validation curve is kept with the model (``lambda_selection.csv``) and the chosen λ goes into ``final.pt``.
- ``register(fixed, moving)`` uses the chosen λ; ``register(fixed, moving, lam=0.3)`` any other.
  ``sweep(pairs)`` scores a λ grid on given pairs; the runner calls it on the test split.
- At inference, the generated conv weights are cached per λ (the deployed network at one λ is a U-Net).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..deep import DeepRegistration, deep_meta, settings_from_options
from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..interface import Pair, Registration
from ..metrics import evaluate
from ..nn import SpatialTransformer, UNet
from ..registry import register_method
from ..trainer import SpatialTransformerLike, per_sample_smoothness
from .voxelmorph import WeightedSum

# The hypernetwork's dense layers train at voxelmorph's HyperMorph learning rate (Adam 1e-4), the generated
# conv weights and the rest at the run's (the paper's 5e-3). At 5e-3 every step moves each of the few thousand
# dense weights by ~lr whatever its gradient, and the embedding's λ-dependence ‖e(1) − e(0)‖ collapsed within one
# epoch of the quick profile (0.99 → 0.10 → 0.05) as ReLU units died: λ no longer mattered on some floating-
# point trajectories (AVX2 kernels, seed 3407). Follows the lr schedule.
HYPER_LR = 1e-4
SELECTION_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SIGMA = 0.05
# Its epoch relative to VoxelMorph-m's (history.csv, quick profile): the runner starts the longest trainings first.
EPOCH_COST = 3.0


def voxelmorph_lambda(lam: float, sigma: float = SIGMA) -> float:
    """The VoxelMorph smoothness weight equivalent to HyperMorph's λ: σ²·λ/(1−λ) (inf at λ = 1)."""
    return math.inf if lam >= 1 else sigma**2 * lam / (1 - lam)


# Per-sample convs on at most this many pixels (the U-Net's 8×8 and 4×4 levels) run as a batched matmul over
# unfolded columns: forward and backward of a 256-channel 3×3 conv at 4×4, batch 32, took 50 ms instead of the
# grouped conv's 153 ms, at 8×8 (128 channels) 22 instead of 34 ms; from 16×16 up the grouped conv is faster
# (2-core AMD EPYC Zen 4, AVX512, 2 threads).
MATMUL_MAX_PIXELS = 64


class HyperConv(nn.Module):
    """A 2-D or 3-D conv whose weight and bias come from linear heads on the hypernetwork's embedding.

    The embedding is set by :class:`HyperRegistrationNet` before each forward: one row (one λ for the batch,
    a plain conv) or one row per sample (a grouped conv, each sample with its own weights).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0, bias: bool = True, units: int = 64, dims: int = 2) -> None:
        super().__init__()
        self.shape = (cout, cin, *([kernel_size] * dims))
        self.dims = dims
        self.padding = padding
        self.weight_head = nn.Linear(units, math.prod(self.shape))
        self.bias_head = nn.Linear(units, cout) if bias else None
        # Weights = a Kaiming-normal (fan_out) kernel, as the plain U-Net's, plus a λ-dependent part of the
        # same size at λ = 1 (the embedding is 0 at λ = 0, see HyperRegistrationNet).
        kernel = torch.empty(self.shape)
        nn.init.kaiming_normal_(kernel, mode="fan_out", nonlinearity="leaky_relu")
        with torch.no_grad():
            self.weight_head.bias.copy_(kernel.flatten())
            nn.init.zeros_(self.weight_head.weight)
            if self.bias_head is not None:
                nn.init.zeros_(self.bias_head.bias)
                nn.init.zeros_(self.bias_head.weight)
        self.generated: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def generate(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = self.weight_head(embedding).view(-1, *self.shape)
        bias = self.bias_head(embedding) if self.bias_head is not None else None
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generated is None:
            raise RuntimeError("HyperConv called without weights: run it through HyperRegistrationNet")
        weight, bias = self.generated
        conv = F.conv2d if self.dims == 2 else F.conv3d
        if weight.shape[0] == 1:
            return conv(x, weight[0], None if bias is None else bias[0], padding=self.padding)
        n, spatial = x.shape[0], x.shape[2:]
        if self.dims == 2 and math.prod(spatial) <= MATMUL_MAX_PIXELS:  # (torch's unfold is 2-D only)
            h, w = spatial
            # im2col columns times each sample's weight matrix: the same sums as the grouped conv below
            cols = F.unfold(x, self.shape[-1], padding=self.padding)  # (n, cin·k·k, output pixels)
            out = torch.bmm(weight.reshape(n, self.shape[0], -1), cols)
            if bias is not None:
                out = out + bias.reshape(n, -1, 1)
            size = h + 2 * self.padding - self.shape[-1] + 1, w + 2 * self.padding - self.shape[-1] + 1
            return out.view(n, self.shape[0], *size)
        out = conv(
            x.reshape(1, -1, *spatial),
            weight.reshape(-1, *self.shape[1:]),
            None if bias is None else bias.reshape(-1),
            padding=self.padding,
            groups=n,
        )
        return out.view(n, self.shape[0], *out.shape[2:])


def check_hyper_size(hyper_layers: int, hyper_units: int) -> None:
    if hyper_layers < 1 or hyper_units < 1:
        raise ConfigError(f"hyper_layers and hyper_units must be at least 1, got {hyper_layers} and {hyper_units}")


class HyperRegistrationNet(nn.Module):
    """Hypernetwork + U-Net of hyper-convs + spatial transformer; ``forward(moving, fixed, lam)``."""

    def __init__(self, hyper_layers: int = 4, hyper_units: int = 64, lam: float = 0.5, dims: int = 2) -> None:
        super().__init__()
        check_hyper_size(hyper_layers, hyper_units)
        dense: list[nn.Module] = []
        for i in range(hyper_layers):
            dense += [nn.Linear(1 if i == 0 else hyper_units, hyper_units), nn.ReLU()]
        self.hyper = nn.Sequential(*dense)
        for layer in self.hyper:
            if isinstance(layer, nn.Linear):
                # Bias-free start: ReLU layers are then positively homogeneous, the embedding is λ·e(1), and λ
                # moves the conv weights from the start (default init: e(0) and e(1) differ by 2–25%).
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        self.unet = UNet(conv=partial(HyperConv, units=hyper_units, dims=dims), channels_last=False, dims=dims)
        self.transformer = SpatialTransformer()
        self.hyper_convs = [m for m in self.unet.modules() if isinstance(m, HyperConv)]
        self.hyper_units = hyper_units
        self.hyper_lr_scale = 1.0  # the hypernetwork's dense layers train at the lr times this (HyperMorph sets it)
        self.lam = float(lam)  # used when forward gets no λ
        self._cached_lam: float | None = None
        self.share_equal_lambdas = True  # False: one generated row per sample (the equivalence test's reference)

    @property
    def multiple(self) -> int:
        return self.unet.multiple

    @property
    def dims(self) -> int:
        return self.unet.dims

    def lr_scales(self) -> dict[int, float]:
        """The trainer's per-parameter lr factors: the hypernetwork's dense layers at ``hyper_lr_scale``."""
        return {id(p): self.hyper_lr_scale for p in self.hyper.parameters()}

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor, lam: torch.Tensor | float | None = None) -> torch.Tensor:
        lam_t = torch.as_tensor(self.lam if lam is None else lam, dtype=moving.dtype, device=moving.device).reshape(-1, 1)
        inference = not self.training and not torch.is_grad_enabled() and lam_t.shape[0] == 1
        if inference and self._cached_lam == float(lam_t):
            return self.unet(moving, fixed)  # weights of this λ are already generated
        # Weights are generated once per distinct λ of the batch and shared by the samples that drew it (the
        # extreme draws, λ ∈ {0, 1}, are ~20% of a training batch): the same weights, fewer rows to generate and
        # to back-propagate through the heads (~2M conv weights per row, the hypernetwork's dominant cost).
        distinct, inverse = torch.unique(lam_t.flatten(), return_inverse=True)
        shared = self.share_equal_lambdas and distinct.numel() < lam_t.shape[0]
        # Scaled by 1/units: with Adam, a head weight moves ~lr per step, so the generated weights move by
        # ~lr·Σ|e|; unscaled (Σ|e| ≈ 70 at λ = 1) the λ-dependent part would learn 70× faster than the rest.
        embedding = self.hyper(distinct.reshape(-1, 1) if shared else lam_t) / self.hyper_units**0.5
        for conv in self.hyper_convs:
            weight, bias = conv.generate(embedding)
            if shared:
                weight, bias = weight.index_select(0, inverse), None if bias is None else bias.index_select(0, inverse)
            conv.generated = (weight, bias)
        self._cached_lam = float(lam_t) if inference else None
        return self.unet(moving, fixed)

    def train(self, mode: bool = True) -> HyperRegistrationNet:
        if mode:
            self._cached_lam = None  # weights change while training
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._cached_lam = None
        return super().load_state_dict(*args, **kwargs)


@dataclass
class HyperObjective:
    """Per-sample λ; loss mean((1−λ)·MSE/σ²) and mean(λ·smooth), returned as (similarity, smoothness) terms."""

    sigma: float = SIGMA
    extreme_share: float = 0.2
    smoothness: str = "l1"

    def sample_lambda(self, n: int, generator: torch.Generator) -> torch.Tensor:
        device = generator.device
        lam = torch.rand(n, generator=generator, device=device)
        extreme = torch.rand(n, generator=generator, device=device) < self.extreme_share
        ends = (torch.rand(n, generator=generator, device=device) < 0.5).to(lam.dtype)
        return torch.where(extreme, ends, lam)

    def __call__(self, model: nn.Module, moving: torch.Tensor, fixed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.sample_lambda(moving.shape[0], generator)
        flow = model(moving, fixed, lam)
        moved = cast(SpatialTransformerLike, model.transformer)(moving, flow)
        mse = (moved - fixed).square().flatten(1).mean(1)
        smooth = per_sample_smoothness(flow, self.smoothness)
        return ((1 - lam) * mse).mean() / self.sigma**2, (lam * smooth).mean()


class HyperMorph(DeepRegistration):
    """The deployed method: the hypernetwork model, registered at the λ chosen on validation data."""

    def __init__(
        self,
        device: str = "auto",
        progress: bool = False,
        hyper_layers: int = 4,
        hyper_units: int = 64,
        sigma: float = SIGMA,
        extreme_share: float = 0.2,
        hyper_lr: float | None = HYPER_LR,
        lam: float | None = None,
        selection_grid: Sequence[float] = SELECTION_GRID,
        max_njd: float | None = None,
        sweep_grid: Sequence[float] | None = None,
        **train_options: Any,
    ) -> None:
        settings = settings_from_options(train_options)
        if settings.similarity != "mse":
            raise ConfigError(f"hypermorph's loss is (1-λ)·MSE/σ² + λ·smooth: similarity must be 'mse', got {settings.similarity!r}")
        grids = {"selection_grid": list(selection_grid), "sweep_grid": list(sweep_grid or selection_grid)}
        for key, grid in grids.items():
            if not grid or any(not 0.0 <= float(v) <= 1.0 for v in grid):
                raise ConfigError(f"hypermorph {key} must be a non-empty list of λ values in [0, 1], got {grid!r}")
        if lam is not None and not 0.0 <= float(lam) <= 1.0:
            raise ConfigError(f"hypermorph lam must be in [0, 1], got {lam!r}")
        check_hyper_size(hyper_layers, hyper_units)
        if hyper_lr is not None and (isinstance(hyper_lr, bool) or not isinstance(hyper_lr, (int, float)) or hyper_lr <= 0):
            raise ConfigError(f"hypermorph hyper_lr must be a positive number (or null: the lr), got {hyper_lr!r}")
        lr_scale = 1.0 if hyper_lr is None else float(hyper_lr) / settings.lr

        def build(dims: int) -> HyperRegistrationNet:
            model = HyperRegistrationNet(hyper_layers, hyper_units, lam=0.5 if lam is None else lam, dims=dims)
            model.hyper_lr_scale = lr_scale
            return model

        objective = HyperObjective(sigma, extreme_share, settings.smoothness)
        super().__init__("hypermorph", WeightedSum(1.0), settings, device=device, build_model=build, objective=objective, progress=progress)
        self.fixed_lam = lam  # a λ given by the user: no selection
        self.selection_grid = [float(v) for v in grids["selection_grid"]]
        self.sweep_grid = [float(v) for v in grids["sweep_grid"]]
        self.max_njd = max_njd
        self.selection: list[dict[str, Any]] = []
        self.hyper_options = {
            "hyper_layers": hyper_layers,
            "hyper_units": hyper_units,
            "sigma": sigma,
            "extreme_share": extreme_share,
            "hyper_lr": hyper_lr,
            "lam": lam,
            "max_njd": max_njd,
        }

    def options(self) -> dict[str, Any]:
        return {**super().options(), **self.hyper_options, "selection_grid": self.selection_grid, "sweep_grid": self.sweep_grid}

    @property
    def lam(self) -> float:
        return self.model.lam

    # -- training and λ selection ----------------------------------------------------------------------
    def fit(self, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair] = (), workdir: Path | None = None) -> Any:
        history = super().fit(train_pairs, val_pairs, workdir)
        if self.fixed_lam is None:
            self.select_lambda(val_pairs, workdir)
        return history

    def select_lambda(self, val_pairs: Sequence[Pair], workdir: Path | None = None) -> float:
        """Score ``selection_grid`` on the validation pairs; keep the best mean Dice (NJD ≤ ``max_njd``)."""
        if not val_pairs:
            raise ConfigError("hypermorph chooses λ on the validation split, which is empty; give lam= to fix it")
        curve = _summarise(self.sweep(val_pairs, self.selection_grid))
        allowed = [r for r in curve if self.max_njd is None or r["njd_mean"] <= self.max_njd]
        if not allowed:
            raise ConfigError(f"no λ in the selection grid has validation NJD ≤ max_njd={self.max_njd}% (lowest {min(r['njd_mean'] for r in curve):.3f}%)")
        best = max(allowed, key=lambda r: (r["dice_mean"], -r["lam"]))  # ties: the smaller λ
        for r in curve:
            r["chosen"] = r is best
        self.selection = curve
        self.model.lam = best["lam"]
        if workdir is not None:
            _write_csv(Path(workdir) / "lambda_selection.csv", curve)
        return best["lam"]

    def sweep(self, pairs: Sequence[Pair], grid: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """Per (λ, pair) metrics (the suite's ``evaluate``) for a λ grid; rows carry ``lam`` and ``lambda_vxm``."""
        rows = []
        for lam in grid or self.sweep_grid:
            for pair in pairs:
                row = {"lam": float(lam), "lambda_vxm": voxelmorph_lambda(float(lam)), "case_id": pair.case_id, "subject": pair.subject}
                row.update(evaluate(pair, self.register(pair.fixed, pair.moving, lam=float(lam))))
                rows.append(row)
        return rows

    # -- method interface ------------------------------------------------------------------------------
    def register(self, fixed: np.ndarray, moving: np.ndarray, lam: float | None = None) -> Registration:
        """Register at the chosen λ, or at ``lam`` (0 = similarity only, 1 = smoothness only)."""
        if lam is None:
            return super().register(fixed, moving)
        if not 0.0 <= float(lam) <= 1.0:
            raise ConfigError(f"λ must be in [0, 1], got {lam!r}")
        chosen, self.model.lam = self.model.lam, float(lam)
        try:
            return super().register(fixed, moving)
        finally:
            self.model.lam = chosen

    def save(self, path: Path) -> None:
        super().save(path, extra={"lam": self.lam, "selection": json.dumps(self.selection)})

    def load(self, path: Path) -> None:
        state = super().load(path)
        if "lam" not in state:
            raise ConfigError(f"model file {path} has no chosen λ (not a hypermorph model file)")
        self.model.lam = float(state["lam"])
        self.selection = json.loads(state.get("selection", "[]"))


def _summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per λ: mean Dice, NJD, HD95 and MSE over the pairs."""
    out = []
    for lam in sorted({r["lam"] for r in rows}):
        group = [r for r in rows if r["lam"] == lam]
        rec: dict[str, Any] = {"lam": lam, "lambda_vxm": voxelmorph_lambda(lam), "n_pairs": len(group)}
        for metric in ("dice", "hd95", "mse", "njd"):
            rec[f"{metric}_mean"] = float(np.nanmean([r[metric] for r in group]))
        out.append(rec)
    return out


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write_text(path, pd.DataFrame(list(rows)).to_csv(index=False))


@register_method(
    "hypermorph",
    deep_meta(
        "HyperMorph",
        set(inspect.signature(HyperMorph).parameters) - {"train_options"},
        # Bound into the run directory: a HyperMorph trained under another hypernetwork lr is refused, not reused.
        default_options={"hyper_lr": HYPER_LR},
        sweep=("lam", "λ"),  # its sweep() scores the λ grid on the test split
        loss_note="HyperMorph: (1−λ)·MSE/σ² and λ·smooth",  # its losses are weighted per sample: another scale
        epoch_cost=EPOCH_COST,
    ),
)
def make_hypermorph(device: str = "auto", progress: bool = False, **options: Any) -> HyperMorph:
    """HyperMorph: one λ-conditioned training, λ chosen on validation. Options: hyper_layers, hyper_units,
    sigma, extreme_share, hyper_lr (the hypernetwork's dense layers' lr; null: the lr), lam (fix λ, no
    selection), selection_grid, max_njd, sweep_grid, and TrainSettings fields."""
    return HyperMorph(device=device, progress=progress, **options)
