"""What the cardiac datasets share: the labels they declare (ACDC's values, which M&M and the synthetic heart
share) and how a short-axis slice is named as a case."""

CARDIAC_LABELS: dict[str, int] = {"LV": 3, "Myo": 2, "RV": 1}


def slice_case_id(subject: str, slice_index: int) -> str:
    """A slice's case id, ``SUBJECT-SLICE`` (the spelling of run directories before case ids existed)."""
    return f"{subject}-{int(slice_index)}"
