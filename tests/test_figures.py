"""regbench.figures at its own seam: which views a volume's qualitative figure shows, and how tall it may grow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from regbench import figures
from regbench.figures import _views
from regbench.naming import Names
from regbench.pyramid import through_plane_axis
from regbench.rundir import RunDir


def test_the_in_plane_view_is_across_the_thick_axis_wherever_it_lies():
    """A volume whose thick slices are on its last axis got no in-plane view (views were fixed to axes 0 and 1)."""
    assert through_plane_axis((10.0, 1.5, 1.5)) == 0 and through_plane_axis((1.5, 1.5, 8.0)) == 2
    assert through_plane_axis((1.0, 1.0, 1.2)) is None and through_plane_axis((1.5, 1.5)) is None
    assert [v.name for v in _views((40, 36, 16), (1.5, 1.5, 4.0))] == ["in-plane, axis 2 = 8", "through-plane, axis 0 = 20"]
    assert [v.name for v in _views((10, 48, 48), (10.0, 1.5, 1.5))] == ["in-plane, axis 0 = 5", "through-plane, axis 1 = 24"]
    assert [v.name for v in _views((12, 12, 12), (1.0, 1.0, 1.0))] == ["axis 0 = 6", "axis 1 = 6"]


def test_the_qualitative_figure_stops_growing_at_its_height_cap(tmp_path):
    """Eight stored 3-D example pairs drew a figure taller than 4,000 px; the first pairs that fit are drawn."""
    run = RunDir(tmp_path / "run")
    rng = np.random.default_rng(0)
    for i in range(8):
        case = f"c{i}"
        image = rng.random((10, 32, 32)).astype(np.float32)
        for path, arrays in (
            (run.example_pair(case), {"fixed": image, "moving": image, "spacing": np.array([10.0, 1.5, 1.5])}),
            (run.example("initial", case), {"moved": image, "flow": np.zeros((3, 10, 32, 32), np.float32)}),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)
    png = figures.qualitative(run.root, tmp_path / "fig" / "qualitative", Names())[0]
    assert Image.open(png).height <= figures.QUALITATIVE_MAX_HEIGHT * 150 + 50  # 150 dpi; tight bounding box margin


def test_the_tradeoff_figure_draws_each_arc_with_the_band_of_its_seeds(tmp_path, monkeypatch):
    """A λ family trained at two seeds: its ARC through the seed means, and the seeds' spread shaded around it
    (only on the SDlogJ row, where the ARC is)."""
    import pandas as pd

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, stem: drawn.append(fig) or [])
    rows = [("a", 0, 0.1, 0.70), ("b", 0, 0.2, 0.80), ("c", 0, 0.4, 0.90), ("a", 1, 0.1, 0.60), ("b", 1, 0.2, 0.70), ("c", 1, 0.4, 0.80)]
    per_case = pd.DataFrame([{"dataset": "d", "method": m, "seed": s, "sdlogj": c, "njd": 0.0, "dice": d} for m, s, c, d in rows])
    names = Names(families={"a": ("VM λ", 1.0), "b": ("VM λ", 0.1), "c": ("VM λ", 0.01)})
    figures.tradeoff(per_case, pd.DataFrame(), tmp_path / "tradeoff", names)
    sdlogj_row, njd_row = drawn[0].axes[0], drawn[0].axes[1]
    (band,) = sdlogj_row.collections[-1:]
    assert band.get_label() == "VM λ: ARC seed range" and not [c for c in njd_row.collections if "seed range" in str(c.get_label())]
    lows_highs = band.get_paths()[0].vertices[:, 1]
    assert lows_highs.min() == pytest.approx(60.0) and lows_highs.max() == pytest.approx(90.0)  # seed 1 at 0.1, seed 0 at 0.4
    assert "VM λ: ARC" in [line.get_label() for line in sdlogj_row.lines]
    # The report draws the seed means' points and passes the seeds' own cases for the band.
    means = per_case.groupby(["dataset", "method"], as_index=False)[["sdlogj", "njd", "dice"]].mean()
    figures.tradeoff(means, pd.DataFrame(), tmp_path / "tradeoff", names, per_seed=per_case)
    assert drawn[1].axes[0].collections[-1].get_label() == "VM λ: ARC seed range"
    figures.tradeoff(means, pd.DataFrame(), tmp_path / "tradeoff", names)
    assert not [c for c in drawn[2].axes[0].collections if "seed range" in str(c.get_label())]  # no seeds, no band
