"""``regbench export``: a run's flows written as files another kit reads, with their convention stated beside them.

The flows come from the run directory's kept flows (``flows/METHOD/CASE_ID.npz``: a run with ``keep_flows`` /
``--keep-flows`` keeps every scored case's), else its example files (``examples/METHOD/CASE_ID.npz``, the first
``example_pairs`` test pairs); the first seed's, for methods trained at several. A case with neither is named, and
the same ``regbench run`` command with ``--keep-flows`` computes only the missing flows. Formats:

- ``learn2reg``: channel last ``(*shape, ndim)``, voxels, component k along array axis k, pull, full resolution
  (Learn2Reg's submission convention), float32 or float16; one ``disp_CASE_ID.npz`` per pair holding ``arr_0``
  (the array the kit reads): on a Learn2Reg task, whose case ids are ``CCCC_MMMM_CCCC_MMMM``, these are the
  long names a submission needs;
- ``regbench``: regbench's own, channel first ``(ndim, *shape)``; one ``CASE_ID.npz`` per pair holding ``disp``.

The files go to ``OUT/METHOD/`` with ``convention.json`` stating the file pattern and array key, the
format, the :class:`~regbench.fields.FieldConvention`, the converter version, the run and the method: read back
as ``fields.<tag>`` with that convention, an export reproduces the method's rows — Dice, HD95 and the field's
own metrics exactly; MSE exactly for a method whose moved image is regbench's warp of its flow, and for a tool
that resamples its own moved image (Demons, SyN, elastix: ITK) at every voxel whose sample point ``p + u(p)``
lies inside the grid. Outside it the resamplers pad differently (ITK repeats the edge value half a voxel out and
gives 0 beyond; regbench's warp blends toward 0 over one voxel), so MSE scored back differs by those voxels'
share, which ``convention.json`` states as ``samples_outside_grid`` and export prints: on a stack of a few thick
slices moved through-plane it is several per cent of the voxels (Demons on the smoke profile's 10-slice volumes:
5–7 %, MSE 0.0043 vs 0.0048 and 0.0091 vs 0.0070).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .fields import CONVERTER_VERSION, FieldConvention, from_regbench
from .fileio import atomic_write_npz, atomic_write_text
from .rundir import RunDir, read_manifest
from .store import RunStore
from .warp import samples_inside

FORMATS: dict[str, FieldConvention] = {"learn2reg": FieldConvention(layout="channel_last"), "regbench": FieldConvention()}
#: Each format's file name pattern and array key (Learn2Reg's kit reads ``arr_0`` of a ``disp_*.npz``).
FILES: dict[str, tuple[str, str]] = {"learn2reg": ("disp_{case_id}.npz", "arr_0"), "regbench": ("{case_id}.npz", "disp")}
DTYPES = ("float32", "float16")


@dataclass
class ExportResult:
    out_dir: Path
    written: dict[str, int] = field(default_factory=dict)  # method -> files written
    missing: dict[str, list[str]] = field(default_factory=dict)  # method -> scored cases without a stored flow
    outside: dict[str, float] = field(default_factory=dict)  # method -> share of voxels whose p + u(p) leaves the grid


def export_fields(run_dir: Path, fmt: str, out_dir: Path | None = None, dtype: str = "float32", methods: Sequence[str] | None = None) -> ExportResult:
    """Write the flows of ``run_dir``'s scored cases in ``fmt`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise ConfigError(f"{run_dir} is not a run directory (no manifest.json)")
    scored: dict[str, list[str]] = {}
    for row in RunStore(run_dir).all_rows():
        if row.get("status") == "ok":
            scored.setdefault(str(row["method"]), [])
            if row["case_id"] not in scored[row["method"]]:
                scored[str(row["method"])].append(str(row["case_id"]))
    chosen = list(methods) if methods else sorted(scored)
    unknown = [m for m in chosen if m not in scored]
    if unknown:
        raise ConfigError(f"{run_dir} has no scored cases of {', '.join(map(repr, unknown))}; it has {', '.join(sorted(scored)) or 'none'}")
    convention = FORMATS[fmt]
    pattern, key = FILES[fmt]
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export" / fmt
    result = ExportResult(out_dir)
    layout = RunDir(run_dir)
    for method in chosen:
        folder = out_dir / method
        folder.mkdir(parents=True, exist_ok=True)
        written, outside = 0, []
        for case_id in scored[method]:
            source = next((path for path in (layout.flow(method, case_id), layout.example(method, case_id)) if path.is_file()), None)
            if source is None:
                result.missing.setdefault(method, []).append(case_id)
                continue
            with np.load(source) as example:
                flow = np.asarray(example["flow"], np.float32)
            outside.append(1.0 - float(np.mean(samples_inside(flow))))
            array = from_regbench(flow, convention, (1.0,) * (flow.ndim - 1)).astype(dtype)  # voxels: no spacing used
            atomic_write_npz(folder / pattern.format(case_id=case_id), {key: array})
            written += 1
        result.written[method] = written
        result.outside[method] = float(np.mean(outside)) if outside else 0.0
        record: dict[str, Any] = {
            "format": fmt,
            "convention": convention.record(),
            "converter": CONVERTER_VERSION,
            "dtype": dtype,
            "pattern": pattern,
            "key": key,
            "method": method,
            "run": str(run_dir),
            "dataset": manifest.dataset,
            "files": written,
            "samples_outside_grid": round(result.outside[method], 6),
            "seed": "the first seed's flows (kept flows and examples are a method's first seed's)",
        }
        atomic_write_text(folder / "convention.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    return result
