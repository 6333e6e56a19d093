"""What ``regbench report`` writes, as one settings object: the CLI's flags and their defaults are read from it.

Kept apart from :mod:`regbench.report` (pandas, the statistics) so that ``regbench --help`` states the defaults
without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .study import DEFAULT_STUDY, Study

# Table 1's LaTeX layouts. plain: a table of natural width (booktabs). fit: scaled down to \linewidth when wider
# (graphicx), never up. wide: table* (both columns of a two-column class), scaled down to \textwidth.
LAYOUTS = ("auto", "plain", "fit", "wide")
RANK_RESAMPLES = 1000  # bootstrap resamples of the units for ranks.csv and the bold cells' stability


@dataclass
class ReportOptions:
    """What ``regbench report`` writes; the CLI flags map one to one."""

    per_structure: bool = False  # add Dice and HD95 of each label to Table 1
    ndv: bool = False  # add NDV (NDA in 2-D) beside NJD in Table 1; its caption says over which mask
    digits: int = 2  # digits after the decimal point (in table units), as the paper's 2
    caption: str | None = None
    label: str = "tab:regbench"
    references: tuple[str, ...] | None = None  # Wilcoxon against these (None: the study's reference); the first marks Table 1
    alpha: float = 0.05
    compare_paper: bool = False
    paper_dataset: str | None = None  # compare this run with the paper's acdc or mnm numbers
    figures: bool = True
    html: bool = True  # report/index.html: the report as one self-contained page (regbench.html)
    layout: str = "auto"  # Table 1's LaTeX: plain | fit | wide | auto (see LAYOUTS)
    by: str | None = None  # also Table 1, tests and ranks per value of this group attribute (per_case.csv's by_NAME)
    resamples: int = RANK_RESAMPLES  # bootstrap resamples of the units for ranks.csv and the bold cells' stability
    seed: int = 0  # of the bootstraps (effect-size intervals, ranks): the same seed writes the same files
    study: Study = DEFAULT_STUDY  # row order, reference, baselines and published numbers

    def resolved_references(self) -> tuple[str, ...]:
        """The methods the paired tests are against: those given, else the study's reference."""
        return tuple(self.references) if self.references is not None else (self.study.reference,)
