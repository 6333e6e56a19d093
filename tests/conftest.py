"""Shared fixtures: small synthetic pairs and a throw-away third-party plugin package."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

# Runs in tests write their report without figures (seconds each): the tests of figures ask for them (figures=True,
# --figures). A developer may set REGBENCH_FIGURES=1 to draw them everywhere.
os.environ.setdefault("REGBENCH_FIGURES", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: one worker per core, one thread each (set before torch loads)
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(_threads, "1")

PLUGIN_MODULE = '''
"""A third-party plugin package, installed for the tests through a dist-info entry point."""
import os
import signal
import time

import numpy as np

from regbench import Registration, register_dataset, register_method
from regbench.registry import DatasetMeta
from regbench.interface import validate_images


@register_method("slow-initial")
class SlowInitial:
    """Identity with a delay, so a run can be killed part-way."""

    name = "slow-initial"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        if os.environ.get("REGBENCH_TEST_CALLS"):  # one line per call and process, for tests that count them
            with open(os.environ["REGBENCH_TEST_CALLS"], "a") as log:
                log.write(f"{os.getpid()}\\n")
        time.sleep(float(os.environ.get("REGBENCH_TEST_DELAY", "0.3")))
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))


def picked(fixed):
    """Every REGBENCH_TEST_EVERY-th pair by image content (default 3): the same pairs in every process."""
    return int(round(float(np.asarray(fixed, np.float64).sum()) * 1000)) % int(os.environ.get("REGBENCH_TEST_EVERY", "3")) == 0


class Crashing:
    """Kills its own process on the picked pairs, as native code does: SIGSEGV, or os._exit(3) with
    REGBENCH_TEST_CRASH=exit; identity on the others."""

    name = "crashing"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        if picked(fixed):
            if os.environ.get("REGBENCH_TEST_CRASH") == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGSEGV)
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))


class Hanging:
    """Never returns on the picked pairs (sleeps an hour); identity on the others."""

    name = "hanging"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        if picked(fixed):
            time.sleep(3600)
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))


class NormalisedFlow:
    """Moves the image by 2 px along rows but returns the flow in grid_sample's normalised [-1, 1] units."""

    name = "normalised-flow"

    def register(self, fixed, moving):
        from regbench import warp

        fixed, moving = validate_images(fixed, moving)
        flow = np.zeros((2, *fixed.shape), np.float32)
        flow[0] = 2.0
        return Registration(moved=warp(moving, flow), flow=flow * 2 / (fixed.shape[0] - 1))


class ReversedFlow:
    """Moves the image by a small smooth displacement (at most 0.3 px along rows, 0.06 px along columns) and returns
    its flow x first (channel 0 columns): a wrong convention that barely shows on low motion."""

    name = "reversed-flow"

    def register(self, fixed, moving):
        from regbench import warp

        fixed, moving = validate_images(fixed, moving)
        rows, cols = np.mgrid[0 : fixed.shape[0], 0 : fixed.shape[1]] / np.float32(max(fixed.shape))
        flow = 0.3 * np.stack([np.sin(np.pi * rows) * np.sin(np.pi * cols), 0.2 * np.sin(np.pi * rows)]).astype(np.float32)
        return Registration(moved=warp(moving, flow), flow=flow[::-1].copy())


class TrainedIdentity:
    """A trainable identity: ``fit`` records its process and thread count in the model directory, ``save``
    writes a marker; DyingTrainer's ``fit`` kills its own process (SIGKILL), as the OOM killer would."""

    name = "trained-identity"

    def __init__(self, epochs=1):
        self.epochs = epochs

    def fit(self, train_pairs, val_pairs=(), workdir=None):
        import torch

        if workdir is not None:
            (workdir / "fitted_in.txt").write_text(f"{os.getpid()} {torch.get_num_threads()}")

    def save(self, path):
        path.write_text("trained")

    def load(self, path):
        path.read_text()

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))


class DyingTrainer(TrainedIdentity):
    name = "dying-trainer"

    def fit(self, train_pairs, val_pairs=(), workdir=None):
        os.kill(os.getpid(), signal.SIGKILL)


class VolumeOnly:
    """Declares that it registers 3-D volumes only (a class attribute, as plugins without MethodMeta do)."""

    name = "volume-only"
    dims = (3,)

    def register(self, fixed, moving):
        raise AssertionError("a 2-D run must never call a 3-D method")


class PairAware:
    """Needs to know which pair it registers (as a method backed by a folder of fields does): register_pair
    writes the pair's key to REGBENCH_TEST_CALLS and returns identity; register(fixed, moving) cannot know."""

    name = "pair-aware"

    def register_pair(self, pair):
        fixed, moving = validate_images(pair.fixed, pair.moving)
        if os.environ.get("REGBENCH_TEST_CALLS"):
            with open(os.environ["REGBENCH_TEST_CALLS"], "a") as log:
                log.write(f"{pair.case_id}\\n")
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))

    def register(self, fixed, moving):
        raise NotImplementedError("pair-aware registers a pair it is told, through register_pair")


class Organs:
    """A dataset of five labels of its own names (none cardiac), 24 x 28 px at 1.5 x 2.0 mm: each pair's moving
    image is its fixed one moved by a pixel or two; among the test pairs, u03 has no labels and p04 only three
    of the five. Case ids without a subject."""

    name = "organs"
    LABELS = {"Liver": 1, "Spleen": 2, "Left kidney": 3, "Right kidney": 4, "Stomach": 5}
    SPLITS = {"train": ["t01", "t02"], "val": ["v01"], "test": ["c01", "c02", "u03", "p04", "c05", "c06"]}

    def __init__(self, size=24):
        self.size = int(size)

    def options(self):
        return {"size": self.size}

    def split(self):
        return {k: list(v) for k, v in self.SPLITS.items()}

    def pairs(self, split):
        from regbench import Pair
        from scipy import ndimage

        out = []
        for index, case_id in enumerate(self.SPLITS[split]):
            rng = np.random.default_rng(index)
            label = np.zeros((self.size, self.size + 4), np.uint8)
            for value, (r, c) in enumerate([(4, 4), (4, 14), (13, 5), (13, 15), (8, 22)], start=1):
                label[r : r + 6, c : c + 5] = value
            if case_id.startswith("p"):
                label[label > 3] = 0
            fixed = ndimage.gaussian_filter(label * 0.15 + 0.05 * rng.random(label.shape), 1.0).astype(np.float32)
            shift = (1 + index % 2, 2 - index % 2)
            moving = np.roll(fixed, shift, axis=(0, 1))
            labelled = not case_id.startswith("u")
            out.append(
                Pair(
                    fixed=fixed,
                    moving=moving,
                    fixed_label=label if labelled else None,
                    moving_label=np.roll(label, shift, axis=(0, 1)) if labelled else None,
                    spacing=(1.5, 2.0),
                    case_id=case_id,
                )
            )
        return out


register_dataset("organs", DatasetMeta(display_name="Organs", labels=Organs.LABELS))(Organs)


class Volumes:
    """A 3-D dataset: 8 x 24 x 24 volumes at 4 x 1.5 x 1.5 mm with two labels (a block and its core), the
    moving volume the fixed one moved by one voxel along rows and columns."""

    name = "volumes"
    SPLITS = {"train": ["t01"], "val": ["v01"], "test": ["a01", "a02", "a03"]}

    def options(self):
        return {}

    def pairs(self, split):
        from regbench import Pair
        from scipy import ndimage

        out = []
        for index, case_id in enumerate(self.SPLITS[split]):
            label = np.zeros((8, 24, 24), np.uint8)
            label[2:6, 6 + index : 16 + index, 5:17] = 1
            label[3:5, 9 + index : 13 + index, 9:13] = 2
            fixed = ndimage.gaussian_filter(label * 0.4 + 0.1, 1.0).astype(np.float32)
            out.append(
                Pair(
                    fixed=fixed,
                    moving=np.roll(fixed, (1, 1), axis=(1, 2)),
                    fixed_label=label,
                    moving_label=np.roll(label, (1, 1), axis=(1, 2)),
                    spacing=(4.0, 1.5, 1.5),
                    case_id=case_id,
                )
            )
        return out


register_dataset("volumes", DatasetMeta(display_name="Volumes", dims=(3,), labels={"Block": 1, "Core": 2}))(Volumes)


class Flaky:
    """Raises on every other slice: the runner must record those and go on."""

    name = "flaky"

    def register(self, fixed, moving):
        fixed, moving = validate_images(fixed, moving)
        if int(fixed.sum() * 1000) % 2:
            raise RuntimeError("flaky method failed on purpose")
        return Registration(moved=moving.copy(), flow=np.zeros((2, *fixed.shape), np.float32))
'''


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding package ``regbench_testplugin`` and its dist-info (entry points)."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "regbench_testplugin.py").write_text(PLUGIN_MODULE)
    info = root / "regbench_testplugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: regbench-testplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """
            [regbench.methods]
            slow-initial = regbench_testplugin
            flaky = regbench_testplugin:Flaky
            crashing = regbench_testplugin:Crashing
            hanging = regbench_testplugin:Hanging
            normalised-flow = regbench_testplugin:NormalisedFlow
            reversed-flow = regbench_testplugin:ReversedFlow
            trained-identity = regbench_testplugin:TrainedIdentity
            dying-trainer = regbench_testplugin:DyingTrainer
            volume-only = regbench_testplugin:VolumeOnly
            pair-aware = regbench_testplugin:PairAware

            [regbench.datasets]
            organs = regbench_testplugin
            volumes = regbench_testplugin
            """
        )
    )
    return root


@pytest.fixture
def with_plugins(plugin_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put the test plugin on sys.path and PYTHONPATH (for subprocesses) and rescan entry points."""
    from regbench.pool import stop_workers
    from regbench.registry import DATASETS, METHODS

    stop_workers()  # reusable workers started by an earlier test lack the plugin's PYTHONPATH
    monkeypatch.syspath_prepend(str(plugin_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]))
    saved = {registry: (registry._entry_points, dict(registry._factories)) for registry in (METHODS, DATASETS)}
    for registry in saved:
        registry._entry_points = None
    sys.modules.pop("regbench_testplugin", None)
    yield plugin_path
    # Drop what the plugin registered; keep built-ins imported meanwhile (their modules stay imported and
    # would not register again).
    for registry, (entry_points, factories) in saved.items():
        plugin = {name for name, factory in registry._factories.items() if getattr(factory, "__module__", "") == "regbench_testplugin"}
        registry._entry_points = entry_points
        for name in plugin - set(factories):
            registry.remove(name)
    sys.modules.pop("regbench_testplugin", None)


@pytest.fixture
def two_threads():
    """torch with two CPU threads, whatever the machine or ``pytest -n`` gives (its workers run one each), for the
    tests whose numbers depend on how a reduction is split: the FP32 rounding of the combiners' norms (with one
    thread a 250,000-element FP32 norm accumulates in longer runs and errs ~3e-6·Σ|x| instead of < 1e-6), and a
    short training's trajectory that a test has always checked with two."""
    yield from _torch_threads(2)


@pytest.fixture
def all_cpu_threads():
    """torch with one thread per CPU this process may use, as a process gets where ``pytest -n`` does not cap it:
    for a test that compares this process's training with one another process makes with every CPU it has (a SLURM
    job on the one-node test cluster, whose task/none plugin binds nothing). CPU trainings depend on the count."""
    yield from _torch_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_dataset():
    from regbench import create_dataset

    return create_dataset("synthetic", n_subjects=5, image_size=64, seed=1)


@pytest.fixture(scope="session")
def stack():
    """A 3-D synthetic heart pair: 10 slices of 32 × 32 px, 10 × 6 × 6 mm voxels."""
    from regbench import create_dataset

    return create_dataset("synthetic3d", n_subjects=4, image_size=32, seed=5).pairs("train")[0]


@pytest.fixture(scope="session")
def pairs(small_dataset):
    return [p for s in small_dataset.subjects()[:2] for p in small_dataset.subject_pairs(s)]
