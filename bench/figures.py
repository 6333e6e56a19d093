"""Report figures (seaborn/matplotlib, PNG and PDF): box plots per metric, the Dice–NJD trade-off, a
qualitative panel like the paper's Fig. 3, and the deep methods' training curves.

Each function takes what the run saved (per-case rows, ``curves/*_sweep.csv``, ``examples/``,
``models/*/history.csv``) and a path stem; it returns the files written, or [] when there is nothing to
draw. Files carry no timestamps, so drawing again gives identical bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import METRICS
from .naming import Names
from .pyramid import through_plane_axis
from .registry import method_sort_key
from .rundir import RunDir


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return [png, pdf]


def _palette(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per method in paper order (distinct up to 20 methods)."""
    import seaborn as sns

    ordered = sorted(dict.fromkeys(methods), key=method_sort_key)
    colours = sns.color_palette("tab10" if len(ordered) <= 10 else "husl", n_colors=max(len(ordered), 1))
    return dict(zip(ordered, colours))


def _methods(frame: pd.DataFrame) -> list[str]:
    return sorted(dict.fromkeys(frame["method"]), key=method_sort_key)


def boxplots(per_case: pd.DataFrame, metrics: Sequence[str], stem: Path, names: Names) -> list[Path]:
    """One panel per metric, methods on the x axis (paper order), a box per dataset when there are several."""
    if per_case.empty or not metrics:
        return []
    plt, sns = _pyplot()
    methods = _methods(per_case)
    data = per_case.assign(Method=per_case["method"].map(names.method), Dataset=per_case["dataset"].map(names.dataset))
    several = data["Dataset"].nunique() > 1
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6.0, 0.75 * len(methods) + 2), 2.6 * len(metrics)), sharex=True, squeeze=False)
    for ax, metric in zip(axes[:, 0], metrics):
        spec = METRICS[metric]
        values = data.assign(value=pd.to_numeric(data[metric], errors="coerce") * spec.table_scale).dropna(subset=["value"])
        sns.boxplot(
            values,
            x="Method",
            y="value",
            hue="Dataset" if several else None,
            order=[names.method(m) for m in methods],
            ax=ax,
            fliersize=2,
            linewidth=0.8,
            color=None if several else "#8fb3d9",
        )
        ax.set_ylabel(spec.label)
        ax.set_xlabel("")
        if several and ax is not axes[0, 0] and ax.get_legend():
            ax.get_legend().remove()
    axes[-1, 0].tick_params(axis="x", rotation=35)
    for label in axes[-1, 0].get_xticklabels():
        label.set_horizontalalignment("right")
    fig.align_ylabels()
    return _save(fig, stem)


def load_sweeps(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """Every sweep file of the runs (per parameter value and pair)."""
    frames = [pd.read_csv(p, dtype={"case_id": str, "subject": str}) for d in run_dirs for p in RunDir(d).sweep_files()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tradeoff(per_case: pd.DataFrame, sweeps: pd.DataFrame, stem: Path, names: Names, per_seed: pd.DataFrame | None = None) -> list[Path]:
    """Dice (%) against a continuous smoothness measure, SDlogJ (top row; each λ family's front drawn, as
    ``tradeoff.md`` reads it), and against folding, NJD (bottom row): each method a point with std error bars; the
    points of a declared family (the VoxelMorph λ variants) joined in the order of their value; each method's
    sweep curve (test split; HyperMorph's λ) when the run has one. One column per dataset. ``per_seed``: the
    cases of each training seed (``per_case`` may hold their means), for the band of the seeds' ARCs."""
    from .front import Front

    if per_case.empty or "dice" not in per_case or "njd" not in per_case:
        return []
    plt, sns = _pyplot()
    datasets = list(dict.fromkeys(per_case["dataset"]))
    axes_x = [x for x in ("sdlogj", "njd") if x in per_case]
    fig, axes = plt.subplots(len(axes_x), len(datasets), figsize=(6.0 * len(datasets), 4.6 * len(axes_x)), squeeze=False)
    palette = _palette(per_case["method"])
    for column, dataset in enumerate(datasets):
        data = per_case[per_case["dataset"] == dataset]
        sweep = sweeps[sweeps["dataset"] == dataset] if len(sweeps) else sweeps
        for row, x in enumerate(axes_x):
            ax = axes[row, column]
            stats = data.groupby("method")[["dice", x]].agg(["mean", "std"])
            for method in _methods(data):
                point = stats.loc[method]
                ax.errorbar(
                    point[(x, "mean")],
                    100 * point[("dice", "mean")],
                    xerr=point[(x, "std")],
                    yerr=100 * point[("dice", "std")],
                    fmt="o",
                    ms=5,
                    capsize=2,
                    lw=0.8,
                    color=palette[method],
                    label=names.method(method),
                )
            for family, members in names.family_members(list(stats.index)).items():
                if len(members) > 1:
                    xs, ys = [stats.loc[m, (x, "mean")] for m in members], [100 * stats.loc[m, ("dice", "mean")] for m in members]
                    ax.plot(xs, ys, "--", color="0.5", lw=0.8, label=family)
                    if x == "sdlogj":
                        front = Front.of(xs, ys)
                        ax.plot(front.cost, front.score, "-", color="0.2", lw=2.2, alpha=0.35, label=f"{family}: ARC")
                        seeded = data if per_seed is None else per_seed[per_seed["dataset"] == dataset]
                        _seed_band(ax, seeded[seeded["method"].isin(members)], "method", x, "0.2", f"{family}: ARC seed range")
            for method, curve in sweep.groupby("method") if len(sweep) and x in sweep else []:
                parameter, symbol = names.sweep_parameters.get(method, ("lam", "λ"))
                means = curve.groupby(parameter)[["dice", x]].mean().sort_index()
                if x == "sdlogj":
                    label = f"{names.method(method)} {symbol} sweep: ARC seed range"
                    _seed_band(ax, curve, parameter, x, palette.get(method, "k"), label)
                ax.plot(means[x], 100 * means["dice"], "-", marker=".", color=palette.get(method, "k"), lw=1.0, label=f"{names.method(method)} {symbol} sweep")
                for value in (means.index.min(), means.index.max()):
                    ax.annotate(
                        f"{symbol}={value:g}", (means.loc[value, x], 100 * means.loc[value, "dice"]), fontsize=7, textcoords="offset points", xytext=(4, -8)
                    )
            ax.set_xlabel(METRICS[x].label + "  (lower is smoother)")
            ax.set_ylabel(METRICS["dice"].label)
            ax.set_title(names.dataset(dataset))
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def stress(frame: pd.DataFrame, axis: str, stem: Path, names: Names) -> list[Path]:
    """Each metric against a level of the test data (``regbench.levels.level_frame``): a row of panels per metric
    (Dice, HD95, EPE, NJD where the run has them), a column per dataset, a line per method through its means, the
    seeds' lowest to highest mean shaded where it has two or more."""
    from .levels import STRESS_METRICS, retrained_base, stress_order

    if frame.empty:
        return []
    shown = [m for m in STRESS_METRICS if m != "time_s" and f"{m}_mean" in frame and frame[f"{m}_mean"].notna().any()]
    datasets = list(dict.fromkeys(frame["dataset"]))
    plt, _ = _pyplot()
    fig, axes = plt.subplots(len(shown), len(datasets), figsize=(5.5 * len(datasets), 3.2 * len(shown)), squeeze=False, sharex=True)
    bases = {m: retrained_base(m) or m for m in frame["method"]}  # a retrained method: its base's colour, dashed
    palette = _palette(list(dict.fromkeys(bases.values())))
    for column, dataset in enumerate(datasets):
        data = frame[frame["dataset"] == dataset]
        for row, metric in enumerate(shown):
            ax, scale = axes[row, column], METRICS[metric].table_scale
            for method in stress_order(data["method"]):
                points = data[data["method"] == method].sort_values("level")
                color, style = palette[bases[method]], "--o" if retrained_base(method) else "-o"
                ax.plot(points["level"], scale * points[f"{metric}_mean"], style, ms=3.5, lw=1.2, color=color, label=names.method(method))
                band = points[points[f"{metric}_seed_low"].notna()] if f"{metric}_seed_low" in points else points.iloc[:0]
                if len(band) > 1:
                    ax.fill_between(band["level"], scale * band[f"{metric}_seed_low"], scale * band[f"{metric}_seed_high"], color=color, alpha=0.15, lw=0)
            ax.set_ylabel(METRICS[metric].label)
            if row == 0:
                ax.set_title(names.dataset(dataset))
            if row == len(shown) - 1:
                ax.set_xlabel(axis)
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def _seed_band(ax, rows: pd.DataFrame, point: str, x: str, color: Any, label: str) -> None:
    """Shade the spread of the seeds' ARCs (each seed's front through its mean per ``point``: a family's method, a
    sweep's λ), where the rows have two or more seeds."""
    from .front import seed_band, seed_fronts

    if "seed" not in rows or rows["seed"].nunique() < 2:
        return
    means = rows.groupby([point, "seed"], as_index=False)[["dice", x]].mean()  # each seed's point: its cases' mean
    grid, low, high = seed_band([f for f in seed_fronts(means, x, "dice") if f is not None])
    if np.isfinite(low).any():
        ax.fill_between(grid, 100 * low, 100 * high, color=color, alpha=0.12, lw=0, label=label)


def _grid_lines(ax, flow: np.ndarray, steps: tuple[int, ...]) -> None:
    """The deformation x ↦ x + u(x) drawn as a warped grid (flow channel 0 rows, 1 columns, pixels), a line
    every ``steps`` rows and columns."""
    h, w = flow.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w].astype(float)
    y, x = rows + flow[0], cols + flow[1]
    for i in range(0, h, steps[0]):
        ax.plot(x[i, :], y[i, :], color="#d62728", lw=0.5)
    for j in range(0, w, steps[1]):
        ax.plot(x[:, j], y[:, j], color="#d62728", lw=0.5)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)


@dataclass(frozen=True)
class _View:
    """A 2-D picture of an example: the whole image (2-D), or a mid-slice of a volume across one axis."""

    name: str
    index: tuple  # into the image
    channels: tuple[int, int]  # the flow's in-plane components, rows then columns
    aspect: float  # a pixel's height / width in mm

    def image(self, array: np.ndarray) -> np.ndarray:
        return array[self.index]

    def height_ratio(self, array: np.ndarray) -> float:
        """Its height over its width, in mm, at most 1."""
        h, w = self.image(array).shape
        return min(h * self.aspect / w, 1.0)

    def flow(self, flow: np.ndarray) -> np.ndarray:
        return np.stack([flow[(c,) + self.index] for c in self.channels])


def _views(shape: tuple[int, ...], spacing: Sequence[float], every_axis: bool = False) -> list[_View]:
    """2-D: the image. 3-D: two mid-slices with their pixels' true aspect: across the through-plane axis (an
    in-plane view: short axis for a short-axis stack) and across the first other axis (a view along the stack),
    whichever axis the thick slices lie along; across axes 0 and 1 where no axis is thick. ``every_axis``: the
    mid-slice across each of the three axes, the through-plane one first."""
    if len(shape) == 2:
        return [_View("", (slice(None), slice(None)), (0, 1), float(spacing[0]) / float(spacing[1]))]
    thick = through_plane_axis(spacing)
    across: tuple[int, ...] = (0, 1) if thick is None else (thick, min(k for k in range(3) if k != thick))
    if every_axis:
        across = (*across, *(k for k in range(3) if k not in across))
    views = []
    for axis in across:
        middle = shape[axis] // 2
        index = tuple(middle if k == axis else slice(None) for k in range(3))
        rows, cols = (k for k in range(3) if k != axis)
        what = "" if thick is None else ("in-plane, " if axis == thick else "through-plane, ")
        views.append(_View(f"{what}axis {axis} = {middle}", index, (rows, cols), float(spacing[rows]) / float(spacing[cols])))
    return views


QUALITATIVE_MAX_HEIGHT = 16.0  # inches (2,400 px at the PNG's 150 dpi)


def qualitative(run_dir: Path, stem: Path, names: Names, methods: Sequence[str] | None = None) -> list[Path]:
    """Per example pair, two rows: fixed then each method's moved image; moving then each method's
    deformation as a warped grid (the layout of the paper's Fig. 3). A 3-D pair has two such row pairs (its
    in-plane and through-plane mid-slices, :func:`_views`), the grids drawn from the flow's in-plane components.
    The first pairs that fit :data:`QUALITATIVE_MAX_HEIGHT` are drawn."""
    plt, _ = _pyplot()
    folder = RunDir(run_dir)
    pair_files = folder.example_pairs()
    available = folder.example_methods() if pair_files else []
    methods = sorted(methods or available, key=method_sort_key)
    if not pair_files or not methods:
        return []
    pairs = [np.load(pair_file) for pair_file in pair_files]
    views = [_views(pair["fixed"].shape, pair["spacing"] if "spacing" in pair else (1.0,) * pair["fixed"].ndim) for pair in pairs]
    # Each row as tall as its view in mm (a through-plane view of a thin stack is a low strip); as many pairs as
    # fit QUALITATIVE_MAX_HEIGHT inches (at least one), the first ones: the figure does not grow without bound.
    pair_heights = [[h for view in pair_views for h in [view.height_ratio(pair["fixed"])] * 2] for pair, pair_views in zip(pairs, views)]
    kept = max(1, sum(1 for total in np.cumsum([1.75 * sum(h) + 0.2 * len(h) for h in pair_heights]) if total <= QUALITATIVE_MAX_HEIGHT))
    pair_files, pairs, views, pair_heights = pair_files[:kept], pairs[:kept], views[:kept], pair_heights[:kept]
    rows, cols = 2 * sum(len(v) for v in views), len(methods) + 1
    heights = [h for pair_rows in pair_heights for h in pair_rows]
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.75 * sum(heights) + 0.2 * rows), squeeze=False, gridspec_kw={"height_ratios": heights})
    row = 0
    for pair_file, pair, pair_views in zip(pair_files, pairs, views):
        examples = {method: folder.example(method, folder.example_case(pair_file)) for method in methods}
        loaded = {method: np.load(path) for method, path in examples.items() if path.exists()}
        for view in pair_views:
            top, bottom = axes[row], axes[row + 1]
            row += 2
            shown = dict(cmap="gray", vmin=0, vmax=1, aspect=view.aspect)
            top[0].imshow(view.image(pair["fixed"]), **shown)
            top[0].set_title("Fixed", fontsize=8)
            bottom[0].imshow(view.image(pair["moving"]), **shown)
            bottom[0].set_title("Moving", fontsize=8)
            top[0].set_ylabel(f"{pair_file.stem}\n{view.name}".strip(), fontsize=7)
            # A grid line every 1/16 of a side (at least 2 pixels); every slice along a side of under 16.
            steps = tuple(max(n // 16, 2) if n >= 16 else 1 for n in view.image(pair["fixed"]).shape)
            for c, method in enumerate(methods, start=1):
                if method not in loaded:
                    top[c].text(0.5, 0.5, "not run", ha="center", va="center", fontsize=7, transform=top[c].transAxes)
                    continue
                top[c].imshow(view.image(loaded[method]["moved"]), **shown)
                top[c].set_title(names.method(method), fontsize=8)
                bottom[c].imshow(view.image(pair["moving"]), **{**shown, "alpha": 0.35})
                _grid_lines(bottom[c], view.flow(loaded[method]["flow"]), steps)
                bottom[c].set_aspect(view.aspect)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    return _save(fig, stem)


#: The HTML report's case view: a column per panel, a row per method.
CASE_PANELS = ("Fixed", "Moving", "Moved", "|Moved − Fixed|", "Grid", "Jacobian", "Labels")


def case_panels(run_dir: Path, pair_file: Path, names: Names, methods: Sequence[str] | None = None, dpi: int = 72) -> list[tuple[str, bytes]]:
    """One example pair of a run, for every method that kept it: per view (2-D: the image; 3-D: the mid-slice
    across each axis) a picture with a row per method and the columns of :data:`CASE_PANELS`: the fixed and moving
    images, the moved image, its absolute difference from the fixed image, the deformation as a warped grid over
    the moving image, det(I + ∇u) (red below 0: folding) and the fixed labels' contours (solid) over the moved
    image with the warped moving labels' (dashed). Returns (view name, JPEG bytes) per view."""
    import io

    from .metrics import jacobian_determinant
    from .warp import warp_label

    plt, _ = _pyplot()
    folder = RunDir(run_dir)
    pair = np.load(pair_file)
    case = folder.example_case(pair_file)
    methods = sorted(methods or folder.example_methods(), key=method_sort_key)
    loaded = {m: np.load(path) for m in methods if (path := folder.example(m, case)).exists()}
    if not loaded:
        return []
    spacing = pair["spacing"] if "spacing" in pair else (1.0,) * pair["fixed"].ndim
    fixed_label = pair["fixed_label"] if "fixed_label" in pair else None
    moving_label = pair["moving_label"] if "moving_label" in pair else None
    label_levels = np.unique(np.concatenate([np.ravel(a) for a in (fixed_label, moving_label) if a is not None] or [np.zeros(1)]))[1:] - 0.5
    derived = {}
    for method, arrays in loaded.items():
        flow = arrays["flow"]
        derived[method] = (jacobian_determinant(flow), None if moving_label is None else warp_label(moving_label, flow))
    out = []
    for view in _views(pair["fixed"].shape, spacing, every_axis=True):
        fixed = view.image(pair["fixed"])
        steps = tuple(max(n // 16, 2) if n >= 16 else 1 for n in fixed.shape)
        height = 1.6 * min(max(fixed.shape[0] * view.aspect / fixed.shape[1], 0.25), 1.5)
        fig, axes = plt.subplots(len(loaded), len(CASE_PANELS), figsize=(1.6 * len(CASE_PANELS), (height + 0.25) * len(loaded)), squeeze=False)
        shown = dict(cmap="gray", vmin=0, vmax=1, aspect=view.aspect)
        for row, (method, arrays) in enumerate(loaded.items()):
            moved = view.image(arrays["moved"])
            jacobian, moved_label = derived[method]
            ax = axes[row]
            ax[0].imshow(fixed, **shown)
            ax[1].imshow(view.image(pair["moving"]), **shown)
            ax[2].imshow(moved, **shown)
            ax[3].imshow(np.abs(moved - fixed), cmap="magma", vmin=0, vmax=0.5, aspect=view.aspect)
            ax[4].imshow(view.image(pair["moving"]), **{**shown, "alpha": 0.35})
            _grid_lines(ax[4], view.flow(arrays["flow"]), steps)
            ax[4].set_aspect(view.aspect)
            ax[5].imshow(view.image(jacobian), cmap="RdBu", vmin=0, vmax=2, aspect=view.aspect)
            ax[6].imshow(moved, **shown)
            if fixed_label is not None and len(label_levels):
                ax[6].contour(view.image(fixed_label), levels=label_levels, colors="#2ca02c", linewidths=0.6)
            if moved_label is not None and len(label_levels):
                ax[6].contour(view.image(moved_label), levels=label_levels, colors="#d62728", linewidths=0.6, linestyles="dashed")
            ax[0].set_ylabel(names.method(method), fontsize=7)
            for c, title in enumerate(CASE_PANELS):
                if row == 0:
                    ax[c].set_title(title, fontsize=7)
                ax[c].set_xticks([])
                ax[c].set_yticks([])
        fig.tight_layout(pad=0.3)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": 85})  # noisy images: a PNG is ~4.5 times larger
        plt.close(fig)
        out.append((view.name, buffer.getvalue()))
    return out


def training_curves(run_dirs: Sequence[Path], stem: Path, all_methods: Sequence[str] = (), names: Names | None = None) -> list[Path]:
    """Both losses, validation Dice and (surgery variants) the share of conflicting layers, per epoch.
    ``all_methods``: the report's methods, so that each keeps the colour it has in the other figures."""
    names = names or Names()
    frames = []
    for run_dir in run_dirs:
        for (method, seed), path in RunDir(run_dir).history_files().items():
            frames.append(pd.read_csv(path).assign(method=method, seed=-1 if seed is None else seed))
    if not frames:
        return []
    plt, sns = _pyplot()
    data = pd.concat(frames, ignore_index=True)
    methods = _methods(data)
    panels = [
        ("loss_sim", "similarity loss (MSE)"),
        ("loss_reg", "smoothness loss (mean |∇u|, px)"),
        ("val_dice", "validation Dice (%)"),
        ("conflict_share", "conflicting layers (%)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    palette = _palette([*all_methods, *methods])
    for ax, (column, label) in zip(axes, panels):
        for method in methods:
            scale = 100.0 if column in ("val_dice", "conflict_share") else 1.0
            for i, (_, run) in enumerate(data[data["method"] == method].groupby("seed", sort=True)):  # one line per seed
                curve = run[["epoch", column]].dropna()
                if curve.empty:
                    continue
                ax.plot(
                    curve["epoch"],
                    scale * curve[column],
                    marker="." if len(curve) < 30 else None,
                    color=palette[method],
                    lw=1.0,
                    alpha=1.0 if i == 0 else 0.6,
                    label=names.method(method) if i == 0 else None,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if column.startswith("loss"):
            ax.set_yscale("log")
    for method in methods:  # a method whose losses are on another scale says so (declared in its metadata)
        if method in names.loss_notes:
            axes[0].annotate(names.loss_notes[method], (0.02, 0.02), xycoords="axes fraction", fontsize=6)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(methods), 6), bbox_to_anchor=(0.5, -0.12), frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def seed_means(per_case: pd.DataFrame, stem: Path, names: Names) -> list[Path]:
    """Each method's mean Dice per training seed (one dot per seed; methods run once: one dot), per dataset."""
    if per_case.empty or "seed" not in per_case:
        return []
    plt, sns = _pyplot()
    means = (
        per_case.assign(seed=per_case["seed"].astype("Float64").fillna(-1))
        .groupby(["dataset", "method", "seed"], sort=False)["dice"]
        .mean()
        .mul(100)
        .reset_index()
    )
    methods = _methods(means)
    datasets = list(dict.fromkeys(means["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6, 0.8 * len(methods)) * len(datasets), 3.4), squeeze=False)
    palette = _palette(methods)
    for ax, dataset in zip(axes[0], datasets):
        data = means[means["dataset"] == dataset].assign(Method=lambda d: d["method"].map(names.method))
        sns.stripplot(
            data, x="Method", y="dice", hue="method", palette=palette, order=[names.method(m) for m in methods], size=6, jitter=0.15, legend=False, ax=ax
        )
        ax.set_title(names.dataset(dataset), fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("mean Dice per training seed (%)")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return _save(fig, stem)


def rank_frequencies(ranks: pd.DataFrame, stem: Path, names: Names) -> list[Path]:
    """How stable each rank is (challengeR's blob plot): a panel per dataset and metric, methods on the x axis in
    the order of their rank on the data, ranks on the y axis (1 at the top), a disc per (method, rank) whose area
    is the share of bootstrap resamples of the units in which the method took that rank; a cross marks the
    observed rank. Panels wrap in rows about 16 inches wide."""
    shown = ranks[ranks["share"] > 0]
    if shown.empty:
        return []
    plt, _ = _pyplot()
    panels = list(dict.fromkeys(zip(shown["dataset"], shown["metric"])))
    several = len({d for d, _ in panels}) > 1
    n_methods = int(ranks.groupby(["dataset", "metric"])["method"].nunique().max())
    width = max(3.2, 0.42 * n_methods + 1.2)
    columns = max(1, min(len(panels), int(16 // width)))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, (0.35 * n_methods + 2.4) * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, (dataset, metric) in zip(axes.flat, panels):
        data = ranks[(ranks["dataset"] == dataset) & (ranks["metric"] == metric)]
        observed = data.drop_duplicates("method")
        rank_of = dict(zip(observed["method"], observed["observed_rank"]))
        order = {m: i for i, m in enumerate(sorted(rank_of, key=lambda m: (rank_of[m], method_sort_key(m))))}
        hits = data[data["share"] > 0]
        ax.scatter(hits["method"].map(order), hits["rank"], s=600 * hits["share"], color="#4c72b0", alpha=0.75, linewidths=0)
        ax.scatter(observed["method"].map(order), observed["observed_rank"], marker="x", s=18, color="black", linewidths=0.8)
        ax.set_xticks(range(len(order)), [names.method(m) for m in order], rotation=60, ha="right")
        ax.set_yticks(range(1, len(order) + 1))
        ax.set_ylim(len(order) + 0.6, 0.4)
        ax.set_xlim(-0.6, len(order) - 0.4)
        title = names.metric(metric).short_label + (f" ({names.dataset(dataset)})" if several else "")
        ax.set_title(f"{title}: {int(data['n_resamples'].iloc[0])} resamples of {int(data['n_units'].iloc[0])} {data['unit'].iloc[0]}s", fontsize=8)
        ax.set_ylabel("rank")
    fig.tight_layout()
    return _save(fig, stem)


def critical_difference(results: Sequence, stem: Path, names: Names) -> list[Path]:
    """Critical-difference diagrams (Demšar 2006; scikit-posthocs draws them): per tested (dataset, metric), the
    methods' mean ranks over units (1 = best, on the left) and bars joining the methods Nemenyi's test does not
    separate (p ≥ 0.05). [] when no Friedman test could run."""
    import scikit_posthocs as sp

    tested = [r for r in results if len(r.nemenyi)]
    if not tested:
        return []
    plt, _ = _pyplot()
    heights = [1.2 + 0.14 * len(r.mean_ranks) for r in tested]  # the diagram stacks half the labels on each side
    fig, axes = plt.subplots(len(tested), 1, figsize=(7.0, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights})
    several = len({r.row["dataset"] for r in tested}) > 1
    for ax, result in zip(axes[:, 0], tested):
        display = {m: names.method(m) for m in result.mean_ranks.index}
        sp.critical_difference_diagram(result.mean_ranks.rename(index=display), result.nemenyi.rename(index=display, columns=display), ax=ax)
        row = result.row
        where = f" ({names.dataset(str(row['dataset']))})" if several else ""
        title = f"{names.metric(str(row['metric'])).short_label}{where}: mean rank over {row['n_units']} {row['unit']}s, Friedman p = {row['p_value']:.2g}"
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)
