"""Tables from stored cases: per_case.csv, summary.csv and a Table-1 style LaTeX table.

Everything here reads rows (or ``per_case.csv``) and the manifest only; no method code is imported, so a
copied run directory can be reported anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .metrics import METRICS
from .registry import method_sort_key
from .store import atomic_write_text

PER_CASE_COLUMNS = [
    "method", "dataset", "subject", "slice",
    "dice", "dice_lv", "dice_myo", "dice_rv", "hd95", "hd95_lv", "hd95_myo", "hd95_rv",
    "mse", "njd", "sdlogj", "epe_mm", "time_s", "params", "n_skipped", "skipped", "status", "reason",
]
SUMMARY_METRICS = [
    "dice", "dice_lv", "dice_myo", "dice_rv", "hd95", "hd95_lv", "hd95_myo", "hd95_rv",
    "mse", "njd", "sdlogj", "epe_mm", "time_s",
]
TABLE1_METRICS = ["dice", "hd95", "mse", "njd"]
DASH = "–"
LATEX_DASH = "--"


def per_case_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows in a stable order (paper's method order, subject, slice) and a fixed column order."""
    df = pd.DataFrame(list(rows))
    for col in PER_CASE_COLUMNS:
        if col not in df:
            df[col] = np.nan
    extra = [c for c in df.columns if c not in PER_CASE_COLUMNS]
    df = df[PER_CASE_COLUMNS + extra]
    if len(df):
        df["_order"] = df["method"].map(method_sort_key)
        df = df.sort_values(["_order", "subject", "slice"], kind="stable").drop(columns="_order").reset_index(drop=True)
    df["params"] = df["params"].astype("Int64")
    df["slice"] = df["slice"].astype("Int64")
    return df


def summary_frame(per_case: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1) per method over successful cases; counts of cases and failures."""
    records = []
    for method, group in per_case.groupby("method", sort=False):
        ok = group[group["status"] == "ok"]
        rec: dict[str, Any] = {
            "method": method,
            "n_cases": len(group),
            "n_failed": int((group["status"] != "ok").sum()),
            "params": group["params"].dropna().iloc[0] if group["params"].notna().any() else pd.NA,
        }
        for metric in SUMMARY_METRICS:
            values = pd.to_numeric(ok[metric], errors="coerce").dropna()
            rec[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            rec[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            rec[f"{metric}_n"] = len(values)
        records.append(rec)
    out = pd.DataFrame(records)
    if len(out):
        out["params"] = out["params"].astype("Int64")
    return out


def format_params(n: Any) -> str:
    """1968002 → '1.97M'; methods without learned parameters → '–' (not 0)."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return DASH
    n = int(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def latex_table(
    summary: pd.DataFrame,
    metrics: Sequence[str] = TABLE1_METRICS,
    caption: str = "",
    label: str = "",
    decimals: int = 2,
    no_deformation: Sequence[str] = ("initial",),
    marks: dict[tuple[str, str], str] | None = None,
) -> str:
    """booktabs table: methods as rows, ``mean±std`` per metric, the best mean per column in bold.

    Methods in ``no_deformation`` show '–' for deformation metrics (NJD, SDlogJ), as the paper does.
    ``marks`` adds a superscript (e.g. a dagger) to a (method, metric) cell.
    """
    marks = marks or {}
    deformation_metrics = {"njd", "sdlogj"}
    best: dict[str, float] = {}
    for m in metrics:
        spec = METRICS[m]
        col = summary[[f"{m}_mean"]].copy()
        col = col[~(summary["method"].isin(no_deformation) & (m in deformation_metrics))]
        values = pd.to_numeric(col[f"{m}_mean"], errors="coerce").dropna()
        if len(values):
            best[m] = values.max() if spec.higher_is_better else values.min()
    header = " & ".join(["Method"] + [METRICS[m].table_header or m for m in metrics])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        *( [rf"\caption{{{caption}}}"] if caption else [] ),
        *( [rf"\label{{{label}}}"] if label else [] ),
        r"\begin{tabular}{l" + "c" * len(metrics) + "}",
        r"\toprule",
        header + r" \\",
        r"\midrule",
    ]
    for _, row in summary.iterrows():
        cells = [latex_escape(_display_name(row["method"]))]
        for m in metrics:
            spec = METRICS[m]
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            if (row["method"] in no_deformation and m in deformation_metrics) or pd.isna(mean):
                cells.append(LATEX_DASH if row["method"] in no_deformation else "n/a")
                continue
            text = f"{mean * spec.table_scale:.{decimals}f}"
            if not pd.isna(std):
                text += rf"$\pm${std * spec.table_scale:.{decimals}f}"
            if m in best and np.isclose(mean, best[m], rtol=0, atol=0.5 * 10 ** (-decimals) / spec.table_scale):
                text = rf"\textbf{{{text}}}"
            if (row["method"], m) in marks:
                text += rf"$^{{{marks[(row['method'], m)]}}}$"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


DISPLAY_NAMES = {
    "initial": "Initial", "demons": "Demons", "demons-fastsym": "Demons (fast symmetric)", "syn": "SyN",
    "voxelmorph-s": "VoxelMorph-s", "voxelmorph-m": "VoxelMorph-m", "voxelmorph-l": "VoxelMorph-l",
    "hypermorph": "HyperMorph", "gs-agr": "GS-Agr", "gs-pcgrad": "GS-PCGrad", "gsmorph": "GSMorph",
}


def _display_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    return text


def write_run_tables(run_dir: Path, rows: Sequence[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Path]:
    """per_case.csv, summary.csv and table.tex of a run directory (each written atomically)."""
    run_dir = Path(run_dir)
    per_case = per_case_frame(rows)
    summary = summary_frame(per_case)
    dataset = manifest.get("fingerprint", {}).get("dataset", "")
    n_pairs = manifest.get("test_pairs", "")
    paths = {
        "per_case": run_dir / "per_case.csv",
        "summary": run_dir / "summary.csv",
        "table": run_dir / "table.tex",
    }
    atomic_write_text(paths["per_case"], per_case.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    caption = (
        f"Registration on {latex_escape(dataset)} ({n_pairs} test pairs): mean$\\pm$std; "
        "HD95 pooled (medpy) in mm; NJD is the \\% of pixels with negative Jacobian determinant."
    )
    atomic_write_text(paths["table"], latex_table(summary, caption=caption, label=f"tab:{dataset}"))
    return paths
