"""The classical methods in 3-D: per-axis pyramid schedules for anisotropic stacks, each method's field
reproducing its own moved image on a volume, register_pair using the spacing, FireANTs on non-cubic grids, and
check-method's checks on volumes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from regbench import Pair, create_method
from regbench.check import check_method, known_displacement_pair
from regbench.interface import Registration, moved_flow_disagreement, register_pair
from regbench.pyramid import pad_short_axes, relative_spacing, shrink_factors
from regbench.registry import METHODS
from regbench.warp import warp

INSIDE_3D = np.s_[1:-1, 2:-2, 2:-2]


def _needs(distribution: str) -> None:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed (see README: optional methods)")


def test_shrink_factors_spare_the_coarse_axis_until_the_fine_ones_catch_up():
    assert [shrink_factors(f, (10.0, 4.0, 4.0), 3) for f in (1, 2, 4, 8)] == [(1, 1, 1), (1, 2, 2), (2, 4, 4), (3, 8, 8)]
    assert [shrink_factors(f, (1.5, 1.5), 2) for f in (1, 2, 4)] == [(1, 1), (2, 2), (4, 4)]  # isotropic: alike
    assert shrink_factors(4, None, 3) == (4, 4, 4)
    assert relative_spacing((10.0, 4.0, 4.0), 3) == (2.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="3 positive values"):
        relative_spacing((1.0, 0.0, 1.0), 3)


EXTRA = {"elastix-bspline": "itk-elastix", "fireants-syn": "fireants", "greedy": "picsl-greedy", "dipy-syn": "dipy", "convexadam": "convexadam"}


@pytest.mark.parametrize(
    "name",
    [
        "demons",
        "demons-fastsym",
        "syn",
        "greedy",
        "dipy-syn",
        pytest.param("elastix-bspline", marks=pytest.mark.slow),
        pytest.param("fireants-syn", marks=pytest.mark.slow),
    ],
)
def test_every_classical_method_declares_3d_and_its_volume_field_reproduces_its_own_moved_image(name, stack):
    _needs(EXTRA.get(name, "SimpleITK"))
    assert 3 in METHODS.meta(name).dims
    options = {"final_interpolation_order": 1} if name == "elastix-bspline" else {}
    reg = register_pair(create_method(name, **options), stack)  # as the runner calls it
    assert reg.flow.shape == (3, *stack.fixed.shape) and reg.moved.shape == stack.fixed.shape
    assert np.abs(reg.flow[1:]).max() > 0.5  # it really moved something in-plane
    ours = warp(stack.moving, reg.flow)
    assert np.mean((ours[INSIDE_3D] - reg.moved[INSIDE_3D]) ** 2) < 2e-4
    # The channels in ITK's x-first order would not reproduce it.
    reversed_order = warp(stack.moving, reg.flow[::-1].copy())
    assert np.mean((reversed_order[INSIDE_3D] - reg.moved[INSIDE_3D]) ** 2) > 4 * np.mean((ours[INSIDE_3D] - reg.moved[INSIDE_3D]) ** 2)


# Not greedy: its answer does not depend on the spacing (tests/test_greedy.py)
@pytest.mark.parametrize(
    "name", ["demons", "syn", pytest.param("dipy-syn", marks=pytest.mark.slow), "convexadam", pytest.param("elastix-bspline", marks=pytest.mark.slow)]
)
def test_register_pair_is_register_on_isotropic_pairs_and_uses_an_anisotropic_spacing(name, stack):
    _needs(EXTRA.get(name, "SimpleITK"))
    method = create_method(name)
    plain = method.register(stack.fixed, stack.moving).flow
    isotropic = Pair(**{**stack.__dict__, "spacing": (2.0, 2.0, 2.0)})
    assert np.array_equal(method.register_pair(isotropic).flow, plain)
    assert not np.allclose(method.register_pair(stack).flow, plain, atol=1e-3)


def test_demons_shrinks_in_plane_only_on_a_thick_slice_stack(stack, monkeypatch):
    seen = []
    shrink = sitk.Shrink

    def recording(image, factors):
        seen.append(tuple(factors))
        return shrink(image, factors)

    monkeypatch.setattr(sitk, "Shrink", recording)
    method = create_method("demons", shrink_factors=(4, 2, 1), iterations=(5, 5, 5))
    method.register_pair(stack)  # 10 × 6 × 6 mm: factor 2 spares the slices, 4 halves them (ITK: x first)
    assert seen == [(4, 4, 2), (4, 4, 2), (2, 2, 1), (2, 2, 1)]
    seen.clear()
    method.register(stack.fixed, stack.moving)  # without the spacing: every axis alike
    assert seen == [(4, 4, 4), (4, 4, 4), (2, 2, 2), (2, 2, 2)]


@pytest.mark.slow
def test_elastix_pyramid_schedule_per_axis_on_an_anisotropic_stack():
    _needs("itk-elastix")
    method = create_method("elastix-bspline")
    schedule = method.parameter_object((10.0, 4.0, 4.0)).GetParameterMap(0)["FixedImagePyramidSchedule"]
    assert list(schedule) == ["4", "4", "2", "2", "2", "1", "1", "1", "1"]  # x, y, z per level, coarse to fine
    assert "FixedImagePyramidSchedule" not in method.parameter_object().GetParameterMap(0)  # elastix's own default


@pytest.mark.slow
def test_fireants_converts_3d_coordinates_and_registers_non_cubic_volumes():
    _needs("fireants")
    from regbench.methods.fireants import FireANTsSyN

    shape = (4, 5, 7)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    identity = np.stack([x, y, z], -1)
    shifted = identity + np.array([2 * 2 / (shape[2] - 1), -2 / (shape[1] - 1), 0.5 * 2 / (shape[0] - 1)])
    flow = FireANTsSyN.coordinates_to_flow(shifted)
    assert np.allclose(flow[0], 0.5) and np.allclose(flow[1], -1) and np.allclose(flow[2], 2)
    # A known shift of a smooth non-cubic volume is recovered (FireANTs alone returns about a fifth of it).
    rng = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(rng.random((16, 32, 32)), 2.0)
    volume = ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)
    moving = ndimage.shift(volume, (1.5, 1.5, 1.5), order=1, mode="nearest").astype(np.float32)
    recovered = create_method("fireants-syn").register(volume, moving).flow[:, 4:-4, 8:-8, 8:-8].reshape(3, -1).mean(1)
    assert np.allclose(recovered, 1.5, atol=0.15)


def test_short_axes_are_padded_by_their_border_and_cropped_back():
    fixed, moving = np.arange(2 * 5, dtype=np.float32).reshape(2, 5), np.ones((2, 5), np.float32)
    (padded_fixed, padded_moving), crop = pad_short_axes(4, fixed, moving)
    assert padded_fixed.shape == padded_moving.shape == (4, 5)  # 5 columns already suffice
    assert np.array_equal(padded_fixed[0], fixed[0]) and np.array_equal(padded_fixed[3], fixed[1])  # the border repeated
    assert np.array_equal(padded_fixed[crop], fixed)
    (same,), whole = pad_short_axes(2, fixed)
    assert same is fixed and np.array_equal(same[whole], fixed)


def test_known_displacement_in_3d_has_three_distinct_components(stack):
    fixed, truth, mask = known_displacement_pair(stack.moving)
    assert truth.shape == (3, *stack.moving.shape) and mask.any()
    peaks = truth.reshape(3, -1).max(1)
    assert len(set(np.round(peaks, 3))) == 3  # a permuted reading differs from the truth
    assert np.allclose(fixed, warp(stack.moving, truth))


@pytest.mark.slow
def test_check_method_runs_its_checks_on_volumes_for_a_3d_method():
    report = check_method("demons")
    names = [r.name for r in report.results]
    assert report.ok, str(report)
    assert "recovers a known displacement (3-D)" in names and "moved agrees with flow (3-D)" in names
    assert names.count("name") == 1 and "name (3-D)" not in names
    two_d_only = check_method(_TwoDimensionalShift())  # declares nothing: 2-D, so no check on volumes
    assert two_d_only.results and not any(r.name.endswith("(3-D)") for r in two_d_only.results)


class _TwoDimensionalShift:
    """A 2-D method that declares no dims."""

    name = "shift-2d"

    def register(self, fixed, moving):
        from regbench import Registration, warp
        from regbench.interface import validate_images

        fixed, moving = validate_images(fixed, moving)
        flow = np.full((2, *fixed.shape), 0.5, np.float32)
        return Registration(moved=warp(moving, flow), flow=flow)


class _ReversedChannels:
    """Registers volumes with demons, then returns the flow with its channels reversed (ITK's x first)."""

    name = "reversed-3d"
    dims = (2, 3)

    def register(self, fixed, moving):
        reg = create_method("demons").register(fixed, moving)
        return Registration(moved=reg.moved, flow=reg.flow[::-1].copy())


def test_check_method_catches_a_3d_method_with_its_channels_reversed():
    failed = {r.name: r.message for r in check_method(_ReversedChannels()).failures}
    assert "moved agrees with flow (3-D)" in failed or "recovers a known displacement (3-D)" in failed
    assert any("reverse" in message for message in failed.values()), failed


def test_moved_and_flow_are_compared_where_the_flow_samples_inside_the_image():
    """ITK replicates the edge half a voxel out, grid_sample blends toward zero: a through-plane shift of a
    thin stack moves a whole slice outside; the two must still agree where both sample the image."""
    rng = np.random.default_rng(3)
    moving = ndimage.gaussian_filter(rng.random((6, 20, 20)), 1.5).astype(np.float32)
    flow = np.zeros((3, 6, 20, 20), np.float32)
    flow[0] = -0.6  # slice 0 samples 0.6 slices above the stack
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in moving.shape], indexing="ij")
    edge = ndimage.map_coordinates(moving, [g + f for g, f in zip(grid, flow)], order=1, mode="nearest").astype(np.float32)
    reg = Registration(moved=edge, flow=flow)
    assert np.mean((warp(moving, flow) - edge) ** 2) > 1e-3  # over every voxel they differ
    assert moved_flow_disagreement(moving, reg) < 1e-10
