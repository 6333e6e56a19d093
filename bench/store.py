"""The run directory: one append-only record per finished case, the manifest, and atomic file writes.

``cases.jsonl`` gets one JSON line per finished case (success or failure), flushed and fsynced before the
runner moves on, so a run killed at any moment loses at most the case in flight; a torn last line is
dropped on reopening, while a damaged line anywhere else is an error naming the file and line (nothing is
truncated behind the user's back). A failed case is retried by the next run: its new line supersedes the
old one (the last line of a key wins), and cases that succeeded are never recomputed. The manifest ties the directory to one dataset and one set of settings: adding methods
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    The file gets the mode a plain ``open()`` would give (0666 less the umask): ``mkstemp`` creates 0600,
    which colleagues and containers under another user could not read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with the file the user should look at (a full disk's ENOSPC from write() names no file)."""
    if exc.filename is not None and not str(exc.filename).startswith(str(Path(path).parent / f".{Path(path).name}.")):
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class RunStore:
    """Finished cases of a run directory, keyed by (method, subject, slice, seed)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / CASES_FILE
        self.rows: dict[tuple[str, str, int, int | None], dict[str, Any]] = {}
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
                row = json.loads(line)
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
    def key(row: dict[str, Any]) -> tuple[str, str, int, int | None]:
        """(method, subject, slice, training seed or None): with --seeds, one case per pair and seed."""
        seed = row.get("seed")
        return (row["method"], str(row["subject"]), int(row["slice"]), None if seed is None else int(seed))

    def done(self, method: str, seed: int | None = None) -> set[tuple[str, int]]:
        """(subject, slice) of the cases of ``method`` (and ``seed``) stored as successful; failed ones are
        computed again."""
        return {(s, z) for (m, s, z, e), row in self.rows.items() if m == method and e == seed and row.get("status") == "ok"}

    def failed(self, method: str, seed: int | None = None) -> set[tuple[str, int]]:
        return {(s, z) for (m, s, z, e), row in self.rows.items() if m == method and e == seed and row.get("status") != "ok"}

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
            raise _naming(exc, self.path) from exc
        self.rows[key] = row

    def all_rows(self) -> list[dict[str, Any]]:
        return list(self.rows.values())


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); move it away or choose another --out") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("methods", {}), dict) or not isinstance(manifest.get("fingerprint", {}), dict):
        raise ConfigError(f"{path} is not a regbench manifest (a JSON object with 'fingerprint' and 'methods' objects, got "
                          f"{type(manifest).__name__}); move it away or choose another --out")
    return manifest


def holds_results(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a stored case or a model file (what a manifest's settings protect)."""
    run_dir = Path(run_dir)
    cases = run_dir / CASES_FILE
    if cases.exists() and cases.stat().st_size > 0:
        return True
    models = run_dir / "models"
    return models.is_dir() and any(p.is_file() for p in models.rglob("*"))


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
        if diffs and not holds_results(run_dir):  # e.g. an earlier run refused for a bad --root: nothing to protect
            manifest = {"fingerprint": fingerprint, "methods": {}, **extra}
            write_manifest(run_dir, manifest)
            return manifest
        if diffs:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {fingerprint.get(k)!r} now" for k in diffs)
            raise ConfigError(
                f"run directory {run_dir} holds a run with other settings ({detail}). "
                "Use another --out, or the same settings to resume or add methods."
            )
        manifest.update(extra)
    write_manifest(run_dir, manifest)
    return manifest


def check_method_binding(run_dir: Path, manifest: dict[str, Any], method: str, options: dict[str, Any]) -> None:
    """Refuse options for ``method`` that differ from those its stored results were computed with."""
    options = json.loads(json.dumps(options, default=str))
    old = manifest["methods"].get(method)
    if old is not None and old != options:
        diffs = [k for k in sorted(set(old) | set(options)) if old.get(k) != options.get(k)]
        detail = "; ".join(f"{k}: {old.get(k)!r} there, {options.get(k)!r} now" for k in diffs)
        raise ConfigError(f"run directory {run_dir} holds '{method}' run with other options ({detail}); use another --out")


def bind_method(run_dir: Path, manifest: dict[str, Any], method: str, options: dict[str, Any], info: dict[str, Any] | None = None) -> None:
    """Record a method's settings (and ``info``: resolved options, provider, display name); refuse to mix
    results of one method name under two settings."""
    check_method_binding(run_dir, manifest, method, options)
    manifest["methods"][method] = json.loads(json.dumps(options, default=str))
    if info is not None:
        manifest.setdefault("method_info", {})[method] = json.loads(json.dumps(info, default=str))
    write_manifest(run_dir, manifest)


def prepare_run_dir(run_dir: Path, hint: str = "choose another --out") -> None:
    """Create ``run_dir`` and prove it writable before any work, so a bad --out costs nothing."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a directory; give a directory for the run")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"run directory {run_dir} is not writable ({exc.strerror or exc}); {hint}") from None


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")


def iter_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
