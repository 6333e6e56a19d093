"""ACDC and M&M from their official layouts (fixtures written here): label conventions, preparation, split,
cache, `data check`, runs, and one clear error per kind of bad input with no partial cache left behind."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cine_fixtures import MNM_CSV, make_acdc, make_mnm, save_nifti
from regbench import create_dataset
from regbench.errors import ConfigError, DataError


@pytest.fixture
def acdc_root(tmp_path):
    return make_acdc(tmp_path / "ACDC")


@pytest.fixture
def mnm_root(tmp_path):
    return make_mnm(tmp_path / "MnM")


def dataset(name, root, tmp_path, **options):
    return create_dataset(name, root=str(root), cache_dir=str(tmp_path / "cache"), **options)


@pytest.mark.parametrize("name, make", [("acdc", make_acdc), ("mnm", make_mnm)])
def test_both_label_conventions_map_lv_to_the_common_3(name, make, tmp_path):
    data = dataset(name, make(tmp_path / name), tmp_path)
    pairs = [p for split in ("train", "val", "test") for p in data.pairs(split)]
    assert len(pairs) == 5 * 3  # 5 subjects × 3 slices (the apex has no RV: dropped by all-structures)
    for p in pairs:
        assert p.fixed.shape == (128, 128) and p.fixed.dtype == np.float32
        assert 0.0 <= p.fixed.min() and p.fixed.max() <= 1.0
        assert set(np.unique(p.fixed_label)) == {0, 1, 2, 3}
        lv = p.fixed_label == 3
        assert 350 < lv.sum() < 420  # the disk of radius 11 px: the LV, not the RV crescent or the ring
        assert np.array_equal(lv, p.moving_label == 3)  # the LV does not move in the fixtures
        assert p.fixed[lv].mean() > 0.8  # the bright blood pool sits under label 3
        assert p.spacing == (1.5, pytest.approx(1.4))
        assert p.meta["padded"] is True  # 96×80 images in a 128 crop
    assert set(data.options()) >= {"root", "slice_rule", "crop", "spacing_mm", "clip_percentiles", "preparation_version"}


def test_mnm_keeps_vendor_and_centre_and_skips_unlabelled(mnm_root, tmp_path):
    data = dataset("mnm", mnm_root, tmp_path)
    assert "X9Y9Z9" not in data.subjects() and len(data.subjects()) == 5
    pair = data.pairs("train")[0]
    assert pair.meta["vendor"] == "A" and pair.meta["vendor_name"] == "Siemens" and pair.meta["centre"] in ("1", "2")
    assert pair.groups == {"vendor": "A", "centre": pair.meta["centre"], "pathology": "NOR"}  # what a report can group by


def test_acdc_pairs_carry_their_patients_group_from_info_cfg_cached_or_not(tmp_path):
    root = make_acdc(tmp_path / "ACDC", n=4, groups=("DCM", "HCM"))
    for _ in range(2):  # prepared, then read back from the cache
        pairs = {p.subject: p.groups for split in ("train", "val", "test") for p in dataset("acdc", root, tmp_path).pairs(split)}
        assert pairs == {"patient001": {"group": "DCM"}, "patient002": {"group": "HCM"}, "patient003": {"group": "DCM"}, "patient004": {"group": "HCM"}}


@pytest.mark.slow
@pytest.mark.parametrize("name, make", [("acdc", make_acdc), ("mnm", make_mnm)])
def test_smoke_run_on_the_fixture_scores_dice_lv_one(name, make, tmp_path):
    root = make(tmp_path / name)
    out = tmp_path / "run"
    env = {**os.environ, "REGBENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "regbench.cli",
            "run",
            "--dataset",
            name,
            "--root",
            str(root),
            "--methods",
            "initial",
            "--profile",
            "smoke",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(out / "per_case.csv")
    assert len(df) == 3 and (df["dataset"] == name).all()
    assert np.allclose(df["dice_lv"], 1.0) and (df["dice_rv"] < 0.95).all()
    assert (out / "report" / "table1.tex").exists()
    split = json.loads((out / "split.json").read_text())
    assert sum(len(v) for v in split.values()) == 5 and len(split["test"]) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["dataset_options"]["slice_rule"] == "all-structures"


def test_split_is_by_subject_deterministic_and_can_come_from_a_file(acdc_root, tmp_path):
    a, b = dataset("acdc", acdc_root, tmp_path), dataset("acdc", acdc_root, tmp_path)
    assert a.split() == b.split()
    assert dataset("acdc", acdc_root, tmp_path, seed=1).split() != a.split() or len(a.subjects()) < 4
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": ["patient001", "patient002"], "val": ["patient003"], "test": ["patient004", "patient005"]}))
    custom = dataset("acdc", acdc_root, tmp_path, split_file=str(split_file))
    assert {p.subject for p in custom.pairs("test")} == {"patient004", "patient005"}
    split_file.write_text(json.dumps({"train": ["patient001"], "val": [], "test": ["patient999"]}))
    with pytest.raises(ConfigError, match=r"split.json: subject 'patient999' in 'test' is not in the dataset"):
        dataset("acdc", acdc_root, tmp_path, split_file=str(split_file)).pairs("test")


def test_second_load_uses_the_cache_and_new_options_prepare_anew(acdc_root, tmp_path, monkeypatch):
    first = dataset("acdc", acdc_root, tmp_path)
    expected = first.pairs("test")
    assert first.cache_path().exists()
    from regbench.datasets.acdc import ACDC

    def no_reading(self, subject):
        raise AssertionError("read from disk although the cache holds the pairs")

    monkeypatch.setattr(ACDC, "load_case", no_reading)
    cached = dataset("acdc", acdc_root, tmp_path).pairs("test")
    assert [p.case_id for p in cached] == [p.case_id for p in expected]
    assert all(np.array_equal(a.fixed, b.fixed) and np.array_equal(a.moving_label, b.moving_label) for a, b in zip(cached, expected))
    other = dataset("acdc", acdc_root, tmp_path, crop=96)
    assert other.cache_path() != first.cache_path()
    with pytest.raises(AssertionError, match="read from disk"):
        other.pairs("test")


def test_a_file_changed_in_place_prepares_the_pairs_again_and_refresh_forces_it(acdc_root, tmp_path, caplog, monkeypatch, capsys):
    """The cache was keyed by the root's path and options only: a label fixed in place was silently ignored."""
    from regbench.cli import main
    from regbench.datasets.acdc import ACDC

    def everything(data):
        return {p.case_id: p for split in ("train", "val", "test") for p in data.pairs(split)}

    before = everything(dataset("acdc", acdc_root, tmp_path))
    assert any(c.startswith("patient001-") for c in before)
    _rewrite(acdc_root / "training/patient001/patient001_frame01_gt.nii.gz", lambda d: np.where(d == 2, 0, d).astype(np.uint8))
    with caplog.at_level("WARNING", logger="regbench"):
        again = dataset("acdc", acdc_root, tmp_path)
        after = everything(again)
    assert "acdc: files under" in caplog.text and "changed since its pairs were prepared: preparing them again" in caplog.text
    assert not any(c.startswith("patient001-") for c in after)  # no Myo in its ED label now: no slice kept
    assert all(np.array_equal(before[c].fixed_label, after[c].fixed_label) for c in after)
    assert [p.name for p in (tmp_path / "cache").glob("acdc-*.npz")] == [again.cache_path().name]  # the stale cache removed
    reads = []
    monkeypatch.setattr(ACDC, "load_case", lambda self, subject, original=ACDC.load_case: reads.append(subject) or original(self, subject))
    everything(dataset("acdc", acdc_root, tmp_path))
    assert reads == []  # current cache: not read from disk
    everything(dataset("acdc", acdc_root, tmp_path, refresh=True))
    assert len(reads) == 5 and "refresh" not in again.options()  # --refresh: from the files, and binds no run
    good = make_acdc(tmp_path / "good")
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    reads.clear()
    assert main(["data", "check", "--dataset", "acdc", "--root", str(good), "--refresh"]) == 0
    assert "cache: pairs prepared again from the files" in capsys.readouterr().out and len(reads) == 2 * 5  # check, then prepare


def test_missing_root_and_missing_root_option(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"nowhere: acdc root folder does not exist"):
        create_dataset("acdc", root=str(tmp_path / "nowhere"))
    monkeypatch.delenv("REGBENCH_MNM_ROOT", raising=False)
    with pytest.raises(ConfigError, match=r"--root PATH.*REGBENCH_MNM_ROOT"):
        create_dataset("mnm")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite(path: Path, change) -> None:
    import nibabel as nib

    img = nib.load(str(path))
    data = change(np.asarray(img.dataobj).copy())
    save_nifti(path, data)


ACDC_P1 = "training/patient001"
ACDC_CASES = {
    "no Info.cfg": (lambda r: (r / ACDC_P1 / "Info.cfg").unlink(), r"patient001/Info.cfg is missing"),
    "Info.cfg without ES": (lambda r: (r / ACDC_P1 / "Info.cfg").write_text("ED: 1\nNbFrame: 30\n"), r"Info.cfg: key 'ES' is missing"),
    "frame file missing": (lambda r: (r / ACDC_P1 / "patient001_frame10.nii.gz").unlink(), r"patient001_frame10.nii.gz: es image \(3-D\) file is missing"),
    "truncated NIfTI": (lambda r: _truncate(r / ACDC_P1 / "patient001_frame01.nii.gz"), r"patient001_frame01.nii.gz: cannot read"),
    "corrupt NIfTI": (
        lambda r: (r / ACDC_P1 / "patient001_frame01_gt.nii.gz").write_bytes(gzip.compress(b"not a nifti" * 50)),
        r"patient001_frame01_gt.nii.gz: cannot read",
    ),
    "4-D where 3-D is expected": (
        lambda r: _rewrite(r / ACDC_P1 / "patient001_frame01.nii.gz", lambda d: d[..., None]),
        r"patient001_frame01.nii.gz: ed image \(3-D\) must be 3-D",
    ),
    "label value 4": (
        lambda r: _rewrite(r / ACDC_P1 / "patient001_frame01_gt.nii.gz", lambda d: np.where(d == 1, 4, d).astype(np.uint8)),
        r"frame01_gt.nii.gz: label values \[4.0\] outside",
    ),
    "label shape differs": (
        lambda r: _rewrite(r / ACDC_P1 / "patient001_frame10_gt.nii.gz", lambda d: d[:90]),
        r"frame10_gt.nii.gz: label shape \(90, 80, 4\) differs from image shape",
    ),
    "ES beyond NbFrame": (lambda r: (r / ACDC_P1 / "Info.cfg").write_text("ED: 1\nES: 40\nNbFrame: 30\n"), r"Info.cfg: ES = 40 is outside the frames 1..30"),
    "NaN intensities": (
        lambda r: _rewrite(r / ACDC_P1 / "patient001_frame10.nii.gz", lambda d: np.where(d > 800, np.nan, d).astype(np.float32)),
        r"patient001_frame10.nii.gz: \d+ non-finite intensities",
    ),
}


MNM_CODE = "A0B0C0"
MNM_CASES = {
    "code missing from the CSV": (
        lambda r: (r / MNM_CSV).write_text((r / MNM_CSV).read_text().replace(MNM_CODE, "ZZZZZZ")),
        r"case code 'A0B0C0' .* is not in the metadata CSV",
    ),
    "ES outside the time range": (
        lambda r: (r / MNM_CSV).write_text((r / MNM_CSV).read_text().replace(f"{MNM_CODE},Siemens,A,1,0,9", f"{MNM_CODE},Siemens,A,1,0,12")),
        r"ES = 12 of 'A0B0C0' is outside the time range 0..11",
    ),
    "3-D where 4-D is expected": (
        lambda r: _rewrite(r / "Training/Labeled" / MNM_CODE / f"{MNM_CODE}_sa.nii.gz", lambda d: d[..., 0]),
        r"A0B0C0_sa.nii.gz: 4-D cine image must be 4-D, got shape \(96, 80, 4\)",
    ),
    "metadata CSV missing": (lambda r: (r / MNM_CSV).unlink(), r"the M&M metadata CSV is missing"),
    "label values outside": (
        lambda r: _rewrite(r / "Training/Labeled" / MNM_CODE / f"{MNM_CODE}_sa_gt.nii.gz", lambda d: (d * 3).astype(np.uint8)),
        r"A0B0C0_sa_gt.nii.gz: label values \[6.0, 9.0\] outside",
    ),
}


BAD_INPUT = [("acdc", make_acdc, case, *ACDC_CASES[case]) for case in ACDC_CASES] + [("mnm", make_mnm, case, *MNM_CASES[case]) for case in MNM_CASES]


@pytest.mark.parametrize("name, make, case, breaks, message", BAD_INPUT, ids=[f"{n}: {c}" for n, _, c, _, _ in BAD_INPUT])
def test_bad_input_is_one_clear_error_and_leaves_no_cache(name, make, case, breaks, message, tmp_path):
    root = make(tmp_path / name)
    breaks(root)
    with pytest.raises(DataError, match=message):
        dataset(name, root, tmp_path).pairs("train")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


@pytest.mark.slow
def test_data_check_reports_every_problem_at_once(acdc_root, tmp_path):
    ACDC_CASES["no Info.cfg"][0](acdc_root)
    _rewrite(acdc_root / "training/patient002/patient002_frame01_gt.nii.gz", lambda d: np.where(d == 1, 4, d).astype(np.uint8))
    _truncate(acdc_root / "training/patient003/patient003_frame10.nii.gz")
    done = subprocess.run(
        [sys.executable, "-m", "regbench.cli", "data", "check", "--dataset", "acdc", "--root", str(acdc_root)], capture_output=True, text=True
    )
    assert done.returncode == 1
    out = done.stdout
    assert "subjects: 5 found, 2 readable" in out and "problems: 3" in out
    assert "patient001/Info.cfg is missing" in out and "label values [4.0]" in out and "patient003_frame10.nii.gz: cannot read" in out
    assert "slices: 6 kept of 8" in out and "rows 1.50–1.50" in out


def test_data_check_of_a_good_download(mnm_root):
    done = subprocess.run([sys.executable, "-m", "regbench.cli", "data", "check", "--dataset", "mnm", "--root", str(mnm_root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "subjects: 5 found, 5 readable" in done.stdout and "problems: 0" in done.stdout and "[0, 1, 2, 3]" in done.stdout


def test_too_few_patients_for_the_splits_is_one_line_in_run_and_data_check(tmp_path, capsys, monkeypatch):
    """Two patients leave the test split empty: the run refuses in one line (exit 2) naming each split's size,
    before anything is written, and data check names the empty split and the minimum (it said "problems: 0")."""
    from regbench.cli import main

    root = make_acdc(tmp_path / "ACDC", n=2)
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["run", "--dataset", "acdc", "--root", str(root), "--methods", "initial", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "regbench: error: dataset 'acdc' has no pairs in its test split (test 0 pairs): a run needs a test pair, and a train "
        "and a val pair to train a method. Give it more subjects (a 75/5/20 split by subject needs at least 3), or a "
        "split_file that puts one in each"
    ]
    assert not (out / "cases.jsonl").exists()
    assert main(["data", "check", "--dataset", "acdc", "--root", str(root)]) == 1
    printed = capsys.readouterr().out
    assert "split (subjects): train 2, val 0, test 0" in printed and "problems: 1" in printed
    assert "the val and test splits are empty: a run needs a subject in each (75/5/20 by subject: at least 3 subjects; 2 found)" in printed


def test_acdc_rules_nobody_wrote_down_are_read_or_reported_by_data_check(tmp_path, capsys):
    """'ED = 1' in Info.cfg was "key 'ED' is missing"; a Patient006/ folder was skipped without a word; labels in
    M&M's order (1 LV, 3 RV) in an ACDC layout passed data check with "problems: 0"."""
    from cine_fixtures import MNM_LABELS
    from regbench.cli import main
    from regbench.datasets.cine import lv_enclosure

    root = make_acdc(tmp_path / "ACDC")
    info = root / "training/patient001/Info.cfg"
    info.write_text(info.read_text().replace("ED: 1", "ED = 1").replace("ES: 10", "ES = 10"))
    (root / "training/Patient006").mkdir()
    assert main(["data", "check", "--dataset", "acdc", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "subjects: 5 found, 5 readable" in out and "problems: 1" in out  # ED = 1 is read
    assert f"{root / 'training/Patient006'}: not a patientNNN folder (lower case, three digits): skipped" in out
    swapped = make_acdc(tmp_path / "swapped", labels=MNM_LABELS)
    assert main(["data", "check", "--dataset", "acdc", "--root", str(swapped)]) == 1
    out = capsys.readouterr().out
    assert (
        "problems: 5" in out
        and "patient001: only 29% of the LV's border (label 3 after mapping) is Myo" in out
        and "so are the labels in another order (ACDC: 1 RV, 2 Myo, 3 LV; M&M: 1 LV, 2 Myo, 3 RV)?" in out
    )
    good = create_dataset("acdc", root=str(make_acdc(tmp_path / "good")), cache=False).load_case("patient001")
    assert lv_enclosure(good.ed_label) == 1.0


# ------------------------------------------------------------------------------------------------ volumes
@pytest.mark.parametrize("name, make", [("acdc", make_acdc), ("mnm", make_mnm)])
def test_volumes_are_the_slices_stacked_and_centred_in_depth_by_the_recorded_rule(name, make, tmp_path):
    """acdc3d/mnm3d: one ES→ED volume pair per subject, every slice (the RV-less apex too), each slice what
    the 2-D preparation makes of it, centred in ``depth`` slices with the padding or cropping in ``meta``."""
    from regbench.registry import DATASETS

    root = make(tmp_path / name)
    slices = dataset(name, root, tmp_path, slice_rule="all")  # every slice as a 2-D pair, for comparison
    volumes = dataset(f"{name}3d", root, tmp_path, depth=7)
    assert DATASETS.meta(f"{name}3d").dims == (3,) and volumes.options()["depth"] == 7
    assert volumes.options()["through_plane"] == "all slices, centred in depth" and "depth" not in slices.options()
    for split in ("train", "val", "test"):
        by_subject = {}
        for p in slices.pairs(split):
            by_subject.setdefault(p.subject, []).append(p)
        pairs = volumes.pairs(split)
        assert [p.case_id for p in pairs] == sorted(by_subject)  # one pair per subject, named by it
        for p in pairs:
            assert p.fixed.shape == (7, 128, 128) and p.fixed_label.dtype == np.uint8
            assert p.spacing == (8.0, 1.5, pytest.approx(1.4))  # slice spacing from the NIfTI header first
            assert p.meta["slices"] == 4 and p.meta["pad"] == [1, 2]  # 3 zero slices: 1 before, 2 after
            assert not p.fixed[0].any() and not p.fixed_label[5:].any()
            for z, flat in enumerate(by_subject[p.subject]):
                assert np.array_equal(p.fixed[1 + z], flat.fixed) and np.array_equal(p.moving_label[1 + z], flat.moving_label)
    cropped = dataset(f"{name}3d", root, tmp_path, depth=3).pairs("train")[0]
    assert cropped.fixed.shape[0] == 3 and cropped.meta["dropped"] == [0, 1]  # the central 3 of 4 slices


@pytest.mark.slow
def test_volumes_are_cached_apart_from_slices_and_run_end_to_end(acdc_root, tmp_path, monkeypatch):
    from regbench.cli import main

    cache = tmp_path / "cache"
    volumes = dataset("acdc3d", acdc_root, tmp_path, depth=6)
    first = volumes.pairs("test")
    assert volumes.cache_path().exists() and volumes.cache_path() != dataset("acdc", acdc_root, tmp_path).cache_path()
    again = dataset("acdc3d", acdc_root, tmp_path, depth=6).pairs("test")  # read from the cache
    assert again[0].spacing == first[0].spacing and np.array_equal(again[0].moving, first[0].moving)
    run = tmp_path / "run"
    args = ["run", "--dataset", "acdc3d", "--root", str(acdc_root), "--methods", "initial,demons", "--profile", "smoke", "--out", str(run)]
    monkeypatch.setenv("REGBENCH_CACHE", str(cache))
    assert main([*args, "--no-progress"]) == 0
    table = pd.read_csv(run / "per_case.csv")
    assert set(table["case_id"]) == {p.case_id for p in first} and (table["status"] == "ok").all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["dataset_info"]["dims"] == 3 and '"through_plane": "all slices, centred in depth"' in (run / "manifest.json").read_text()
    assert manifest["dataset_info"]["geometry"]["through_plane_axis"] == 0  # the stack's slices are thick
    assert "(axis 0 through-plane)" in (run / "report" / "table1.tex").read_text()


@pytest.mark.slow
def test_a_run_records_acdc_groups_and_report_by_group_tests_within_each(tmp_path, monkeypatch):
    """8 test patients, 4 DCM and 4 HCM by their Info.cfg: per_case.csv and the manifest carry the group; the whole
    table is tested over the 8 subjects (not the 24 slices), each group's over its 4 (too few: said, not tested)."""
    from regbench.cli import main

    root = make_acdc(tmp_path / "ACDC", n=10, groups=("DCM", "HCM"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["patient009"], "val": ["patient010"], "test": [f"patient{i:03d}" for i in range(1, 9)]}))
    run = tmp_path / "run"
    monkeypatch.setenv("REGBENCH_CACHE", str(tmp_path / "cache"))
    args = ["run", "--dataset", "acdc", "--root", str(root), "--dataset-option", f"split_file={split}", "--methods", "initial,demons"]
    assert main([*args, "--profile", "smoke", "--max-pairs", "24", "--out", str(run), "--no-progress"]) == 0
    table = pd.read_csv(run / "per_case.csv")
    assert len(table) == 2 * 24 and (table.groupby("subject")["by_group"].nunique() == 1).all()
    assert table.drop_duplicates("subject")["by_group"].value_counts().to_dict() == {"DCM": 4, "HCM": 4}
    info = json.loads((run / "manifest.json").read_text())["dataset_info"]
    assert info["groups"] == {"group": ["DCM", "HCM"]} and info["geometry"]["through_plane_axis"] is None
    assert info["geometry"]["spacings"] == 1 and info["geometry"]["spacing_mm"] == [1.5, pytest.approx(1.4)]
    assert main(["report", str(run), "--no-figures", "--against", "initial", "--by", "group"]) == 0
    whole = pd.read_csv(run / "report" / "stats.csv")
    assert (whole["n_units"] == 8).all() and (whole["n_cases"] == 24).all() and (whole["verdict"] != "too few units to test").all()
    by_group = pd.read_csv(run / "report" / "stats_by_group.csv")
    assert set(by_group["group"]) == {"DCM", "HCM"} and (by_group["n_units"] == 4).all() and by_group["p_holm"].isna().sum() >= 6
    assert (by_group.loc[by_group["metric"] != "njd", "verdict"] == "too few units to test").all()  # NJD: 0 for both, said identical
    assert "Not tested against Initial: too few units (4 subjects of ACDC: DCM, 4 subjects of ACDC: HCM" in (run / "report" / "table1_by_group.tex").read_text()
