"""Measurements of a tumour mask and of its change between two time points.

Everything is in physical units taken from the geometry, never in voxel counts:
lengths in mm, volumes in cm³, rates in cm³ per day, changes in percent of the
baseline (time point A).

Conventions:

* Masks are ``(slice, row, column)`` arrays on one voxel grid (see ``volume.py``).
  Geometry comes either as ``spacing_mm`` ``(slice, row, column)`` (surface
  distances, computed in the grid's own orthogonal frame) or as the 4x4
  ``affine_lps`` from ``Volume.affine_lps()`` mapping ``(slice, row, column, 1)``
  to LPS millimetres (diameters, which need to know where "axial" is).
* Lengths are measured between voxel *centres*. A lesion one voxel wide therefore
  measures 0 mm across, and a diameter is about one voxel spacing shorter than the
  edge-to-edge extent a radiologist would calliper.
* Surface of a mask: the mask minus its erosion by the 6-connected (face) structuring
  element, i.e. the voxels with at least one face neighbour outside the mask
  (outside the array counts as outside the mask). This is the usual choice
  (medpy, MONAI) and gives a one-voxel-thick, 26-connected shell.
* HD95: the maximum of the two *directed* 95th percentiles
  ``max(P95(d(∂A→∂B)), P95(d(∂B→∂A)))`` (MONAI's ``percentile=95`` definition, not the
  pooled percentile of medpy), percentiles by linear interpolation (numpy's default).
  Two empty masks: 0.0; exactly one empty: ``None`` (undefined).
* Longest axial diameter (RECIST-like): axial planes are planes of constant LPS z
  (S), whatever the acquisition plane. Voxel centres are binned into axial slabs of
  width ``w = max_k |affine[2, k]|``, the largest z step of one index step, with
  slab centres at ``z(origin) + n·w``. For axial, coronal and sagittal series each
  slab is exactly one grid plane (one slice, resp. one row); for an oblique series
  every lattice line along the steepest axis puts exactly one voxel into each slab it
  crosses, so a slab samples its cross-section as densely as an axial reslice would,
  at the cost of a slab thickness of up to one voxel. The diameter is the largest
  (x, y) distance between two voxel centres of one slab.
* Maximum calliper: the 3-D maximum Feret diameter, the largest distance between two
  voxel centres of the mask.
* Jackknife (docs/uncertainty.md): the interval is around the number that is reported, the *fused*
  volume (or its change between A and B), never the experts' mean. Its replicates θ₍ᵢ₎ are the same
  quantity from the panel's fusion re-run with voter i left out (at both visits for a change); the
  estimate θ is the reported value (no bias correction), SE = sqrt((n-1)/n · Σ(θ₍ᵢ₎ - θ̄)²) and the
  95 % interval θ ± t₀.₉₇₅,ₙ₋₁ · SE. Fewer than two replicates, or a replicate undefined: ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage, stats
from scipy.spatial import ConvexHull, QhullError

from oncoflow.measure.mask_metrics import Mask, volume_cm3

Statistic = Literal["percent_change", "delta_cm3"]
_FACE_STRUCTURE = ndimage.generate_binary_structure(3, 1)


# --------------------------------------------------------------------------- helpers


def _as_bool(mask: Mask) -> npt.NDArray[np.bool_]:
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 3:
        raise ValueError(f"a mask is 3-D (slice, row, column), got shape {mask.shape}")
    return mask


def _check_spacing(spacing_mm: tuple[float, float, float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_mm must be three positive values (slice, row, column), got {spacing_mm}")
    return spacing


def check_affine(affine_lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``affine_lps`` as a 4x4 float array; ``ValueError`` unless it is one and non-singular."""
    affine = np.asarray(affine_lps, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine_lps must be a 4x4 index-to-LPS matrix, got shape {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine_lps is singular")
    return affine


def _crop(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The mask's bounding box padded by one empty voxel each side, and the index of its ``[0, 0, 0]``."""
    nonzero = np.nonzero(mask)
    lo = np.array([int(ax.min()) for ax in nonzero])
    hi = np.array([int(ax.max()) for ax in nonzero])
    sub = mask[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
    return np.pad(sub, 1), lo - 1


def _surface(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_STRUCTURE, border_value=0)


def to_lps(indices: npt.NDArray[np.int64], affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """LPS mm of ``(slice, row, column)`` voxel indices (one a row)."""
    return indices.astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]


def _max_pairwise(points: npt.NDArray[np.float64]) -> tuple[float, int, int]:
    """Largest distance within a small point set and the indices of its two points, in blocks to bound memory."""
    best, best_i, best_j = -1.0, 0, 0
    for start in range(0, len(points), 1024):
        block = points[start : start + 1024]
        d2 = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        if d2[i, j] > best:
            best, best_i, best_j = float(d2[i, j]), start + int(i), int(j)
    return float(np.sqrt(best)), best_i, best_j


def farthest_pair(
    points: npt.NDArray[np.float64],
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The largest distance between two of the points (any dimension), and those two points.

    Convex hull, then pairs of its vertices. Degenerate sets (collinear, coplanar in 3-D) are
    projected onto the subspace they span, which preserves their distances, before the hull is
    taken. One distinct point gives ``(0.0, p, p)``; no point raises ``ValueError``.
    """
    points = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(points) == 0:
        raise ValueError("no points")
    if len(points) < 2:
        return 0.0, points[0], points[0]
    centred = points - points.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    rank = int(np.sum(singular > 1e-9 * max(1.0, float(singular[0]))))
    coords = centred @ vt[:rank].T
    if rank == 1:
        lo, hi = int(np.argmin(coords[:, 0])), int(np.argmax(coords[:, 0]))
        return float(coords[hi, 0] - coords[lo, 0]), points[lo], points[hi]
    candidates = np.arange(len(coords))
    if len(coords) > rank + 1:
        with contextlib.suppress(QhullError):  # numerically degenerate: fall back to all pairs
            candidates = ConvexHull(coords).vertices
    length, i, j = _max_pairwise(coords[candidates])
    return length, points[candidates[i]], points[candidates[j]]


def _diameter(points: npt.NDArray[np.float64]) -> float:
    """Largest distance between two of the points (any dimension); 0.0 for fewer than two."""
    return farthest_pair(points)[0] if len(points) else 0.0


def axial_slabs(
    shape: tuple[int, ...], offset: npt.ArrayLike, affine: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], float]:
    """The axial slab number of each voxel of a box of the grid, and the slab width ``w`` (mm).

    The box has ``shape`` and its ``[0, 0, 0]`` is the grid's index ``offset``. Slab ``n`` is
    centred on LPS z = ``affine[2, 3] + n·w`` (see the module docstring).
    """
    z_steps = affine[2, :3]
    width = float(np.abs(z_steps).max())
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    position = sum((g + o) * (step / width) for g, o, step in zip(grids, np.asarray(offset), z_steps, strict=True))
    return np.rint(position).astype(np.int64), width


# --------------------------------------------------------------------------- surface distances


def surface_distances_mm(
    a: Mask, b: Mask, spacing_mm: tuple[float, float, float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distances (mm) from each surface voxel of ``a`` to the nearest surface voxel of ``b``, and vice versa.

    ``spacing_mm`` is ``(slice, row, column)`` as in ``Volume.spacing_mm``; distances are
    Euclidean between voxel centres (``scipy.ndimage.distance_transform_edt`` with
    ``sampling=spacing_mm``), so anisotropic grids are measured correctly. Two empty masks
    give two empty arrays; exactly one empty mask raises ``ValueError`` (no surface to
    measure to).
    """
    spacing = _check_spacing(spacing_mm)
    a, b = _as_bool(a), _as_bool(b)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} and {b.shape}")
    empty_a, empty_b = not a.any(), not b.any()
    if empty_a and empty_b:
        return np.zeros(0), np.zeros(0)
    if empty_a or empty_b:
        raise ValueError("surface distances are undefined when exactly one mask is empty")
    union, offset = _crop(a | b)
    box = tuple(slice(o + 1, o + n - 1) for o, n in zip(offset, union.shape, strict=True))
    a_sub, b_sub = np.pad(a[box], 1), np.pad(b[box], 1)
    surface_a, surface_b = _surface(a_sub), _surface(b_sub)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return np.asarray(to_b[surface_a], np.float64), np.asarray(to_a[surface_b], np.float64)


def hd95_mm(a: Mask, b: Mask, spacing_mm: tuple[float, float, float]) -> float | None:
    """95th-percentile Hausdorff distance in mm: ``max`` of the two directed 95th percentiles.

    0.0 for two empty masks; ``None`` when exactly one is empty (undefined).
    """
    a, b = _as_bool(a), _as_bool(b)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} and {b.shape}")
    empty_a, empty_b = not a.any(), not b.any()
    if empty_a and empty_b:
        return 0.0
    if empty_a or empty_b:
        return None
    a_to_b, b_to_a = surface_distances_mm(a, b, spacing_mm)
    return float(max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)))


# --------------------------------------------------------------------------- diameters


def longest_axial_diameter_mm(mask: Mask, affine_lps: npt.ArrayLike) -> float:
    """RECIST-style longest diameter (mm) over all axial (constant LPS z) planes, whatever the series plane.

    ``affine_lps`` is ``Volume.affine_lps()``. Voxel centres are binned into axial slabs as
    described in the module docstring; the result is the largest in-plane (x, y) distance
    between two voxel centres of one slab. An empty mask measures 0.0.
    """
    affine = check_affine(affine_lps)
    mask = _as_bool(mask)
    if not mask.any():
        return 0.0
    sub, offset = _crop(mask)
    slab, _ = axial_slabs(sub.shape, offset, affine)
    # A voxel whose two neighbours along one axis are in the mask and in its slab lies midway
    # between them: it cannot be a vertex of its slab's convex hull and is dropped.
    redundant = np.zeros_like(sub)
    for axis in range(3):
        redundant |= (
            np.roll(sub, 1, axis)
            & np.roll(sub, -1, axis)
            & (np.roll(slab, 1, axis) == slab)
            & (np.roll(slab, -1, axis) == slab)
        )
    keep = sub & ~redundant
    indices = np.argwhere(keep)
    xy = to_lps(indices + offset, affine)[:, :2]
    slabs = slab[keep]
    order = np.argsort(slabs, kind="stable")
    slabs, xy = slabs[order], xy[order]
    starts = np.flatnonzero(np.r_[True, slabs[1:] != slabs[:-1]])
    return max(_diameter(group) for group in np.split(xy, starts[1:]))


def max_caliper_mm(mask: Mask, affine_lps: npt.ArrayLike) -> float:
    """3-D maximum Feret diameter (mm): the largest distance between two voxel centres of the mask.

    Only surface voxels can be vertices of the convex hull, so the hull is built from them.
    An empty mask measures 0.0.
    """
    affine = check_affine(affine_lps)
    mask = _as_bool(mask)
    if not mask.any():
        return 0.0
    sub, offset = _crop(mask)
    points = to_lps(np.argwhere(_surface(sub)) + offset, affine)
    return _diameter(points)


@dataclass(frozen=True)
class LesionMeasurements:
    volume_cm3: float
    longest_axial_diameter_mm: float
    max_caliper_mm: float


def measure_lesion(mask: Mask, affine_lps: npt.ArrayLike, voxel_volume_mm3: float | None = None) -> LesionMeasurements:
    """Volume (cm³), longest axial diameter and maximum calliper (mm) of one mask.

    ``voxel_volume_mm3`` defaults to ``|det(affine_lps[:3, :3])|``.
    """
    affine = check_affine(affine_lps)
    if voxel_volume_mm3 is None:
        voxel_volume_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    return LesionMeasurements(
        volume_cm3=volume_cm3(mask, voxel_volume_mm3),
        longest_axial_diameter_mm=longest_axial_diameter_mm(mask, affine),
        max_caliper_mm=max_caliper_mm(mask, affine),
    )


# --------------------------------------------------------------------------- change


def _check_volumes(*volumes: float) -> None:
    if any(not np.isfinite(v) or v < 0 for v in volumes):
        raise ValueError(f"volumes must be finite and non-negative, got {volumes}")


def volume_change(volume_a_cm3: float, volume_b_cm3: float) -> tuple[float, float | None]:
    """``(B - A in cm³, 100·(B - A)/A in %)``; the percentage is ``None`` when the baseline A is 0."""
    _check_volumes(volume_a_cm3, volume_b_cm3)
    delta = float(volume_b_cm3 - volume_a_cm3)
    return delta, (None if volume_a_cm3 == 0 else 100.0 * delta / float(volume_a_cm3))


def growth_rate_cm3_per_day(volume_a_cm3: float, volume_b_cm3: float, days: float) -> float | None:
    """``(B - A) / days`` in cm³ per day; ``None`` when ``days <= 0`` (no interval to divide by)."""
    _check_volumes(volume_a_cm3, volume_b_cm3)
    if days <= 0:
        return None
    return float(volume_b_cm3 - volume_a_cm3) / float(days)


@dataclass(frozen=True)
class JackknifeCI:
    """A 95 % jackknife interval; units those of the statistic (% or cm³)."""

    estimate: float
    standard_error: float
    low: float
    high: float
    n_experts: int  # replicates: the experts left out one at a time


@dataclass(frozen=True)
class FusedVolume:
    """One visit's reported (fused) volume of the driving region, and the same fusion re-run with each voter left out.

    ``leave_one_out_cm3``: voter left out -> fused volume without it; ``{}`` with fewer than two voters; ``None``
    when unknown (a job from before these volumes were stored). ``voters``: the experts that voted (``None``: the
    keys of ``leave_one_out_cm3``); one voter and ``{}`` is a single-expert visit.
    """

    volume_cm3: float
    leave_one_out_cm3: Mapping[str, float] | None = None
    voters: tuple[str, ...] | None = None

    @property
    def voting(self) -> tuple[str, ...] | None:
        """The voters, or ``None`` when they are unknown."""
        if self.voters is not None:
            return tuple(self.voters)
        return None if self.leave_one_out_cm3 is None else tuple(sorted(self.leave_one_out_cm3))

    def without(self, expert: str) -> float | None:
        """The fused volume with ``expert`` left out: the re-fusion's for a voter (``None`` when not computed), the
        reported one for an expert that did not vote at this visit."""
        if expert not in (self.voting or ()):
            return self.volume_cm3
        value = (self.leave_one_out_cm3 or {}).get(expert)
        return None if value is None else float(value)


def _percent_change(volume_a: float, volume_b: float) -> float | None:
    return volume_change(volume_a, volume_b)[1]


def _delta_cm3(volume_a: float, volume_b: float) -> float | None:
    return volume_change(volume_a, volume_b)[0]


_STATISTICS: dict[str, Callable[[float, float], float | None]] = {
    "percent_change": _percent_change,
    "delta_cm3": _delta_cm3,
}


def jackknife_interval(estimate: float | None, replicates: Sequence[float | None]) -> JackknifeCI | None:
    """95 % jackknife interval around ``estimate`` (the reported value) from its leave-one-out ``replicates``.

    SE = sqrt((n-1)/n · Σ(θ₍ᵢ₎ - θ̄)²), interval ``estimate ± t₀.₉₇₅,ₙ₋₁ · SE``. ``None`` for fewer than two
    replicates, or when the estimate or any replicate is undefined (``None``, not finite).
    """
    n = len(replicates)
    if n < 2 or estimate is None or any(r is None for r in replicates):
        return None
    theta = np.array(replicates, dtype=np.float64)
    if not np.isfinite(estimate) or not np.all(np.isfinite(theta)):
        return None
    se = float(np.sqrt((n - 1) / n * np.sum((theta - theta.mean()) ** 2)))
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return JackknifeCI(estimate=float(estimate), standard_error=se, low=float(estimate) - half,
                       high=float(estimate) + half, n_experts=n)


def volume_ci95(volume_cm3: float, leave_one_out_cm3: Mapping[str, float] | None) -> JackknifeCI | None:
    """95 % leave-one-expert-out jackknife interval of the fused volume (cm³) of one visit, around that volume.

    ``leave_one_out_cm3``: each voter left out -> the fused volume without it. ``None`` for fewer than two.
    """
    if not leave_one_out_cm3:
        return None
    return jackknife_interval(float(volume_cm3), [float(leave_one_out_cm3[n]) for n in sorted(leave_one_out_cm3)])


def change_ci95(
    baseline: FusedVolume,
    follow_up: FusedVolume,
    statistic: Statistic | Callable[[float, float], float | None] = "percent_change",
) -> JackknifeCI | None:
    """95 % leave-one-expert-out jackknife interval of the change between two visits' fused volumes.

    The estimate is ``statistic(baseline.volume_cm3, follow_up.volume_cm3)``, the reported change
    (``"percent_change"`` in %, ``"delta_cm3"`` in cm³, or a callable). One replicate per expert that voted at
    either visit: that expert is left out at *both* visits (the same expert removed from the baseline's and the
    follow-up's fusion), an expert that did not vote at a visit leaving that visit's volume as reported.
    ``None`` when the voters of a visit are unknown, for fewer than two replicates, or when the statistic is
    undefined for the estimate or a replicate (a % change from a zero baseline).
    """
    func = _STATISTICS[statistic] if isinstance(statistic, str) else statistic
    voters_a, voters_b = baseline.voting, follow_up.voting
    if voters_a is None or voters_b is None:
        return None
    replicates: list[float | None] = []
    for name in sorted(set(voters_a) | set(voters_b)):
        a, b = baseline.without(name), follow_up.without(name)
        replicates.append(None if a is None or b is None else func(a, b))
    return jackknife_interval(func(float(baseline.volume_cm3), float(follow_up.volume_cm3)), replicates)
