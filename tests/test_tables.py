"""regbench.tables at its own seam: LaTeX escaping of what display names and captions hold."""

from __future__ import annotations

from regbench.tables import caption_text, conventions_caption, latex_escape


def test_latex_escape_sets_the_symbols_pdflatex_cannot_and_escapes_the_specials():
    """A display name "IO-λ" stopped pdflatex ('Unicode character λ not set up'); specials are escaped before the symbols become
    math, so the symbols' own $ and \\ survive."""
    assert latex_escape("IO-λ") == r"IO-$\lambda$"
    assert latex_escape("VoxelMorph λ grid: 10% × 2_a & b") == r"VoxelMorph $\lambda$ grid: 10\% $\times$ 2\_a \& b"


def test_the_markdown_caption_is_the_latex_one_as_text():
    latex = r"Bold: best. $^{\dagger}$: differs ($p<0.05$, 10\% of IO-$\lambda$'s \$5). $^{\ddagger}$, $^{\P}$, $^{\S}$: 1.0$\pm$0.1."
    assert caption_text(latex) == "Bold: best. †: differs (p<0.05, 10% of IO-λ's $5). ‡, ¶, §: 1.0±0.1."


def test_the_conventions_sentence_counts_voxels_in_3d_and_pixels_in_2d():
    from regbench.rundir import Manifest

    def manifest(dims: int) -> Manifest:
        return Manifest({"fingerprint": {"dataset": "d", "hd95_convention": "pooled", "jacobian_scheme": "central"}, "dataset_info": {"dims": dims}})

    assert "\\% of voxels with negative Jacobian determinant" in conventions_caption([manifest(3)]) and "voxel spacing" in conventions_caption([manifest(3)])
    assert "\\% of pixels with negative Jacobian determinant" in conventions_caption([manifest(2)])


def test_the_caption_states_the_spacing_and_the_through_plane_axis_the_run_recorded():
    from regbench.rundir import Manifest
    from regbench.tables import geometry_caption

    stack = Manifest({"fingerprint": {"dataset": "d"}, "dataset_info": {"geometry": {"spacing_mm": [10.0, 1.5, 1.5], "spacings": 1, "through_plane_axis": 0}}})
    assert geometry_caption([stack]) == r" Voxel spacing 10 $\times$ 1.5 $\times$ 1.5 mm along array axes 0, 1, 2 (axis 0 through-plane)."
    mixed = Manifest({"fingerprint": {"dataset": "d"}, "dataset_info": {"geometry": {"spacing_mm": [1.5, 1.5], "spacings": 3, "through_plane_axis": None}}})
    assert caption_text(geometry_caption([mixed])) == " Pixel spacing 1.5 × 1.5 mm along array axes 0, 1; the most common of the pairs' 3 spacings."
    assert geometry_caption([Manifest({"fingerprint": {}})]) == ""  # a run made before recorded none
