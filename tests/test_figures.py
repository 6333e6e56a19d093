"""regbench.figures at its own seam: which views a volume's qualitative figure shows, and how tall it may grow."""

from __future__ import annotations

import numpy as np
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
