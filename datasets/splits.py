"""Subject-level train/val/test splits: deterministic from a seed, or read from a user's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "val", "test")


def split_subjects(names: Sequence[str], seed: int, fractions: Sequence[float]) -> dict[str, list[str]]:
    """A permutation fixed by ``seed``; test and val get their fraction (at least one subject each once
    there are three subjects), train the rest."""
    names = list(names)
    order = np.random.default_rng([seed, 7919]).permutation(len(names))
    n_test, n_val = round(fractions[2] * len(names)), round(fractions[1] * len(names))
    if len(names) >= 3:
        n_test, n_val = max(n_test, 1), max(n_val, 1)
    test = sorted(names[i] for i in order[:n_test])
    val = sorted(names[i] for i in order[n_test : n_test + n_val])
    train = sorted(names[i] for i in order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def read_split_file(path: Path, names: Sequence[str]) -> dict[str, list[str]]:
    """A JSON or YAML file mapping train, val and test to lists of subjects, each known and in one split."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"split file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"split file {path} is not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(SPLITS):
        raise ConfigError(f"split file {path} must map exactly train, val and test to lists of subjects")
    known, seen = set(names), set()
    for split in SPLITS:
        for subject in data[split] or []:
            if str(subject) not in known:
                raise ConfigError(f"split file {path}: subject {subject!r} in {split!r} is not in the dataset")
            if str(subject) in seen:
                raise ConfigError(f"split file {path}: subject {subject!r} is in more than one split")
            seen.add(str(subject))
    return {split: sorted(str(s) for s in data[split] or []) for split in SPLITS}
