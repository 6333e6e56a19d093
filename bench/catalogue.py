"""The built-in methods' declarations, read without importing their modules.

A method module declares its ``MethodMeta`` where it registers the method; importing it can cost a second (the deep
methods import torch). ``regbench run --dry-run`` decides and prints a whole plan from declarations alone, so it
reads them from ``catalogue.json`` beside this module: for each built-in, its module, its metadata, the keyword
parameters its factory takes and the option names it accepts. The file is derived, never edited: ``python -m
regbench.catalogue`` writes it from the modules, and a test holds it equal to them (as the import graph).
The registry reads it only inside :func:`declarations_only` (the dry run's), so a stale file can misprint a dry
run but never change what a run computes. A declared ``profile_options`` is named by ``module:function`` and
imported when the file is read: it must live in a light module (``regbench.config``, ``regbench.methods.syn``).

Plugins from entry points or ``--plugin`` are not in it: their modules are imported as before.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .registry import METHODS, MethodMeta, accepted_options, factory_parameters

FILE = Path(__file__).with_name("catalogue.json")
FORMAT = 1
_TUPLE_FIELDS = ("requires", "dims", "family", "sweep")


@dataclass(frozen=True)
class Declared:
    """One built-in method as its module declares it."""

    module: str
    meta: MethodMeta
    parameters: frozenset[str]  # the factory's keyword parameters (seed, device, ...: what the run passes it)
    accepted: frozenset[str] | None  # the option names it takes (None: it checks its **kwargs itself)


def _reference(function: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function (what profile_options may be, to be declared here)."""
    module, name = function.__module__, function.__qualname__
    if getattr(importlib.import_module(module), name, None) is not function:
        raise ValueError(f"{module}.{name} is not a module-level function: the catalogue cannot name it")
    return f"{module}:{name}"


def _resolve(reference: str) -> Callable[..., Any]:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def encode_meta(meta: MethodMeta) -> dict[str, Any]:
    """``meta`` as JSON values; its fields at their defaults are left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(meta):
        value = getattr(meta, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value == default:
            continue
        if f.name == "profile_options":
            value = _reference(value)
        elif f.name == "option_names":
            value = sorted(value)
        elif f.name in _TUPLE_FIELDS:
            value = list(value)
        elif f.name == "default_options":
            value = dict(value)
        out[f.name] = value
    return out


def decode_meta(data: Mapping[str, Any]) -> MethodMeta:
    values = dict(data)
    for name in _TUPLE_FIELDS:
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    if "option_names" in values:
        values["option_names"] = frozenset(values["option_names"])
    if "profile_options" in values:
        values["profile_options"] = _resolve(values["profile_options"])
    return MethodMeta(**values)


def collect() -> dict[str, Any]:
    """The catalogue as the modules declare it now: every built-in method imported."""
    methods = {}
    for name, module in sorted(METHODS._builtins.items()):
        factory, meta = METHODS.get(name), METHODS.meta(name)
        accepted = accepted_options(factory, meta)
        methods[name] = {
            "module": module,
            "meta": encode_meta(meta),
            "parameters": sorted(factory_parameters(factory)),
            "accepted": None if accepted is None else sorted(accepted),
        }
    return {"format": FORMAT, "methods": methods}


@cache
def read() -> dict[str, Declared]:
    """The catalogue file's declarations ({} where the file is missing or of another format: then modules are
    imported as they would be without it)."""
    try:
        data = json.loads(FILE.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("format") != FORMAT:
        return {}
    return {
        name: Declared(
            module=entry["module"],
            meta=decode_meta(entry["meta"]),
            parameters=frozenset(entry["parameters"]),
            accepted=None if entry["accepted"] is None else frozenset(entry["accepted"]),
        )
        for name, entry in data["methods"].items()
    }


@contextmanager
def declarations_only() -> Iterator[None]:
    """Within it, the registry describes a built-in method not imported yet by its catalogue entry."""
    METHODS.use_declarations(read())
    try:
        yield
    finally:
        METHODS.use_declarations(None)


def text(catalogue: Mapping[str, Any]) -> str:
    return json.dumps(catalogue, indent=1, sort_keys=True) + "\n"


def main() -> None:
    FILE.write_text(text(collect()))
    print(f"wrote {FILE} ({len(read.__wrapped__())} methods)")


if __name__ == "__main__":
    main()
