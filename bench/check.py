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
from collections.abc import Callable
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
KNOWN_PAIR_COPIES = 32  # a trainable method is trained on this many copies of the known pair first


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


def check_method(method_or_name: Any, profile: str | None = "smoke", raise_on_failure: bool = False, only: Any = None, **options: Any) -> CheckReport:
    """Run the conformance checks (:data:`CHECKS`; ``only``: the names of those to run, e.g. ``["consistent"]``);
    a name is built with ``create_method`` (with the profile's options).

    For a method object, the determinism check builds a second one with ``type(method)()`` when possible.
    """
    selected = chosen_checks(only)
    given = method_or_name
    dims_to_check = [d for d in declared_dims(given if isinstance(given, str) else given) if d in (2, 3)] or [2]
    if isinstance(given, str):

        def options_for(dims: int) -> dict[str, Any]:
            # The options `regbench run --profile PROFILE` would build it with on dims-D data (profile None: the
            # method's own defaults).
            return resolve_method_options(given, profile, options, dims=dims) if profile else dict(options)

        def make(dims: int) -> Any:
            return METHODS.create(given, **options_for(dims))

        first_options = options_for(dims_to_check[0])
        method = METHODS.create(given, **first_options)
        name = given
    else:
        method = given
        name = getattr(method, "name", type(method).__name__)
        make = (lambda dims: type(given)()) if _constructible(type(given)) else None  # type: ignore[assignment]  # noqa: E731

    report = CheckReport(name)
    if isinstance(given, str):
        report.options = resolved_options(name, first_options, method)

    def run_checks(dims: int, first: bool, method: Any) -> None:
        """Every check on pairs of ``dims`` dimensions. 2-D checks keep their plain names; on volumes they say
        "(3-D)". The name is checked with the first dims only; a method given by name is built anew for each dims
        with that dimension's options (a trainable one also trained and saved anew: its network is that
        dimension's); a method object once for all, unless trainable."""
        make_here = None if make is None else partial(make, dims)
        tag = "" if dims == 2 else f" ({dims}-D)"
        pairs = _sample_pairs(dims=dims)
        train, evaluate_pair = pairs[:3], pairs[3]

        def check(key: str, fn: Callable[[], str | None]) -> None:
            check_name = CHECKS[key]
            if key not in selected:
                if key == "register" and selected & NEEDS_REGISTRATION:
                    try:  # what the chosen checks read, not reported
                        fn()
                    except Exception:  # noqa: BLE001 - the chosen checks then say what is missing
                        pass
                return
            try:
                message = fn()
                report.results.append(CheckResult(check_name + tag, True, message or ""))
            except AssertionError as exc:
                report.results.append(CheckResult(check_name + tag, False, str(exc)))
            except Exception as exc:
                report.results.append(CheckResult(check_name + tag, False, f"raised {type(exc).__name__}: {exc}".splitlines()[0]))
                if not str(exc):
                    report.results[-1].message += " " + traceback.format_exc(limit=1).splitlines()[-1]

        state: dict[str, Any] = {}

        def has_name() -> None:
            assert isinstance(getattr(method, "name", None), str) and method.name, "method has no string 'name'"

        def fits() -> str:
            if not is_trainable(method):
                return "not trainable (no fit/save/load): skipped"
            method.fit(train, train[:1], workdir=None)
            return "fit on 3 pairs"

        def registers() -> None:
            reg = method.register(evaluate_pair.fixed, evaluate_pair.moving)
            assert isinstance(reg, Registration), f"register() returned {type(reg).__name__}, not Registration"
            state["reg"] = reg

        def shapes() -> None:
            reg, shape = state["reg"], evaluate_pair.fixed.shape
            assert reg.moved.shape == shape, f"moved image has shape {reg.moved.shape}, expected {shape}"
            expected = (len(shape), *shape)
            assert reg.flow.shape == expected, f"flow has shape {reg.flow.shape}, expected {expected} (channel k along array axis k)"
            assert reg.moved.dtype == np.float32, f"moved image dtype is {reg.moved.dtype}, expected float32"
            assert reg.flow.dtype == np.float32, f"flow dtype is {reg.flow.dtype}, expected float32"

        def finite() -> None:
            try:
                validate_registration(state["reg"], evaluate_pair.fixed.shape)
            except InputError as exc:
                state["not_finite"] = True
                raise AssertionError(str(exc)) from None

        def recovers_known_displacement() -> str:
            fixed, truth, mask = known_displacement_pair(evaluate_pair.moving)
            subject = method
            if is_trainable(method):
                # A few smoke steps on unrelated pairs teach no motion; trained on copies of the known pair, a model
                # whose flow convention (units, channel order, sign) is right must recover it.
                if make_here is None:
                    return "cannot build a second instance to train on the known pair: skipped"
                subject = make_here()
                known = replace(evaluate_pair, fixed=fixed, flow_gt=truth)
                subject.fit([known] * KNOWN_PAIR_COPIES, [known], workdir=None)
            reg = subject.register(fixed, evaluate_pair.moving)
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

        def consistent() -> str:
            try:
                err = check_moved_agrees_with_flow(evaluate_pair.moving, state["reg"])
            except InputError as exc:
                raise AssertionError(str(exc)) from None
            return f"MSE {err:.1e}"

        def identity() -> str:
            reg = method.register(evaluate_pair.fixed, evaluate_pair.fixed.copy())
            motion = float(np.abs(reg.flow).mean())
            assert motion < IDENTITY_TOLERANCE_PX, f"identical pair gives mean |flow| {motion:.3f} px (≥ {IDENTITY_TOLERANCE_PX})"
            return f"mean |flow| {motion:.1e} px"

        def labels() -> None:
            reg = state["reg"]
            warped = reg.warp_label(evaluate_pair.moving_label)
            assert warped.shape == evaluate_pair.moving_label.shape, f"warped label shape {warped.shape}"
            extra = set(np.unique(warped)) - set(np.unique(evaluate_pair.moving_label)) - {0}
            assert not extra, f"warped labels contain values not in the label set: {sorted(extra)}"

        def deterministic() -> str | None:
            if make_here is None:
                return "cannot build a second instance: skipped"
            other = make_here()
            if is_trainable(other):
                other.fit(train, train[:1], workdir=None)  # a second training with the same seed
            a = method.register(evaluate_pair.fixed, evaluate_pair.moving)
            b = other.register(evaluate_pair.fixed, evaluate_pair.moving)
            diff = float(np.abs(a.flow - b.flow).max())
            assert diff < 1e-4, f"two runs with the same seed differ by up to {diff:.2e} px"
            return None

        def rejects_bad_input() -> None:
            try:
                method.register(evaluate_pair.fixed, evaluate_pair.moving[:-3, :])
            except Exception:
                return
            raise AssertionError("images of different shapes were accepted without an error")

        def pair_aware() -> str:
            if not isinstance(method, PairAwareMethod):
                return "no register_pair: the runner calls register(fixed, moving)"
            reg = method.register_pair(evaluate_pair)
            try:
                validate_registration(reg, evaluate_pair.fixed.shape)
                err = check_moved_agrees_with_flow(evaluate_pair.moving, reg)
            except InputError as exc:
                raise AssertionError(f"register_pair(pair): {exc}") from None
            if "reg" in state and is_isotropic(evaluate_pair.spacing):
                diff = float(np.abs(np.asarray(reg.flow) - np.asarray(state["reg"].flow)).max())
                assert diff < 1e-4, f"register_pair(pair) and register(fixed, moving) differ by up to {diff:.2e} px on the same pair"
            elif "reg" in state:  # an anisotropic pair: a method may use its spacing, so the two may differ
                return f"the runner calls register_pair(pair) (spacing {tuple(evaluate_pair.spacing)}); moved agrees with flow (MSE {err:.1e})"
            return f"the runner calls register_pair(pair); moved agrees with flow (MSE {err:.1e})"

        def save_load() -> str:
            if not is_trainable(method):
                return "not trainable: skipped"
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.pt"
                method.save(path)
                clone = make_here() if make_here is not None else method
                clone.load(path)
            a = method.register(evaluate_pair.fixed, evaluate_pair.moving).flow
            b = clone.register(evaluate_pair.fixed, evaluate_pair.moving).flow
            assert np.allclose(a, b, atol=1e-5), "save/load changed the registration"
            return "round trip identical"

        if first:
            check("name", has_name)
        # Before any training: a briefly trained network carries a learned offset, so "identical pair gives
        # ~zero motion" tests the pipeline (padding, transformer, units) on the method as constructed.
        check("identity", identity)
        if first or is_trainable(method):
            check("fit", fits)
        check("register", registers)
        check("register_pair", pair_aware)
        if "reg" in state:
            check("shapes", shapes)
            check("finite", finite)
            if not state.get("not_finite"):  # the later checks would only repeat it in other words
                check("consistent", consistent)
                check("labels", labels)
        if "reg" in state or "register" not in selected:
            check("recovers_displacement", recovers_known_displacement)
        check("deterministic", deterministic)
        check("rejects_bad_input", rejects_bad_input)
        if first or is_trainable(method):
            check("save_load", save_load)

    for dims in dims_to_check:
        first = dims == dims_to_check[0]
        if not first and make is not None and (is_trainable(method) or isinstance(given, str)):
            # Built anew with that dimension's options (a trainable method: a fresh network; SyN: its metric)
            method = make(dims)
        run_checks(dims, first, method)
    if raise_on_failure and not report.ok:
        raise AssertionError(str(report))
    return report


def _constructible(cls: type) -> bool:
    import inspect

    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in sig.parameters.values())
