"""``unigradicon.TAG`` and ``multigradicon.TAG``: the registration foundation models uniGradICON (Tian et al. 2024)
and multiGradICON (Demir et al. 2024), GradICON networks trained on many datasets, used as they are (nothing
trained here), through the ``unigradicon`` package (MIT, on ``icon-registration``, Apache-2.0). 3-D only.

Needs the extra: ``pip install "regbench[unigradicon]"``; without it the methods are unavailable and naming one
is one error with that command.

**Weights by path, never by download.** The wheels ship no weights; the package downloads them from its GitHub
releases at run time, which this project's machines cannot reach. So each is a tagged method (named instances
only, never matched by ``*``), and the instance's options say where its weights come from:

- ``weights: PATH``: the official file (:data:`OFFICIAL_WEIGHTS`: its name and where users get it), or one's own
  fine-tuned checkpoint. The file's SHA-256 is computed and bound into the run (a run directory refuses other
  weights later); it is checked against ``weights_sha256`` where given, or the sum :data:`OFFICIAL_WEIGHTS` records
  for the official file (none recorded yet: no machine of this project could fetch it), and a mismatch is one error
  naming both sums.
- no path: with ``allow_download: true`` the package's own download runs (into ``network_weights/`` of the
  working directory, as its command line does); otherwise creating the method is one error saying how to supply
  the file.
- the tag ``random`` (``unigradicon.random``): the same network with random weights drawn from ``seed`` (the
  package's own initialisation, whose output layers start at zero, an identity map; regbench draws those from
  N(0, 0.01²) too, so that the field is not zero), so that the plugin, its conventions and its timing are tested
  here; every table marks it by its name ("uniGradICON (random)"). Its fields are not registrations: it recovers
  no known displacement.

Settings (keyword options), the package's command line's where it has one: intensities by ``modality`` (``mri``,
the default here: clamped from the image's minimum to its 99th percentile, or ``quantile_range``; ``ct``: clamped
to ``ct_window``, default −1000 to 1000 HU) then rescaled to [0, 1]; the images resized (trilinear) to the
network's ``grid`` of 175³ voxels, as the package does (another ``grid``, at least 80, builds the network at that
size: for tests with random weights; the official weights were trained at 175³). Instance optimisation: ``io_iterations`` Adam
steps of the network on the pair (the package's default is 50; here 0, none, since on the CPU one step at 175³
costs about as much as 1.5 inferences, ~40 s each on 2 cores), ``io_lr`` 2e-5 and ``io_similarity`` (``lncc``,
``lncc2``, ``mind``), recorded in the run; the network's weights are restored after each pair. ``device``
(``auto``: CUDA where present).

Convention: the package returns an ITK transform in physical space mapping each fixed-image point to the
moving image (ITK's resampler moves the moving image with it onto the fixed grid), ITK's x first. regbench
samples it at the fixed image's voxels (``TransformToDisplacementFieldFilter``), subtracts the points, reverses the
components and divides each by its axis's spacing in units of the finest axis: the flow in voxels, channel k
along array axis k, ``moved(p) = moving(p + flow(p))``. The moved image is ITK's own resampling of the moving image
with that transform (linear); the test checks that regbench's warper on the flow reproduces it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..interface import Registration, validate_images
from ..pyramid import SpacingAware, relative_spacing, voxel_flow
from ..registry import MethodMeta, register_method
from .elastix import itk_image

DIMS = (3,)
MODELS = ("unigradicon", "multigradicon")
RANDOM_TAG = "random"
SIMILARITIES = ("lncc", "lncc2", "mind")
# The σ of the weights drawn where the package initialises at zero (its output layers, its norms' biases): at
# 0.01 a random network's field reaches ~2.6 voxels on an 80³ grid (mean 0.7), enough to test the conventions.
RANDOM_ZERO_STD = 0.01


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's official weights come from."""

    file_name: str
    url: str
    sha256: str | None  # None: not recorded (no machine of this project could fetch the file)


OFFICIAL_WEIGHTS: dict[str, WeightsSource] = {
    "unigradicon": WeightsSource("Step_2_final.trch", "https://github.com/uncbiag/uniGradICON/releases/download/unigradicon_weights/Step_2_final.trch", None),
    "multigradicon": WeightsSource(
        "Step_2_final.trch", "https://github.com/uncbiag/uniGradICON/releases/download/multigradicon_weights/Step_2_final.trch", None
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class GradICONFoundation(SpacingAware):
    """uniGradICON or multiGradICON with the weights its options name; every setting is a keyword option."""

    def __init__(
        self,
        model: str,
        tag: str,
        weights: str | None = None,
        weights_sha256: str | None = None,
        allow_download: bool = False,
        modality: str = "mri",
        quantile_range: Sequence[float] | None = None,
        ct_window: Sequence[float] | None = None,
        grid: int = 175,
        io_iterations: int = 0,
        io_lr: float = 2e-5,
        io_similarity: str = "lncc",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        from ..trainer import resolve_device

        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        self.model, self.tag, self.name = model, tag, f"{model}.{tag}"
        if modality not in ("mri", "ct"):
            raise ValueError(f"{self.name} modality must be 'mri' or 'ct', got {modality!r}")
        if io_similarity not in SIMILARITIES:
            raise ValueError(f"{self.name} io_similarity must be one of {', '.join(SIMILARITIES)}, got {io_similarity!r}")
        for option, value, least in (("grid", grid, 80), ("io_iterations", io_iterations, 0)):  # under 80 its pyramids run out
            if not value >= least:
                raise ValueError(f"{self.name} {option} must be at least {least}, got {value!r}")
        self.modality, self.io_similarity = modality, io_similarity
        self.quantile_range = None if quantile_range is None else [float(q) for q in quantile_range]
        self.ct_window = None if ct_window is None else [float(v) for v in ct_window]
        self.grid, self.io_iterations, self.io_lr, self.seed = int(grid), int(io_iterations), float(io_lr), int(seed)
        self.device = resolve_device(device)
        self.parallel_safe = self.device.type == "cpu"
        self.allow_download = bool(allow_download)
        self.random = tag == RANDOM_TAG
        source = OFFICIAL_WEIGHTS[model]
        self.weights: str | None = None
        self.weights_sha256: str | None = None
        if self.random:
            if weights is not None:
                raise ConfigError(f"{self.name}: the tag '{RANDOM_TAG}' means random weights; give weights: {weights!r} to another tag")
        elif weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ConfigError(f"{self.name}: weights file {str(path)!r} does not exist (the official one is {source.file_name}, from {source.url})")
            found = sha256_of(path)
            expected = (weights_sha256 or source.sha256 or "").lower() or None
            if expected is not None and found != expected:
                what = "weights_sha256" if weights_sha256 else f"the official {model} {source.file_name}"
                raise ConfigError(f"{self.name}: weights file {str(path)!r} has SHA-256 {found}, but {what} is {expected}")
            self.weights, self.weights_sha256 = str(path.resolve()), found
        elif not self.allow_download:
            raise ConfigError(
                f"{self.name} needs its weights: download {source.file_name} from {source.url} and give its path in "
                f"method_options ({self.name}: {{weights: PATH}}), or set allow_download: true, or name {model}.{RANDOM_TAG} for random weights"
            )
        self._network: Any = None
        self._state: dict[str, Any] | None = None

    def options(self) -> dict[str, Any]:
        return {
            "weights": "random" if self.random else (self.weights or "downloaded by the package"),
            "weights_sha256": self.weights_sha256,
            "modality": self.modality,
            "quantile_range": self.quantile_range,
            "ct_window": self.ct_window,
            "grid": self.grid,
            "io_iterations": self.io_iterations,
            "io_lr": self.io_lr,
            "io_similarity": self.io_similarity,
            **({"seed": self.seed} if self.random else {}),
            "device": str(self.device),
        }

    def network(self) -> Any:
        """The network, built once (random weights drawn from ``seed``, or the weights file loaded)."""
        if self._network is None:
            import torch

            with contextlib.redirect_stdout(io.StringIO()):
                import unigradicon

                if self.weights is None and not self.random:  # allow_download: the package's own download
                    net = unigradicon.get_model_from_model_zoo(self.model, unigradicon.make_sim(self.io_similarity))
                    downloaded = Path("network_weights") / f"{self.model}1.0" / OFFICIAL_WEIGHTS[self.model].file_name
                    self.weights_sha256 = sha256_of(downloaded) if downloaded.is_file() else None
                else:
                    torch.manual_seed(self.seed)
                    net = unigradicon.make_network(
                        [1, 1, self.grid, self.grid, self.grid], include_last_step=True, loss_fn=unigradicon.make_sim(self.io_similarity)
                    )
                    if self.random:  # the package starts its output layers at zero (an identity map): draw those too
                        with torch.no_grad():
                            for parameter in net.regis_net.parameters():
                                if not parameter.any():
                                    parameter.normal_(0.0, RANDOM_ZERO_STD)
                    if self.weights is not None:
                        try:
                            net.regis_net.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
                        except Exception as exc:
                            raise ConfigError(f"{self.name}: weights file {self.weights!r} does not load into the {self.model} network: {exc}") from None
            net.eval()
            self._network, self._state = net, copy.deepcopy(net.state_dict())
        return self._network

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self.network().regis_net.parameters()))

    def _register(self, fixed: np.ndarray, moving: np.ndarray, spacing: Sequence[float] | None) -> Registration:
        fixed, moving = validate_images(fixed, moving, dims=DIMS)
        import itk
        from icon_registration import config, itk_wrapper

        import unigradicon

        net = self.network()
        relative = relative_spacing(spacing, fixed.ndim)
        fixed_image, moving_image = itk_image(fixed, relative), itk_image(moving, relative)
        rules = {"ct_window": self.ct_window, "quantile_range": self.quantile_range}
        config.device = self.device  # the package reads its device from this module at each call
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its loss
                phi_ab, _ = itk_wrapper.register_pair(
                    net,
                    unigradicon.preprocess(moving_image, self.modality, **rules),
                    unigradicon.preprocess(fixed_image, self.modality, **rules),
                    finetune_steps=self.io_iterations or None,
                    learning_rate=self.io_lr,
                )
        finally:
            if self.io_iterations and self._state is not None:  # instance optimisation trained the network
                net.load_state_dict(self._state)
        to_field = itk.TransformToDisplacementFieldFilter[itk.Image[itk.Vector[itk.F, 3], 3], itk.D].New()
        to_field.SetTransform(phi_ab)
        to_field.SetReferenceImage(fixed_image)
        to_field.SetUseReferenceImage(True)
        to_field.Update()
        field = itk.array_from_image(to_field.GetOutput())  # physical, x first
        flow = voxel_flow(field, relative, x_first=True)
        interpolator = itk.LinearInterpolateImageFunction.New(moving_image)
        moved = itk.resample_image_filter(moving_image, transform=phi_ab, interpolator=interpolator, use_reference_image=True, reference_image=fixed_image)
        return Registration(moved=np.ascontiguousarray(itk.array_from_image(moved), dtype=np.float32), flow=flow)


def _meta(display_name: str) -> MethodMeta:
    return MethodMeta(
        display_name=display_name,
        dims=DIMS,
        tagged=True,
        requires=("unigradicon",),
        install_hint='pip install "regbench[unigradicon]"',
        option_names=frozenset(
            {
                "weights",
                "weights_sha256",
                "allow_download",
                "modality",
                "quantile_range",
                "ct_window",
                "grid",
                "io_iterations",
                "io_lr",
                "io_similarity",
                "seed",
                "device",
            }
        ),
    )


@register_method("unigradicon", _meta("uniGradICON"))
def unigradicon(tag: str, **options: Any) -> GradICONFoundation:
    """uniGradICON (``unigradicon.random``: random weights; another tag: ``weights: PATH``)."""
    return GradICONFoundation("unigradicon", tag, **options)


@register_method("multigradicon", _meta("multiGradICON"))
def multigradicon(tag: str, **options: Any) -> GradICONFoundation:
    """multiGradICON (``multigradicon.random``: random weights; another tag: ``weights: PATH``)."""
    return GradICONFoundation("multigradicon", tag, **options)
