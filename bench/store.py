"""The store: one append-only record per finished case of a run directory (``cases.jsonl``).

``cases.jsonl`` gets one JSON line per finished case (success or failure), flushed and fsynced before the
runner moves on, so a run killed at any moment loses at most the case in flight; a torn last line is
dropped on reopening, while a damaged line anywhere else is an error naming the file and line (nothing is
truncated behind the user's back). A failed case is retried by the next run: its new line supersedes the
old one (the last line of a key wins), and cases that succeeded are never recomputed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileio import naming_error
from .rundir import RunDir, migrate_case_row


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):  # a per-point measure (per_point.csv)
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class RunStore:
    """Finished cases of a run directory, keyed by (method, case id, seed); format-2 lines are read as format 3."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = RunDir(self.run_dir).cases
        self.rows: dict[tuple[str, str, int | None], dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.splitlines(keepends=True)
        good_end = 0
        for number, line in enumerate(lines, 1):
            last = number == len(lines)
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no end of line")
                row = migrate_case_row(json.loads(line))
                key = self.key(row)
            except (ValueError, KeyError, TypeError) as exc:
                if last:
                    break  # torn write of the case in flight when a run was killed: dropped, recomputed
                raise ConfigError(
                    f"{self.path} line {number} is damaged ({type(exc).__name__}: {exc}); the {len(lines) - number} "
                    "line(s) after it are intact. Delete or repair that line, then run again."
                ) from None
            self.rows[key] = row  # a later line of a key (a retried failure) supersedes the earlier one
            good_end += len(line)
        if good_end != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    @staticmethod
    def key(row: dict[str, Any]) -> tuple[str, str, int | None]:
        """(method, case id, training seed or None): with --seeds, one case per pair and seed."""
        seed = row.get("seed")
        return (row["method"], str(row["case_id"]), None if seed is None else int(seed))

    def done(self, method: str, seed: int | None = None) -> set[str]:
        """Case ids of the cases of ``method`` (and ``seed``) stored as successful; failed ones are computed again."""
        return {c for (m, c, e), row in self.rows.items() if m == method and e == seed and row.get("status") == "ok"}

    def failed(self, method: str, seed: int | None = None) -> set[str]:
        return {c for (m, c, e), row in self.rows.items() if m == method and e == seed and row.get("status") != "ok"}

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _jsonable(v) for k, v in row.items()}
        key = self.key(row)
        if self.rows.get(key, {}).get("status") == "ok":
            return  # a successful case is never doubled nor replaced
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, allow_nan=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise naming_error(exc, self.path) from exc
        self.rows[key] = row

    def all_rows(self) -> list[dict[str, Any]]:
        return list(self.rows.values())
