"""``synthetic3d``: an embedded 3-D cardiac cine dataset: short-axis stacks with true 3-D ED→ES motion.

The heart of the 2-D ``synthetic`` dataset (same analytic anatomy, tissue, texture, bias field and Rician noise)
made continuous along the long axis: its parameters vary smoothly from base (t = 0) to apex (t = 1), the LV axis
is tilted, the RV ends part-way to the apex, and a myocardial cap closes the apex. Each subject is one volume
pair (fixed = ED, moving = ES) of ``depth`` short-axis slices ``slice_mm`` apart (10 mm: several times the
in-plane pixel, as in cine MRI), the top slice at the base. Intensities average three planes across each slice's
thickness (partial volume along the coarse axis); labels are those of the slice's centre plane.

Motion ES→ED, ``S``, the ED position of the tissue found at ES point ``y``: longitudinal shortening toward the
(stationary) apex, by ``shortening`` of the base-to-apex distance, then the 2-D model's in-plane motion (radial
contraction with the wall thickening, RV free-wall motion, base-to-apex twist, a small shift) of the level the
tissue comes from; both fade to zero away from the heart. The ground-truth flow of the pair is
``u(x) = S⁻¹(x) − x`` in voxels (channel 0 through-plane), found by fixed-point iteration as in 2-D.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..interface import Pair
from ..registry import DatasetMeta, register_dataset
from .labels import CARDIAC_LABELS
from .synthetic import DAMPED_ITERATIONS, FIXED_POINT_ITERATIONS, SliceAnatomy, SyntheticCardiac, _bias_field, _draw_tissue, _normalise, _rician, _Slice

# The three planes (as fractions of the slice spacing) whose mean is a slice's intensity: an 8 mm thick slice
# profile at 10 mm spacing, roughly.
SLICE_PROFILE = (-0.27, 0.0, 0.27)
# Below the apex the myocardium closes over this fraction of the base-to-apex length.
APEX_CAP = 0.12


def _smooth_positive(d: np.ndarray, width: float) -> np.ndarray:
    """≈ max(d, 0), smooth over ``width``: the shortening stops at the apex without a kink in the motion."""
    return 0.5 * (d + np.sqrt(d * d + width * width))


class _Heart:
    """One subject's heart: anatomy and motion as smooth functions of the long-axis position (mm arrays)."""

    def __init__(self, rng: np.random.Generator, fov: float, base_mm: float) -> None:
        self.base_mm = base_mm
        self.length = rng.uniform(58, 75)  # base to apex, mm
        self.shortening = rng.uniform(0.08, 0.15)
        centre = (fov / 2 + rng.normal(0, 5), fov / 2 + rng.normal(0, 5))
        self.centre_base = np.array(centre)
        self.centre_apex = self.centre_base + rng.normal(0, 4, 2)  # the long axis is tilted
        self.endo0, self.wall0 = rng.uniform(19, 27), rng.uniform(7, 10)
        self.contraction = float(np.sqrt(1 - rng.uniform(0.25, 0.60)))
        self.rv_angle = np.pi + rng.normal(0, 0.25)
        self.rv_depth0, self.rv_width = rng.uniform(18, 28), rng.uniform(1.1, 1.5)
        self.rv_motion0, self.rv_end = rng.uniform(2, 5), rng.uniform(0.6, 0.85)
        self.twist_base, self.twist_apex = np.deg2rad(rng.normal(-4, 2)), np.deg2rad(rng.normal(6, 2))
        self.shift = (rng.normal(0, 1.5), rng.normal(0, 1.5))
        self.shape_amp = (rng.uniform(0, 0.06), rng.uniform(0, 0.04))
        self.shape_phase0 = rng.uniform(0, 2 * np.pi, 2)
        self.shape_phase_turn = rng.normal(0, 0.5, 2)  # the outline's harmonics turn slowly toward the apex
        self.tissue = _draw_tissue(rng, fov, centre)

    def scaled(self, scale: float) -> _Heart:
        """This heart with its ED→ES motion's amplitude scaled (the 2-D dataset's ``motion``): contraction 1 − k,
        long-axis shortening, RV wall motion, twist and shift; the same anatomy at ED."""
        heart = copy.copy(self)
        heart.contraction = 1.0 - scale * (1.0 - self.contraction)
        heart.shortening = scale * self.shortening
        heart.rv_motion0 = scale * self.rv_motion0
        heart.twist_base, heart.twist_apex = scale * self.twist_base, scale * self.twist_apex
        heart.shift = (scale * self.shift[0], scale * self.shift[1])
        return heart

    def level(self, z: np.ndarray) -> np.ndarray:
        """Long-axis position t (0 base, 1 apex) of the plane at ``z`` mm."""
        return (z - self.base_mm) / self.length

    def anatomy(self, z: np.ndarray, for_labels: bool) -> SliceAnatomy:
        """The slice anatomy at ``z`` mm, one value per point. For motion, the heart continues beyond base and
        apex with the parameters there (the motion is smooth everywhere); for labels, the RV ends at its level
        and the myocardium closes below the apex."""
        t = self.level(z)
        tc = np.clip(t, 0.0, 1.0)
        endo = self.endo0 * np.sqrt(np.maximum(1.0 - 0.8 * tc**2, 0.05))
        wall = self.wall0 * (1 - 0.15 * tc)
        rv_left = np.clip(1.0 - tc / self.rv_end, 0.0, 1.0)
        if for_labels:
            cap = (self.endo0 * np.sqrt(0.2) + self.wall0 * 0.85) * np.sqrt(np.clip(1.0 - ((t - 1.0) / APEX_CAP) ** 2, 0.0, 1.0))
            below = t > 1.0
            endo, wall = np.where(below, -1.0, endo), np.where(below, np.where(cap > 0, cap + 1.0, -1.0), wall)
            rv_present, rv_depth, rv_motion = (t < self.rv_end).astype(float), self.rv_depth0 * np.sqrt(rv_left), 0.0 * t
        else:
            # The RV free wall's motion fades out over the last 15 % of its extent, and never divides by ~0 depth.
            rv_present = np.ones_like(t)
            rv_depth = self.rv_depth0 * np.maximum(np.sqrt(rv_left), 0.4)
            rv_motion = self.rv_motion0 * (1 - 0.5 * tc) * np.clip((self.rv_end - tc) / 0.15, 0.0, 1.0)
        centre = [base * (1 - tc) + apex * tc for base, apex in zip(self.centre_base, self.centre_apex)]
        phase = [start + turn * tc for start, turn in zip(self.shape_phase0, self.shape_phase_turn)]
        return SliceAnatomy(
            centre=(centre[0], centre[1]),
            endo=endo,
            wall=wall,
            shape_amp=self.shape_amp,
            shape_phase=(phase[0], phase[1]),
            rv_present=rv_present,
            rv_angle=self.rv_angle,
            rv_depth=rv_depth,
            rv_width=self.rv_width,
            contraction=self.contraction,
            rv_motion=rv_motion,
            twist=self.twist_base + (self.twist_apex - self.twist_base) * tc,
            shift=self.shift,
        )

    def source(self, z: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S: the ED position (z, r, c) mm of the tissue found at ES position (z, r, c)."""
        here = _Slice(self.anatomy(z, for_labels=False), self.tissue)
        apex = self.base_mm + self.length
        # Toward the apex at ES: the tissue came from further from it, by shortening/(1 - shortening) of its distance.
        dz = -self.shortening / (1 - self.shortening) * _smooth_positive(apex - z, 0.1 * self.length)
        z_src = z + dz * here.fade(here.normalised_radius(r, c))
        r_src, c_src = _Slice(self.anatomy(z_src, for_labels=False), self.tissue).source(r, c)
        return z_src, r_src, c_src

    def labels(self, z: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return _Slice(self.anatomy(z, for_labels=True), self.tissue).labels(r, c)

    def intensity(self, z: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return _Slice(self.anatomy(z, for_labels=True), self.tissue).intensity(r, c)


@register_dataset("synthetic3d", DatasetMeta(display_name="Synthetic 3-D", labels=CARDIAC_LABELS, dims=(3,), levels={"motion": "motion (× as drawn)"}))
class SyntheticCardiac3D(SyntheticCardiac):
    """Embedded 3-D synthetic cardiac cine volume pairs (ES moving, ED fixed) with ground-truth flows: the 2-D
    dataset's options, subjects and split, one volume pair per subject.

    Options: ``n_subjects`` (default 40, one volume pair each), ``image_size`` (in-plane pixels per side,
    default 64), ``fov_mm`` (in-plane field of view, default 192 mm: 3 mm pixels at 64), ``depth`` (slices,
    default 10), ``slice_mm`` (slice spacing, default 10 mm), ``seed`` (default 0: anatomy, motion, noise and
    the 75/5/20 subject split), ``noise`` (Rician σ range, default 0.015–0.035), ``motion`` and ``test_motion``
    as the 2-D dataset's (the motion's amplitude, long-axis shortening included; the test split at several).
    """

    name = "synthetic3d"
    subject_prefix = "synth3d"

    def __init__(
        self,
        n_subjects: int = 40,
        image_size: int = 64,
        fov_mm: float = 192.0,
        depth: int = 10,
        slice_mm: float = 10.0,
        seed: int = 0,
        noise: tuple[float, float] = (0.015, 0.035),
        split: tuple[float, float, float] = (0.75, 0.05, 0.20),
        *,
        motion: float = 1.0,
        test_motion: Sequence[float] | None = None,
    ) -> None:
        super().__init__(n_subjects, image_size, fov_mm, seed, noise, split, motion=motion, test_motion=test_motion)
        if not float(slice_mm) > 0:
            raise ConfigError(f"synthetic3d: slice_mm must be positive, got {slice_mm!r}")
        # The heart (at most 75 mm + its apical cap) must fit below the top slice.
        if int(depth) * float(slice_mm) < 95.0:
            raise ConfigError(f"synthetic3d: depth × slice_mm must cover the heart (at least 95 mm), got {depth!r} × {slice_mm!r} mm")
        self.depth = int(depth)
        self.slice_mm = float(slice_mm)
        self.spacing = (self.slice_mm, *self.spacing)  # (slices, rows, columns)

    def options(self) -> dict[str, Any]:
        """Everything that changes the data; recorded in the run manifest."""
        return {**super().options(), "depth": self.depth, "slice_mm": self.slice_mm}

    def subject_pairs(self, subject: str) -> list[Pair]:
        return [self._pair(subject, self.motion)]

    def _subject_pairs(self, subject: str, motion: float) -> tuple[Pair, ...]:
        return (self._pair(subject, motion),)

    def heart(self, subject: str) -> tuple[_Heart, np.random.Generator]:
        """The subject's heart, and the generator that goes on to draw its bias field and noise."""
        rng = np.random.default_rng([self.seed, self.subjects().index(subject), 3])
        # The top slice's centre plane lies at or just below the base.
        return _Heart(rng, self.fov_mm, base_mm=self.slice_mm * (0.5 - rng.uniform(0.0, 0.3))), rng

    def grid(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel centres (z, r, c) in mm, each of the volume's shape."""
        n, sp, dz = self.image_size, self.spacing[1], self.slice_mm
        z, r, c = np.meshgrid((np.arange(self.depth) + 0.5) * dz, (np.arange(n) + 0.5) * sp, (np.arange(n) + 0.5) * sp, indexing="ij")
        return z, r, c

    @cache  # noqa: B019 - a dataset lives as long as its run; its pairs are what it caches
    def _pair(self, subject: str, motion: float) -> Pair:
        heart, rng = self.heart(subject)
        if motion != 1.0:
            heart = heart.scaled(motion)
        sp, dz = self.spacing[1], self.slice_mm
        z, r, c = self.grid()
        es_sources = {f: heart.source(z + f * dz, r, c) for f in SLICE_PROFILE}  # the centre plane's (0.0) gives the labels
        ed_label = heart.labels(z, r, c)
        es_label = heart.labels(*es_sources[0.0])
        blur = (0.0, 0.6 * 1.5 / sp, 0.6 * 1.5 / sp)  # in-plane point-spread of ~0.9 mm; through-plane: the profile
        ed = np.mean([heart.intensity(z + f * dz, r, c) for f in SLICE_PROFILE], axis=0)
        es = np.mean([heart.intensity(*es_sources[f]) for f in SLICE_PROFILE], axis=0)
        ed, es = ndimage.gaussian_filter(ed, blur), ndimage.gaussian_filter(es, blur)
        bias = _bias_field(rng, r, c, self.fov_mm)
        sigma = rng.uniform(*self.noise)
        frames = [_normalise(_rician(img * bias, sigma, rng)) for img in (ed, es)]
        # Ground truth: u(x) with S(x + u(x)) = x, by fixed-point iteration u ← u + step · (x − S(x + u)); scaled
        # motion takes damped steps, as in 2-D.
        step, iterations = (1.0, FIXED_POINT_ITERATIONS) if motion == 1.0 else (min(heart.contraction, 1.0), DAMPED_ITERATIONS)
        u = [np.zeros_like(z), np.zeros_like(r), np.zeros_like(c)]
        for _ in range(iterations):
            src = heart.source(z + u[0], r + u[1], c + u[2])
            u = [uk + step * (xk - sk) for uk, xk, sk in zip(u, (z, r, c), src)]
        flow = np.stack([uk / spacing for uk, spacing in zip(u, self.spacing)]).astype(np.float32)
        return Pair(
            fixed=frames[0],
            moving=frames[1],
            fixed_label=ed_label,
            moving_label=es_label,
            spacing=self.spacing,
            case_id=subject,
            subject=subject,
            flow_gt=flow,
            meta={"ef": 1 - heart.contraction**2, "shortening": heart.shortening, "length_mm": heart.length},
        )
