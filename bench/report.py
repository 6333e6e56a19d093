"""The report of one or more run directories: tables (the paper's Table 1 and 2), paired statistics, figures,
and the side-by-side with the paper's published numbers.

Everything here reads ``per_case.csv``, ``manifest.json`` and the saved curves and examples of a run; no
method code is imported, so a copied run directory can be reported anywhere. Output is deterministic:
running the report again gives byte-identical files.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pandas as pd

from .aggregate import (
    failed_methods,
    merge_runs,
    partial_methods,
    per_case_frame,
    point_values,
    seed_averaged,
    seed_spread,
    split_point_values,
    summary_frame,
    unit_name,
    units,
)
from .comparison import compare_with_paper, comparison_markdown
from .convergence import Verdict, run_verdicts
from .errors import ConfigError, DataError
from .fileio import atomic_write_text
from .front import arc_frame, arc_latex, arc_markdown, tradeoff_frame, tradeoff_latex, tradeoff_markdown
from .kit_tables import aggregates_latex, aggregates_markdown, has_kit_columns, kit_aggregates, kit_rank, rank_latex, rank_markdown, sdlogj_rule
from .learn2reg import POINT_TRE
from .metrics import with_structures
from .naming import Names
from .ranks import Friedman, best_shares, friedman_frame, friedman_tests, rank_bootstrap
from .registry import METHODS, method_sort_key
from .report_options import ReportOptions
from .rundir import (
    REQUIRED_COLUMNS,
    Manifest,
    RunDir,
    group_column,
    group_names,
    migrate_per_case,
    prepare_run_dir,
    read_manifest_for_report,
)
from .stats import min_units, out_of_reach, paired_tests, significance_marks, untestable
from .tables import (
    TABLE1_METRICS,
    Sureness,
    competing,
    merged_verdicts,
    resolve_layout,
    table1_caption,
    table1_cells,
    table1_latex,
    table1_markdown,
    table2_caption,
    table2_frame,
    table2_latex,
)


@dataclass
class Report:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be reported, one line each


def load_per_case(run_dir: Path, problems: list[str]) -> pd.DataFrame:
    """``per_case.csv`` checked for the columns the report needs; a missing metric is a problem, not fatal."""
    path = RunDir(run_dir).require_per_case()
    try:
        df = migrate_per_case(pd.read_csv(path, dtype={"case_id": str, "subject": str, "reason": str, "skipped": str}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read as CSV: {exc}") from None
    if df.empty:
        raise DataError(f"{path} has no cases: nothing to report (the run scored no pair)")
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


def write_report(run_dirs: Sequence[Path], out_dir: Path | None = None, options: ReportOptions | None = None) -> Report:
    """Write Table 1/2 (LaTeX, Markdown, CSV), stats.csv, figures and the paper comparison.

    Raises DataError when a run directory has no usable ``per_case.csv``; every other problem (a missing
    metric column, a method whose cases all failed, a figure that cannot be drawn) is listed in
    ``Report.problems`` and the rest is still written.
    """
    options = options or ReportOptions()
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise DataError("no run directory given")
    report = Report(Path(out_dir) if out_dir else RunDir(run_dirs[0]).report)
    resolve_layout(options.layout, 1, options.per_structure)  # checks the value before any work
    run_dirs, frames, manifests = _read_runs(run_dirs, report.problems)
    per_case = merge_runs(run_dirs, frames, manifests, report.problems)
    if options.references is not None:  # named by the user: a typo is an error, as for every other name
        _check_references(options.references, per_case)
    if options.by is not None:
        _check_group(options.by, per_case, manifests)
    prepare_output_dir(report.out_dir)
    study = options.study
    names = Names.from_manifests(manifests, study)
    references = options.resolved_references()
    for (dataset, method), reason in failed_methods(per_case).items():
        report.problems.append(
            f"{method} on {dataset}: all {int(((per_case['method'] == method) & (per_case['dataset'] == dataset)).sum())} cases failed ({reason})"
        )
    columns = TABLE1_METRICS + (["ndv"] if options.ndv else [])  # NDV beside NJD where asked
    metrics = [m for m in (with_structures(columns, list(per_case.columns)) if options.per_structure else columns) if m in per_case]
    if options.ndv and "ndv" not in per_case:
        report.problems.append("--ndv: these runs have no ndv column (run before regbench measured NDV): Table 1 has no NDV")
    # Synthetic data knows the true motion: its flow error goes beside the paper's columns, since Dice and MSE
    # also reward flows that match intensity edges beyond the true motion (issue #11).
    with_epe = "epe_mm" in per_case and bool(pd.to_numeric(per_case["epe_mm"], errors="coerce").notna().any())
    metrics += ["epe_mm"] if with_epe else []
    with_tre = "tre_mm" in per_case and bool(pd.to_numeric(per_case["tre_mm"], errors="coerce").notna().any())  # landmarks
    metrics += ["tre_mm"] if with_tre else []
    verdicts = dataset_verdicts(run_dirs, frames)
    unconverged = {m for per_dataset in verdicts.values() for m, v in per_dataset.items() if not v.converged}

    out = report.out_dir
    suspects = {m: what for manifest in manifests for m, what in manifest.input_suspects().items() if m in set(per_case["method"])}
    table1 = Table1Inputs(manifests, names, verdicts, unconverged, suspects, metrics, with_epe, with_tre)
    main = _table1(per_case, table1, options)
    averaged = main.averaged  # one row per pair: tests and figures weigh pairs, not seeds
    for (dataset, method), (n, total) in main.partial.items():
        report.problems.append(
            f"{method} on {dataset} scored {n} of the table's {total} pairs: its row is marked § and left out of bold and "
            "of the paired tests (run it again with the same settings to score the rest)"
        )
    run_dims = {manifest.dims for manifest in manifests}
    for reference in references:
        if reference in set(per_case["method"]):
            continue
        if reference in METHODS.names() and options.references is None and not run_dims & set(METHODS.meta(reference).dims):
            # The study's reference cannot register these images: say so once, not as if it were forgotten.
            report.problems.append(
                f"the study's reference method {reference!r} registers {'/'.join(f'{d}-D' for d in METHODS.meta(reference).dims)} images "
                f"and this run's are {'/'.join(f'{d}-D' for d in sorted(run_dims))}: no statistics against a reference (report --against NAME picks one)"
            )
        else:
            report.problems.append(f"reference method {reference!r} is not in the run: no statistics against it")
    report.written += [
        _write(out / "stats.csv", main.stats.to_csv(index=False)),
        _write(out / "ranks.csv", main.ranks.to_csv(index=False)),
        _write(out / "friedman.csv", friedman_frame(main.friedman).to_csv(index=False)),
        *main.write(out, "table1", options.caption, options.label),
    ]
    _note_unconverged(report, verdicts, unconverged, manifests, names)
    for method, what in suspects.items():
        report.problems.append(f"{method}: its fields score clearly better read as {what} (its row is marked ¶; the run's warning says by how much)")
    if options.by is not None:
        _write_by_group(report, per_case, table1, options)
    table2 = table2_frame(per_case, merged_verdicts(verdicts, names), study.baselines)
    table2_text = table2_caption(manifests, trained=bool(verdicts and any(verdicts.values())), untimed=untimed_methods(per_case, names))
    report.written += [
        _write(out / "table2.tex", table2_latex(table2, table2_text, options.label + "-speed", options.digits, names)),
        _write(out / "table2.csv", table2.to_csv(index=False)),
    ]
    from .figures import load_sweeps

    sweeps = load_sweeps(run_dirs)  # read once: the trade-off table and its figure
    _write_tradeoff(report, per_case, sweeps, names)
    stress = _write_stress(report, per_case, run_dirs, frames, manifests, names, options)
    if has_kit_columns(per_case):  # the run also scored the Learn2Reg kit's convention: its tables, never Table 1's columns
        _write_kit_tables(report, averaged, names, options, manifests, run_dirs)
    if options.compare_paper:
        _write_paper_comparison(report, main.cells, main.datasets, options, names)
    if options.figures:
        _draw_figures(report, run_dirs, per_case, averaged, sweeps, seeded=bool((main.spread["n_seeds"] > 1).any()), names=names, stress=stress)
        _draw_rank_figures(report, main.ranks, main.friedman, names)
    if options.html:
        from .html import write_page

        page = _html_page(report, run_dirs, manifests, per_case, main, table2, table2_text, names, metrics, options, stress)
        report.written.append(write_page(out, page))
    return report


def _html_page(
    report: Report,
    run_dirs: Sequence[Path],
    manifests: Sequence[Manifest],
    per_case: pd.DataFrame,
    main: Table1,
    table2: pd.DataFrame,
    table2_text: str,
    names: Names,
    metrics: Sequence[str],
    options: ReportOptions,
    stress: Mapping[str, tuple[str, pd.DataFrame, Names]] | None = None,
) -> Any:
    """index.html's content (regbench.html) from what the report wrote: Table 1 and 2 with their marks and
    captions, the other tables from their CSVs, the PNG figures, every case, the first run's example pairs'
    pictures (with figures only: they are drawn) and each run's manifest."""
    from .html import HtmlCell, HtmlPage, HtmlTable, frame_table, number, text_cell
    from .tables import caption_text, table1_grid, table2_texts

    i = main.inputs
    headers, grid = table1_grid(main.cells, main.datasets, i.metrics, i.unconverged, i.names, i.suspects)
    rows1 = [
        [
            text_cell(label, index),
            *(
                text_cell("")
                if c is None
                else HtmlCell(
                    ("<b>{}</b>" if c.best else "{}").format(html_escape(c.main)) + html_escape(f" {c.bracket}" if c.bracket else "") + html_escape(c.mark),
                    number(c.mean),
                    f"{label}: {h}",
                )
                for c, h in zip(row, headers)
            ),
        ]
        for index, (label, row) in enumerate(grid)
    ]
    rows2 = []
    for index, rec in enumerate(table2.itertuples()):
        params, time, epochs, minutes = table2_texts(rec, options.digits)
        trained = pd.notna(rec.epochs)
        rows2.append(
            [
                text_cell(names.method(rec.method), index),
                text_cell(params, number(rec.params)),
                text_cell(time, number(rec.time_ms_mean)),
                text_cell(epochs, number(rec.epochs)),
                text_cell(minutes, number(rec.train_minutes) if trained else None),
            ]
        )
    tables = [
        HtmlTable("table1", "Table 1", ["Method", *headers], rows1, caption_text(options.caption or main.caption)),
        HtmlTable("table2", "Table 2", ["Method", "Params", "Time (ms/pair)", "Epochs", "Training (min)"], rows2, caption_text(table2_text)),
    ]
    described = {
        "stats": "Statistics (stats.csv): paired tests against the reference",
        "ranks": "Rank stability (ranks.csv)",
        "friedman": "Friedman tests (friedman.csv)",
    }
    for path in report.written:
        if path.suffix == ".csv" and path.parent == report.out_dir and path.stem not in ("table1", "table2"):
            frame = pd.read_csv(path)
            if len(frame):
                tables.append(frame_table(frame, f"csv-{path.stem}", described.get(path.stem, f"{path.stem.replace('_', ' ')} ({path.name})")))
    examples: dict[str, list[tuple[str, bytes]]] = {}
    if options.figures:
        from .figures import case_panels

        folder = RunDir(run_dirs[0])
        for pair_file in folder.example_pairs():
            views = case_panels(run_dirs[0], pair_file, names)
            if views:
                examples[folder.example_case(pair_file)] = views
    shown = [m for m in [*metrics, "ndv", "sdlogj", "time_s"] if m in per_case]
    charts = [
        ("Each method's mean Dice against its mean SDlogJ over each dataset's cases: the accuracy–regularity overview.", _overview_chart(main.averaged, names)),
        ("Validation Dice per epoch of each training (a line per method and seed, from models/*/history.csv).", _training_chart(run_dirs, names)),
        *(
            (f"Dice against {axis} (stress_{level}.csv; dashed: retrained per level).", _stress_chart(frame, axis, stress_names))
            for level, (axis, frame, stress_names) in (stress or {}).items()
        ),
    ]
    return HtmlPage(
        charts=[(caption, svg) for caption, svg in charts if svg],
        # Named by what the runs hold, not where they lie: a copied run directory gives the same page.
        title="regbench report: " + ", ".join(f"{m.dataset_display_name or m.dataset} ({m.profile})" for m in manifests),
        tables=tables,
        figures=[p for p in report.written if p.suffix == ".png"],
        per_case=per_case,
        metrics=list(dict.fromkeys(shown)),
        names=names,
        examples=examples,
        provenance=[
            (f"Run {i}: {m.dataset_display_name or m.dataset} ({m.profile})", m.provenance(), m.method_provenance()) for i, m in enumerate(manifests, start=1)
        ],
        no_pictures=(
            "The example pairs' pictures are drawn with the figures, and this report was written without them: `regbench report RUN` draws both."
            if not options.figures
            else "This run kept no example pairs (example_pairs: 0): no pictures."
        ),
    )


@dataclass(frozen=True)
class Table1Inputs:
    """What every Table 1 of a report shares (the whole one and each by group): the runs' records and the columns."""

    manifests: Sequence[Manifest]
    names: Names
    verdicts: dict[str, dict[str, Verdict]]
    unconverged: set[str]
    suspects: dict[str, str]
    metrics: list[str]
    with_epe: bool
    with_tre: bool


@dataclass
class Table1:
    """One Table 1 and the statistics behind its marks and its caption."""

    inputs: Table1Inputs
    averaged: pd.DataFrame  # the per-case rows, one per pair (seed-averaged)
    partial: dict[tuple[str, str], tuple[int, int]]  # regbench.aggregate.partial_methods of the rows
    datasets: list[str]
    cells: pd.DataFrame
    spread: pd.DataFrame
    stats: pd.DataFrame
    ranks: pd.DataFrame
    friedman: list[Friedman]
    caption: str
    layout: str

    def write(self, out: Path, stem: str, caption: str | None, label: str) -> list[Path]:
        """STEM.tex, STEM.md and STEM.csv in ``out``."""
        i = self.inputs
        return [
            _write(
                out / f"{stem}.tex",
                table1_latex(self.cells, self.datasets, i.metrics, caption or self.caption, label, self.layout, i.unconverged, i.names, i.suspects),
            ),
            _write(out / f"{stem}.md", table1_markdown(self.cells, self.datasets, i.metrics, i.unconverged, i.names, i.suspects, caption or self.caption)),
            _write(out / f"{stem}.csv", self.cells.to_csv(index=False)),
        ]


def _table1(per_case: pd.DataFrame, inputs: Table1Inputs, options: ReportOptions) -> Table1:
    """Table 1 of ``per_case`` (one column group per value of its ``dataset`` column): the paired tests over units
    against the references, the rank bootstrap and Friedman tests, the cells, bold and marks, the caption."""
    study, metrics = options.study, inputs.metrics
    datasets = list(dict.fromkeys(per_case["dataset"]))
    references = options.resolved_references()
    summaries = {d: summary_frame(per_case_frame(per_case[per_case["dataset"] == d].to_dict("records"))) for d in datasets}
    averaged = seed_averaged(per_case)  # one row per pair: tests weigh pairs, not seeds
    spread = seed_spread(per_case, metrics)
    partial = partial_methods(per_case)
    compared = averaged[[(d, m) not in partial for d, m in zip(averaged["dataset"], averaged["method"])]]
    stats = paired_tests(compared, references, metrics, options.alpha, options.seed)
    marks = significance_marks(stats, references[0]) if references else {}

    def competitors(dataset: str, metric: str, methods: Sequence[str]) -> list[str]:
        return competing(methods, metric, study.baselines, [m for d, m in partial if d == dataset])

    ranks = rank_bootstrap(compared, metrics, competitors, options.digits, options.resamples, options.seed)
    friedman = friedman_tests(compared, metrics, competitors, options.alpha)
    cells = table1_cells(summaries, metrics, options.digits, marks, spread, study.baselines, partial)
    sureness = Sureness(
        units={d: (unit_name(rows), int(units(rows).nunique())) for d, rows in compared.groupby("dataset", sort=False)},
        fewest=min_units(options.alpha),
        untestable=list(untestable(stats, references[0])) if references else [],
        out_of_reach=out_of_reach(stats, references[0], options.alpha) if references else {},
        best_shares=best_shares(ranks),
        bold=[(r.dataset, r.method, r.metric) for r in cells[cells["best"]].itertuples()] if len(cells) else [],
        n_resamples=options.resamples,
    )
    names = inputs.names
    caption = table1_caption(
        per_case,
        inputs.manifests,
        names,
        inputs.verdicts,
        spread,
        with_epe=inputs.with_epe,
        with_tre=inputs.with_tre,
        reference=names.method(references[0]) if references and references[0] in set(compared["method"]) else None,
        alpha=options.alpha,
        partial=partial,
        with_ndv="ndv" in metrics,
        suspects=inputs.suspects,
        sureness=sureness,
    )
    layout = resolve_layout(options.layout, len(datasets), options.per_structure)
    return Table1(inputs, averaged, partial, datasets, cells, spread, stats, ranks, friedman, caption, layout)


GROUP_SEPARATOR = " | "  # a group's column key in the grouped Table 1: DATASET | VALUE


def _write_by_group(report: Report, per_case: pd.DataFrame, inputs: Table1Inputs, options: ReportOptions) -> None:
    """table1_by_NAME.{tex,md,csv}, stats_by_NAME.csv and ranks_by_NAME.csv: Table 1 with one column group per
    (dataset, value of the group attribute NAME); tests, ranks and units within each group."""
    assert options.by is not None
    column = group_column(options.by)
    values = per_case[column].astype(object).where(per_case[column].notna())
    missing = int(values.isna().sum())
    if missing:
        report.problems.append(f"--by {options.by}: {missing} case rows have no {options.by}: left out of the tables by {options.by}")
    rows = per_case[values.notna()]
    keys = rows["dataset"].astype(str) + GROUP_SEPARATOR + values[values.notna()].astype(str)
    grouped = rows.assign(dataset=keys).sort_values("dataset", kind="stable")
    names = inputs.names
    display = {k: f"{names.dataset(k.split(GROUP_SEPARATOR)[0])}: {k.split(GROUP_SEPARATOR)[1]}" for k in dict.fromkeys(keys)}
    by_names = replace(names, datasets={**names.datasets, **display})
    table = _table1(grouped, replace(inputs, names=by_names), options)

    def ungrouped(frame: pd.DataFrame) -> pd.DataFrame:
        """The dataset column back to the dataset's name, the group's value in a column of its own after it."""
        split = frame["dataset"].astype(str).str.split(GROUP_SEPARATOR, n=1, regex=False)
        out = frame.assign(dataset=split.str[0])
        out.insert(1, str(options.by), split.str[1])
        return out

    out, stem = report.out_dir, f"by_{options.by}"
    report.written += [
        *table.write(out, f"table1_{stem}", None, f"{options.label}-{stem}"),
        _write(out / f"stats_{stem}.csv", ungrouped(table.stats).to_csv(index=False)),
        _write(out / f"ranks_{stem}.csv", ungrouped(table.ranks).to_csv(index=False)),
    ]


def _write_tradeoff(report: Report, per_case: pd.DataFrame, sweeps: pd.DataFrame, names: Names) -> None:
    """tradeoff.{csv,md,tex}: every method against each λ front, the accuracy–regularity curve (ARC), the runs have
    (a declared family of two or more methods, a method's sweep curve), where they have one; arc.{csv,md,tex}: the
    area under each of those curves over their common range."""
    families = names.family_members(list(dict.fromkeys(per_case["method"])))
    columns = {method: column for method, (column, _) in names.sweep_parameters.items()}
    frame = tradeoff_frame(per_case, sweeps, families, columns)
    if len(frame):
        report.written += _table_files(report.out_dir, "tradeoff", frame, tradeoff_markdown(frame, names.method), tradeoff_latex(frame, names.method))
    areas = arc_frame(per_case, sweeps, families, columns)
    if len(areas):
        report.written += _table_files(report.out_dir, "arc", areas, arc_markdown(areas, names.method), arc_latex(areas, names.method))


def _write_stress(
    report: Report,
    per_case: pd.DataFrame,
    run_dirs: Sequence[Path],
    frames: Sequence[pd.DataFrame],
    manifests: Sequence[Manifest],
    names: Names,
    options: ReportOptions,
) -> dict[str, tuple[str, pd.DataFrame, Names]]:
    """stress_LEVEL.{csv,md,tex} for each level the runs' datasets declare and their cases carry (regbench.levels),
    with a row per method retrained per level where a run did (``retrain_per_level``); returns level → (its axis
    label, its frame, the names with the retrained rows') for the figures."""
    from .levels import RETRAINED_NAME, RETRAINED_SUFFIX, level_frame, stress_latex, stress_markdown, stress_order

    axes: dict[str, str] = {}
    for manifest in manifests:
        for level, axis in manifest.levels.items():
            axes.setdefault(level, axis)
    retrained = [_retrained_cases(run_dir, frame, manifest, report.problems) for run_dir, frame, manifest in zip(run_dirs, frames, manifests)]
    cases = pd.concat([per_case, *(r for r in retrained if len(r))], ignore_index=True) if any(len(r) for r in retrained) else per_case
    stress_names = replace(names, methods={**names.methods})
    for key in dict.fromkeys(cases["method"]) if len(cases) else ():
        if key.endswith(RETRAINED_SUFFIX):
            stress_names.methods[key] = f"{names.method(key.removesuffix(RETRAINED_SUFFIX))} ({RETRAINED_NAME})"
    drawn = {}
    methods = stress_order(cases["method"]) if len(cases) else []
    for level, axis in axes.items():
        frame = level_frame(cases, level)
        if frame.empty:
            continue
        report.written += _table_files(
            report.out_dir,
            f"stress_{level}",
            frame,
            stress_markdown(frame, level, axis, methods, stress_names.method, names.dataset),
            stress_latex(frame, level, axis, methods, stress_names.method, names.dataset, f"{options.label}-stress-{level}"),
        )
        drawn[level] = (axis, frame, stress_names)
    return drawn


def _overview_chart(averaged: pd.DataFrame, names: Names) -> str:
    """Dice against SDlogJ, a dot per method and dataset (its mean over the scored cases), a colour per dataset."""
    from .html import Series, chart_svg

    ok = averaged[averaged["status"] == "ok"] if "status" in averaged else averaged
    if not {"dice", "sdlogj"} <= set(ok.columns) or ok.empty:
        return ""
    means = ok.groupby(["dataset", "method"], sort=False)[["dice", "sdlogj"]].mean().reset_index()
    series = []
    for dataset, rows in means.groupby("dataset", sort=False):
        label = names.dataset(str(dataset))
        series.append(
            Series(
                label,
                [
                    (r.sdlogj, 100 * r.dice, f"{names.method(r.method)} ({label}): Dice (%) {100 * r.dice:.4g}, SDlogJ {r.sdlogj:.4g}")
                    for r in rows.itertuples()
                ],
            )
        )
    return chart_svg(series, "SDlogJ", "Dice (%)", joined=False)


def _training_chart(run_dirs: Sequence[Path], names: Names) -> str:
    """Validation Dice per epoch, a line per trained method and seed."""
    from .html import Series, chart_svg

    series = []
    for run_dir in run_dirs:
        for (method, seed), path in RunDir(run_dir).history_files().items():
            history = pd.read_csv(path)
            if "val_dice" not in history or "epoch" not in history:
                continue
            label = names.method(method) + ("" if seed is None else f" (seed {seed})")
            points = [
                (float(e), 100 * float(v), f"{label}: epoch {int(e)}, validation Dice {100 * float(v):.2f} %")
                for e, v in zip(history["epoch"], history["val_dice"])
                if pd.notna(v)
            ]
            series.append(Series(label, points))
    return chart_svg(series, "epoch", "validation Dice (%)")


def _stress_chart(frame: pd.DataFrame, axis: str, names: Names) -> str:
    """Dice against a level of the test data, a line per method (regbench.levels.level_frame), a retrained one dashed."""
    from .html import Series, chart_svg
    from .levels import retrained_base, stress_order

    if "dice_mean" not in frame:
        return ""
    methods = stress_order(frame["method"])
    series = []
    for method in methods:
        rows = frame[frame["method"] == method].sort_values("level")
        label = names.method(method)
        points = [
            (float(r.level), 100 * float(r.dice_mean), f"{label}: {axis} {r.level:g}, Dice {100 * float(r.dice_mean):.2f} % over {r.n_pairs} pairs")
            for r in rows.itertuples()
        ]
        series.append(Series(label, points, dashed=retrained_base(method) is not None))
    return chart_svg(series, axis, "Dice (%)")


def _retrained_cases(run_dir: Path, own: pd.DataFrame, manifest: Manifest, problems: list[str]) -> pd.DataFrame:
    """The run's methods retrained per level (its manifest's ``retrained_per_level``), from the runs that trained
    them at each level value (regbench.levels.retrained_rows); a level run not yet scored is a problem line."""
    from .levels import retrained_rows

    methods, runs = manifest.retrained()
    if not methods:
        return pd.DataFrame()
    loaded: dict[str, dict[str, pd.DataFrame | None]] = {}
    for level, by_value in runs.items():
        for value, where in by_value.items():
            if where == ".":
                loaded.setdefault(level, {})[value] = None
                continue
            level_run = Path(run_dir) / where
            if not RunDir(level_run).per_case.is_file():
                problems.append(
                    f"{', '.join(methods)} retrained at {level} {value}: {level_run} has no scored cases yet (run the same command again to "
                    "train and score them there): the stress table's retrained rows leave that level out"
                )
                continue
            loaded.setdefault(level, {})[value] = load_per_case(level_run, problems)
    return retrained_rows(own, loaded, methods)


def _write_kit_tables(
    report: Report, averaged: pd.DataFrame, names: Names, options: ReportOptions, manifests: Sequence[Manifest], run_dirs: Sequence[Path]
) -> None:
    """learn2reg.{csv,md,tex} (the kit's aggregates) and learn2reg_rank.{csv,md,tex} (its rank table: per-point TRE
    from the runs' per_point.csv, each dataset's task penalties from its dataset options)."""
    out = report.out_dir
    dataset_options = [m.fingerprint.get("dataset_options") or {} for m in manifests]
    rule = sdlogj_rule(dataset_options)
    tasks = {str(m.dataset): str(o["task"]) for m, o in zip(manifests, dataset_options) if o.get("task")}
    frames = [pd.read_csv(path, dtype={"case_id": str}) for d in run_dirs if (path := RunDir(d).per_point).is_file()]
    points = point_values(pd.concat(frames, ignore_index=True), POINT_TRE) if frames else None
    aggregates = kit_aggregates(averaged)
    ranks, notes = kit_rank(averaged, options.alpha, points, tasks)
    report.problems += notes
    report.written += _table_files(
        out,
        "learn2reg",
        aggregates,
        aggregates_markdown(aggregates, names, rule=rule),
        aggregates_latex(aggregates, names, options.label + "-learn2reg", rule=rule),
    )
    if len(ranks):
        report.written += _table_files(
            out,
            "learn2reg_rank",
            ranks,
            rank_markdown(ranks, names, notes, rule=rule),
            rank_latex(ranks, names, notes, options.label + "-learn2reg-rank", rule=rule),
        )


def untimed_methods(per_case: pd.DataFrame, names: Names) -> list[str]:
    """Display names of the methods whose scored cases carry no time (they read fields computed elsewhere)."""
    if "time_s" not in per_case:
        return []
    ok = per_case[per_case["status"] == "ok"]
    times = pd.to_numeric(ok["time_s"], errors="coerce")
    return [names.method(m) for m, group in times.groupby(ok["method"], sort=False) if group.isna().all()]


def _check_references(references: Sequence[str], per_case: pd.DataFrame) -> None:
    """Each named reference is a method of the report, else one ConfigError with a did-you-mean."""
    import difflib

    methods = sorted(set(per_case["method"]))
    for reference in references:
        if reference not in methods:
            close = difflib.get_close_matches(reference, methods, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--against {reference!r} is not a method of this report{hint}; its methods: {', '.join(methods)}")


def _check_group(name: str, per_case: pd.DataFrame, manifests: Sequence[Manifest]) -> None:
    """``--by NAME`` names a group attribute the cases carry, else one ConfigError saying which they carry."""
    import difflib

    if group_column(name) in per_case and per_case[group_column(name)].notna().any():
        return
    carried = sorted(set(group_names(list(per_case.columns))) | {g for m in manifests for g in m.groups})
    if not carried:
        raise ConfigError(
            f"--by {name!r}: these runs' cases carry no group attribute (a dataset declares them, e.g. ACDC's 'group' from "
            "Info.cfg, M&M's 'vendor' and 'centre'; cases stored before regbench recorded them have none: run into a new directory)"
        )
    close = difflib.get_close_matches(name, carried, n=1)
    raise ConfigError(f"--by {name!r} is not a group attribute of these runs{f' (did you mean {close[0]!r}?)' if close else ''}; theirs: {', '.join(carried)}")


def _read_runs(run_dirs: Sequence[Path], problems: list[str]) -> tuple[list[Path], list[pd.DataFrame], list[Manifest]]:
    """Each run directory once (a repeat is a problem line), with its per-case table and manifest."""
    unique: dict[Path, Path] = {}
    for run_dir in run_dirs:
        if run_dir.resolve() in unique:
            problems.append(f"{run_dir} is given more than once: read once")
        unique.setdefault(run_dir.resolve(), run_dir)
    kept = list(unique.values())
    return kept, [load_per_case(d, problems) for d in kept], [read_manifest_for_report(d, problems) for d in kept]


def _note_unconverged(report: Report, verdicts: dict[str, dict[str, Verdict]], unconverged: set[str], manifests: Sequence[Manifest], names: Names) -> None:
    """One problem line per method whose training did not converge, with how to train longer."""
    profiles = {str(m.profile) for m in manifests}
    longer = "" if profiles == {"reproduce"} else ", or --profile reproduce"  # no advice to use the profile just run
    for method in sorted(unconverged, key=method_sort_key):
        why = "; ".join(f"{names.dataset(d)}: {v[method].reason}" for d, v in verdicts.items() if method in v and not v[method].converged)
        report.problems.append(
            f"{method} did not converge ({why}): its numbers say how far it got, not how good it is "
            f"(train longer: method_options {{{method}: {{epochs: N}}}}{longer})"
        )


def _write_paper_comparison(report: Report, cells: pd.DataFrame, datasets: Sequence[str], options: ReportOptions, names: Names) -> None:
    """compare_paper.csv/.md: this run's Table 1 cells beside the study's published numbers."""
    study = options.study
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
        return
    report.written += [
        _write(report.out_dir / "compare_paper.csv", comparison.to_csv(index=False)),
        _write(report.out_dir / "compare_paper.md", comparison_markdown(comparison, options.digits, names)),
    ]


def _draw_figures(
    report: Report,
    run_dirs: Sequence[Path],
    per_case: pd.DataFrame,
    averaged: pd.DataFrame,
    sweeps: pd.DataFrame,
    seeded: bool,
    names: Names,
    stress: Mapping[str, tuple[str, pd.DataFrame, Names]] | None = None,
) -> None:
    """figures/*.png|pdf; one figure failing is a problem line, never the loss of the others."""
    from . import figures

    ok = averaged[averaged["status"] == "ok"]
    drawings: list[tuple[str, Callable[[Path], list[Path]]]] = []
    if seeded:
        drawings.append(("seeds", lambda stem: figures.seed_means(per_case[per_case["status"] == "ok"], stem, names)))
    for level, (axis, frame, stress_names) in (stress or {}).items():
        drawings.append((f"stress_{level}", functools.partial(figures.stress, frame, axis, names=stress_names)))
    for name, draw in [
        *drawings,
        ("boxplots", lambda stem: figures.boxplots(ok, [m for m in TABLE1_METRICS if m in ok], stem, names)),
        ("tradeoff", lambda stem: figures.tradeoff(ok, sweeps, stem, names, per_seed=per_case[per_case["status"] == "ok"])),
        ("qualitative", lambda stem: figures.qualitative(run_dirs[0], stem, names)),
        ("training", lambda stem: figures.training_curves(run_dirs, stem, list(per_case["method"].unique()), names)),
    ]:
        try:
            paths = draw(report.out_dir / "figures" / name)
            if paths:
                report.written += paths
            else:
                report.problems.append(f"figure {name}: nothing to draw in this run")
        except Exception as exc:  # one figure failing must not lose the others
            report.problems.append(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}")


def _draw_rank_figures(report: Report, ranks: pd.DataFrame, friedman: Sequence[Friedman], names: Names) -> None:
    """figures/ranks (rank frequencies over bootstrap resamples) and figures/critical_difference (Friedman's mean
    ranks with Nemenyi's cliques) where the runs have them; one failing is a problem line."""
    from . import figures

    for name, draw in [
        ("ranks", lambda stem: figures.rank_frequencies(ranks, stem, names)),
        ("critical_difference", lambda stem: figures.critical_difference(friedman, stem, names)),
    ]:
        try:
            report.written += draw(report.out_dir / "figures" / name)
        except Exception as exc:  # one figure failing must not lose the others
            report.problems.append(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}")


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


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def _table_files(out_dir: Path, stem: str, frame: pd.DataFrame, markdown: str, latex: str) -> list[Path]:
    """One report table in its three forms: STEM.csv (the frame), STEM.md and STEM.tex, in that order."""
    return [_write(out_dir / f"{stem}.csv", frame.to_csv(index=False)), _write(out_dir / f"{stem}.md", markdown), _write(out_dir / f"{stem}.tex", latex)]


def write_run_tables(run_dir: Path, rows: Sequence[dict[str, Any]], labels: Mapping[str, int] | None = None) -> dict[str, Path]:
    """per_case.csv and summary.csv of a run directory (each written atomically), with a Dice and an HD95 column
    per label of ``labels`` (the run's). summary.csv carries each trained method's verdict: converged, epochs,
    train_minutes, convergence_gain (empty for other methods)."""
    folder = RunDir(run_dir)
    rows, points = split_point_values(rows)
    per_case = per_case_frame(rows, labels)
    paths = {"per_case": folder.per_case, "summary": folder.summary}
    atomic_write_text(paths["per_case"], per_case.to_csv(index=False))
    if len(points):
        paths["per_point"] = folder.per_point
        atomic_write_text(paths["per_point"], points.to_csv(index=False))
    summary = summary_frame(per_case)
    verdicts = run_verdicts(run_dir)
    for column in ("converged", "epochs", "train_minutes", "convergence_gain"):
        summary[column] = [verdicts[m].as_columns()[column] if m in verdicts else pd.NA for m in summary["method"]] if len(summary) else []
    summary["epochs"] = summary["epochs"].astype("Int64")
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    return paths
