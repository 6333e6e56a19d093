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
