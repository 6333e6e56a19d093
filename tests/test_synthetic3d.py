"""The embedded 3-D synthetic heart: short-axis stacks, true 3-D motion (longitudinal shortening, twist,
contraction), labels and an invertible ground-truth flow."""

import re

import numpy as np
import pytest

from regbench import create_dataset
from regbench.errors import ConfigError
from regbench.metrics import dice, njd, non_diffeomorphic_share
from regbench.registry import DATASETS
from regbench.warp import warp, warp_label


@pytest.fixture(scope="module")
def dataset():
    return create_dataset("synthetic3d", n_subjects=10, image_size=48, seed=0)


@pytest.fixture(scope="module")
def volume_pairs(dataset):
    return dataset.pairs("test") + dataset.pairs("val")


def test_declares_3d_and_the_cardiac_labels():
    meta = DATASETS.meta("synthetic3d")
    assert meta.dims == (3,) and meta.labels == {"LV": 3, "Myo": 2, "RV": 1}


def test_volumes_shapes_spacing_and_labels(volume_pairs):
    for p in volume_pairs:
        assert p.fixed.shape == p.moving.shape == (10, 48, 48) and p.fixed.dtype == np.float32
        assert p.spacing == (10.0, 4.0, 4.0)  # slices 10 mm apart, 192 mm in-plane at 48 px
        assert p.flow_gt is not None and p.flow_gt.shape == (3, 10, 48, 48)
        assert 0.0 <= p.fixed.min() and p.fixed.max() <= 1.0
        assert set(np.unique(p.fixed_label)) == {0, 1, 2, 3} and p.case_id == p.subject
        lv_per_slice = (p.fixed_label == 3).sum(axis=(1, 2))
        # The LV cavity narrows toward the apex and ends above the bottom slices (the myocardium closes it).
        assert lv_per_slice[0] > lv_per_slice[lv_per_slice > 0][-1] and lv_per_slice[-1] == 0
        assert (p.fixed_label == 1).sum(axis=(1, 2))[-1] == 0  # no RV at the apex


def test_same_seed_same_volumes_other_seed_other(dataset):
    again = create_dataset("synthetic3d", n_subjects=10, image_size=48, seed=0).pairs("test")[0]
    other = create_dataset("synthetic3d", n_subjects=10, image_size=48, seed=1).pairs("test")[0]
    first = dataset.pairs("test")[0]
    assert np.array_equal(first.moving, again.moving) and np.array_equal(first.flow_gt, again.flow_gt)
    assert not np.array_equal(first.fixed, other.fixed)


def test_ground_truth_flow_inverts_the_3d_motion(dataset, volume_pairs):
    """S(x + u(x)) = x in mm on every voxel, and the motion has all three components."""
    p = volume_pairs[0]
    heart, _ = dataset.heart(p.subject)
    x = dataset.grid()
    moved_to = [xk + uk * sk for xk, uk, sk in zip(x, p.flow_gt, p.spacing)]
    source = heart.source(*moved_to)
    assert max(np.abs(sk - xk).max() for sk, xk in zip(source, x)) < 1e-3
    assert np.abs(p.flow_gt[0]).max() > 0.3 and np.abs(p.flow_gt[1:]).max() > 1.0


def test_the_motion_is_a_cardiac_contraction(volume_pairs):
    for p in volume_pairs:
        lv, myo = p.fixed_label == 3, p.fixed_label == 2
        # Longitudinal shortening: the base moves toward the apex (down the stack) at ES, the apex stays.
        base_motion = p.flow_gt[0][0][myo[0]].mean()
        apex_slice = np.flatnonzero(myo.any(axis=(1, 2)))[-1]
        assert base_motion > 0.3 and abs(p.flow_gt[0][apex_slice][myo[apex_slice]].mean()) < base_motion / 3
        # The LV empties (ejection) while the myocardium keeps its volume roughly.
        assert (p.moving_label == 3).sum() < 0.85 * lv.sum()
        assert 0.75 < (p.moving_label == 2).sum() / myo.sum() < 1.3
        # The true motion is a diffeomorphism: no folding by either measure.
        assert njd(p.flow_gt) == 0.0 and non_diffeomorphic_share(p.flow_gt) == 0.0


def test_true_flow_registers_the_pair(volume_pairs):
    """Moving the ES volume by the true flow recovers the ED labels and image far better than no motion."""
    for p in volume_pairs:
        for value in (1, 2, 3):
            before = dice(p.fixed_label == value, p.moving_label == value)
            after = dice(p.fixed_label == value, warp_label(p.moving_label, p.flow_gt) == value)
            assert after > 0.85 and after > before + 0.1
        assert ((p.fixed - warp(p.moving, p.flow_gt)) ** 2).mean() < 0.4 * ((p.fixed - p.moving) ** 2).mean()


def test_test_motion_draws_each_test_volume_at_each_motion_level_and_the_true_flow_inverts_it():
    """The same ED volume at every level, the ES motion (shortening included) scaled; S(x + u(x)) = x at 2, where
    the contraction falls to 1 − 2(1 − k)."""
    plain = create_dataset("synthetic3d", n_subjects=5, image_size=32, seed=0)
    stressed = create_dataset("synthetic3d", n_subjects=5, image_size=32, seed=0, test_motion=[0.5, 1.0, 2.0])
    tests = stressed.pairs("test")
    assert [p.case_id for p in tests] == [f"{p.case_id}+motion{m}" for p in plain.pairs("test") for m in ("0.5", "1", "2")]
    weak, one, strong = tests[:3]
    assert np.array_equal(one.moving, plain.pairs("test")[0].moving) and np.array_equal(weak.fixed, strong.fixed)
    size = [np.abs(p.flow_gt).mean() for p in (weak, one, strong)]
    assert size[0] < 0.6 * size[1] and size[2] > 1.6 * size[1], size
    assert np.abs(strong.flow_gt[0]).max() > 1.5 * np.abs(one.flow_gt[0]).max()  # the long axis shortens further
    heart, _ = stressed.heart(strong.subject)
    x = stressed.grid()
    moved_to = [xk + uk * sk for xk, uk, sk in zip(x, strong.flow_gt, strong.spacing)]
    source = heart.scaled(2.0).source(*moved_to)
    assert max(np.abs(sk - xk).max() for sk, xk in zip(source, x)) < 1e-3
    assert [p.case_id for p in stressed.pairs("train")] == [p.case_id for p in plain.pairs("train")]


@pytest.mark.parametrize(
    ("options", "named"),
    [({"n_subjects": 2}, "n_subjects"), ({"image_size": 8}, "image_size"), ({"depth": 4}, "depth"), ({"slice_mm": 0}, "slice_mm")],
)
def test_bad_options_are_one_error_naming_them(options, named):
    with pytest.raises(ConfigError, match=named):
        create_dataset("synthetic3d", **options)


def _classical_installed() -> set[str]:
    """The classical methods that register volumes here: the built-ins and the optional ones whose package is installed."""
    from importlib import metadata

    classical = {"demons", "demons-fastsym", "syn"}
    optional = {"elastix-bspline": "itk-elastix", "fireants-syn": "fireants", "greedy": "picsl-greedy", "dipy-syn": "dipy", "convexadam": "convexadam"}
    for method, distribution in optional.items():
        try:
            metadata.version(distribution)
            classical.add(method)
        except metadata.PackageNotFoundError:
            pass
    return classical


DEEP = {"voxelmorph-s", "voxelmorph-m", "voxelmorph-l", "voxelmorph-diff", "hypermorph", "gs-agr", "gs-pcgrad", "gsmorph"}
INSTANCE = {"io-gsmorph", "io-lambda"}  # test-time optimisation, nothing trained
#: The deep methods of the whole 3-D run: VoxelMorph-diff (scaling and squaring), GSMorph (a gradient-surgery
#: combiner) and HyperMorph (hyper-convolutions, the λ chosen on validation volumes: a path only a run takes).
#: The other five differ from these by a loss weight (VoxelMorph-s/m/l) or the combiner (GS-PCGrad, GS-Agr);
#: each learns 3-D motion in check-method's known-displacement check (tests/test_check.py).
WHOLE_RUN_DEEP = ("voxelmorph-diff", "gsmorph", "hypermorph")


def test_every_method_of_the_star_is_planned_on_volumes_with_the_volume_training(tmp_path, capsys):
    """``regbench run --dataset synthetic3d --profile smoke --methods '*' --dry-run``: every built-in method
    registers volumes (no note leaves one out), each deep one with the profile's volume training."""
    from regbench.cli import main

    assert main(["run", "--dataset", "synthetic3d", "--profile", "smoke", "--methods", "*", "--dry-run", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "left out" not in captured.err, captured.err
    lines = captured.out.split("methods:\n", 1)[1].splitlines()
    planned = {line.split()[0]: (line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("  ") and not line.startswith("    ")}
    assert set(planned) == _classical_installed() | DEEP | INSTANCE | {"initial"}
    trained = {name for name, (line, _) in planned.items() if "trained)" in line}
    assert trained == DEEP
    assert all("batch_size=2" in planned[name][1] and "epochs=10" in planned[name][1] for name in trained), planned


@pytest.mark.slow
def test_the_3d_smoke_run_scores_every_method_that_registers_volumes(tmp_path, capsys):
    """The one whole run on volumes (about 3 min on one thread): every method without training and the deep
    methods of :data:`WHOLE_RUN_DEEP`, through dataset, training, evaluation and report: the classical methods
    each at least 5 Dice points above Initial, the deep and test-time ones above it, VoxelMorph-diff 5 points
    above it without folding; mid-slice figures drawn."""
    import json

    import pandas as pd

    from regbench.cli import main

    run = tmp_path / "run"
    classical, deep = _classical_installed(), set(WHOLE_RUN_DEEP)
    methods = ",".join(sorted(classical | deep | INSTANCE | {"initial"}))
    assert main(["run", "--dataset", "synthetic3d", "--profile", "smoke", "--methods", methods, "--out", str(run), "--no-progress", "--figures"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if "left out" in line], err
    table = pd.read_csv(run / "per_case.csv")
    assert (table["status"] == "ok").all()
    means = table.groupby("method")[["dice", "ndv"]].mean()
    assert set(means.index) == classical | deep | INSTANCE | {"initial"}
    for method in classical:
        assert means.loc[method, "dice"] >= means.loc["initial", "dice"] + 0.05, means
    for method in deep | INSTANCE:
        assert means.loc[method, "dice"] > means.loc["initial", "dice"], means
    assert means.loc["voxelmorph-diff", "ndv"] == 0.0  # scaling and squaring keeps it invertible
    assert means.loc["voxelmorph-diff", "dice"] > means.loc["initial", "dice"] + 0.05
    assert json.loads((run / "manifest.json").read_text())["dataset_info"]["dims"] == 3
    assert (run / "report" / "figures" / "qualitative.png").exists() and (run / "report" / "table1.md").exists()
    # The page's case view: each example volume across each of its three axes, the through-plane slice first.
    page = (run / "report" / "index.html").read_text()
    views = re.findall(r"<figcaption>(synth3d[^<,]+), ([^<]+)</figcaption>", page)
    first = views[0][0]
    assert [v for c, v in views if c == first] == ["in-plane, axis 0 = 5", "through-plane, axis 1 = 24", "through-plane, axis 2 = 24"], views


def test_figures_show_a_volume_as_two_mid_slices_with_their_true_aspect():
    from regbench.figures import _views

    across_slices, across_rows = _views((10, 48, 48), (10.0, 4.0, 4.0))
    image = np.arange(10 * 48 * 48, dtype=float).reshape(10, 48, 48)
    flow = np.stack([image, image + 1, image + 2])
    assert across_slices.image(image).shape == (48, 48) and across_slices.aspect == 1.0
    assert across_rows.image(image).shape == (10, 48) and across_rows.aspect == 2.5  # 10 mm slices, 4 mm pixels
    assert np.array_equal(across_slices.flow(flow), flow[1:, 5])  # in-plane components: rows, columns
    assert np.array_equal(across_rows.flow(flow), flow[[0, 2], :, 24])  # through-plane view: slices, columns
    *_, across_columns = _views((10, 48, 48), (10.0, 4.0, 4.0), every_axis=True)  # the case view's third
    assert across_columns.image(image).shape == (10, 48) and np.array_equal(across_columns.flow(flow), flow[[0, 1], :, :, 24])
    (whole,) = _views((20, 30), (1.5, 2.0))
    assert whole.image(np.zeros((20, 30))).shape == (20, 30) and whole.aspect == 0.75


def test_regbench_datasets_lists_each_dataset_with_its_dims(capsys):
    from regbench.cli import main

    assert main(["datasets"]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()}
    assert rows["synthetic3d"] == rows["acdc3d"] == rows["mnm3d"] == "3-D" and rows["synthetic"] == rows["acdc"] == "2-D"
