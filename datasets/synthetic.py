"""``synthetic``: an embedded 2-D short-axis cardiac cine dataset, deterministic from a seed, no download.

Each subject has short-axis slices from base to apex. Anatomy is analytic in millimetres, so a slice renders at
any image size with the same field of view: LV blood pool (label 3), myocardial ring (2), RV crescent (1)
(ACDC's convention), a textured body with lungs, liver and epicardial fat, Rician noise and a smooth
multiplicative bias field (the same for both frames of a slice: it belongs to the coil, not the heart).

Motion ED→ES is a smooth, invertible map per slice: radial LV contraction set by the subject's ejection
fraction (endocardium contracts, myocardial area is conserved, so the wall thickens), inward motion of the RV
free wall, base-to-apex twist, and a small translation of the heart, all fading to zero away from the heart.
The ES frame is the ED anatomy sampled at ``S(y)`` (the source of ES point ``y``); the ground-truth flow of
the pair (fixed = ED, moving = ES) is ``u(x) = S⁻¹(x) − x`` in pixels, found by fixed-point iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, TypeAlias

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..interface import Pair
from ..registry import DatasetMeta, register_dataset
from .labels import CARDIAC_LABELS, slice_case_id
from .splits import SPLITS, split_subjects

# |∇v| stays well below 1 in this motion model; 20 iterations leave a residual below 1e-3 px (tested).
FIXED_POINT_ITERATIONS = 20
# With the ``motion`` option: a step of k per iteration shrinks the error by at least 1 − k (≤ 0.72) each time.
DAMPED_ITERATIONS = 80


# A slice's parameter: one number, or (the 3-D heart) one per point, broadcast with the coordinates.
Param: TypeAlias = "float | np.ndarray"


@dataclass(frozen=True)
class SliceAnatomy:
    """Parameters of one slice, mm and radians; centre in (row, column) mm. rv_present: a bool, or 0/1 per point."""

    centre: tuple[Param, Param]
    endo: Param  # ED endocardial radius
    wall: Param  # ED wall thickness
    shape_amp: tuple[float, float]  # amplitude of 2nd/3rd angular harmonics of the LV outline
    shape_phase: tuple[Param, Param]
    rv_present: bool | np.ndarray
    rv_angle: float
    rv_depth: Param  # radial extent of the RV cavity beyond the epicardium
    rv_width: float  # angular half-width (rad)
    contraction: float  # k = ES/ED endocardial radius
    rv_motion: Param  # inward motion of the RV free wall (mm)
    twist: Param  # rad
    shift: tuple[float, float]  # mm


def _ang(theta: np.ndarray, ref: float) -> np.ndarray:
    """Signed angle difference wrapped to [-π, π)."""
    return (theta - ref + np.pi) % (2 * np.pi) - np.pi


class _Slice:
    """Analytic anatomy and motion of one slice (all coordinates in mm, arrays of any shape)."""

    def __init__(self, a: SliceAnatomy, tissue: dict[str, Any]) -> None:
        self.a = a
        self.t = tissue
        self.b = a.endo + a.wall
        self.endo_es = a.contraction * a.endo
        self.epi_es = np.sqrt(np.maximum(self.b**2 - a.endo**2 + self.endo_es**2, 0.0))  # myocardial area conserved

    def _modulation(self, theta: np.ndarray) -> np.ndarray:
        (a2, a3), (p2, p3) = self.a.shape_amp, self.a.shape_phase
        return 1.0 + a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3)

    def _polar(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr, dc = r - self.a.centre[0], c - self.a.centre[1]
        return np.hypot(dr, dc), np.arctan2(dr, dc)

    def fade(self, s: np.ndarray) -> np.ndarray:
        """How much of the heart's motion tissue at normalised radius ``s`` (ES geometry) shares: 1 inside the
        epicardium, a Gaussian decay outside."""
        return np.where(s <= self.epi_es, 1.0, np.exp(-(((s - self.epi_es) / (1.2 * self.b)) ** 2)))

    def normalised_radius(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        rho, theta = self._polar(r, c)
        return rho / self._modulation(theta)

    def source(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """S: the ED position of the tissue found at ES position (r, c)."""
        a, b, a_es, b_es = self.a.endo, self.b, self.endo_es, self.epi_es
        rho, theta = self._polar(r, c)
        m = self._modulation(theta)
        s = rho / m
        g = np.where(
            s <= a_es,
            s * a / a_es,
            np.where(s <= b_es, np.sqrt(np.maximum(s**2 + a**2 - a_es**2, 0.0)), s + (b - b_es) * np.exp(-(((s - b_es) / (1.5 * b)) ** 2))),
        )
        fade = self.fade(s)
        if np.any(self.a.rv_present):
            x = np.maximum(s - b_es, 0.0) / self.a.rv_depth
            bump = x * np.exp(1.0 - x) * np.exp(-((_ang(theta, self.a.rv_angle) / (1.3 * self.a.rv_width)) ** 2))
            g = g + self.a.rv_motion * bump * self.a.rv_present
        phi = theta + self.a.twist * fade
        rho_src = g * m
        return (
            self.a.centre[0] + rho_src * np.sin(phi) + self.a.shift[0] * fade,
            self.a.centre[1] + rho_src * np.cos(phi) + self.a.shift[1] * fade,
        )

    def labels(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """ED label map at (r, c): 1 RV, 2 Myo, 3 LV."""
        rho, theta = self._polar(r, c)
        s = rho / self._modulation(theta)
        out = np.zeros(np.shape(r), dtype=np.uint8)
        if np.any(self.a.rv_present):
            d = _ang(theta, self.a.rv_angle) / self.a.rv_width
            # Crescent: between the epicardium (+ a thin septal gap) and an outline shrinking toward its tips.
            outer = self.b + self.a.rv_depth * np.sqrt(np.clip(1.0 - d**2, 0.0, 1.0))
            out[(s > self.b + 0.8) & (s < outer) & (np.abs(d) < 1.0) & (np.asarray(self.a.rv_present) > 0)] = 1
        out[s <= self.b] = 2
        out[s <= self.a.endo] = 3
        return out

    def intensity(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """ED intensity before noise and bias (roughly [0, 1])."""
        t = self.t
        lab = self.labels(r, c)
        dr, dc = r - t["body_centre"][0], c - t["body_centre"][1]
        body = (dr / t["body_axes"][0]) ** 2 + (dc / t["body_axes"][1]) ** 2 <= 1.0
        tex = np.zeros(np.shape(r))
        for (fr, fc), ph, amp in zip(t["tex_freq"], t["tex_phase"], t["tex_amp"]):
            tex += amp * np.cos(2 * np.pi * (fr * r + fc * c) + ph)
        img = np.where(body, t["muscle"] * (1.0 + tex), 0.0)
        for (lr, lc), (ar, ac) in zip(t["lung_centres"], t["lung_axes"]):
            img[((r - lr) / ar) ** 2 + ((c - lc) / ac) ** 2 <= 1.0] = t["lung"]
        lr, lc = t["liver_centre"]
        liver = body & (((r - lr) / t["liver_axes"][0]) ** 2 + ((c - lc) / t["liver_axes"][1]) ** 2 <= 1.0)
        img[liver] = t["liver"] * (1.0 + 0.5 * tex[liver])
        rho, theta = self._polar(r, c)
        s = rho / self._modulation(theta)
        fat = (s > self.b) & (s < self.b + t["fat_width"]) & (np.cos(theta - t["fat_angle"]) > 0.2) & (lab == 0) & (self.b > 0)
        img[fat] = t["fat"]
        img[lab == 2] = t["myo"] * (1.0 + 0.5 * tex[lab == 2])
        img[lab == 3] = t["blood_lv"] * (1.0 + 0.3 * tex[lab == 3])
        img[lab == 1] = t["blood_rv"] * (1.0 + 0.3 * tex[lab == 1])
        return img


@register_dataset("synthetic", DatasetMeta(display_name="Synthetic", labels=CARDIAC_LABELS, levels={"motion": "motion (× as drawn)"}))
class SyntheticCardiac:
    """Embedded synthetic cardiac cine pairs (ES moving, ED fixed) with ground-truth flows.

    Options: ``n_subjects`` (default 40), ``image_size`` (pixels per side, default 128), ``fov_mm`` (field
    of view, default 192 mm, so 1.5 mm pixels at 128), ``seed`` (default 0: anatomy, motion, noise and the
    75/5/20 subject split), ``noise`` (Rician σ range, default 0.015–0.035), ``split`` (train/val/test
    fractions). Two more options make a second domain that differs as cohorts and scanners do, for studies that
    carry a setting tuned on one domain to another: ``motion`` (default 1: the ED→ES motion's amplitude scaled —
    contraction ``1 − k``, RV motion, twist and translation; 0 < motion ≤ 2) and ``contrast`` (default 1: each
    tissue's intensity moved away from (> 1) or toward (< 1) the tissues' mean; 0 < contrast ≤ 2). At their
    defaults the pairs are bit-identical to a dataset without them, and the manifest lists them only when set.
    ``test_motion`` (a list of motion scales, e.g. ``[0.25, 0.5, 1, 1.5, 2]``; default none) draws the test split
    at each of those scales instead: the same subjects, ED images and noise, only the ES frame's motion scaled, each
    pair's case id ending ``+motionM`` with the group attribute ``motion`` = M (a level: ``stress.md`` reads it);
    training and validation pairs keep ``motion``.
    """

    name = "synthetic"
    subject_prefix = "synth"

    def __init__(
        self,
        n_subjects: int = 40,
        image_size: int = 128,
        fov_mm: float = 192.0,
        seed: int = 0,
        noise: tuple[float, float] = (0.015, 0.035),
        split: tuple[float, float, float] = (0.75, 0.05, 0.20),
        *,
        motion: float = 1.0,
        contrast: float = 1.0,
        test_motion: Sequence[float] | None = None,
    ) -> None:
        if int(n_subjects) < 3:
            raise ConfigError(f"{self.name}: n_subjects must be at least 3 (one per split), got {n_subjects!r}")
        if int(image_size) < 16:
            raise ConfigError(f"{self.name}: image_size must be at least 16 pixels, got {image_size!r}")
        self.n_subjects = int(n_subjects)
        self.image_size = int(image_size)
        self.fov_mm = float(fov_mm)
        self.seed = int(seed)
        self.noise = (float(noise[0]), float(noise[1]))
        self.split_fractions = tuple(float(x) for x in split)
        self.spacing: tuple[float, ...] = (self.fov_mm / self.image_size,) * 2
        if isinstance(motion, bool) or not isinstance(motion, (int, float)) or not 0 < motion <= MAX_MOTION:
            raise ConfigError(f"{self.name}: motion must be a number in (0, {MAX_MOTION:g}] (1: as drawn), got {motion!r}")
        if isinstance(contrast, bool) or not isinstance(contrast, (int, float)) or not 0 < contrast <= MAX_CONTRAST:
            raise ConfigError(f"{self.name}: contrast must be a number in (0, {MAX_CONTRAST}] (1: as drawn), got {contrast!r}")
        self.motion = float(motion)
        self.contrast = float(contrast)
        self.test_motion = _motion_levels(self.name, test_motion)

    def options(self) -> dict[str, Any]:
        """Everything that changes the data; recorded in the run manifest (motion and contrast only when set, so
        that the data caches and fingerprints of runs made before them stay valid)."""
        return {
            "n_subjects": self.n_subjects,
            "image_size": self.image_size,
            "fov_mm": self.fov_mm,
            "seed": self.seed,
            "noise": list(self.noise),
            "split": list(self.split_fractions),
            **({"motion": self.motion} if self.motion != 1.0 else {}),
            **({"contrast": self.contrast} if self.contrast != 1.0 else {}),
            **({"test_motion": list(self.test_motion)} if self.test_motion else {}),
        }

    def level_options(self, level: str, value: float) -> dict[str, Any] | None:
        """This dataset's options with every split at motion scale ``value`` (``motion``) and the test split at that
        scale alone (``test_motion``: the same case ids and images as this dataset's ``+motionM`` pairs); None at
        ``motion``, the scale its training pairs are drawn at. ``motion`` is the one level it declares."""
        if level != "motion":
            raise ConfigError(f"{self.name}: declares the level 'motion' only, not {level!r}")
        if float(value) == self.motion:
            return None
        return {**self.options(), "motion": float(value), "test_motion": [float(value)]}

    def subjects(self) -> list[str]:
        return [f"{self.subject_prefix}{i:03d}" for i in range(self.n_subjects)]

    def split(self) -> dict[str, list[str]]:
        """Subject-level train/val/test split, fixed by the seed."""
        return split_subjects(self.subjects(), self.seed, self.split_fractions)

    def pairs(self, split: str) -> list[Pair]:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
        if split == "test" and self.test_motion:
            # Slice by slice, every level of each: a limit on the scored pairs keeps the levels balanced.
            return [
                p for subject in self.split()[split] for by_slice in zip(*(self._level_pairs(subject, level) for level in self.test_motion)) for p in by_slice
            ]
        return [p for subject in self.split()[split] for p in self.subject_pairs(subject)]

    def subject_pairs(self, subject: str) -> list[Pair]:
        return list(self._subject_pairs(subject, self.motion))

    def _level_pairs(self, subject: str, level: float) -> list[Pair]:
        """The subject's pairs at motion scale ``level``, named and grouped by it."""
        return [
            replace(p, case_id=f"{p.case_id}+motion{level:g}", groups={**p.groups, "motion": f"{level:g}"}, meta={**p.meta, "motion": level})
            for p in self._subject_pairs(subject, level)
        ]

    def _subject_pairs(self, subject: str, motion: float) -> tuple[Pair, ...]:
        """The subject's pairs at motion scale ``motion`` (a subclass draws its own: a volume's one pair)."""
        return self._slice_pairs(subject, motion)

    @cache  # noqa: B019 - a dataset lives as long as its run; its pairs are what it caches
    def _slice_pairs(self, subject: str, motion: float) -> tuple[Pair, ...]:
        index = self.subjects().index(subject)
        rng = np.random.default_rng([self.seed, index])
        anatomies, tissue = _draw_subject(rng, self.fov_mm)
        if motion != 1.0:
            anatomies = [scale_motion(a, motion) for a in anatomies]
        if self.contrast != 1.0:
            tissue = scale_contrast(tissue, self.contrast)
        return tuple(self._render(subject, z, a, tissue, rng, motion) for z, a in enumerate(anatomies))

    def _render(self, subject: str, z: int, anatomy: SliceAnatomy, tissue: dict[str, Any], rng: np.random.Generator, motion: float) -> Pair:
        sl = _Slice(anatomy, tissue)
        n, sp = self.image_size, self.spacing[0]
        r, c = np.meshgrid((np.arange(n) + 0.5) * sp, (np.arange(n) + 0.5) * sp, indexing="ij")
        ed_label = sl.labels(r, c)
        rs, cs = sl.source(r, c)
        es_label = sl.labels(rs, cs)
        blur = 0.6 * 1.5 / sp  # point-spread of ~0.9 mm
        ed = ndimage.gaussian_filter(sl.intensity(r, c), blur)
        es = ndimage.gaussian_filter(sl.intensity(rs, cs), blur)
        bias = _bias_field(rng, r, c, self.fov_mm)
        sigma = rng.uniform(*self.noise)
        frames = [_normalise(_rician(img * bias, sigma, rng)) for img in (ed, es)]
        # Ground truth: u(x) with S(x + u(x)) = x, by fixed-point iteration u ← u + step · (x − S(x + u)). S
        # stretches the LV cavity by 1/k, so the undamped iteration (step 1) converges only while 1/k − 1 < 1;
        # scaled motion (k down to 0.2) takes a step of k and more iterations.
        step, iterations = (1.0, FIXED_POINT_ITERATIONS) if motion == 1.0 else (min(anatomy.contraction, 1.0), DAMPED_ITERATIONS)
        ur, uc = np.zeros_like(r), np.zeros_like(c)
        for _ in range(iterations):
            sr, sc = sl.source(r + ur, c + uc)
            ur, uc = ur + step * (r - sr), uc + step * (c - sc)
        flow = np.stack([ur / sp, uc / sp]).astype(np.float32)
        return Pair(
            fixed=frames[0],
            moving=frames[1],
            fixed_label=ed_label,
            moving_label=es_label,
            spacing=self.spacing,
            case_id=slice_case_id(subject, z),
            subject=subject,
            flow_gt=flow,
            meta={"slice": z, "ef": 1 - anatomy.contraction**2, "rv_present": anatomy.rv_present},
        )


# The largest motion scale keeps every drawn contraction k (≥ 0.6) positive: 1 − 2 · 0.4 = 0.2 (an ejection
# fraction of 96 %: beyond physiology, for stress curves); the damped inversion then shrinks its error by 0.8 a step.
MAX_MOTION = 2.0
MAX_CONTRAST = 2.0
# The tissues whose intensities ``contrast`` spreads or draws together (the texture amplitudes are relative).
TISSUE_INTENSITIES = ("muscle", "lung", "liver", "fat", "myo", "blood_lv", "blood_rv")


def _motion_levels(dataset: str, levels: Any) -> tuple[float, ...]:
    """``test_motion`` checked: distinct motion scales, each in (0, MAX_MOTION]; () when not given."""
    if levels is None:
        return ()
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise ConfigError(f"{dataset}: test_motion must be a non-empty list of motion scales, e.g. [0.25, 0.5, 1, 1.5, 2], got {levels!r}")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level <= MAX_MOTION:
            raise ConfigError(f"{dataset}: each test_motion scale must be a number in (0, {MAX_MOTION:g}] (1: as drawn), got {level!r}")
    if len(set(map(float, levels))) < len(levels):
        raise ConfigError(f"{dataset}: test_motion lists a scale twice: {list(levels)!r}")
    return tuple(float(level) for level in levels)


def scale_motion(anatomy: SliceAnatomy, scale: float) -> SliceAnatomy:
    """The slice's ED→ES motion with its amplitude scaled: contraction 1 − k, RV wall motion, twist, translation."""
    return replace(
        anatomy,
        contraction=1.0 - scale * (1.0 - anatomy.contraction),
        rv_motion=anatomy.rv_motion * scale,
        twist=anatomy.twist * scale,
        shift=(anatomy.shift[0] * scale, anatomy.shift[1] * scale),
    )


def scale_contrast(tissue: dict[str, Any], scale: float) -> dict[str, Any]:
    """Each tissue's intensity moved ``scale`` times as far from the tissues' mean (clipped at 0)."""
    mean = float(np.mean([tissue[k] for k in TISSUE_INTENSITIES]))
    return {**tissue, **{k: max(mean + scale * (tissue[k] - mean), 0.0) for k in TISSUE_INTENSITIES}}


def _draw_subject(rng: np.random.Generator, fov: float) -> tuple[list[SliceAnatomy], dict[str, Any]]:
    centre = (fov / 2 + rng.normal(0, 5), fov / 2 + rng.normal(0, 5))
    endo0, wall0 = rng.uniform(19, 27), rng.uniform(7, 10)
    ef = rng.uniform(0.25, 0.60)
    rv_angle = np.pi + rng.normal(0, 0.25)  # RV to the left of the LV (image columns decreasing)
    rv_depth0, rv_width = rng.uniform(18, 28), rng.uniform(1.1, 1.5)
    rv_motion0 = rng.uniform(2, 5)
    rv_end = rng.uniform(0.6, 0.85)
    twist_base, twist_apex = np.deg2rad(rng.normal(-4, 2)), np.deg2rad(rng.normal(6, 2))
    shift = (rng.normal(0, 1.5), rng.normal(0, 1.5))
    shape_amp = (rng.uniform(0, 0.06), rng.uniform(0, 0.04))
    n_slices = int(rng.integers(6, 11))
    anatomies = []
    for i in range(n_slices):
        z = i / (n_slices - 1)
        shrink = np.sqrt(max(1.0 - 0.8 * z**2, 0.05))
        rv_present = z < rv_end
        anatomies.append(
            SliceAnatomy(
                centre=(centre[0] + rng.normal(0, 0.7), centre[1] + rng.normal(0, 0.7)),
                endo=endo0 * shrink,
                wall=wall0 * (1 - 0.15 * z),
                shape_amp=shape_amp,
                shape_phase=(rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)),
                rv_present=rv_present,
                rv_angle=rv_angle,
                rv_depth=rv_depth0 * (np.sqrt(1 - z / rv_end) if rv_present else 1.0),
                rv_width=rv_width,
                contraction=float(np.sqrt(1 - ef) * rng.uniform(0.95, 1.05)),
                rv_motion=rv_motion0 * (1 - 0.5 * z),
                twist=twist_base + (twist_apex - twist_base) * z,
                shift=shift,
            )
        )
    return anatomies, _draw_tissue(rng, fov, centre)


def _draw_tissue(rng: np.random.Generator, fov: float, centre: tuple[float, float]) -> dict[str, Any]:
    """Body, lungs, liver, fat and texture around a heart centred at ``centre`` (mm)."""
    n_tex = 24
    freq_mag = rng.uniform(1 / 30, 1 / 6, n_tex)
    freq_dir = rng.uniform(0, 2 * np.pi, n_tex)
    return {
        "body_centre": (fov / 2 + rng.normal(0, 4), fov / 2 + rng.normal(0, 4)),
        "body_axes": (rng.uniform(75, 90), rng.uniform(88, 100)),
        "lung_centres": [(centre[0] - rng.uniform(10, 25), centre[1] + s * rng.uniform(45, 60)) for s in (-1, 1)],
        "lung_axes": [(rng.uniform(28, 38), rng.uniform(14, 22)) for _ in range(2)],
        "liver_centre": (centre[0] + rng.uniform(45, 60), centre[1] - rng.uniform(10, 30)),
        "liver_axes": (rng.uniform(20, 30), rng.uniform(35, 50)),
        "tex_freq": list(zip(freq_mag * np.sin(freq_dir), freq_mag * np.cos(freq_dir))),
        "tex_phase": list(rng.uniform(0, 2 * np.pi, n_tex)),
        "tex_amp": list(rng.uniform(0.02, 0.06, n_tex) / np.sqrt(n_tex / 4)),
        "muscle": rng.uniform(0.28, 0.38),
        "lung": rng.uniform(0.03, 0.08),
        "liver": rng.uniform(0.40, 0.50),
        "fat": rng.uniform(0.65, 0.8),
        "fat_width": rng.uniform(1.5, 3.5),
        "fat_angle": rng.uniform(0, 2 * np.pi),
        "myo": rng.uniform(0.18, 0.28),
        "blood_lv": rng.uniform(0.75, 0.9),
        "blood_rv": rng.uniform(0.7, 0.88),
    }


def _bias_field(rng: np.random.Generator, r: np.ndarray, c: np.ndarray, fov: float) -> np.ndarray:
    k = rng.normal(0, 1, (3, 3)) * np.array([[0, 0.08, 0.03], [0.08, 0.04, 0.02], [0.03, 0.02, 0.01]])
    x, y = 2 * r / fov - 1, 2 * c / fov - 1
    field = sum(k[i, j] * np.cos(np.pi * i * x / 2) * np.cos(np.pi * j * y / 2) for i in range(3) for j in range(3))
    return 1.0 + field


def _rician(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))


def _normalise(img: np.ndarray) -> np.ndarray:
    """Intensities to [0, 1]: divide by the 99.5th percentile and clip (robust to noise spikes)."""
    return np.clip(img / max(np.percentile(img, 99.5), 1e-6), 0.0, 1.0).astype(np.float32)
