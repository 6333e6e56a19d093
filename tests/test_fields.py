"""Fields written by other tools: each convention converted into regbench's (against hand-written conversions),
and the ``fields.<tag>`` method scored, failed and bound like any method."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import ndimage

from regbench import ConfigError, Pair, create_dataset
from regbench.errors import InputError
from regbench.fields import FieldConvention, from_regbench, to_regbench
from regbench.warp import samples_inside, warp


def smooth_flow(shape, amplitude=1.5, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([amplitude * ndimage.gaussian_filter(rng.standard_normal(shape), 3.0) * 8 for _ in shape]).astype(np.float32)


def grid(shape):
    return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))


CASES_2D = [((24, 30), (2.0, 3.0)), ((8, 20, 16), (10.0, 4.0, 4.0))]


@pytest.mark.parametrize(("shape", "spacing"), CASES_2D)
def test_each_declared_convention_is_undone_exactly(shape, spacing):
    u = smooth_flow(shape)
    ndim = len(shape)
    sizes = np.reshape(shape, (ndim,) + (1,) * ndim).astype(np.float64)
    mm = np.reshape(spacing, (ndim,) + (1,) * ndim)
    permutation = list(reversed(range(ndim)))[1:] + [ndim - 1]  # a permutation other than the identity
    written = {
        "channel last": (np.moveaxis(u, 0, -1), {"layout": "channel_last"}),
        "x first": (u[::-1], {"axis_order": "reversed"}),
        "permuted": (np.stack([u[a] for a in permutation]), {"axis_order": permutation}),
        "mm": (u * mm, {"units": "mm"}),
        "normalised, corners aligned": (u * 2 / (sizes - 1), {"units": "normalised", "align_corners": True}),
        "normalised, corners not aligned": (u * 2 / sizes, {"units": "normalised", "align_corners": False}),
        "voxel coordinates": (grid(shape) + u, {"kind": "coordinates"}),
        "mm coordinates": ((grid(shape) + u) * mm, {"kind": "coordinates", "units": "mm"}),
        # grid_sample, align_corners=False: voxel p sits at (2p + 1)/N − 1; channel last, x first
        "grid_sample": (
            np.moveaxis(((2 * (grid(shape) + u) + 1) / sizes - 1)[::-1], 0, -1),
            {"layout": "channel_last", "axis_order": "reversed", "units": "normalised", "align_corners": False, "kind": "coordinates"},
        ),
    }
    for what, (array, declared) in written.items():
        convention = FieldConvention(**declared)
        np.testing.assert_allclose(to_regbench(array, convention, shape, spacing), u, atol=1e-4, err_msg=what)
        np.testing.assert_allclose(from_regbench(u, convention, spacing), array, atol=1e-4, err_msg=what)


def test_half_resolution_fields_are_resampled_and_scaled_as_declared():
    half = np.full((2, 12, 15), 1.25, np.float32)
    full = to_regbench(half, FieldConvention(resolution="half"), (24, 30), (1.0, 1.0))
    np.testing.assert_allclose(full, 1.25, atol=1e-5)  # Learn2Reg's: values already in full-resolution voxels
    doubled = to_regbench(half, FieldConvention(resolution="half", half_values="half"), (24, 30), (1.0, 1.0))
    np.testing.assert_allclose(doubled, 2.5, atol=1e-5)


def test_a_push_field_is_inverted_into_the_pull_field_that_undoes_it():
    shape = (40, 40)
    push = smooth_flow(shape, amplitude=0.8, seed=3)
    pull = to_regbench(push, FieldConvention(direction="push"), shape, (1.0, 1.0))
    # p + u(p) is where the push map sends it back from: (p + u(p)) + v(p + u(p)) = p
    landed = np.stack([ndimage.map_coordinates(c, grid(shape) + pull, order=1) for c in push])
    inside = (slice(None), slice(6, -6), slice(6, -6))
    assert np.abs(pull + landed)[inside].max() < 1e-3
    assert np.abs(pull + push)[inside].max() > 0.05  # not merely the negated field


def test_a_field_of_the_wrong_shape_is_one_error_naming_the_file():
    with pytest.raises(ConfigError, match="field file a.npz: shape \\(24, 30, 3\\) has 3 components on its last axis, expected 2"):
        to_regbench(np.zeros((24, 30, 3)), FieldConvention(layout="channel_last"), (24, 30), (1.0, 1.0), source="field file a.npz")
    with pytest.raises(ConfigError, match="field grid \\(20, 30\\) differs from the images' \\(24, 30\\)"):
        to_regbench(np.zeros((2, 20, 30)), FieldConvention(), (24, 30), (1.0, 1.0))
    with pytest.raises(ConfigError, match="units must be one of voxel, mm, normalised, got 'pixels'"):
        FieldConvention(units="pixels")


# ------------------------------------------------------------------------------------------- as a method
def _write_config(tmp_path, dataset, folders, methods=None):
    config = {
        "dataset": dataset,
        "profile": "smoke",
        "methods": methods or ["initial", *folders],
        "method_options": {name: {"folder": str(tmp_path / name), **declared} for name, declared in folders.items()},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fields(tmp_path, pairs, name, flows, convention=None, suffix=".npz"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for pair, flow in zip(pairs, flows):
        array = from_regbench(flow, convention or FieldConvention(), pair.spacing)
        np.savez(folder / f"{pair.case_id}{suffix}", array)
    return folder


@pytest.mark.parametrize("dataset", ["synthetic", "synthetic3d"])
def test_zero_fields_score_as_initial_and_true_fields_as_the_true_motion(tmp_path, dataset):
    from regbench.cli import main

    pairs = create_dataset(dataset, **({"n_subjects": 8, "image_size": 64} if dataset == "synthetic" else {"n_subjects": 10, "image_size": 48})).pairs("test")
    itk_like = FieldConvention(layout="channel_last", axis_order="reversed", units="mm")
    _fields(tmp_path, pairs, "fields.zero", [np.zeros((p.fixed.ndim, *p.fixed.shape), np.float32) for p in pairs])
    _fields(tmp_path, pairs, "fields.truth", [p.flow_gt for p in pairs], itk_like)
    config = _write_config(tmp_path, dataset, {"fields.zero": {}, "fields.truth": itk_like.record()})
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"]).sort_index()
    metrics = ["dice", "hd95", "mse", "njd", "epe_mm"]
    pd.testing.assert_frame_equal(table.loc["fields.zero", metrics], table.loc["initial", metrics])
    assert table.loc["fields.truth", "epe_mm"].max() < 1e-3  # the true motion, read back through three conventions
    assert table.loc["fields.truth", "dice"].mean() > table.loc["initial", "dice"].mean() + 0.2
    assert table.loc["fields.truth", "time_s"].isna().all()  # reading files is not the tool's time
    table2 = (tmp_path / "run" / "report" / "table2.tex").read_text()
    assert "Time not measured (n/a) for Fields (truth), Fields (zero)" in table2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    bound = manifest["methods"]["fields.truth"]
    assert bound["fields_converter"] == 1 and bound["units"] == "mm"
    assert len(manifest["inputs"]["fields.truth"]) == len(pairs) and all(len(d) == 64 for d in manifest["inputs"]["fields.truth"].values())


def test_a_missing_field_fails_by_name_is_scored_once_supplied_and_a_changed_scored_file_is_refused(tmp_path, capsys):
    """The advice is the rule: "fix the cause and run the same command again" works once the file is there (it
    was refused on the folder's digest); only a case scored from a file that changed since is refused, by name."""
    from regbench.cli import main

    pairs = create_dataset("synthetic", n_subjects=8, image_size=64).pairs("test")
    folder = _fields(tmp_path, pairs[1:], "fields.mine", [np.zeros((2, *p.fixed.shape), np.float32) for p in pairs[1:]])
    config = _write_config(tmp_path, "synthetic", {"fields.mine": {}}, methods=["fields.mine"])
    run = ["run", "--config", str(config), "--out", str(tmp_path / "run")]
    assert main(run) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index("case_id")
    assert table.loc[pairs[0].case_id, "status"] == "failed"
    missing = f"no field for case '{pairs[0].case_id}': {folder / (pairs[0].case_id + '.npz')} does not exist"
    assert missing in table.loc[pairs[0].case_id, "reason"]
    assert (table.drop(index=pairs[0].case_id)["status"] == "ok").all()
    warned = capsys.readouterr().err
    assert f"fields.mine: 1 of 12 case(s) failed ({pairs[0].case_id}: InputError: {missing}). Fix the cause and run the same command again" in warned
    np.savez(folder / f"{pairs[0].case_id}.npz", np.zeros((2, *pairs[0].fixed.shape), np.float32))  # the file supplied
    assert main(run) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index("case_id")
    assert (table["status"] == "ok").all() and len(table) == 12  # the smoke profile scores 12 pairs
    assert "1 failed before and retried" in capsys.readouterr().out
    np.savez(folder / f"{pairs[1].case_id}.npz", np.ones((2, *pairs[1].fixed.shape), np.float32))  # a scored case's file changed
    assert main(run) == 2
    assert f"'fields.mine' scored 1 case(s) from inputs that have changed since ({pairs[1].case_id}); " in capsys.readouterr().err


def test_a_wrong_pattern_that_failed_every_case_is_fixed_by_the_corrected_command(tmp_path, capsys):
    """Every case failed under pattern x_{case_id}.npz: nothing was scored, so the corrected options are taken
    (it was "holds 'fields.X' run with other options; use another --out")."""
    from regbench.cli import main

    pairs = create_dataset("synthetic", n_subjects=8, image_size=64).pairs("test")
    _fields(tmp_path, pairs, "fields.mine", [np.zeros((2, *p.fixed.shape), np.float32) for p in pairs])
    wrong = _write_config(tmp_path, "synthetic", {"fields.mine": {"pattern": "x_{case_id}.npz"}}, methods=["fields.mine"])
    assert main(["run", "--config", str(wrong), "--out", str(tmp_path / "run")]) == 1
    assert "method fields.mine: every case failed (" in capsys.readouterr().err
    right = _write_config(tmp_path, "synthetic", {"fields.mine": {}}, methods=["fields.mine"])
    assert main(["run", "--config", str(right), "--out", str(tmp_path / "run")]) == 0
    assert (pd.read_csv(tmp_path / "run" / "per_case.csv")["status"] == "ok").all()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["methods"]["fields.mine"].get("pattern") is None


def test_fields_has_named_instances_only():
    from regbench.registry import METHODS

    assert "fields" not in METHODS.resolve("*") and METHODS.resolve("initial,fields.a") == ["initial", "fields.a"]
    assert METHODS.display_name("fields.my-tool") == "Fields (my-tool)" and METHODS.meta("fields.x").dims == (2, 3)
    with pytest.raises(ConfigError, match="'fields' has named instances only: name one as fields.TAG"):
        METHODS.resolve("fields")
    with pytest.raises(ConfigError, match="fields needs the option folder"):
        METHODS.create("fields.a")


# -------------------------------------------------------------------------------------------- the probes
@pytest.fixture(scope="module")
def smoke_test_pairs():
    return create_dataset("synthetic", n_subjects=8, image_size=64).pairs("test")


MISTAKES = {
    # written as, declared as (regbench's default), what the probe must name
    "x first": ({"axis_order": "reversed"}, "x-first (axes reversed)"),
    "mm": ({"units": "mm"}, "in mm units"),
    "normalised": ({"units": "normalised"}, "in normalised units"),
    "push": ({"direction": "push"}, "push fields, not pull"),
}


@pytest.mark.parametrize("screened", [False, True], ids=["whole", "screened"])
@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_probe_names_a_mis_declared_convention(tmp_path, smoke_test_pairs, mistake, screened, monkeypatch):
    """Screened: images above PROBE_VOXELS (here 32², so the 64² pairs) are screened on a copy subsampled by 2,
    and full resolution decides among the declared reading and the screen's best: the same findings."""
    from regbench.methods import fields as fields_module
    from regbench.methods.fields import Fields

    if screened:
        monkeypatch.setattr(fields_module, "PROBE_VOXELS", 32 * 32)
    written, named = MISTAKES[mistake]
    _fields(tmp_path, smoke_test_pairs, "f", [p.flow_gt for p in smoke_test_pairs], FieldConvention(**written))
    finding = Fields(folder=tmp_path / "f").probe(smoke_test_pairs)
    assert finding is not None and finding["suspect"] == named, finding
    assert finding["step"] == (2 if screened else 1) and ("screen_dice" in finding) == screened
    assert finding["dice"][named] >= finding["dice"]["as declared"] + 0.05
    assert f"these fields look {named}: Dice" in finding["message"]
    declared_right = Fields(folder=tmp_path / "f", **written).probe(smoke_test_pairs)
    assert declared_right is not None and "suspect" not in declared_right, declared_right  # no false alarm


def test_a_run_warns_and_marks_the_row_of_mis_declared_fields(tmp_path, smoke_test_pairs, caplog):
    from regbench.cli import main

    _fields(tmp_path, smoke_test_pairs, "fields.xy", [p.flow_gt for p in smoke_test_pairs], FieldConvention(axis_order="reversed"))
    config = _write_config(tmp_path, "synthetic", {"fields.xy": {}}, methods=["fields.xy"])
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert "fields.xy: these fields look x-first (axes reversed)" in caplog.text
    assert re.search(r"^\| Fields \(xy\)¶ +\|", (tmp_path / "run" / "report" / "table1.md").read_text(), re.M)
    assert "its fields score clearly better read under another convention (Fields (xy): x-first" in (tmp_path / "run" / "report" / "table1.tex").read_text()


def test_fields_unreadable_as_declared_stop_with_why_and_the_reading_that_works(tmp_path, smoke_test_pairs):
    """Channel-last files declared as nothing (channel first): one ConfigError with the converter's own reason and
    the reading that scores (it was `KeyError: 'as declared'`, the reason swallowed)."""
    from regbench.methods.fields import Fields

    _fields(tmp_path, smoke_test_pairs, "last", [p.flow_gt for p in smoke_test_pairs], FieldConvention(layout="channel_last"))
    with pytest.raises(
        ConfigError, match=r"fields in .*last cannot be read as declared \(layout channel_first, .*\): .*; read as channel last they score Dice 0\.9"
    ):
        Fields(folder=tmp_path / "last").probe(smoke_test_pairs)


def test_fields_on_another_grid_stop_with_the_grid_named(tmp_path):
    """3-D fields written z/y/x for i/j/k images (a grid no single convention change reads) name both grids."""
    from regbench.methods.fields import Fields

    pairs = create_dataset("synthetic3d", n_subjects=4, image_size=24).pairs("test")[:1]
    folder = tmp_path / "zyx"
    folder.mkdir()
    np.savez(folder / f"{pairs[0].case_id}.npz", np.zeros((*reversed(pairs[0].fixed.shape), 3), np.float32))
    with pytest.raises(ConfigError, match=r"cannot be read as declared .*differs from the images'.*; no single change of the convention reads them"):
        Fields(folder=folder, layout="channel_last").probe(pairs)


def test_a_pattern_list_is_tried_in_order_and_a_name_the_pair_lacks_is_named(tmp_path, smoke_test_pairs):
    from regbench.methods.fields import Fields

    pair = smoke_test_pairs[0]
    np.savez(tmp_path / f"b_{pair.case_id}.npz", np.zeros((2, *pair.fixed.shape), np.float32))
    fields = Fields(folder=tmp_path, pattern=["a_{case_id}.npz", "b_{case_id}.npz"])
    assert fields.path_for(pair) == tmp_path / f"b_{pair.case_id}.npz"
    assert np.array_equal(fields.register_pair(pair).flow, np.zeros((2, *pair.fixed.shape)))
    with pytest.raises(InputError, match=f"none of {re.escape(str(tmp_path / 'a_x.npz'))}, .*b_x.npz exists"):
        fields.register_pair(Pair(**{**pair.__dict__, "case_id": "x"}))
    with pytest.raises(
        ConfigError, match=r"fields pattern 'disp_\{fixed_case\}.npz' names 'fixed_case', which case .* does not give \(it gives case_id, subject\)"
    ):
        Fields(folder=tmp_path, pattern="disp_{fixed_case}.npz").path_for(pair)
    with pytest.raises(ConfigError, match="names no pair"):
        Fields(folder=tmp_path, pattern="fixed.npz")


def test_a_folders_convention_json_is_read_and_a_contradiction_named(tmp_path):
    from regbench.methods.fields import CONVENTION_FILE, Fields

    folder = tmp_path / "exported"
    folder.mkdir()
    written = FieldConvention(layout="channel_last", axis_order="reversed")
    (folder / CONVENTION_FILE).write_text(json.dumps({"pattern": "disp_{case_id}.npz", "key": "arr_0", "convention": written.record()}))
    read = Fields(folder=folder)
    assert (read.pattern, read.key, read.convention) == ("disp_{case_id}.npz", "arr_0", written)
    assert Fields(folder=folder, layout="channel_last", axis_order="reversed").convention == written  # the same, said twice
    assert read.binding()["fields_declared"]["layout"] == "channel_last"  # binds the run as given options do
    with pytest.raises(
        ConfigError, match=f"fields option layout: 'channel_first' contradicts {re.escape(str(folder / CONVENTION_FILE))}, which says 'channel_last'"
    ):
        Fields(folder=folder, layout="channel_first")


# ------------------------------------------------------------------------------------------------ export
def _export_round_trip(tmp_path, methods, dataset="synthetic"):
    from regbench.cli import main

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"dataset": dataset, "profile": "smoke", "methods": methods, "keep_flows": True}))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "learn2reg", "--out", str(tmp_path / "l2r")]) == 0
    declared = json.loads((tmp_path / "l2r" / methods[0] / "convention.json").read_text())
    assert declared["convention"]["layout"] == "channel_last" and declared["convention"]["units"] == "voxel"
    assert declared["files"] == len(pd.read_csv(tmp_path / "run" / "per_case.csv").query(f"method == '{methods[0]}'"))
    assert declared["pattern"] == "disp_{case_id}.npz" and declared["key"] == "arr_0"  # what Learn2Reg's kit reads
    back = {f"fields.{m}": {"folder": str(tmp_path / "l2r" / m)} for m in methods}  # the rest is read from convention.json
    config.write_text(yaml.safe_dump({"dataset": dataset, "profile": "smoke", "methods": list(back), "method_options": back}))
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "back")]) == 0
    original = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"])
    scored_back = pd.read_csv(tmp_path / "back" / "per_case.csv").set_index(["method", "case_id"])
    return {m: (original.loc[m], scored_back.loc[f"fields.{m}"]) for m in methods}


@pytest.mark.parametrize("dataset", [pytest.param("synthetic", marks=pytest.mark.slow), "synthetic3d"])
def test_an_exported_run_scored_back_as_fields_reproduces_its_rows(tmp_path, dataset):
    ((before, after),) = _export_round_trip(tmp_path, ["demons"], dataset).values()
    for metric in ("dice", "hd95", "njd", "ndv", "sdlogj", "epe_mm"):
        np.testing.assert_allclose(after[metric], before[metric], atol=1e-6, err_msg=metric)
    # MSE compares the moved image: SimpleITK's own resampling there, regbench's warper here. They agree wherever
    # p + u(p) lies inside the grid; on 10-slice volumes moved through-plane several per cent of the samples fall
    # outside it, where ITK and the warper pad differently: those voxels, stated by the export, are the difference.
    declared = json.loads((tmp_path / "l2r" / "demons" / "convention.json").read_text())
    if dataset == "synthetic":
        np.testing.assert_allclose(after["mse"], before["mse"], atol=1e-4)
        return
    assert declared["samples_outside_grid"] > 0.01
    pairs = {p.case_id: p for p in create_dataset(dataset, n_subjects=10, image_size=48).pairs("test")}  # the smoke profile's
    for case_id in before.index:
        with np.load(tmp_path / "run" / "examples" / "demons" / f"{case_id}.npz") as kept:
            moved, flow = kept["moved"], kept["flow"]
        pair, inside = pairs[case_id], samples_inside(flow)
        assert 0 < (~inside).sum() < inside.size  # the thin stack does sample outside
        np.testing.assert_allclose(warp(pair.moving, flow)[inside], moved[inside], atol=1e-5)  # inside: one image
        np.testing.assert_allclose(before.loc[case_id, "mse"], np.mean((moved - pair.fixed) ** 2), rtol=1e-5)  # the tool's
        np.testing.assert_allclose(after.loc[case_id, "mse"], np.mean((warp(pair.moving, flow) - pair.fixed) ** 2), rtol=1e-5)


@pytest.mark.slow
def test_an_exported_deep_method_scored_back_reproduces_every_metric(tmp_path):
    ((before, after),) = _export_round_trip(tmp_path, ["voxelmorph-m"]).values()
    for metric in ("dice", "hd95", "mse", "njd", "ndv", "sdlogj", "epe_mm"):
        np.testing.assert_allclose(after[metric], before[metric], atol=1e-6, err_msg=metric)  # its moved image is regbench's warp


@pytest.mark.slow
def test_keep_flows_raised_on_a_scored_run_computes_only_the_missing_flows_from_the_saved_model(tmp_path, capsys, with_plugins):
    """Export was partial (2 of 12) and its advice, example_pairs, computed nothing on the same run. Now the same
    command with --keep-flows registers only the scored cases lacking a flow, a trained method from its model
    (not trained again), leaves every row as it was, and export is complete."""
    from regbench.cli import main

    run = ["run", "--profile", "smoke", "--methods", "initial,trained-identity", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(run) == 0
    rows = (tmp_path / "run" / "cases.jsonl").read_text()
    (tmp_path / "run" / "models" / "trained-identity" / "fitted_in.txt").unlink()  # fit() writes it
    assert main(["export", str(tmp_path / "run"), "--format", "learn2reg", "--out", str(tmp_path / "x")]) == 1
    assert "10 scored cases have no kept flow: run the same `regbench run` command into" in capsys.readouterr().out
    assert main([*run, "--keep-flows", "trained-*"]) == 0
    out = capsys.readouterr().out
    assert "trained-identity: 0 pairs computed, 12 already stored; 10 stored pairs registered again to keep their flows" in out
    assert "initial: 0 pairs computed, 12 already stored\n" in out  # not asked for
    assert not (tmp_path / "run" / "models" / "trained-identity" / "fitted_in.txt").exists()  # loaded, not trained again
    assert (tmp_path / "run" / "cases.jsonl").read_text() == rows  # nothing scored again
    assert len(list((tmp_path / "run" / "flows" / "trained-identity").glob("*.npz"))) == 10  # + 2 in its examples
    assert main(["export", str(tmp_path / "run"), "--format", "learn2reg", "--out", str(tmp_path / "x"), "--methods", "trained-identity"]) == 0
    assert "trained-identity: 12 fields" in capsys.readouterr().out
    assert main([*run, "--keep-flows", "trained-*"]) == 0 and "registered again" not in capsys.readouterr().out  # complete now


def test_export_says_which_cases_have_no_stored_flow(tmp_path, capsys):
    from regbench.cli import main

    assert main(["run", "--profile", "smoke", "--methods", "initial", "--out", str(tmp_path / "run")]) == 0  # 2 example pairs
    assert main(["export", str(tmp_path / "run"), "--format", "regbench", "--dtype", "float16"]) == 1
    assert "initial: 2 fields; 10 scored cases have no kept flow: run the same `regbench run` command into" in capsys.readouterr().out
    stored = np.load(next((tmp_path / "run" / "export" / "regbench" / "initial").glob("*.npz")))["disp"]
    assert stored.dtype == np.float16 and stored.shape == (2, 64, 64)  # channel first


def test_perf_probe_times_the_probe_against_scoring_the_folder_it_probes(capsys):
    """The numbers go to `regbench perf`, not into a timed test: this checks what it prints, on tiny slices."""
    from regbench.cli import main

    assert main(["perf", "--probe", "--size", "32", "--pairs", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"fields probe on 2 pairs of 32 x 32 \(step 1\): [\d.]+ s, scoring them [\d.]+ s: \d+ % of scoring; suspect: none", line), line
