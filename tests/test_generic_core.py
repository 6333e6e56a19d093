"""The core assumes no anatomy and no dimension: declared dims checked before any work, pairs without labels
scored on what they have, pair-aware methods, and captions that say the conventions a run recorded."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from regbench import ConfigError
from regbench.cli import main
from regbench.interface import Registration
from regbench.metrics import evaluate


def _smoke(tmp_path, methods, *extra):
    return ["run", "--profile", "smoke", "--methods", methods, "--out", str(tmp_path), "--max-pairs", "2", "--no-progress", *extra]


# ----------------------------------------------------------------------------------------------- dims
def test_a_3d_method_is_left_out_of_a_pattern_on_2d_data_with_one_note(with_plugins, tmp_path, capsys):
    assert main(_smoke(tmp_path, "initial,volume-*")) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "volume-only" in line]
    assert notes == ["regbench: note: left out of initial,volume-*: method 'volume-only' registers 3-D images (its declared dims); dataset 'synthetic' is 2-D"]
    assert set(pd.read_csv(tmp_path / "per_case.csv")["method"]) == {"initial"}


def test_a_3d_method_named_on_2d_data_is_one_error_before_any_work(with_plugins, tmp_path, capsys):
    assert main(_smoke(tmp_path / "run", "initial,volume-only")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["regbench: error: method 'volume-only' registers 3-D images (its declared dims); dataset 'synthetic' is 2-D: leave it out of --methods"]
    assert not (tmp_path / "run").exists()


def test_declared_dims_are_read_from_metadata_and_from_a_plugins_attribute(with_plugins):
    from regbench.registry import METHODS

    assert METHODS.meta("volume-only").dims == (3,) and METHODS.meta("slow-initial").dims == (2,)  # the default
    assert METHODS.meta("initial").dims == METHODS.meta("demons").dims == METHODS.meta("gsmorph").dims == (2, 3)
    skipped: dict[str, str] = {}
    assert METHODS.resolve(["initial", "*-initial"], skipped, dims=(3,)) == ["initial"] and "slow-initial" in skipped
    with pytest.raises(ConfigError, match="'slow-initial' registers 2-D images"):
        METHODS.resolve("slow-initial", dims=(3,))


# ------------------------------------------------------------------------------------- partial labels
def test_a_pair_without_labels_is_scored_on_its_images_and_flow_and_says_why(small_dataset):
    pair = small_dataset.pairs("test")[0]
    flow = np.zeros((2, *pair.fixed.shape), np.float32)
    flow[0] += 0.5
    registration = Registration(moved=pair.moving.copy(), flow=flow)
    labelled = evaluate(pair, registration)
    for missing in ("moving", "fixed"):
        unlabelled = dataclasses.replace(pair, **{f"{missing}_label": None})
        row = evaluate(unlabelled, registration)
        label_columns = [k for k in row if k.startswith(("dice", "hd95"))]
        assert len(label_columns) == 8 and all(np.isnan(row[k]) for k in label_columns)
        assert row["mse"] == labelled["mse"] and row["njd"] == labelled["njd"] == 0 and row["sdlogj"] == labelled["sdlogj"]
        assert row["n_skipped"] == 6 and row["skipped"].split(";")[0] == f"dice_lv (no {missing} label)"
        assert np.isnan(evaluate(unlabelled, registration, quick=True)["dice"])


# -------------------------------------------------------------------------------------- register_pair
@pytest.mark.slow
def test_the_runner_and_check_method_call_register_pair_when_a_method_has_one(with_plugins, tmp_path, monkeypatch, capsys):
    from regbench.check import check_method

    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("REGBENCH_TEST_CALLS", str(calls))
    assert main(_smoke(tmp_path / "run", "pair-aware")) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv", dtype={"subject": str})
    assert (table["status"] == "ok").all() and len(table) == 2
    assert set(calls.read_text().split()) == set(table["case_id"])
    report = check_method("pair-aware")
    result = next(r for r in report.results if r.name == "register_pair")
    assert result.passed and "the runner calls register_pair(pair)" in result.message
    plain = next(r for r in check_method("initial").results if r.name == "register_pair")
    assert plain.passed and plain.message == "no register_pair: the runner calls register(fixed, moving)"


# ------------------------------------------------------------------------------------------- captions
@pytest.mark.slow
@pytest.mark.parametrize("convention, scheme", [("pooled", "central"), ("max", "forward")])
def test_table_1_caption_names_the_conventions_the_run_recorded(tmp_path, convention, scheme):
    config = tmp_path / "run.yaml"
    config.write_text(f"hd95_convention: {convention}\njacobian_scheme: {scheme}\n")
    assert main(_smoke(tmp_path / "run", "initial", "--config", str(config))) == 0
    caption = (tmp_path / "run" / "report" / "table1.tex").read_text()
    assert f"HD95 {convention} (" in caption and f"({scheme} differences)" in caption
    other = "max" if convention == "pooled" else "pooled"
    assert f"HD95 {other}" not in caption
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["fingerprint"]["hd95_convention"] == convention


# ------------------------------------------------------------------------------------------ declared labels
def test_labels_declared_by_a_dataset_name_the_columns_and_the_table(small_dataset):
    from regbench.aggregate import per_case_frame, summary_frame
    from regbench.registry import DATASETS

    assert DATASETS.meta("synthetic").labels == {"LV": 3, "Myo": 2, "RV": 1}
    pair = dataclasses.replace(small_dataset.pairs("test")[0], labels={"Left ventricle": 3, "Wall": 2})
    registration = Registration(moved=pair.moving.copy(), flow=np.zeros((2, *pair.fixed.shape), np.float32))
    row = evaluate(pair, registration)
    assert {k for k in row if k.startswith("dice_")} == {"dice_left_ventricle", "dice_wall"}
    assert row["dice"] == pytest.approx(np.mean([row["dice_left_ventricle"], row["dice_wall"]]))
    frame = per_case_frame([{"method": "initial", "dataset": "x", "case_id": "s-0", "subject": "s", "status": "ok", **row}], pair.labels)
    assert [c for c in frame.columns if c.startswith(("dice", "hd95"))] == [
        "dice",
        "dice_left_ventricle",
        "dice_wall",
        "hd95",
        "hd95_left_ventricle",
        "hd95_wall",
    ]
    assert "dice_lv" not in frame and summary_frame(frame)["dice_wall_n"].iloc[0] == 1


# ------------------------------------------------------------------------------ a dataset of its own labels
@pytest.mark.slow
def test_a_plugin_dataset_with_five_labels_of_its_own_runs_end_to_end(with_plugins, tmp_path):
    """Five labels named by the dataset, a pair without labels (u03) and one with three of the five (p04), run
    with initial and demons (and flaky, whose failed cases must not bring other labels' columns) and reported:
    its own columns, NaN label metrics with the reason, counts per mean."""
    run = tmp_path / "run"
    assert main(["run", "--dataset", "organs", "--methods", "initial,demons,flaky", "--out", str(run), "--no-progress", "--profile", "smoke"]) == 0
    table = pd.read_csv(run / "per_case.csv")
    flaky = table[table["method"] == "flaky"]
    assert len(flaky) == 6 and 0 < (flaky["status"] == "failed").sum() < 6
    table = table[table["method"] != "flaky"].reset_index(drop=True)
    keys = ["liver", "spleen", "left_kidney", "right_kidney", "stomach"]
    assert [c for c in table.columns if c.startswith("dice_")] == [f"dice_{k}" for k in keys]
    assert not any(c.endswith(("_lv", "_myo", "_rv")) for c in table.columns)
    assert list(table["case_id"]) == ["c01", "c02", "c05", "c06", "p04", "u03"] * 2 and table["subject"].isna().all()
    assert (table["status"] == "ok").all()
    by_case = table.set_index(["method", "case_id"])
    unlabelled = by_case.loc[("demons", "u03")]
    assert all(np.isnan(unlabelled[f"{m}_{k}"]) for m in ("dice", "hd95") for k in keys) and np.isnan(unlabelled["dice"])
    assert unlabelled["n_skipped"] == 10 and unlabelled["skipped"].startswith("dice_liver (no fixed label);")
    assert np.isfinite(unlabelled[["mse", "njd", "sdlogj"]].astype(float)).all()
    partial = by_case.loc[("demons", "p04")]
    assert np.isfinite(partial[["dice_liver", "dice_spleen", "dice_left_kidney"]].astype(float)).all()
    assert np.isnan(partial["dice_right_kidney"]) and np.isnan(partial["dice_stomach"]) and partial["n_skipped"] == 4
    assert partial["dice"] == pytest.approx(np.mean(partial[["dice_liver", "dice_spleen", "dice_left_kidney"]].astype(float)))
    # demons undoes the one- or two-pixel shift that initial leaves
    labelled = table[table["case_id"] != "u03"]
    assert labelled[labelled["method"] == "demons"]["dice"].mean() > labelled[labelled["method"] == "initial"]["dice"].mean() + 0.1
    summary = pd.read_csv(run / "summary.csv").set_index("method")
    assert summary.loc["demons", "dice_n"] == 5 and summary.loc["demons", "mse_n"] == 6
    assert summary.loc["demons", "dice_stomach_n"] == 4 and summary.loc["demons", "dice_liver_n"] == 5
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["dataset_info"]["labels"] == with_plugins_labels() and manifest["dataset_info"]["dims"] == 2
    caption = (run / "report" / "table1.tex").read_text()
    assert (
        "over the test pairs: Organs 6). Dice and HD95 over the pairs with labels (Organs 5) averaged over Liver, Spleen, Left kidney, Right kidney and Stomach;"
        in caption
    )
    assert "LV" not in caption
    assert sorted(p.name for p in (run / "examples" / "demons").iterdir()) == ["c01.npz", "c02.npz"]


def with_plugins_labels():
    return {"Liver": 1, "Spleen": 2, "Left kidney": 3, "Right kidney": 4, "Stomach": 5}


# ------------------------------------------------------------------------------------ declared protocols
class _Trainable:
    def __init__(self, **options):
        pass

    def register(self, fixed, moving):
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))

    def fit(self, train_pairs, val_pairs=(), workdir=None):
        pass

    def save(self, path):
        pass

    def load(self, path):
        pass


@pytest.fixture
def registry():
    """``add(registry, name, factory, meta)``: registers for one test, removed after it."""
    added = []

    def add(kind, name, factory, meta=None):
        kind.add(name, factory, meta)
        added.append((kind, name))

    yield add
    for kind, name in added:
        kind.remove(name)


def test_is_trainable_reads_the_declared_metadata_and_a_contradiction_is_one_error(registry):
    from regbench.errors import RegistryError
    from regbench.registry import METHODS, MethodMeta, is_trainable

    registry(METHODS, "declared-trainable", _Trainable, MethodMeta(trainable=True))
    assert is_trainable(METHODS.create("declared-trainable"))
    registry(METHODS, "undeclared-fit", _Trainable, MethodMeta())  # has fit/save/load, declares trainable=False
    with pytest.raises(RegistryError, match=r"method 'undeclared-fit' declares trainable=False in its MethodMeta, but its object has fit, save, load"):
        METHODS.create("undeclared-fit")
    registry(METHODS, "claims-trainable", lambda: _Plain(), MethodMeta(trainable=True))
    with pytest.raises(RegistryError, match=r"declares trainable=True in its MethodMeta, but its object lacks fit, save, load"):
        METHODS.create("claims-trainable")
    # No metadata, a factory function: its attributes cannot say; the object it builds does.
    registry(METHODS, "function-factory", lambda: _Trainable())
    assert METHODS.meta("function-factory").trainable is False
    assert is_trainable(METHODS.create("function-factory")) and METHODS.meta("function-factory").trainable is True


class _Plain:
    def register(self, fixed, moving):
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))


def test_a_factory_that_builds_no_method_or_no_dataset_is_one_error_naming_it(registry):
    from regbench.errors import RegistryError
    from regbench.interface import Dataset
    from regbench.registry import DATASETS, METHODS

    registry(METHODS, "no-register", lambda: object())
    with pytest.raises(
        RegistryError, match=r"method 'no-register': its factory returned object, which has neither register\(fixed, moving\) nor register_pair\(pair\)"
    ):
        METHODS.create("no-register")
    registry(DATASETS, "no-pairs", lambda: _Plain())
    with pytest.raises(RegistryError, match=r"dataset 'no-pairs': its factory returned _Plain, which has no pairs\(split\)"):
        DATASETS.create("no-pairs")
    assert isinstance(DATASETS.create("synthetic", n_subjects=3, image_size=32), Dataset)


@pytest.mark.slow
def test_a_3d_dataset_runs_end_to_end_with_the_methods_that_register_volumes(with_plugins, tmp_path, capsys):
    """A plugin dataset of volumes: initial, demons and syn (2-D and 3-D) score it with Dice, HD95 in mm from its
    spacing, NJD and NDV; a 2-D method matched by a pattern is left out with a note; the manifest says dims 3."""
    run = tmp_path / "run"
    methods = "initial,demons,syn,slow-*"  # slow-initial: the test plugin's 2-D-only method
    assert main(["run", "--dataset", "volumes", "--methods", methods, "--out", str(run), "--no-progress", "--profile", "smoke"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "left out" in line]
    assert len(notes) == 1 and "method 'slow-initial' registers 2-D images (its declared dims); dataset 'volumes' is 3-D" in notes[0]
    table = pd.read_csv(run / "per_case.csv").set_index(["method", "case_id"])
    assert (table["status"] == "ok").all() and set(table.index.get_level_values(0)) == {"initial", "demons", "syn"}
    assert [c for c in table.columns if c.startswith("dice_")] == ["dice_block", "dice_core"]
    initial, demons = table.loc["initial"], table.loc["demons"]
    for method in ("demons", "syn"):
        assert (table.loc[method, "dice"] > initial["dice"] + 0.1).all() and (table.loc[method, "hd95"] < initial["hd95"]).all()
    assert (initial[["njd", "ndv"]] == 0).all().all() and (demons["ndv"] >= 0).all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["dataset_info"]["dims"] == 3 and manifest["dataset_info"]["labels"] == {"Block": 1, "Core": 2}


def test_pairs_of_other_dims_than_the_dataset_declares_are_one_error_before_any_work(with_plugins, registry, tmp_path, capsys):
    """Declared dims choose the methods; volumes from a dataset that declares 2-D would reach 2-D methods."""
    from regbench.registry import DATASETS, DatasetMeta

    volumes = DATASETS.get("volumes")
    registry(DATASETS, "flat-claims", volumes, DatasetMeta(display_name="Flat claims"))  # dims default (2,)
    assert main(_smoke(tmp_path / "run", "initial", "--dataset", "flat-claims")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "regbench: error: dataset 'flat-claims' declares dims (2,) (DatasetMeta.dims) but its pairs are 3-D: declare the dims "
        "its images have, so that methods are chosen for them"
    ]
    assert not (tmp_path / "run" / "cases.jsonl").exists()
