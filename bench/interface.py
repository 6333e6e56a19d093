"""What flows through regbench: a Pair goes into a method, a Registration comes out.

Images are float32 arrays in [0, 1]; labels are integer maps, 0 background and the values its dataset declares
(``DatasetMeta.labels``). Flows follow :mod:`regbench.warp` (pixels, channel k along array axis k).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import InputError
from .warp import samples_inside
from .warp import warp as _warp
from .warp import warp_label as _warp_label

#: ``Pair.meta`` key: the names a file pattern may use for this pair beside ``case_id`` and ``subject`` (name →
#: value, e.g. a task's fixed and moving case), declared by its dataset; the fields method formats them.
FILE_NAME_KEYS = "file_name_keys"


@dataclass
class Pair:
    """One registration problem: the moving image is registered to the fixed one; their label maps score it."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_label: np.ndarray | None  # None: unlabelled (scored by image and Jacobian metrics; label metrics NaN)
    moving_label: np.ndarray | None
    spacing: tuple[float, ...]  # mm per pixel along each image axis (row, column; 3-D: slice, row, column)
    # Unique within the dataset, the pair's name in the store, tables and example files (letters, digits, "._+-").
    case_id: str
    # Grouping of cases (e.g. the patient): splits keep a subject's cases together; None: the case is its own.
    subject: str | None = None
    flow_gt: np.ndarray | None = None  # ground-truth flow (synthetic data only), same convention
    meta: dict[str, Any] = field(default_factory=dict)
    # The labels it is scored on, as its dataset declares them (DatasetMeta.labels: display name → value; {}:
    # none); None: not declared (scored on regbench.metrics.UNDECLARED_LABELS).
    labels: Mapping[str, int] | None = None
    # Corresponding points (landmarks, keypoints): (N, ndim) voxel indices in array-axis order, row i of the fixed
    # image's matching row i of the moving image's; both or neither. Scored by TRE (regbench.metrics).
    fixed_points: np.ndarray | None = None
    moving_points: np.ndarray | None = None
    # Regions of interest (bool, the image's shape): where the dataset says each image's anatomy is (Learn2Reg's
    # masksTr). None: not given. NDA/NDV with ndv_mask fixed|moving is taken over them (regbench.metrics).
    fixed_mask: np.ndarray | None = None
    moving_mask: np.ndarray | None = None
    # Attributes the results can be grouped by (name → value, e.g. {"group": "DCM"} for a patient's pathology, a
    # scanner's vendor): recorded in per_case.csv as by_<name>, tabulated per value by `regbench report --by NAME`.
    groups: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.case_id


#: What a case id may be made of: it names a file (examples/METHOD/CASE_ID.npz) and a CSV key.
CASE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_case_id(case_id: object) -> str:
    """``case_id`` if it is a valid case id, else InputError naming it and the rule."""
    if not isinstance(case_id, str) or not CASE_ID_PATTERN.fullmatch(case_id):
        raise InputError(f"case id {case_id!r} is not valid: a non-empty string of letters, digits and '._+-', starting with a letter or digit")
    return case_id


@dataclass
class Registration:
    """A method's answer for one pair.

    ``flow``: (ndim, *shape) float32 displacement in pixels (voxels), channel k along array axis k (2-D: rows,
    columns; 3-D: slices, rows, columns), such that ``moved(p) = moving(p + flow(p))``. ``label_warper``: the method's own way of moving a label map with the
    same transform (e.g. ANTs ``genericLabel``); by default regbench's nearest-neighbour warper on ``flow``.
    """

    moved: np.ndarray
    flow: np.ndarray
    label_warper: Callable[[np.ndarray], np.ndarray] | None = None

    def warp_label(self, label: np.ndarray) -> np.ndarray:
        if self.label_warper is not None:
            return np.asarray(self.label_warper(label)).astype(label.dtype, copy=False)
        return _warp_label(label, self.flow)


@runtime_checkable
class Method(Protocol):
    """What every method plugin provides. Trainable methods add ``fit``, ``save`` and ``load``."""

    name: str

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration: ...


@runtime_checkable
class TrainableMethod(Method, Protocol):
    def fit(self, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair], workdir: Path | None = None) -> Any: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


@runtime_checkable
class PairAwareMethod(Protocol):
    """A method that must know which pair it registers (an external tool's fields in a folder, keyed by the
    pair's identity) or its spacing (a multi-resolution schedule that spares the coarse axis of an anisotropic
    stack, :mod:`regbench.pyramid`): the runner calls ``register_pair(pair)`` instead of ``register(fixed,
    moving)``, which then means isotropic voxels."""

    name: str

    def register_pair(self, pair: Pair) -> Registration: ...


# ------------------------------------------------------------------ optional hooks the runner calls where defined
@runtime_checkable
class CountsParameters(Protocol):
    """A learned method: Table 2's parameter count (the deployed model's trainable parameters)."""

    def num_parameters(self) -> int: ...


@runtime_checkable
class ReportsProgress(Protocol):
    """Draws a training progress bar while ``progress`` is true (the runner sets it from ``--no-progress``)."""

    progress: bool


@runtime_checkable
class RunsOnDevice(Protocol):
    """Runs on ``device`` (a torch.device or its name): recorded with each case and training."""

    device: Any


@runtime_checkable
class SweepsParameter(Protocol):
    """Scores pairs over a grid of one of its parameters (HyperMorph's λ), one row per value and pair with the
    metrics of :func:`regbench.metrics.evaluate`: written to ``curves/METHOD_sweep.csv`` when ``MethodMeta.sweep``
    names the column."""

    def sweep(self, pairs: Sequence[Pair]) -> list[dict[str, Any]]: ...


@runtime_checkable
class HasOptions(Protocol):
    """A method or dataset that reports its resolved options (recorded in the manifest; a dataset's bind the run
    directory)."""

    def options(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------- datasets
@runtime_checkable
class Dataset(Protocol):
    """What the runner calls on a dataset: the pairs of a split, ``"train"``, ``"val"`` or ``"test"`` (each pair
    with a case id unique within the dataset). Optional: :class:`HasOptions`, :class:`DeclaresSplit`,
    :class:`ChecksItself`; its labels and dims it declares in ``DatasetMeta``."""

    def pairs(self, split: str) -> Sequence[Pair]: ...


@runtime_checkable
class DeclaresSplit(Protocol):
    """Says which subjects (or case ids) each split holds: saved as the run's ``split.json``."""

    def split(self) -> Mapping[str, Sequence[str]]: ...


@runtime_checkable
class DrawsAtLevel(Protocol):
    """Draws every split at one value of a declared level (``DatasetMeta.levels``): what a run that retrains its
    trained methods per level (``retrain_per_level``) builds for each level value its test pairs carry.
    ``level_options(level, value)``: this dataset's options with every split drawn at ``value`` of ``level`` (the
    test split at that value alone, its pairs the same cases as this dataset's pairs at that value), or None where
    this dataset's training pairs are at that value already (its own trained methods are the retrained ones)."""

    def level_options(self, level: str, value: float) -> dict[str, Any] | None: ...


@runtime_checkable
class ChecksItself(Protocol):
    """Validates its files for ``regbench data check``: the returned summary prints itself and has ``ok``."""

    def check(self) -> Any: ...


@runtime_checkable
class BindsRun(Protocol):
    """Binds the run directory beyond its options (``binding()``: e.g. the converter version of a fields folder):
    a later run whose binding differs is refused, as one with other options is."""

    def binding(self) -> dict[str, Any]: ...


@runtime_checkable
class ProbesInputs(Protocol):
    """Checks the inputs it reads before its cases are scored (``probe(pairs)``: the fields method's convention
    probe): a finding with ``message`` is warned and recorded in the manifest; None where nothing could be probed."""

    def probe(self, pairs: Sequence[Pair]) -> dict[str, Any] | None: ...


@runtime_checkable
class DeclaresLabels(Protocol):
    """A dataset whose labels come with its files (``declared_labels()``: name → value; None: not declared),
    read instead of its registration's ``DatasetMeta.labels``."""

    def declared_labels(self) -> Mapping[str, int] | None: ...


@runtime_checkable
class BindsInputs(Protocol):
    """A method that scores inputs computed elsewhere (the fields method: one file per pair) says what each case
    reads: case id → a digest of that input (None: there is none). The run directory keeps them; a case scored
    from an input that has changed since is refused by name, while a failed or unscored case may get a new one
    (:meth:`regbench.rundir.Manifest.check_inputs`)."""

    def input_digests(self, pairs: Sequence[Pair]) -> dict[str, str | None]: ...


@runtime_checkable
class HasNotes(Protocol):
    """Says what its reader left unread (files of a layout it does not read, pairs without points), one sentence
    each: ``regbench data check`` prints them and a run warns with them."""

    def notes(self) -> list[str]: ...


@runtime_checkable
class DeclaresStructures(Protocol):
    """The form of label declaration that predates ``DatasetMeta.labels``: the values its label maps may hold."""

    structures: Mapping[str, int]


def register_pair(method: Any, pair: Pair) -> Registration:
    """How the runner, perf's case loop and check-method register one pair: the method's ``register_pair(pair)``
    when it defines one, else ``register(pair.fixed, pair.moving)``."""
    return method.register_pair(pair) if isinstance(method, PairAwareMethod) else method.register(pair.fixed, pair.moving)


#: What makes a method trainable (:class:`TrainableMethod`); ``MethodMeta.trainable`` declares it.
TRAINING_HOOKS = ("fit", "save", "load")


def has_training_hooks(method: Any) -> bool:
    """Whether ``method`` (an object or a class) defines fit, save and load."""
    return all(callable(getattr(method, a, None)) for a in TRAINING_HOOKS)


def num_parameters(method: Any) -> int | None:
    """Trainable parameters of the deployed model, or None for methods that are not learned."""
    return method.num_parameters() if isinstance(method, CountsParameters) else None


#: The image dimensions regbench's data model holds: (H, W) and (D, H, W).
IMAGE_DIMS = (2, 3)


def validate_images(fixed: np.ndarray, moving: np.ndarray, dims: Collection[int] = (2,)) -> tuple[np.ndarray, np.ndarray]:
    """Check a pair before registering it (``dims``: the image dimensions the calling method registers, its
    ``MethodMeta.dims``); returns float32 copies. Raises InputError naming the problem."""
    fixed = np.asarray(fixed)
    moving = np.asarray(moving)
    for name, img in (("fixed", fixed), ("moving", moving)):
        if img.ndim not in dims:
            raise InputError(f"{name} image must be {' or '.join(f'{d}-D' for d in sorted(dims))}, got shape {img.shape}")
        if not np.issubdtype(img.dtype, np.floating):
            raise InputError(f"{name} image has dtype {img.dtype}; give float images intensity-normalised to [0, 1]")
        if not np.all(np.isfinite(img)):
            raise InputError(f"{name} image has {int(np.size(img) - np.isfinite(img).sum())} non-finite values (NaN/inf)")
        if img.min() < IMAGE_RANGE[0] - RANGE_SLACK or img.max() > IMAGE_RANGE[1] + RANGE_SLACK:
            raise InputError(f"{name} image has values in [{float(img.min()):g}, {float(img.max()):g}], outside [0, 1]: normalise intensities to [0, 1] first")
        if np.ptp(img) == 0:
            raise InputError(f"{name} image is constant (every pixel {float(img.flat[0])!r}): nothing to register")
    if fixed.shape != moving.shape:
        raise InputError(f"fixed and moving images differ in shape: {fixed.shape} vs {moving.shape}")
    return fixed.astype(np.float32, copy=False), moving.astype(np.float32, copy=False)


# Moved image vs warp(moving, flow), mean squared difference. Interpolation schemes differ a little between
# libraries (linear ones by < 1e-5 on the smoke pairs); a flow in another convention (channels reversed,
# normalised [-1, 1] units, push for pull) disagrees about as much as the method moved the image. So the
# tolerance is a share of how far the method moved it, MSE(moving, moved), between a floor for methods that
# barely move it and the absolute bound of earlier versions: a wrong convention on a low-motion pair fails too.
CONSISTENCY_TOLERANCE_MSE = 2e-3
CONSISTENCY_FLOOR_MSE = 1e-4
CONSISTENCY_SHARE = 0.25
CONSISTENCY_MESSAGE = "moved image differs from warp(moving, flow)"  # how a failed case's reason starts


def moved_flow_disagreement(moving: np.ndarray, registration: Registration, flow: np.ndarray | None = None) -> float:
    """Mean squared difference between the method's moved image and regbench's warp of ``moving`` by its flow
    (or by ``flow``, another reading of it), over the voxels that sample inside the moving image: outside it,
    libraries differ in padding (ITK replicates the edge half a voxel out, grid_sample blends toward zero), which
    on a stack of a few thick slices moved through-plane is a whole slice's worth of disagreement."""
    flow = np.asarray(registration.flow if flow is None else flow, np.float32)
    squared = (_warp(moving, flow) - np.asarray(registration.moved, np.float32)) ** 2
    inside = samples_inside(flow)
    return float(np.mean(squared[inside])) if inside.any() else float(np.mean(squared))


def consistency_tolerance(moving: np.ndarray, registration: Registration) -> float:
    """The disagreement a flow in regbench's convention stays below: :data:`CONSISTENCY_SHARE` of
    MSE(moving, moved), at least :data:`CONSISTENCY_FLOOR_MSE`, at most :data:`CONSISTENCY_TOLERANCE_MSE`."""
    change = float(np.mean((np.asarray(moving, np.float32) - np.asarray(registration.moved, np.float32)) ** 2))
    return min(CONSISTENCY_TOLERANCE_MSE, max(CONSISTENCY_FLOOR_MSE, CONSISTENCY_SHARE * change))


def convention_readings(flow: np.ndarray) -> dict[str, np.ndarray]:
    """The usual mistakes, each as the regbench flow it would be: what to try when a flow disagrees."""
    flow = np.asarray(flow, np.float32)
    shape = flow.shape[1:]
    to_voxels = np.asarray([(n - 1) / 2 for n in shape], np.float32).reshape(-1, *([1] * len(shape)))
    return {
        "channels in reverse order (x first)": flow[::-1].copy(),
        "normalised [-1, 1] units (grid_sample, align_corners=True)": flow * to_voxels,
        "normalised [-1, 1] units with channels in reverse order (grid_sample's x, y)": flow[::-1] * to_voxels,
        "the opposite sign (push, not pull)": -flow,
    }


def likely_convention(moving: np.ndarray, registration: Registration, tolerance: float | None = None) -> str | None:
    """The reading of the flow under which the moved image agrees with it (within ``tolerance``, by default
    :func:`consistency_tolerance`), where one does."""
    tolerance = consistency_tolerance(moving, registration) if tolerance is None else tolerance
    errors = {name: moved_flow_disagreement(moving, registration, f) for name, f in convention_readings(registration.flow).items()}
    name = min(errors, key=errors.__getitem__)
    return name if errors[name] < tolerance else None


def check_moved_agrees_with_flow(moving: np.ndarray, registration: Registration) -> float:
    """The disagreement, or InputError when it reaches :func:`consistency_tolerance`: the flow is not in
    regbench's convention, so its metrics would score another transform than the method's. The error names the
    reading under which the two agree, where one does."""
    err = moved_flow_disagreement(moving, registration)
    tolerance = consistency_tolerance(moving, registration)
    if not err < tolerance:
        reading = likely_convention(moving, registration, tolerance)
        hint = f"; they agree if the flow has {reading}" if reading else ""
        raise InputError(
            f"{CONSISTENCY_MESSAGE} (MSE {err:.2e} ≥ {tolerance:.1e}, a quarter of MSE(moving, moved) within [1e-4, 2e-3]){hint}: "
            "is the flow in voxels, channel k along array axis k, moved(p) = moving(p + flow(p))?"
        )
    return err


# Images enter regbench intensity-normalised to [0, 1] (MSE's units, every method's assumptions); a little
# slack for resampling round-off.
IMAGE_RANGE = (0.0, 1.0)
RANGE_SLACK = 1e-4


def validate_pair(pair: Pair, structures: Mapping[str, int] | None = None) -> None:
    """Check a dataset's pair where it enters a run: a valid case id; 2-D or 3-D float images, finite, in
    [0, 1]; labels made of 0 and the declared values (``structures``, else the pair's ``labels``; neither: not
    checked); matching shapes; one positive finite spacing per axis. Raises InputError naming the case and the
    bad value."""
    check_case_id(pair.case_id)
    where = f"case {pair.case_id!r}"
    declared = structures if structures is not None else pair.labels
    lo, hi = IMAGE_RANGE
    shape = np.shape(pair.fixed)
    if len(shape) not in IMAGE_DIMS:
        raise InputError(f"{where}: fixed image has shape {shape}; images are 2-D (H, W) or 3-D (D, H, W)")
    for name, img in (("fixed", pair.fixed), ("moving", pair.moving)):
        img = np.asarray(img)
        if not np.issubdtype(img.dtype, np.floating):
            raise InputError(f"{where}: {name} image has dtype {img.dtype}; images must be float, intensity-normalised to [0, 1]")
        if img.shape != shape:
            raise InputError(f"{where}: fixed and moving images differ in shape: {shape} vs {img.shape}")
        if not np.all(np.isfinite(img)):
            raise InputError(f"{where}: {name} image has {int(img.size - np.isfinite(img).sum())} non-finite values (NaN/inf)")
        if img.min() < lo - RANGE_SLACK or img.max() > hi + RANGE_SLACK:
            raise InputError(
                f"{where}: {name} image has values in [{float(img.min()):g}, {float(img.max()):g}], outside [0, 1]; "
                "normalise intensities to [0, 1] (e.g. divide 0..255 images by 255)"
            )
    for name, label in (("fixed", pair.fixed_label), ("moving", pair.moving_label)):
        if label is None:
            continue
        label = np.asarray(label)
        if label.shape != shape:
            raise InputError(f"{where}: {name} label has shape {label.shape}, its image {shape}")
        if declared is None:
            continue
        allowed = {0, *declared.values()}
        extra = sorted(set(np.unique(label).tolist()) - allowed)
        if extra:
            raise InputError(
                f"{where}: {name} label has value(s) {extra} outside the dataset's labels {sorted(allowed)} "
                f"(0 = background, {', '.join(f'{v} = {k}' for k, v in declared.items())}): declare every structure's value in the "
                "dataset's labels, or set the value to 0 (background)"
            )
    spacing = np.asarray(pair.spacing, dtype=float)
    if spacing.shape != (len(shape),) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{where}: spacing {tuple(pair.spacing)!r} must be {len(shape)} positive finite mm values, one per image axis")


def validate_registration(registration: Any, shape: tuple[int, ...]) -> Registration:
    """Check a method's answer before it is scored: a Registration whose moved image has ``shape`` and whose
    flow is (ndim, *shape), both finite. Raises InputError naming the array at fault (a NaN flow would otherwise
    score as a valid case with a plausible Dice)."""
    if not isinstance(registration, Registration):
        raise InputError(f"register() returned {type(registration).__name__}, not regbench.Registration")
    moved, flow = np.asarray(registration.moved), np.asarray(registration.flow)
    if flow.shape != (len(shape), *shape):
        raise InputError(f"flow has shape {flow.shape}, expected {(len(shape), *shape)} (channel k the displacement along array axis k, in voxels)")
    if moved.shape != tuple(shape):
        raise InputError(f"moved image has shape {moved.shape}, expected {tuple(shape)}")
    for name, array in (("flow", flow), ("moved image", moved)):
        if not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{name} has non-numeric dtype {array.dtype}")
        bad = int(array.size - np.isfinite(array).sum())
        if bad:
            raise InputError(f"{name} has {bad} non-finite value(s) (NaN/inf) of {array.size}")
    return registration
