"""The shared warper: units (pixels), channel order (row, column) and interpolation modes."""

import numpy as np
import pytest

from regbench import warp, warp_label


def test_row_channel_moves_rows_and_column_channel_moves_columns():
    img = np.zeros((20, 20), np.float32)
    img[10, 5] = 1.0
    flow = np.zeros((2, 20, 20), np.float32)
    flow[0] = 2.0  # moved(p) = moving(p + u): content appears 2 rows earlier
    out = warp(img, flow)
    assert out[8, 5] == pytest.approx(1.0)
    flow = np.zeros((2, 20, 20), np.float32)
    flow[1] = -3.0
    assert warp(img, flow)[10, 8] == pytest.approx(1.0)


def test_subpixel_bilinear_and_zero_padding():
    img = np.tile(np.arange(10, dtype=np.float32), (10, 1))
    flow = np.zeros((2, 10, 10), np.float32)
    flow[1] = 0.5
    out = warp(img, flow)
    assert np.allclose(out[:, :9], img[:, :9] + 0.5)
    assert np.allclose(out[:, 9], 0.5 * 9)  # half outside: blends with the zero padding


def test_label_warp_is_nearest_and_keeps_the_label_set():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (16, 16)).astype(np.uint8)
    flow = rng.normal(0, 1.3, (2, 16, 16)).astype(np.float32)
    out = warp_label(lab, flow)
    assert out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1, 2, 3}


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        warp(np.zeros((8, 8)), np.zeros((2, 8, 9)))
