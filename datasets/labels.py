"""What the cardiac datasets share: the labels they declare (the GSMorph paper's structures in ACDC's values,
which M&M and the synthetic heart share) and how a short-axis slice is named as a case."""

from ..study import GSMORPH_MICCAI2023

CARDIAC_LABELS: dict[str, int] = dict(GSMORPH_MICCAI2023.labels)  # LV 3, Myo 2, RV 1


def slice_case_id(subject: str, slice_index: int) -> str:
    """A slice's case id, ``SUBJECT-SLICE`` (the spelling of run directories before case ids existed)."""
    return f"{subject}-{int(slice_index)}"
