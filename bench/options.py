"""One resolution of a method's options, used by ``run``, ``train``, ``check-method`` and ``perf``.

Later layers win: the method's declared defaults (``MethodMeta.default_options``: bound into the run directory, so
a run made under another default is refused rather than reused) < the method's own settings for the profile
(``MethodMeta.profile_options(profile)``, or ``(profile, dims)`` where it takes ``dims``; the deep methods': the
profile's ``training``, on volumes with its ``volume_training`` over it) < the profile's entry for this method
(``Profile.method_options``, e.g. GS-Agr's 240 epochs in ``reproduce``; on volumes ``volume_method_options`` over
it) < the run's ``seed`` and ``device``, for a factory that takes them < the user's ``method_options`` (YAML config).

``dims`` is the dimension of the dataset's images (:func:`dataset_dims`): profiles size volumes apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .config import get_profile
from .interface import HasOptions
from .registry import DATASETS, METHODS


def dataset_dims(dataset: str) -> int:
    """The image dimension a dataset declares (``DatasetMeta.dims``); 2 where it declares several."""
    declared = tuple(DATASETS.meta(dataset).dims)
    return declared[0] if len(declared) == 1 else 2


def resolve_method_options(
    name: str, profile: str, user_options: Mapping[str, Any] | None = None, seed: int = 0, device: str = "auto", dims: int = 2
) -> dict[str, Any]:
    """The keyword options ``name`` is built with under ``profile`` for ``dims``-D images (see the module
    docstring for the order)."""
    meta = METHODS.meta(name)
    options: dict[str, Any] = dict(meta.default_options or {})
    if callable(meta.profile_options):
        takes_dims = "dims" in _parameters(meta.profile_options)
        options.update(meta.profile_options(profile, dims=dims) if takes_dims else meta.profile_options(profile))
    options.update(get_profile(profile).options_for(name, dims))
    params = METHODS.parameters(name)
    if "seed" in params:
        options["seed"] = seed
    if "device" in params:
        options["device"] = device
    options.update(user_options or {})
    return options


def _parameters(function: Any) -> Mapping[str, Any]:
    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


def resolved_options(name: str, options: Mapping[str, Any], method: Any) -> dict[str, Any]:
    """What a built method actually runs with: the factory's defaults, the ``options`` it was built with, then
    the method's own ``options()`` where it has one (training settings, device resolved); ``progress`` left out.
    The manifest records this (``method_info``); ``check-method`` prints it."""
    resolved: dict[str, Any] = {}
    try:
        resolved.update({k: p.default for k, p in inspect.signature(METHODS.get(name)).parameters.items() if p.default is not p.empty})
    except (TypeError, ValueError):
        pass
    resolved.update(options)
    if isinstance(method, HasOptions):
        resolved.update(method.options())
    resolved.pop("progress", None)
    return resolved
