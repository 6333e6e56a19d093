"""regbench.tables at its own seam: LaTeX escaping of what display names and captions hold."""

from __future__ import annotations

from regbench.tables import latex_escape


def test_latex_escape_sets_the_symbols_pdflatex_cannot_and_escapes_the_specials():
    """A display name "IO-λ" stopped pdflatex ('Unicode character λ not set up'); specials are escaped before the symbols become
    math, so the symbols' own $ and \\ survive."""
    assert latex_escape("IO-λ") == r"IO-$\lambda$"
    assert latex_escape("VoxelMorph λ grid: 10% × 2_a & b") == r"VoxelMorph $\lambda$ grid: 10\% $\times$ 2\_a \& b"
