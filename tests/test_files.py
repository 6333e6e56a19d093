"""The ``files`` dataset: pairs of your own listed in YAML or CSV, read from NIfTI, MHA and npz with their spacing
and declared labels, scored end to end beside a folder of fields; every bad input one error naming the file."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from regbench import DataError, create_dataset

SHIFT = 2  # voxels along axis 1: moving is fixed shifted, so the pull field +SHIFT maps it back exactly


def _volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32) * 0.2
    label = np.zeros(shape, np.uint8)
    centre = [s // 2 for s in shape]
    box = tuple(slice(c - 3, c + 3) for c in centre)
    label[box] = 1
    label[tuple(slice(c - 1, c + 1) for c in centre)] = 2
    image[label > 0] += 0.6
    return image, label


def _write_nifti(path, array, spacing):
    import nibabel as nib

    image = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    nib.save(image, str(path))


@pytest.fixture
def nifti_list(tmp_path):
    """Three 3-D pairs as NIfTI (spacing 2 × 1 × 1.5 mm) with labels {core: 2, shell: 1}; a YAML list."""
    rows = []
    for i in range(3):
        fixed, label = _volume((10, 16, 14), seed=i)
        moving, moving_label = np.roll(fixed, SHIFT, axis=1), np.roll(label, SHIFT, axis=1)
        for name, array in (("f", fixed), ("m", moving), ("fl", label), ("ml", moving_label)):
            _write_nifti(tmp_path / f"c{i}_{name}.nii.gz", array, (2.0, 1.0, 1.5))
        points = np.array([[2, 3, 4], [5, 8, 7], [7.5, 10.25, 3]])  # voxel indices (i, j, k); a header row in one file
        (tmp_path / f"c{i}_fp.csv").write_text("i,j,k\n" + "\n".join(",".join(map(str, p)) for p in points) + "\n")
        (tmp_path / f"c{i}_mp.csv").write_text("\n".join(",".join(map(str, p + [0, SHIFT, 0])) for p in points) + "\n")
        rows.append(
            {
                "case_id": f"c{i}",
                "fixed": f"c{i}_f.nii.gz",
                "moving": f"c{i}_m.nii.gz",
                "fixed_label": f"c{i}_fl.nii.gz",
                "moving_label": f"c{i}_ml.nii.gz",
                "fixed_points": f"c{i}_fp.csv",
                "moving_points": f"c{i}_mp.csv",
            }
        )
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump({"labels": {"shell": 1, "core": 2}, "pairs": rows}))
    return path


def test_pairs_are_read_with_their_spacing_labels_and_split(nifti_list):
    dataset = create_dataset("files", root=str(nifti_list))
    pairs = dataset.pairs("test")
    assert [p.case_id for p in pairs] == ["c0", "c1", "c2"] and dataset.pairs("train") == []
    pair = pairs[0]
    assert pair.fixed.shape == (10, 16, 14) and pair.spacing == (2.0, 1.0, 1.5) and pair.labels == {"shell": 1, "core": 2}
    assert pair.fixed.dtype == np.float32 and 0.0 <= pair.fixed.min() and pair.fixed.max() <= 1.0
    assert set(np.unique(pair.moving_label)) == {0, 1, 2}
    assert pair.fixed_points.shape == (3, 3) and np.allclose(pair.moving_points - pair.fixed_points, [0, SHIFT, 0])


def test_a_by_key_is_a_group_attribute_and_a_mistyped_one_is_refused(nifti_list):
    data = yaml.safe_load(nifti_list.read_text())
    data["pairs"] = [{**row, "by_site": site} for row, site in zip(data["pairs"], ("A", "B", "A"))]
    nifti_list.write_text(yaml.safe_dump(data))
    assert [p.groups for p in create_dataset("files", root=str(nifti_list)).pairs("test")] == [{"site": "A"}, {"site": "B"}, {"site": "A"}]
    data["pairs"][0]["By-Site"] = "A"
    nifti_list.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError, match="pair 1: unknown key 'By-Site'.*and by_NAME for a group attribute"):
        create_dataset("files", root=str(nifti_list))


def test_a_listed_pair_and_the_fields_of_its_known_shift_score_end_to_end(nifti_list, tmp_path):
    from regbench.cli import main

    fields = tmp_path / "shift"
    fields.mkdir()
    for i in range(3):
        flow = np.zeros((3, 10, 16, 14), np.float32)
        flow[1] = SHIFT
        np.save(fields / f"c{i}.npy", flow)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": "files",
                "dataset_options": {"root": str(nifti_list)},
                "methods": ["initial", "fields.shift"],
                "method_options": {"fields.shift": {"folder": str(fields), "pattern": "{case_id}.npy"}},
            }
        )
    )
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"])
    assert {"dice_shell", "dice_core", "hd95_shell"} <= set(table.columns)  # the list's declared labels
    inside = table.loc["fields.shift"]
    assert (inside["dice_shell"] == 1.0).all() and (inside["dice_core"] == 1.0).all()  # the known answer, exactly
    assert (table.loc["initial", "dice"] < 0.8).all()
    # TRE in mm: the landmarks moved SHIFT voxels along axis 1 (1.0 mm), which the fields undo exactly
    assert np.allclose(table.loc["initial", "tre_mm"], SHIFT * 1.0) and np.allclose(inside["tre_mm"], 0.0)
    assert "TRE (mm)" in (tmp_path / "run" / "report" / "table1.md").read_text()


def test_tre_is_the_landmark_distance_after_the_flow_in_mm():
    from regbench.metrics import target_registration_error

    flow = np.zeros((2, 10, 10))
    flow[0] = 1.5  # every point moves 1.5 rows
    fixed = np.array([[2.0, 3.0], [4.5, 6.25]])
    # moving landmarks 1.5 rows and 2 columns away: the flow leaves the 2 columns, times the 0.5 mm column spacing
    assert target_registration_error(flow, fixed, fixed + [1.5, 2.0], (3.0, 0.5)) == pytest.approx(1.0)
    assert target_registration_error(np.zeros_like(flow), fixed, fixed + [1.5, 0.0], (3.0, 0.5)) == pytest.approx(4.5)


def test_mha_and_npz_images_and_a_csv_list(tmp_path):
    import SimpleITK as sitk

    fixed, label = _volume((20, 24), seed=5)
    moving, moving_label = np.roll(fixed, 1, axis=0), np.roll(label, 1, axis=0)
    for name, array in (("f", fixed), ("m", moving)):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing((0.8, 1.25))  # x (columns) first, as ITK spells it
        sitk.WriteImage(itk, str(tmp_path / f"{name}.mha"))
    np.savez(tmp_path / "fl.npz", label=label, spacing=np.array([1.25, 0.8]))
    np.savez(tmp_path / "ml.npz", label=moving_label, spacing=np.array([1.25, 0.8]))
    (tmp_path / "pairs.csv").write_text("case_id,fixed,moving,fixed_label,moving_label,split\na,f.mha,m.mha,fl.npz,ml.npz,test\n")
    dataset = create_dataset("files", root=str(tmp_path / "pairs.csv"))
    (pair,) = dataset.pairs("test")
    assert pair.spacing == (1.25, 0.8) and pair.fixed.shape == (20, 24)  # SimpleITK's spacing in array order
    assert dataset.declared_labels() == {"1": 1, "2": 2}  # a CSV declares none: the values found, by value


def test_each_bad_input_is_one_error_naming_the_file_and_data_check_lists_them_all(tmp_path, nifti_list, capsys):
    from regbench.cli import main

    data = yaml.safe_load(nifti_list.read_text())
    (tmp_path / "c1_m.nii.gz").unlink()
    _write_nifti(tmp_path / "c2_m.nii.gz", np.zeros((10, 16, 12), np.float32), (2.0, 1.0, 1.5))
    dataset = create_dataset("files", root=str(nifti_list))
    with pytest.raises(DataError, match=f"image file {tmp_path / 'c1_m.nii.gz'} does not exist"):
        dataset.pairs("test")
    assert main(["data", "check", "--dataset", "files", "--root", str(nifti_list)]) == 1
    out = capsys.readouterr().out
    assert "pairs: 3 listed, 1 readable" in out and "c1_m.nii.gz does not exist" in out
    assert "pair 'c2'" in out and "differ: resample them to one grid first" in out
    for bad, message in (
        ({**data["pairs"][0], "fixd": "x"}, "pair 1: unknown key 'fixd'"),
        ({k: v for k, v in data["pairs"][0].items() if k != "moving_label"}, "give both fixed_label and moving_label"),
        ({**data["pairs"][0], "split": "testing"}, "split 'testing' is not one of train, val, test"),
        ({k: v for k, v in data["pairs"][0].items() if k != "fixed_points"}, "give both fixed_points and moving_points"),
    ):
        nifti_list.write_text(yaml.safe_dump({"pairs": [bad]}))
        with pytest.raises(DataError, match=message):
            create_dataset("files", root=str(nifti_list))
    (tmp_path / "c0_mp.csv").write_text("1,2\n")
    nifti_list.write_text(yaml.safe_dump({"pairs": data["pairs"][:1]}))
    with pytest.raises(DataError, match="c0_mp.csv: 3 coordinates per row expected"):
        create_dataset("files", root=str(nifti_list)).pairs("test")
    with pytest.raises(DataError, match="pair list .*missing.yaml does not exist"):
        create_dataset("files", root=str(tmp_path / "missing.yaml"))


def test_data_check_refuses_what_run_refuses_a_label_value_the_list_does_not_declare(nifti_list, tmp_path, capsys):
    """Every file reads, but the list declares shell and core only: data check said "problems: 0" and run stopped."""
    from regbench.cli import main

    data = yaml.safe_load(nifti_list.read_text())
    nifti_list.write_text(yaml.safe_dump({**data, "labels": {"shell": 1}}))  # core (2) no longer declared
    assert main(["data", "check", "--dataset", "files", "--root", str(nifti_list)]) == 1
    checked = capsys.readouterr().out
    assert checked.count("outside the dataset's labels [0, 1]") == 3 and "case 'c0': fixed label has value(s) [2]" in checked
    assert main(["run", "--dataset", "files", "--root", str(nifti_list), "--methods", "initial", "--out", str(tmp_path / "run")]) == 2
    refused = capsys.readouterr().err.strip().splitlines()[-1]
    assert refused.removeprefix("regbench: error: ") in checked  # the same sentence, from the same check
    nifti_list.write_text(yaml.safe_dump(data))
    assert main(["data", "check", "--dataset", "files", "--root", str(nifti_list)]) == 0


def test_masks_are_read_and_ndv_is_measured_over_them(nifti_list, tmp_path):
    """A fold outside the fixed mask counts over every voxel and not over the mask; a bad mask names its file."""
    from regbench.interface import Registration
    from regbench.metrics import evaluate, ndv_mask_of

    data = yaml.safe_load(nifti_list.read_text())
    mask = np.zeros((10, 16, 14), np.uint8)
    mask[2:8, 4:12, 3:11] = 1  # the labelled box and a margin
    _write_nifti(tmp_path / "c0_mask.nii.gz", mask, (2.0, 1.0, 1.5))
    data["pairs"][0]["fixed_mask"] = "c0_mask.nii.gz"
    nifti_list.write_text(yaml.safe_dump(data))
    pairs = create_dataset("files", root=str(nifti_list)).pairs("test")
    pair = pairs[0]
    assert pair.fixed_mask.dtype == bool and pair.fixed_mask.sum() == mask.sum() and pair.moving_mask is None
    assert pairs[1].fixed_mask is None
    assert np.array_equal(ndv_mask_of(pair, "fixed"), mask > 0)
    assert np.array_equal(ndv_mask_of(pair, "moving"), pair.moving > 0)  # no moving mask: its foreground, as before
    flow = np.zeros((3, 10, 16, 14), np.float32)
    flow[1, 0:2, 0:2, 0:2] = -3.0 * np.arange(2)[None, :, None]  # a fold in a corner, outside the mask
    registration = Registration(pair.moving, flow)
    assert evaluate(pair, registration, ndv_mask="none")["ndv"] > 0
    assert evaluate(pair, registration, ndv_mask="fixed")["ndv"] == 0.0
    # A mask of another shape, or an empty one, is one error naming the file.
    _write_nifti(tmp_path / "c0_mask.nii.gz", np.ones((10, 16, 12), np.uint8), (2.0, 1.0, 1.5))
    with pytest.raises(DataError, match=r"mask .*c0_mask.nii.gz has shape \(10, 16, 12\), the images \(10, 16, 14\)"):
        create_dataset("files", root=str(nifti_list)).pairs("test")
    _write_nifti(tmp_path / "c0_mask.nii.gz", np.zeros((10, 16, 14), np.uint8), (2.0, 1.0, 1.5))
    with pytest.raises(DataError, match=r"mask .*c0_mask.nii.gz is empty"):
        create_dataset("files", root=str(nifti_list)).pairs("test")


@pytest.mark.slow
def test_volumes_in_a_dataset_that_declares_2d_or_3d_get_the_3d_options_in_plan_and_manifest(tmp_path, capsys):
    """`files` declares dims (2, 3): options were resolved for the declared 2-D before the pairs were loaded, so
    SyN ran with its 2-D metric (CC) and the deep methods with the 2-D training budget while the manifest said 3-D.
    The plan resolves them for the volumes it loaded: SyN's Mattes, the smoke profile's volume budget. (Slow, ~17 s:
    the manifest is a real run's, SyN and 10 epochs of VoxelMorph on three small volumes.)"""
    from regbench.cli import main

    rows = []
    for i, split in enumerate(("train", "val", "test")):  # 32 px in-plane: the network's coarsest level keeps 2 x 2
        fixed, label = _volume((10, 32, 32), seed=i)
        for name, array in (("f", fixed), ("m", np.roll(fixed, SHIFT, axis=1))):
            _write_nifti(tmp_path / f"v{i}_{name}.nii.gz", array, (2.0, 1.0, 1.5))
        rows.append({"case_id": f"v{i}", "fixed": f"v{i}_f.nii.gz", "moving": f"v{i}_m.nii.gz", "split": split})
    (tmp_path / "volumes.yaml").write_text(yaml.safe_dump({"pairs": rows}))
    args = [
        "run",
        "--dataset",
        "files",
        "--root",
        str(tmp_path / "volumes.yaml"),
        "--profile",
        "smoke",
        "--methods",
        "syn,voxelmorph-m",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "dataset: files (Files), 3-D, spacing 2 x 1 x 1.5 mm;" in plan
    assert re.search(r"syn \(SyN\): 0 stored, 1 to compute\n    options: metric='mattes'", plan), plan
    assert re.search(r"voxelmorph-m \(VoxelMorph-m, trained\): 0 stored, 1 to compute\n    options: batch_size=2, .*epochs=10", plan), plan
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    assert main([*args, "--no-progress"]) == 0
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["method_info"]
    assert info["syn"]["resolved_options"]["metric"] == "mattes"
    assert (info["voxelmorph-m"]["resolved_options"]["epochs"], info["voxelmorph-m"]["resolved_options"]["batch_size"]) == (10, 2)
