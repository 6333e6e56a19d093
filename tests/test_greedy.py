"""methods/greedy.py: Greedy's command as its documentation gives it, its seed, and its warp converted from
physical x-first units into voxels, checked against Greedy's own resliced image on an anisotropic slice (the
3-D volume: tests/test_classical_3d.py)."""

from __future__ import annotations

import numpy as np
import pytest

from regbench import Pair, create_method
from regbench.warp import warp

pytest.importorskip("picsl_greedy", reason='picsl-greedy is not installed (pip install "regbench[greedy]")')

INSIDE = np.s_[3:-3, 3:-3]


def test_the_command_is_greedys_documented_deformable_registration_with_a_fixed_noise_seed():
    method = create_method("greedy")
    command = method.command(3)
    for part in ("-m NCC 2x2x2", "-n 100x50x10", "-s 1.732vox 0.7071vox", "-e 1", "-wp 0", "-seed 1 "):
        assert part in command
    assert "-sv" not in command and "-m NCC 2x2 " in create_method("greedy").command(2)
    assert "-seed 5 " in create_method("greedy", seed=4).command(2)  # never Greedy's 0, which draws anew each run
    assert " -sv " in create_method("greedy", stationary_velocity=True).command(2)
    with pytest.raises(ValueError, match="greedy metric must be one of NCC, SSD, MI, NMI, got 'CC'"):
        create_method("greedy", metric="CC")


def test_the_run_seed_fixes_greedys_noise(pairs):
    p = pairs[1]
    a, b = (create_method("greedy").register(p.fixed, p.moving).flow for _ in range(2))
    other = create_method("greedy", seed=1).register(p.fixed, p.moving).flow
    assert np.array_equal(a, b)
    assert not np.array_equal(a, other)  # the seed reaches Greedy: its NCC noise differs


def test_its_flow_on_an_anisotropic_slice_reproduces_greedys_own_resliced_image(pairs):
    p = pairs[1]
    anisotropic = Pair(**{**p.__dict__, "spacing": (3.0, 1.5)})
    reg = create_method("greedy").register_pair(anisotropic)
    assert np.abs(reg.flow).max() > 0.5
    ours = warp(p.moving, reg.flow)
    error = np.mean((ours[INSIDE] - reg.moved[INSIDE]) ** 2)
    assert error < 1e-6
    # Components left in Greedy's x-first order, or left in physical units, would not reproduce it.
    assert np.mean((warp(p.moving, reg.flow[::-1].copy())[INSIDE] - reg.moved[INSIDE]) ** 2) > 10 * error
    physical = reg.flow * np.reshape((2.0, 1.0), (2, 1, 1))
    assert np.mean((warp(p.moving, physical.astype(np.float32))[INSIDE] - reg.moved[INSIDE]) ** 2) > 10 * error


def test_its_answer_does_not_depend_on_the_spacing_which_converts_back_exactly(stack):
    """Greedy's metric radius, smoothing and pyramid are in voxels: the physical warp of an anisotropic stack,
    divided by each axis's relative spacing, is the warp of the same voxels at unit spacing."""
    method = create_method("greedy")
    plain = method.register(stack.fixed, stack.moving).flow
    assert np.abs(plain).max() > 0.5
    assert np.allclose(method.register_pair(stack).flow, plain, atol=1e-3)  # 10 × 6 × 6 mm
