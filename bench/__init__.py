"""regbench: a benchmarking suite for deformable image registration.

Data flows one way: dataset → pair → method → registration → metrics → store → report.
"""

import os as _os

# Idle OpenMP threads sleep instead of spinning (before torch loads its OpenMP runtime; a value the user set
# wins). Spinning threads beside other CPU work, another training or a worker, slowed trainings 4–9×.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch's CPU allocator puts tensors of 2 MB and more on transparent huge pages (Linux; ignored elsewhere). A
# freshly allocated large tensor (HyperMorph's ~0.5 GB of generated-weight gradients, every step) otherwise takes
# one page fault per 4 kB: the weight-gradient matmul of its heads ran at 12 GFLOP/s instead of 31 (2 threads,
# batch 16). Allocation only: no number changes.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from typing import TYPE_CHECKING, Any

from .errors import ConfigError, DataError, InputError, RegbenchError, RegistryError
from .interface import Method, Pair, Registration, TrainableMethod
from .registry import (
    DatasetMeta,
    MethodMeta,
    create_dataset,
    create_method,
    list_datasets,
    list_methods,
    register_dataset,
    register_method,
)
from .warp import warp, warp_label

if TYPE_CHECKING:
    from .check import check_method


def __getattr__(name: str) -> Any:
    """``check_method`` on first use: it loads torch (~1 s), which `regbench --help` and reports do not need."""
    if name == "check_method":
        from .check import check_method

        return check_method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetMeta",
    "InputError",
    "Method",
    "MethodMeta",
    "Pair",
    "RegbenchError",
    "Registration",
    "RegistryError",
    "TrainableMethod",
    "check_method",
    "create_dataset",
    "create_method",
    "list_datasets",
    "list_methods",
    "register_dataset",
    "register_method",
    "warp",
    "warp_label",
    "__version__",
]
