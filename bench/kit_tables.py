"""The Learn2Reg kit's report beside Table 1: its aggregates table and its rank table, from the ``l2r_`` columns.

Both read a report's per-case rows (one row per method and pair, seeds averaged) and never a strict column.

- **Aggregates** (``learn2reg.{csv,md,tex}``): per method, each kit metric's mean, std and "30" (the 0.3 quantile
  of the per-case values for DSC and HD95, the 0.7 quantile for SDlogJ and TRE, as the kit since August 2024),
  LUMIR's NDV and the kit's fold count.
- **Rank** (``learn2reg_rank.{csv,md,tex}``): for each ranked metric, every pair of methods is compared by a
  Wilcoxon rank-sum test over their values (case × label for DSC and HD95, case × point for TRE from the runs'
  ``per_point.csv``, case for SDlogJ); a method scores 0.1 (beaten significantly, p < 0.05, by the most methods)
  to 1 (by the fewest), ties averaged; the task score is the geometric mean over the ranked metrics, higher is
  better. Ranked: DSC, DSC30 (the ``round(0.3 n)`` case × label positions where the Initial row's DSC is lowest,
  as the kit's ``rubustify``), HD95, SDlogJ, TRE and TRE30 (per case, the ``round(0.3 n)`` points where the
  Initial row's TRE is largest); DSC30 and TRE30 are left out without an Initial row. Missing values take the
  kit's penalties: DSC 0, HD95 10 voxels (an infinite HD95 too), SDlogJ the task's (5 on LungCT and NLST, else
  1.5), which the Initial row takes too, as the kit's notebooks give it; a missing TRE takes the largest TRE any
  method has at that point (the kit's LungCT notebook sets it to 0, a reward; regbench keeps the penalty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .learn2reg import KIT_METRICS, POINT_TRE
from .naming import Names
from .tables import latex_escape

INITIAL = "initial"
ALPHA = 0.05
PENALTIES = {"l2r_dice": 0.0, "l2r_hd95": 10.0, "l2r_sdlogj": 1.5}
SDLOGJ_PENALTIES = {"LungCT": 5.0, "NLST": 5.0, "OASIS": 1.5, "AbdomenMRCT": 1.5}  # the kit's ranking notebooks'
ROBUST_SHARE = 0.3  # DSC30 and TRE30: the 30 % hardest positions
QUANTILE_30 = {"l2r_dice": 0.3, "l2r_hd95": 0.3, "l2r_sdlogj": 0.7, "l2r_tre_mm": 0.7}
AGGREGATED = ("l2r_dice", "l2r_hd95", "l2r_sdlogj", "l2r_tre_mm", "l2r_ndv", "l2r_folds")
CAPTION = (
    "Learn2Reg kit convention (not regbench's strict metrics): DSC as a NaN-mean over labels, HD95 in voxels "
    "(max of the directed 95th percentiles, surface elements weighted by area), SDlogJ of log(det J + 3) cropped by 2, "
    "TRE by cubic-spline interpolation in mm, NDV over the moving foreground (LUMIR); Folds is the kit's count "
    "(voxels where det J + 3 is not positive: always 0). 30: 0.3 quantile (DSC, HD95), 0.7 quantile (SDlogJ, TRE)."
)


def has_kit_columns(per_case: pd.DataFrame) -> bool:
    return "l2r_dice" in per_case or "l2r_sdlogj" in per_case


def _present(per_case: pd.DataFrame, metric: str) -> bool:
    return metric in per_case and bool(pd.to_numeric(per_case[metric], errors="coerce").notna().any())


def kit_aggregates(per_case: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method): mean, std and 30 of each kit metric the run has (ok cases only)."""
    ok = per_case[per_case["status"] == "ok"]
    rows = []
    for (dataset, method), group in ok.groupby(["dataset", "method"], sort=False):
        row: dict[str, object] = {"dataset": dataset, "method": method, "n": len(group)}
        for metric in AGGREGATED:
            if not _present(per_case, metric):
                continue
            values = pd.to_numeric(group[metric], errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=0) if len(values) else np.nan
            if metric in QUANTILE_30:
                row[f"{metric}_30"] = values.quantile(QUANTILE_30[metric]) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class RankedMetric:
    name: str  # the table's header
    column: str
    higher_is_better: bool
    values: dict[str, np.ndarray]  # method -> its values, aligned across methods


def _label_columns(per_case: pd.DataFrame, metric: str) -> list[str]:
    """The per-label columns of ``metric`` (``l2r_dice_<label>``)."""
    return [c for c in per_case.columns if c.startswith(f"{metric}_") and c not in KIT_METRICS]


def _aligned(per_case: pd.DataFrame, methods: Sequence[str], columns: Sequence[str], penalty: float | None) -> dict[str, np.ndarray]:
    """Each method's values of ``columns`` over the union of pairs (case-major), NaN replaced by ``penalty``
    (None: the largest value any method has at that position)."""
    cases = sorted(set(per_case["case_id"]))
    grid = pd.MultiIndex.from_product([list(methods), cases], names=["method", "case_id"])  # a pair a method lacks: NaN
    values = per_case.set_index(["method", "case_id"])[list(columns)].reindex(grid).to_numpy(np.float64).reshape(len(methods), -1)
    table = {m: np.where(np.isfinite(v), v, np.nan) for m, v in zip(methods, values)}  # inf (a vanished label's HD95) is missing too
    stacked = np.vstack(list(table.values()))
    worst = np.nanmax(np.where(np.isnan(stacked), -np.inf, stacked), axis=0)
    return {m: np.where(np.isnan(v), penalty if penalty is not None else worst, v) for m, v in table.items()}


def sdlogj_penalty(task: str | None) -> float:
    """The SDlogJ the kit's ranking gives a missing value and the Initial row, per task (its notebooks: 5 on LungCT
    and NLST, 1.5 on OASIS and AbdomenMRCT); other tasks: 1.5."""
    return SDLOGJ_PENALTIES.get(str(task), PENALTIES["l2r_sdlogj"])


def _hardest(initial: np.ndarray, share: float) -> np.ndarray:
    """Positions of the ``round(share · n)`` values of ``initial`` the kit counts as hardest (lowest first), as its
    ``rubustify`` takes them."""
    return np.argsort(initial, kind="stable")[: round(len(initial) * share)]


def _aligned_points(points: pd.DataFrame, methods: Sequence[str], column: str) -> tuple[dict[str, np.ndarray], pd.MultiIndex]:
    """Each method's per-point values over the union of (case, point) positions, a missing one the largest any
    method has there (as a missing case TRE)."""
    positions = pd.MultiIndex.from_frame(points[["case_id", "point"]].drop_duplicates().sort_values(["case_id", "point"]))
    by_method = points.set_index(["method", "case_id", "point"])[column]
    table = {
        m: pd.to_numeric(by_method.reindex(pd.MultiIndex.from_tuples([(m, c, p) for c, p in positions])), errors="coerce").to_numpy(np.float64) for m in methods
    }
    stacked = np.vstack(list(table.values()))
    worst = np.nanmax(np.where(np.isnan(stacked), -np.inf, stacked), axis=0)
    return {m: np.where(np.isnan(v), worst, v) for m, v in table.items()}, positions


def ranked_metrics(per_case: pd.DataFrame, points: pd.DataFrame | None = None, task: str | None = None) -> tuple[list[RankedMetric], list[str]]:
    """The metrics ranked on ``per_case`` (one dataset; failed cases count as missing) and notes on what was not.
    ``points``: the dataset's per-point TRE (seed means; ``per_point.csv``), ranked over every point as the kit
    does; ``task``: the Learn2Reg task, whose SDlogJ penalty the Initial row and missing values take."""
    rows = per_case.copy()
    for column in rows.columns:
        if column.startswith("l2r_"):
            rows.loc[rows["status"] != "ok", column] = np.nan
    methods = list(dict.fromkeys(rows["method"]))
    ranked: list[RankedMetric] = []
    notes: list[str] = []
    if _present(rows, "l2r_dice"):
        labels = _label_columns(rows, "l2r_dice")
        dsc = _aligned(rows, methods, labels, PENALTIES["l2r_dice"])
        ranked.append(RankedMetric("DSC", "l2r_dice", True, dsc))
        if INITIAL in dsc:
            worst = _hardest(dsc[INITIAL], ROBUST_SHARE)
            if len(worst):
                ranked.append(RankedMetric("DSC30", "l2r_dice", True, {m: v[worst] for m, v in dsc.items()}))
        else:
            notes.append("DSC30 is not ranked: it takes the pairs where the Initial row's DSC is lowest, and the run has no Initial row")
        hd_labels = [c.replace("l2r_dice_", "l2r_hd95_", 1) for c in labels]
        ranked.append(RankedMetric("HD95", "l2r_hd95", False, _aligned(rows, methods, hd_labels, PENALTIES["l2r_hd95"])))
    if _present(rows, "l2r_sdlogj"):
        penalty = sdlogj_penalty(task)
        sdlogj = _aligned(rows, methods, ["l2r_sdlogj"], penalty)
        if INITIAL in sdlogj:  # a zero field is perfectly smooth: the kit gives Initial the penalty, so it cannot win SDlogJ
            sdlogj[INITIAL] = np.full_like(sdlogj[INITIAL], penalty)
        ranked.append(RankedMetric("SDlogJ", "l2r_sdlogj", False, sdlogj))
    tre_points = points[points["method"].isin(methods)] if points is not None and POINT_TRE in points else None
    if tre_points is not None and pd.to_numeric(tre_points[POINT_TRE], errors="coerce").notna().any():
        values, positions = _aligned_points(tre_points, methods, POINT_TRE)
        ranked.append(RankedMetric("TRE", "l2r_tre_mm", False, values))
        if INITIAL in values:
            cases = positions.get_level_values("case_id").to_numpy()
            hardest = np.concatenate([np.flatnonzero(cases == c)[_hardest(-values[INITIAL][cases == c], ROBUST_SHARE)] for c in dict.fromkeys(cases)])
            if len(hardest):
                ranked.append(RankedMetric("TRE30", "l2r_tre_mm", False, {m: v[np.sort(hardest)] for m, v in values.items()}))
        else:
            notes.append("TRE30 is not ranked: it takes each pair's points where the Initial row's TRE is largest, and the run has no Initial row")
    elif _present(rows, "l2r_tre_mm"):
        ranked.append(RankedMetric("TRE", "l2r_tre_mm", False, _aligned(rows, methods, ["l2r_tre_mm"], None)))
        notes.append("TRE is ranked over pair means: these runs kept no per-point TRE (per_point.csv), which the kit ranks over")
    return ranked, notes


def rank_scores(values: dict[str, np.ndarray], higher_is_better: bool, alpha: float = ALPHA) -> dict[str, float]:
    """The kit's rank score of each method on one metric: 0.1 (beaten by the most) to 1 (by the fewest), ties
    averaged; "beaten": a rank-sum test with p < ``alpha`` in the other method's favour."""
    from scipy.stats import rankdata, ranksums

    methods = list(values)
    sign = 1.0 if higher_is_better else -1.0
    beaten = np.zeros(len(methods), int)
    for j, loser in enumerate(methods):
        for winner in methods:
            if winner == loser:
                continue
            statistic, p = ranksums(sign * values[winner], sign * values[loser])
            beaten[j] += int(statistic > 0 and p < alpha)
    if len(methods) == 1:
        return {methods[0]: 1.0}
    order = rankdata(-beaten, method="average")  # the most beaten first
    return {m: float(0.1 + 0.9 * (r - 1) / (len(methods) - 1)) for m, r in zip(methods, order)}


def kit_rank(
    per_case: pd.DataFrame, alpha: float = ALPHA, points: pd.DataFrame | None = None, tasks: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The rank table of each dataset: per method and ranked metric its mean and rank score, the geometric mean
    of the scores (``score``) and the place (1 = best); and notes on what was not ranked. ``points``: per-point
    values (``per_point.csv``, seeds averaged); ``tasks``: dataset → its Learn2Reg task (its SDlogJ penalty)."""
    frames, notes = [], []
    for dataset, rows in per_case.groupby("dataset", sort=False):
        mine = points[points["dataset"] == dataset] if points is not None and len(points) else None
        metrics, dataset_notes = ranked_metrics(rows, mine, (tasks or {}).get(str(dataset)))
        notes += dataset_notes
        if not metrics:
            continue
        table = pd.DataFrame({"dataset": dataset, "method": list(metrics[0].values)})
        for metric in metrics:
            scores = rank_scores(metric.values, metric.higher_is_better, alpha)
            table[f"{metric.name}_mean"] = [float(np.mean(metric.values[m])) for m in table["method"]]
            table[f"{metric.name}_rank"] = [scores[m] for m in table["method"]]
        ranks = table[[f"{m.name}_rank" for m in metrics]].to_numpy()
        table["score"] = np.exp(np.log(ranks).mean(axis=1))
        table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        table["place"] = table["score"].rank(ascending=False, method="min").astype(int)
        frames.append(table)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes


# ------------------------------------------------------------------------------------------------- rendering
def _cell(value: object, digits: int) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def sdlogj_rule(dataset_options: Sequence[Mapping[str, Any]]) -> str:
    """The caption's sentence on where SDlogJ was taken, from the runs' dataset options (a Learn2Reg task binds
    ``masked_evaluation`` and what decided it); empty where no run says."""
    rules = {(bool(o["masked_evaluation"]), str(o.get("masked_from", ""))) for o in dataset_options if "masked_evaluation" in o}
    if not rules:
        return ""
    said = [f"{'inside the fixed image mask' if masked else 'over the whole field'} ({source})" for masked, source in sorted(rules)]
    return "SDlogJ taken " + " and ".join(said) + "."


def aggregates_markdown(frame: pd.DataFrame, names: Names, digits: int = 3, rule: str = "") -> str:
    headers, keys = _aggregate_columns(frame)
    lines = ["| Dataset | Method | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 2)]
    for _, row in frame.iterrows():
        lines.append(
            f"| {names.dataset(str(row['dataset']))} | {names.method(str(row['method']))} | " + " | ".join(_cell(row.get(k), digits) for k in keys) + " |"
        )
    return "\n".join(lines) + f"\n\n{_with(CAPTION, rule)}\n"


def _aggregate_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    headers, keys = [], []
    for metric in AGGREGATED:
        label = KIT_METRICS[metric].label
        for stat in ("mean", "std", "30"):
            if f"{metric}_{stat}" in frame:
                headers.append(label if stat == "mean" else f"{label} {stat}")
                keys.append(f"{metric}_{stat}")
    return headers, keys


def _with(caption: str, rule: str) -> str:
    return f"{caption} {rule}" if rule else caption


def aggregates_latex(frame: pd.DataFrame, names: Names, label: str, digits: int = 3, rule: str = "") -> str:
    headers, keys = _aggregate_columns(frame)
    body = [
        " & ".join([latex_escape(names.dataset(str(r["dataset"]))), latex_escape(names.method(str(r["method"])))] + [_cell(r.get(k), digits) for k in keys])
        + r" \\"
        for _, r in frame.iterrows()
    ]
    return _latex(["Dataset", "Method", *(latex_escape(h) for h in headers)], body, latex_escape(_with(CAPTION, rule)), label)


def rank_markdown(frame: pd.DataFrame, names: Names, notes: Sequence[str], digits: int = 3, rule: str = "") -> str:
    metrics = [c.removesuffix("_rank") for c in frame.columns if c.endswith("_rank")]
    lines = ["| Dataset | Place | Method | " + " | ".join(f"{m} (rank)" for m in metrics) + " | Score |", "|" + "---|" * (len(metrics) + 4)]
    for _, row in frame.iterrows():
        cells = [f"{_cell(row[f'{m}_mean'], digits)} ({row[f'{m}_rank']:.2f})" for m in metrics]
        lines.append(
            f"| {names.dataset(str(row['dataset']))} | {row['place']} | {names.method(str(row['method']))} | " + " | ".join(cells) + f" | {row['score']:.3f} |"
        )
    return "\n".join(lines) + f"\n\n{rank_caption(notes, rule)}\n"


def rank_latex(frame: pd.DataFrame, names: Names, notes: Sequence[str], label: str, digits: int = 3, rule: str = "") -> str:
    metrics = [c.removesuffix("_rank") for c in frame.columns if c.endswith("_rank")]
    body = [
        " & ".join(
            [latex_escape(names.dataset(str(r["dataset"]))), str(r["place"]), latex_escape(names.method(str(r["method"])))]
            + [f"{_cell(r[f'{m}_mean'], digits)} ({r[f'{m}_rank']:.2f})" for m in metrics]
            + [f"{r['score']:.3f}"]
        )
        + r" \\"
        for _, r in frame.iterrows()
    ]
    return _latex(["Dataset", "Place", "Method", *(f"{m} (rank)" for m in metrics), "Score"], body, latex_escape(rank_caption(notes, rule)), label)


def rank_caption(notes: Sequence[str], rule: str = "") -> str:
    text = (
        "Learn2Reg kit ranking: per metric, pairwise Wilcoxon rank-sum tests (p under 0.05) over case x label values "
        "(DSC, HD95), case x point values (TRE) or cases (SDlogJ); DSC30 and TRE30 over the round(30 %) positions "
        "hardest for the Initial row (lowest DSC over all case x label positions, largest TRE among each case's "
        "points); rank score 0.1 (beaten by the most methods) to 1, ties averaged; Score: their geometric mean, "
        "higher is better. Missing values: DSC 0, HD95 10 voxels, SDlogJ the task's penalty (5 on LungCT and NLST, "
        "else 1.5), which the Initial row also takes (a zero field cannot win SDlogJ), TRE the largest any method has "
        "at that point (the kit's LungCT ranking sets it to 0, which would reward a missing value). " + _with(CAPTION, rule)
    )
    return text + "".join(f" {note}." for note in notes)


def _latex(headers: Sequence[str], body: Sequence[str], caption: str, label: str) -> str:
    spec = "ll" + "r" * (len(headers) - 2)
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{caption}}}",
            rf"\label{{{label}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\hline",
            " & ".join(headers) + r" \\",
            r"\hline",
            *body,
            r"\hline",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )
