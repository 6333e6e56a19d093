"""One trainer for every deep registration method; variants differ only in their gradient combiner.

Per step: one forward pass gives the similarity loss (MSE, or NCC) and the smoothness loss (mean |forward
difference| of the flow, "l1", as the reference code; or "l2"). The trainer takes both gradients from that one
forward pass (two ``torch.autograd.grad`` calls, retaining the graph for the first) and hands them to a
:class:`GradientCombiner`, which returns the update per parameter tensor. A combiner that only needs
``g_sim + λ·g_reg`` says so (``needs_separate_gradients = False``) and gets one backward pass of the summed
loss: the same update at the cost of one backward pass.

The losses take 2-D or 3-D batches (N, C, *S); the training pairs are served by :class:`PairBatches` (the
split stacked on the device once when it fits ``DEVICE_DATA_BUDGET_BYTES``, else each batch stacked from its
pairs, so that a split of full-size volumes is never copied whole to the device).

A model may bring its own :class:`Objective` (how the two losses are formed from a batch): HyperMorph uses
this to weight the losses per sample by its λ; the loop, checkpoints and logging stay this one.

Checkpoints (model, optimiser, RNG states, history) are written atomically after an epoch when
``checkpoint_every_s`` seconds passed since the last one (not after the last epoch: the caller saves the
model); ``fit`` resumes from the last one, and the result equals an uninterrupted run on CPU with the same
seed. ``history.csv`` is written after every epoch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from .config import COMPILE_MODES, check_precision
from .errors import ConfigError
from .fileio import atomic_write_bytes, atomic_write_text
from .interface import Pair
from .rundir import checkpoint as checkpoint_path
from .rundir import history as history_path

log = logging.getLogger("regbench.trainer")

Gradients = list[torch.Tensor]


# ---------------------------------------------------------------------------------------------- losses
def mse_loss(moved: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(moved, fixed)


def ncc_loss(moved: torch.Tensor, fixed: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """Negative local normalised cross-correlation (VoxelMorph's), over window^dims boxes; 2-D or 3-D batches."""
    dims = moved.ndim - 2
    kernel = torch.ones(1, 1, *([window] * dims), device=moved.device, dtype=moved.dtype)
    pad = window // 2
    n = window**dims
    conv = F.conv2d if dims == 2 else F.conv3d

    def box(x: torch.Tensor) -> torch.Tensor:
        return conv(x, kernel, padding=pad)

    mu_i, mu_j = box(moved) / n, box(fixed) / n
    cross = box(moved * fixed) - mu_i * mu_j * n
    var_i = box(moved * moved) - mu_i * mu_i * n
    var_j = box(fixed * fixed) - mu_j * mu_j * n
    return -torch.mean(cross * cross / (var_i * var_j + eps))


def per_sample_smoothness(flow: torch.Tensor, penalty: str = "l1") -> torch.Tensor:
    """Per sample: mean |forward difference| (l1) or its square (l2) of the flow along each spatial axis,
    averaged over the axes (2-D: rows and columns; 3-D: all three)."""
    if penalty not in ("l1", "l2"):
        raise ConfigError(f"smoothness penalty must be 'l1' or 'l2', got {penalty!r}")
    f = torch.abs if penalty == "l1" else torch.square
    # Slices subtracted, not torch.diff: its backward sums in another order, and 2-D trainings would change.
    terms = [f(flow.narrow(axis, 1, n - 1) - flow.narrow(axis, 0, n - 1)).flatten(1).mean(1) for axis, n in enumerate(flow.shape[2:], start=2)]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total / len(terms)


def smoothness_loss(flow: torch.Tensor, penalty: str = "l1") -> torch.Tensor:
    """The batch's smoothness loss (samples share one size, so this is the mean over all differences)."""
    return per_sample_smoothness(flow, penalty).mean()


SIMILARITY = {"mse": mse_loss, "ncc": ncc_loss}


# ------------------------------------------------------------------------------------------- combiners
class GradientCombiner(Protocol):
    """Turns the two per-tensor gradient lists into the update; returns (update, share of conflicting groups).
    ``needs_separate_gradients = False`` declares that the update is ``g_sim + weight·g_reg``: the trainer then
    backpropagates the weighted sum once instead of computing the two gradients."""

    needs_separate_gradients: bool

    def __call__(self, g_sim: Gradients, g_reg: Gradients) -> tuple[Gradients, torch.Tensor | None]: ...


@runtime_checkable
class WeightedCombiner(Protocol):
    """A combiner with one weight on the smoothness gradient (λ), recorded as the method's ``lam``."""

    weight: float


@runtime_checkable
class CombinerWithOptions(Protocol):
    """A combiner with options of its own (gs-agr's ``noise_scale``), recorded with the method's options."""

    def options(self) -> dict[str, Any]: ...


@runtime_checkable
class CombinerForms(Protocol):
    """A combiner computed in several equivalent forms (``FORMS``, method names), one chosen per device by
    ``form_for``; ``regbench perf`` times each."""

    FORMS: tuple[str, ...]

    def form_for(self, device: torch.device) -> str: ...


@runtime_checkable
class ScalesLearningRates(Protocol):
    """A model whose parameters train at different learning rates: id(parameter) → factor on the settings' lr."""

    def lr_scales(self) -> dict[int, float]: ...


def model_lr_scales(model: torch.nn.Module) -> dict[int, float]:
    """id(parameter) → learning-rate factor, where the model declares some (``lr_scales()``; HyperMorph's
    hypernetwork); other parameters train at the settings' lr."""
    return model.lr_scales() if isinstance(model, ScalesLearningRates) else {}


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class TrainSettings:
    """Training settings; defaults are the paper's (AdamW, lr 5e-3, batch 32, 500 epochs, seed 3407)."""

    epochs: int = 500
    batch_size: int = 32
    lr: float = 5e-3
    # "constant" (the paper's) or "cosine": lr·½(1 + cos(π·e/E)) in epoch e = 0…E−1, near 0 in the last
    # epoch. The paper evaluates the last epoch's weights; with a constant lr on a short CPU budget those are
    # a random draw from an oscillating trajectory (GSMorph's validation Dice swings ±1.5 points between
    # epochs at lr 5e-3), and annealing lets every method settle. A function of the epoch, so resume is exact.
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    seed: int = 3407
    similarity: str = "mse"
    smoothness: str = "l1"
    val_every: int = 5
    max_val_pairs: int | None = None
    # A checkpoint after an epoch once this many seconds passed since the last one (0: every epoch). Resume
    # is exact from any checkpoint; the interval bounds the I/O (HyperMorph's checkpoint is 1.5 GB).
    checkpoint_every_s: float = 60.0
    # After training, re-estimate BatchNorm's running statistics over the train split with the final weights
    # (a cumulative average, as torch.optim.swa_utils.update_bn). Not in the reference code; the smoke profile
    # needs it: after ~10 steps the running statistics are far from the batch statistics.
    recalibrate_bn: bool = False
    # The arithmetic of forward and backward passes (training, validation and inference); see precision_mode.
    # "fp32" (default) is true FP32 on every device, so numbers never change with a device's defaults.
    precision: str = "fp32"
    # torch.compile of the network for the training steps: "none" (default, eager), "default" (inductor: fused
    # elementwise kernels) or "reduce-overhead" (the same, replayed as CUDA graphs on a GPU: one launch per
    # graph). Opt-in: the first step compiles (tens of seconds) and on a CPU it did not pay (docs/methods.md).
    compile_mode: str = "none"

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITY:
            raise ConfigError(f"similarity must be one of {sorted(SIMILARITY)}, got {self.similarity!r}")
        if self.smoothness not in ("l1", "l2"):
            raise ConfigError(f"smoothness must be 'l1' or 'l2', got {self.smoothness!r}")
        check_precision(self.precision)
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for name in ("epochs", "batch_size", "val_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer of at least 1, got {value!r}")
        if self.max_val_pairs is not None and (not isinstance(self.max_val_pairs, int) or self.max_val_pairs < 1):
            raise ConfigError(f"max_val_pairs must be an integer of at least 1 (or null for all), got {self.max_val_pairs!r}")
        for name in ("lr", "weight_decay", "checkpoint_every_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (name == "lr" and value == 0):
                hint = " (YAML reads 5e-3 as text: write 5.0e-3)" if isinstance(value, str) else ""
                raise ConfigError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {value!r}{hint}")

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based)."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.lr


LR_SCHEDULES = ("constant", "cosine")


@contextlib.contextmanager
def precision_mode(precision: str, device: torch.device, autocast: bool = True) -> Iterator[None]:
    """Passes inside run at ``precision``; torch's global settings are restored after.

    - ``fp32``: FP32 throughout. On CUDA, TF32 is switched off for matmuls and cuDNN convolutions (torch lets
      cuDNN use TF32 by default: its "FP32" convolutions round inputs to 10 mantissa bits).
    - ``tf32``: on CUDA, matmuls and convolutions in TF32 (FP32 storage and accumulation); on a CPU the same as fp32.
    - ``bf16``: autocast to bfloat16 (convolutions and matmuls in bf16, losses and reductions in FP32); parameters,
      gradients and the optimiser stay FP32. ``autocast=False`` sets the TF32 flags only: a training step wraps
      its backward passes in that, and only its forward pass in the autocast (as torch's AMP recipe does).
    """
    check_precision(precision)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and precision == "bf16"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------- objective
SpatialTransformerLike = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (image, flow) -> moved image


class Objective(Protocol):
    """Forms (similarity loss, smoothness loss) for a batch; returns them and the flow."""

    def __call__(self, model: torch.nn.Module, moving: torch.Tensor, fixed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class CombinerWeightedObjective(Protocol):
    """An objective whose two terms the combiner weights (``weighted_by_combiner = True``): the combiner's weight
    is then the method's λ. An objective without it weights its own terms (HyperMorph's), and the combiner's
    weight is not recorded as λ."""

    weighted_by_combiner: bool


@dataclass
class PlainObjective:
    """sim(moved, fixed) and smooth(flow), as VoxelMorph and GSMorph."""

    similarity: str = "mse"
    smoothness: str = "l1"

    def __call__(self, model: torch.nn.Module, moving: torch.Tensor, fixed: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        flow = model(moving, fixed)
        moved = cast(SpatialTransformerLike, model.transformer)(moving, flow)
        return SIMILARITY[self.similarity](moved, fixed), smoothness_loss(flow, self.smoothness)


# ------------------------------------------------------------------------------------------------ trainer
@dataclass
class EpochRecord:
    epoch: int
    loss_sim: float
    loss_reg: float
    conflict_share: float | None
    val_dice: float | None = None
    val_njd: float | None = None
    seconds: float = 0.0


@dataclass
class Trainer:
    """Fits a model (an ``nn.Module`` with ``forward(moving, fixed) -> flow`` and ``.transformer``)."""

    settings: TrainSettings
    combiner: GradientCombiner
    device: torch.device
    objective: Objective | None = None
    callbacks: list[Callable[[EpochRecord], None]] = field(default_factory=list)
    progress: bool = True

    def fit(
        self,
        model: torch.nn.Module,
        train_pairs: Sequence[Pair],
        val_pairs: Sequence[Pair] = (),
        workdir: Path | None = None,
        validate: Callable[[Sequence[Pair]], tuple[float, float]] | None = None,
    ) -> list[EpochRecord]:
        s = self.settings
        flush_subnormals()
        objective = self.objective or PlainObjective(s.similarity, s.smoothness)
        if not train_pairs:
            raise ConfigError("no training pairs: the dataset's train split is empty")
        data = PairBatches(train_pairs, self.device)
        n = len(data)
        batch = min(s.batch_size, n)
        steps_per_epoch = max(n // batch, 1)  # drop the last incomplete batch, as the reference code
        torch.manual_seed(s.seed)
        order_rng = torch.Generator().manual_seed(s.seed)
        noise_rng = torch.Generator(device=self.device).manual_seed(s.seed + 1)
        params = [p for p in model.parameters() if p.requires_grad]
        optimiser = self.make_optimiser(params, model_lr_scales(model))
        net = self.training_model(model)
        # A combiner without a conflict share (VoxelMorph's) adds NaN: made on the device once, not copied from the
        # host each step (torch.tensor(x, device="cuda") of a Python number blocks the host: pytorch/pytorch#120996).
        no_share = torch.full((), float("nan"), device=self.device)
        history: list[EpochRecord] = []
        start_epoch = 0
        checkpoint = checkpoint_path(workdir) if workdir else None
        if checkpoint is not None and checkpoint.exists():
            state = torch.load(checkpoint, map_location=self.device, weights_only=True)
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            order_rng.set_state(state["order_rng"])
            noise_rng.set_state(state["noise_rng"].to(noise_rng.get_state().device))
            torch.set_rng_state(state["torch_rng"])
            history = [EpochRecord(**r) for r in _records(state["history"])]
            start_epoch = int(state["epoch"])
            log.info("resuming %s from epoch %d", workdir, start_epoch)
        setattr(self.combiner, "generator", noise_rng)  # noqa: B010 - a combiner that draws noise (GS-Agr) reads it; others ignore it

        from tqdm.auto import tqdm

        last_checkpoint = time.perf_counter()
        bar = tqdm(total=s.epochs, initial=start_epoch, desc="training", unit="epoch", disable=not self.progress, leave=False)
        for epoch in range(start_epoch, s.epochs):
            model.train()
            started = time.perf_counter()
            for group in optimiser.param_groups:
                group["lr"] = s.lr_at(epoch) * group.get("lr_scale", 1.0)  # absent in checkpoints of older versions
            order = torch.randperm(n, generator=order_rng).to(self.device)
            sums = torch.zeros(3, device=self.device)  # sim, reg, conflict share: summed on the device
            for step in range(steps_per_epoch):
                idx = order[step * batch : (step + 1) * batch]
                sim, reg, share = self.step(net, params, optimiser, objective, *data.batch(idx), noise_rng)
                share_t = no_share if share is None else torch.as_tensor(share, device=self.device)
                sums += torch.stack([sim.detach(), reg.detach(), share_t.detach().float()])
            means = (sums / steps_per_epoch).tolist()  # one host sync per epoch
            record = EpochRecord(epoch + 1, means[0], means[1], None if math.isnan(means[2]) else means[2])
            if validate is not None and val_pairs and ((epoch + 1) % s.val_every == 0 or epoch + 1 == s.epochs):
                if s.recalibrate_bn:  # validate the model as it will be deployed, else the curve shows ~0 Dice
                    self.recalibrate_batchnorm(model, objective, data, batch, noise_rng)
                model.eval()
                record.val_dice, record.val_njd = validate(list(val_pairs)[: s.max_val_pairs])
            record.seconds = time.perf_counter() - started
            history.append(record)
            if checkpoint is not None:
                if epoch + 1 < s.epochs and time.perf_counter() - last_checkpoint >= s.checkpoint_every_s:
                    self._save_checkpoint(checkpoint, model, optimiser, order_rng, noise_rng, epoch + 1, history)
                    last_checkpoint = time.perf_counter()
                write_history(history_path(checkpoint.parent), history)
            bar.set_postfix(
                sim=f"{record.loss_sim:.4f}", reg=f"{record.loss_reg:.4f}", **({"val_dice": f"{record.val_dice:.3f}"} if record.val_dice is not None else {})
            )
            bar.update(1)
            for callback in self.callbacks:
                callback(record)
        bar.close()
        if s.recalibrate_bn and start_epoch < s.epochs:
            self.recalibrate_batchnorm(model, objective, data, batch, noise_rng)
        model.eval()
        return history

    @torch.no_grad()
    def recalibrate_batchnorm(self, model, objective, data: PairBatches, batch: int, generator) -> None:
        """Running statistics = the average of the batch statistics over the training pairs (final weights)."""
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        with precision_mode(self.settings.precision, self.device):
            for start in range(0, len(data) - batch + 1, batch):
                objective(model, *data.batch(torch.arange(start, start + batch, device=self.device)), generator)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    def make_optimiser(self, params: Sequence[torch.nn.Parameter], lr_scales: dict[int, float] | None = None) -> torch.optim.Optimizer:
        """AdamW with the settings' lr and weight decay. Fused: one multi-threaded kernel instead of a loop
        over tensors (4× faster on CPU for HyperMorph's 127M parameters). ``lr_scales`` (id(parameter) → factor,
        from a model's ``lr_scales()``) puts those parameters in a group whose lr is the schedule's times the factor."""
        scales = lr_scales or {}
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for p in params:
            groups.setdefault(float(scales.get(id(p), 1.0)), []).append(p)
        return torch.optim.AdamW(
            [{"params": group, "lr": self.settings.lr * scale, "lr_scale": scale} for scale, group in groups.items()],
            lr=self.settings.lr,
            weight_decay=self.settings.weight_decay,
            fused=True,
        )

    def training_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """What the training steps call: ``model`` itself, or with ``compile_mode`` a compiled wrapper that shares
        its parameters (checkpoints, validation and inference use ``model``)."""
        if self.settings.compile_mode == "none":
            return model
        # Compiled for this training alone, as in a fresh process: torch reuses a compiled network of the same
        # structure, and a graph compiled for one backward pass (VoxelMorph's) frees buffers that the two backward
        # passes of gradient surgery need ("donated buffers ... requires retain_graph=False").
        torch.compiler.reset()
        if self.device.type == "cpu":
            bypass_compile_caches_if_kernels_chosen()
        return cast(torch.nn.Module, torch.compile(model, mode=self.settings.compile_mode))

    def step(self, model, params, optimiser, objective, moving, fixed, generator):
        """One update; returns the two losses (tensors, no host sync) and the conflict share."""
        if self.settings.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are read; a new step begins
        with precision_mode(self.settings.precision, self.device, autocast=False):
            optimiser.zero_grad(set_to_none=True)
            with precision_mode(self.settings.precision, self.device):
                sim, reg = objective(model, moving, fixed, generator)
            sim, reg = sim.float(), reg.float()  # bf16: the losses' sums are FP32 (no-op otherwise)
            if self.combiner.needs_separate_gradients:
                g_sim = torch.autograd.grad(sim, params, retain_graph=True, allow_unused=True)
                g_reg = torch.autograd.grad(reg, params, allow_unused=True)
                # Parameters a loss does not reach get a zero gradient rather than None.
                g_sim = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_sim)]
                g_reg = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_reg)]
                update, share = self.combiner(g_sim, g_reg)
                for p, g in zip(params, update):
                    # Fused AdamW reads a gradient in its parameter's memory layout; an autograd.grad result can
                    # come in another (grid_sample's backward gives channels-last strides) and would be misread
                    # element by element. backward() lays .grad out as the parameter; here it is done by hand.
                    p.grad = g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
            else:
                (sim + self.combiner.weight * reg).backward()
                share = None
            optimiser.step()
        return sim, reg, share

    @staticmethod
    def _save_checkpoint(path, model, optimiser, order_rng, noise_rng, epoch, history) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "epoch": epoch,
                "order_rng": order_rng.get_state(),
                "noise_rng": noise_rng.get_state().cpu(),
                "torch_rng": torch.get_rng_state(),
                "history": [[r.epoch, r.loss_sim, r.loss_reg, _nan(r.conflict_share), _nan(r.val_dice), _nan(r.val_njd), r.seconds] for r in history],
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _records(rows: Any) -> list[dict[str, Any]]:
    keys = ["epoch", "loss_sim", "loss_reg", "conflict_share", "val_dice", "val_njd", "seconds"]
    out = []
    for row in rows:
        rec: dict[str, Any] = dict(zip(keys, [float(v) for v in row]))
        rec["epoch"] = int(rec["epoch"])
        for k in ("conflict_share", "val_dice", "val_njd"):
            rec[k] = None if math.isnan(rec[k]) else rec[k]
        out.append(rec)
    return out


def write_history(path: Path, history: Sequence[EpochRecord]) -> None:
    import pandas as pd

    atomic_write_text(path, pd.DataFrame([asdict(r) for r in history]).to_csv(index=False))


# A training split up to this size is stacked on the device once (no host-to-device copy per step); a larger one
# (volumes: tens of MB each) stays in host memory and each batch is stacked from its pairs. Same values either way.
DEVICE_DATA_BUDGET_BYTES = 2**30


class PairBatches:
    """The training pairs as (moving, fixed) batches (N, 1, *S), float32, on the device."""

    def __init__(self, pairs: Sequence[Pair], device: torch.device, budget_bytes: int | None = None) -> None:
        shapes = {p.fixed.shape for p in pairs}
        if len(shapes) != 1:
            raise ConfigError(f"training pairs must share one image shape, got {sorted(shapes)}")
        self.pairs = list(pairs)
        self.device = device
        self.nbytes = 2 * len(self.pairs) * int(np.prod(next(iter(shapes)))) * 4
        self.on_device = self.nbytes <= (DEVICE_DATA_BUDGET_BYTES if budget_bytes is None else budget_bytes)
        if self.on_device:
            self._moving, self._fixed = self._stack(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def _stack(self, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        moving = torch.from_numpy(np.stack([p.moving for p in pairs])[:, None].astype(np.float32)).to(self.device)
        fixed = torch.from_numpy(np.stack([p.fixed for p in pairs])[:, None].astype(np.float32)).to(self.device)
        return moving, fixed

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(moving, fixed) of the pairs at ``index`` (a 1-D integer tensor), in that order."""
        if self.on_device:
            return self._moving[index], self._fixed[index]
        return self._stack([self.pairs[i] for i in index.tolist()])


# Environment variables that choose a CPU's kernels but are not part of the key of torch's compiled-graph caches.
KERNEL_CHOICE_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def bypass_compile_caches_if_kernels_chosen() -> None:
    """Where one of :data:`KERNEL_CHOICE_VARIABLES` is set, compile anew instead of loading a compiled graph from
    torch's on-disk caches (FX graph and AOT autograd caches; /tmp/torchinductor_$USER). Why: a GSMorph graph
    compiled and cached without them, loaded under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, crashed the
    process (segmentation fault, torch 2.13); compiled anew it ran."""
    import os

    if any(os.environ.get(name) for name in KERNEL_CHOICE_VARIABLES):
        import torch._functorch.config
        import torch._inductor.config

        torch._inductor.config.fx_graph_cache = False
        torch._functorch.config.enable_autograd_cache = False


def flush_subnormals() -> None:
    """Treat subnormal floats (|x| < 1.2e-38) as zero on CPU, in this thread and the intra-op threads it starts.

    Why: Adam's first moment of a parameter whose gradient has become exactly zero (a dead ReLU unit of
    HyperMorph's hypernetwork) decays by 0.9 per step and passes through the subnormal range, where x86 float
    arithmetic is ~10× slower. Measured: a fused AdamW step over 32M subnormal values took 212 ms instead of 20,
    and HyperMorph's epochs slowed from 6.3 to 12 s after ~500 steps. Threads inherit the setting when they are
    created, so regbench's CLI sets it before torch starts its thread pool, and every training sets it again.
    numpy's float limits are computed (and cached) first: computed under flush-to-zero, numpy warns that the
    smallest subnormal is zero (scipy asks for them when it is imported, after this).
    """
    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)
    torch.set_flush_denormal(True)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    return torch.device(device)
