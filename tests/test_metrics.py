"""Metrics against independent references: medpy (Dice, HD95 with spacing), SimpleITK and np.gradient
(Jacobian determinant), on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from regbench import Pair, Registration
from regbench.metrics import METRICS, dice, evaluate, hd95, jacobian_determinant, mse, njd, non_diffeomorphic_share, sdlogj, simplex_jacobians


def random_mask(rng: np.random.Generator, shape=(64, 64)) -> np.ndarray:
    """A random blob: thresholded smoothed noise, never empty."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(2, 5))
    mask = field > np.quantile(field, rng.uniform(0.6, 0.9))
    mask[shape[0] // 2, shape[1] // 2] = True
    return mask


@pytest.mark.parametrize("seed", range(10))
def test_dice_matches_medpy(seed):
    rng = np.random.default_rng(seed)
    a, b = random_mask(rng), random_mask(rng)
    assert dice(a, b) == pytest.approx(medpy_binary.dc(a, b), abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_hd95_matches_medpy_with_anisotropic_spacing(seed):
    rng = np.random.default_rng(100 + seed)
    a, b = random_mask(rng), random_mask(rng)
    spacing = (float(rng.uniform(0.7, 2.0)), float(rng.uniform(0.7, 2.0)))
    assert hd95(a, b, spacing) == pytest.approx(medpy_binary.hd95(a, b, voxelspacing=spacing), abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_hd95_max_convention_matches_medpy_directed_distances(seed):
    """'max' = the larger directed 95th percentile (MONAI / DeepMind convention), from medpy's distances."""
    rng = np.random.default_rng(200 + seed)
    a, b = random_mask(rng), random_mask(rng)
    directed = getattr(medpy_binary, "__surface_distances")
    ref = max(np.percentile(directed(a, b, (1.5, 1.0)), 95), np.percentile(directed(b, a, (1.5, 1.0)), 95))
    assert hd95(a, b, (1.5, 1.0), "max") == pytest.approx(ref, abs=1e-6)


def test_hd95_scales_with_spacing_in_mm():
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b[13:23, 10:20] = True  # shifted 3 rows
    assert hd95(a, b, (1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, b, (2.0, 1.0)) == pytest.approx(6.0)  # rows are 2 mm apart
    assert hd95(a, b, (1.0, 2.0)) == pytest.approx(3.0)


def random_flow(rng: np.random.Generator, shape=(48, 56), amplitude=3.0) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 3) * amplitude * 6 for _ in range(2)]).astype(np.float64)


@pytest.mark.parametrize("seed", range(5))
def test_jacobian_matches_np_gradient_reference(seed):
    flow = random_flow(np.random.default_rng(seed))
    grads = [np.gradient(flow[c]) for c in range(2)]
    j = np.empty(flow.shape[1:] + (2, 2))
    for c in range(2):
        for k in range(2):
            j[..., c, k] = grads[c][k] + (c == k)
    assert np.allclose(jacobian_determinant(flow), np.linalg.det(j), atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_jacobian_matches_simpleitk_inside_the_border(seed):
    """SimpleITK wants the x (column) component first; its border pixels use zero-flux Neumann central
    differences (half of np.gradient's one-sided difference), so the documented difference is the border."""
    flow = random_flow(np.random.default_rng(50 + seed))
    image = sitk.GetImageFromArray(np.stack([flow[1], flow[0]], axis=-1), isVector=True)
    ref = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(image))
    ours = jacobian_determinant(flow)
    assert np.allclose(ours[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-6)
    # Feeding (row, column) instead silently transposes the Jacobian: the determinant is unchanged for
    # the (symmetric) identity part only, so a real field shows the difference.
    swapped = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(sitk.GetImageFromArray(np.stack([flow[0], flow[1]], -1), isVector=True)))
    assert not np.allclose(swapped[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-3)


def test_njd_counts_folds_in_percent():
    flow = np.zeros((2, 20, 20))
    assert njd(flow) == 0.0
    assert sdlogj(flow) == pytest.approx(0.0)
    # u_row = -2·row on rows 5..9 maps them backwards: det = 1 + ∂u_r/∂r = -1 there.
    flow[0, 5:10, :] = -2.0 * np.arange(5, 10)[:, None]
    det = jacobian_determinant(flow, "forward")
    assert (det < 0).any()
    assert njd(flow, "forward") == pytest.approx(100.0 * (det < 0).mean())
    assert 0 < njd(flow) < 100


def test_forward_and_central_schemes_agree_on_affine_flow():
    r, c = np.meshgrid(np.arange(30.0), np.arange(30.0), indexing="ij")
    flow = np.stack([0.1 * r + 0.05 * c, -0.2 * c])
    expected = (1.1) * (0.8) - 0.05 * 0.0
    assert np.allclose(jacobian_determinant(flow, "central"), expected)
    assert np.allclose(jacobian_determinant(flow, "forward")[:-1, :-1], expected)


def test_mse():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.5)
    assert mse(a, b) == pytest.approx(0.25)


def test_metric_specs_carry_unit_and_direction():
    assert METRICS["dice"].higher_is_better and METRICS["dice"].unit == "fraction"
    assert not METRICS["hd95"].higher_is_better and METRICS["hd95"].unit == "mm"
    assert METRICS["njd"].unit == "%" and not METRICS["njd"].higher_is_better


def _pair(fixed_label, moving_label, spacing=(1.0, 1.0)):
    img = np.linspace(0, 1, fixed_label.size, dtype=np.float32).reshape(fixed_label.shape)
    return Pair(img, img, fixed_label, moving_label, spacing, "s-0", "s")


def test_absent_structures_are_skipped_and_counted_not_silently_dropped():
    fixed = np.zeros((32, 32), np.uint8)
    fixed[8:20, 8:20] = 3  # LV
    fixed[4:8, 8:20] = 2  # Myo; no RV anywhere
    moving = fixed.copy()
    reg = Registration(moved=np.zeros((32, 32), np.float32), flow=np.zeros((2, 32, 32), np.float32))
    row = evaluate(_pair(fixed, moving), reg)
    assert np.isnan(row["dice_rv"]) and np.isnan(row["hd95_rv"])
    assert row["n_skipped"] == 2 and row["skipped"] == "dice_rv;hd95_rv"
    assert row["dice"] == pytest.approx(1.0)  # mean over LV and Myo only
    assert row["hd95"] == pytest.approx(0.0)


def test_structure_missing_from_one_map_scores_zero_dice():
    fixed = np.zeros((32, 32), np.uint8)
    fixed[8:20, 8:20] = 3
    fixed[20:24, 8:20] = 1  # RV only in the fixed map
    moving = np.where(fixed == 1, 0, fixed).astype(np.uint8)
    reg = Registration(moved=np.zeros((32, 32), np.float32), flow=np.zeros((2, 32, 32), np.float32))
    row = evaluate(_pair(fixed, moving), reg)
    assert row["dice_rv"] == 0.0
    assert np.isnan(row["hd95_rv"])
    assert "hd95_rv" in row["skipped"] and "dice_rv" not in row["skipped"]
    assert row["dice"] == pytest.approx((1.0 + 0.0) / 2)  # LV and RV evaluated; Myo absent from both


# ------------------------------------------------------------------------------------ 3-D and NDA / NDV
def random_flow_3d(rng: np.random.Generator, shape=(12, 14, 16), amplitude=2.0) -> np.ndarray:
    return np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 2) * amplitude * 6 for _ in range(3)]).astype(np.float64)


@pytest.mark.parametrize("seed", range(3))
def test_the_3d_jacobian_matches_simpleitk_away_from_the_border(seed):
    """SimpleITK orders a displacement's components x first (the last array axis): regbench's channel k is along
    array axis k, so the components are reversed on the way in."""
    flow = random_flow_3d(np.random.default_rng(70 + seed))
    image = sitk.GetImageFromArray(np.moveaxis(flow[::-1], 0, -1), isVector=True)
    ref = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(image))
    ours = jacobian_determinant(flow)
    assert np.allclose(ours[1:-1, 1:-1, 1:-1], ref[1:-1, 1:-1, 1:-1], atol=1e-6)
    assert (ours < 0).any() and 0 < njd(flow) < 100  # the fixture folds somewhere
    assert jacobian_determinant(flow, "forward").shape == flow.shape[1:]


def test_nda_of_the_three_by_three_fixture_is_a_quarter_at_the_centre():
    """The centre of a 3×3 identity grid moved to (0, 2): the central determinant there stays 1 (NJD 0), one of
    the four triangles is inverted (J = −1), so NDA is 1/4 at the centre and 0 elsewhere."""
    flow = np.zeros((2, 3, 3))
    flow[:, 1, 1] = (-1.0, 1.0)
    assert jacobian_determinant(flow)[1, 1] == 1.0 and njd(flow) == 0.0
    triangles = simplex_jacobians(flow)
    assert sorted(float(j[1, 1]) for j in triangles) == [-1.0, 1.0, 1.0, 3.0]
    per_pixel = sum(-0.5 * np.minimum(j, 0) / 2 for j in triangles)
    assert per_pixel[1, 1] == 0.25 and per_pixel.sum() == 0.25
    assert non_diffeomorphic_share(flow) == pytest.approx(100 * 0.25 / 9)
    assert non_diffeomorphic_share(flow, mask=np.eye(3, dtype=bool)) == pytest.approx(100 * 0.25 / 3)


def test_a_fold_the_central_count_misses_is_measured_by_ndv_in_3d():
    flow = np.zeros((3, 3, 3, 3))
    flow[:, 1, 1, 1] = (-1.0, 1.0, 0.0)
    assert njd(flow) == 0.0 and non_diffeomorphic_share(flow) > 0
    assert non_diffeomorphic_share(np.zeros((3, 5, 6, 7))) == 0.0 == non_diffeomorphic_share(np.zeros((2, 5, 6)))
    # identity: every simplex 1 inside; 0 (never negative) where the replicated border flattens one
    assert all(np.allclose(j[1:-1, 1:-1, 1:-1], 1.0) and (j >= 0).all() for j in simplex_jacobians(np.zeros((3, 4, 4, 4))))


def test_the_ten_3d_simplices_are_the_signed_volumes_of_their_mapped_tetrahedra():
    """Each of the ten Jacobians at an interior voxel p against the signed volume of its tetrahedron, computed
    from the mapped vertices φ(v) = v + u(v) with np.linalg.det, over the identity's: the eight corner tetrahedra
    (p, p ± e₀, p ± e₁, p ± e₂ in the order simplex_jacobians lists them) and the two central ones (p and p ± the
    three in-plane diagonals (1,1,0), (1,0,1), (0,1,1): forward, then backward)."""
    import itertools

    flow = random_flow_3d(np.random.default_rng(5), amplitude=3.0)
    jacobians = simplex_jacobians(flow)
    assert len(jacobians) == 10

    def phi(v):
        return np.asarray(v, float) + flow[(slice(None), *v)]

    def volume(p, offsets):
        mapped = np.stack([phi(tuple(np.add(p, o))) - phi(p) for o in offsets])  # rows: the mapped edges
        return np.linalg.det(mapped.T) / np.linalg.det(np.asarray(offsets, float).T)

    units = np.eye(3, dtype=int)
    diagonals = np.array([(1, 1, 0), (1, 0, 1), (0, 1, 1)])
    tetrahedra = [[s * units[k] for k, s in enumerate(signs)] for signs in itertools.product((1, -1), repeat=3)]
    tetrahedra += [list(diagonals), list(-diagonals)]
    for p in [(3, 4, 5), (6, 7, 8), (8, 3, 11)]:
        expected = [volume(p, offsets) for offsets in tetrahedra]
        assert [float(j[p]) for j in jacobians] == pytest.approx(expected, abs=1e-9)
    assert min(float(j[p]) for j in jacobians[8:]) != max(float(j[p]) for j in jacobians[8:])  # two, not one twice


@pytest.mark.parametrize("dims, seed", [(2, 0), (2, 1), (3, 0), (3, 1)])
def test_every_corner_simplex_positive_means_the_central_determinant_is_positive(dims, seed):
    """The central difference is the mean of the one-sided ones and the determinant is multilinear, so the
    central Jacobian is the mean of the corner simplices': all positive ⇒ positive (not the other way round)."""
    rng = np.random.default_rng(90 + seed)
    flow = random_flow(rng, amplitude=4.0) if dims == 2 else random_flow_3d(rng, amplitude=3.0)
    corners = np.stack(simplex_jacobians(flow)[: 2**dims])
    central = jacobian_determinant(flow)
    interior = (slice(1, -1),) * dims
    assert np.allclose(corners.mean(0)[interior], central[interior])
    all_positive = (corners > 0).all(0)[interior]
    assert all_positive.any() and (central[interior][all_positive] > 0).all()
    assert ((central[interior] > 0) & ~all_positive).any()  # folds the central count does not see
    assert non_diffeomorphic_share(flow) > 0


@pytest.mark.parametrize("convention", ["pooled", "max"])
def test_3d_dice_and_hd95_with_anisotropic_spacing_match_medpy(convention):
    """Short-axis stacks: 8 mm between slices, 1.25 × 1.4 mm in-plane (HD95 in mm from the spacing per axis)."""
    rng = np.random.default_rng(5)
    a = ndimage.gaussian_filter(rng.normal(size=(8, 40, 36)), (0.8, 3, 3)) > 0.1
    b = ndimage.gaussian_filter(rng.normal(size=(8, 40, 36)), (0.8, 3, 3)) > 0.1
    spacing = (8.0, 1.25, 1.4)
    assert dice(a, b) == pytest.approx(medpy_binary.dc(a, b), abs=1e-12)
    if convention == "pooled":
        assert hd95(a, b, spacing) == pytest.approx(medpy_binary.hd95(a, b, voxelspacing=spacing), abs=1e-6)
    else:
        directed = getattr(medpy_binary, "__surface_distances")
        expected = max(np.percentile(directed(a, b, spacing), 95), np.percentile(directed(b, a, spacing), 95))
        assert hd95(a, b, spacing, "max") == pytest.approx(expected, abs=1e-6)
    assert hd95(a, b, spacing) != pytest.approx(hd95(a, b, (1.0, 1.0, 1.0)))  # the spacing is used


def test_a_3d_pair_is_evaluated_with_its_own_spacing():
    """evaluate on a volume moved by one voxel along rows: Initial's overlap is below 1, the true flow's EPE is in
    mm along the rows' spacing, and a flow that undoes the motion recovers Dice 1 with no folding."""
    label = np.zeros((6, 20, 20), np.uint8)
    label[1:5, 5:12, 6:14] = 3
    label[1:5, 8:10, 9:11] = 2
    fixed = ndimage.gaussian_filter(label.astype(np.float32), 1.0) / 3
    moving, moving_label = np.roll(fixed, 1, axis=1), np.roll(label, 1, axis=1)
    truth = np.zeros((3, *label.shape), np.float32)
    truth[1] = 1.0  # moved(p) = moving(p + u): one row down
    pair = Pair(fixed, moving, label, moving_label, (8.0, 1.5, 1.5), "vol-0", flow_gt=truth, labels={"Core": 2, "Shell": 3})
    identity = evaluate(pair, Registration(moved=moving, flow=np.zeros_like(truth)))
    assert identity["dice"] < 0.95 and identity["epe_mm"] == pytest.approx(1.5)
    solved = evaluate(pair, Registration(moved=np.roll(moving, -1, axis=1), flow=truth))
    assert solved["dice_core"] == solved["dice_shell"] == 1.0 and solved["epe_mm"] == 0.0
    assert solved["njd"] == 0.0 and solved["ndv"] == 0.0 and solved["hd95"] == 0.0


def test_ndv_is_measured_over_the_declared_mask():
    """A fold outside the moving image's foreground counts with no mask and not with mask 'moving'."""
    from regbench import Pair
    from regbench.interface import Registration
    from regbench.metrics import evaluate

    fixed = np.zeros((6, 16, 16), np.float32)
    fixed[:, 4:12, 4:12] = 0.5
    moving = np.zeros_like(fixed)
    moving[:, :, :8] = 0.5  # foreground: the left half
    flow = np.zeros((3, 6, 16, 16), np.float32)
    flow[2, 2:4, 6:10, 12] = -3.0  # a column pushed left past its neighbours: a fold in the right half
    pair = Pair(fixed=fixed, moving=moving, fixed_label=None, moving_label=None, spacing=(1.0, 1.0, 1.0), case_id="c")
    reg = Registration(moved=moving, flow=flow)
    everywhere = evaluate(pair, reg)["ndv"]
    assert everywhere > 0 and evaluate(pair, reg, ndv_mask="moving")["ndv"] == 0.0
    assert evaluate(pair, reg, ndv_mask="fixed")["ndv"] > everywhere  # the same folds over fewer voxels
    with pytest.raises(ValueError, match="ndv_mask 'brain'"):
        evaluate(pair, reg, ndv_mask="brain")


def test_a_non_default_ndv_mask_binds_the_run_directory_and_a_bad_one_is_an_error():
    from regbench.config import load_config
    from regbench.errors import ConfigError
    from regbench.rundir import fingerprint

    default, masked = load_config(), load_config(ndv_mask="moving")
    assert "ndv_mask" not in fingerprint(default, {}) and fingerprint(masked, {})["ndv_mask"] == "moving"
    with pytest.raises(ConfigError, match="ndv_mask 'all' is not one of"):
        load_config(ndv_mask="all")
