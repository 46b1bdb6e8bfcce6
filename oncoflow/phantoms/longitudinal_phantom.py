"""Longitudinal brain-tumour phantoms: one patient, one lesion, several MRI visits with known truth.

A *case* is one head (Colin27 or MNI152, see :mod:`oncoflow.phantoms.tumour_phantom`; the whole head by
default, the skull-stripped brain with ``head=False``) with one lobulated ellipsoidal lesion, scanned at two
or more visits. Between visits

* the lesion's volume changes by a controlled factor: all three semi-axes are scaled by
  ``factor ** (1/3)`` about the lesion centre, so the lesion keeps its shape, orientation and
  lobes, and its necrotic-core fraction and oedema extent (both in normalised units) stay the same;
* the head moves relative to the scanner: a known rigid motion (rotation up to
  ``max_rotation_deg`` about a random axis through the head centre, translation of the head
  centre up to ``max_translation_mm``), optionally followed by a small per-axis scaling along
  the scanner axes (gradient calibration, ``max_scale_fraction``);
* the scanner grid changes: orientation (axial, coronal, sagittal or oblique), voxel size and
  field of view, and each visit has its own bias field, Rician noise, texture and gain.

Frames. The *baseline patient space* is the anatomy's own LPS frame (millimetres); the baseline
visit is scanned in it. A follow-up is scanned in its own patient (scanner) space;
``TimePoint.motion_to_baseline`` is the 4x4 LPS affine ``M`` with ``x_baseline = M @ x_followup``.
The follow-up image is rendered by mapping each voxel centre of its grid through ``M`` into the
anatomy frame and sampling anatomy and lesion there, so image and truth mask move together exactly.

Truth. The truth mask of a visit is ``lesion distance < 1`` at the voxel centres (enhancing rim +
necrotic core, never oedema). Lesions are placed so that they stay inside the (hole-filled) brain
at every visit, so the mask is not clipped by the brain outline. ``TimePoint.true_volume_cm3`` is
the continuous volume of the lesion in the anatomy frame, computed analytically (see
:meth:`Lesion.volume_cm3`).

Everything is drawn from ``numpy`` generators seeded with ``seed`` (separate streams for the
lesion, the volume changes, the dates and each visit): same seed and arguments, same case.

Patients with several lesions, each with its own course (new, disappearing, ...), are built from the same
pieces by :mod:`oncoflow.phantoms.multi_lesion_phantom`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.special import expit

from oncoflow.core.change_thresholds import VOLUME_CATEGORIES, ChangeThresholds, VolumeCategory
from oncoflow.core.volume import Volume
from oncoflow.phantoms.scanner_grid import BASE_ORIENTATIONS, random_rotation, scanner_grid, world_points
from oncoflow.phantoms.tumour_phantom import Anatomy, Phantom, _Brain, _load_brain, sample_anatomy

Category = VolumeCategory
Orientation = Literal["axial", "coronal", "sagittal", "oblique"]
CATEGORIES: tuple[Category, ...] = VOLUME_CATEGORIES
ANATOMIES: tuple[Anatomy, ...] = ("colin27", "mni152")
ORIENTATIONS: tuple[Orientation, ...] = ("axial", "coronal", "sagittal", "oblique")

# Volume factor (follow-up / previous visit) ranges drawn for each category; they keep a margin
# from the category thresholds so that the category of a drawn pair is unambiguous.
_FACTOR_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "progression": ((1.35, 2.5),),  # +35 % .. +150 %
    "response": ((0.4, 0.7),),  # -60 % .. -30 %
    "stable": ((0.97, 1.03),),  # -3 % .. +3 %
    "minor change": ((0.8, 0.92), (1.08, 1.2)),  # -20 % .. -8 % or +8 % .. +20 %
}
_MIN_CUMULATIVE_FACTOR, _MAX_CUMULATIVE_FACTOR = 0.2, 3.0
_ROOM_MARGIN_MM = 4.0  # lesion surface to brain surface, at the largest visit
_SOFT = 0.08  # boundary softness in normalised units (as in make_phantom)
_N_LOBES = 4


@dataclass(frozen=True)
class Lesion:
    """A lobulated ellipsoid in the anatomy (baseline patient) frame, at volume factor 1.

    In lesion coordinates ``u = R.T (x - centre) / semi_axes`` the lesion is the star-shaped set
    ``|u| < 1 + L(u/|u|)`` with ``L(d) = sum_k amplitude_k cos(w_k . d + phase_k)`` (the shape
    of :func:`oncoflow.phantoms.tumour_phantom._lesion_distance`).
    """

    centre_mm: npt.NDArray[np.float64]  # (3,) LPS mm
    semi_axes_mm: npt.NDArray[np.float64]  # (3,) mm, at volume factor 1
    rotation: npt.NDArray[np.float64]  # (3, 3), columns = lesion axes in LPS
    lobe_frequencies: npt.NDArray[np.float64]  # (n, 3)
    lobe_amplitudes: npt.NDArray[np.float64]  # (n,)
    lobe_phases: npt.NDArray[np.float64]  # (n,) radians

    def distance(self, points_mm: npt.NDArray[np.float64], factor: float = 1.0) -> npt.NDArray[np.float64]:
        """Normalised distance (< 1 inside) at LPS points of shape ``(3, ...)``, lesion volume scaled by ``factor``."""
        scale = factor ** (1.0 / 3.0)
        offset = np.tensordot(self.rotation.T, points_mm - self.centre_mm.reshape((3,) + (1,) * (points_mm.ndim - 1)),
                              axes=1)
        scaled = offset / (scale * self.semi_axes_mm).reshape((3,) + (1,) * (points_mm.ndim - 1))
        radius = np.sqrt((scaled**2).sum(axis=0))
        direction = scaled / np.maximum(radius, 1e-6)
        return radius / (1.0 + self._lobes(direction))

    def _lobes(self, direction: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        lobes = np.zeros(direction.shape[1:])
        for w, amplitude, phase in zip(self.lobe_frequencies, self.lobe_amplitudes, self.lobe_phases, strict=True):
            lobes += amplitude * np.cos(np.tensordot(w, direction, axes=1) + phase)
        return lobes

    def _unit_radii(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Radius ``1 + L`` on a Gauss-Legendre x uniform grid of the unit sphere, and the quadrature weights."""
        cos_theta, w_theta = np.polynomial.legendre.leggauss(160)
        phi = np.linspace(0.0, 2.0 * np.pi, 320, endpoint=False)
        sin_theta = np.sqrt(1.0 - cos_theta**2)
        direction = np.stack([
            sin_theta[:, None] * np.cos(phi)[None, :],
            sin_theta[:, None] * np.sin(phi)[None, :],
            np.broadcast_to(cos_theta[:, None], (len(cos_theta), len(phi))),
        ])
        weights = w_theta[:, None] * np.full(len(phi), 2.0 * np.pi / len(phi))[None, :]
        return 1.0 + self._lobes(direction), weights

    def volume_cm3(self, factor: float = 1.0) -> float:
        """Exact continuous volume in cm³: ``factor * a*b*c * ∮ (1 + L(d))³ / 3 dΩ``.

        The solid-angle integral of the smooth surface radius is evaluated by 160 x 320 point
        Gauss-Legendre x trapezoid quadrature (spectrally accurate: relative error << 1e-6).
        """
        radii, weights = self._unit_radii()
        unit_volume = float((weights * radii**3).sum() / 3.0)
        return factor * float(np.prod(self.semi_axes_mm)) * unit_volume / 1000.0

    def max_extent_mm(self, factor: float = 1.0) -> float:
        """An upper bound (to quadrature resolution) of the distance from the centre to the surface."""
        radii, _ = self._unit_radii()
        return factor ** (1.0 / 3.0) * float(self.semi_axes_mm.max()) * float(radii.max()) * 1.01


@dataclass(frozen=True)
class TimePoint:
    """One visit: the image with its truth mask on that visit's scanner grid, and the known truth."""

    phantom: Phantom
    study_date: datetime.date
    true_volume_cm3: float  # continuous lesion volume (anatomy frame) at this visit, cm³; see Lesion.volume_cm3
    motion_to_baseline: npt.NDArray[np.float64]  # 4x4 LPS: this visit's patient-space mm -> baseline patient-space mm
    volume_factor: float  # true_volume_cm3 / lesion volume at factor 1
    rotation_deg: float  # drawn head rotation relative to baseline (0 for the baseline)
    translation_mm: float  # drawn displacement of the head centre relative to baseline (0 for the baseline)

    @property
    def apparent_volume_cm3(self) -> float:
        """Lesion volume as it appears in this visit's scanner space (differs from the true one only by scaling)."""
        return self.true_volume_cm3 / abs(float(np.linalg.det(self.motion_to_baseline[:3, :3])))


@dataclass(frozen=True)
class LongitudinalCase:
    """One patient (brain + lesion) seen at several visits, in chronological order."""

    seed: int
    anatomy: str
    patient_id: str
    lesion: Lesion
    time_points: tuple[TimePoint, ...]

    def true_percent_change(self, i: int, j: int) -> float:
        """``100 (V_j - V_i) / V_i`` of the true continuous volumes, percent."""
        a, b = self.time_points[i].true_volume_cm3, self.time_points[j].true_volume_cm3
        return 100.0 * (b - a) / a

    def true_category(self, i: int, j: int, thresholds: ChangeThresholds | None = None) -> Category:
        """OncoFlow's flag for the true change from visit ``i`` to visit ``j``."""
        return (thresholds or ChangeThresholds()).category(self.true_percent_change(i, j))

    @property
    def head_centre_mm(self) -> npt.NDArray[np.float64]:
        """Centre of the head motion (baseline patient space, mm): the mean of the deep brain points."""
        return _load_brain(self.anatomy).brain_points_mm.mean(axis=0)  # type: ignore[arg-type]


def _stream(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


@lru_cache(maxsize=2)
def _room_mm(name: Anatomy) -> npt.NDArray[np.float64]:
    """Distance (mm) from each of the brain's deep points to the outside of the hole-filled brain."""
    brain = _load_brain(name)
    step = 2
    spacing = np.linalg.norm(np.linalg.inv(brain.world_to_voxel)[:3, :3], axis=0) * step
    inside = ndimage.binary_fill_holes(brain.t1[::step, ::step, ::step] > 0.15)
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)
    index = (brain.world_to_voxel[:3, :3] @ brain.brain_points_mm.T).T + brain.world_to_voxel[:3, 3]
    index = np.clip(np.rint(index / step).astype(int), 0, np.asarray(depth.shape) - 1)
    return depth[index[:, 0], index[:, 1], index[:, 2]] - step * float(spacing.max()) / 2.0


def _draw_lesion_shape(rng: np.random.Generator, radius_range_mm: tuple[float, float] = (9.0, 20.0)
                       ) -> tuple[float, Lesion]:
    """A drawn radius (mm) and the lesion's shape at radius 1 mm (centre at the origin, semi-axes = aspect)."""
    radius_mm = rng.uniform(*radius_range_mm)
    aspect = rng.uniform(0.75, 1.3, size=3)
    rotation = random_rotation(rng, 180.0)
    frequencies = np.stack([rng.normal(size=3) * rng.uniform(1.0, 3.0) for _ in range(_N_LOBES)])
    amplitudes = rng.uniform(0.05, 0.15, size=_N_LOBES)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=_N_LOBES)
    return radius_mm, Lesion(np.zeros(3), aspect, rotation, frequencies, amplitudes, phases)


def _sized(unit: Lesion, radius_mm: float, centre_mm: npt.NDArray[np.float64]) -> Lesion:
    """Lesion shape ``unit`` (see :func:`_draw_lesion_shape`) scaled to ``radius_mm``, centred at ``centre_mm``."""
    return replace(unit, centre_mm=centre_mm.copy(), semi_axes_mm=radius_mm * unit.semi_axes_mm)


def _eligible_centres(
    room: npt.NDArray[np.float64], extent_mm: float, brain_points: npt.NDArray[np.float64] | None = None,
    keep_away: Sequence[tuple[npt.NDArray[np.float64], float]] = (),
) -> npt.NDArray[np.intp]:
    """Indices of the deep brain points where a lesion of ``extent_mm`` stays ``_ROOM_MARGIN_MM`` inside the brain
    and at least ``distance_mm`` from each ``(centre_mm, distance_mm)`` of ``keep_away``."""
    ok = room >= extent_mm + _ROOM_MARGIN_MM
    for centre_mm, distance_mm in keep_away:
        ok &= np.linalg.norm(brain_points - centre_mm, axis=1) >= distance_mm  # type: ignore[operator]
    return np.flatnonzero(ok)


def _draw_lesion(rng: np.random.Generator, brain: _Brain, room: npt.NDArray[np.float64], max_factor: float) -> Lesion:
    """A lesion whose surface stays ``_ROOM_MARGIN_MM`` inside the brain at volume factor ``max_factor``."""
    radius_mm, unit = _draw_lesion_shape(rng)
    extent_per_mm = unit.max_extent_mm(max_factor)  # extent for radius 1 mm
    radius_mm = min(radius_mm, (float(room.max()) - _ROOM_MARGIN_MM) / extent_per_mm)
    eligible = _eligible_centres(room, radius_mm * extent_per_mm)
    return _sized(unit, radius_mm, brain.brain_points_mm[eligible[rng.integers(len(eligible))]])


def _draw_factor(rng: np.random.Generator, category: str) -> float:
    ranges = _FACTOR_RANGES[category]
    low, high = ranges[int(rng.integers(len(ranges)))]
    return float(rng.uniform(low, high))


def _volume_factors(
    rng: np.random.Generator, n: int, volume_factors: Sequence[float] | None, categories: Sequence[str] | None
) -> list[float]:
    if volume_factors is not None:
        factors = [float(f) for f in volume_factors]
        if len(factors) == n - 1:
            factors = [1.0, *factors]
        if len(factors) != n or min(factors) <= 0:
            raise ValueError(f"need {n} (or {n - 1}) positive volume factors, got {volume_factors}")
        return factors
    if categories is not None and len(categories) != n - 1:
        raise ValueError(f"need {n - 1} categories (one per follow-up), got {categories}")
    factors = [1.0]
    for t in range(1, n):
        for _ in range(100):
            category = categories[t - 1] if categories is not None else CATEGORIES[int(rng.integers(4))]
            if category not in _FACTOR_RANGES:
                raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
            factor = factors[-1] * _draw_factor(rng, category)
            if _MIN_CUMULATIVE_FACTOR <= factor <= _MAX_CUMULATIVE_FACTOR:
                break
        factors.append(factor)
    return factors


def _motion(
    rng: np.random.Generator, centre: npt.NDArray[np.float64], max_rotation_deg: float, max_translation_mm: float,
    max_scale_fraction: float,
) -> tuple[npt.NDArray[np.float64], float, float]:
    """Head motion ``H`` (baseline patient space -> follow-up patient space), its angle (deg) and shift (mm)."""
    rotation = random_rotation(rng, max_rotation_deg)
    direction = rng.normal(size=3)
    translation = direction / np.linalg.norm(direction) * rng.uniform(0.0, max_translation_mm)
    scale = 1.0 + rng.uniform(-max_scale_fraction, max_scale_fraction, size=3)
    rigid = np.eye(4)
    rigid[:3, :3] = rotation
    rigid[:3, 3] = centre - rotation @ centre + translation  # rotate about the head centre, then shift
    motion = np.diag([*scale, 1.0]) @ rigid  # gradient miscalibration along the scanner axes
    angle = float(np.rad2deg(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))
    return motion, angle, float(np.linalg.norm(translation))


def _visit_grid(
    rng: np.random.Generator,
    brain_points: npt.NDArray[np.float64],
    orientation: str,
    shape: tuple[int, int, int] | None,
    spacing_mm: tuple[float, float, float] | None,
    margin_mm: float = 50.0,
) -> tuple[tuple[int, int, int], Volume]:
    """A scanner grid covering ``brain_points`` (this visit's patient space) and ``margin_mm`` (see
    :func:`~oncoflow.phantoms.scanner_grid.scanner_grid`); returns its shape and an empty Volume."""
    if orientation == "oblique":
        base = "axial"
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = np.deg2rad(rng.uniform(15.0, 30.0))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        tilt = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    elif orientation in BASE_ORIENTATIONS:
        base, tilt = orientation, np.eye(3)
    else:
        raise ValueError(f"unknown orientation {orientation!r}; expected one of {ORIENTATIONS}")
    row, col = (tilt @ np.asarray(v) for v in BASE_ORIENTATIONS[base])
    return scanner_grid(rng, brain_points, row, col, shape, spacing_mm, (1.5, 2.5), (2.0, 3.5), margin_mm)


@dataclass(frozen=True)
class _Appearance:
    """Lesion appearance shared by all visits of a patient."""

    core_fraction: float
    oedema_extent: float
    oedema_darkening: float
    rim_level: float
    core_level: float


def _draw_appearance(rng: np.random.Generator) -> _Appearance:
    core_fraction = rng.uniform(0.3, 0.65) if rng.random() < 0.7 else 0.0
    return _Appearance(core_fraction, rng.uniform(1.2, 2.0), rng.uniform(0.15, 0.35), rng.uniform(1.3, 1.9),
                       rng.uniform(0.1, 0.35))


def _lesion_field(
    points_mm: npt.NDArray[np.float64], lesions: Sequence[tuple[Lesion, float]]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """Normalised distance to the nearest present lesion (``inf`` where none is present) at LPS points ``(3, ...)``,
    and the truth labels there: ``k`` inside ``lesions[k - 1]``, 0 outside every lesion.

    ``lesions`` are ``(lesion, volume factor)`` pairs; a factor of 0 means the lesion is absent.
    """
    distance = np.full(points_mm.shape[1:], np.inf)
    labels = np.zeros(points_mm.shape[1:], np.uint8)
    for label, (lesion, factor) in enumerate(lesions, start=1):
        if factor > 0:
            own = lesion.distance(points_mm, factor)
            labels[(own < 1.0) & (own < distance)] = label
            distance = np.minimum(distance, own)
    return distance, labels


def _render(
    rng: np.random.Generator, name: Anatomy, head: bool, lesions: Sequence[tuple[Lesion, float]], look: _Appearance,
    geometry: Volume, shape: tuple[int, int, int], to_anatomy: npt.NDArray[np.float64],
) -> tuple[Volume, npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Render one visit (the image model of :func:`oncoflow.phantoms.tumour_phantom.make_phantom`) with every
    present lesion of ``lesions`` (see :func:`_lesion_field`): the image, its truth labels and the anatomy's brain
    on the visit's grid."""
    scanner_points = world_points(geometry, shape)
    points = np.tensordot(to_anatomy[:3, :3], scanner_points, axes=1) + to_anatomy[:3, 3, None, None, None]
    image, brain_mask = sample_anatomy(name, points, head)

    distance, labels = _lesion_field(points, lesions)
    del points
    inside = expit((1.0 - distance) / _SOFT)
    core = expit((look.core_fraction - distance) / _SOFT) if look.core_fraction else 0.0
    oedema = (expit((look.oedema_extent - distance) / (2 * _SOFT)) - inside) * brain_mask
    image = image * (1.0 - look.oedema_darkening * oedema)
    image = image * (1.0 - inside) + inside * (look.rim_level * (1.0 + 0.08 * rng.normal(size=shape)))
    image = image * (1.0 - core) + core * look.core_level

    centred = (scanner_points - scanner_points.mean(axis=(1, 2, 3), keepdims=True)) / 100.0
    linear = np.tensordot(rng.normal(scale=0.15, size=3), centred, axes=1)
    bias = np.exp(linear + rng.normal(scale=0.08) * (centred**2).sum(axis=0))
    image = image * bias
    sigma = rng.uniform(0.01, 0.04)
    image = np.sqrt((image + rng.normal(scale=sigma, size=shape)) ** 2 + rng.normal(scale=sigma, size=shape) ** 2)
    image = (image * rng.uniform(350.0, 900.0)).astype(np.float32)
    volume = Volume(image, geometry.spacing_mm, geometry.origin_mm, geometry.row_direction,
                    geometry.column_direction, geometry.slice_direction)
    return volume, labels, brain_mask


def _per_visit(value: object, n: int, is_single: bool, name: str) -> list:
    if value is None or is_single:
        return [value] * n
    values = list(value)  # type: ignore[call-overload]
    if len(values) != n:
        raise ValueError(f"{name}: need one value or {n} values (one per visit), got {len(values)}")
    return values


def _is_triple(value: object) -> bool:
    return isinstance(value, Sequence) and len(value) == 3 and all(isinstance(v, int | float) for v in value)


class ScanOptions(TypedDict, total=False):
    """How a patient's visits are scanned: the keyword arguments every longitudinal case builder shares
    (see :func:`make_longitudinal_case` for their meaning and defaults)."""

    anatomy: Anatomy | None
    max_rotation_deg: float
    max_translation_mm: float
    max_scale_fraction: float
    shape: tuple[int, int, int] | Sequence[tuple[int, int, int] | None] | None
    spacing_mm: tuple[float, float, float] | Sequence[tuple[float, float, float] | None] | None
    orientations: Sequence[Orientation] | None
    days_between: tuple[int, int]
    baseline_date: datetime.date | None
    head: bool


@dataclass(frozen=True)
class _Acquisition:
    """How a patient's visits are scanned (:class:`ScanOptions` checked, the rest drawn): everything but the
    lesions and their appearance."""

    anatomy: Anatomy
    head: bool
    shapes: list[tuple[int, int, int] | None]  # one per visit
    spacings: list[tuple[float, float, float] | None]  # one per visit
    orientations: list[str]  # one per visit
    dates: list[datetime.date]  # one per visit
    max_rotation_deg: float
    max_translation_mm: float
    max_scale_fraction: float


def _acquisition(seed: int, keys: tuple[int, ...], case_rng: np.random.Generator, n_time_points: int,
                 options: ScanOptions) -> _Acquisition:
    """Check ``options`` and draw what they leave open: the anatomy from ``case_rng``, the visits' dates and
    orientations from the streams ``(seed, *keys, 2)`` and ``(seed, *keys, 3)``."""
    unknown = set(options) - ScanOptions.__optional_keys__
    if unknown:
        raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
    n = n_time_points
    rotation, translation = options.get("max_rotation_deg", 10.0), options.get("max_translation_mm", 15.0)
    scale = options.get("max_scale_fraction", 0.0)
    if n < 2:
        raise ValueError("a longitudinal case needs at least 2 time points")
    if rotation < 0 or translation < 0 or not 0 <= scale < 0.5:
        raise ValueError("motion limits must be non-negative (scale fraction < 0.5)")
    shape, spacing = options.get("shape"), options.get("spacing_mm")
    shapes = _per_visit(shape, n, _is_triple(shape), "shape")
    spacings = _per_visit(spacing, n, _is_triple(spacing), "spacing_mm")
    name: Anatomy = options.get("anatomy") or ("colin27" if case_rng.random() < 0.5 else "mni152")
    if name not in ANATOMIES:
        raise ValueError(f"unknown anatomy {name!r}")
    orientations = _visit_orientations(_stream(seed, *keys, 3), n, options.get("orientations"))
    dates = _visit_dates(_stream(seed, *keys, 2), n, options.get("days_between", (60, 120)),
                         options.get("baseline_date"))
    return _Acquisition(name, options.get("head", True), shapes, spacings, orientations, dates, rotation,
                        translation, scale)


def _visit_dates(rng: np.random.Generator, n: int, days_between: tuple[int, int],
                 baseline_date: datetime.date | None) -> list[datetime.date]:
    start = baseline_date or datetime.date(2024, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 730)))
    dates = [start]
    for _ in range(1, n):
        dates.append(dates[-1] + datetime.timedelta(days=int(rng.integers(days_between[0], days_between[1] + 1))))
    return dates


def _visit_orientations(rng: np.random.Generator, n: int, orientations: Sequence[str] | None) -> list[str]:
    if orientations is None:
        return ["axial"] + [ORIENTATIONS[int(rng.integers(4))] for _ in range(1, n)]
    if len(orientations) != n:
        raise ValueError(f"need {n} orientations, got {len(orientations)}")
    return list(orientations)


@dataclass(frozen=True)
class _Scan:
    """One rendered visit and its head motion."""

    phantom: Phantom  # tumour_mask: every present lesion (0/1)
    labels: npt.NDArray[np.uint8]  # 0 background, k = lesion k
    motion_to_baseline: npt.NDArray[np.float64]
    rotation_deg: float
    translation_mm: float


def _scan_visit(
    rng: np.random.Generator, seed: int, t: int, acquisition: _Acquisition, lesions: Sequence[tuple[Lesion, float]],
    look: _Appearance,
) -> _Scan:
    """Visit ``t``: head motion (none at the baseline), the visit's scanner grid, and the rendered image with
    every present lesion of ``lesions`` (``(lesion, volume factor)`` pairs, factor 0 = absent)."""
    brain = _load_brain(acquisition.anatomy)
    if t == 0:
        motion, angle, shift = np.eye(4), 0.0, 0.0
    else:
        motion, angle, shift = _motion(rng, brain.brain_points_mm.mean(axis=0), acquisition.max_rotation_deg,
                                       acquisition.max_translation_mm, acquisition.max_scale_fraction)
    moved_points = brain.brain_points_mm @ motion[:3, :3].T + motion[:3, 3]
    grid_shape, geometry = _visit_grid(rng, moved_points, acquisition.orientations[t], acquisition.shapes[t],
                                       acquisition.spacings[t], margin_mm=110.0 if acquisition.head else 50.0)
    to_baseline = np.linalg.inv(motion)
    name, head = acquisition.anatomy, acquisition.head
    volume, labels, brain_mask = _render(rng, name, head, lesions, look, geometry, grid_shape, to_baseline)
    phantom = Phantom(volume=volume, tumour_mask=(labels > 0).astype(np.uint8), seed=seed, anatomy=name,
                      brain_mask=brain_mask.astype(np.uint8) if head else None)
    return _Scan(phantom, labels, to_baseline, angle, shift)


def make_longitudinal_case(
    seed: int,
    n_time_points: int = 2,
    *,
    volume_factors: Sequence[float] | None = None,
    categories: Sequence[Category] | None = None,
    **scanning: Unpack[ScanOptions],
) -> LongitudinalCase:
    """A patient scanned ``n_time_points`` times; every property not given is drawn from ``seed``.

    Args:
        volume_factors: true lesion volume of each visit relative to the drawn lesion (``n_time_points``
            values, or ``n_time_points - 1`` follow-up values with the baseline at 1.0).
        categories: without ``volume_factors``, the change category of each follow-up relative to the
            previous visit (``"progression"``, ``"response"``, ``"stable"``, ``"minor change"``); drawn if omitted.
            Factors drawn per category: progression x1.35-2.5, response x0.4-0.7, stable x0.97-1.03,
            minor x0.8-0.92 or x1.08-1.2 (cumulative factor kept within 0.2-3.0).

    Scanning options (:class:`ScanOptions`):
        anatomy: ``"colin27"`` or ``"mni152"``.
        max_rotation_deg: largest head rotation between a follow-up and the baseline (degrees, random axis;
            default 10).
        max_translation_mm: largest displacement of the head centre (mm, random direction; default 15).
        max_scale_fraction: largest per-axis scaling error along the scanner axes (0.02 = 2 %; default 0 = rigid).
        shape: ``(slices, rows, columns)`` for every visit, or one per visit (``None`` entries drawn);
            with no spacing the voxel size covers the head.
        spacing_mm: ``(slice, row, column)`` voxel size in mm for every visit, or one per visit. Drawn
            (slice 2-3.5 mm, in-plane 1.5-2.5 mm) when neither shape nor spacing is given.
        orientations: one per visit, ``"axial"``/``"coronal"``/``"sagittal"`` (exact) or ``"oblique"``
            (axial tilted 15-30° about a random axis). Default: baseline axial, follow-ups drawn.
        days_between: inclusive range of days between consecutive visits (default 60-120).
        baseline_date: drawn in 2024-2025 if omitted.
        head: the whole head, as scanners send it (default; ``False``: the skull-stripped brain); each visit's
            phantom carries the anatomy's brain in ``brain_mask``.
    """
    n = n_time_points
    case_rng = _stream(seed, 0)
    acquisition = _acquisition(seed, (), case_rng, n, scanning)
    name = acquisition.anatomy
    factors = _volume_factors(_stream(seed, 1), n, volume_factors, categories)
    lesion = _draw_lesion(case_rng, _load_brain(name), _room_mm(name), max(factors))
    look = _draw_appearance(case_rng)

    time_points = []
    for t in range(n):
        scan = _scan_visit(_stream(seed, 10 + t), seed, t, acquisition, [(lesion, factors[t])], look)
        time_points.append(TimePoint(
            phantom=scan.phantom,
            study_date=acquisition.dates[t],
            true_volume_cm3=lesion.volume_cm3(factors[t]),
            motion_to_baseline=scan.motion_to_baseline,
            volume_factor=factors[t],
            rotation_deg=scan.rotation_deg,
            translation_mm=scan.translation_mm,
        ))
    return LongitudinalCase(seed=seed, anatomy=name, patient_id=f"ONCO-LONG-{seed:05d}", lesion=lesion,
                            time_points=tuple(time_points))


def make_validation_set(n_pairs: int = 40, start_seed: int = 0, **options: object) -> list[LongitudinalCase]:
    """Baseline/follow-up pairs balanced over the 4 change categories and the 2 anatomies.

    Case ``k`` (seed ``start_seed + k``) has category ``CATEGORIES[k % 4]`` and anatomy
    ``ANATOMIES[(k // 4) % 2]``, so every block of 8 covers each category in each anatomy.
    ``options`` go to :func:`make_longitudinal_case` (e.g. ``spacing_mm``, ``max_scale_fraction``).
    """
    return [
        make_longitudinal_case(
            start_seed + k, 2, anatomy=ANATOMIES[(k // 4) % 2], categories=[CATEGORIES[k % 4]],
            **options,  # type: ignore[arg-type]
        )
        for k in range(n_pairs)
    ]


def landmarks_mm(case: LongitudinalCase, n: int = 20) -> npt.NDArray[np.float64]:
    """``(n, 3)`` baseline patient-space LPS points spread through the deep brain (mm), reproducible per seed.

    Farthest-point sampling of the brain's deep points from a seeded start. For a registration ``T``
    estimated from follow-up ``t`` to the baseline, the target error of landmark ``x`` is
    ``|T(y) - x|`` with ``y = inv(time_points[t].motion_to_baseline) @ x`` (``x`` seen at follow-up ``t``).
    """
    points = _load_brain(case.anatomy).brain_points_mm  # type: ignore[arg-type]
    chosen = [int(_stream(case.seed, 4).integers(len(points)))]
    nearest = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(1, n):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return points[chosen].copy()


def study_info_kwargs(case: LongitudinalCase, index: int) -> dict[str, str]:
    """Keyword arguments for :class:`oncoflow.phantoms.phantom_dicom.StudyInfo` of visit ``index``.

    Gives each visit its own accession number (hence its own StudyInstanceUID, which
    ``phantom_dicom`` derives from patient ID + accession number), the case's PatientID and the
    visit's StudyDate (``YYYYMMDD``).
    """
    return _visit_study_info(case.patient_id, f"Phantom^Longitudinal{case.seed}", f"L{case.seed:05d}",
                             case.time_points[index].study_date, index)


def _visit_study_info(patient_id: str, patient_name: str, accession_prefix: str, study_date: datetime.date,
                      index: int) -> dict[str, str]:
    """StudyInfo keyword arguments of visit ``index`` (accession number ``<prefix>V<index + 1>``)."""
    return {
        "patient_id": patient_id,
        "patient_name": patient_name,
        "study_date": study_date.strftime("%Y%m%d"),
        "study_id": str(index + 1),
        "accession_number": f"{accession_prefix}V{index + 1}",
    }
