"""Learn2Reg tasks: the task reader on a task folder the tests write (tests/learn2reg_fixture.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from learn2reg_fixture import SHAPE, SHIFT, SPACING, shift_field, write_fields, write_task
from regbench import DataError, create_dataset


@pytest.fixture
def task(tmp_path):
    return write_task(tmp_path / "T")


def test_the_reader_takes_pairs_labels_points_and_spacing_from_the_task(task):
    dataset = create_dataset("learn2reg", root=str(task))
    split = dataset.split()
    # the registration_val pairs are scored; training pairs come from the other cases only, one tenth (≥ 1) validates
    assert split["test"] == ["0005_0000_0005_0001", "0006_0000_0006_0001"]
    assert split["train"] == ["0001_0000_0001_0001", "0002_0000_0002_0001", "0003_0000_0003_0001"] and split["val"] == ["0004_0000_0004_0001"]
    pair = dataset.pairs("test")[0]
    assert pair.subject == "0005" and pair.labels == {"outer": 1, "inner": 2}  # the JSON's labels, background left out
    assert pair.spacing == SPACING and pair.fixed.shape == SHAPE and set(np.unique(pair.fixed_label)) == {0, 1, 2}
    assert np.allclose(pair.moving_points - pair.fixed_points, [0, SHIFT, 0])
    assert create_dataset("learn2reg", root=str(task / "T_dataset.json")).split() == split  # the JSON itself as root
    assert create_dataset("learn2reg", root=str(task), points="none").pairs("test")[0].fixed_points is None


def test_unpaired_tasks_pair_consecutive_cases_and_undeclared_labels_are_the_values_found(task):
    data = json.loads((task / "T_dataset.json").read_text())
    data.update(pairings="unpaired", labels={})
    data["training"] = [e for e in data["training"] if e["image"].endswith("_0000.nii.gz")]
    data["registration_val"] = [{"fixed": "./imagesTr/T_0005_0000.nii.gz", "moving": "./imagesTr/T_0006_0000.nii.gz"}]
    (task / "T_dataset.json").write_text(json.dumps(data))
    dataset = create_dataset("learn2reg", root=str(task))
    assert dataset.split()["test"] == ["0005_0000_0006_0000"]
    assert dataset.split()["train"] + dataset.split()["val"] == ["0001_0000_0002_0000", "0002_0000_0003_0000", "0003_0000_0004_0000"]
    assert dataset.declared_labels() == {"1": 1, "2": 2}


def test_a_bad_task_is_one_error_naming_the_file_and_data_check_reports_it(task, tmp_path, capsys):
    from regbench.cli import main

    assert main(["data", "check", "--dataset", "learn2reg", "--root", str(task)]) == 0
    assert "Learn2Reg task T" in capsys.readouterr().out
    (task / "imagesTr" / "T_0006_0001.nii.gz").unlink()
    assert main(["data", "check", "--dataset", "learn2reg", "--root", str(task)]) == 1
    assert "T_0006_0001.nii.gz does not exist" in capsys.readouterr().out
    data = json.loads((task / "T_dataset.json").read_text())
    for change, message in (
        ({"registration_val": []}, "lists no val pairs"),
        ({"registration_val": [{"fixed": "./imagesTr/a.nii.gz", "moving": "./imagesTr/b.nii.gz"}]}, "'imagesTr/a.nii.gz' is not named TASK_CCCC_MMMM"),
    ):
        (task / "T_dataset.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(DataError, match=message):
            create_dataset("learn2reg", root=str(task))
    with pytest.raises(DataError, match="holds 0 \\*_dataset.json files"):
        create_dataset("learn2reg", root=str(tmp_path))


def test_submitted_fields_under_their_long_names_score_as_the_known_transform(task, tmp_path):
    from regbench.cli import main

    cases = ["0005_0000_0005_0001", "0006_0000_0006_0001"]
    zero = write_fields(tmp_path / "zero", {c: np.zeros((*SHAPE, 3)) for c in cases})
    shift = write_fields(tmp_path / "shift", {c: shift_field() for c in cases})
    kit = {"pattern": "disp_{case_id}.nii.gz", "layout": "channel_last"}
    config = {
        "dataset": "learn2reg",
        "dataset_options": {"root": str(task)},
        "methods": ["initial", "fields.zero", "fields.shift"],
        "method_options": {"fields.zero": {"folder": str(zero), **kit}, "fields.shift": {"folder": str(shift), **kit}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"]).sort_index()
    metrics = ["dice", "dice_outer", "dice_inner", "hd95", "tre_mm", "njd"]
    assert np.allclose(table.loc["fields.zero", metrics], table.loc["initial", metrics], equal_nan=True)  # zero fields are Initial
    assert (table.loc["initial", "dice"] < 0.9).all() and np.allclose(table.loc["initial", "tre_mm"], SHIFT * SPACING[1])
    assert (table.loc["fields.shift", ["dice_outer", "dice_inner"]] == 1.0).all().all() and np.allclose(table.loc["fields.shift", "tre_mm"], 0.0)
