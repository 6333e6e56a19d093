"""methods/unigradicon.py: weights by path (bound by their SHA-256), never fetched unasked; random weights for the
tests, marked by the tag; the ITK transform converted into a voxel flow, checked against ITK's own resampling."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from regbench import create_method
from regbench.errors import ConfigError
from regbench.registry import METHODS

pytest.importorskip("unigradicon", reason='unigradicon is not installed (pip install "regbench[unigradicon]")')

INSIDE_3D = np.s_[1:-1, 2:-2, 2:-2]
SMALLEST_GRID = 80  # the network at 80³ instead of 175³: ~4 s a pair on 2 cores instead of ~43 s


def test_without_weights_it_says_how_to_supply_them_and_no_pattern_runs_it():
    with pytest.raises(ConfigError) as error:
        create_method("unigradicon.official")
    message = str(error.value)
    assert "Step_2_final.trch" in message and "releases/download/unigradicon_weights" in message
    assert "weights: PATH" in message and "unigradicon.random" in message and "allow_download: true" in message
    assert not [name for name in METHODS.resolve("*") if "gradicon" in name]
    with pytest.raises(ConfigError, match="named instances only"):
        METHODS.resolve("unigradicon")
    assert METHODS.display_name("unigradicon.random") == "uniGradICON (random)"  # every table marks it


def test_a_weights_file_whose_sha256_differs_is_one_error_naming_both_sums(tmp_path):
    weights = tmp_path / "Step_2_final.trch"
    weights.write_bytes(b"not the official weights")
    found = hashlib.sha256(weights.read_bytes()).hexdigest()
    with pytest.raises(ConfigError) as error:
        create_method("unigradicon.mine", weights=str(weights), weights_sha256="ab" * 32)
    assert str(error.value) == f"unigradicon.mine: weights file {str(weights)!r} has SHA-256 {found}, but weights_sha256 is {'ab' * 32}"
    method = create_method("multigradicon.mine", weights=str(weights), weights_sha256=found)
    assert method.options()["weights_sha256"] == found  # bound into the run
    with pytest.raises(ConfigError, match="does not exist"):
        create_method("unigradicon.mine", weights=str(tmp_path / "missing.trch"))


@pytest.mark.slow
def test_random_weights_give_a_flow_that_reproduces_itks_resampling_and_saved_weights_load(stack, tmp_path):
    """~25 s: two registrations of a 10 × 32 × 32 stack through the network at 80³, writing its 283 MB of weights."""
    import torch

    from regbench.interface import register_pair
    from regbench.warp import warp

    method = create_method("unigradicon.random", grid=SMALLEST_GRID)
    assert method.num_parameters() == 70_680_916
    reg = register_pair(method, stack)
    assert np.abs(reg.flow).max() > 0.1  # random, not an identity map
    ours = warp(stack.moving, reg.flow)
    error = np.mean((ours[INSIDE_3D] - reg.moved[INSIDE_3D]) ** 2)
    assert error < 1e-8
    assert np.mean((warp(stack.moving, reg.flow[::-1].copy())[INSIDE_3D] - reg.moved[INSIDE_3D]) ** 2) > 100 * max(error, 1e-12)
    weights = tmp_path / "weights.trch"
    torch.save(method.network().regis_net.state_dict(), weights)
    loaded = create_method("unigradicon.saved", grid=SMALLEST_GRID, weights=str(weights))
    assert np.allclose(register_pair(loaded, stack).flow, reg.flow, atol=1e-5)
    assert loaded.options()["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.slow
def test_check_method_passes_every_check_but_the_known_displacement_which_random_weights_cannot_recover():
    """~40 s: check-method's volume checks on the network at 80³."""
    from regbench.check import check_method

    report = check_method("unigradicon.random", grid=SMALLEST_GRID)
    assert [result.name for result in report.failures] == ["recovers a known displacement (3-D)"]
    assert len(report.results) == 13
