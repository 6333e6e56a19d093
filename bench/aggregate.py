"""From per-case rows to what the tables show: the per-case table in its stored order, seed-averaging, per-method
summaries, and the merge of several run directories' cases. Pure pandas on the columns the run directory
spells (regbench.rundir); nothing here renders or writes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .learn2reg import PREFIX as KIT_PREFIX
from .metrics import label_key
from .registry import method_sort_key
from .rundir import (
    FINGERPRINT_KEYS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    TRAILING_COLUMNS,
    Manifest,
    RunDir,
    fingerprint_differences,
    label_keys,
    metric_columns,
)


def summary_metrics(per_case: pd.DataFrame) -> list[str]:
    """The metric columns a per-case table has (its labels' included), in per_case.csv's order."""
    return [m for m in metric_columns(label_keys(per_case.columns)) if m in per_case]


def per_case_frame(rows: Sequence[dict[str, Any]], labels: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Rows in a stable order (paper's method order, case id in natural order: ``p2`` before ``p10``) and a fixed
    column order: the key, the
    metrics with a Dice and an HD95 column per label (``labels`` as the run's dataset declares them; else those
    the rows have; else :data:`regbench.metrics.UNDECLARED_LABELS`'), then the rest."""
    df = pd.DataFrame(list(rows))
    keys = [label_key(n) for n in labels] if labels is not None else (label_keys(df.columns) or label_keys(METRIC_COLUMNS))
    columns = KEY_COLUMNS + metric_columns(keys) + TRAILING_COLUMNS
    for col in columns:
        if col not in df:
            df[col] = np.nan
    extra = [c for c in df.columns if c not in columns]
    df = df[columns + extra]
    if len(df):
        df["_order"] = df["method"].map(method_sort_key)
        df = df.sort_values(["_order", "case_id", "seed"], key=_natural_case_order, kind="stable", na_position="first")
        df = df.drop(columns="_order").reset_index(drop=True)
    for column in ("params", "seed"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    return df


def split_point_values(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """A case row's list values are per-point measures (a value per landmark, e.g. ``l2r_tre_mm`` per point): the
    rows without them (for per_case.csv) and a long frame of them (per_point.csv: the key columns, ``point``, one
    column per measure), empty where no row has one."""
    plain, points = [], []
    for row in rows:
        lists = {k: v for k, v in row.items() if isinstance(v, (list, tuple))}
        plain.append({k: v for k, v in row.items() if k not in lists})
        if lists:
            key = {k: row.get(k) for k in KEY_COLUMNS}
            length = max(len(v) for v in lists.values())
            points += [{**key, "point": i, **{k: (v[i] if i < len(v) else np.nan) for k, v in lists.items()}} for i in range(length)]
    return plain, pd.DataFrame(points)


def point_values(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (dataset, method, case, point) of ``column`` in a per_point frame: the mean over seeds."""
    if frame.empty or column not in frame:
        return pd.DataFrame(columns=["dataset", "method", "case_id", "point", column])
    return frame.groupby(["dataset", "method", "case_id", "point"], sort=False)[column].mean().reset_index()


def _natural_case_order(column: pd.Series) -> pd.Series:
    """Case ids compared by their runs of digits as numbers (``synth006-2`` before ``synth006-10``)."""
    if column.name != "case_id":
        return column
    return column.map(lambda case: tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", str(case)))))


def seed_averaged(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, case): with several training seeds, each metric is the mean over
    the seeds whose case succeeded (``status`` ok if any did; ``n_seeds`` counts them). Tables, tests and box
    plots use these rows, so a pair weighs the same whatever the number of seeds."""
    if "seed" not in per_case or not per_case["seed"].notna().any():
        return per_case
    key = ["dataset", "method", "case_id"]
    metrics = summary_metrics(per_case) + [c for c in per_case.columns if c.startswith(KIT_PREFIX)]  # the kit's columns too
    ok = per_case[per_case["status"] == "ok"]
    means = ok.groupby(key, sort=False)[metrics].mean(numeric_only=True)
    counts = ok.groupby(key, sort=False).size().rename("n_seeds")
    first = per_case.sort_values("status", key=lambda s: s != "ok", kind="stable").groupby(key, sort=False).first()
    out = first.drop(columns=metrics + ["seed"]).join(means).join(counts)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["seed"] = pd.NA
    return out.reset_index()


def seed_spread(per_case: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (dataset, method): the number of training seeds and, per metric, the std (ddof=1) of the method's
    mean over its seeds; methods run once have one seed and no spread."""
    rows = []
    ok = per_case[per_case["status"] == "ok"]
    for (dataset, method), group in ok.groupby(["dataset", "method"], sort=False):
        seeds = group["seed"].dropna().unique() if "seed" in group else []
        rec: dict[str, Any] = {"dataset": dataset, "method": method, "n_seeds": max(len(seeds), 1)}
        for metric in metrics:
            by_seed = group.groupby("seed")[metric].mean() if len(seeds) > 1 else pd.Series(dtype=float)
            rec[f"{metric}_seed_std"] = by_seed.std(ddof=1) if len(by_seed) > 1 else np.nan
        rows.append(rec)
    return pd.DataFrame(rows, columns=["dataset", "method", "n_seeds", *[f"{m}_seed_std" for m in metrics]])


UNIT_COLUMN = "unit"


def _subjects(per_case: pd.DataFrame) -> pd.Series:
    """Each row's subject, missing (NaN) where none is given."""
    subject = per_case["subject"] if "subject" in per_case else pd.Series(np.nan, index=per_case.index)
    return subject.astype(object).where(subject.notna() & (subject.astype(str) != ""))


def units(per_case: pd.DataFrame) -> pd.Series:
    """Each row's unit of analysis: its subject (the independent unit: a subject's slices or frames are not
    independent of one another), or its own case id where the dataset gives the case no subject."""
    return _subjects(per_case).fillna(per_case["case_id"]).astype(str).rename(UNIT_COLUMN)


def unit_name(per_case: pd.DataFrame) -> str:
    """What the units of these rows are: ``subject``, ``case`` (no subjects given) or ``subject or case``."""
    given = _subjects(per_case).notna()
    return "subject" if given.all() else "case" if not given.any() else "subject or case"


def unit_values(per_case: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long frame (dataset, method, unit, metric, value, n_cases): per method and unit the mean of each metric over
    the unit's cases where it is defined (rows seed-averaged first, so a unit's value is also the mean over
    seeds), and how many cases that mean is over. Units where a method never has the metric are left out."""
    rows = seed_averaged(per_case)
    rows = rows.assign(**{UNIT_COLUMN: units(rows)})
    frames = []
    for metric in metrics:
        if metric not in rows:
            continue
        values = pd.to_numeric(rows[metric], errors="coerce")
        grouped = values.groupby([rows["dataset"], rows["method"], rows[UNIT_COLUMN]], sort=False)
        frame = pd.DataFrame({"value": grouped.mean(), "n_cases": grouped.count()}).reset_index()
        frames.append(frame[frame["n_cases"] > 0].assign(metric=metric))
    columns = ["dataset", "method", UNIT_COLUMN, "metric", "value", "n_cases"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def summary_frame(per_case: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) per method over successful cases (seed-averaged per pair when the run has several
    training seeds; ``n_seeds`` and ``dice_seed_std`` then say how many and how far the seeds' means spread);
    counts of cases and failures."""
    spread = seed_spread(per_case, ["dice"]).set_index("method") if len(per_case) else pd.DataFrame()
    per_case = seed_averaged(per_case)
    records = []
    for method, group in per_case.groupby("method", sort=False):
        ok = group[group["status"] == "ok"]
        rec: dict[str, Any] = {
            "method": method,
            "n_cases": len(group),
            "n_failed": int((group["status"] != "ok").sum()),
            "params": group["params"].dropna().iloc[0] if group["params"].notna().any() else pd.NA,
        }
        for metric in summary_metrics(per_case):
            values = pd.to_numeric(ok[metric], errors="coerce").dropna()
            rec[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            rec[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            rec[f"{metric}_n"] = len(values)
        if method in spread.index:
            rec["n_seeds"] = int(spread.loc[method, "n_seeds"])
            rec["dice_seed_std"] = spread.loc[method, "dice_seed_std"]
        records.append(rec)
    out = pd.DataFrame(records)
    if len(out):
        out["params"] = out["params"].astype("Int64")
    return out


def unlabelled_cases(per_case: pd.DataFrame) -> int:
    """How many of a dataset's cases no method could score on labels (Dice NaN wherever it succeeded): the
    pairs without labels, whose Dice and HD95 the means leave out."""
    ok = per_case[per_case["status"] == "ok"]
    if "dice" not in ok or not len(ok):
        return 0
    return int((~ok.groupby("case_id")["dice"].apply(lambda dice: dice.notna().any())).sum())


def partial_methods(per_case: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int]]:
    """(dataset, method) → (pairs it scored, pairs of the table) for each method that scored some but not all of
    its dataset's pairs (the case ids of any method's rows): a run stopped part-way and resumed with other
    methods, or cases that failed. Its mean is over another pair set than the others'."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for dataset, rows in per_case.groupby("dataset", sort=False):
        total = int(rows["case_id"].nunique())
        scored = rows[rows["status"] == "ok"].groupby("method", sort=False)["case_id"].nunique()
        for method in dict.fromkeys(rows["method"]):
            n = int(scored.get(method, 0))
            if 0 < n < total:
                out[(str(dataset), str(method))] = (n, total)
    return out


def failed_methods(per_case: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(dataset, method) → the first failure reason, for methods none of whose cases succeeded."""
    out = {}
    for (dataset, method), group in per_case.groupby(["dataset", "method"], sort=False):
        if not (group["status"] == "ok").any():
            out[(dataset, method)] = str(group["reason"].iloc[0]) or "no reason recorded"
    return out


CASE_KEY = ["dataset", "method", "case_id"]


def merge_runs(run_dirs: Sequence[Path], frames: Sequence[pd.DataFrame], manifests: Sequence[Manifest], problems: list[str]) -> pd.DataFrame:
    """One frame of every run's cases. Runs of one dataset are merged when their settings agree (the
    fingerprint that binds a run directory, and the options of every method they share), each case kept once;
    otherwise a DataError names the difference. Runs of different datasets become separate column groups."""
    first: dict[str, int] = {}  # dataset -> index of the first run holding it
    for i, frame in enumerate(frames):
        for dataset in dict.fromkeys(frame["dataset"]):
            if dataset not in first:
                first[dataset] = i
                continue
            j = first[dataset]
            a, b = manifests[j], manifests[i]
            if not a.data or not b.data:
                missing = run_dirs[j] if not a.data else run_dirs[i]
                raise DataError(
                    f"{run_dirs[j]} and {run_dirs[i]} both hold {dataset!r}, and {RunDir(missing).manifest} is missing or "
                    "unreadable, so their settings cannot be compared; report them separately"
                )
            fa, fb = a.fingerprint, b.fingerprint
            diffs = fingerprint_differences(fa, fb)
            shared = set(a.methods) & set(b.methods) & set(frame["method"]) & set(frames[j]["method"])
            diffs += [f"options of {m}" for m in sorted(shared) if a.methods[m] != b.methods[m]]
            if diffs:
                detail = "; ".join(f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" if k in FINGERPRINT_KEYS else k for k in diffs)
                raise DataError(
                    f"{run_dirs[j]} and {run_dirs[i]} both hold {dataset!r} with different settings ({detail}): "
                    "they cannot share a column of Table 1; report them separately"
                )
    per_case = pd.concat(frames, ignore_index=True)
    key = CASE_KEY + (["seed"] if "seed" in per_case else [])
    duplicated = per_case.duplicated(key, keep="first")
    if duplicated.any():
        problems.append(f"{int(duplicated.sum())} case(s) appear in more than one run directory: each is counted once (the first run's)")
    return per_case[~duplicated].reset_index(drop=True)
