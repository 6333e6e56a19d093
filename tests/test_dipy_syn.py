"""methods/dipy_syn.py: DIPY's own defaults, its field in world units converted into voxels (checked against DIPY's
own moved image on an anisotropic slice; the 3-D volume: tests/test_classical_3d.py), short axes padded."""

from __future__ import annotations

import numpy as np
import pytest

from regbench import Pair, create_method
from regbench.warp import warp

pytest.importorskip("dipy", reason='dipy is not installed (pip install "regbench[dipy]")')

INSIDE = np.s_[3:-3, 3:-3]


def test_its_defaults_are_dipys_own():
    import inspect

    from dipy.align.imwarp import SymmetricDiffeomorphicRegistration
    from dipy.align.metrics import CCMetric

    options = create_method("dipy-syn").options()
    registration, metric = inspect.signature(SymmetricDiffeomorphicRegistration).parameters, inspect.signature(CCMetric).parameters
    for name in ("step_length", "ss_sigma_factor", "opt_tol", "inv_iter", "inv_tol"):
        assert options[name] == registration[name].default
    assert options["sigma_diff"] == metric["sigma_diff"].default and options["radius"] == metric["radius"].default
    assert options["level_iters"] == [100, 100, 25]  # DIPY's default when level_iters is None
    # CC's radius 4 on three levels needs 40 voxels along an axis; the other metrics need no padding
    assert create_method("dipy-syn").shortest_axis() == 40 and create_method("dipy-syn", metric="SSD").shortest_axis() == 1


def test_its_flow_on_an_anisotropic_slice_reproduces_dipys_own_moved_image(pairs):
    p = pairs[1]
    anisotropic = Pair(**{**p.__dict__, "spacing": (3.0, 1.5)})
    reg = create_method("dipy-syn").register_pair(anisotropic)
    assert np.abs(reg.flow).max() > 0.5
    ours = warp(p.moving, reg.flow)
    error = np.mean((ours[INSIDE] - reg.moved[INSIDE]) ** 2)
    assert error < 1e-6
    assert np.mean((warp(p.moving, reg.flow[::-1].copy())[INSIDE] - reg.moved[INSIDE]) ** 2) > 10 * error
    world = reg.flow * np.reshape((2.0, 1.0), (2, 1, 1))  # left in world units
    assert np.mean((warp(p.moving, world.astype(np.float32))[INSIDE] - reg.moved[INSIDE]) ** 2) > 10 * error
