"""``initial``: no registration (zero flow, moved = moving); the table's baseline row."""

from __future__ import annotations

import numpy as np

from ..interface import Registration, validate_images
from ..registry import MethodMeta, register_method


@register_method("initial", MethodMeta(display_name="Initial", dims=(2, 3)))
class Initial:
    """Identity transform: the overlap the pair has before any registration."""

    name = "initial"

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=(2, 3))
        return Registration(moved=moving.copy(), flow=np.zeros((fixed.ndim, *fixed.shape), dtype=np.float32))
