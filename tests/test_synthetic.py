"""The embedded synthetic dataset: deterministic, split by subject, heart-like motion with true flows."""

import numpy as np
import pytest

from regbench import create_dataset, create_method
from regbench.datasets.synthetic import SyntheticCardiac, _draw_subject, _Slice
from regbench.errors import ConfigError
from regbench.interface import Registration
from regbench.metrics import evaluate
from regbench.warp import warp


def test_same_seed_same_data_other_seed_other_data():
    a = create_dataset("synthetic", n_subjects=4, image_size=48, seed=5).subject_pairs("synth001")[2]
    b = create_dataset("synthetic", n_subjects=4, image_size=48, seed=5).subject_pairs("synth001")[2]
    c = create_dataset("synthetic", n_subjects=4, image_size=48, seed=6).subject_pairs("synth001")[2]
    assert np.array_equal(a.fixed, b.fixed) and np.array_equal(a.moving_label, b.moving_label)
    assert not np.array_equal(a.fixed, c.fixed)


def test_split_is_by_subject_75_5_20_and_disjoint():
    ds = create_dataset("synthetic", n_subjects=40, image_size=32)
    split = ds.split()
    assert [len(split[k]) for k in ("train", "val", "test")] == [30, 2, 8]
    assert not (set(split["train"]) & set(split["test"])) and not (set(split["val"]) & set(split["test"]))
    assert {p.subject for p in ds.pairs("test")} == set(split["test"])


def test_images_labels_and_spacing(small_dataset, pairs):
    p = pairs[0]
    assert p.fixed.dtype == np.float32 and p.fixed.shape == (64, 64)
    assert 0.0 <= p.fixed.min() and p.fixed.max() <= 1.0
    assert set(np.unique(p.fixed_label)) == {0, 1, 2, 3}  # basal slice: RV present (ACDC labels)
    assert p.spacing == (3.0, 3.0)  # 192 mm field of view at 64 px
    # The most apical slice of some subject has no RV: the absent-structure policy is exercised.
    assert any(1 not in np.unique(q.fixed_label) for q in pairs)


def test_es_lv_is_smaller_and_myocardium_thicker(pairs):
    for p in pairs[:4]:
        assert (p.moving_label == 3).sum() < (p.fixed_label == 3).sum()
        # Myocardial area is conserved by the motion model (within discretisation).
        ratio = (p.moving_label == 2).sum() / (p.fixed_label == 2).sum()
        assert 0.8 < ratio < 1.25


def test_ground_truth_flow_inverts_the_motion():
    """S(x + u(x)) = x: the stored flow maps each fixed (ED) pixel to where its tissue is at ES."""
    ds = SyntheticCardiac(n_subjects=3, image_size=96)
    p = ds.subject_pairs("synth000")[1]
    anatomies, tissue = _draw_subject(np.random.default_rng([ds.seed, 0]), ds.fov_mm)  # the subject's own draw
    sl = _Slice(anatomies[1], tissue)
    sp, n = ds.spacing[0], ds.image_size
    r, c = np.meshgrid((np.arange(n) + 0.5) * sp, (np.arange(n) + 0.5) * sp, indexing="ij")
    sr, sc = sl.source(r + p.flow_gt[0] * sp, c + p.flow_gt[1] * sp)
    assert np.abs(sr - r).max() < 1e-3 * sp and np.abs(sc - c).max() < 1e-3 * sp
    assert np.abs(p.flow_gt).max() > 1.0  # there is real motion to recover


@pytest.mark.slow
def test_initial_overlap_near_the_papers_and_ground_truth_registers_well():
    ds = create_dataset("synthetic", n_subjects=12, image_size=96, seed=0)
    ps = [p for s in ds.subjects() for p in ds.subject_pairs(s)]
    initial = create_method("initial")
    before = np.mean([evaluate(p, initial.register(p.fixed, p.moving))["dice"] for p in ps])
    after = np.mean([evaluate(p, Registration(warp(p.moving, p.flow_gt), p.flow_gt))["dice"] for p in ps])
    assert 0.5 < before < 0.72, before  # the paper's Initial row: 61.8% (ACDC), 61.0% (M&M)
    assert after > 0.9, after


def _initial_dice(ds: SyntheticCardiac) -> float:
    initial = create_method("initial")
    return float(np.mean([evaluate(p, initial.register(p.fixed, p.moving))["dice"] for p in ds.subject_pairs("synth000")]))


def test_motion_option_scales_the_motion_and_its_true_flow_still_inverts_it():
    base = SyntheticCardiac(n_subjects=3, image_size=64)
    strong = SyntheticCardiac(n_subjects=3, image_size=64, motion=2.0)  # the largest: contraction down to 0.2
    weak = SyntheticCardiac(n_subjects=3, image_size=64, motion=0.5)
    flows = {
        name: np.mean([np.abs(p.flow_gt).mean() for p in ds.subject_pairs("synth000")]) for name, ds in (("base", base), ("strong", strong), ("weak", weak))
    }
    assert flows["weak"] < 0.7 * flows["base"] and flows["strong"] > 1.3 * flows["base"], flows
    assert _initial_dice(strong) < _initial_dice(base) < _initial_dice(weak)
    # ED (the fixed frame) is the same anatomy; only ES moves further.
    assert np.array_equal(strong.subject_pairs("synth000")[1].fixed_label, base.subject_pairs("synth000")[1].fixed_label)
    # S(x + u(x)) = x still holds at the strongest motion tested.
    p = strong.subject_pairs("synth000")[1]
    from regbench.datasets.synthetic import scale_motion

    anatomies, tissue = _draw_subject(np.random.default_rng([strong.seed, 0]), strong.fov_mm)
    sl = _Slice(scale_motion(anatomies[1], 2.0), tissue)
    sp, n = strong.spacing[0], strong.image_size
    r, c = np.meshgrid((np.arange(n) + 0.5) * sp, (np.arange(n) + 0.5) * sp, indexing="ij")
    sr, sc = sl.source(r + p.flow_gt[0] * sp, c + p.flow_gt[1] * sp)
    assert np.abs(sr - r).max() < 1e-3 * sp and np.abs(sc - c).max() < 1e-3 * sp


def test_contrast_option_changes_the_images_not_the_anatomy_or_motion():
    base = SyntheticCardiac(n_subjects=3, image_size=64).subject_pairs("synth000")[1]
    flat = SyntheticCardiac(n_subjects=3, image_size=64, contrast=0.5).subject_pairs("synth000")[1]
    assert np.array_equal(base.fixed_label, flat.fixed_label) and np.array_equal(base.flow_gt, flat.flow_gt)

    def blood_to_myo(p):  # mean LV blood pool intensity over mean myocardium intensity, in the fixed frame
        return p.fixed[p.fixed_label == 3].mean() - p.fixed[p.fixed_label == 2].mean()

    assert blood_to_myo(flat) < 0.7 * blood_to_myo(base)


def test_domain_options_at_their_defaults_leave_the_data_and_manifest_unchanged():
    ds = SyntheticCardiac(n_subjects=3, image_size=32, motion=1.0, contrast=1.0)
    assert "motion" not in ds.options() and "contrast" not in ds.options()
    assert {"motion": 1.3, "contrast": 0.8}.items() <= SyntheticCardiac(n_subjects=3, image_size=32, motion=1.3, contrast=0.8).options().items()


@pytest.mark.parametrize(
    "options, named", [({"motion": 0}, "motion"), ({"motion": 2.1}, "motion"), ({"contrast": -1}, "contrast"), ({"contrast": "high"}, "contrast")]
)
def test_bad_domain_options_are_one_error_naming_them(options, named):

    with pytest.raises(ConfigError, match=named):
        create_dataset("synthetic", n_subjects=3, image_size=32, **options)


def test_test_motion_draws_the_same_test_images_at_each_motion_level():
    levels = [0.25, 1.0, 2.0]
    plain = SyntheticCardiac(n_subjects=4, image_size=32)
    stressed = SyntheticCardiac(n_subjects=4, image_size=32, test_motion=levels)
    tests = stressed.pairs("test")
    per_level = len(plain.pairs("test"))
    assert len(tests) == len(levels) * per_level and stressed.options()["test_motion"] == levels
    by_level = {level: [p for p in tests if p.groups["motion"] == f"{level:g}"] for level in levels}
    assert all(len(pairs) == per_level for pairs in by_level.values())
    assert by_level[2.0][0].case_id == plain.pairs("test")[0].case_id + "+motion2" and by_level[2.0][0].subject == plain.pairs("test")[0].subject
    # Level 1 is the plain test pair; at every level the ED frame (fixed) is the same, the ES motion scaled.
    for plain_pair, one, weak, strong in zip(plain.pairs("test"), by_level[1.0], by_level[0.25], by_level[2.0]):
        assert np.array_equal(plain_pair.moving, one.moving) and np.array_equal(plain_pair.flow_gt, one.flow_gt)
        assert np.array_equal(weak.fixed, strong.fixed) and np.array_equal(weak.fixed_label, plain_pair.fixed_label)
    motion = {level: np.mean([np.abs(p.flow_gt).mean() for p in pairs]) for level, pairs in by_level.items()}
    assert motion[0.25] < 0.5 * motion[1.0] < motion[2.0] / 1.5, motion
    # Training and validation pairs are those of the dataset without levels.
    assert [p.case_id for p in stressed.pairs("train")] == [p.case_id for p in plain.pairs("train")]
    assert np.array_equal(stressed.pairs("train")[0].moving, plain.pairs("train")[0].moving)


def test_a_dataset_drawn_at_a_level_has_the_same_test_cases_and_trains_at_that_level():
    """What retrain_per_level builds: every split at one motion scale, its test pairs the stressed dataset's at it."""
    stressed = SyntheticCardiac(n_subjects=4, image_size=32, test_motion=[0.5, 1.0])
    assert stressed.level_options("motion", 1.0) is None  # its own training pairs are drawn at 1
    options = stressed.level_options("motion", 0.5)
    assert options is not None and options["motion"] == 0.5 and options["test_motion"] == [0.5]
    at = create_dataset("synthetic", **options)
    at_half = [p for p in stressed.pairs("test") if p.groups["motion"] == "0.5"]
    assert [p.case_id for p in at.pairs("test")] == [p.case_id for p in at_half]
    for mine, theirs in zip(at.pairs("test"), at_half):
        assert np.array_equal(mine.moving, theirs.moving) and np.array_equal(mine.flow_gt, theirs.flow_gt)
    # Training pairs: the same subjects and ED frames, the motion halved.
    trained, own = at.pairs("train")[0], stressed.pairs("train")[0]
    assert trained.case_id == own.case_id and np.array_equal(trained.fixed, own.fixed)
    assert np.abs(trained.flow_gt).mean() < 0.7 * np.abs(own.flow_gt).mean()
    with pytest.raises(ConfigError, match="'motion' only, not 'contrast'"):
        stressed.level_options("contrast", 0.5)


@pytest.mark.parametrize("levels", [[], [0.5, 0.5], [0.0, 1.0], [1.0, 2.5], "0.5", [True]])
def test_bad_test_motion_is_one_error_naming_it(levels):
    with pytest.raises(ConfigError, match="test_motion"):
        SyntheticCardiac(n_subjects=4, image_size=32, test_motion=levels)
