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


def test_a_volume_moves_along_each_axis_by_its_channel_and_back():
    """3-D: channel k moves along array axis k (depth, rows, columns), trilinear for images and nearest for
    labels; a volume moved by a whole-voxel displacement and back by its inverse returns where it was."""
    rng = np.random.default_rng(3)
    volume = np.zeros((10, 12, 14), np.float32)
    volume[3:7, 4:9, 5:11] = rng.uniform(0.5, 1.0, (4, 5, 6)).astype(np.float32)
    for axis, shift in ((0, 2.0), (1, -3.0), (2, 1.0)):
        flow = np.zeros((3, *volume.shape), np.float32)
        flow[axis] = shift
        moved = warp(volume, flow)
        assert np.allclose(moved, np.roll(volume, -int(shift), axis=axis), atol=1e-6)  # moved(p) = volume(p + u)
        assert np.allclose(warp(moved, -flow), volume, atol=1e-6)
    half = np.zeros((3, *volume.shape), np.float32)
    half[2] = 0.5
    assert np.allclose(warp(volume, half)[:, :, 4:12], 0.5 * (volume[:, :, 4:12] + volume[:, :, 5:13]), atol=1e-6)  # trilinear
    labels = (volume > 0).astype(np.uint8) * 2
    assert set(np.unique(warp_label(labels, half))) <= {0, 2}
