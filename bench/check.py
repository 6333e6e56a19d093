"""``check_method``: one call that proves a method plugin conforms (cf. scikit-learn's check_estimator).

Checks run on small synthetic pairs: output types, shapes and dtypes; finite values; the moved image agrees
with the returned flow under regbench's warper (catches swapped channels or normalised units); an identical
pair gives ~zero motion; a pair made by warping an image with a known smooth displacement is recovered (end-point
error below 80% of zero motion's: catches swapped channels, flipped signs, other units; trainable methods are
trained on copies of that pair first); warped labels stay in the label set; the same seed gives the same
result; bad input (shapes differ) raises; trainable methods survive a save/load round trip. For trainable
methods the identity check runs before ``fit`` (on the method as constructed).
"""

from __future__ import annotations

import json
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .interface import PairAwareMethod, Registration, check_moved_agrees_with_flow, validate_registration
from .options import resolve_method_options, resolved_options
from .pyramid import is_isotropic
from .registry import METHODS, is_trainable, meta_of
from .warp import warp

# An identical pair should move nothing: mean |u| below this many pixels.
IDENTITY_TOLERANCE_PX = 0.1
# Known-displacement check: a smooth bump of this many pixels along rows (a quarter of it along columns); the
# method's end-point error inside the bump must be below this share of zero motion's. A method that swaps the
# flow's channels, flips its sign or returns it in other units does worse than zero motion.
KNOWN_DISPLACEMENT_PX = 2.5
RECOVERY_MAX_SHARE = 0.8
#: A trainable method is trained on this many copies of the known pair first, by dimension. A volume's smoke
#: training takes 5x a slice's steps per pair (10 epochs at batch 2, not 2 at batch 4): 8 copies give 40 steps, and
#: every deep method recovered the 3-D displacement with an end-point error of 0.17-0.70 px (zero motion 1.32 px)
#: in a quarter of the 32 copies' time (about 20 s instead of 50 on one thread).
KNOWN_PAIR_COPIES = {2: 32, 3: 8}


def known_displacement_pair(moving: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fixed, true flow, mask): fixed = warp(moving, flow) for a smooth Gaussian bump centred on the image, so
    that the true answer of registering (fixed, moving) is ``flow`` inside ``mask``. 2-D: mostly along rows (a
    quarter along columns). 3-D: the same in each slice's plane plus a fifth along axis 0, the three components
    different so that a method that permutes the channels is caught."""
    shape = moving.shape
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    if moving.ndim == 2:
        sigma = min(shape) / 6
        bump = np.exp(-((grids[0] - shape[0] / 2) ** 2 + (grids[1] - shape[1] / 2) ** 2) / (2 * sigma**2)).astype(np.float32)
        components = [KNOWN_DISPLACEMENT_PX, 0.25 * KNOWN_DISPLACEMENT_PX]
    else:
        bump = np.exp(-sum(((g - n / 2) / (n / 6)) ** 2 for g, n in zip(grids, shape)) / 2).astype(np.float32)
        components = [0.2 * KNOWN_DISPLACEMENT_PX, KNOWN_DISPLACEMENT_PX, 0.25 * KNOWN_DISPLACEMENT_PX]
    flow = np.stack([c * bump for c in components]).astype(np.float32)
    return warp(moving, flow), flow, bump > 0.3


#: Every conformance check, by the name ``--check`` takes → the name its result is printed under (on volumes
#: followed by "(3-D)"), in the order they run.
CHECKS: dict[str, str] = {
    "name": "name",
    "identity": "identical pair gives ~zero motion",
    "fit": "fit",
    "register": "register",
    "register_pair": "register_pair",
    "shapes": "shapes and dtypes",
    "finite": "finite outputs",
    "consistent": "moved agrees with flow",
    "labels": "label warping",
    "recovers_displacement": "recovers a known displacement",
    "deterministic": "same seed, same result",
    "rejects_bad_input": "rejects images of different shapes",
    "save_load": "save/load round trip",
}
#: Checks that read the registration ``register`` makes: run with it, silently, when chosen alone.
NEEDS_REGISTRATION = frozenset({"shapes", "finite", "consistent", "labels"})


def chosen_checks(only: Any) -> frozenset[str]:
    """The checks ``only`` names (None: every one); an unknown name is one error listing them."""
    import difflib

    from .errors import ConfigError

    if only is None:
        return frozenset(CHECKS)
    chosen = [str(name) for name in ([only] if isinstance(only, str) else only)]
    unknown = [n for n in chosen if n not in CHECKS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(CHECKS), n=1)
        raise ConfigError(f"no check named {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; checks: {', '.join(CHECKS)}")
    return frozenset(chosen)


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str = ""


@dataclass
class CheckReport:
    method: str
    results: list[CheckResult] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # resolved, as a run's manifest records them

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def __str__(self) -> str:
        lines = [f"options: {json.dumps(self.options, sort_keys=True, default=str)}"] if self.options else []
        lines += [f"{'PASS' if r.passed else 'FAIL'} {r.name}" + (f": {r.message}" if r.message else "") for r in self.results]
        lines.append(f"{self.method}: {sum(r.passed for r in self.results)}/{len(self.results)} checks passed")
        return "\n".join(lines)


def _sample_pairs(size: int = 64, n: int = 4, dims: int = 2) -> list[Any]:
    """Small synthetic pairs: 2-D slices of ``size`` px, or 3-D stacks of 10 slices of ``size // 2`` px."""
    from .registry import create_dataset

    if dims == 3:
        volumes = create_dataset("synthetic3d", n_subjects=max(n, 4), image_size=size // 2, seed=123)
        return [p for split in ("train", "val", "test") for p in volumes.pairs(split)][:n]
    ds = create_dataset("synthetic", n_subjects=4, image_size=size, seed=123)
    pairs = [p for s in ds.subjects() for p in ds.subject_pairs(s)]
    return pairs[1 : 1 + n]


def declared_dims(method_or_name: Any) -> tuple[int, ...]:
    """The image dimensions a method declares (``MethodMeta.dims`` for a registered name, else its ``dims``
    attribute; 2-D when it says nothing)."""
    if isinstance(method_or_name, str):
        return tuple(METHODS.meta(method_or_name).dims)
    return tuple(meta_of(method_or_name).dims)


@dataclass
class CheckContext:
    """What the checks of one dimension share: the method, a way to build a second one (None: it cannot be),
    the pairs, and what earlier checks found."""

    method: Any
    make: Callable[[], Any] | None  # a fresh instance with this dimension's options
    train: list[Any]  # three pairs for fit
    pair: Any  # the pair registered
    registration: Registration | None = None  # register's answer, read by shapes, finite, consistent, labels
    failed: set[str] = field(default_factory=set)  # the chosen checks that failed (their keys)
    not_finite: bool = False


def check_name(ctx: CheckContext) -> None:
    assert isinstance(getattr(ctx.method, "name", None), str) and ctx.method.name, "method has no string 'name'"


def check_identity(ctx: CheckContext) -> str:
    reg = ctx.method.register(ctx.pair.fixed, ctx.pair.fixed.copy())
    motion = float(np.abs(reg.flow).mean())
    assert motion < IDENTITY_TOLERANCE_PX, f"identical pair gives mean |flow| {motion:.3f} px (≥ {IDENTITY_TOLERANCE_PX})"
    return f"mean |flow| {motion:.1e} px"


def check_fit(ctx: CheckContext) -> str:
    if not is_trainable(ctx.method):
        return "not trainable (no fit/save/load): skipped"
    ctx.method.fit(ctx.train, ctx.train[:1], workdir=None)
    return "fit on 3 pairs"


def check_register(ctx: CheckContext) -> None:
    reg = ctx.method.register(ctx.pair.fixed, ctx.pair.moving)
    assert isinstance(reg, Registration), f"register() returned {type(reg).__name__}, not Registration"
    ctx.registration = reg


def check_register_pair(ctx: CheckContext) -> str:
    method, pair = ctx.method, ctx.pair
    if not isinstance(method, PairAwareMethod):
        return "no register_pair: the runner calls register(fixed, moving)"
    reg = method.register_pair(pair)
    try:
        validate_registration(reg, pair.fixed.shape)
        err = check_moved_agrees_with_flow(pair.moving, reg)
    except InputError as exc:
        raise AssertionError(f"register_pair(pair): {exc}") from None
    if ctx.registration is not None and is_isotropic(pair.spacing):
        diff = float(np.abs(np.asarray(reg.flow) - np.asarray(ctx.registration.flow)).max())
        assert diff < 1e-4, f"register_pair(pair) and register(fixed, moving) differ by up to {diff:.2e} px on the same pair"
    elif ctx.registration is not None:  # an anisotropic pair: a method may use its spacing, so the two may differ
        return f"the runner calls register_pair(pair) (spacing {tuple(pair.spacing)}); moved agrees with flow (MSE {err:.1e})"
    return f"the runner calls register_pair(pair); moved agrees with flow (MSE {err:.1e})"


def _registration(ctx: CheckContext) -> Registration:
    assert ctx.registration is not None, "register() gave no registration to check"
    return ctx.registration


def check_shapes(ctx: CheckContext) -> None:
    reg, shape = _registration(ctx), ctx.pair.fixed.shape
    assert reg.moved.shape == shape, f"moved image has shape {reg.moved.shape}, expected {shape}"
    expected = (len(shape), *shape)
    assert reg.flow.shape == expected, f"flow has shape {reg.flow.shape}, expected {expected} (channel k along array axis k)"
    assert reg.moved.dtype == np.float32, f"moved image dtype is {reg.moved.dtype}, expected float32"
    assert reg.flow.dtype == np.float32, f"flow dtype is {reg.flow.dtype}, expected float32"


def check_finite(ctx: CheckContext) -> None:
    try:
        validate_registration(_registration(ctx), ctx.pair.fixed.shape)
    except InputError as exc:
        ctx.not_finite = True
        raise AssertionError(str(exc)) from None


def check_consistent(ctx: CheckContext) -> str:
    try:
        err = check_moved_agrees_with_flow(ctx.pair.moving, _registration(ctx))
    except InputError as exc:
        raise AssertionError(str(exc)) from None
    return f"MSE {err:.1e}"


def check_labels(ctx: CheckContext) -> None:
    label = ctx.pair.moving_label
    warped = _registration(ctx).warp_label(label)
    assert warped.shape == label.shape, f"warped label shape {warped.shape}"
    extra = set(np.unique(warped)) - set(np.unique(label)) - {0}
    assert not extra, f"warped labels contain values not in the label set: {sorted(extra)}"


def check_recovers_displacement(ctx: CheckContext) -> str:
    fixed, truth, mask = known_displacement_pair(ctx.pair.moving)
    subject = ctx.method
    if is_trainable(subject):
        # A few smoke steps on unrelated pairs teach no motion; trained on copies of the known pair, a model
        # whose flow convention (units, channel order, sign) is right must recover it.
        if ctx.make is None:
            return "cannot build a second instance to train on the known pair: skipped"
        subject = ctx.make()
        known = replace(ctx.pair, fixed=fixed, flow_gt=truth)
        subject.fit([known] * KNOWN_PAIR_COPIES[fixed.ndim], [known], workdir=None)
    reg = subject.register(fixed, ctx.pair.moving)
    validate_registration(reg, fixed.shape)
    if not np.any(reg.flow):
        return "zero flow everywhere (a no-motion baseline such as initial): nothing to recover"
    error = float(np.sqrt(((np.asarray(reg.flow) - truth) ** 2).sum(0))[mask].mean())
    zero = float(np.sqrt((truth**2).sum(0))[mask].mean())
    swapped = float(np.sqrt(((np.asarray(reg.flow)[::-1] - truth) ** 2).sum(0))[mask].mean())
    hint = f" (with the channels reversed it would be {swapped:.2f} px: is channel k along array axis k?)" if swapped < error else ""
    assert error < RECOVERY_MAX_SHARE * zero, (
        f"end-point error {error:.2f} px on a known {KNOWN_DISPLACEMENT_PX} px displacement, zero motion's is {zero:.2f} px "
        f"(must be below {RECOVERY_MAX_SHARE:.0%} of it){hint}; is the flow in pixels, moved(p) = moving(p + flow(p))?"
    )
    return f"end-point error {error:.2f} px (zero motion {zero:.2f} px)"


def check_deterministic(ctx: CheckContext) -> str | None:
    if ctx.make is None:
        return "cannot build a second instance: skipped"
    other = ctx.make()
    if is_trainable(other):
        other.fit(ctx.train, ctx.train[:1], workdir=None)  # a second training with the same seed
    a = ctx.method.register(ctx.pair.fixed, ctx.pair.moving)
    b = other.register(ctx.pair.fixed, ctx.pair.moving)
    diff = float(np.abs(a.flow - b.flow).max())
    assert diff < 1e-4, f"two runs with the same seed differ by up to {diff:.2e} px"
    return None


def check_rejects_bad_input(ctx: CheckContext) -> None:
    try:
        ctx.method.register(ctx.pair.fixed, ctx.pair.moving[:-3, :])
    except Exception:
        return
    raise AssertionError("images of different shapes were accepted without an error")


def check_save_load(ctx: CheckContext) -> str:
    method = ctx.method
    if not is_trainable(method):
        return "not trainable: skipped"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        method.save(path)
        clone = ctx.make() if ctx.make is not None else method
        clone.load(path)
    a = method.register(ctx.pair.fixed, ctx.pair.moving).flow
    b = clone.register(ctx.pair.fixed, ctx.pair.moving).flow
    assert np.allclose(a, b, atol=1e-5), "save/load changed the registration"
    return "round trip identical"


Check = Callable[[CheckContext], "str | None"]


def yield_checks(ctx: CheckContext, first: bool) -> Iterator[tuple[str, Check]]:
    """The checks that apply to ``ctx``'s method on one dimension, in order, by key (:data:`CHECKS`), read from what
    it declares (trainable) and what the earlier checks found: drawn lazily, so each sees its predecessors' results.
    ``first``: the first dimension checked (the name, and fit and save/load of a method without training, once)."""
    trainable = is_trainable(ctx.method)
    if first:
        yield "name", check_name
    # Before any training: a briefly trained network carries a learned offset, so "identical pair gives ~zero
    # motion" tests the pipeline (padding, transformer, units) on the method as constructed.
    yield "identity", check_identity
    if first or trainable:
        yield "fit", check_fit
    yield "register", check_register
    yield "register_pair", check_register_pair
    if ctx.registration is not None:
        yield "shapes", check_shapes
        yield "finite", check_finite
        if not ctx.not_finite:  # the later checks would only repeat it in other words
            yield "consistent", check_consistent
            yield "labels", check_labels
    if "register" not in ctx.failed:
        yield "recovers_displacement", check_recovers_displacement
    yield "deterministic", check_deterministic
    yield "rejects_bad_input", check_rejects_bad_input
    if first or trainable:
        yield "save_load", check_save_load


def check_method(method_or_name: Any, profile: str | None = "smoke", raise_on_failure: bool = False, only: Any = None, **options: Any) -> CheckReport:
    """Run the conformance checks (:data:`CHECKS`, :func:`yield_checks`; ``only``: the names of those to run,
    e.g. ``["consistent"]``) on every dimension the method declares; a name is built with ``create_method`` (with
    the profile's options for each dimension, validated once, after the last epoch, unless ``val_every`` is given).

    For a method object, the determinism check builds a second one with ``type(method)()`` when possible.
    """
    selected = chosen_checks(only)
    given = method_or_name
    dims_to_check = [d for d in declared_dims(given if isinstance(given, str) else given) if d in (2, 3)] or [2]
    make: Callable[[int], Any] | None
    if isinstance(given, str):

        def options_for(dims: int) -> dict[str, Any]:
            # The options `regbench run --profile PROFILE` would build it with on dims-D data (profile None: the
            # method's own defaults), but validated once, after the last epoch, unless val_every is given: no check
            # reads the validation curve, and on volumes each validation (BatchNorm statistics re-estimated, then a
            # registration) was a fifth of a deep method's check time (VoxelMorph-s: 28 s, validated once 23 s).
            resolved = resolve_method_options(given, profile, options, dims=dims) if profile else dict(options)
            if "val_every" in resolved and "epochs" in resolved and "val_every" not in options:
                resolved["val_every"] = resolved["epochs"]
            return resolved

        def make_named(dims: int) -> Any:
            return METHODS.create(given, **options_for(dims))

        make = make_named
        first_options = options_for(dims_to_check[0])
        method = METHODS.create(given, **first_options)
        name = given
    else:
        method = given
        name = getattr(method, "name", type(method).__name__)
        make = (lambda dims: type(given)()) if _constructible(type(given)) else None

    report = CheckReport(name)
    if isinstance(given, str):
        report.options = resolved_options(name, first_options, method)

    for dims in dims_to_check:
        first = dims == dims_to_check[0]
        if not first and make is not None and (is_trainable(method) or isinstance(given, str)):
            # Built anew with that dimension's options (a trainable method: a fresh network; SyN: its metric)
            method = make(dims)
        pairs = _sample_pairs(dims=dims)
        ctx = CheckContext(method, None if make is None else partial(make, dims), pairs[:3], pairs[3])
        tag = "" if dims == 2 else f" ({dims}-D)"
        for key, check in yield_checks(ctx, first):
            if key in selected:
                result = _run_check(check, ctx, CHECKS[key] + tag)
                report.results.append(result)
                if not result.passed:
                    ctx.failed.add(key)
            elif key == "register" and selected & NEEDS_REGISTRATION:
                try:  # what the chosen checks read, not reported
                    check(ctx)
                except Exception:  # noqa: BLE001 - the chosen checks then say what is missing
                    pass
    if raise_on_failure and not report.ok:
        raise AssertionError(str(report))
    return report


def _run_check(check: Check, ctx: CheckContext, name: str) -> CheckResult:
    """One check's result: passed with its message, or failed with the assertion's or the exception's."""
    try:
        return CheckResult(name, True, check(ctx) or "")
    except AssertionError as exc:
        return CheckResult(name, False, str(exc))
    except Exception as exc:
        result = CheckResult(name, False, f"raised {type(exc).__name__}: {exc}".splitlines()[0])
        if not str(exc):
            result.message += " " + traceback.format_exc(limit=1).splitlines()[-1]
        return result


def _constructible(cls: type) -> bool:
    import inspect

    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in sig.parameters.values())
