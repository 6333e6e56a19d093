"""Studies: a published experiment regbench reproduces, as data that generic code reads.

A study names its methods in row order, its reference method (paired tests, the relative step time), the
methods that do not deform (their deformation metrics are printed '-'), the datasets it published numbers for
and where those numbers are. The GSMorph paper is the first; a second study (a 3-D or Learn2Reg task) is a
second :class:`Study`, with no change to the report, figures, CLI or perf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    methods: tuple[str, ...]  # the study's rows, in its order (the method alias ``name``)
    reference: str  # paired tests are against it by default
    step_reference: str  # `regbench perf` states training steps relative to this method's
    baselines: tuple[str, ...] = ()  # methods that do not deform: their NJD and SDlogJ are printed '-'
    alias: str = ""  # the --methods name for the study's methods
    published_datasets: dict[str, str] = field(default_factory=dict)  # dataset -> display name, with published numbers
    published_table1: str | None = None  # file in regbench.published: dataset, method, metric, unit, mean, std, as_printed
    published_table2: str | None = None
    # The labels its datasets declare (display name → value in their label maps). The default study's are also
    # what a dataset that declares none is scored on, as regbench did before datasets declared labels.
    labels: Mapping[str, int] = field(default_factory=dict)

    def published(self) -> pd.DataFrame:
        """The study's published Table 1 (its units: Dice %, MSE ×10⁻², as printed)."""
        from importlib.resources import files

        import pandas as pd

        if self.published_table1 is None:
            return pd.DataFrame(columns=["dataset", "method", "metric", "unit", "mean", "std", "as_printed"])
        return pd.read_csv(files("regbench.published").joinpath(self.published_table1).open())


GSMORPH_MICCAI2023 = Study(
    name="gsmorph-miccai2023",
    title="GSMorph: Gradient Surgery for cine-MRI Cardiac Deformable Registration (MICCAI 2023)",
    methods=("initial", "demons", "syn", "voxelmorph-s", "voxelmorph-m", "voxelmorph-l", "hypermorph", "gs-agr", "gs-pcgrad", "gsmorph"),
    reference="gsmorph",
    step_reference="voxelmorph-m",
    baselines=("initial",),  # the paper prints '-' for Initial's NJD
    alias="paper",
    published_datasets={"acdc": "ACDC", "mnm": "M&M"},
    published_table1="gsmorph_miccai2023_table1.csv",
    published_table2="gsmorph_miccai2023_table2.csv",
    labels={"LV": 3, "Myo": 2, "RV": 1},  # ACDC's values, which M&M and the synthetic heart share
)

# VoxelMorph's λ, log-spaced at half decades from 1e-4 to 1 (the tags of ``voxelmorph.<λ>``).
LAMBDA_GRID = ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1", "3e-1", "1")

# The question GSMorph asks, measured: where each hyper-parameter-free method sits against what tuning λ reaches
# (the trade-off front of the λ grid and HyperMorph's test-time λ curve; `regbench transfer` carries a λ tuned on
# one dataset to another). No published numbers.
TRADEOFF = Study(
    name="tradeoff",
    title="The accuracy–smoothness trade-off: a VoxelMorph λ grid against the hyper-parameter-free methods",
    methods=("initial", *(f"voxelmorph.{lam}" for lam in LAMBDA_GRID), "hypermorph", "voxelmorph-diff", "gs-agr", "gs-pcgrad", "gsmorph"),
    reference="gsmorph",
    step_reference="voxelmorph.1e-2",
    baselines=("initial",),
    alias="tradeoff",
)

STUDIES: dict[str, Study] = {study.name: study for study in (GSMORPH_MICCAI2023, TRADEOFF)}
DEFAULT_STUDY = GSMORPH_MICCAI2023
