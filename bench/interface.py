"""What flows through regbench: a Pair goes into a method, a Registration comes out.

Images are 2-D float32 arrays in [0, 1]; labels are integer maps in the common convention
0 background, 1 RV, 2 Myo, 3 LV (ACDC's). Flows follow :mod:`regbench.warp` (pixels, row then column).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import InputError
from .warp import warp_label as _warp_label

#: Common label convention (ACDC's). Dataset plugins map their own labels to it.
STRUCTURES: dict[str, int] = {"lv": 3, "myo": 2, "rv": 1}


@dataclass
class Pair:
    """One registration problem: ES frame moving, ED frame fixed, with their label maps."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_label: np.ndarray
    moving_label: np.ndarray
    spacing: tuple[float, float]  # mm per pixel along (row, column)
    subject: str
    slice: int
    flow_gt: np.ndarray | None = None  # ground-truth flow (synthetic data only), same convention
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.subject, int(self.slice))


@dataclass
class Registration:
    """A method's answer for one pair.

    ``flow``: (2, H, W) float32 displacement in pixels, channel 0 rows, channel 1 columns, such that
    ``moved(p) = moving(p + flow(p))``. ``label_warper``: the method's own way of moving a label map with the
    same transform (e.g. ANTs ``genericLabel``); by default regbench's nearest-neighbour warper on ``flow``.
    """

    moved: np.ndarray
    flow: np.ndarray
    label_warper: Callable[[np.ndarray], np.ndarray] | None = None

    def warp_label(self, label: np.ndarray) -> np.ndarray:
        if self.label_warper is not None:
            return np.asarray(self.label_warper(label)).astype(label.dtype, copy=False)
        return _warp_label(label, self.flow)


@runtime_checkable
class Method(Protocol):
    """What every method plugin provides. Trainable methods add ``fit``, ``save`` and ``load``."""

    name: str

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration: ...


@runtime_checkable
class TrainableMethod(Method, Protocol):
    def fit(self, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair], workdir: Path | None = None) -> Any: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


def is_trainable(method: Any) -> bool:
    return all(callable(getattr(method, a, None)) for a in ("fit", "save", "load"))


def num_parameters(method: Any) -> int | None:
    """Trainable parameters of the deployed model, or None for methods that are not learned."""
    fn = getattr(method, "num_parameters", None)
    return fn() if callable(fn) else None


def validate_images(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check a pair before registering it; returns float32 copies. Raises InputError naming the problem."""
    fixed = np.asarray(fixed)
    moving = np.asarray(moving)
    for name, img in (("fixed", fixed), ("moving", moving)):
        if img.ndim != 2:
            raise InputError(f"{name} image must be 2-D, got shape {img.shape}")
        if not np.issubdtype(img.dtype, np.number):
            raise InputError(f"{name} image has non-numeric dtype {img.dtype}")
        if not np.all(np.isfinite(img)):
            raise InputError(f"{name} image has {int(np.size(img) - np.isfinite(img).sum())} non-finite values (NaN/inf)")
        if np.ptp(img) == 0:
            raise InputError(f"{name} image is constant (every pixel {float(img.flat[0])!r}): nothing to register")
    if fixed.shape != moving.shape:
        raise InputError(f"fixed and moving images differ in shape: {fixed.shape} vs {moving.shape}")
    return fixed.astype(np.float32, copy=False), moving.astype(np.float32, copy=False)


def validate_registration(registration: Any, shape: tuple[int, ...]) -> Registration:
    """Check a method's answer before it is scored: a Registration whose moved image has ``shape`` and whose
    flow is (2, *shape), both finite. Raises InputError naming the array at fault (a NaN flow would otherwise
    score as a valid case with a plausible Dice)."""
    if not isinstance(registration, Registration):
        raise InputError(f"register() returned {type(registration).__name__}, not regbench.Registration")
    moved, flow = np.asarray(registration.moved), np.asarray(registration.flow)
    if flow.shape != (2, *shape):
        raise InputError(f"flow has shape {flow.shape}, expected {(2, *shape)} (channel 0 rows, channel 1 columns, pixels)")
    if moved.shape != tuple(shape):
        raise InputError(f"moved image has shape {moved.shape}, expected {tuple(shape)}")
    for name, array in (("flow", flow), ("moved image", moved)):
        if not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{name} has non-numeric dtype {array.dtype}")
        bad = int(array.size - np.isfinite(array).sum())
        if bad:
            raise InputError(f"{name} has {bad} non-finite value(s) (NaN/inf) of {array.size}")
    return registration
