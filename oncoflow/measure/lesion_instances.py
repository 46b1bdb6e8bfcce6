"""The lesions of one time point: connected lesions, their volumes and RANO 2.0 bidimensional measurement.

Conventions are those of ``lesion_metrics`` (masks ``(slice, row, column)`` on one grid, geometry as the
4x4 ``affine_lps`` of ``Volume.affine_lps()``, lengths between voxel *centres*, axial planes of constant
LPS z binned into slabs whatever the acquisition plane). Further:

* **Lesions.** The connected components (26-connectivity) of the tumour mask, with fragments whose gap is
  less than ``join_distance_mm`` joined into one lesion (transitively: A near B near C is one lesion). The
  gap is surface to surface in patient mm: the distance between the closest *voxel boxes* of the two
  fragments, ``sqrt(Σₖ (max(|Δₖ| - 1, 0)·sₖ)²)`` over the index differences ``Δ`` of two voxels and the
  spacings ``s`` (so two fragments with three empty 1 mm voxels between them are 3 mm apart, and two on
  6 mm slices with one empty slice between them 6 mm apart). It is exact for anisotropic and oblique grids
  (orthogonal axes, as every ``Volume``); a sheared affine is refused. The joined lesion is the union of its
  fragments (the gap is not filled). Lesions are labelled 1..n, largest (voxel count) first, ties in raster
  order of their first voxel.
* **Volumes** in cm³; with a compartment label map (:class:`Compartment` values) also per compartment of the
  region, counted within the lesion's voxels.
* **Bidimensional measurement** (RANO 2.0, as a radiologist draws it): on the axial slab with the largest
  cross-section (area = voxel count x voxel volume / slab width; ties: the larger product, then the lowest
  slab; ``plane="largest_product"`` takes the slab whose measurement has the largest product instead), the
  **longest diameter** is the largest in-plane (x, y) distance between two voxel centres of the slab; the
  **perpendicular diameter** is the longest segment between two voxel centres on the slab's outline whose
  direction is within ``perpendicular_tolerance_deg`` (default 5°) of perpendicular to the longest diameter
  *and that crosses it* (the two callipers form a cross). A tolerance is needed because voxel centres rarely
  lie exactly on a perpendicular; 5° keeps a 10-mm lesion on a 1-mm grid with candidate pairs, and lengthens
  an ellipse's perpendicular (2b, axes 2a > 2b) at most to ``2b / sqrt(cos²5° + (b/a)² sin²5°)``, under
  ``1/cos 5° - 1`` = 0.4 %. The outline is the slab's voxels that miss an in-slab neighbour along one of the
  two in-plane grid axes (on an oblique grid the in-slab neighbour may sit one step along the steepest axis).
  The endpoints are reported at the slab's centre z, so each diameter is a segment in one axial plane and its
  3-D length is the measured length. ``product_mm2`` = longest x perpendicular. A cross-section with no
  perpendicular pair (a line of voxels, a single voxel) has a perpendicular diameter of 0 mm, both its
  endpoints the longest diameter's start. RANO2.0-assist differs (docs/response-criteria.md): over all
  slices, the pair of boundary-to-boundary lines inside the mask, orthogonal within 0.1° and intersecting,
  with the largest product.
* **Measurability** (RANO 2.0, configurable in :class:`MeasurabilityCriteria`): both diameters at least
  ``max(min_diameter_mm, slice_thickness_factor x slice thickness)`` (10 mm, or 2 x the slice thickness when
  slices are thicker than 5 mm; the slice thickness is the caller's, ``None`` to apply the 10 mm only), and
  the lesion present on at least ``min_slabs`` (2) axial slabs. ``min_perpendicular_diameter_mm`` sets a
  separate minimum for the perpendicular diameter (RANO-BM: 5 mm), without the slice-thickness rule. The
  diameters are between voxel centres, so a lesion measures about one voxel less than its edge-to-edge
  extent; the thresholds are applied to those values (inclusive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncoflow.core.tumour_compartments import REGION_COMPARTMENTS, Compartment, Region, region_mask
from oncoflow.measure.lesion_metrics import axial_slabs, check_affine, farthest_pair, max_caliper_mm, to_lps
from oncoflow.measure.mask_metrics import Mask, volume_cm3

Point = tuple[float, float, float]
Plane = Literal["largest_area", "largest_product"]
_CUBE = np.ones((3, 3, 3), dtype=bool)
_EPS_MM = 1e-6


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MeasurabilityCriteria:
    """RANO 2.0 measurable disease: both perpendicular diameters at least
    ``max(min_diameter_mm, slice_thickness_factor x slice thickness)``, on at least ``min_slabs`` axial slabs."""

    min_diameter_mm: float = 10.0
    slice_thickness_factor: float = 2.0
    min_slabs: int = 2
    min_perpendicular_diameter_mm: float | None = None  # None: as the longest diameter

    def min_size_mm(self, slice_thickness_mm: float | None = None) -> float:
        """The smallest measurable diameter (mm) for slices ``slice_thickness_mm`` thick."""
        if slice_thickness_mm is None:
            return self.min_diameter_mm
        return max(self.min_diameter_mm, self.slice_thickness_factor * float(slice_thickness_mm))

    def min_perpendicular_mm(self, slice_thickness_mm: float | None = None) -> float:
        """The smallest measurable perpendicular diameter (mm)."""
        if self.min_perpendicular_diameter_mm is None:
            return self.min_size_mm(slice_thickness_mm)
        return self.min_perpendicular_diameter_mm


@dataclass(frozen=True)
class Measurability:
    """Whether a lesion is measurable; ``reason_codes`` (``longest_too_short``, ``perpendicular_too_short``,
    ``too_few_slabs``) and ``reasons`` (sentences) say why not, empty when it is."""

    measurable: bool
    min_size_mm: float
    reason_codes: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class BidimensionalMeasurement:
    """The two perpendicular diameters on one axial plane (LPS z = ``plane_z_lps_mm``), endpoints in LPS mm."""

    longest_diameter_mm: float
    perpendicular_diameter_mm: float
    product_mm2: float
    longest_endpoints_lps_mm: tuple[Point, Point]
    perpendicular_endpoints_lps_mm: tuple[Point, Point]
    angle_between_deg: float
    plane_z_lps_mm: float
    cross_section_area_mm2: float


@dataclass(frozen=True)
class LesionInstance:
    """One lesion of one time point: ``label`` is its value in :attr:`LesionSet.labels`."""

    label: int
    n_fragments: int
    voxel_count: int
    volume_cm3: float
    compartment_volumes_cm3: Mapping[Compartment, float]
    centroid_lps_mm: Point
    n_axial_slabs: int
    bidimensional: BidimensionalMeasurement
    max_caliper_mm: float
    measurability: Measurability

    @property
    def longest_diameter_mm(self) -> float:
        return self.bidimensional.longest_diameter_mm

    @property
    def perpendicular_diameter_mm(self) -> float:
        return self.bidimensional.perpendicular_diameter_mm

    @property
    def product_mm2(self) -> float:
        return self.bidimensional.product_mm2

    @property
    def measurable(self) -> bool:
        return self.measurability.measurable


@dataclass(frozen=True, eq=False)
class LesionSet:
    """The lesions of one time point and their label image (0 outside, lesion ``label`` inside)."""

    labels: npt.NDArray[np.int32]
    affine_lps: npt.NDArray[np.float64]
    region: Region | None
    lesions: tuple[LesionInstance, ...]

    def mask(self, label: int) -> npt.NDArray[np.bool_]:
        """The voxels of lesion ``label``."""
        return self.labels == label

    def lesion(self, label: int) -> LesionInstance:
        for lesion in self.lesions:
            if lesion.label == label:
                return lesion
        raise KeyError(label)

    @property
    def total_volume_cm3(self) -> float:
        return float(sum(lesion.volume_cm3 for lesion in self.lesions))


# --------------------------------------------------------------------------- lesions


def _as_mask(mask: Mask) -> npt.NDArray[np.bool_]:
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 3:
        raise ValueError(f"a mask is 3-D (slice, row, column), got shape {mask.shape}")
    return mask


def grid_spacing_mm(affine_lps: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(slice, row, column)`` spacing (mm) of a grid with orthogonal axes; ``ValueError`` for a sheared one."""
    affine = check_affine(affine_lps)
    columns = affine[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    cosines = (columns.T @ columns) / np.outer(spacing, spacing)
    if np.abs(cosines - np.eye(3)).max() > 1e-4:
        raise ValueError("the grid's axes are not orthogonal")
    return spacing


def label_lesions(
    mask: Mask, affine_lps: npt.ArrayLike, join_distance_mm: float = 5.0
) -> tuple[npt.NDArray[np.int32], tuple[int, ...]]:
    """The lesion label image (0 outside, lesions 1..n largest first) and each lesion's number of fragments.

    Fragments are the 26-connected components of ``mask``; those with a surface-to-surface gap of less
    than ``join_distance_mm`` (see the module docstring) are one lesion. ``join_distance_mm = 0`` keeps
    every component apart.
    """
    mask = _as_mask(mask)
    if join_distance_mm < 0:
        raise ValueError(f"join_distance_mm must be >= 0, got {join_distance_mm}")
    components, n = ndimage.label(mask, structure=_CUBE)
    parent = np.arange(n + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    if join_distance_mm > 0 and n > 1:
        spacing = grid_spacing_mm(affine_lps)
        margin = np.ceil(join_distance_mm / spacing).astype(int) + 1
        for i, box in enumerate(ndimage.find_objects(components), start=1):
            window = tuple(
                slice(max(s.start - m, 0), min(s.stop + m, size))
                for s, m, size in zip(box, margin, components.shape, strict=True)
            )
            sub = components[window]
            others = (sub > 0) & (sub != i)
            if not others.any():
                continue
            # The voxel boxes of a and b are max(|Δ| - 1, 0) voxels apart along each axis: the distance
            # between b's centre and the nearest centre of a grown by one voxel (26-neighbourhood).
            grown = ndimage.binary_dilation(sub == i, structure=_CUBE)
            near = ndimage.distance_transform_edt(~grown, sampling=spacing) < join_distance_mm
            for j in np.unique(sub[near & others]):
                parent[root(int(j))] = root(i)
    roots = np.array([root(i) for i in range(n + 1)])
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    lesion_size = np.bincount(roots[1:], weights=sizes[1:], minlength=n + 1)
    lesion_first = np.full(n + 1, n + 1)  # ndimage.label numbers components in raster order of their first voxel
    np.minimum.at(lesion_first, roots[1:], np.arange(1, n + 1))
    fragments = np.bincount(roots[1:], minlength=n + 1)
    order = sorted({int(r) for r in roots[1:]}, key=lambda r: (-lesion_size[r], lesion_first[r]))
    new_label = np.zeros(n + 1, np.int32)
    for label, r in enumerate(order, start=1):
        new_label[r] = label
    lut = new_label[roots]
    return lut[components].astype(np.int32), tuple(int(fragments[r]) for r in order)


def find_lesions(
    tumour: npt.NDArray[np.integer] | npt.NDArray[np.bool_],
    affine_lps: npt.ArrayLike,
    *,
    region: Region | None = None,
    join_distance_mm: float = 5.0,
    slice_thickness_mm: float | None = None,
    criteria: MeasurabilityCriteria = MeasurabilityCriteria(),
    perpendicular_tolerance_deg: float = 5.0,
    plane: Plane = "largest_area",
) -> LesionSet:
    """The lesions of one time point, measured.

    ``tumour``: with ``region=None`` a binary mask (non-zero is tumour); with ``region`` (``"ET"``, ``"TC"``,
    ``"WT"``) a compartment label map whose region's voxels make the lesions, and whose compartments are
    given per lesion in ``compartment_volumes_cm3``. ``slice_thickness_mm``: the acquired slice thickness,
    for the measurability threshold (``None``: 10 mm only).
    """
    affine = check_affine(affine_lps)
    tumour = np.asarray(tumour)
    mask = _as_mask(tumour) if region is None else region_mask(tumour, region)
    labels, fragments = label_lesions(mask, affine, join_distance_mm)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    lesions = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        sub = np.pad(labels[box] == label, 1)
        offset = np.array([s.start for s in box]) - 1
        compartments: dict[Compartment, float] = {}
        if region is not None:
            values = np.pad(tumour[box], 1)[sub]
            compartments = {c: volume_cm3(values == int(c), voxel_mm3) for c in REGION_COMPARTMENTS[region]}
        centroid = to_lps((np.argwhere(sub) + offset).mean(axis=0, keepdims=True), affine)[0]
        bidimensional, n_slabs = _bidimensional(sub, offset, affine, perpendicular_tolerance_deg, plane)
        local = affine.copy()
        local[:3, 3] = to_lps(offset[None, :], affine)[0]
        lesions.append(
            LesionInstance(
                label=label,
                n_fragments=fragments[label - 1],
                voxel_count=int(sub.sum()),
                volume_cm3=volume_cm3(sub, voxel_mm3),
                compartment_volumes_cm3=compartments,
                centroid_lps_mm=_point(centroid),
                n_axial_slabs=n_slabs,
                bidimensional=bidimensional,
                max_caliper_mm=max_caliper_mm(sub, local),
                measurability=assess_measurability(
                    bidimensional.longest_diameter_mm,
                    bidimensional.perpendicular_diameter_mm,
                    n_slabs,
                    slice_thickness_mm=slice_thickness_mm,
                    criteria=criteria,
                ),
            )
        )
    return LesionSet(labels=labels, affine_lps=affine, region=region, lesions=tuple(lesions))


def assess_measurability(
    longest_diameter_mm: float,
    perpendicular_diameter_mm: float,
    n_axial_slabs: int,
    *,
    slice_thickness_mm: float | None = None,
    criteria: MeasurabilityCriteria = MeasurabilityCriteria(),
) -> Measurability:
    """RANO 2.0 measurability of a lesion from its two diameters and the number of axial slabs it is on."""
    minimum = criteria.min_size_mm(slice_thickness_mm)
    why = f"{minimum:.1f} mm" + (
        f" ({criteria.slice_thickness_factor:g} x slice thickness {slice_thickness_mm:.1f} mm)"
        if minimum > criteria.min_diameter_mm else ""
    )
    minimum_perpendicular = criteria.min_perpendicular_mm(slice_thickness_mm)
    why_perpendicular = why if minimum_perpendicular == minimum else f"{minimum_perpendicular:.1f} mm"
    codes: list[str] = []
    reasons: list[str] = []
    if longest_diameter_mm < minimum:
        codes.append("longest_too_short")
        reasons.append(f"longest diameter {longest_diameter_mm:.1f} mm is below {why}")
    if perpendicular_diameter_mm < minimum_perpendicular:
        codes.append("perpendicular_too_short")
        reasons.append(f"perpendicular diameter {perpendicular_diameter_mm:.1f} mm is below {why_perpendicular}")
    if n_axial_slabs < criteria.min_slabs:
        codes.append("too_few_slabs")
        reasons.append(f"seen on {n_axial_slabs} axial slab(s), fewer than {criteria.min_slabs}")
    return Measurability(not codes, minimum, tuple(codes), tuple(reasons))


# --------------------------------------------------------------------------- bidimensional measurement


def bidimensional_measurement(
    mask: Mask, affine_lps: npt.ArrayLike, perpendicular_tolerance_deg: float = 5.0, plane: Plane = "largest_area"
) -> BidimensionalMeasurement | None:
    """The RANO 2.0 bidimensional measurement of one lesion's mask (module docstring); ``None`` if empty."""
    affine = check_affine(affine_lps)
    mask = _as_mask(mask)
    if not mask.any():
        return None
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return _bidimensional(np.pad(mask[box], 1), np.array([s.start for s in box]) - 1, affine,
                          perpendicular_tolerance_deg, plane)[0]


def _point(values: npt.ArrayLike) -> Point:
    x, y, z = (float(v) for v in np.asarray(values).ravel()[:3])
    return (x, y, z)


def _slab_outline(
    sub: npt.NDArray[np.bool_], slab: npt.NDArray[np.int64], affine: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Voxels of ``sub`` missing an in-slab neighbour along one of the two in-plane grid axes.

    The in-slab neighbour of ``x`` along axis ``a`` is ``x ± e_a + m·e_s`` (``s`` the steepest axis in z,
    ``m`` in -1..1) in the same slab: one step along ``s`` moves exactly one slab. ``sub`` is padded.
    """
    steep = int(np.argmax(np.abs(affine[2, :3])))
    inner = sub.copy()
    for axis in (a for a in range(3) if a != steep):
        for step in (1, -1):
            found = np.zeros_like(sub)
            for m in (-1, 0, 1):
                shift = [0, 0, 0]
                shift[axis], shift[steep] = -step, -m
                found |= np.roll(sub, shift, axis=(0, 1, 2)) & (np.roll(slab, shift, axis=(0, 1, 2)) == slab)
            inner &= found
    return sub & ~inner


def _bidimensional(
    sub: npt.NDArray[np.bool_], offset: npt.NDArray[np.int64], affine: npt.NDArray[np.float64], tolerance_deg: float,
    plane: Plane,
) -> tuple[BidimensionalMeasurement, int]:
    """The measurement of a padded crop whose ``[0, 0, 0]`` is the grid's ``offset``, and its number of slabs."""
    if not 0 <= tolerance_deg < 45:
        raise ValueError(f"perpendicular_tolerance_deg must be in [0, 45), got {tolerance_deg}")
    slab, width = axial_slabs(sub.shape, offset, affine)
    values, counts = np.unique(slab[sub], return_counts=True)
    pixel_mm2 = float(abs(np.linalg.det(affine[:3, :3]))) / width
    outline = _slab_outline(sub, slab, affine)
    best: BidimensionalMeasurement | None = None
    if plane not in ("largest_area", "largest_product"):
        raise ValueError(f"plane must be 'largest_area' or 'largest_product', got {plane!r}")
    chosen = counts == counts.max() if plane == "largest_area" else np.ones(len(values), bool)
    for n, count in zip(values[chosen], counts[chosen], strict=True):
        z = float(affine[2, 3] + n * width)
        points = to_lps(np.argwhere(sub & (slab == n)) + offset, affine)[:, :2]
        edge = to_lps(np.argwhere(outline & (slab == n)) + offset, affine)[:, :2]
        candidate = _cross(points, edge, z, int(count) * pixel_mm2, tolerance_deg)
        if best is None or candidate.product_mm2 > best.product_mm2 + 1e-9:
            best = candidate
    assert best is not None
    return best, len(values)


def _cross(
    points: npt.NDArray[np.float64], edge: npt.NDArray[np.float64], z: float, area_mm2: float, tolerance_deg: float
) -> BidimensionalMeasurement:
    """Longest diameter of ``points`` (x, y) and the longest crossing near-perpendicular one of ``edge``."""
    longest, a, b = farthest_pair(points)
    c = d = a
    perpendicular, angle = 0.0, 90.0
    if longest > 0:
        perpendicular, c, d = _longest_perpendicular(edge, a, b, longest, math.tan(math.radians(tolerance_deg)))
        if perpendicular > 0:
            cosine = abs(float(np.dot(b - a, d - c))) / (longest * perpendicular)
            angle = math.degrees(math.acos(min(1.0, cosine)))
    return BidimensionalMeasurement(
        longest_diameter_mm=longest,
        perpendicular_diameter_mm=perpendicular,
        product_mm2=longest * perpendicular,
        longest_endpoints_lps_mm=(_point([*a, z]), _point([*b, z])),
        perpendicular_endpoints_lps_mm=(_point([*c, z]), _point([*d, z])),
        angle_between_deg=angle,
        plane_z_lps_mm=z,
        cross_section_area_mm2=area_mm2,
    )


def _longest_perpendicular(
    points: npt.NDArray[np.float64], a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], length: float,
    tan_tolerance: float,
) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longest segment between two of ``points`` within the tolerance of perpendicular to ``ab``, crossing it.

    In the frame (s along ab from a, t across) a pair (i, j) with ``t_i < t_j`` qualifies when
    ``|Δs| <= tan(tolerance)·Δt`` and it meets the segment: ``t_i <= 0 <= t_j`` with the crossing's s in
    ``[0, |ab|]``. All pairs, in blocks. ``(0.0, a, a)`` when none qualifies.
    """
    u = (b - a) / length
    v = np.array([-u[1], u[0]])
    s, t = (points - a) @ u, (points - a) @ v
    best, pair = 0.0, (a, a)
    for start in range(0, len(points), 512):
        si, ti = s[start : start + 512, None], t[start : start + 512, None]
        ds, dt = s[None, :] - si, t[None, :] - ti
        ok = (dt > _EPS_MM) & (np.abs(ds) <= tan_tolerance * dt + _EPS_MM) & (ti <= _EPS_MM) & (t[None, :] >= -_EPS_MM)
        crossing = si + ds * (-ti) / np.where(ok, dt, 1.0)
        ok &= (crossing >= -_EPS_MM) & (crossing <= length + _EPS_MM)
        d2 = np.where(ok, ds * ds + dt * dt, -1.0)
        i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
        if d2[i, j] > best * best:
            best, pair = float(np.sqrt(d2[i, j])), (points[start + int(i)], points[int(j)])
    return best, pair[0], pair[1]
