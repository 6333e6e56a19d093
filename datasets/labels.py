"""The labels the cardiac datasets declare (ACDC's values, which M&M and the synthetic heart share)."""

CARDIAC_LABELS: dict[str, int] = {"LV": 3, "Myo": 2, "RV": 1}
