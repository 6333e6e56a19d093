"""The report of one or more run directories: tables (the paper's Table 1 and 2), paired statistics, figures,
and the side-by-side with the paper's published numbers.

Everything here reads ``per_case.csv``, ``manifest.json`` and the saved curves and examples of a run; no
method code is imported, so a copied run directory can be reported anywhere. Output is deterministic:
running the report again gives byte-identical files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .convergence import CONVERGENCE_RULE, Verdict, combine, run_verdicts
from .errors import ConfigError, DataError
from .fileio import atomic_write_text
from .metrics import METRICS, label_key, spec_of, with_structures
from .naming import Names
from .registry import method_sort_key
from .rundir import (
    FINGERPRINT_KEYS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    REQUIRED_COLUMNS,
    TRAILING_COLUMNS,
    Manifest,
    RunDir,
    fingerprint_differences,
    label_keys,
    metric_columns,
    migrate_per_case,
    prepare_run_dir,
    read_manifest_for_report,
)
from .study import DEFAULT_STUDY, Study


def summary_metrics(per_case: pd.DataFrame) -> list[str]:
    """The metric columns a per-case table has (its labels' included), in per_case.csv's order."""
    return [m for m in metric_columns(label_keys(per_case.columns)) if m in per_case]


TABLE1_METRICS = ["dice", "hd95", "mse", "njd"]
DASH = "–"
LATEX_DASH = "--"


def per_case_frame(rows: Sequence[dict[str, Any]], labels: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Rows in a stable order (paper's method order, case id in natural order: ``p2`` before ``p10``) and a fixed
    column order: the key, the
    metrics with a Dice and an HD95 column per label (``labels`` as the run's dataset declares them; else those
    the rows have; else :data:`regbench.interface.STRUCTURES`'), then the rest."""
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
    metrics = summary_metrics(per_case)
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


def format_params(n: Any) -> str:
    """1968002 → '1.97M'; methods without learned parameters → '–' (not 0)."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return DASH
    n = int(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    return text


DEFORMATION_METRICS = {"njd", "sdlogj"}
DAGGER = "†"
DDAGGER = "‡"  # training did not converge (regbench.convergence)


@dataclass
class ReportOptions:
    """What ``regbench report`` writes; the CLI flags map one to one."""

    per_structure: bool = False  # add Dice and HD95 of LV, Myo and RV to Table 1
    digits: int = 2  # digits after the decimal point (in table units), as the paper's 2
    caption: str | None = None
    label: str = "tab:regbench"
    references: tuple[str, ...] | None = None  # Wilcoxon against these (None: the study's reference); the first marks Table 1
    alpha: float = 0.05
    compare_paper: bool = False
    paper_dataset: str | None = None  # compare this run with the paper's acdc or mnm numbers
    figures: bool = True
    layout: str = "auto"  # Table 1's LaTeX: plain | fit | wide | auto (see LAYOUTS)
    study: Study = DEFAULT_STUDY  # row order, reference, baselines and published numbers

    def __post_init__(self) -> None:
        if self.references is None:
            self.references = (self.study.reference,)


@dataclass
class Report:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be reported, one line each


# ------------------------------------------------------------------------------------------- loading
def load_per_case(run_dir: Path, problems: list[str]) -> pd.DataFrame:
    """``per_case.csv`` checked for the columns the report needs; a missing metric is a problem, not fatal."""
    path = RunDir(run_dir).require_per_case()
    try:
        df = migrate_per_case(pd.read_csv(path, dtype={"case_id": str, "subject": str, "reason": str, "skipped": str}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read as CSV: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(repr(c) for c in missing)}; it needs {', '.join(REQUIRED_COLUMNS)}")
    if not any(metric in df for metric in TABLE1_METRICS):
        raise DataError(f"{path} has none of Table 1's columns ({', '.join(TABLE1_METRICS)}): nothing to tabulate")
    for metric in TABLE1_METRICS + ["time_s"]:
        if metric not in df:
            problems.append(f"{path} lacks column {metric!r}: {metric} is left out of the tables and figures")
    df["reason"] = df["reason"].fillna("") if "reason" in df else ""
    return df


def unlabelled_cases(per_case: pd.DataFrame) -> int:
    """How many of a dataset's cases no method could score on labels (Dice NaN wherever it succeeded): the
    pairs without labels, whose Dice and HD95 the means leave out."""
    ok = per_case[per_case["status"] == "ok"]
    if "dice" not in ok or not len(ok):
        return 0
    return int((~ok.groupby("case_id")["dice"].apply(lambda dice: dice.notna().any())).sum())


def failed_methods(per_case: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(dataset, method) → the first failure reason, for methods none of whose cases succeeded."""
    out = {}
    for (dataset, method), group in per_case.groupby(["dataset", "method"], sort=False):
        if not (group["status"] == "ok").any():
            out[(dataset, method)] = str(group["reason"].iloc[0]) or "no reason recorded"
    return out


# -------------------------------------------------------------------------------------------- table 1
def _order(methods: Sequence[str]) -> list[str]:
    return sorted(dict.fromkeys(methods), key=method_sort_key)


def _best(summary: pd.DataFrame, metric: str, baselines: Collection[str]) -> float | None:
    rows = summary[~(summary["method"].isin(list(baselines)) & (metric in DEFORMATION_METRICS))]
    values = pd.to_numeric(rows[f"{metric}_mean"], errors="coerce").dropna()
    if not len(values):
        return None
    return float(values.max() if spec_of(metric).higher_is_better else values.min())


def table1_cells(
    summaries: dict[str, pd.DataFrame],
    metrics: Sequence[str],
    digits: int,
    marks: dict[tuple[str, str, str], str],
    spread: pd.DataFrame | None = None,
    baselines: Collection[str] = DEFAULT_STUDY.baselines,
) -> pd.DataFrame:
    """One row per (dataset, method, metric): numbers in table units, the printed text, bold and mark; with
    several training seeds, ``seed_std`` (the std of the method's mean over its seeds) follows in brackets.
    ``baselines`` (methods that do not deform) print '-' for the deformation metrics."""
    spread = spread.set_index(["dataset", "method"]) if spread is not None and len(spread) else None
    rows = []
    for dataset, summary in summaries.items():
        for metric in metrics:
            if f"{metric}_mean" not in summary:
                continue
            spec = spec_of(metric)
            best = _best(summary, metric, baselines)
            for rec in summary.itertuples():
                mean, std = getattr(rec, f"{metric}_mean"), getattr(rec, f"{metric}_std")
                row = {
                    "dataset": dataset,
                    "method": rec.method,
                    "metric": metric,
                    "mean": mean * spec.table_scale,
                    "std": std * spec.table_scale,
                    "n": getattr(rec, f"{metric}_n"),
                    "best": False,
                    "mark": marks.get((dataset, rec.method, metric), ""),
                    "text": "",
                }
                if rec.method in baselines and metric in DEFORMATION_METRICS:
                    row.update(mean=np.nan, std=np.nan, text="-", mark="")
                elif pd.isna(mean):
                    row["text"] = "failed" if rec.n_failed == rec.n_cases else "n/a"
                else:
                    row["text"] = f"{mean * spec.table_scale:.{digits}f}" + ("" if pd.isna(std) else f"±{std * spec.table_scale:.{digits}f}")
                    row["best"] = best is not None and round(mean * spec.table_scale, digits) == round(best * spec.table_scale, digits)
                    key = (dataset, rec.method)
                    if spread is not None and key in spread.index and spread.loc[key, "n_seeds"] > 1 and f"{metric}_seed_std" in spread:
                        row["n_seeds"] = int(spread.loc[key, "n_seeds"])
                        row["seed_std"] = spread.loc[key, f"{metric}_seed_std"] * spec.table_scale
                        row["text"] += f" [±{row['seed_std']:.{digits}f}]"
                rows.append(row)
    return pd.DataFrame(rows)


# Table 1's LaTeX layouts. plain: a table of natural width (booktabs). fit: scaled down to \linewidth when wider
# (graphicx), never up. wide: table* (both columns of a two-column class), scaled down to \textwidth.
LAYOUTS = ("auto", "plain", "fit", "wide")


def resolve_layout(layout: str, n_datasets: int, per_structure: bool) -> str:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == "auto":
        return "fit" if n_datasets > 1 or per_structure else "plain"
    return layout


def table1_latex(
    cells: pd.DataFrame,
    datasets: Sequence[str],
    metrics: Sequence[str],
    caption: str,
    label: str,
    layout: str = "plain",
    unconverged: Collection[str] = (),
    names: Names | None = None,
) -> str:
    """booktabs, one column group per dataset, ``\\textbf`` for the best, ``$^\\dagger$`` for the marks."""
    names = names or Names()
    methods = _order(cells["method"])
    metrics = [m for m in metrics if m in set(cells["metric"])]
    n = len(metrics)
    env = "table*" if layout == "wide" else "table"
    width = r"\textwidth" if layout == "wide" else r"\linewidth"
    lines = [rf"\begin{{{env}}}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{{label}}}"]
    if layout in ("fit", "wide"):
        lines.append(rf"\resizebox{{\ifdim\width>{width}{width}\else\width\fi}}{{!}}{{%")
    lines += [r"\begin{tabular}{l" + ("c" * n) * len(datasets) + "}", r"\toprule"]
    if len(datasets) > 1 or datasets[0] != "":
        groups = " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(names.dataset(d))}}}" for d in datasets)
        rules = " ".join(rf"\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(datasets)))
        lines += [f"Dataset & {groups} \\\\", rules]
    lines += [" & ".join(["Method"] + [names.metric(m).table_header for m in metrics] * len(datasets)) + r" \\", r"\midrule"]
    index = cells.set_index(["dataset", "method", "metric"])
    for method in methods:
        out = [latex_escape(names.method(method)) + (r"$^{\ddagger}$" if method in unconverged else "")]
        for dataset in datasets:
            for metric in metrics:
                key = (dataset, method, metric)
                if key not in index.index:
                    out.append("")
                    continue
                cell = index.loc[key]
                text = cell["text"] if cell["text"] != "-" else "--"
                text, bracket = (text.split(" [", 1) + [""])[:2]
                text = text.replace("±", r"$\pm$")
                if cell["best"]:
                    text = rf"\textbf{{{text}}}"
                if bracket:  # the seeds' spread, small, after the bold part
                    text += r"\,{\scriptsize[" + bracket.rstrip("]").replace("±", r"$\pm$") + "]}"
                if cell["mark"]:
                    text += r"$^{\dagger}$"
                out.append(text)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}" + ("}" if layout in ("fit", "wide") else ""), rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def table1_markdown(cells: pd.DataFrame, datasets: Sequence[str], metrics: Sequence[str], unconverged: Collection[str] = (), names: Names | None = None) -> str:
    names = names or Names()
    methods = _order(cells["method"])
    metrics = [m for m in metrics if m in set(cells["metric"])]
    index = cells.set_index(["dataset", "method", "metric"])
    records = []
    for method in methods:
        rec = {"Method": names.method(method) + (DDAGGER if method in unconverged else "")}
        for dataset in datasets:
            for metric in metrics:
                key = (dataset, method, metric)
                text = ""
                if key in index.index:
                    cell = index.loc[key]
                    main, bracket = (cell["text"].split(" [", 1) + [""])[:2]
                    text = (f"**{main}**" if cell["best"] else main) + (f" [{bracket}" if bracket else "")
                    text += DAGGER if cell["mark"] else ""
                column = names.metric(metric).label if len(datasets) == 1 else f"{names.dataset(dataset)} {names.metric(metric).label}"
                rec[column] = text
        records.append(rec)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True, colalign=["left"] + ["right"] * (len(records[0]) - 1)) + "\n"


# -------------------------------------------------------------------------------------------- table 2
def table2_frame(per_case: pd.DataFrame, verdicts: dict[str, Verdict] | None = None, baselines: Collection[str] = DEFAULT_STUDY.baselines) -> pd.DataFrame:
    """Parameters, inference ms per pair (mean±std over successful cases of every dataset) and, for trained
    methods, how long they trained and whether they converged."""
    verdicts = verdicts or {}
    rows = []
    for method in _order(per_case["method"]):
        if method in baselines:
            continue
        group = per_case[(per_case["method"] == method) & (per_case["status"] == "ok")]
        times = pd.to_numeric(group["time_s"], errors="coerce").dropna() * 1000.0 if "time_s" in group else pd.Series(dtype=float)
        params = per_case.loc[per_case["method"] == method, "params"].dropna() if "params" in per_case else pd.Series(dtype=float)
        rows.append(
            {
                "method": method,
                "params": int(params.iloc[0]) if len(params) else None,
                "time_ms_mean": times.mean() if len(times) else np.nan,
                "time_ms_std": times.std(ddof=1) if len(times) > 1 else np.nan,
                "n": len(times),
                **(verdicts[method].as_columns() if method in verdicts else {}),
            }
        )
    frame = pd.DataFrame(rows, columns=["method", "params", "time_ms_mean", "time_ms_std", "n", "epochs", "train_minutes", "converged", "convergence_gain"])
    return frame.astype({"params": "Int64", "epochs": "Int64"})


def table2_latex(frame: pd.DataFrame, caption: str, label: str, digits: int, names: Names | None = None) -> str:
    names = names or Names()
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{lcccc}",
        r"\toprule",
        r"Method & Params & Time (ms/pair) & Epochs & Training (min) \\",
        r"\midrule",
    ]
    for rec in frame.itertuples():
        time_text = (
            "n/a"
            if pd.isna(rec.time_ms_mean)
            else f"{rec.time_ms_mean:.{digits}f}" + ("" if pd.isna(rec.time_ms_std) else rf"$\pm${rec.time_ms_std:.{digits}f}")
        )
        params = format_params(rec.params)
        trained = pd.notna(rec.epochs)
        epochs = f"{int(rec.epochs)}" + ("" if rec.converged is True else r"$^{\ddagger}$") if trained else "--"
        minutes = f"{rec.train_minutes:.1f}" if trained else "--"
        lines.append(f"{latex_escape(names.method(rec.method))} & {'--' if params == DASH else params} & {time_text} & {epochs} & {minutes} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- paper numbers
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


# -------------------------------------------------------------------------------------------- report
def write_report(run_dirs: Sequence[Path], out_dir: Path | None = None, options: ReportOptions | None = None) -> Report:
    """Write Table 1/2 (LaTeX, Markdown, CSV), stats.csv, figures and the paper comparison.

    Raises DataError when a run directory has no usable ``per_case.csv``; every other problem (a missing
    metric column, a method whose cases all failed, a figure that cannot be drawn) is listed in
    ``Report.problems`` and the rest is still written.
    """
    from .stats import paired_tests, significance_marks

    options = options or ReportOptions()
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise DataError("no run directory given")
    report = Report(Path(out_dir) if out_dir else RunDir(run_dirs[0]).report)
    layout = resolve_layout(options.layout, 1, options.per_structure)  # checks the value before any work
    unique: dict[Path, Path] = {}
    for run_dir in run_dirs:
        if run_dir.resolve() in unique:
            report.problems.append(f"{run_dir} is given more than once: read once")
        unique.setdefault(run_dir.resolve(), run_dir)
    run_dirs = list(unique.values())
    frames, manifests = [], []
    for run_dir in run_dirs:
        frames.append(load_per_case(run_dir, report.problems))
        manifests.append(read_manifest_for_report(run_dir, report.problems))
    per_case = merge_runs(run_dirs, frames, manifests, report.problems)
    prepare_output_dir(report.out_dir)
    study = options.study
    names = Names.from_manifests(manifests, study)
    references = options.references or ()
    for (dataset, method), reason in failed_methods(per_case).items():
        report.problems.append(
            f"{method} on {dataset}: all {int(((per_case['method'] == method) & (per_case['dataset'] == dataset)).sum())} cases failed ({reason})"
        )
    datasets = list(dict.fromkeys(per_case["dataset"]))
    metrics = [m for m in (with_structures(TABLE1_METRICS, list(per_case.columns)) if options.per_structure else TABLE1_METRICS) if m in per_case]
    # Synthetic data knows the true motion: its flow error goes beside the paper's columns, since Dice and MSE
    # also reward flows that match intensity edges beyond the true motion (issue #11).
    with_epe = "epe_mm" in per_case and bool(pd.to_numeric(per_case["epe_mm"], errors="coerce").notna().any())
    metrics += ["epe_mm"] if with_epe else []
    summaries = {d: summary_frame(per_case_frame(per_case[per_case["dataset"] == d].to_dict("records"))) for d in datasets}
    verdicts = dataset_verdicts(run_dirs, frames)
    unconverged = {m for per_dataset in verdicts.values() for m, v in per_dataset.items() if not v.converged}

    out = report.out_dir
    averaged = seed_averaged(per_case)  # one row per pair: tests and figures weigh pairs, not seeds
    spread = seed_spread(per_case, metrics)
    stats = paired_tests(averaged, references, metrics, options.alpha)
    for reference in references:
        if reference not in set(per_case["method"]):
            report.problems.append(f"reference method {reference!r} is not in the run: no statistics against it")
    report.written.append(_write(out / "stats.csv", stats.to_csv(index=False)))
    marks = significance_marks(stats, references[0]) if references else {}

    cells = table1_cells(summaries, metrics, options.digits, marks, spread, study.baselines)
    n_pairs = ", ".join(f"{names.dataset(d)} {per_case[(per_case['dataset'] == d)]['case_id'].nunique()}" for d in datasets)
    unlabelled = {d: unlabelled_cases(per_case[per_case["dataset"] == d]) for d in datasets}
    label_counts = ", ".join(f"{names.dataset(d)} {per_case[per_case['dataset'] == d]['case_id'].nunique() - n}" for d, n in unlabelled.items())
    labelled_text = f" over the pairs with labels ({label_counts})" if any(unlabelled.values()) else ""
    seeded = spread[spread["n_seeds"] > 1]
    seed_text = ""
    if len(seeded):
        counts = "/".join(str(n) for n in sorted(seeded["n_seeds"].unique()))
        seed_text = (
            f" Trained methods: {counts} training seeds each; their numbers are over the test pairs of the per-pair mean "
            "over seeds, and [$\\pm$s] is the std of the method's mean over its seeds."
        )
    reference_name = names.method(references[0]) if references else ""
    label_names = [names.labels.get(k, k) for k in label_keys(per_case.columns)]
    labels_text = " and ".join([", ".join(label_names[:-1]), label_names[-1]] if len(label_names) > 1 else label_names) or "no labels"
    caption = options.caption or (
        f"Registration results (mean$\\pm$std over the test pairs: {latex_escape(n_pairs)}). Dice and HD95{latex_escape(labelled_text)} averaged over "
        f"{latex_escape(labels_text)}; {conventions_caption(manifests, names)}"
        + (
            f" EPE: mean end-point error of the flow against the ground-truth flow over the fixed image's labels ({latex_escape(', '.join(label_names))}), "
            "in mm (synthetic data only)."
            if with_epe
            else ""
        )
        + " Bold: best per column."
        + (
            f" $^{{\\dagger}}$: differs from {latex_escape(reference_name)} (paired Wilcoxon signed-rank, Holm-corrected, $p<{options.alpha}$)."
            if marks
            else ""
        )
        + seed_text
        + training_caption(verdicts, names)
    )
    profiles = {str(m.profile) for m in manifests}
    longer = "" if profiles == {"reproduce"} else ", or --profile reproduce"  # no advice to use the profile just run
    for method in sorted(unconverged, key=method_sort_key):
        why = "; ".join(f"{names.dataset(d)}: {v[method].reason}" for d, v in verdicts.items() if method in v and not v[method].converged)
        report.problems.append(
            f"{method} did not converge ({why}): its numbers say how far it got, not how good it is "
            f"(train longer: method_options {{{method}: {{epochs: N}}}}{longer})"
        )
    layout = resolve_layout(options.layout, len(datasets), options.per_structure)
    report.written += [
        _write(out / "table1.tex", table1_latex(cells, datasets, metrics, caption, options.label, layout, unconverged, names)),
        _write(out / "table1.md", table1_markdown(cells, datasets, metrics, unconverged, names)),
        _write(out / "table1.csv", cells.to_csv(index=False)),
    ]
    table2 = table2_frame(per_case, merged_verdicts(verdicts, names), study.baselines)
    devices = sorted({m.device for m in manifests})
    caption2 = (
        f"Parameters and inference time per pair in milliseconds (mean$\\pm$std over the test pairs, registration "
        f"only, after one warm-up; device: {latex_escape('; '.join(devices))}); epochs and minutes of training "
        f"(summed over datasets and seeds). $^{{\\ddagger}}$: not converged ({latex_escape(CONVERGENCE_RULE.describe())})."
    )
    report.written += [
        _write(out / "table2.tex", table2_latex(table2, caption2, options.label + "-speed", options.digits, names)),
        _write(out / "table2.csv", table2.to_csv(index=False)),
    ]

    if options.compare_paper:
        published = list(study.published_datasets)
        dataset_map = {d: d for d in datasets if d in published}
        if options.paper_dataset:
            if options.paper_dataset not in published:
                raise ConfigError(f"--paper-dataset must be {' or '.join(repr(d) for d in published)}, got {options.paper_dataset!r}")
            dataset_map = {d: options.paper_dataset for d in datasets}
        comparison = compare_with_paper(cells, dataset_map, study)
        if comparison.empty:
            report.problems.append(
                f"compare-paper: the paper has numbers for {' and '.join(published)}; this report has {', '.join(datasets)} "
                f"(use --paper-dataset {'|'.join(published)} to compare anyway)"
            )
        else:
            report.written += [
                _write(out / "compare_paper.csv", comparison.to_csv(index=False)),
                _write(out / "compare_paper.md", comparison_markdown(comparison, options.digits, names)),
            ]

    if options.figures:
        from . import figures

        ok = averaged[averaged["status"] == "ok"]
        drawings = [] if seeded.empty else [("seeds", lambda stem: figures.seed_means(per_case[per_case["status"] == "ok"], stem, names))]
        for name, draw in [
            *drawings,
            ("boxplots", lambda stem: figures.boxplots(ok, [m for m in TABLE1_METRICS if m in ok], stem, names)),
            ("tradeoff", lambda stem: figures.tradeoff(ok, figures.load_sweeps(run_dirs), stem, names)),
            ("qualitative", lambda stem: figures.qualitative(run_dirs[0], stem, names)),
            ("training", lambda stem: figures.training_curves(run_dirs, stem, list(per_case["method"].unique()), names)),
        ]:
            try:
                paths = draw(out / "figures" / name)
                if paths:
                    report.written += paths
                else:
                    report.problems.append(f"figure {name}: nothing to draw in this run")
            except Exception as exc:  # one figure failing must not lose the others
                report.problems.append(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}")
    return report


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


def prepare_output_dir(out: Path) -> None:
    """The report's folder exists and is writable, else one error naming it (before anything is computed)."""
    prepare_run_dir(out, hint="use --out DIR to write the report elsewhere")


def dataset_verdicts(run_dirs: Sequence[Path], frames: Sequence[pd.DataFrame]) -> dict[str, dict[str, Verdict]]:
    """dataset → method → training verdict, from each run directory's ``models/*/history.csv`` (only for the
    methods whose cases the report shows)."""
    out: dict[str, dict[str, Verdict]] = {}
    for run_dir, frame in zip(run_dirs, frames):
        shown = {m: v for m, v in run_verdicts(run_dir).items() if m in set(frame["method"])}
        for dataset in dict.fromkeys(frame["dataset"]):
            for method, verdict in shown.items():
                out.setdefault(dataset, {}).setdefault(method, verdict)
    return out


def merged_verdicts(verdicts: dict[str, dict[str, Verdict]], names: Names | None = None) -> dict[str, Verdict]:
    """One verdict per method over datasets: converged only if converged everywhere; training time summed."""
    by_method: dict[str, list[tuple[str, Verdict]]] = {}
    for dataset, per_dataset in verdicts.items():
        for method, v in per_dataset.items():
            by_method.setdefault(method, []).append(((names or Names()).dataset(dataset), v))
    return {method: combine(labelled, "datasets") for method, labelled in by_method.items()}


HD95_CAPTIONS = {
    "pooled": "HD95 pooled (medpy: both directions' surface distances together)",
    "max": "HD95 max (the larger of the two directed 95th percentiles)",
}
JACOBIAN_CAPTIONS = {"central": "central differences", "forward": "forward differences"}


def conventions_caption(manifests: Sequence[Manifest], names: Names | None = None) -> str:
    """The caption's sentence on how HD95 and NJD were computed, from what each run recorded (its fingerprint's
    ``hd95_convention`` and ``jacobian_scheme``): one sentence when the runs agree, one per dataset otherwise."""
    names = names or Names()
    recorded: dict[tuple[str, str], list[str]] = {}
    for manifest in manifests:
        fingerprint = manifest.fingerprint
        key = (str(fingerprint.get("hd95_convention", "not recorded")), str(fingerprint.get("jacobian_scheme", "not recorded")))
        dataset = names.dataset(str(fingerprint.get("dataset", "?")))
        recorded.setdefault(key, [])
        if dataset not in recorded[key]:
            recorded[key].append(dataset)

    def sentence(hd95: str, scheme: str) -> str:
        hd = HD95_CAPTIONS.get(hd95, f"HD95 convention {hd95}")
        jac = JACOBIAN_CAPTIONS.get(scheme, f"difference scheme {scheme}")
        return f"{hd} in mm from the pixel spacing; NJD: \\% of pixels with negative Jacobian determinant ({jac})."

    if len(recorded) <= 1:
        return sentence(*next(iter(recorded), ("pooled", "central")))
    return " ".join(latex_escape(", ".join(datasets)) + ": " + sentence(*key) for key, datasets in recorded.items())


def training_caption(verdicts: dict[str, dict[str, Verdict]], names: Names | None = None) -> str:
    """What the caption says about training: epochs, and which methods did not converge by the rule."""
    merged = merged_verdicts(verdicts, names)
    if not merged:
        return ""
    epochs = sorted({v.epochs for v in merged.values()})
    text = f" Deep methods trained {'/'.join(str(e) for e in epochs)} epochs (Table 2)."
    if any(not v.converged for v in merged.values()):
        text += f" $^{{\\ddagger}}$: training not converged ({latex_escape(CONVERGENCE_RULE.describe())}): not a ranking."
    else:
        text += " All converged (validation Dice no longer rising over the last quarter of training)."
    return text


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def write_run_tables(run_dir: Path, rows: Sequence[dict[str, Any]], labels: Mapping[str, int] | None = None) -> dict[str, Path]:
    """per_case.csv and summary.csv of a run directory (each written atomically), with a Dice and an HD95 column
    per label of ``labels`` (the run's). summary.csv carries each trained method's verdict: converged, epochs,
    train_minutes, convergence_gain (empty for other methods)."""
    folder = RunDir(run_dir)
    per_case = per_case_frame(rows, labels)
    paths = {"per_case": folder.per_case, "summary": folder.summary}
    atomic_write_text(paths["per_case"], per_case.to_csv(index=False))
    summary = summary_frame(per_case)
    verdicts = run_verdicts(run_dir)
    for column in ("converged", "epochs", "train_minutes", "convergence_gain"):
        summary[column] = [verdicts[m].as_columns()[column] if m in verdicts else pd.NA for m in summary["method"]] if len(summary) else []
    summary["epochs"] = summary["epochs"].astype("Int64")
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    return paths
