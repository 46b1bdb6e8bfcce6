"""Multi-lesion longitudinal phantoms: one patient, 1-4 lesions, each with its own course over the visits.

The generative extension of :mod:`oncoflow.phantoms.longitudinal_phantom` for lesion-by-lesion response
assessment (RANO 2.0): the same head, shape model (:class:`Lesion`), appearance, head motion, scanner grids,
bias and noise, but a patient carries up to :data:`MAX_LESIONS` lesions. Lesion ``k`` (1-based, in the order
of ``MultiLesionCase.lesions``) has a volume factor per visit; a factor of 0 means the lesion is absent at that
visit (not there yet: a *new* lesion, or gone: a lesion that disappeared).

Placement. Every lesion stays ``_ROOM_MARGIN_MM`` inside the (hole-filled) brain at its largest factor, and
every two lesions are at least ``gap_mm`` apart surface to surface at their largest factors (bounds from
:meth:`Lesion.max_extent_mm`), so lesions never touch nor merge under a few millimetres of fragment joining.

Truth per visit. ``MultiLesionTimePoint.lesion_labels`` is 0 outside every lesion and ``k`` inside lesion
``k`` (a stable identity across visits); ``lesion_volumes_cm3[k - 1]`` is lesion ``k``'s continuous volume
(:meth:`Lesion.volume_cm3`, 0 when absent); the image shows every present lesion.

Courses are given per lesion (``lesion_factors``) or built from a named scenario (:data:`SCENARIOS`, see
:func:`scenario_factors`). Everything is drawn from ``numpy`` generators seeded with ``seed``, on streams of
their own (the multi-lesion patient of a seed is not the single-lesion patient of that seed).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Unpack

import numpy as np
import numpy.typing as npt

from oncoflow.phantoms.longitudinal_phantom import (
    _MAX_CUMULATIVE_FACTOR,
    Anatomy,
    Lesion,
    ScanOptions,
    _acquisition,
    _draw_appearance,
    _draw_factor,
    _draw_lesion_shape,
    _eligible_centres,
    _room_mm,
    _scan_visit,
    _sized,
    _stream,
    _visit_study_info,
)
from oncoflow.phantoms.tumour_phantom import Phantom, _load_brain

Scenario = Literal[
    "stable", "new lesion", "disappearing lesion", "complete response", "progression after response",
    "one grows, total stable",
]
SCENARIOS: tuple[Scenario, ...] = (
    "stable", "new lesion", "disappearing lesion", "complete response", "progression after response",
    "one grows, total stable",
)
MAX_LESIONS = 4
DEFAULT_GAP_MM = 12.0  # surface to surface at the largest sizes: well above a 5 mm fragment-join distance
DEFAULT_RADIUS_RANGE_MM = (6.0, 13.0)  # smaller than a single lesion's 9-20 mm, so that four fit in a brain

# Fewest lesions and visits each scenario needs.
_SCENARIO_MIN_LESIONS: dict[str, int] = {
    "stable": 1, "new lesion": 2, "disappearing lesion": 2, "complete response": 1,
    "progression after response": 1, "one grows, total stable": 2,
}
_SCENARIO_MIN_VISITS: dict[str, int] = {scenario: 2 for scenario in SCENARIOS} | {"progression after response": 3}
_STABLE_FACTOR = 0.02  # a stable lesion stays within ±2 % of its baseline (±4.1 % visit to visit)
_NEW_LESION_FACTORS = (0.4, 1.0)  # a new lesion's factor at its first visit
_PLACEMENT_TRIES = 200
_KEY = 100  # first key of this module's random streams (longitudinal_phantom uses 0-3 and 10+)


@dataclass(frozen=True)
class MultiLesionTimePoint:
    """One visit: the image with its truth on that visit's scanner grid, lesion by lesion."""

    phantom: Phantom  # tumour_mask: every present lesion (0/1)
    lesion_labels: npt.NDArray[np.uint8]  # same grid; 0 background, k inside lesion k (case.lesions[k - 1])
    study_date: datetime.date
    lesion_volumes_cm3: tuple[float, ...]  # continuous volume per lesion (anatomy frame), 0.0 when absent
    volume_factors: tuple[float, ...]  # per lesion, relative to the lesion's size at factor 1; 0.0 when absent
    motion_to_baseline: npt.NDArray[np.float64]  # 4x4 LPS: this visit's patient-space mm -> baseline patient-space mm
    rotation_deg: float  # drawn head rotation relative to baseline (0 for the baseline)
    translation_mm: float  # drawn displacement of the head centre relative to baseline (0 for the baseline)

    @property
    def true_volume_cm3(self) -> float:
        """Total continuous volume of the present lesions, cm³."""
        return float(sum(self.lesion_volumes_cm3))

    @property
    def present_labels(self) -> tuple[int, ...]:
        """Labels (1-based) of the lesions present at this visit."""
        return tuple(k for k, factor in enumerate(self.volume_factors, start=1) if factor > 0)

    def lesion_mask(self, label: int) -> npt.NDArray[np.bool_]:
        """Truth mask of lesion ``label`` (1-based) on this visit's grid."""
        return self.lesion_labels == label


@dataclass(frozen=True)
class MultiLesionCase:
    """One patient (brain + 1-4 lesions) seen at several visits, in chronological order."""

    seed: int
    anatomy: str
    patient_id: str
    scenario: str | None  # None for free per-lesion factors
    gap_mm: float  # smallest surface-to-surface distance between two lesions, at their largest sizes
    lesions: tuple[Lesion, ...]  # lesion k is lesions[k - 1]
    time_points: tuple[MultiLesionTimePoint, ...]

    @property
    def n_lesions(self) -> int:
        return len(self.lesions)

    def course(self, label: int) -> tuple[float, ...]:
        """Volume factor of lesion ``label`` (1-based) at each visit (0.0 where absent)."""
        return tuple(tp.volume_factors[label - 1] for tp in self.time_points)

    def first_visit(self, label: int) -> int:
        """Index of the first visit at which lesion ``label`` is present (> 0 for a new lesion)."""
        return next(t for t, factor in enumerate(self.course(label)) if factor > 0)

    def true_percent_change(self, i: int, j: int) -> float:
        """``100 (V_j - V_i) / V_i`` of the true total volumes (all present lesions), percent."""
        a, b = self.time_points[i].true_volume_cm3, self.time_points[j].true_volume_cm3
        return 100.0 * (b - a) / a

    @property
    def head_centre_mm(self) -> npt.NDArray[np.float64]:
        """Centre of the head motion (baseline patient space, mm): the mean of the deep brain points."""
        return _load_brain(self.anatomy).brain_points_mm.mean(axis=0)  # type: ignore[arg-type]


# --- courses ---------------------------------------------------------------------------------------------------


def _cumulative(rng: np.random.Generator, start: float, category: str, steps: int,
                cap: float = _MAX_CUMULATIVE_FACTOR) -> list[float]:
    """``steps`` factors after ``start``, each the previous times a factor drawn for ``category``, kept ``<= cap``."""
    factors = [start]
    for _ in range(steps):
        factors.append(min(factors[-1] * _draw_factor(rng, category), cap))
    return factors[1:]


def _stable_course(rng: np.random.Generator, n: int) -> list[float]:
    return [1.0] + [float(f) for f in rng.uniform(1.0 - _STABLE_FACTOR, 1.0 + _STABLE_FACTOR, size=n - 1)]


def _vanishing_course(rng: np.random.Generator, n: int, gone_at: int) -> list[float]:
    """Present at baseline, responding (x0.4-0.7 a visit) until visit ``gone_at``, absent from then on."""
    return [1.0, *_cumulative(rng, 1.0, "response", gone_at - 1)] + [0.0] * (n - gone_at)


def _new_course(rng: np.random.Generator, n: int, appears_at: int) -> list[float]:
    """Absent before visit ``appears_at``, then a factor in ``_NEW_LESION_FACTORS`` growing x1.35-2.5 a visit."""
    first = float(rng.uniform(*_NEW_LESION_FACTORS))
    return [0.0] * appears_at + [first, *_cumulative(rng, first, "progression", n - appears_at - 1)]


def _nadir_course(rng: np.random.Generator, n: int, nadir: int) -> list[float]:
    """Responding (x0.4-0.7 a visit) down to visit ``nadir``, then progressing (x1.35-2.5 a visit)."""
    down = [1.0, *_cumulative(rng, 1.0, "response", nadir)]
    return down + _cumulative(rng, down[-1], "progression", n - nadir - 1)


def _balanced_courses(rng: np.random.Generator, n: int, volumes: Sequence[float]) -> list[list[float]]:
    """The smallest lesion grows (x1.35-2.5 a visit); the others shrink by a common factor that keeps the total
    volume exactly at its baseline value. The grower is capped so that the others keep at least 20 %."""
    grower = int(np.argmin(volumes))
    others = float(sum(volumes)) - volumes[grower]
    cap = min(_MAX_CUMULATIVE_FACTOR, 1.0 + 0.8 * others / volumes[grower])
    growth = [1.0, *_cumulative(rng, 1.0, "progression", n - 1, cap)]
    shrink = [1.0 - volumes[grower] * (g - 1.0) / others for g in growth]
    return [growth if k == grower else shrink for k in range(len(volumes))]


def scenario_factors(
    scenario: Scenario, n_time_points: int, reference_volumes_cm3: Sequence[float], seed: int | np.random.Generator,
) -> tuple[tuple[float, ...], ...]:
    """Per-lesion volume factors (one tuple per lesion, one factor per visit, 0.0 = absent) of a named scenario.

    ``reference_volumes_cm3`` are the lesions' volumes at factor 1 (their number is the number of lesions; only
    ``"one grows, total stable"`` uses their values). Every lesion present at the baseline has factor 1.0 there.

    * ``"stable"``: every lesion present throughout, within ±2 % of its baseline volume.
    * ``"new lesion"``: the last lesion is absent before a drawn visit ``a >= 1``, present from ``a`` on
      (factor 0.4-1.0, then growing x1.35-2.5 a visit); the others are stable.
    * ``"disappearing lesion"``: one drawn lesion responds and is absent from a drawn visit ``d >= 1`` on;
      the others are stable.
    * ``"complete response"``: every lesion responds (x0.4-0.7 a visit) and is gone by its own drawn visit;
      none is left at the last visit.
    * ``"progression after response"`` (needs 3 visits): every lesion responds down to a drawn nadir visit
      ``m`` (1 <= m <= n - 2), then progresses x1.35-2.5 a visit, so the total at ``m + 1`` is >= 1.35 x nadir.
    * ``"one grows, total stable"``: the smallest lesion grows (first follow-up >= x1.35), the others shrink by a
      common factor; the total volume stays exactly at its baseline value.

    Cumulative factors are kept <= 3.0.
    """
    rng = seed if isinstance(seed, np.random.Generator) else _stream(seed, _KEY, 1)
    n, n_lesions = n_time_points, len(reference_volumes_cm3)
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    if not _SCENARIO_MIN_LESIONS[scenario] <= n_lesions <= MAX_LESIONS:
        raise ValueError(f"{scenario!r} needs {_SCENARIO_MIN_LESIONS[scenario]}-{MAX_LESIONS} lesions, got {n_lesions}")
    if n < _SCENARIO_MIN_VISITS[scenario]:
        raise ValueError(f"{scenario!r} needs at least {_SCENARIO_MIN_VISITS[scenario]} visits, got {n}")
    courses: list[list[float]]
    if scenario == "stable":
        courses = [_stable_course(rng, n) for _ in range(n_lesions)]
    elif scenario == "new lesion":
        appears_at = int(rng.integers(1, n))
        courses = [_stable_course(rng, n) for _ in range(n_lesions - 1)] + [_new_course(rng, n, appears_at)]
    elif scenario == "disappearing lesion":
        vanishing, gone_at = int(rng.integers(n_lesions)), int(rng.integers(1, n))
        courses = [_vanishing_course(rng, n, gone_at) if k == vanishing else _stable_course(rng, n)
                   for k in range(n_lesions)]
    elif scenario == "complete response":
        courses = [_vanishing_course(rng, n, int(rng.integers(1, n))) for _ in range(n_lesions)]
    elif scenario == "progression after response":
        nadir = int(rng.integers(1, n - 1))
        courses = [_nadir_course(rng, n, nadir) for _ in range(n_lesions)]
    else:
        courses = _balanced_courses(rng, n, reference_volumes_cm3)
    return tuple(tuple(float(f) for f in course) for course in courses)


def _check_courses(courses: Sequence[Sequence[float]], n: int) -> tuple[tuple[float, ...], ...]:
    checked = tuple(tuple(float(f) for f in course) for course in courses)
    if not 1 <= len(checked) <= MAX_LESIONS:
        raise ValueError(f"need 1-{MAX_LESIONS} lesions, got {len(checked)}")
    for course in checked:
        if len(course) != n or min(course) < 0 or max(course) <= 0:
            raise ValueError(f"each lesion needs {n} factors >= 0, not all 0; got {course}")
    return checked


# --- lesions ---------------------------------------------------------------------------------------------------


def _place_lesions(
    rng: np.random.Generator, name: Anatomy, shapes: Sequence[tuple[float, Lesion]], max_factors: Sequence[float],
    gap_mm: float,
) -> tuple[Lesion, ...]:
    """Centres for the lesion ``shapes`` (radius, unit shape) such that each stays inside the brain and the
    lesions stay ``gap_mm`` apart, all at their ``max_factors``; larger lesions are placed first, and a
    placement that leaves no room for one lesion is drawn again."""
    points, room = _load_brain(name).brain_points_mm, _room_mm(name)
    extents = [radius * unit.max_extent_mm(factor) for (radius, unit), factor in zip(shapes, max_factors, strict=True)]
    order = np.argsort(extents)[::-1]
    for _ in range(_PLACEMENT_TRIES):
        centres: dict[int, npt.NDArray[np.float64]] = {}
        for k in order:
            keep_away = [(centre, extents[k] + extents[j] + gap_mm) for j, centre in centres.items()]
            eligible = _eligible_centres(room, extents[k], points, keep_away)
            if not len(eligible):
                break
            centres[int(k)] = points[eligible[rng.integers(len(eligible))]]
        else:
            return tuple(_sized(unit, radius, centres[k]) for k, (radius, unit) in enumerate(shapes))
    raise ValueError(f"no room in the {name} brain for {len(shapes)} lesions {gap_mm} mm apart; "
                     "use fewer or smaller lesions, or a smaller gap")


def _lesion_volumes(lesion: Lesion, course: Sequence[float]) -> tuple[float, ...]:
    return tuple(lesion.volume_cm3(factor) if factor > 0 else 0.0 for factor in course)


def make_multi_lesion_case(
    seed: int,
    n_time_points: int = 3,
    *,
    scenario: Scenario | None = None,
    lesion_factors: Sequence[Sequence[float]] | None = None,
    n_lesions: int | None = None,
    gap_mm: float = DEFAULT_GAP_MM,
    radius_range_mm: tuple[float, float] = DEFAULT_RADIUS_RANGE_MM,
    **scanning: Unpack[ScanOptions],
) -> MultiLesionCase:
    """A patient with 1-4 lesions scanned ``n_time_points`` times; every property not given is drawn from ``seed``.

    Args:
        scenario: a named course (:data:`SCENARIOS`, see :func:`scenario_factors`); drawn among those that fit
            ``n_time_points`` (and ``n_lesions``) when neither ``scenario`` nor ``lesion_factors`` is given.
        lesion_factors: instead of a scenario, one sequence of ``n_time_points`` volume factors per lesion
            (0 = absent at that visit; each lesion present at one visit at least).
        n_lesions: with a scenario, the number of lesions (drawn from what the scenario allows, up to 4, if omitted).
        gap_mm: smallest surface-to-surface distance between two lesions at their largest sizes.
        radius_range_mm: range of the drawn lesion radius at factor 1 (before aspect and lobes).

    The scanning options (:class:`~oncoflow.phantoms.longitudinal_phantom.ScanOptions`: anatomy, head motion,
    grids, orientations, dates, ``head``) are those of
    :func:`oncoflow.phantoms.longitudinal_phantom.make_longitudinal_case`, with the same defaults.
    """
    n = n_time_points
    if scenario is not None and lesion_factors is not None:
        raise ValueError("give a scenario or lesion_factors, not both")
    if gap_mm < 0:
        raise ValueError("gap_mm must be non-negative")
    case_rng = _stream(seed, _KEY, 0)
    acquisition = _acquisition(seed, (_KEY,), case_rng, n, scanning)
    name = acquisition.anatomy
    if lesion_factors is None:
        fitting = [s for s in SCENARIOS
                   if _SCENARIO_MIN_VISITS[s] <= n and _SCENARIO_MIN_LESIONS[s] <= (n_lesions or MAX_LESIONS)]
        scenario = scenario or fitting[int(case_rng.integers(len(fitting)))]
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
        n_lesions = n_lesions or int(case_rng.integers(_SCENARIO_MIN_LESIONS[scenario], MAX_LESIONS + 1))
    else:
        n_lesions = len(lesion_factors)
    if not 1 <= n_lesions <= MAX_LESIONS:
        raise ValueError(f"need 1-{MAX_LESIONS} lesions, got {n_lesions}")
    lesion_shapes = [_draw_lesion_shape(case_rng, radius_range_mm) for _ in range(n_lesions)]
    look = _draw_appearance(case_rng)

    if lesion_factors is None:
        assert scenario is not None
        reference = [_sized(unit, radius, np.zeros(3)).volume_cm3() for radius, unit in lesion_shapes]
        courses = scenario_factors(scenario, n, reference, _stream(seed, _KEY, 1))
    else:
        courses = _check_courses(lesion_factors, n)
    lesions = _place_lesions(_stream(seed, _KEY, 4), name, lesion_shapes, [max(c) for c in courses], gap_mm)
    volumes = [_lesion_volumes(lesion, course) for lesion, course in zip(lesions, courses, strict=True)]

    time_points = []
    for t in range(n):
        factors = tuple(course[t] for course in courses)
        scan = _scan_visit(_stream(seed, _KEY, 10 + t), seed, t, acquisition,
                           list(zip(lesions, factors, strict=True)), look)
        time_points.append(MultiLesionTimePoint(
            phantom=scan.phantom,
            lesion_labels=scan.labels,
            study_date=acquisition.dates[t],
            lesion_volumes_cm3=tuple(v[t] for v in volumes),
            volume_factors=factors,
            motion_to_baseline=scan.motion_to_baseline,
            rotation_deg=scan.rotation_deg,
            translation_mm=scan.translation_mm,
        ))
    return MultiLesionCase(seed=seed, anatomy=name, patient_id=f"ONCO-MULTI-{seed:05d}", scenario=scenario,
                           gap_mm=gap_mm, lesions=lesions, time_points=tuple(time_points))


def multi_lesion_study_info_kwargs(case: MultiLesionCase, index: int) -> dict[str, str]:
    """Keyword arguments for :class:`oncoflow.phantoms.phantom_dicom.StudyInfo` of visit ``index`` (as
    :func:`oncoflow.phantoms.longitudinal_phantom.study_info_kwargs`: PatientID ``ONCO-MULTI-<seed>``, an
    accession number per visit, the visit's StudyDate)."""
    return _visit_study_info(case.patient_id, f"Phantom^MultiLesion{case.seed}", f"M{case.seed:05d}",
                             case.time_points[index].study_date, index)
