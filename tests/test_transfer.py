"""`regbench transfer`: tune a λ family on one run's validation split by the stated rule, carry it to another run.

The run directories are written by the tests in the formats runs write (manifest method_info families,
models/METHOD/seed-S/history.csv, per_case.csv), with values chosen so that the right answer is known.
"""

import json

import numpy as np
import pandas as pd
import pytest

from regbench.cli import main
from regbench.errors import DataError
from regbench.transfer import TuningRule, transfer_frame, tune, write_transfer

GRID = {"voxelmorph.1e-3": 1e-3, "voxelmorph.1e-2": 1e-2, "voxelmorph.1e-1": 1e-1}


def make_run(root, validation, test, seeds=(0, 1, 2)):
    """validation: method -> (val Dice, val NJD) at the last epoch (one seed adds ±0.001 around it);
    test: method -> (Dice, NJD) mean over pairs (per seed ±0.002, per pair ±0.01 around it)."""
    root.mkdir(parents=True)
    info = {}
    for method in test:
        info[method] = {"display_name": method.upper()}
        if method in GRID:
            info[method]["family"] = {"label": "VoxelMorph λ grid", "value": GRID[method]}
    (root / "manifest.json").write_text(
        json.dumps({"format_version": 3, "fingerprint": {"dataset": "synthetic"}, "methods": {m: {} for m in test}, "method_info": info})
    )
    for method, (dice, njd) in validation.items():
        for k, seed in enumerate(seeds):
            folder = root / "models" / method / f"seed-{seed}"
            folder.mkdir(parents=True)
            offset = 0.001 * (k - 1)
            pd.DataFrame(
                {
                    "epoch": [1, 2, 3],
                    "loss_sim": [0.1, 0.05, 0.04],
                    "loss_reg": [0.1, 0.1, 0.1],
                    "conflict_share": [np.nan] * 3,
                    "val_dice": [0.5, dice - 0.2, dice + offset],
                    "val_njd": [0.0, 9.0, njd],
                    "seconds": [1.0] * 3,
                }
            ).to_csv(folder / "history.csv", index=False)
    rows = []
    for method, (dice, njd) in test.items():
        trained = method in validation
        for k, seed in enumerate(seeds if trained else [None]):
            for pair in range(4):
                d = dice + (0.002 * (k - 1) if trained else 0.0) + 0.01 * (pair - 1.5)
                rows.append(
                    {
                        "method": method,
                        "dataset": "synthetic",
                        "case_id": f"c{pair}",
                        "subject": f"s{pair}",
                        "seed": seed,
                        "dice": d,
                        "njd": njd,
                        "sdlogj": 0.1,
                        "status": "ok",
                    }
                )
    pd.DataFrame(rows).to_csv(root / "per_case.csv", index=False)
    return root


@pytest.fixture
def runs(tmp_path):
    # A: folding-free at λ ≥ 1e-2, so the budget picks 1e-2 (the best validation Dice within it), not 1e-3.
    a = make_run(
        tmp_path / "A",
        {"voxelmorph.1e-3": (0.90, 2.5), "voxelmorph.1e-2": (0.85, 0.4), "voxelmorph.1e-1": (0.80, 0.0), "gsmorph": (0.86, 0.2)},
        {"initial": (0.6, 0.0), "voxelmorph.1e-3": (0.91, 2.4), "voxelmorph.1e-2": (0.86, 0.5), "voxelmorph.1e-1": (0.81, 0.0), "gsmorph": (0.87, 0.3)},
    )
    # B: larger motion; 1e-3 folds less here and is within budget, so B's own tuning picks 1e-3.
    b = make_run(
        tmp_path / "B",
        {"voxelmorph.1e-3": (0.88, 0.8), "voxelmorph.1e-2": (0.80, 0.1), "voxelmorph.1e-1": (0.70, 0.0), "gsmorph": (0.84, 0.3)},
        {"initial": (0.5, 0.0), "voxelmorph.1e-3": (0.89, 0.9), "voxelmorph.1e-2": (0.80, 0.1), "voxelmorph.1e-1": (0.70, 0.0), "gsmorph": (0.85, 0.3)},
    )
    return a, b


def test_tuning_picks_the_best_validation_dice_within_the_folding_budget(runs):
    a, b = runs
    tuned = tune(a, TuningRule(njd_budget=1.0))
    assert (tuned.method, tuned.value, tuned.within_budget) == ("voxelmorph.1e-2", 1e-2, True)
    assert tune(b, TuningRule(njd_budget=1.0)).method == "voxelmorph.1e-3"
    # A looser budget admits 1e-3 on A; a budget nothing meets takes the λ that folds least, and says so.
    assert tune(a, TuningRule(njd_budget=3.0)).method == "voxelmorph.1e-3"
    strict = tune(a, TuningRule(njd_budget=-1.0))
    assert (strict.method, strict.within_budget) == ("voxelmorph.1e-1", False)
    # The candidates are the last validated epoch, averaged over the three seeds (±0.001 cancel).
    row = tuned.candidates.set_index("method").loc["voxelmorph.1e-3"]
    assert row["n_seeds"] == 3 and row["val_dice"] == pytest.approx(0.90) and row["val_njd"] == pytest.approx(2.5)


def test_transfer_scores_the_source_lambda_on_the_target_against_its_own_and_the_hyper_free(runs):
    a, b = runs
    frame = transfer_frame(a, b, TuningRule(1.0))
    assert list(frame["method"]) == ["voxelmorph.1e-2", "voxelmorph.1e-3", "gsmorph"]  # transferred, in-domain, others
    assert list(frame["transferred"]) == [True, False, False]
    rows = frame.set_index("method")
    assert rows.loc["voxelmorph.1e-2", "dice"] == pytest.approx(0.80) and rows.loc["voxelmorph.1e-2", "n_seeds"] == 3
    assert rows.loc["gsmorph", "delta_dice"] == pytest.approx(0.05)
    # Seed means 0.848, 0.850, 0.852 against 0.798, 0.800, 0.802: Welch's interval excludes 0.
    assert rows.loc["gsmorph", "delta_low"] > 0
    assert rows.loc["voxelmorph.1e-3", "delta_dice"] == pytest.approx(0.09)
    assert "initial" not in rows.index  # not trained: nothing to tune or compare
    assert rows.loc["voxelmorph.1e-2", "dice_low"] < 0.80 < rows.loc["voxelmorph.1e-2", "dice_high"]


def test_write_transfer_both_directions_and_the_cli(runs, tmp_path, capsys):
    a, b = runs
    assert main(["transfer", str(a), str(b), "--out", str(tmp_path / "t")]) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "t" / "transfer.md").read_text()
    assert "A → B" in table and "B → A" in table and table in printed
    assert "NJD ≤ 1 %" in table
    assert "| GSMORPH‡ |" in table  # three epochs are too few to judge convergence: marked, not ranked
    csv = pd.read_csv(tmp_path / "t" / "transfer.csv")
    back = csv[csv["source"] == "B"].set_index("method")
    assert back.index[0] == "voxelmorph.1e-3"  # tuned on B, scored on A
    assert back.loc["voxelmorph.1e-3", "dice"] == pytest.approx(0.91)
    assert r"\toprule" in (tmp_path / "t" / "transfer.tex").read_text()
    assert "**yes**" in (tmp_path / "t" / "tuning.md").read_text()
    written = write_transfer(a, b, TuningRule(1.0))
    assert written[0] == b / "report" / "transfer.md"
    # Two runs in folders of one name are told apart by their paths.
    (tmp_path / "x").mkdir()
    twin = a.rename(tmp_path / "x" / "B")
    assert f"| {twin} → {b} |" in write_transfer(twin, b, TuningRule(1.0), tmp_path / "t2")[0].read_text()


def test_transfer_errors_name_the_run_and_the_missing_lambda(runs, tmp_path, capsys):
    a, b = runs
    c = make_run(tmp_path / "C", {"voxelmorph.1e-3": (0.9, 0.1), "voxelmorph.1e-1": (0.8, 0.0)}, {"voxelmorph.1e-3": (0.9, 0.1), "voxelmorph.1e-1": (0.8, 0.0)})
    with pytest.raises(DataError, match=r"did not train λ = 0.01 .*1e-3.*0.1|did not train λ = 0.01"):
        transfer_frame(a, c)
    lone = make_run(tmp_path / "D", {"gsmorph": (0.9, 0.1)}, {"gsmorph": (0.9, 0.1)})
    assert main(["transfer", str(lone), str(b)]) == 2
    assert "no λ family" in capsys.readouterr().err
    assert main(["transfer", str(a), str(a)]) == 2
    assert main(["transfer", str(a), str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
