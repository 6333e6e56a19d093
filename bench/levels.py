"""Stress curves: each method's metrics against a level of the test data (how it degrades as, e.g., the motion to
recover grows).

A dataset declares which group attributes of its test pairs are levels of one quantity (``DatasetMeta.levels``,
name → the quantity as an axis names it; the values are numbers written as text, e.g. the synthetic heart's
``motion`` = 0.25 … 2 with ``test_motion``); a run records them (``dataset_info.levels``) and the report writes,
for each, ``stress_NAME.{csv,md,tex}`` and ``figures/stress_NAME``. Each point is a (dataset, method, level): the
mean over its pairs of each pair's mean over the training seeds (as Table 1 averages), the standard deviation
over those pairs, and with two or more seeds the lowest and highest seed mean (the figure's band).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .metrics import METRICS
from .registry import method_sort_key
from .rundir import group_column

#: The metrics a stress table and figure show, where the run has them.
STRESS_METRICS = ("dice", "hd95", "epe_mm", "njd", "ndv", "time_s")
#: A retrained method's key in a stress frame (``retrain_per_level``): its own name with this suffix, a row and
#: a line of its own beside the method trained once.
RETRAINED_SUFFIX = "+retrained"
RETRAINED_NAME = "retrained per level"


def retrained_base(method: str) -> str | None:
    """The method a stress frame's ``METHOD+retrained`` key retrains; None for a method trained once."""
    return method.removesuffix(RETRAINED_SUFFIX) if method.endswith(RETRAINED_SUFFIX) else None


def stress_order(methods: Iterable[str]) -> list[str]:
    """A stress frame's method keys in the tables' order (paper order), each retrained key
    (``METHOD+retrained``) right after its method."""
    keys = set(methods)
    bases = sorted({retrained_base(m) or m for m in keys}, key=method_sort_key)
    return [key for method in bases for key in (method, method + RETRAINED_SUFFIX) if key in keys]


def retrained_rows(own: pd.DataFrame, runs: dict[str, dict[str, pd.DataFrame | None]], methods: Sequence[str]) -> pd.DataFrame:
    """The cases of ``methods`` retrained per level, keyed ``METHOD+retrained``: level → value (as text) → the
    cases of the run that trained them at that value, or None where ``own`` (the run's own cases) was trained at
    it. Each run contributes its cases at that value only."""
    parts = []
    for level, by_value in runs.items():
        column = group_column(level)
        for value, cases in by_value.items():
            source = own if cases is None else cases
            if column not in source:
                continue
            at = source[source["method"].isin(methods) & (pd.to_numeric(source[column], errors="coerce") == float(value))].copy()
            at["method"] = at["method"] + RETRAINED_SUFFIX
            parts.append(at)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def level_frame(per_case: pd.DataFrame, level: str, metrics: Sequence[str] = STRESS_METRICS) -> pd.DataFrame:
    """One row per (dataset, method, level value) of the scored cases that carry ``level``: ``level`` (a number),
    ``n_pairs``, ``n_subjects``, ``n_seeds`` and per metric present ``METRIC_mean``, ``METRIC_std`` (over pairs),
    ``METRIC_seed_low``/``METRIC_seed_high`` (NaN with one seed)."""
    column = group_column(level)
    if per_case.empty or column not in per_case:
        return pd.DataFrame()
    ok = per_case[(per_case["status"] == "ok") & per_case[column].notna()].copy()
    ok["level"] = pd.to_numeric(ok[column], errors="coerce")
    ok = ok[ok["level"].notna()]
    present = [m for m in metrics if m in ok and ok[m].notna().any()]
    if ok.empty or not present:
        return pd.DataFrame()
    ok["seed"] = ok["seed"] if "seed" in ok else np.nan
    key = ["dataset", "method", "level"]
    per_pair = ok.groupby([*key, "case_id"], sort=False)[present].mean()  # each pair once: its mean over seeds
    subjects = ok.groupby(key, sort=False)["subject"].nunique() if "subject" in ok else ok.groupby(key, sort=False)["case_id"].nunique()
    seed_means = ok.groupby([*key, "seed"], dropna=False)[present].mean()
    rows = []
    for (dataset, method, value), pairs in per_pair.groupby(level=[0, 1, 2], sort=False):
        seeds = seed_means.loc[(dataset, method, value)]
        row = {"dataset": dataset, "method": method, "level": float(value), "n_pairs": len(pairs), "n_subjects": int(subjects.loc[(dataset, method, value)])}
        row["n_seeds"] = len(seeds)
        for metric in present:
            row[f"{metric}_mean"] = float(pairs[metric].mean())
            row[f"{metric}_std"] = float(pairs[metric].std(ddof=1)) if len(pairs) > 1 else float("nan")
            several = len(seeds) > 1 and seeds[metric].notna().sum() > 1
            row[f"{metric}_seed_low"] = float(seeds[metric].min()) if several else float("nan")
            row[f"{metric}_seed_high"] = float(seeds[metric].max()) if several else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["dataset", "method", "level"], kind="stable").reset_index(drop=True)


def _level_header(value: float) -> str:
    return f"{value:g}"


def _cells(frame: pd.DataFrame, metric: str, methods: Sequence[str], method_name: Callable[[str], str], digits: int = 2) -> tuple[list[str], list[list[str]]]:
    """One metric's table of one dataset: a row per method, a column per level, "mean ± std" in table units."""
    scale = METRICS[metric].table_scale
    levels = sorted(frame["level"].unique())
    most = frame.groupby("level")["n_pairs"].max()  # a level's pairs: what the method with most of them scored
    rows = []
    for method in methods:
        points = frame[frame["method"] == method].set_index("level")
        cells = [method_name(method)]
        for value in levels:
            if value not in points.index or not np.isfinite(points.loc[value, f"{metric}_mean"]):
                cells.append("–")
                continue
            mean, std = scale * points.loc[value, f"{metric}_mean"], scale * points.loc[value, f"{metric}_std"]
            cell = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if np.isfinite(std) else "")
            if points.loc[value, "n_pairs"] < most[value]:  # some of its cases failed: over fewer pairs, said so
                cell += f" ({points.loc[value, 'n_pairs']} of {most[value]})"
            cells.append(cell)
        rows.append(cells)
    return [_level_header(v) for v in levels], rows


def _tables(frame: pd.DataFrame, methods: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """(dataset, metric, the methods with a value) for every table the frame fills, in metric order."""
    out = []
    for dataset, data in frame.groupby("dataset", sort=False):
        present = [m for m in methods if m in set(data["method"])]
        for metric in STRESS_METRICS:
            if f"{metric}_mean" in data and data[f"{metric}_mean"].notna().any():
                out.append((str(dataset), metric, present))
    return out


def stress_caption(level: str, axis: str) -> str:
    return (
        f"Each method's metrics at each level of {axis} (the test pairs' group attribute {level!r}): mean ± standard "
        "deviation over the pairs of that level, each pair's mean over the training seeds; the same subjects at every level; "
        "(n of N): the method scored n of the level's N pairs (its other cases failed); a method "
        f"{RETRAINED_NAME}: trained again at each level, every split drawn at it."
    )


def stress_markdown(
    frame: pd.DataFrame, level: str, axis: str, methods: Sequence[str], method_name: Callable[[str], str], dataset_name: Callable[[str], str]
) -> str:
    """``stress_LEVEL.md``: per dataset, one table per metric, methods by levels."""
    from .tables import markdown_table

    parts = []
    for dataset, metric, present in _tables(frame, methods):
        data = frame[frame["dataset"] == dataset]
        headers, rows = _cells(data, metric, present, method_name)
        parts.append(f"### {METRICS[metric].label} against {axis}: {dataset_name(dataset)}\n\n" + markdown_table(["Method", *headers], rows))
    return "\n\n".join(parts) + f"\n\n{stress_caption(level, axis)}\n"


def stress_latex(
    frame: pd.DataFrame, level: str, axis: str, methods: Sequence[str], method_name: Callable[[str], str], dataset_name: Callable[[str], str], label: str
) -> str:
    """``stress_LEVEL.tex``: the same tables in LaTeX (booktabs), one per dataset and metric."""
    from .tables import booktabs_table

    parts = []
    for dataset, metric, present in _tables(frame, methods):
        data = frame[frame["dataset"] == dataset]
        headers, rows = _cells(data, metric, present, method_name)
        caption = f"{METRICS[metric].label} against {axis}, {dataset_name(dataset)}. {stress_caption(level, axis)}"
        parts.append(booktabs_table(["Method", *headers], rows, caption, f"{label}-{metric.replace('_', '-')}", "l" + "r" * len(headers)))
    return "\n".join(parts)
