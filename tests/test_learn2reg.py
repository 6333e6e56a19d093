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


def test_masks_by_the_kits_folder_rule_are_the_pairs_regions(task):
    from learn2reg_fixture import _nifti

    label = create_dataset("learn2reg", root=str(task)).pairs("test")[0].fixed_label
    (task / "masksTr").mkdir()
    _nifti(task / "masksTr" / "T_0005_0000.nii.gz", (label > 0).astype(np.uint8))  # the fixed image of the first scored pair
    pairs = create_dataset("learn2reg", root=str(task)).pairs("test")
    assert np.array_equal(pairs[0].fixed_mask, label > 0) and pairs[0].moving_mask is None and pairs[1].fixed_mask is None


def test_a_mask_the_json_names_but_that_is_missing_leaves_its_image_unmasked_with_a_note(task):
    """The kit warns and evaluates unmasked; the whole task stopped here (`image file ... does not exist`)."""
    from learn2reg_fixture import _nifti

    data = json.loads((task / "T_dataset.json").read_text())
    for entry in data["training"]:
        entry["mask"] = entry["image"].replace("imagesTr", "masksTr")
    (task / "T_dataset.json").write_text(json.dumps(data))
    (task / "masksTr").mkdir()
    label = create_dataset("learn2reg", root=str(task), points="none").pairs("test")[0].fixed_label
    _nifti(task / "masksTr" / "T_0005_0000.nii.gz", (label > 0).astype(np.uint8))  # one of the 4 scored images' masks
    dataset = create_dataset("learn2reg", root=str(task))
    first, second = dataset.pairs("test")
    assert np.array_equal(first.fixed_mask, label > 0) and first.moving_mask is None and second.fixed_mask is None
    (note,) = dataset.notes()
    assert note.startswith("11 mask file(s) the task names do not exist (e.g. imagesTr/T_0005_0001.nii.gz".replace("imagesTr", "masksTr"))


def test_keypoints_of_two_time_points_are_read_by_the_kits_keypoints01_rule_and_unread_ones_said(task, capsys):
    """ThoraxCBCT's layout: the scored pairs register time point 1 (fixed) to 0, their keypoints live in
    keypoints01Tr/ and the training entries name them ``keypoints01`` with a .nii.gz suffix (the kit reads .csv).
    Before, those pairs lost their points without a word."""
    from regbench.cli import main

    data = json.loads((task / "T_dataset.json").read_text())
    data["registration_val"] = [{"fixed": p["moving"], "moving": p["fixed"]} for p in data["registration_val"]]
    for entry in data["training"]:
        entry["keypoints01"] = entry.pop("keypoints").replace("keypointsTr", "keypoints01Tr").replace(".csv", ".nii.gz")
    (task / "T_dataset.json").write_text(json.dumps(data))
    (task / "keypointsTr").rename(task / "keypoints01Tr")
    dataset = create_dataset("learn2reg", root=str(task))
    pair = dataset.pairs("test")[0]
    assert pair.case_id == "0005_0001_0005_0000" and np.allclose(pair.moving_points - pair.fixed_points, [0, -SHIFT, 0])
    assert dataset.notes() == []
    for entry in data["training"]:
        entry["keypoints02"] = entry.pop("keypoints01").replace("01Tr", "02Tr")
        entry["segmentation"] = entry["label"]
    (task / "T_dataset.json").write_text(json.dumps(data))
    (task / "keypoints01Tr").rename(task / "keypoints02Tr")  # points of the wrong time points: none for these pairs
    assert create_dataset("learn2reg", root=str(task)).pairs("test")[0].fixed_points is None
    assert main(["data", "check", "--dataset", "learn2reg", "--root", str(task)]) == 0  # said, not a problem
    out = capsys.readouterr().out
    assert "note: 2 of 2 scored pairs have no points by the kit's rule (e.g. 0005_0001_0005_0000: looked in landmarksTr and keypoints01Tr" in out
    assert "the task has keypoints02Tr): they get no TRE" in out and "training entries carry 'segmentation', which regbench does not read" in out


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

    assert main(["data", "check", "--dataset", "learn2reg", "--root", str(task), "--refresh"]) == 0
    out = capsys.readouterr().out
    assert "Learn2Reg task T" in out and "split (pairs): train 3, val 1, test 2" in out and "cache: none" in out
    assert main(["run", "--dataset", "learn2reg", "--root", str(task), "--conventions", "lern2reg"]) == 2
    assert "'lern2reg' is not one of learn2reg (did you mean 'learn2reg'?)" in capsys.readouterr().err
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


@pytest.mark.slow
def test_submitted_fields_under_their_long_or_short_names_score_as_the_known_transform(task, tmp_path):
    """Long names (disp_CCCC_MMMM_CCCC_MMMM) and the kit's short ones (disp_FFFF_MMMM: fixed and moving case, which
    its own test and zero fields use) read by one list of patterns, tried in order."""
    from regbench.cli import main

    cases = ["0005_0000_0005_0001", "0006_0000_0006_0001"]
    zero = write_fields(tmp_path / "zero", {c: np.zeros((*SHAPE, 3)) for c in cases})
    shift = write_fields(tmp_path / "shift", {c: shift_field() for c in cases})
    (shift / "disp_0005_0000_0005_0001.nii.gz").rename(shift / "disp_0005_0005.nii.gz")  # the kit's short name
    kit = {"pattern": "disp_{case_id}.nii.gz", "layout": "channel_last"}
    both = {**kit, "pattern": ["disp_{fixed_case}_{moving_case}.nii.gz", "disp_{case_id}.nii.gz"]}
    config = {
        "dataset": "learn2reg",
        "dataset_options": {"root": str(task)},
        "methods": ["initial", "fields.zero", "fields.shift"],
        "method_options": {"fields.zero": {"folder": str(zero), **kit}, "fields.shift": {"folder": str(shift), **both}},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"]).sort_index()
    metrics = ["dice", "dice_outer", "dice_inner", "hd95", "tre_mm", "njd"]
    assert np.allclose(table.loc["fields.zero", metrics], table.loc["initial", metrics], equal_nan=True)  # zero fields are Initial
    assert (table.loc["initial", "dice"] < 0.9).all() and np.allclose(table.loc["initial", "tre_mm"], SHIFT * SPACING[1])
    assert (table.loc["fields.shift", ["dice_outer", "dice_inner"]] == 1.0).all().all() and np.allclose(table.loc["fields.shift", "tre_mm"], 0.0)


# ------------------------------------------------------------------------------------------- the kit's metrics
def _smooth_field(amplitude, shape=(20, 22, 18), seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return np.stack([gaussian_filter(rng.standard_normal(shape), 3.0) for _ in shape]) * amplitude


def test_the_kits_sdlogj_is_the_log_of_det_plus_3_and_its_fold_count_stays_0_where_ndv_does_not():
    from regbench.learn2reg import JACOBIAN_CROP, kit_sdlogj, lumir_ndv
    from regbench.metrics import jacobian_determinant, njd, non_diffeomorphic_share, sdlogj

    smooth = _smooth_field(2.0)
    inner = (slice(JACOBIAN_CROP, -JACOBIAN_CROP),) * 3
    det = jacobian_determinant(smooth)[inner]
    kit, folds = kit_sdlogj(smooth)
    assert det.min() > 0 and folds == 0
    assert kit == pytest.approx(np.log(det + 3).std(), rel=1e-9)  # the same central differences inside the crop, +3
    # to first order d log(J + 3) = dJ / (J + 3): about a quarter of the strict std(log J) where J is near 1
    strict = np.log(det).std()
    assert kit == pytest.approx(strict * det.mean() / (det.mean() + 3), rel=0.05) and kit < 0.3 * strict

    folded = _smooth_field(60.0, seed=1)  # large enough to fold
    assert njd(folded) > 0 and non_diffeomorphic_share(folded) > 0 and lumir_ndv(folded, np.ones(folded.shape[1:])) > 0
    kit_folded, folds = kit_sdlogj(folded)
    assert folds == 0  # the kit counts after the +3 and the clip: never a fold
    assert sdlogj(folded) > 3 * kit_folded  # the strict log J meets det <= 0 (clipped to 1e-9); the +3 hides it


def _kit_masked_std(flow, mask):
    """The kit's masked SDlogJ as evaluation.py writes it: np.ma over log(clip(det J + 3)) with mask 1 - mask[2:-2]."""
    from regbench.learn2reg import kit_jacobian_determinant

    log_jac_det = np.log(np.clip(kit_jacobian_determinant(flow) + 3, 1e-9, 1e9))
    return float(np.ma.MaskedArray(log_jac_det, 1 - mask.astype(float)[2:-2, 2:-2, 2:-2]).std())


def test_masked_evaluation_follows_the_tasks_evaluation_config_or_the_option_and_the_caption_says_which(task, tmp_path):
    """LungCT, NLST and AbdomenMRCT set masked_evaluation: the kit's SDlogJ is then over the fixed mask. The
    released dataset JSON does not say; the evaluation config (in the task folder) or the masked option does."""
    from learn2reg_fixture import _nifti
    from regbench.cli import main

    field = _smooth_field(2.0, shape=SHAPE, seed=4)
    field[:, :, 12:] *= 6  # rougher beyond the masks (axis 1 from 13 on): the mask matters
    cases = ["0005_0000_0005_0001", "0006_0000_0006_0001"]
    folder = write_fields(tmp_path / "tool", {c: np.moveaxis(field, 0, -1) for c in cases})
    (task / "masksTr").mkdir()
    masks = {}
    for case in ("0005", "0006"):
        mask = np.zeros(SHAPE, np.uint8)
        mask[3:10, 4:13, 2:9] = 1
        masks[case] = mask
        _nifti(task / "masksTr" / f"T_{case}_0000.nii.gz", mask)
    (task / "T_VAL_evaluation_config.json").write_text(json.dumps({"task_name": "T", "masked_evaluation": True}))
    config = {"dataset": "learn2reg", "dataset_options": {"root": str(task)}, "methods": ["fields.tool"]}
    config["method_options"] = {"fields.tool": {"folder": str(folder), "pattern": "disp_{case_id}.nii.gz", "layout": "channel_last"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "masked")]) == 0
    config["dataset_options"]["masked"] = False  # the option wins over the config
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "whole")]) == 0
    masked = pd.read_csv(tmp_path / "masked" / "per_case.csv").set_index("case_id")["l2r_sdlogj"]
    whole = pd.read_csv(tmp_path / "whole" / "per_case.csv").set_index("case_id")["l2r_sdlogj"]
    for case in cases:
        assert masked[case] == pytest.approx(_kit_masked_std(field, masks[case[:4]]), rel=1e-6)  # the files hold float32
        assert whole[case] == pytest.approx(float(np.log(np.clip(kit_jacobian(field) + 3, 1e-9, 1e9)).std()), rel=1e-6)
        assert abs(masked[case] - whole[case]) > 0.05 * whole[case]  # the mask matters on this field
    options = json.loads((tmp_path / "masked" / "manifest.json").read_text())["fingerprint"]["dataset_options"]
    assert options["masked_evaluation"] is True and options["masked_from"] == "T_VAL_evaluation_config.json's masked_evaluation"
    assert (
        "SDlogJ taken inside the fixed image mask (T_VAL_evaluation_config.json's masked_evaluation)."
        in (tmp_path / "masked" / "report" / "learn2reg.md").read_text()
    )
    assert "SDlogJ taken over the whole field (the masked option)." in (tmp_path / "whole" / "report" / "learn2reg_rank.md").read_text()
    with pytest.raises(DataError, match="learn2reg option masked='yes': use true or false"):
        create_dataset("learn2reg", root=str(task), masked="yes")


def kit_jacobian(field):
    from regbench.learn2reg import kit_jacobian_determinant

    return kit_jacobian_determinant(field)


def test_the_kits_hd95_is_in_voxels_its_dice_a_nan_mean_and_its_tre_a_spline():
    from regbench.learn2reg import kit_overlap, kit_tre_mm
    from regbench.metrics import hd95, target_registration_error

    fixed = np.zeros((20, 20, 20), np.uint8)
    fixed[5:12, 5:12, 5:12] = 1
    fixed[14:17, 14:17, 14:17] = 2  # in the fixed map only: the kit leaves it out, the strict Dice counts a miss
    moving = np.zeros_like(fixed)
    moving[5:12, 8:15, 5:12] = 1  # 3 voxels along axis 1
    row = kit_overlap(fixed, moving, np.zeros((3, 20, 20, 20)), {"a": 1, "b": 2})
    assert np.isnan(row["l2r_dice_b"]) and row["l2r_dice"] == row["l2r_dice_a"] == pytest.approx(2 * 7 * 7 * 4 / (2 * 343))
    assert row["l2r_hd95"] == pytest.approx(3.0)  # voxels, whatever the spacing
    assert hd95(fixed == 1, moving == 1, (2.0, 2.0, 2.0), "max") == pytest.approx(2.0 * row["l2r_hd95"])  # mm = voxels x spacing

    flow = np.zeros((3, 20, 20, 20))
    flow[1] = np.linspace(0, 4, 20)[None, :, None]  # linear along axis 1: spline and linear interpolation nearly agree
    points = np.array([[6.0, 7.5, 8.0], [10.0, 3.25, 12.0]])
    moved_to = points + [0, 1, 0]
    spline, linear = kit_tre_mm(flow, points, moved_to, (1.0, 2.0, 1.0)), target_registration_error(flow, points, moved_to, (1.0, 2.0, 1.0))
    assert spline != linear and spline == pytest.approx(linear, rel=0.01)  # the kit's spline prefilter sees a zero border


@pytest.mark.slow
def test_a_learn2reg_run_scores_the_kits_columns_beside_the_strict_ones_and_ranks_three_field_folders(task, tmp_path):
    from regbench.cli import main

    cases = ["0005_0000_0005_0001", "0006_0000_0006_0001"]
    half = shift_field()
    half[..., 1] = SHIFT / 2
    folders = {
        "zero": write_fields(tmp_path / "zero", {c: np.zeros((*SHAPE, 3)) for c in cases}),
        "half": write_fields(tmp_path / "half", {c: half for c in cases}),
        "shift": write_fields(tmp_path / "shift", {c: shift_field() for c in cases}),
    }
    kit = {"pattern": "disp_{case_id}.nii.gz", "layout": "channel_last"}
    config = {
        "dataset": "learn2reg",
        "dataset_options": {"root": str(task)},
        "methods": ["initial", *(f"fields.{t}" for t in folders)],
        "method_options": {f"fields.{t}": {"folder": str(f), **kit} for t, f in folders.items()},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index(["method", "case_id"]).sort_index()
    assert {"dice", "hd95", "sdlogj", "l2r_dice", "l2r_dice_outer", "l2r_hd95", "l2r_sdlogj", "l2r_folds", "l2r_tre_mm", "l2r_ndv"} <= set(table.columns)
    shift = table.loc["fields.shift"]
    assert (shift["l2r_dice"] == 1.0).all() and np.allclose(shift["l2r_tre_mm"], 0.0) and (shift["l2r_folds"] == 0).all()
    assert np.allclose(table.loc["initial", "l2r_tre_mm"], SHIFT * SPACING[1]) and np.allclose(table.loc["initial", "l2r_hd95"], SHIFT)
    report = tmp_path / "run" / "report"
    assert "l2r" not in (report / "table1.csv").read_text()  # the kit's numbers never enter Table 1
    ranks = pd.read_csv(report / "learn2reg_rank.csv").set_index("method")
    assert ranks.loc["fields.shift", "place"] == 1 and ranks.loc["fields.shift", "DSC_rank"] == 1.0
    assert ranks.loc["fields.half", "DSC_mean"] > ranks.loc["initial", "DSC_mean"]
    # The Initial row takes the SDlogJ penalty (1.5 on a task the kit's notebooks do not name), a submitted zero field its own 0
    assert ranks.loc["initial", "SDlogJ_mean"] == 1.5 and ranks.loc["fields.zero", "SDlogJ_mean"] == 0.0
    assert "Learn2Reg kit ranking" in (report / "learn2reg_rank.md").read_text() and r"\begin{tabular}" in (report / "learn2reg_rank.tex").read_text()
    assert "Learn2Reg kit convention" in (report / "learn2reg.md").read_text()


def test_the_kits_rank_rules_per_point_tre_tre30_initials_sdlogj_penalty_and_round_on_hand_made_values():
    """Two pairs of 12 points: over the 24 points a beats b (rank-sum p < 0.05), over the 2 pair means no test can
    (p = 0.12) — the kit ranks TRE per point. TRE30 takes round(0.3 · 12) = 4 points per pair (int would give 3),
    those where Initial's TRE is largest; DSC30 round(0.3 · 12) = 4 of 2 pairs × 6 labels. On LungCT the Initial
    row's SDlogJ is the penalty 5, so its 0 cannot win."""
    from regbench.kit_tables import kit_rank, ranked_metrics

    rng = np.random.default_rng(0)
    cases, labels = ["p1", "p2"], [f"l{i}" for i in range(6)]
    initial_tre = {c: np.arange(12.0) + 5 + i for i, c in enumerate(cases)}  # the last 4 points of each pair hardest
    tre = {"initial": initial_tre, "a": {c: 1.0 + 0.05 * rng.random(12) for c in cases}, "b": {c: 1.3 + 0.05 * rng.random(12) for c in cases}}
    points = pd.DataFrame(
        [{"dataset": "d", "method": m, "case_id": c, "point": i, "l2r_tre_mm_point": v[c][i]} for m, v in tre.items() for c in cases for i in range(12)]
    )
    rows = []
    for m in tre:
        for c in cases:
            dice = {f"l2r_dice_{label}": (0.5 if m == "initial" else 0.8) + 0.01 * k for k, label in enumerate(labels)}
            hd95 = {f"l2r_hd95_{label}": 2.0 for label in labels}
            sdlogj = 0.0 if m == "initial" else 0.1
            rows.append(
                {
                    "dataset": "d",
                    "method": m,
                    "case_id": c,
                    "status": "ok",
                    "l2r_dice": 0.8,
                    **dice,
                    "l2r_hd95": 2.0,
                    **hd95,
                    "l2r_sdlogj": sdlogj,
                    "l2r_tre_mm": tre[m][c].mean(),
                }
            )
    per_case = pd.DataFrame(rows)
    metrics = {m.name: m for m in ranked_metrics(per_case, points, "LungCT")[0]}
    assert list(metrics) == ["DSC", "DSC30", "HD95", "SDlogJ", "TRE", "TRE30"]
    assert len(metrics["DSC30"].values["a"]) == 4 and len(metrics["TRE"].values["a"]) == 24
    assert np.array_equal(metrics["TRE30"].values["initial"], np.concatenate([initial_tre["p1"][8:], initial_tre["p2"][8:]]))
    assert np.array_equal(metrics["SDlogJ"].values["initial"], [5.0, 5.0])  # LungCT's penalty, not its 0
    ranks = kit_rank(per_case, points=points, tasks={"d": "LungCT"})[0].set_index("method")
    assert ranks["TRE_rank"].to_dict() == pytest.approx({"a": 1.0, "b": 0.55, "initial": 0.1})  # per point: a beats b
    assert ranks["SDlogJ_rank"].to_dict() == pytest.approx({"a": 0.55, "b": 0.55, "initial": 0.55})  # 2 pairs: no test, a 3-way tie
    per_case_only, notes = kit_rank(per_case)
    assert per_case_only.set_index("method")["TRE_rank"].to_dict() == pytest.approx({"a": 0.55, "b": 0.55, "initial": 0.55})  # means: no test
    assert "TRE is ranked over pair means" in " ".join(notes)


def test_rank_scores_follow_the_kits_rule_on_hand_made_values():
    from regbench.kit_tables import rank_scores

    rng = np.random.default_rng(0)
    values = {"a": rng.normal(0.9, 0.01, 40), "b": rng.normal(0.5, 0.01, 40), "c": rng.normal(0.5, 0.01, 40), "d": rng.normal(0.1, 0.01, 40)}
    # a beats all; b and c tie (neither beats the other) and beat d: beaten by 0, 1, 1, 3 → 1.0, (0.4 + 0.7)/2 twice, 0.1
    assert rank_scores(values, higher_is_better=True) == pytest.approx({"a": 1.0, "b": 0.55, "c": 0.55, "d": 0.1})
    assert rank_scores(values, higher_is_better=False) == pytest.approx({"a": 0.1, "b": 0.55, "c": 0.55, "d": 1.0})


@pytest.mark.slow
def test_an_export_of_a_task_run_writes_the_long_names_the_kit_reads_and_scores_back_the_same(task, tmp_path):
    from regbench.cli import main

    run = ["run", "--dataset", "learn2reg", "--root", str(task), "--profile", "smoke", "--no-progress"]
    assert main([*run, "--methods", "demons", "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--format", "learn2reg", "--out", str(tmp_path / "l2r")]) == 0
    names = sorted(p.name for p in (tmp_path / "l2r" / "demons").glob("disp_*.npz"))
    assert names == ["disp_0005_0000_0005_0001.npz", "disp_0006_0000_0006_0001.npz"]  # Learn2Reg's long names
    with np.load(tmp_path / "l2r" / "demons" / names[0]) as archive:
        assert list(archive) == ["arr_0"] and archive["arr_0"].shape == (*SHAPE, 3)  # the array the kit reads, channel last
    declared = json.loads((tmp_path / "l2r" / "demons" / "convention.json").read_text())
    back = {"folder": str(tmp_path / "l2r" / "demons"), "pattern": declared["pattern"], "key": declared["key"], **declared["convention"]}
    (tmp_path / "back.yaml").write_text(yaml.safe_dump({"method_options": {"fields.demons": back}}))
    assert main([*run, "--methods", "fields.demons", "--config", str(tmp_path / "back.yaml"), "--out", str(tmp_path / "back")]) == 0
    before = pd.read_csv(tmp_path / "run" / "per_case.csv").set_index("case_id")
    after = pd.read_csv(tmp_path / "back" / "per_case.csv").set_index("case_id")
    for metric in ("dice", "hd95", "njd", "l2r_dice", "l2r_hd95", "l2r_sdlogj", "l2r_tre_mm"):
        np.testing.assert_allclose(after[metric], before[metric], atol=1e-5, err_msg=metric)


def test_the_kits_hd95_weights_surface_elements_by_their_marching_cubes_area():
    import itertools

    from regbench.learn2reg import BLOCK_OFFSETS, kit_hd95, surfel_areas

    skimage = pytest.importorskip("skimage.measure")
    for code, area in enumerate(surfel_areas(3)):  # the stored table is Lorensen's marching cubes, complement-symmetric
        inside = code if bin(code).count("1") <= 4 else 255 - code
        cube = np.zeros((2, 2, 2))
        for bit, offset in enumerate(BLOCK_OFFSETS[3]):
            cube[offset] = inside >> bit & 1
        expected = skimage.mesh_surface_area(*skimage.marching_cubes(cube, 0.5, method="lorensen")[:2]) if inside else 0.0
        assert area == pytest.approx(expected, abs=1e-6), code
    assert list(BLOCK_OFFSETS[3]) == list(itertools.product((0, 1), repeat=3))
    # 2-D: the marching-squares contour of an n × n square runs through the edge midpoints: 4(n − 1) straight, 4 cut corners
    from regbench.learn2reg import _block_codes

    a = np.zeros((40, 40), bool)
    a[10:30, 10:30] = True
    assert surfel_areas(2)[_block_codes(np.pad(a, 1))].sum() == pytest.approx(4 * 19 + 4 * np.sqrt(2) / 2)
    assert kit_hd95(a, a) == 0.0 and kit_hd95(a, np.zeros_like(a)) == float("inf")
    b = np.roll(a, 2, axis=0)
    assert kit_hd95(a, b) == pytest.approx(2.0)


def test_an_unlabelled_task_is_scored_by_tre_and_folding_alone(task, tmp_path):
    import shutil

    from regbench.cli import main

    data = json.loads((task / "T_dataset.json").read_text())
    data["labels"] = {}
    for entry in data["training"]:
        entry.pop("label")
    (task / "T_dataset.json").write_text(json.dumps(data))
    shutil.rmtree(task / "labelsTr")
    dataset = create_dataset("learn2reg", root=str(task))
    pair = dataset.pairs("test")[0]
    assert pair.fixed_label is None and pair.fixed_points is not None and dataset.declared_labels() == {}
    assert main(["run", "--dataset", "learn2reg", "--root", str(task), "--methods", "initial", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "run" / "per_case.csv")
    assert table["dice"].isna().all() and np.allclose(table["tre_mm"], SHIFT * SPACING[1]) and np.allclose(table["l2r_tre_mm"], SHIFT * SPACING[1])
    ranks = pd.read_csv(tmp_path / "run" / "report" / "learn2reg_rank.csv")
    assert [c for c in ranks if c.endswith("_rank")] == ["SDlogJ_rank", "TRE_rank", "TRE30_rank"]  # no label: no DSC or HD95 to rank
