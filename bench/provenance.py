"""What a run records about where it ran: package versions, git commit, machine, device."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("regbench", "numpy", "scipy", "pandas", "torch", "SimpleITK", "antspyx", "medpy", "nibabel", "joblib", "seaborn")


@functools.cache
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    out: list[tuple[str, str | None]] = []
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def package_versions() -> dict[str, str | None]:
    """The versions of regbench and the packages its numbers depend on (read once per process)."""
    return dict(_package_versions())


@functools.cache
def git_commit() -> str | None:
    """The commit of the regbench source tree, when it is a git checkout (editable installs); read once per
    process (the code a process runs is what it imported)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


@functools.cache
def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def determinism() -> dict[str, Any]:
    """What decides whether two runs give bit-identical deep results. CPU: torch version, thread count, CPU model
    and the instruction set torch dispatches to (AVX2, AVX512, ...). CUDA: the device, CUDA/cuDNN versions and
    whether deterministic algorithms were asked for (otherwise atomics make conv backward nondeterministic)."""
    import torch

    out: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if torch.cuda.is_available():
        out.update(
            cuda_device=torch.cuda.get_device_name(0),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            # torch's TF32 defaults outside a deep method's steps; each method's steps set their own from its
            # precision (fp32: both off; regbench.trainer.precision_mode), which its options record when not fp32
            matmul_tf32_default=torch.backends.cuda.matmul.allow_tf32,
            cudnn_tf32_default=torch.backends.cudnn.allow_tf32,
        )
    return out


def environment() -> dict[str, Any]:
    return {
        "determinism": determinism(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "machine": {"node": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "device": device_name(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
