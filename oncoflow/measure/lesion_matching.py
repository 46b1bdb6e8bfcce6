"""Which lesion is which between a baseline (or prior) time point and a follow-up, and their tracking identifiers.

The caller registers the time points first: it gives both lesion label images on one grid (the follow-up's
lesions resampled, nearest neighbour, into the baseline's space) and/or the lesions' centroids in one patient
space (:class:`TimePointLesions`). A lesion is named by its label value (``LesionInstance.label``).

Rules (:func:`match_lesions`, thresholds in :class:`MatchingCriteria`):

1. **Overlap.** A pair (baseline a, follow-up f) is a candidate when its overlap (Dice, or IoU) is at least
   ``min_overlap`` or when they are *in contact*: ``|a ∩ f| >= min_contact_fraction x min(|a|, |f|)`` (a lesion
   that shrank to a small remnant inside its old extent has a small Dice but is in contact). The one-to-one
   matches maximise the summed overlap over the candidates (``scipy.optimize.linear_sum_assignment``, optimal,
   not greedy).
2. **Distance.** Lesions still unmatched and in contact with no lesion of the other time point are matched by
   centroid distance, at most ``max_centroid_distance_mm``, minimising the summed distance among the
   assignments with the most pairs (a lesion that shrank beside where it was).
3. **Events.** The contact graph's edges are the contacts and the overlap matches. A follow-up lesion with two
   or more edges is a **merge** of those baseline lesions; a baseline lesion with two or more edges **splits**
   into those follow-up lesions (lesions listed largest first: baseline, resp. follow-up volume). Unmatched
   follow-up lesions in no event are **new**, unmatched baseline lesions in no event **disappeared**.

Tracking (:func:`carry_identifiers`): identifiers are strings (``"Lesion 3"``); the caller derives UIDs. Each
baseline lesion hands its identifier to one heir: the largest part if it split, else its match, else the
lesion it merged into. A follow-up lesion heir of several takes the identifier of the largest (baseline
volume) and records the others (``merged_ids``); a follow-up lesion heir of none takes the next free number
(after every identifier used so far) and, when it is a split part, records its origin (``split_from``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from oncoflow.measure.lesion_instances import LesionSet, Point
from oncoflow.measure.lesion_metrics import check_affine, to_lps

OverlapMeasure = Literal["dice", "iou"]
EventKind = Literal["matched", "new", "disappeared", "merged", "split"]
TrackStatus = Literal["continued", "merged", "split", "new"]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class TimePointLesions:
    """The lesions of one time point as the matcher sees them, named by label value.

    ``centroids_lps_mm`` and ``volumes_cm3`` have one entry per lesion; ``labels``, when given, is the label
    image on the grid shared with the other time point (its non-zero values are the lesions' names). A lesion
    may be missing from ``labels`` (a small one resampled away onto a coarser grid): it is matched by its
    centroid alone.
    """

    centroids_lps_mm: Mapping[int, Point]
    volumes_cm3: Mapping[int, float]
    labels: npt.NDArray[np.integer] | None = None

    def __post_init__(self) -> None:
        if set(self.centroids_lps_mm) != set(self.volumes_cm3):
            raise ValueError("centroids and volumes name different lesions")
        if self.labels is not None:
            present = {int(v) for v in np.unique(self.labels) if v != 0}
            if not present <= set(self.centroids_lps_mm):
                raise ValueError(f"the label image holds lesions {sorted(present)}, "
                                 f"the centroids {sorted(self.centroids_lps_mm)}")

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.centroids_lps_mm))

    @classmethod
    def from_label_image(cls, labels: npt.NDArray[np.integer], affine_lps: npt.ArrayLike) -> TimePointLesions:
        """Centroids (LPS mm) and volumes (cm³) of each non-zero label of ``labels`` on the grid ``affine_lps``."""
        affine = check_affine(affine_lps)
        labels = np.asarray(labels)
        voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
        flat = labels.ravel()
        ids = [int(v) for v in np.unique(flat) if v != 0]
        index = np.nonzero(flat)[0]
        coords = np.stack(np.unravel_index(index, labels.shape), axis=1).astype(np.float64)
        values = flat[index]
        centroids: dict[int, Point] = {}
        volumes: dict[int, float] = {}
        for i in ids:
            voxels = coords[values == i]
            x, y, z = to_lps(voxels.mean(axis=0, keepdims=True), affine)[0]
            centroids[i] = (float(x), float(y), float(z))
            volumes[i] = len(voxels) * voxel_mm3 / 1000.0
        return cls(centroids, volumes, labels)

    @classmethod
    def from_lesion_set(cls, lesions: LesionSet, *, with_labels: bool = True) -> TimePointLesions:
        """A :class:`LesionSet`'s lesions (its label image only when ``with_labels``)."""
        return cls(
            {lesion.label: lesion.centroid_lps_mm for lesion in lesions.lesions},
            {lesion.label: lesion.volume_cm3 for lesion in lesions.lesions},
            lesions.labels if with_labels else None,
        )


@dataclass(frozen=True)
class MatchingCriteria:
    overlap_measure: OverlapMeasure = "dice"
    min_overlap: float = 0.1
    min_contact_fraction: float = 0.25
    max_centroid_distance_mm: float = 15.0


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LesionMatch:
    """One baseline lesion and its follow-up; ``overlap`` is the criteria's measure (0 without label images)."""

    baseline: int
    followup: int
    method: Literal["overlap", "distance"]
    overlap: float
    centroid_distance_mm: float


@dataclass(frozen=True)
class LesionMerge:
    followup: int
    baselines: tuple[int, ...]  # largest (baseline volume) first


@dataclass(frozen=True)
class LesionSplit:
    baseline: int
    followups: tuple[int, ...]  # largest (follow-up volume) first


@dataclass(frozen=True)
class LesionEvent:
    kind: EventKind
    baselines: tuple[int, ...]
    followups: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class LesionCorrespondence:
    """Matches and events between two time points; ``overlap`` is the measure's matrix (rows
    ``baseline_ids``, columns ``followup_ids``; zeros without label images)."""

    baseline_ids: tuple[int, ...]
    followup_ids: tuple[int, ...]
    matches: tuple[LesionMatch, ...]
    new: tuple[int, ...]
    disappeared: tuple[int, ...]
    merges: tuple[LesionMerge, ...]
    splits: tuple[LesionSplit, ...]
    baseline_volumes_cm3: Mapping[int, float]
    followup_volumes_cm3: Mapping[int, float]
    overlap: npt.NDArray[np.float64]

    def match_of_baseline(self, baseline: int) -> LesionMatch | None:
        return next((m for m in self.matches if m.baseline == baseline), None)

    def match_of_followup(self, followup: int) -> LesionMatch | None:
        return next((m for m in self.matches if m.followup == followup), None)

    def events(self) -> tuple[LesionEvent, ...]:
        """Every match, new and disappeared lesion, merge and split as one list."""
        return (
            *(LesionEvent("matched", (m.baseline,), (m.followup,)) for m in self.matches),
            *(LesionEvent("new", (), (f,)) for f in self.new),
            *(LesionEvent("disappeared", (b,), ()) for b in self.disappeared),
            *(LesionEvent("merged", m.baselines, (m.followup,)) for m in self.merges),
            *(LesionEvent("split", (s.baseline,), s.followups) for s in self.splits),
        )


# --------------------------------------------------------------------------- matching


def _intersections(
    baseline: npt.NDArray[np.integer], followup: npt.NDArray[np.integer], b_ids: tuple[int, ...],
    f_ids: tuple[int, ...],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """|a ∩ f| matrix and voxel counts |a|, |f| on the shared grid."""
    if baseline.shape != followup.shape:
        raise ValueError(f"label images differ in shape: {baseline.shape} and {followup.shape}")
    b_index = {v: i for i, v in enumerate(b_ids)}
    f_index = {v: i for i, v in enumerate(f_ids)}
    both = (baseline != 0) & (followup != 0)
    pairs, counts = np.unique(np.stack([baseline[both], followup[both]]), axis=1, return_counts=True)
    inter = np.zeros((len(b_ids), len(f_ids)))
    for (b, f), count in zip(pairs.T, counts, strict=True):
        inter[b_index[int(b)], f_index[int(f)]] = count
    b_values, b_counts = np.unique(baseline[baseline != 0], return_counts=True)
    f_values, f_counts = np.unique(followup[followup != 0], return_counts=True)
    size_b = np.zeros(len(b_ids))
    size_f = np.zeros(len(f_ids))
    size_b[[b_index[int(v)] for v in b_values]] = b_counts
    size_f[[f_index[int(v)] for v in f_values]] = f_counts
    return inter, size_b, size_f


def _assign(score: npt.NDArray[np.float64], allowed: npt.NDArray[np.bool_], maximise: bool) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs among ``allowed``: the largest summed score (``maximise``), or the most pairs
    and among those the smallest summed score."""
    if not allowed.any():
        return []
    if maximise:  # a pair left out scores 0, so the best sum never takes a pair it could leave out
        cost = np.where(allowed, -score, 0.0)
    else:
        cost = np.where(allowed, score, 1.0 + 2.0 * float(np.abs(score[allowed]).sum()))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def match_lesions(
    baseline: TimePointLesions, followup: TimePointLesions, criteria: MatchingCriteria = MatchingCriteria()
) -> LesionCorrespondence:
    """Matches, new and disappeared lesions, merges and splits from ``baseline`` to ``followup`` (module docstring).

    With both label images the overlap rules apply; without them only the centroid distance (no merges or
    splits can be seen).
    """
    b_ids, f_ids = baseline.ids, followup.ids
    nb, nf = len(b_ids), len(f_ids)
    cb = np.array([baseline.centroids_lps_mm[i] for i in b_ids], dtype=np.float64).reshape(nb, 3)
    cf = np.array([followup.centroids_lps_mm[i] for i in f_ids], dtype=np.float64).reshape(nf, 3)
    distance = np.sqrt(((cb[:, None, :] - cf[None, :, :]) ** 2).sum(axis=-1))
    overlap = np.zeros((nb, nf))
    contact = np.zeros((nb, nf), dtype=bool)
    matches: dict[int, tuple[int, Literal["overlap", "distance"]]] = {}  # baseline row -> (follow-up column, how)
    if baseline.labels is not None and followup.labels is not None and nb and nf:
        inter, size_b, size_f = _intersections(np.asarray(baseline.labels), np.asarray(followup.labels), b_ids, f_ids)
        total = size_b[:, None] + size_f[None, :]
        overlap = 2 * inter / total if criteria.overlap_measure == "dice" else inter / (total - inter)
        contact = (inter > 0) & (inter >= criteria.min_contact_fraction * np.minimum.outer(size_b, size_f))
        candidates = (inter > 0) & ((overlap >= criteria.min_overlap) | contact)
        for r, c in _assign(overlap, candidates, maximise=True):
            matches[r] = (c, "overlap")
    edges = contact.copy()
    for r, (c, _) in matches.items():
        edges[r, c] = True
    free_b = ~edges.any(axis=1)
    free_f = ~edges.any(axis=0)
    near = (distance <= criteria.max_centroid_distance_mm) & free_b[:, None] & free_f[None, :]
    for r, c in _assign(distance, near, maximise=False):
        matches[r] = (c, "distance")

    b_volume = {i: float(baseline.volumes_cm3[i]) for i in b_ids}
    f_volume = {i: float(followup.volumes_cm3[i]) for i in f_ids}
    merges = tuple(
        LesionMerge(f_ids[c], tuple(sorted((b_ids[r] for r in np.flatnonzero(edges[:, c])),
                                           key=lambda b: (-b_volume[b], b))))
        for c in range(nf) if edges[:, c].sum() >= 2
    )
    splits = tuple(
        LesionSplit(b_ids[r], tuple(sorted((f_ids[c] for c in np.flatnonzero(edges[r])),
                                           key=lambda f: (-f_volume[f], f))))
        for r in range(nb) if edges[r].sum() >= 2
    )
    in_event_b = {b for m in merges for b in m.baselines} | {s.baseline for s in splits}
    in_event_f = {m.followup for m in merges} | {f for s in splits for f in s.followups}
    matched_f = {c for c, _ in matches.values()}
    return LesionCorrespondence(
        baseline_ids=b_ids,
        followup_ids=f_ids,
        matches=tuple(
            LesionMatch(b_ids[r], f_ids[c], method, float(overlap[r, c]), float(distance[r, c]))
            for r, (c, method) in sorted(matches.items())
        ),
        new=tuple(f_ids[c] for c in range(nf) if c not in matched_f and f_ids[c] not in in_event_f),
        disappeared=tuple(b_ids[r] for r in range(nb) if r not in matches and b_ids[r] not in in_event_b),
        merges=merges,
        splits=splits,
        baseline_volumes_cm3=b_volume,
        followup_volumes_cm3=f_volume,
        overlap=np.asarray(overlap, dtype=np.float64),
    )


def match_lesion_sets(
    baseline: LesionSet, followup: LesionSet, criteria: MatchingCriteria = MatchingCriteria()
) -> LesionCorrespondence:
    """:func:`match_lesions` for two :class:`LesionSet` on one grid (the follow-up's resampled beforehand)."""
    if baseline.labels.shape != followup.labels.shape or not np.allclose(baseline.affine_lps, followup.affine_lps,
                                                                          atol=1e-4):
        raise ValueError("the two lesion sets are not on one grid: resample the follow-up first")
    return match_lesions(TimePointLesions.from_lesion_set(baseline), TimePointLesions.from_lesion_set(followup),
                         criteria)


# --------------------------------------------------------------------------- tracking identifiers


@dataclass(frozen=True)
class TrackedLesion:
    """A follow-up lesion's identifier: ``continued`` (one predecessor's), ``merged`` (the largest of several,
    the others in ``merged_ids``), ``split`` (a new identifier for a part of ``split_from``) or ``new``."""

    followup: int
    tracking_id: str
    status: TrackStatus
    merged_ids: tuple[str, ...] = ()
    split_from: str | None = None


@dataclass(frozen=True)
class TrackingUpdate:
    lesions: tuple[TrackedLesion, ...]  # by follow-up label
    ended_ids: tuple[str, ...]  # baseline identifiers carried on by no lesion (disappeared or merged)

    @property
    def ids(self) -> dict[int, str]:
        """Follow-up label -> tracking identifier."""
        return {lesion.followup: lesion.tracking_id for lesion in self.lesions}


def _number(identifier: str, prefix: str) -> int | None:
    found = re.fullmatch(re.escape(prefix) + r"(\d+)", identifier)
    return int(found.group(1)) if found else None


def initial_identifiers(lesion_ids: Iterable[int], prefix: str = "Lesion ") -> dict[int, str]:
    """``"Lesion 1"``, ``"Lesion 2"``, ... for the first time point's lesions in the order given."""
    return {lesion: f"{prefix}{n}" for n, lesion in enumerate(lesion_ids, start=1)}


def carry_identifiers(
    correspondence: LesionCorrespondence,
    baseline_ids: Mapping[int, str],
    *,
    used_ids: Iterable[str] = (),
    prefix: str = "Lesion ",
) -> TrackingUpdate:
    """The follow-up lesions' tracking identifiers from the baseline's (module docstring).

    ``baseline_ids``: baseline label -> identifier, for every baseline lesion. ``used_ids``: every identifier
    given so far in this patient (of lesions gone since too), so that a new lesion never takes an old number.
    New identifiers are numbered in follow-up label order.
    """
    missing = set(correspondence.baseline_ids) - set(baseline_ids)
    if missing:
        raise ValueError(f"baseline lesions {sorted(missing)} have no identifier")
    b_volume = correspondence.baseline_volumes_cm3
    heir: dict[int, int] = {}
    for split in correspondence.splits:
        heir[split.baseline] = split.followups[0]
    for match in correspondence.matches:
        heir.setdefault(match.baseline, match.followup)
    for merge in correspondence.merges:
        for b in merge.baselines:
            heir.setdefault(b, merge.followup)
    numbers = [_number(i, prefix) for i in (*used_ids, *baseline_ids.values())]
    next_number = max((n for n in numbers if n is not None), default=0) + 1
    origin = {f: s.baseline for s in correspondence.splits for f in s.followups}
    for merge in correspondence.merges:
        origin.setdefault(merge.followup, merge.baselines[0])
    lesions: list[TrackedLesion] = []
    for f in correspondence.followup_ids:
        predecessors = sorted((b for b, h in heir.items() if h == f), key=lambda b: (-b_volume[b], b))
        if predecessors:
            lesions.append(TrackedLesion(
                followup=f,
                tracking_id=baseline_ids[predecessors[0]],
                status="merged" if len(predecessors) > 1 else "continued",
                merged_ids=tuple(baseline_ids[b] for b in predecessors[1:]),
            ))
            continue
        identifier = f"{prefix}{next_number}"
        next_number += 1
        if f in origin:
            lesions.append(TrackedLesion(f, identifier, "split", split_from=baseline_ids[origin[f]]))
        else:
            lesions.append(TrackedLesion(f, identifier, "new"))
    carried = {lesion.tracking_id for lesion in lesions}
    ended = tuple(baseline_ids[b] for b in correspondence.baseline_ids if baseline_ids[b] not in carried)
    return TrackingUpdate(tuple(lesions), ended)
