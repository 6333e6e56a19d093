"""Rendering: Table 1 (accuracy and smoothness) and Table 2 (parameters, speed, training) as LaTeX, Markdown and
CSV cells, and the captions built from what the runs recorded (labels, HD95 convention, Jacobian scheme,
training verdicts). Input: summaries from regbench.aggregate; output: text."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import unlabelled_cases
from .convergence import CONVERGENCE_RULE, Verdict, combine
from .errors import ConfigError
from .metrics import spec_of
from .naming import Names
from .registry import method_sort_key
from .report_options import LAYOUTS
from .rundir import Manifest, label_keys
from .study import DEFAULT_STUDY

TABLE1_METRICS = ["dice", "hd95", "mse", "njd"]


DASH = "–"


LATEX_DASH = "--"


def format_params(n: Any) -> str:
    """1968002 → '1.97M'; methods without learned parameters → '–' (not 0)."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return DASH
    n = int(n)
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


# Characters of display names and captions that pdflatex's default encoding cannot set ("IO-λ" failed to compile).
LATEX_SYMBOLS = {"λ": r"$\lambda$", "σ": r"$\sigma$", "α": r"$\alpha$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(a, b)
    for a, b in LATEX_SYMBOLS.items():
        text = text.replace(a, b)
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown (pipe) table of plain-text cells, no trailing newline."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def booktabs_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str, label: str, spec: str) -> str:
    """A LaTeX table (booktabs rules) of plain-text cells, every cell and the caption escaped."""
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(caption)}}}",
            rf"\label{{{label}}}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(latex_escape(h) for h in headers) + r" \\",
            r"\midrule",
            *(" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows),
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


DEFORMATION_METRICS = {"njd", "sdlogj", "ndv"}


DAGGER = "†"
DDAGGER = "‡"  # training did not converge (regbench.convergence)
SUSPECT_MARK = "¶"  # its inputs read better under another convention (a method's probe, e.g. the fields method's)
PARTIAL_MARK = r"\S"  # scored on fewer pairs than its table: not bold, not tested
MARK_TEXT = {r"\dagger": DAGGER, PARTIAL_MARK: "§"}  # a cell's LaTeX mark as Markdown prints it


def _order(methods: Sequence[str]) -> list[str]:
    return sorted(dict.fromkeys(methods), key=method_sort_key)


def competing(methods: Sequence[str], metric: str, baselines: Collection[str], left_out: Collection[str] = ()) -> list[str]:
    """The methods that compete for a column's best: not the baselines on a deformation metric (they do not
    deform), never a row over fewer pairs than its table (``left_out``)."""
    return [m for m in methods if not (m in baselines and metric in DEFORMATION_METRICS) and m not in left_out]


def _best(summary: pd.DataFrame, metric: str, baselines: Collection[str], left_out: Collection[str] = ()) -> float | None:
    rows = summary[summary["method"].isin(competing(list(summary["method"]), metric, baselines, left_out))]
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
    partial: Mapping[tuple[str, str], tuple[int, int]] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, method, metric): numbers in table units, the printed text, bold and mark; with
    several training seeds, ``seed_std`` (the std of the method's mean over its seeds) follows in brackets.
    ``baselines`` (methods that do not deform) print '-' for the deformation metrics. ``partial`` (dataset,
    method) pairs (:func:`regbench.aggregate.partial_methods`) are marked :data:`PARTIAL_MARK` and never bold."""
    partial = partial or {}
    spread = spread.set_index(["dataset", "method"]) if spread is not None and len(spread) else None
    rows = []
    for dataset, summary in summaries.items():
        for metric in metrics:
            if f"{metric}_mean" not in summary:
                continue
            spec = spec_of(metric)
            best = _best(summary, metric, baselines, [m for d, m in partial if d == dataset])
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
                    key = (dataset, rec.method)
                    row["best"] = key not in partial and best is not None and round(mean * spec.table_scale, digits) == round(best * spec.table_scale, digits)
                    row["mark"] = PARTIAL_MARK if key in partial else row["mark"]
                    if spread is not None and key in spread.index and spread.loc[key, "n_seeds"] > 1 and f"{metric}_seed_std" in spread:
                        row["n_seeds"] = int(spread.loc[key, "n_seeds"])
                        row["seed_std"] = spread.loc[key, f"{metric}_seed_std"] * spec.table_scale
                        row["text"] += f" [±{row['seed_std']:.{digits}f}]"
                rows.append(row)
    return pd.DataFrame(rows)


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
    suspects: Collection[str] = (),
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
        out = [latex_escape(names.method(method)) + (r"$^{\ddagger}$" if method in unconverged else "") + (r"$^{\P}$" if method in suspects else "")]
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
                    text += rf"$^{{{cell['mark']}}}$"
                out.append(text)
        lines.append(" & ".join(out) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}" + ("}" if layout in ("fit", "wide") else ""), rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


# A caption's LaTeX as plain text (Markdown tables carry the same caption as the .tex).
CAPTION_TEXT = [
    (r"$^{\dagger}$", DAGGER),
    (r"$^{\ddagger}$", DDAGGER),
    (r"$^{\P}$", SUSPECT_MARK),
    (r"$^{\S}$", "§"),
    (r"$\pm$", "±"),
    (r"\%", "%"),
    (r"\&", "&"),
    (r"\_", "_"),
    (r"\#", "#"),
    (r"\{", "{"),
    (r"\}", "}"),
    (r"\textbackslash{}", "\\"),
    *((math, symbol) for symbol, math in LATEX_SYMBOLS.items()),
]


def caption_text(caption: str) -> str:
    """A LaTeX caption of these tables as plain text: marks and symbols as characters, math delimiters dropped."""
    caption = caption.replace(r"\$", "\0")  # a dollar sign of the text, apart from math's delimiters
    for latex, text in CAPTION_TEXT:
        caption = caption.replace(latex, text)
    return caption.replace("$", "").replace("\0", "$")


@dataclass(frozen=True)
class Table1Cell:
    """One printed cell of Table 1: its number (``main``, the mean ± std), the seeds' spread in brackets, bold,
    its mark as text and the mean to sort by (NaN where it prints none)."""

    main: str
    bracket: str
    best: bool
    mark: str
    mean: float


def table1_grid(
    cells: pd.DataFrame,
    datasets: Sequence[str],
    metrics: Sequence[str],
    unconverged: Collection[str] = (),
    names: Names | None = None,
    suspects: Collection[str] = (),
) -> tuple[list[str], list[tuple[str, list[Table1Cell | None]]]]:
    """Table 1 as the Markdown and HTML reports print it: the column headers (a dataset's name before each
    metric where there are several) and per method (paper order) its printed name, marks included, and its cells
    (None where it has no value)."""
    names = names or Names()
    methods = _order(cells["method"])
    metrics = [m for m in metrics if m in set(cells["metric"])]
    index = cells.set_index(["dataset", "method", "metric"])
    headers = [
        names.metric(metric).label if len(datasets) == 1 else f"{names.dataset(dataset)} {names.metric(metric).label}"
        for dataset in datasets
        for metric in metrics
    ]
    rows = []
    for method in methods:
        label = names.method(method) + (DDAGGER if method in unconverged else "") + (SUSPECT_MARK if method in suspects else "")
        row: list[Table1Cell | None] = []
        for dataset in datasets:
            for metric in metrics:
                key = (dataset, method, metric)
                if key not in index.index:
                    row.append(None)
                    continue
                cell = index.loc[key]
                main, bracket = (cell["text"].split(" [", 1) + [""])[:2]
                row.append(
                    Table1Cell(main, f"[{bracket}" if bracket else "", bool(cell["best"]), MARK_TEXT.get(cell["mark"], cell["mark"]), float(cell["mean"]))
                )
        rows.append((label, row))
    return headers, rows


def table1_markdown(
    cells: pd.DataFrame,
    datasets: Sequence[str],
    metrics: Sequence[str],
    unconverged: Collection[str] = (),
    names: Names | None = None,
    suspects: Collection[str] = (),
    caption: str | None = None,
) -> str:
    headers, rows = table1_grid(cells, datasets, metrics, unconverged, names, suspects)
    records = []
    for label, row in rows:
        texts = ["" if c is None else (f"**{c.main}**" if c.best else c.main) + (f" {c.bracket}" if c.bracket else "") + c.mark for c in row]
        records.append(dict(zip(["Method", *headers], [label, *texts])))
    table = pd.DataFrame(records).to_markdown(index=False, disable_numparse=True, colalign=["left"] + ["right"] * (len(records[0]) - 1)) + "\n"
    return table + (f"\n{caption_text(caption)}\n" if caption else "")


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


def table2_texts(rec: Any, digits: int) -> tuple[str, str, str, str]:
    """One row of Table 2 (a row of :func:`table2_frame`) as text, the LaTeX's and the page's numbers: parameters,
    ms per pair (mean±std; n/a untimed), epochs (‡: not converged) and training minutes, DASH where untrained."""
    time = "n/a" if pd.isna(rec.time_ms_mean) else f"{rec.time_ms_mean:.{digits}f}" + ("" if pd.isna(rec.time_ms_std) else f"±{rec.time_ms_std:.{digits}f}")
    trained = pd.notna(rec.epochs)
    epochs = f"{int(rec.epochs)}" + ("" if rec.converged is True else DDAGGER) if trained else DASH
    return format_params(rec.params), time, epochs, f"{rec.train_minutes:.1f}" if trained else DASH


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
        cells = [t.replace("±", r"$\pm$").replace(DDAGGER, r"$^{\ddagger}$") for t in table2_texts(rec, digits)]
        lines.append(" & ".join([latex_escape(names.method(rec.method)), *("--" if t == DASH else t for t in cells)]) + " \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


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
    recorded: dict[tuple[str, str, str], list[str]] = {}
    for manifest in manifests:
        fingerprint = manifest.fingerprint
        element = "voxel" if manifest.dims == 3 else "pixel"
        key = (str(fingerprint.get("hd95_convention", "not recorded")), str(fingerprint.get("jacobian_scheme", "not recorded")), element)
        dataset = names.dataset(str(fingerprint.get("dataset", "?")))
        recorded.setdefault(key, [])
        if dataset not in recorded[key]:
            recorded[key].append(dataset)

    def sentence(hd95: str, scheme: str, element: str) -> str:
        hd = HD95_CAPTIONS.get(hd95, f"HD95 convention {hd95}")
        jac = JACOBIAN_CAPTIONS.get(scheme, f"difference scheme {scheme}")
        return f"{hd} in mm from the {element} spacing; NJD: \\% of {element}s with negative Jacobian determinant ({jac})."

    if len(recorded) <= 1:
        return sentence(*next(iter(recorded), ("pooled", "central", "pixel")))
    return " ".join(latex_escape(", ".join(datasets)) + ": " + sentence(*key) for key, datasets in recorded.items())


def geometry_caption(manifests: Sequence[Manifest], names: Names | None = None) -> str:
    """The caption's sentence on the images' spacing (array-axis order) and through-plane axis, from what each run
    recorded (``dataset_info.geometry``; nothing for runs made before)."""
    names = names or Names()
    said = []
    for manifest in manifests:
        geometry = manifest.geometry
        if not geometry.get("spacing_mm"):
            continue
        spacing = " $\\times$ ".join(f"{float(s):g}" for s in geometry["spacing_mm"])
        element = "Voxel" if len(geometry["spacing_mm"]) == 3 else "Pixel"
        axes = ", ".join(str(k) for k in range(len(geometry["spacing_mm"])))
        text = f"{element} spacing {spacing} mm along array axes {axes}"
        axis = geometry.get("through_plane_axis")
        text += f" (axis {axis} through-plane)" if axis is not None else ""
        if int(geometry.get("spacings", 1)) > 1:
            text += f"; the most common of the pairs' {int(geometry['spacings'])} spacings"
        dataset = names.dataset(str(manifest.fingerprint.get("dataset", "?")))
        sentence = (f"{latex_escape(dataset)}: " if len(manifests) > 1 else "") + text + "."
        if sentence not in said:
            said.append(sentence)
    return "".join(" " + s for s in said)


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


NDV_MASK_CAPTIONS = {
    "none": "over every pixel",
    "fixed": "over the fixed image's mask (where the dataset gives one, else its foreground)",
    "moving": "over the moving image's mask (where the dataset gives one, else its foreground)",
}


def ndv_caption(manifests: Sequence[Manifest]) -> str:
    """The caption's sentence on NDV: what it measures and over which mask each run measured it."""
    masks = sorted({str(m.fingerprint.get("ndv_mask", "none")) for m in manifests})
    where = " / ".join(NDV_MASK_CAPTIONS.get(mask, f"mask {mask}") for mask in masks)
    return f" NDV: \\% of the area (2-D) or volume (3-D) the deformation's simplices turn inside out (Liu et al. 2024), {where}."


def _share(share: float) -> str:
    """A share of resamples as a percentage that never rounds a 'not always' up to 100%."""
    return f"{share:.0%}" if share < 0.995 else f"{min(share, 0.999):.1%}"


@dataclass(frozen=True)
class Sureness:
    """What Table 1's caption says of how sure its bold and its marks are: per dataset the unit of analysis and
    how many units there are (``units``: dataset -> (unit, n)), the fewest units a test needs (``fewest``), the
    datasets too small to test (``untestable``), and per bold cell the share of bootstrap resamples of the units in
    which it stays best (``best_shares``: (dataset, method, metric) -> share; ``bold`` the bold cells)."""

    units: Mapping[str, tuple[str, int]]
    fewest: int
    untestable: Collection[str] = ()
    best_shares: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    bold: Sequence[tuple[str, str, str]] = ()
    n_resamples: int = 0
    out_of_reach: Mapping[str, tuple[int, int, float]] = field(default_factory=dict)  # regbench.stats.out_of_reach

    def caption(self, names: Names, reference: str | None, alpha: float) -> str:
        several = len(self.units) > 1

        def counted(dataset: str) -> str:
            unit, n = self.units[dataset]
            return f"{n} {unit}{'s' if n != 1 else ''}{' of ' + names.dataset(dataset) if several else ''}"

        text = ""
        resampled = [cell for cell in self.bold if cell in self.best_shares and self.units.get(cell[0], ("", 0))[1] > 1]
        shares = [
            f"{names.dataset(d) + ' ' if several else ''}{names.metric(metric).short_label} {names.method(m)} {_share(self.best_shares[(d, m, metric)])}"
            for d, m, metric in resampled
            if self.best_shares[(d, m, metric)] < 1
        ]
        over = f"{self.n_resamples} bootstrap resamples of the {', '.join(counted(d) for d in self.units)}"
        if resampled and self.n_resamples and not shares:
            text += latex_escape(f" Every bold cell stays best (ties included) in each of {over}.")
        elif resampled and self.n_resamples:
            others = "; the other bold cells in every resample" if len(shares) < len(resampled) else ""
            text += latex_escape(f" Share of {over} in which a bold cell stays best (ties included): {'; '.join(shares)}{others}.")
        if reference is None:
            return text
        tested = [d for d in self.units if d not in self.untestable]
        if tested:
            text += (
                f" $^{{\\dagger}}$: differs from {latex_escape(reference)} (paired Wilcoxon signed-rank test over the "
                f"{latex_escape(', '.join(counted(d) for d in tested))}, each the mean over its pairs, Holm-corrected, $p<{alpha}$)."
            )
        for dataset, (n, family, floor) in self.out_of_reach.items():
            text += latex_escape(
                f" {names.dataset(dataset) + ': with' if several else 'With'} {n} {self.units[dataset][0]}s and {family} comparisons per column, "
                f"no difference can reach p<{alpha} after Holm (the smallest possible adjusted p is {floor:.3g}): more {self.units[dataset][0]}s decide more."
            ).replace("p<" + str(alpha), f"$p<{alpha}$")
        if self.untestable:
            text += (
                f" Not tested against {latex_escape(reference)}: too few units ({latex_escape(', '.join(counted(d) for d in self.untestable))}; "
                f"a two-sided exact test needs {self.fewest} to reach $p<{alpha}$)."
            )
        return text


def table1_caption(
    per_case: pd.DataFrame,
    manifests: Sequence[Manifest],
    names: Names,
    verdicts: dict[str, dict[str, Verdict]],
    spread: pd.DataFrame,
    with_epe: bool,
    reference: str | None,
    alpha: float,
    partial: Mapping[tuple[str, str], tuple[int, int]] | None = None,
    with_ndv: bool = False,
    suspects: Mapping[str, str] | None = None,
    with_tre: bool = False,
    sureness: Sureness | None = None,
) -> str:
    """Table 1's caption from what the runs recorded: the test pairs (and labelled pairs) per dataset, the labels,
    the HD95 convention and Jacobian scheme, NDV's mask (``with_ndv``), EPE, how sure the bold and the marks are
    (``sureness``: the units, the test against ``reference`` (None: no marks), how often each bold cell stays best),
    training seeds and verdicts."""
    datasets = list(dict.fromkeys(per_case["dataset"]))
    rows = {d: per_case[per_case["dataset"] == d] for d in datasets}
    cases = {d: int(r["case_id"].nunique()) for d, r in rows.items()}
    unlabelled = {d: unlabelled_cases(r) for d, r in rows.items()}
    n_pairs = ", ".join(f"{names.dataset(d)} {n}" for d, n in cases.items())
    label_counts = ", ".join(f"{names.dataset(d)} {cases[d] - n}" for d, n in unlabelled.items())
    labelled_text = f" over the pairs with labels ({label_counts})" if any(unlabelled.values()) else ""
    seeded = spread[spread["n_seeds"] > 1]
    seed_text = ""
    if len(seeded):
        counts = "/".join(str(n) for n in sorted(seeded["n_seeds"].unique()))
        seed_text = (
            f" Trained methods: {counts} training seeds each; their numbers are over the test pairs of the per-pair mean "
            "over seeds, and [$\\pm$s] is the std of the method's mean over its seeds."
        )
    label_names = [names.labels.get(k, k) for k in label_keys(per_case.columns)]
    labels_text = " and ".join([", ".join(label_names[:-1]), label_names[-1]] if len(label_names) > 1 else label_names) or "no labels"
    return (
        f"Registration results (mean$\\pm$std over the test pairs: {latex_escape(n_pairs)}). Dice and HD95{latex_escape(labelled_text)} averaged over "
        f"{latex_escape(labels_text)}; {conventions_caption(manifests, names)}{geometry_caption(manifests, names)}{ndv_caption(manifests) if with_ndv else ''}"
        + (
            f" EPE: mean end-point error of the flow against the ground-truth flow over the fixed image's labels ({latex_escape(', '.join(label_names))}), "
            "in mm (synthetic data only)."
            if with_epe
            else ""
        )
        + (
            " TRE: mean distance in mm between each fixed landmark moved by the flow (linearly interpolated) and its "
            "moving landmark, over the pairs with landmarks."
            if with_tre
            else ""
        )
        + " Bold: best per column."
        + (sureness.caption(names, reference, alpha) if sureness is not None else "")
        + partial_caption(partial or {}, names)
        + suspect_caption(suspects or {}, names)
        + seed_text
        + training_caption(verdicts, names)
    )


def suspect_caption(suspects: Mapping[str, str], names: Names) -> str:
    """The caption's sentence on rows whose inputs read clearly better under another convention."""
    if not suspects:
        return ""
    found = "; ".join(f"{names.method(m)}: {what}" for m, what in suspects.items())
    return f" $^{{\\P}}$: its fields score clearly better read under another convention ({latex_escape(found)}): check how they were written."


def partial_caption(partial: Mapping[tuple[str, str], tuple[int, int]], names: Names) -> str:
    """The caption's sentence on rows over fewer pairs than their table (per method: n of N)."""
    if not partial:
        return ""
    counts = "; ".join(f"{names.dataset(d)}: {names.method(m)} {n} of {total}" for (d, m), (n, total) in partial.items())
    return f" $^{{{PARTIAL_MARK}}}$: over fewer pairs than the table ({latex_escape(counts)}), so neither bold nor tested."


def table2_caption(manifests: Sequence[Manifest], trained: bool = True, untimed: Sequence[str] = ()) -> str:
    """Table 2's caption: what its times measure and on which devices; training and ‡ where a method trained;
    which methods have no time (``untimed``, display names: they read results computed elsewhere)."""
    devices = sorted({m.device for m in manifests})
    training = (
        f"; epochs and minutes of training (summed over datasets and seeds). $^{{\\ddagger}}$: not converged ({latex_escape(CONVERGENCE_RULE.describe())})."
        if trained
        else "."
    )
    not_measured = f" Time not measured (n/a) for {latex_escape(', '.join(untimed))}: fields computed elsewhere, read from files." if untimed else ""
    return (
        f"Parameters and inference time per pair in milliseconds (mean$\\pm$std over the test pairs, registration "
        f"only, after one warm-up; device: {latex_escape('; '.join(devices))})" + training + not_measured
    )
