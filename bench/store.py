"""The run directory: one append-only record per finished case, the manifest, and atomic file writes.

``cases.jsonl`` gets one JSON line per finished case (success or failure), flushed and fsynced before the
runner moves on, so a run killed at any moment loses at most the case in flight; a torn last line is
dropped on reopening. The manifest ties the directory to one dataset and one set of settings: adding methods
is allowed, other data or settings is refused.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError

CASES_FILE = "cases.jsonl"
MANIFEST_FILE = "manifest.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class RunStore:
    """Finished cases of a run directory, keyed by (method, subject, slice)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / CASES_FILE
        self.rows: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        good_end = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn write from an interrupted run
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            self.rows[(row["method"], str(row["subject"]), int(row["slice"]))] = row
            good_end += len(line)
        if good_end != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def done(self, method: str) -> set[tuple[str, int]]:
        return {(s, z) for (m, s, z) in self.rows if m == method}

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _jsonable(v) for k, v in row.items()}
        key = (row["method"], str(row["subject"]), int(row["slice"]))
        if key in self.rows:
            return  # never doubled
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows[key] = row

    def all_rows(self) -> list[dict[str, Any]]:
        return list(self.rows.values())


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); move it away or choose another --out") from None


def bind_run_dir(run_dir: Path, fingerprint: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Create or reopen a run directory; refuse one made for other data or settings."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        if Path(run_dir).exists() and any(p.name == CASES_FILE for p in Path(run_dir).iterdir()):
            raise ConfigError(f"{run_dir} holds {CASES_FILE} but no {MANIFEST_FILE}: not a run directory regbench can resume")
        manifest = {"fingerprint": fingerprint, "methods": {}, **extra}
    else:
        old = manifest.get("fingerprint", {})
        diffs = [k for k in sorted(set(old) | set(fingerprint)) if old.get(k) != fingerprint.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {fingerprint.get(k)!r} now" for k in diffs)
            raise ConfigError(
                f"run directory {run_dir} holds a run with other settings ({detail}). "
                "Use another --out, or the same settings to resume or add methods."
            )
        manifest.update(extra)
    write_manifest(run_dir, manifest)
    return manifest


def bind_method(run_dir: Path, manifest: dict[str, Any], method: str, options: dict[str, Any]) -> None:
    """Record a method's settings; refuse to mix results of one method name under two settings."""
    options = json.loads(json.dumps(options, default=str))
    old = manifest["methods"].get(method)
    if old is not None and old != options:
        diffs = [k for k in sorted(set(old) | set(options)) if old.get(k) != options.get(k)]
        detail = "; ".join(f"{k}: {old.get(k)!r} there, {options.get(k)!r} now" for k in diffs)
        raise ConfigError(f"run directory {run_dir} holds '{method}' run with other options ({detail}); use another --out")
    manifest["methods"][method] = options
    write_manifest(run_dir, manifest)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def iter_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
