"""This run beside the numbers a study published (``Study.published``): one row per dataset, method and metric,
ours and the paper's as printed."""

from __future__ import annotations

import pandas as pd

from .metrics import METRICS
from .naming import Names
from .study import DEFAULT_STUDY, Study


def compare_with_paper(cells: pd.DataFrame, dataset_map: dict[str, str], study: Study = DEFAULT_STUDY) -> pd.DataFrame:
    """This run's Table 1 numbers next to the study's published ones, for the (dataset, method, metric) both have."""
    paper = study.published()
    rows = []
    for rec in cells.itertuples():
        paper_dataset = dataset_map.get(rec.dataset)
        hit = paper[(paper["dataset"] == paper_dataset) & (paper["method"] == rec.method) & (paper["metric"] == rec.metric)]
        if paper_dataset is None or hit.empty:
            continue
        p = hit.iloc[0]
        rows.append(
            {
                "dataset": rec.dataset,
                "paper_dataset": paper_dataset,
                "method": rec.method,
                "metric": rec.metric,
                "unit": p["unit"],
                "ours_mean": rec.mean,
                "ours_std": rec.std,
                "paper_mean": p["mean"],
                "paper_std": p["std"],
                "paper_as_printed": p["as_printed"],
                "difference": rec.mean - p["mean"],
            }
        )
    return pd.DataFrame(
        rows,
        columns=["dataset", "paper_dataset", "method", "metric", "unit", "ours_mean", "ours_std", "paper_mean", "paper_std", "paper_as_printed", "difference"],
    )


def comparison_markdown(frame: pd.DataFrame, digits: int, names: Names | None = None) -> str:
    names = names or Names()
    records = []
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        rec = {"Dataset": f"{names.dataset(dataset)} vs paper {names.dataset(group['paper_dataset'].iloc[0])}", "Method": names.method(method)}
        for r in group.itertuples():
            ours = "-" if pd.isna(r.ours_mean) else f"{r.ours_mean:.{digits}f}±{r.ours_std:.{digits}f}"
            rec[METRICS[r.metric].label] = f"{ours} ({r.paper_as_printed})"
        records.append(rec)
    if not records:
        return ""
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True) + "\n\nEach cell: this run (paper).\n"
