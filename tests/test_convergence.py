"""Trustworthy deep numbers: the convergence verdict, several training seeds, and bit-identical repeats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from regbench.convergence import CONVERGENCE_RULE, judge, run_verdicts


def history(val_dice: np.ndarray, val_every: int = 2) -> pd.DataFrame:
    epochs = np.arange(1, len(val_dice) + 1)
    return pd.DataFrame({"epoch": epochs, "loss_sim": 1.0 / epochs, "seconds": 2.0, "val_dice": np.where(epochs % val_every == 0, val_dice, np.nan)})


def test_verdict_on_a_plateau_a_rising_curve_and_a_short_run():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 101)
    plateau = 0.96 - 0.2 * np.exp(-epochs / 8) + rng.normal(0, 0.004, 100)  # flat after ~40 epochs, noisy
    rising = 0.80 + 0.0015 * epochs + rng.normal(0, 0.004, 100)  # +3.75 points per quarter
    converged = judge(history(plateau))
    assert converged.converged and converged.epochs == 100 and abs(converged.gain) < CONVERGENCE_RULE.tolerance
    assert converged.train_seconds == 200.0 and "within the threshold 0.50" in converged.reason
    still_rising = judge(history(rising))
    assert not still_rising.converged and 0.03 < still_rising.gain < 0.045 and "above the threshold" in still_rising.reason
    # Scatter around a level (noisy updates) is not a rise: ~1 point more by chance, 2 points of noise.
    scatter = 0.80 + rng.normal(0, 0.02, 100)
    scatter[75::2] += 0.012  # the validation epochs (even) of the last quarter
    noisy = judge(history(scatter))
    assert noisy.converged and noisy.gain > CONVERGENCE_RULE.tolerance
    # A slow but steady rise is caught: +0.75 points a quarter with little noise.
    slow = judge(history(0.90 + 0.0003 * epochs + rng.normal(0, 0.001, 100)))
    assert not slow.converged
    short = judge(history(plateau[:2], val_every=1))
    assert not short.converged and short.gain is None and "too few to judge" in short.reason
    quick = judge(history(np.linspace(0.85, 0.95, 10), val_every=1))  # the quick profile: 2-3 points a quarter
    assert not quick.converged and "needs 5 in each of the last two quarters" in quick.reason
    falling = judge(history(plateau[::-1].copy()))
    assert falling.converged  # no longer improving


def test_run_verdicts_read_every_seed(tmp_path):
    rng = np.random.default_rng(1)
    flat = 0.95 + rng.normal(0, 0.002, 40)
    for seed, curve in ((0, flat), (1, 0.7 + 0.005 * np.arange(40))):
        folder = tmp_path / "models" / "gsmorph" / f"seed-{seed}"
        folder.mkdir(parents=True)
        history(curve).to_csv(folder / "history.csv", index=False)
    (tmp_path / "models" / "voxelmorph-m").mkdir(parents=True)
    history(flat).to_csv(tmp_path / "models" / "voxelmorph-m" / "history.csv", index=False)
    verdicts = run_verdicts(tmp_path)
    assert verdicts["voxelmorph-m"].converged
    assert not verdicts["gsmorph"].converged and verdicts["gsmorph"].reason.startswith("1/2 seeds converged; seed 1:")
    assert verdicts["gsmorph"].train_seconds == 160.0


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbench.cli", *args], capture_output=True, text=True, **kwargs)


SEEDED = ["run", "--profile", "smoke", "--seeds", "0,1", "--methods", "initial,gsmorph", "--no-progress", "--figures"]


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeded") / "run"
    done = _cli(*SEEDED, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done


@pytest.mark.slow
def test_seeds_give_one_row_per_pair_and_seed_and_a_table_that_says_so(seeded_run):
    out, done = seeded_run
    df = pd.read_csv(out / "per_case.csv")
    gs, initial = df[df.method == "gsmorph"], df[df.method == "initial"]
    assert len(initial) == 12 and initial["seed"].isna().all()  # classical: once
    assert len(gs) == 24 and sorted(gs["seed"].unique()) == [0, 1]
    assert (gs.groupby("case_id").size() == 2).all()
    assert not gs[gs.seed == 0]["dice"].equals(gs[gs.seed == 1]["dice"].reset_index(drop=True))  # seeds differ
    for seed in (0, 1):
        assert (out / "models" / "gsmorph" / f"seed-{seed}" / "final.pt").is_file()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["gsmorph", "n_seeds"] == 2 and summary.loc["gsmorph", "dice_seed_std"] > 0
    averaged = gs.groupby("case_id")["dice"].mean()
    assert summary.loc["gsmorph", "dice_mean"] == pytest.approx(averaged.mean())  # over pairs of seed means
    assert summary.loc["gsmorph", "dice_std"] == pytest.approx(averaged.std(ddof=1))
    tex = (out / "report" / "table1.tex").read_text()
    assert "2 training seeds each" in tex and r"{\scriptsize[$\pm$" in tex
    md = (out / "report" / "table1.md").read_text()
    seed_std = 100 * gs.groupby("seed")["dice"].mean().std(ddof=1)
    assert f"[±{seed_std:.2f}]" in md.split("| GSMorph")[1].splitlines()[0]
    assert (out / "report" / "figures" / "seeds.png").stat().st_size > 1000
    stats = pd.read_csv(out / "report" / "stats.csv")
    assert (stats["n_cases"] == 12).all() and (stats["n_units"] == 2).all()  # seed-averaged pairs (not 24) of 2 subjects
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method_info"]["gsmorph"]["seeds"] == [0, 1]


@pytest.mark.slow
def test_smoke_tables_mark_unconverged_training(seeded_run):
    out, done = seeded_run
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert not summary.loc["gsmorph", "converged"] and summary.loc["gsmorph", "epochs"] == 2
    assert pd.isna(summary.loc["initial", "converged"])
    assert "| GSMorph‡" in (out / "report" / "table1.md").read_text()
    tex = (out / "report" / "table1.tex").read_text()
    assert r"GSMorph$^{\ddagger}$" in tex and "training not converged" in tex and "not a ranking" in tex
    table2 = (out / "report" / "table2.tex").read_text()
    assert "Epochs & Training (min)" in table2 and r"& 2$^{\ddagger}$ &" in table2
    assert "regbench: warning: gsmorph did not converge" in done.stderr and "too few to judge" in done.stderr
    assert "or --profile reproduce" in done.stderr  # the longer profile is advised only where it was not run


@pytest.mark.slow
def test_the_convergence_warning_does_not_advise_the_profile_that_was_run(seeded_run, tmp_path):
    import shutil

    from regbench.report import write_report

    out, _ = seeded_run
    copy = shutil.copytree(out, tmp_path / "run", ignore=shutil.ignore_patterns("report"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["profile"] = "reproduce"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (warning,) = [p for p in write_report([copy]).problems if "gsmorph did not converge" in p]
    assert "epochs: N" in warning and "--profile reproduce" not in warning


@pytest.mark.slow
def test_a_killed_seeded_run_resumes_to_the_same_table_bit_for_bit(seeded_run, tmp_path):
    reference, _ = seeded_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "regbench.cli", *SEEDED, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    cases = out / "cases.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (cases.exists() and cases.read_text().count('"seed": 0') >= 3):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = cases.read_text().count("\n")
    assert 12 < stored < 36, "the kill should land while gsmorph's cases are evaluated"
    resumed = _cli(*SEEDED, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    a, b = pd.read_csv(reference / "per_case.csv"), pd.read_csv(out / "per_case.csv")
    # Same machine, threads and seed: the deep results are bit-identical (timings aside).
    pd.testing.assert_frame_equal(a.drop(columns="time_s"), b.drop(columns="time_s"), check_exact=True)
    for seed in (0, 1):
        w1 = torch.load(reference / "models" / "gsmorph" / f"seed-{seed}" / "final.pt", weights_only=True)["model"]
        w2 = torch.load(out / "models" / "gsmorph" / f"seed-{seed}" / "final.pt", weights_only=True)["model"]
        assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_manifest_records_what_decides_bit_identity(tmp_path):
    from regbench.config import RunConfig
    from regbench.runner import run

    run(RunConfig(methods=["initial"], profile="smoke", out=str(tmp_path / "r"), max_test_pairs=1), progress=False, report=False)
    facts = json.loads((tmp_path / "r" / "manifest.json").read_text())["environment"]["determinism"]
    assert facts["torch"] == torch.__version__ and facts["torch_threads"] == torch.get_num_threads()
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and "cpu_model" in facts
    assert facts["deterministic_algorithms"] is False
