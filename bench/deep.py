"""DeepRegistration: the method object every deep variant is (U-Net + trainer + a combiner).

It adapts the trained network to the method interface: ``register`` runs the network in eval mode without
gradients (the network pads to its multiple and crops back) and returns the flow and moved image; ``fit``
trains with the one :class:`~regbench.trainer.Trainer`; ``save``/``load`` use ``torch.load(weights_only=True)``.

2-D or 3-D is chosen by the data, as MONAI's ``spatial_dims``: the network is built (seeded with the training
seed) when it is first needed, for the dimension of the images it is fitted on, registers, or was saved with.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .config import training_options
from .errors import ConfigError
from .fileio import atomic_write_bytes
from .interface import Pair, Registration, validate_images
from .metrics import evaluate
from .nn import DIMS, SpatialTransformer, UNet, count_parameters
from .registry import MethodMeta
from .trainer import (
    CombinerWeightedObjective,
    CombinerWithOptions,
    EpochRecord,
    GradientCombiner,
    Objective,
    Trainer,
    TrainSettings,
    WeightedCombiner,
    precision_mode,
    resolve_device,
)


class RegistrationNet(nn.Module):
    """U-Net + spatial transformer, the deployed network of every deep variant; ``dims`` 2 or 3."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.unet = UNet(dims=dims)
        self.transformer = SpatialTransformer()

    @property
    def dims(self) -> int:
        return self.unet.dims

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        return self.unet(moving, fixed)

    @property
    def multiple(self) -> int:
        return self.unet.multiple


VALIDATION_BATCH = 32  # pairs per forward pass when validating during training

ModelBuilder = Callable[[int], nn.Module]  # dims -> a network with RegistrationNet's interface


class DeepRegistration:
    """A learned method: ``combiner`` decides how the similarity and smoothness gradients combine."""

    parallel_safe = True  # on CPU; the runner evaluates CUDA models in the main process

    def __init__(
        self,
        name: str,
        combiner: GradientCombiner,
        settings: TrainSettings,
        device: str = "auto",
        build_model: ModelBuilder = RegistrationNet,
        objective: Objective | None = None,
        progress: bool = False,
    ) -> None:
        self.name = name
        self.combiner = combiner
        self.settings = settings
        self.device = resolve_device(device)
        self.parallel_safe = self.device.type == "cpu"
        self.build_model = build_model
        self.dims = 2  # the images' dimension; set by fit, register and load (see use_dims)
        self._model: Any = None  # RegistrationNet or a variant with its interface, built for self.dims
        self._fixed_dims = False  # trained or loaded: its dimension can no longer change
        self.objective = objective
        self.progress = progress
        self.history: list[EpochRecord] = []
        self.callbacks: list[Callable[[EpochRecord], None]] = []

    @property
    def model(self) -> Any:
        """The network for ``self.dims``, built on first use with the training seed (the same initial weights
        whenever it is built)."""
        if self._model is None:
            torch.manual_seed(self.settings.seed)
            self._model = self.build_model(self.dims).to(self.device)
            self._model.eval()
        return self._model

    def use_dims(self, dims: int, source: str = "images") -> None:
        """Build for ``dims``-D images from now on; a network already trained or loaded for another dimension is
        an error naming both (never silently replaced)."""
        if dims == self.dims:
            return
        if self._fixed_dims:
            raise ConfigError(f"{self.name} was trained for {self.dims}-D images; {source} are {dims}-D")
        self.dims, self._model = dims, None

    # -- method interface ------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The settings this object trains and runs with (recorded in the manifest), device resolved."""
        # The combiner's weight is λ unless an objective already weights its terms (HyperMorph's).
        weighted = self.objective is None or (isinstance(self.objective, CombinerWeightedObjective) and self.objective.weighted_by_combiner)
        weight = self.combiner.weight if isinstance(self.combiner, WeightedCombiner) and weighted else None
        settings = asdict(self.settings)
        for name, default in (("precision", "fp32"), ("compile_mode", "none")):
            if settings[name] == default:  # recorded only when not the default, so that earlier run directories still bind
                del settings[name]
        return {
            **settings,
            "device": str(self.device),
            **({"lam": weight} if weight is not None else {}),
            **(self.combiner.options() if isinstance(self.combiner, CombinerWithOptions) else {}),
        }

    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def fit(self, train_pairs: Sequence[Pair], val_pairs: Sequence[Pair] = (), workdir: Path | None = None) -> list[EpochRecord]:
        if train_pairs:
            self.use_dims(train_pairs[0].fixed.ndim, "its training pairs")
        self._fixed_dims = True
        trainer = Trainer(self.settings, self.combiner, self.device, self.objective, list(self.callbacks), self.progress)
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        self.history = trainer.fit(self.model, train_pairs, val_pairs, workdir, validate=self.validate)
        return self.history

    def validate(self, pairs: Sequence[Pair]) -> tuple[float, float]:
        """Mean Dice and NJD over ``pairs`` with the suite's own metrics (the model's current weights): flows in
        batches of ``VALIDATION_BATCH``, Dice and NJD only, so that validating often stays cheap."""
        rows = []
        for start in range(0, len(pairs), VALIDATION_BATCH):
            chunk = pairs[start : start + VALIDATION_BATCH]
            for pair, registration in zip(chunk, self.register_batch([p.fixed for p in chunk], [p.moving for p in chunk])):
                rows.append(evaluate(pair, registration, quick=True))
        return float(np.nanmean([r["dice"] for r in rows])), float(np.mean([r["njd"] for r in rows]))

    def register_batch(self, fixed: Sequence[np.ndarray], moving: Sequence[np.ndarray]) -> list[Registration]:
        """``register`` for images of one shape at once (one forward pass)."""
        checked = [validate_images(f, m, dims=DIMS) for f, m in zip(fixed, moving)]
        self.use_dims(checked[0][0].ndim, "the images to register")
        self.model.eval()
        f = torch.from_numpy(np.stack([c[0] for c in checked]))[:, None].to(self.device)
        m = torch.from_numpy(np.stack([c[1] for c in checked]))[:, None].to(self.device)
        with torch.no_grad(), precision_mode(self.settings.precision, self.device):
            flow = self.flow_batch(m, f).float()
            moved = self.model.transformer(m, flow).float()
        flow_np, moved_np = flow.cpu().numpy().astype(np.float32), moved[:, 0].cpu().numpy()
        return [Registration(moved=moved_np[i], flow=flow_np[i]) for i in range(len(checked))]

    @torch.no_grad()
    def flow_batch(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """Flows for a batch (N, 1, *S) on the model's device (the network pads to its multiple)."""
        return self.model(moving, fixed)

    def register(self, fixed: np.ndarray, moving: np.ndarray) -> Registration:
        return self.register_batch([fixed], [moving])[0]

    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Weights, settings and name (plus a subclass's ``extra`` plain values) in one file, atomically."""
        buffer = io.BytesIO()
        state = {"model": self.model.state_dict(), "settings": asdict(self.settings), "name": self.name, "dims": self.dims, **(extra or {})}
        torch.save(state, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    def load(self, path: Path) -> dict[str, Any]:
        """Load weights saved by :meth:`save`; returns the whole saved state (for a subclass's extras)."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"model file {path} does not exist") from None
        except Exception as exc:
            raise ConfigError(f"model file {path} cannot be read ({type(exc).__name__}: {exc})") from None
        if state.get("name") not in (None, self.name):
            raise ConfigError(f"model file {path} holds {state.get('name')!r}, not {self.name!r}")
        self._fixed_dims = False
        self.use_dims(int(state.get("dims", 2)))  # files saved before 3-D support hold 2-D networks
        self._fixed_dims = True
        self.model.load_state_dict(state["model"])
        self.model.eval()
        return state


def settings_from_options(options: dict[str, Any]) -> TrainSettings:
    unknown = sorted(set(options) - TrainSettings.names())
    if unknown:
        hints = "; ".join(
            f"{u!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(u, sorted(TrainSettings.names()), n=1)) else "") for u in unknown
        )
        raise ConfigError(f"unknown training option {hints}; known: {', '.join(sorted(TrainSettings.names()))}")
    return TrainSettings(**options)


def deep_option_names(*extra: str) -> set[str]:
    """The options of a deep method's factory: device, progress, the TrainSettings fields and ``extra``."""
    return {"device", "progress", *TrainSettings.names(), *extra}


def deep_meta(display_name: str, extra_options: set[str], **declared: Any) -> MethodMeta:
    """The metadata of a deep variant: trainable, 2-D and 3-D, the deep options plus ``extra_options``, the
    profiles' training settings, and whatever else it declares (family, sweep, default options)."""
    return MethodMeta(
        display_name=display_name,
        trainable=True,
        dims=DIMS,
        option_names=frozenset(deep_option_names(*extra_options)),
        profile_options=training_options,
        **declared,
    )
