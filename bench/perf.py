"""``regbench perf``: timings that belong in a benchmark, not in unit tests.

- ``--probe``: the fields method's convention probe against scoring the folder it probes (the pairs' true flows
  written as files, declared right), as a share of the scoring time.
- Registration time per pair (the registration alone: no file I/O, no metrics), in one process; ``--dims 3``
  times the methods that register volumes on short-axis stacks of the 3-D synthetic heart.
- Throughput of the runner's case loop (registration + metrics) with ``--jobs 1`` and ``--jobs N``, after
  warming the worker pool (one registration per worker), and the speed-up.
- For trainable methods (built with the ``--profile``'s options, as ``regbench run`` builds them): the time of
  one training step relative to the study's reference method's (the paper: ``voxelmorph-m``, WeightedSum) on the same batch, inference ms per pair at
  batch 1 (eval mode, no_grad, warm-up, synchronised on GPU), and the cost of one validation pass during training (16 pairs, batched, Dice and NJD) next to registering and
  scoring the same pairs one by one with every metric; the FLOPs of a training step and of one registration
  (counted, not estimated), the achieved GFLOP/s against this machine's dense FP32 matmul rate timed in the same
  run, and pairs/s; the share of a step's operator time spent in convolutions, grid sampling, matmuls and the
  optimiser (torch.profiler); and one optimiser step of the largest of them with subnormal Adam moments, computed and
  flushed to zero.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import RunConfig
from .execution import is_cuda, iterate_cases, limit_threads
from .interface import register_pair
from .options import resolve_method_options
from .registry import METHODS, create_dataset, is_trainable
from .study import DEFAULT_STUDY


@dataclass
class CaseTiming:
    method: str
    shape: tuple[int, ...]  # of the pairs' images
    pairs: int
    seconds_per_pair: float
    seconds_std: float
    wall_jobs1: float
    wall_jobsn: float
    jobs: int

    @property
    def speedup(self) -> float:
        return self.wall_jobs1 / self.wall_jobsn


@dataclass
class ProbeTiming:
    shape: tuple[int, ...]
    pairs: int
    scoring_s: float  # reading, converting and scoring every pair with every metric
    probe_s: float  # the convention probe over the same pairs
    step: int  # the probe's subsampling step
    suspect: str | None

    @property
    def share(self) -> float:
        return self.probe_s / self.scoring_s


def time_probe(pairs: Sequence[Any], folder: Any, written: str = "channel_last") -> ProbeTiming:
    """The fields method's convention probe against scoring the folder it probes: each pair's true flow written in
    ``folder`` (Learn2Reg's layout by default, declared right), then scored as a run scores it and probed."""
    from pathlib import Path

    from .fields import FieldConvention, from_regbench
    from .metrics import evaluate

    folder = Path(folder)
    convention = FieldConvention(layout=written)
    for pair in pairs:
        np.savez(folder / f"{pair.case_id}.npz", from_regbench(pair.flow_gt, convention, pair.spacing))
    method = METHODS.create("fields.perf", folder=str(folder), layout=written)
    start = time.perf_counter()
    for pair in pairs:
        evaluate(pair, register_pair(method, pair))
    scoring = time.perf_counter() - start
    start = time.perf_counter()
    finding = method.probe(list(pairs)) or {}
    probe = time.perf_counter() - start
    return ProbeTiming(tuple(pairs[0].fixed.shape), len(pairs), scoring, probe, int(finding.get("step", 1)), finding.get("suspect"))


def format_probe_timing(timing: ProbeTiming) -> str:
    return (
        f"fields probe on {timing.pairs} pairs of {' x '.join(map(str, timing.shape))} (step {timing.step}): {timing.probe_s:.1f} s, "
        f"scoring them {timing.scoring_s:.1f} s: {100 * timing.share:.0f} % of scoring; suspect: {timing.suspect or 'none'}"
    )


def benchmark_pairs(size: int, n_pairs: int, seed: int = 0, dims: int = 2, depth: int = 10) -> list[Any]:
    """Synthetic pairs to time: 2-D slices of ``size`` px, or (``dims`` 3) short-axis stacks of ``depth``
    slices 10 mm apart of ``size`` × ``size`` px (the 3-D synthetic heart)."""
    if dims == 3:
        volumes = create_dataset("synthetic3d", n_subjects=max(4, n_pairs), image_size=size, depth=depth, seed=seed)
        return [p for split in ("train", "val", "test") for p in volumes.pairs(split)][:n_pairs]
    ds = create_dataset("synthetic", n_subjects=max(6, n_pairs // 6 + 2), image_size=size, seed=seed)
    pairs = [p for s in ds.subjects() for p in ds.subject_pairs(s)]
    return pairs[:n_pairs]


def time_cases(name: str, pairs: Sequence[Any], jobs: int = 2, options: dict[str, Any] | None = None) -> CaseTiming:
    method = METHODS.create(name, **(options or {}))
    if is_trainable(method):
        raise ValueError(f"{name} is trainable: its timings come from the training-step benchmark")
    import torch

    previous_threads = torch.get_num_threads()
    limit_threads(1)  # one thread per registration, as each worker of a parallel run has
    try:
        return _time_cases(name, method, pairs, jobs)
    finally:
        torch.set_num_threads(previous_threads)  # the caller's process keeps its threads


def _time_cases(name: str, method: Any, pairs: Sequence[Any], jobs: int) -> CaseTiming:
    register_pair(method, pairs[0])  # warm-up (imports, first-call allocations)
    times = []
    for p in pairs:
        start = time.perf_counter()
        register_pair(method, p)
        times.append(time.perf_counter() - start)
    # Start the worker pool the runner uses and let each worker register once: ANTs loads its library (~1.3 s)
    # on the first call in a process, a one-off cost a real run spreads over all its pairs. With --jobs 1,
    # methods that isolate their cases (regbench.execution.isolates_cases) run them in one such worker.
    _warm_pool(method, pairs[0], 1)
    config = RunConfig(methods=[name], jobs=1)
    start = time.perf_counter()
    list(iterate_cases(method, pairs, config, examples=set()))
    wall1 = time.perf_counter() - start
    _warm_pool(method, pairs[0], jobs)
    config = RunConfig(methods=[name], jobs=jobs)
    start = time.perf_counter()
    list(iterate_cases(method, pairs, config, examples=set()))
    walln = time.perf_counter() - start
    return CaseTiming(name, tuple(pairs[0].fixed.shape), len(pairs), float(np.mean(times)), float(np.std(times)), wall1, walln, jobs)


def _warm_up(method: Any, pair: Any) -> None:
    limit_threads(1)
    register_pair(method, pair)


def _warm_pool(method: Any, pair: Any, jobs: int) -> None:
    from .pool import Task, run_isolated

    list(run_isolated(_warm_up, [Task(i, (method, pair), {}) for i in range(2 * jobs)], jobs, timeout_s=None))


def format_case_timings(rows: Sequence[CaseTiming]) -> str:
    lines = [f"{'method':<16}{'shape':>10}{'pairs':>7}{'s/pair (1 thread)':>20}{'wall --jobs 1':>15}{'wall --jobs N':>15}{'speed-up':>10}"]
    for r in rows:
        lines.append(
            f"{r.method:<16}{'×'.join(map(str, r.shape)):>10}{r.pairs:>7}{r.seconds_per_pair:>12.4f} ± {r.seconds_std:.4f}"
            f"{r.wall_jobs1:>14.2f}s{r.wall_jobsn:>13.2f}s (N={r.jobs}){r.speedup:>6.2f}×"
        )
    return "\n".join(lines)


@dataclass
class StepTiming:
    method: str
    size: int | str  # px per side (2-D), or the volumes' shape "D×H×W"
    batch: int
    step_s: float
    inference_ms: float
    inference_std_ms: float
    validation_ms: float  # one training validation pass over VALIDATION_PAIRS: batched forward, Dice and NJD
    full_evaluation_ms: float  # the same pairs registered one by one and scored with every metric (as the test split)
    parameters: int  # trainable parameters of the model timed
    step_gflop: float = float("nan")  # counted (torch.utils.flop_counter) in one training step: forward + backward
    inference_gflop: float = float("nan")  # counted in one registration at batch 1
    op_shares: dict[str, float] | None = None  # share of a step's operator time per OP_GROUPS group (torch.profiler)
    # CUDA: peak memory allocated during the timed steps (torch.cuda.max_memory_allocated); CPU: the same count
    # for one step from torch.profiler's memory records (cpu_step_peak_mib)
    peak_mb: float = float("nan")
    precision: str = "fp32"  # the method's TrainSettings.precision the step ran at
    device: str = "cpu"
    compile_mode: str = "none"  # the method's TrainSettings.compile_mode the steps ran with
    host_syncs: float | None = None  # CUDA: operations per step that made the host wait for the device

    @property
    def step_gflops(self) -> float:
        """Achieved GFLOP/s of the training step."""
        return self.step_gflop / self.step_s

    @property
    def train_pairs_per_s(self) -> float:
        return self.batch / self.step_s

    @property
    def inference_pairs_per_s(self) -> float:
        return 1000.0 / self.inference_ms


# Where a training step's time goes, by operator (torch.profiler's self CPU time): the groups perf prints.
OP_GROUPS: dict[str, tuple[str, ...]] = {
    "conv fwd": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::cudnn_convolution"),
    "conv bwd": ("aten::convolution_backward",),
    "grid_sample fwd": ("aten::grid_sampler_2d", "aten::grid_sampler_3d", "aten::cudnn_grid_sampler"),
    "grid_sample bwd": ("aten::grid_sampler_2d_backward", "aten::grid_sampler_3d_backward", "aten::cudnn_grid_sampler_backward"),
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
    "optimiser": ("aten::_fused_adamw_", "aten::_fused_adam_", "Optimizer.step#AdamW.step", "Optimizer.zero_grad#AdamW.zero_grad"),
}


def operator_shares(fn: Any, repeats: int = 2, device: Any = "cpu") -> dict[str, float]:
    """Share of ``fn``'s operator time (``repeats`` calls) per :data:`OP_GROUPS` group; the rest (BatchNorm,
    activations, the losses' elementwise work, copies) is ``other``. On CPU the operators' self CPU time; on a
    GPU their self CUDA kernel time (the host's launch time says nothing of where a GPU's time goes)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = is_cuda(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
        if cuda:
            torch.cuda.synchronize(device)
    totals = {group: 0.0 for group in OP_GROUPS}
    totals["other"] = 0.0
    group_of = {name: group for group, names in OP_GROUPS.items() for name in names}
    for event in prof.key_averages():
        spent = getattr(event, "self_device_time_total", 0.0) if cuda else event.self_cpu_time_total
        totals[group_of.get(event.key, "other")] += spent
    whole = sum(totals.values()) or 1.0
    return {group: t / whole for group, t in totals.items()}


def counted_gflop(fn: Any) -> float:
    """GFLOP of the matmuls and convolutions (forward and backward) ``fn()`` runs, counted by torch's
    ``FlopCounterMode`` (elementwise work, the optimiser and grid sampling are not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # torch's formula counts a grouped conv's weight gradient once per group too many (it ignores groups);
    # HyperMorph's per-sample convolutions are grouped.
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _conv_backward_flop(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: Any,
    output_padding: Any,
    groups: Any,
    output_mask: Any,
    **kwargs: Any,
) -> int:
    """FLOPs of a (non-transposed) conv's backward: each of the input and weight gradients asked for costs
    what the forward does, 2·N·prod(out spatial)·prod(weight shape), groups included (the weight is
    (C_out, C_in/groups, k...))."""
    forward = 2 * x_shape[0] * math.prod((x_shape if transposed else grad_out_shape)[2:]) * math.prod(w_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}  # n of the dense n×n matmul reference, per device type


def dense_matmul_gflops(n: int | None = None, repeats: int = 5, device: Any = "cpu", precision: str = "fp32") -> float:
    """The device's rate on a dense n×n matmul at ``precision`` (regbench.trainer.precision_mode: fp32 with TF32
    off, tf32, or bf16 operands), median of ``repeats``: the yardstick a training step's GFLOP/s is compared
    with, timed in the same process and run. CPU: the current torch threads, n = 2048; CUDA: n = 8192, timed
    with CUDA events."""
    import torch

    from .trainer import precision_mode

    device = torch.device(device)
    n = n or MATMUL_SIZE[device.type]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    with precision_mode(precision, device, autocast=False):
        a @ b  # warm-up
        times = [elapsed_s(lambda: a @ b, device) for _ in range(repeats)]
    return 2 * n**3 / float(np.median(times)) / 1e9


def elapsed_s(fn: Any, device: Any = "cpu") -> float:
    """Seconds ``fn()`` takes on ``device``: on a GPU between two CUDA events around it (the kernels' time, not
    the host's launch time), on a CPU by the wall clock."""
    import torch

    if not is_cuda(device):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(device)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000.0


def time_combiner_forms(name: str, profile: str = "quick", device: str = "auto", repeats: int = 20, dims: int = 2) -> dict[str, Any] | None:
    """Median ms of one call of each form of a deep method's gradient combiner on ``device``, on random gradients
    shaped as its ``dims``-D network's parameters, when the combiner has several (``FORMS``, one chosen per device by
    ``form_for``); None otherwise. On a GPU, CUDA events around the call include the device's idle time while the
    host issues the kernels: a loop of small kernels costs what its launches cost."""
    import torch

    from .deep import DeepRegistration
    from .trainer import CombinerForms

    method = build_timed_method(name, profile, device=device, dims=dims)
    combiner = method.combiner if isinstance(method, DeepRegistration) else None
    if not isinstance(combiner, CombinerForms) or len(combiner.FORMS) < 2:
        return None
    forms = combiner.FORMS
    on = torch.device(method.device)
    draw = torch.Generator(device=on).manual_seed(0)
    shapes = [p.shape for p in method.model.parameters() if p.requires_grad]
    g_sim = [torch.randn(s, generator=draw, device=on) for s in shapes]
    g_reg = [torch.randn(s, generator=draw, device=on) for s in shapes]
    combiner.generator = torch.Generator(device=on).manual_seed(1)  # a combiner that draws noise reads it
    medians = {}
    for form in forms:
        call = getattr(combiner, form)
        for _ in range(3):
            call(g_sim, g_reg)  # warm-up: first-call allocations, cached group indices
        medians[form] = 1000 * float(np.median([elapsed_s(lambda: call(g_sim, g_reg), on) for _ in range(repeats)]))
    return {**medians, "used": combiner.form_for(on)}


def format_combiner_timings(timings: dict[str, dict[str, Any]], device: str, repeats: int = 20) -> str:
    """One line per method: each form's ms and the form its training uses on ``device``."""
    lines = [f"gradient combiner alone, ms per step on {device} (median of {repeats}; gradients shaped as the network's):"]
    for name, t in timings.items():
        forms = ", ".join(f"{form} {ms:.2f}" for form, ms in t.items() if form != "used")
        lines.append(f"  {name:<14} {forms} (training here uses {t['used']})")
    return "\n".join(lines)


def host_syncs_per(fn: Any, device: Any, repeats: int = 3) -> float | None:
    """On a CUDA device, how many operations per call of ``fn`` made the host wait for the device (torch's sync
    debug mode warns at each: an ``.item()``, a copy from pageable host memory, a data-dependent shape); each
    wait stops the host from queueing kernels ahead. None on a CPU."""
    if not is_cuda(device):
        return None
    import warnings

    import torch

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(repeats):
                fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / repeats


def device_settings(device: Any, precision: str) -> dict[str, Any]:
    """What decides a GPU step's speed and numbers: the precision, TF32 for matmuls and cuDNN convolutions under
    it, cudnn.benchmark and deterministic algorithms (printed by perf, recorded in a run's manifest)."""
    import torch

    from .trainer import precision_mode

    with precision_mode(precision, torch.device(device), autocast=False):
        settings = {
            "precision": precision,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        }
    return {**settings, "cudnn_benchmark": torch.backends.cudnn.benchmark, "deterministic": torch.are_deterministic_algorithms_enabled()}


def build_timed_method(
    name: str,
    profile: str = "quick",
    batch: int | None = None,
    device: str = "auto",
    precision: str | None = None,
    dims: int = 2,
    compile_mode: str | None = None,
) -> Any:
    """The method as ``regbench run --profile PROFILE`` builds it for ``dims``-D images (one option
    resolution), at ``batch``, ``precision`` and ``compile_mode`` if given."""
    given: dict[str, Any] = {"batch_size": batch} if batch else {}
    if precision is not None:
        given["precision"] = precision
    if compile_mode is not None:
        given["compile_mode"] = compile_mode
    method = METHODS.create(name, **resolve_method_options(name, profile, given, device=device, dims=dims))
    method.use_dims(dims)
    return method


def cpu_step_peak_mib(step: Any, model: Any, optimiser: Any) -> float:
    """Peak tensor memory of one CPU training ``step()`` in MiB, as CUDA's allocated peak counts it: what lives
    across steps (parameters, their gradients, the optimiser's state) plus the highest point of the step's own
    allocations, from torch.profiler's per-operator memory records in time order (an operator's temporaries
    freed inside it are netted)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    def nbytes(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))

    params = list(model.parameters())
    state = [value for entry in optimiser.state.values() for value in entry.values()]
    persistent = nbytes(params) + nbytes(p.grad for p in params) + nbytes(state)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return (persistent + peak) / 2**20


def time_training_steps(
    names: Sequence[str],
    size: int = 128,
    batch: int | None = None,
    steps: int = 5,
    device: str = "auto",
    repeats: int = 20,
    profile: str = "quick",
    precision: str | None = None,
    dims: int = 2,
    depth: int = 10,
    compile_mode: str | None = None,
) -> list[StepTiming]:
    """Seconds per training step on one fixed batch (after one warm-up step), and inference ms per pair; each
    method built with ``profile``'s options for ``dims``-D images (its batch size unless ``batch`` is given; its
    precision unless ``precision`` is given), on 2-D slices of ``size`` px or (``dims`` 3) stacks of ``depth``
    slices of ``size`` × ``size`` px. On a GPU both are timed with CUDA events and the peak memory is CUDA's
    allocated peak during the steps; on a CPU it is :func:`cpu_step_peak_mib` of one more step. With
    ``compile_mode`` the steps run as training runs them (compiled; the warm-up step compiles); registration
    and the FLOP count use the eager network."""
    import torch

    from .trainer import PlainObjective

    out = []
    for name in names:
        method = build_timed_method(name, profile, batch, device, precision, dims, compile_mode)
        step_batch = method.settings.batch_size
        pairs = benchmark_pairs(size, step_batch, dims=dims, depth=depth)
        cuda = is_cuda(method.device)
        model = method.model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        fixed = torch.from_numpy(np.stack([p.fixed for p in pairs])[:, None]).to(method.device)
        moving = torch.from_numpy(np.stack([p.moving for p in pairs])[:, None]).to(method.device)
        from .trainer import Trainer, model_lr_scales

        trainer = Trainer(method.settings, method.combiner, method.device, method.objective)
        optimiser = trainer.make_optimiser(params, model_lr_scales(model))
        objective = method.objective or PlainObjective()
        method.combiner.generator = torch.Generator(device=method.device).manual_seed(0)
        generator = method.combiner.generator
        net = trainer.training_model(model)
        trainer.step(net, params, optimiser, objective, moving, fixed, generator)  # warm-up (and compilation)
        if cuda:
            torch.cuda.reset_peak_memory_stats(method.device)
        times = [elapsed_s(lambda: trainer.step(net, params, optimiser, objective, moving, fixed, generator), method.device) for _ in range(steps)]
        syncs = host_syncs_per(lambda: trainer.step(net, params, optimiser, objective, moving, fixed, generator), method.device)
        if cuda:
            peak_mb = torch.cuda.max_memory_allocated(method.device) / 2**20
        else:
            peak_mb = cpu_step_peak_mib(lambda: trainer.step(net, params, optimiser, objective, moving, fixed, generator), model, optimiser)
        model.eval()
        infer = []
        for i in range(repeats + 3):
            p = pairs[i % len(pairs)]
            seconds = elapsed_s(lambda: method.register(p.fixed, p.moving), method.device)
            if i >= 3:
                infer.append(1000 * seconds)
        validation, full = _validation_timings(method, benchmark_pairs(size, VALIDATION_PAIRS, seed=1, dims=dims, depth=depth))
        inference_gflop = counted_gflop(lambda: method.register(pairs[0].fixed, pairs[0].moving))
        model.train()
        step_gflop = counted_gflop(lambda: trainer.step(model, params, optimiser, objective, moving, fixed, generator))
        shares = operator_shares(lambda: trainer.step(net, params, optimiser, objective, moving, fixed, generator), device=method.device)
        out.append(
            StepTiming(
                name,
                "×".join(map(str, pairs[0].fixed.shape)) if dims == 3 else size,
                step_batch,
                float(np.median(times)),
                float(np.median(infer)),
                float(np.std(infer)),
                validation,
                full,
                method.num_parameters(),
                step_gflop,
                inference_gflop,
                shares,
                peak_mb,
                method.settings.precision,
                str(method.device),
                method.settings.compile_mode,
                syncs,
            )
        )
    return out


VALIDATION_PAIRS = 16  # the CPU profiles' max_val_pairs

# A process timing training steps, or a CPU-bound neighbour (another multi-threaded torch process, as a second
# training is), each with a given OpenMP wait policy. torch is imported before regbench, so that the runtime reads
# the policy given ("unset": none, what ran before regbench set PASSIVE itself).
_POLICY_PRELUDE = """
import os, sys
policy = sys.argv[1]
if policy == "unset":
    os.environ.pop("OMP_WAIT_POLICY", None)
else:
    os.environ["OMP_WAIT_POLICY"] = policy
import torch
"""
_TIMED_STEPS = (
    _POLICY_PRELUDE
    + """
from regbench.perf import time_training_steps
print(time_training_steps([sys.argv[2]], int(sys.argv[3]), steps=int(sys.argv[4]), repeats=1, profile=sys.argv[5])[0].step_s)
"""
)
_NEIGHBOUR = (
    _POLICY_PRELUDE
    + """
import torch.nn.functional as F
x, w = torch.randn(16, 16, 64, 64), torch.randn(16, 16, 3, 3)
while True:
    F.conv2d(F.leaky_relu(x), w, padding=1)
"""
)


@dataclass
class ContentionTiming:
    method: str
    policy: str  # OMP_WAIT_POLICY of both processes ("unset": none)
    alone_s: float
    beside_s: float  # beside a CPU-bound neighbour process


def time_training_beside_load(
    name: str = DEFAULT_STUDY.step_reference, size: int = 64, profile: str = "quick", steps: int = 10, policies: Sequence[str] = ("unset", "PASSIVE")
) -> list[ContentionTiming]:
    """Median training-step seconds of ``name`` alone and beside a CPU-bound neighbour (a multi-threaded torch
    process running convolutions), both under each OpenMP wait policy; each in fresh processes."""
    import subprocess
    import sys

    def timed(policy: str) -> float:
        out = subprocess.run([sys.executable, "-c", _TIMED_STEPS, policy, name, str(size), str(steps), profile], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    rows = []
    for policy in policies:
        alone = timed(policy)
        neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR, policy])
        try:
            time.sleep(2.0)  # let it import torch and start working
            beside = timed(policy)
        finally:
            neighbour.kill()
            neighbour.wait()
        rows.append(ContentionTiming(name, policy, alone, beside))
    return rows


def format_contention_timings(rows: Sequence[ContentionTiming]) -> str:
    lines = [f"{'method':<16}{'OMP_WAIT_POLICY':>16}{'step alone (s)':>16}{'beside a CPU-bound process (s)':>32}{'slowdown':>10}"]
    for r in rows:
        lines.append(f"{r.method:<16}{r.policy:>16}{r.alone_s:>16.3f}{r.beside_s:>32.3f}{r.beside_s / r.alone_s:>9.1f}×")
    return "\n".join(lines)


def _validation_timings(method: Any, pairs: Sequence[Any], repeats: int = 3) -> tuple[float, float]:
    """Median ms of ``method.validate(pairs)`` (what training runs every ``val_every`` epochs) and of registering
    and fully scoring the same pairs one at a time (what validation cost before it was batched)."""
    from .metrics import evaluate

    fast, full = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        method.validate(pairs)
        fast.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        for p in pairs:
            evaluate(p, method.register(p.fixed, p.moving))
        full.append(1000 * (time.perf_counter() - start))
    return float(np.median(fast)), float(np.median(full))


def time_subnormal_optimiser_step(n_params: int, repeats: int = 5) -> tuple[float, float]:
    """Median ms of one fused AdamW step over ``n_params`` parameters whose second moments are subnormal, with
    subnormals computed (what training did before) and flushed to zero (what it does now: see
    ``regbench.trainer.flush_subnormals``). One thread: threads keep the flush setting they were started with."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    medians = []
    try:
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            param = torch.nn.Parameter(torch.zeros(n_params))
            optimiser = torch.optim.AdamW([param], lr=1e-3, fused=True)
            grad = torch.full_like(param, 1e-21)  # its square, 1e-42, is subnormal
            times = []
            for i in range(repeats + 1):
                param.grad = grad
                start = time.perf_counter()
                optimiser.step()
                if i:
                    times.append(1000 * (time.perf_counter() - start))
            medians.append(float(np.median(times)))
            del param, optimiser, grad
    finally:
        torch.set_flush_denormal(True)
        torch.set_num_threads(threads)
    return medians[0], medians[1]


def format_subnormal_timing(n_params: int, computed_ms: float, flushed_ms: float) -> str:
    return (
        f"AdamW step over {n_params:,} parameters with subnormal moments (1 thread): {computed_ms:.0f} ms computing "
        f"subnormals, {flushed_ms:.0f} ms flushing them to zero as training does ({computed_ms / flushed_ms:.1f}×)"
    )


def format_step_timings(
    rows: Sequence[StepTiming], reference: str = DEFAULT_STUDY.step_reference, matmul_gflops: float | None = None, matmul_label: str | None = None
) -> str:
    """The step table (with the peak tensor memory of a step), then (with ``matmul_gflops``) the throughput table: counted
    GFLOP per step, achieved GFLOP/s and its share of the dense matmul rate measured in the same run (described
    by ``matmul_label``), and pairs/s; then where a step's operator time goes."""
    ref = next((r.step_s for r in rows if r.method == reference), None)
    on_gpu = any(r.device.startswith("cuda") for r in rows)
    lines = [
        f"{'method':<16}{'size':>10}{'batch':>7}{'precision':>10}{'train step (s)':>16}{'× ' + reference:>18}{'inference ms/pair':>20}"
        f"{f'validation ms/{VALIDATION_PAIRS} pairs':>26}{'full eval ms/' + str(VALIDATION_PAIRS):>20}{'peak MiB':>10}"
    ]
    compiled = sorted({f"{r.method} {r.compile_mode}" for r in rows if r.compile_mode != "none"})
    if compiled:  # the first step compiled and was not timed
        lines.insert(0, f"training steps compiled (compile_mode): {', '.join(compiled)}")
    for r in rows:
        rel = f"{r.step_s / ref:.2f}×" if ref else "n/a"
        lines.append(
            f"{r.method:<16}{r.size!s:>10}{r.batch:>7}{r.precision:>10}{r.step_s:>16.4f}{rel:>18}{r.inference_ms:>13.2f} ± {r.inference_std_ms:.2f}"
            f"{r.validation_ms:>26.1f}{r.full_evaluation_ms:>20.1f}{r.peak_mb:>10.0f}"
        )
    if any(r.host_syncs is not None for r in rows):
        lines += [
            "",
            "host waits for the device per training step (torch.cuda sync debug mode; 0: none): "
            + ", ".join(f"{r.method} {r.host_syncs:g}" for r in rows if r.host_syncs is not None),
        ]
    if matmul_gflops:
        label = matmul_label or "this machine's dense FP32 matmul (2048², same threads)"
        lines += [
            "",
            f"throughput against {label}: {matmul_gflops:.1f} GFLOP/s",
            f"{'method':<16}{'GFLOP/step':>12}{'GFLOP/s':>10}{'% matmul':>10}{'train pairs/s':>15}{'GFLOP/pair':>12}{'infer pairs/s':>15}",
        ]
        for r in rows:
            lines.append(
                f"{r.method:<16}{r.step_gflop:>12.2f}{r.step_gflops:>10.1f}{100 * r.step_gflops / matmul_gflops:>9.0f}%"
                f"{r.train_pairs_per_s:>15.1f}{r.inference_gflop:>12.3f}{r.inference_pairs_per_s:>15.1f}"
            )
    with_shares = [r for r in rows if r.op_shares]
    if with_shares:
        groups = list(with_shares[0].op_shares or {})
        lines += [
            "",
            f"share of a training step's operator time (torch.profiler, {'self CUDA kernel time' if on_gpu else 'self CPU time'} of 2 steps):",
            f"{'method':<16}" + "".join(f"{g:>17}" for g in groups),
        ]
        for r in with_shares:
            lines.append(f"{r.method:<16}" + "".join(f"{100 * (r.op_shares or {}).get(g, 0.0):>16.1f}%" for g in groups))
    return "\n".join(lines)


def matmul_label(device: Any, precision: str) -> str:
    """How the matmul reference of :func:`dense_matmul_gflops` was taken, for the throughput table's heading."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        kind = {"fp32": "FP32", "tf32": "FP32: TF32 is CUDA's", "bf16": "bf16"}[precision]
        return f"this CPU's dense matmul at the steps' precision ({kind}, {MATMUL_SIZE['cpu']}², {torch.get_num_threads()} threads)"
    kind = {"fp32": "FP32, TF32 off", "tf32": "TF32", "bf16": "bf16"}[precision]
    return f"{torch.cuda.get_device_name(device)}'s dense matmul at the steps' precision ({kind}, {MATMUL_SIZE['cuda']}², CUDA events)"
