"""methods/convexadam.py: ConvexAdam's voxel displacement taken as it is, an anisotropic volume registered on an
isotropic grid and a known shift recovered through it, short axes padded, and the process's warning filters
left as they were by the package's import."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from scipy import ndimage

from regbench import Pair, create_method

pytest.importorskip("convexAdam", reason='convexadam is not installed (pip install "regbench[convexadam]")')


def test_importing_the_package_leaves_the_warning_filters_as_they_were(monkeypatch):
    from regbench.methods.convexadam import _import_convex_adam

    for name in [m for m in sys.modules if m.split(".")[0] == "convexAdam"]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh: its module code runs filterwarnings("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        before = list(warnings.filters)
        _import_convex_adam()
        assert warnings.filters == before


def test_a_known_shift_of_an_anisotropic_volume_comes_back_in_its_voxels():
    """A smooth volume of 12 slices 3 voxels thick, moved by (0.6, 2.0, -1.5) of its voxels: the flow of
    ``register_pair`` (registered on a 34 × 48 × 48 isotropic grid) recovers each component in the pair's voxels."""
    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((12, 48, 48)), (1.0, 3.0, 3.0)).astype(np.float32)
    volume = (volume - volume.min()) / (volume.max() - volume.min())
    shift = np.array([0.6, 2.0, -1.5])
    moving = ndimage.shift(volume, shift, order=1, mode="nearest").astype(np.float32)  # moving(p + shift) = volume(p)
    pair = Pair(
        fixed=volume,
        moving=moving,
        fixed_label=np.zeros_like(volume, np.uint8),
        moving_label=np.zeros_like(volume, np.uint8),
        case_id="shift",
        spacing=(3.0, 1.0, 1.0),
    )
    flow = create_method("convexadam").register_pair(pair).flow
    recovered = flow[:, 3:-3, 12:-12, 12:-12].reshape(3, -1).mean(1)
    assert np.allclose(recovered, shift, atol=0.1), recovered  # measured: within 0.07 voxel


def test_it_registers_a_ten_slice_stack_and_beats_initial(stack):
    from regbench.interface import register_pair
    from regbench.metrics import evaluate

    before, after = (evaluate(stack, register_pair(create_method(name), stack))["dice"] for name in ("initial", "convexadam"))
    assert after > before + 0.05
