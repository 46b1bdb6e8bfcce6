"""Lesions of one time point against numbers worked out by hand from the shapes built, or by brute force.

Grids are axial unless named: index ``(k, j, i)`` is at LPS ``origin + (i·s_col, j·s_row, k·s_slice)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from oncoflow.core.tumour_compartments import Compartment
from oncoflow.core.volume import Volume
from oncoflow.measure.lesion_instances import (
    LesionSet,
    MeasurabilityCriteria,
    assess_measurability,
    bidimensional_measurement,
    find_lesions,
    grid_spacing_mm,
    label_lesions,
)
from oncoflow.measure.lesion_metrics import max_caliper_mm

ORIGIN = (-12.3, 40.7, 18.1)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    a, b = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def _grid(shape, spacing=(1.0, 1.0, 1.0), rotation=None, origin=ORIGIN):
    """The affine of a ``Volume`` (axial, or turned by ``rotation``) and the LPS centre of every voxel."""
    r = np.eye(3) if rotation is None else rotation
    volume = Volume(
        voxels=np.zeros(shape, np.float32),
        spacing_mm=tuple(spacing),
        origin_mm=tuple(origin),
        row_direction=tuple(r @ [1.0, 0, 0]),
        column_direction=tuple(r @ [0, 1.0, 0]),
        slice_direction=tuple(r @ [0, 0, 1.0]),
    )
    affine = volume.affine_lps()
    index = np.indices(shape).reshape(3, -1).T.astype(float)
    return affine, (index @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _disc_stack(radius_vox: float, slices: int, shape=(12, 32, 32), spacing=(1.0, 1.0, 1.0)):
    """A cylinder along z: the lattice disc ``i² + j² <= r²`` (in voxels, centred on (16, 16)) on ``slices``
    consecutive slices from slice 2."""
    k, j, i = np.indices(shape)
    mask = ((i - 16) ** 2 + (j - 16) ** 2 <= radius_vox**2) & (k >= 2) & (k < 2 + slices)
    return mask, _grid(shape, spacing)[0]


def _brute_longest(points_xy: np.ndarray) -> float:
    d = points_xy[:, None, :] - points_xy[None, :, :]
    return float(np.sqrt((d**2).sum(-1).max()))


def _largest_axial_slice(mask: np.ndarray) -> int:
    counts = mask.sum(axis=(1, 2))
    return int(np.argmax(counts))


# --------------------------------------------------------------------------- bidimensional measurement


def test_an_elongated_ellipse_has_its_long_axis_and_the_perpendicular_within_the_tolerance() -> None:
    # Ellipse (x/15.05)² + (y/6.5)² <= 1 on a 1 mm grid, 5 slices. Lattice points at |x| = 15 need
    # |y| <= 0.53, so only (±15, 0): longest = 30 mm along x, unique (at x = 14, |y| <= 2 gives 28.3 mm).
    # Perpendicular: y reaches ±6 for |x| <= 5 (36/42.25 + 25/226.5 < 1), and a pair (x, -6), (x + dx, 6)
    # is within 5° of y when |dx| <= tan 5°·12 = 1.05: dx = 1 gives sqrt(145) mm; within 4° (0.84) only dx = 0.
    shape = (9, 21, 41)
    k, j, i = np.indices(shape)
    mask = ((i - 20) / 15.05) ** 2 + ((j - 10) / 6.5) ** 2 <= 1
    mask &= (k >= 2) & (k <= 6)
    affine, _ = _grid(shape)
    m5 = bidimensional_measurement(mask, affine, perpendicular_tolerance_deg=5.0)
    m4 = bidimensional_measurement(mask, affine, perpendicular_tolerance_deg=4.0)
    assert m5 is not None and m4 is not None
    assert m5.longest_diameter_mm == pytest.approx(30.0)
    assert sorted(m5.longest_endpoints_lps_mm) == sorted(
        [(ORIGIN[0] + 5, ORIGIN[1] + 10, pytest.approx(m5.plane_z_lps_mm)),
         (ORIGIN[0] + 35, ORIGIN[1] + 10, pytest.approx(m5.plane_z_lps_mm))]
    )
    assert m5.perpendicular_diameter_mm == pytest.approx(math.sqrt(145))
    assert m5.product_mm2 == pytest.approx(30 * math.sqrt(145))
    assert m5.angle_between_deg == pytest.approx(90 - math.degrees(math.atan(1 / 12)))
    assert m4.perpendicular_diameter_mm == pytest.approx(12.0)
    assert m4.angle_between_deg == pytest.approx(90.0)
    # Every slice has the same section: the lowest is taken; area = lattice points in the ellipse x 1 mm².
    assert m5.plane_z_lps_mm == pytest.approx(ORIGIN[2] + 2)
    assert m5.cross_section_area_mm2 == pytest.approx(float(mask[2].sum()))
    for (a, b), length in ((m5.longest_endpoints_lps_mm, 30.0), (m5.perpendicular_endpoints_lps_mm, math.sqrt(145))):
        assert math.dist(a, b) == pytest.approx(length)
        assert a[2] == b[2] == pytest.approx(m5.plane_z_lps_mm)
    # The perpendicular crosses the longest: its endpoints lie on either side of y = 10 (the long axis).
    ys = sorted(p[1] - ORIGIN[1] for p in m5.perpendicular_endpoints_lps_mm)
    assert ys == [pytest.approx(4.0), pytest.approx(16.0)]


def test_the_largest_cross_section_is_the_slab_measured() -> None:
    # A cone of discs: radius 3 on slice 2 up to 7 on slice 6, then 5 on slice 7. The largest is slice 6.
    shape = (10, 32, 32)
    k, j, i = np.indices(shape)
    radius = np.select([k == s for s in range(2, 8)], [3, 4, 5, 6, 7, 5], default=-1)
    mask = (i - 16) ** 2 + (j - 16) ** 2 <= radius**2
    affine, _ = _grid(shape, spacing=(2.5, 0.8, 0.8))
    m = bidimensional_measurement(mask, affine)
    assert m is not None
    assert m.plane_z_lps_mm == pytest.approx(ORIGIN[2] + 6 * 2.5)
    # The lattice disc of radius 7 reaches (±7, 0) and (0, ±7); nothing is farther (6² + 3² = 45, 13.4 voxels).
    assert m.longest_diameter_mm == pytest.approx(14 * 0.8)
    assert m.perpendicular_diameter_mm == pytest.approx(14 * 0.8)
    assert m.cross_section_area_mm2 == pytest.approx(mask[6].sum() * 0.64)


@pytest.mark.parametrize("degrees", [0.0, 30.0, 63.0])
def test_an_ellipse_on_a_grid_turned_in_plane_is_measured_along_its_own_axes(degrees: float) -> None:
    # The ellipse lies along LPS x whatever the grid's in-plane rotation; the grid is axial (slices along z),
    # so the slice of largest area is a lattice slice and its longest diameter is checked by brute force.
    a, b = 14.0, 6.0
    shape = (7, 48, 48)
    rotation = _rotation(2, degrees)
    centre = np.array([0.31, -0.27, 0.0])
    origin = centre - rotation @ np.array([23.5 * 0.9, 23.5 * 0.9, 0]) - np.array([0, 0, 3.0])
    affine, points = _grid(shape, (1.0, 0.9, 0.9), rotation, origin)
    d = points - centre
    mask = ((d[..., 0] / a) ** 2 + (d[..., 1] / b) ** 2 <= 1) & (np.abs(d[..., 2]) <= 2.0)
    m = bidimensional_measurement(mask, affine)
    assert m is not None
    largest = _largest_axial_slice(mask)
    assert m.longest_diameter_mm == pytest.approx(_brute_longest(points[largest][mask[largest]][:, :2]))
    assert 2 * a - 2 * 0.9 * math.sqrt(2) <= m.longest_diameter_mm <= 2 * a
    longest_direction = np.subtract(*m.longest_endpoints_lps_mm)
    line_deg = math.degrees(math.atan2(longest_direction[1], longest_direction[0])) % 180
    # Along x: each end is within a voxel diagonal of the ellipse's apex.
    assert min(line_deg, 180 - line_deg) <= math.degrees(math.atan(2 * 0.9 * math.sqrt(2) / (2 * a - 2)))
    ceiling = 2 * b / math.sqrt(math.cos(math.radians(5)) ** 2 + (b / a) ** 2 * math.sin(math.radians(5)) ** 2)
    assert 2 * b - 2 * 0.9 * math.sqrt(2) <= m.perpendicular_diameter_mm <= ceiling + 1e-9
    assert m.angle_between_deg >= 85.0 - 1e-9


def test_a_sphere_on_a_thick_oblique_grid() -> None:
    # Radius 12 mm, slices 3 mm turned 20° about x (slab width 3·cos 20° = 2.82 mm), pixels 0.9 mm.
    r, spacing = 12.0, (3.0, 0.9, 0.9)
    shape = (14, 40, 40)
    rotation = _rotation(0, 20.0)
    centre = np.array([5.13, -7.41, 22.37])
    half = np.array([(n - 1) / 2 * s for n, s in zip((40, 40, 14), (0.9, 0.9, 3.0), strict=True)])
    origin = centre - rotation @ half
    affine, points = _grid(shape, spacing, rotation, origin)
    mask = np.linalg.norm(points - centre, axis=-1) <= r
    lesions = find_lesions(mask, affine)
    assert len(lesions.lesions) == 1
    lesion = lesions.lesions[0]
    assert lesion.volume_cm3 == pytest.approx(4 / 3 * math.pi * r**3 / 1000, rel=0.03)
    assert lesion.voxel_count == int(mask.sum())
    assert np.allclose(lesion.centroid_lps_mm, centre, atol=0.3)
    width = 3.0 * math.cos(math.radians(20))
    assert abs(lesion.bidimensional.plane_z_lps_mm - centre[2]) <= width / 2 + 1e-6
    # A slab's voxel centres are within width/2 of its plane: its section's radius is at least
    # sqrt(r² - width²) and at most r, sampled at < 1 voxel diagonal (1.0 x 3.2 mm in the slab).
    assert 2 * math.sqrt(r**2 - width**2) - 2.5 <= lesion.longest_diameter_mm <= 2 * r
    assert lesion.perpendicular_diameter_mm >= lesion.longest_diameter_mm - 2.5
    assert lesion.perpendicular_diameter_mm <= lesion.longest_diameter_mm
    assert lesion.bidimensional.angle_between_deg >= 85.0
    assert 2 * r - 2.5 <= lesion.max_caliper_mm <= 2 * r
    assert lesion.max_caliper_mm == pytest.approx(max_caliper_mm(mask, affine))
    assert lesion.n_axial_slabs == pytest.approx(2 * r / width, abs=2)
    assert lesion.measurable


def test_a_box_gives_its_volume_centroid_and_calliper_by_hand() -> None:
    # Box of 10 x 6 x 4 voxels (columns x rows x slices), spacing (2, 0.5, 0.75) mm, indices k 3..6, j 5..10,
    # i 7..16. Volume 240 x 0.75 mm³; centroid at the mean index (4.5, 7.5, 11.5); calliper between opposite
    # corner centres: (9·0.75, 5·0.5, 3·2) mm.
    shape = (10, 16, 24)
    mask = np.zeros(shape, bool)
    mask[3:7, 5:11, 7:17] = True
    affine, _ = _grid(shape, (2.0, 0.5, 0.75), _rotation(1, 35.0))
    lesion = find_lesions(mask, affine).lesions[0]
    assert lesion.volume_cm3 == pytest.approx(240 * 0.75 / 1000)
    assert np.allclose(lesion.centroid_lps_mm, affine[:3, :3] @ [4.5, 7.5, 11.5] + affine[:3, 3])
    assert lesion.max_caliper_mm == pytest.approx(math.sqrt((9 * 0.75) ** 2 + 2.5**2 + 6.0**2))
    assert lesion.compartment_volumes_cm3 == {}


def test_degenerate_sections() -> None:
    affine, _ = _grid((5, 5, 5))
    one = np.zeros((5, 5, 5), bool)
    one[2, 2, 2] = True
    m = bidimensional_measurement(one, affine)
    assert m is not None and (m.longest_diameter_mm, m.perpendicular_diameter_mm, m.product_mm2) == (0, 0, 0)
    line = np.zeros((5, 5, 5), bool)
    line[2, 2, :] = True  # 4 mm along x, no width
    m = bidimensional_measurement(line, affine)
    assert m is not None and m.longest_diameter_mm == pytest.approx(4.0) and m.perpendicular_diameter_mm == 0.0
    assert m.perpendicular_endpoints_lps_mm[0] == m.perpendicular_endpoints_lps_mm[1]
    assert bidimensional_measurement(np.zeros((5, 5, 5), bool), affine) is None
    with pytest.raises(ValueError, match="tolerance"):
        bidimensional_measurement(one, affine, perpendicular_tolerance_deg=50)


# --------------------------------------------------------------------------- lesions and joined fragments


def _two_boxes(gap: int, axis: int, spacing=(1.0, 1.0, 1.0), rotation=None):
    """Two 4-voxel cubes with ``gap`` empty voxels between them along grid ``axis``; the second is smaller."""
    shape = [12, 12, 12]
    shape[axis] = 4 + gap + 3 + 4
    mask = np.zeros(shape, bool)
    first = [slice(4, 8)] * 3
    second = [slice(4, 7)] * 3
    first[axis] = slice(2, 6)
    second[axis] = slice(6 + gap, 9 + gap)
    mask[tuple(first)] = True
    mask[tuple(second)] = True
    return mask, _grid(tuple(shape), spacing, rotation)[0]


@pytest.mark.parametrize(
    ("gap", "axis", "spacing", "rotation", "joined"),
    [
        (3, 2, (1.0, 1.0, 1.0), None, True),  # 3 mm apart
        (8, 2, (1.0, 1.0, 1.0), None, False),  # 8 mm apart
        (1, 0, (3.0, 1.0, 1.0), None, True),  # one empty 3 mm slice: 3 mm
        (3, 0, (3.0, 1.0, 1.0), None, False),  # three: 9 mm
        (3, 1, (2.0, 1.2, 1.2), _rotation(0, 25.0), True),  # oblique, 3 x 1.2 = 3.6 mm
        (5, 1, (2.0, 1.2, 1.2), _rotation(0, 25.0), False),  # oblique, 5 x 1.2 = 6 mm
    ],
)
def test_fragments_closer_than_the_join_distance_are_one_lesion(gap, axis, spacing, rotation, joined) -> None:
    mask, affine = _two_boxes(gap, axis, spacing, rotation)
    labels, fragments = label_lesions(mask, affine, join_distance_mm=5.0)
    assert (labels > 0).sum() == mask.sum() and not labels[~mask].any()
    if joined:
        assert fragments == (2,) and labels.max() == 1
    else:
        assert fragments == (1, 1)
        assert (labels == 1).sum() == 64 and (labels == 2).sum() == 27  # the larger lesion first
    assert label_lesions(mask, affine, join_distance_mm=0.0)[1] == (1, 1)


def test_the_gap_is_measured_diagonally_between_voxel_boxes() -> None:
    # Second cube 4 empty columns and 3 empty rows away: the voxel boxes are sqrt(4² + 3²) = 5 mm apart.
    mask = np.zeros((8, 20, 20), bool)
    mask[2:6, 2:6, 2:6] = True
    mask[2:6, 9:12, 10:13] = True
    affine, _ = _grid(mask.shape)
    assert label_lesions(mask, affine, join_distance_mm=5.0)[1] == (1, 1)  # not closer than 5 mm
    assert label_lesions(mask, affine, join_distance_mm=5.01)[1] == (2,)


def test_joining_is_transitive_and_lesions_are_labelled_largest_first() -> None:
    mask = np.zeros((6, 8, 60), bool)
    for start in (2, 8, 14):  # three 3-voxel slabs 3 mm apart: one lesion
        mask[1:5, 2:6, start : start + 3] = True
    mask[1:5, 1:7, 30:50] = True  # 12 mm from the chain: a lesion of its own, and the largest
    affine, _ = _grid(mask.shape)
    lesions = find_lesions(mask, affine)
    assert [lesion.n_fragments for lesion in lesions.lesions] == [1, 3]
    assert [lesion.voxel_count for lesion in lesions.lesions] == [4 * 6 * 20, 3 * 4 * 4 * 3]
    assert lesions.mask(1).sum() == 480 and lesions.lesion(2).label == 2
    assert lesions.total_volume_cm3 == pytest.approx((480 + 144) / 1000)
    # The joined lesion is measured across its fragments: x from column 2 to 16 (14 mm).
    assert lesions.lesion(2).longest_diameter_mm >= 14.0


def test_a_sheared_grid_cannot_join() -> None:
    affine = np.eye(4)
    affine[0, 1] = 0.5
    with pytest.raises(ValueError, match="orthogonal"):
        grid_spacing_mm(affine)
    mask = np.zeros((4, 4, 12), bool)
    mask[1, 1, 1] = mask[1, 1, 8] = True
    with pytest.raises(ValueError, match="orthogonal"):
        label_lesions(mask, affine)


def test_no_tumour_no_lesion() -> None:
    affine, _ = _grid((4, 4, 4))
    lesions = find_lesions(np.zeros((4, 4, 4), np.uint8), affine)
    assert isinstance(lesions, LesionSet) and lesions.lesions == () and not lesions.labels.any()


# --------------------------------------------------------------------------- compartments


def test_compartment_volumes_of_each_region() -> None:
    # Oedema cube 20³ around an enhancing cube 10³ around a necrotic cube 6³; a second lesion far away is a
    # 4³ enhancing cube in 8³ oedema. Voxels 1 x 0.5 x 0.5 mm (0.25 mm³).
    labels = np.zeros((30, 30, 60), np.uint8)
    labels[5:25, 5:25, 5:25] = Compartment.OEDEMA
    labels[10:20, 10:20, 10:20] = Compartment.ENHANCING
    labels[12:18, 12:18, 12:18] = Compartment.NECROSIS
    labels[10:18, 10:18, 40:48] = Compartment.OEDEMA
    labels[12:16, 12:16, 42:46] = Compartment.ENHANCING
    affine, _ = _grid(labels.shape, (1.0, 0.5, 0.5))
    cm3 = 0.25 / 1000
    wt = find_lesions(labels, affine, region="WT")
    assert [lesion.volume_cm3 for lesion in wt.lesions] == pytest.approx([8000 * cm3, 512 * cm3])
    assert wt.lesions[0].compartment_volumes_cm3 == pytest.approx(
        {Compartment.OEDEMA: 7000 * cm3, Compartment.NECROSIS: 216 * cm3, Compartment.ENHANCING: 784 * cm3,
         Compartment.NON_ENHANCING: 0.0})
    assert wt.lesions[1].compartment_volumes_cm3 == pytest.approx(
        {Compartment.OEDEMA: 448 * cm3, Compartment.NECROSIS: 0.0, Compartment.ENHANCING: 64 * cm3,
         Compartment.NON_ENHANCING: 0.0})
    tc = find_lesions(labels, affine, region="TC")
    assert [lesion.volume_cm3 for lesion in tc.lesions] == pytest.approx([1000 * cm3, 64 * cm3])
    assert tc.lesions[0].compartment_volumes_cm3 == pytest.approx(
        {Compartment.ENHANCING: 784 * cm3, Compartment.NECROSIS: 216 * cm3})
    et = find_lesions(labels, affine, region="ET")
    assert et.lesions[0].compartment_volumes_cm3 == pytest.approx({Compartment.ENHANCING: 784 * cm3})
    assert et.lesions[0].n_fragments == 1  # the enhancing shell is one 26-connected component
    assert et.region == "ET"


# --------------------------------------------------------------------------- measurability


def test_a_9_mm_lesion_is_not_measurable() -> None:
    # Disc i² + j² <= 4.5²: 9 voxels wide; its farthest lattice points are (±4, ±2): sqrt(80) mm.
    mask, affine = _disc_stack(4.5, slices=5)
    lesion = find_lesions(mask, affine).lesions[0]
    assert lesion.longest_diameter_mm == pytest.approx(math.sqrt(80))
    assert not lesion.measurable
    assert lesion.measurability.reason_codes == ("longest_too_short", "perpendicular_too_short")
    assert "below 10.0 mm" in lesion.measurability.reasons[0]


def test_a_12_mm_lesion_is_measurable_unless_on_one_slab() -> None:
    # Disc i² + j² <= 36: (±6, 0) and (0, ±6) are 12 mm apart; nothing is farther (5² + 3² = 34: 11.7 mm).
    mask, affine = _disc_stack(6.0, slices=5)
    lesion = find_lesions(mask, affine).lesions[0]
    assert (lesion.longest_diameter_mm, lesion.perpendicular_diameter_mm) == (pytest.approx(12.0),
                                                                             pytest.approx(12.0))
    assert lesion.product_mm2 == pytest.approx(144.0)
    assert lesion.n_axial_slabs == 5
    assert lesion.measurable and lesion.measurability.reasons == ()
    flat, _ = _disc_stack(6.0, slices=1)
    lesion = find_lesions(flat, affine).lesions[0]
    assert lesion.longest_diameter_mm == pytest.approx(12.0)
    assert not lesion.measurable
    assert lesion.measurability.reason_codes == ("too_few_slabs",)
    assert lesion.measurability.reasons == ("seen on 1 axial slab(s), fewer than 2",)


def test_thick_slices_raise_the_minimum_to_twice_their_thickness() -> None:
    # 6 mm slices: minimum max(10, 2 x 6) = 12 mm. Disc r = 5.5 voxels: farthest (±5, ±2), sqrt(116) = 10.8 mm:
    # measurable at 10 mm, not at 12. Disc r = 7: (±7, 0) and (0, ±7), 14 mm: measurable.
    small, affine = _disc_stack(5.5, slices=3, spacing=(6.0, 1.0, 1.0))
    lesion = find_lesions(small, affine).lesions[0]
    assert lesion.longest_diameter_mm == pytest.approx(math.sqrt(116))
    assert lesion.measurable
    lesion = find_lesions(small, affine, slice_thickness_mm=6.0).lesions[0]
    assert not lesion.measurable and lesion.measurability.min_size_mm == 12.0
    assert "below 12.0 mm (2 x slice thickness 6.0 mm)" in lesion.measurability.reasons[0]
    large, _ = _disc_stack(7.0, slices=3, spacing=(6.0, 1.0, 1.0))
    lesion = find_lesions(large, affine, slice_thickness_mm=6.0).lesions[0]
    assert lesion.longest_diameter_mm == pytest.approx(14.0) and lesion.perpendicular_diameter_mm == pytest.approx(14)
    assert lesion.measurable


def test_measurability_rules_are_configurable() -> None:
    criteria = MeasurabilityCriteria()
    assert (criteria.min_size_mm(None), criteria.min_size_mm(3.0), criteria.min_size_mm(6.0)) == (10.0, 10.0, 12.0)
    assert assess_measurability(10.0, 10.0, 2).measurable  # the thresholds are inclusive
    assert assess_measurability(10.0, 9.99, 2).reason_codes == ("perpendicular_too_short",)
    loose = MeasurabilityCriteria(min_diameter_mm=5.0, min_slabs=1)
    assert assess_measurability(6.0, 5.0, 1, criteria=loose).measurable
    assert not assess_measurability(6.0, 5.0, 1, slice_thickness_mm=4.0, criteria=loose).measurable


def test_brute_force_agrees_on_random_blobs() -> None:
    # Random blobs: the longest diameter of the measured slab equals the brute-force maximum over its voxel
    # centres, and the perpendicular is no longer than the longest and within 5° of perpendicular.
    rng = np.random.default_rng(7)
    affine, points = _grid((6, 24, 24), (2.0, 0.7, 0.9))
    for _ in range(5):
        blob = np.zeros((6, 24, 24), bool)
        for _ in range(4):
            c = rng.uniform([1, 6, 6], [5, 18, 18])
            k, j, i = np.indices(blob.shape)
            blob |= ((k - c[0]) * 2) ** 2 + ((j - c[1]) * 0.7) ** 2 + ((i - c[2]) * 0.9) ** 2 <= rng.uniform(9, 25)
        labels, _ = label_lesions(blob, affine)
        lesion = find_lesions(blob, affine).lesions[0]
        own = labels == 1
        slab = int(round((lesion.bidimensional.plane_z_lps_mm - ORIGIN[2]) / 2.0))
        assert own[slab].sum() == own.sum(axis=(1, 2)).max()
        assert lesion.longest_diameter_mm == pytest.approx(_brute_longest(points[slab][own[slab]][:, :2]))
        assert lesion.perpendicular_diameter_mm <= lesion.longest_diameter_mm + 1e-9
        assert lesion.bidimensional.angle_between_deg >= 85.0 - 1e-9
        for a, b in itertools.combinations(lesion.bidimensional.longest_endpoints_lps_mm, 2):
            assert math.dist(a, b) == pytest.approx(lesion.longest_diameter_mm)


def test_the_plane_of_largest_product_can_be_asked_for() -> None:
    # Slice 2-3: the lattice disc i² + j² <= 36 (113 voxels, diameters 12 x 12, product 144). Slice 5-6: a plus
    # sign of two 17 x 3 bars (93 voxels): its farthest points (-8, -1), (8, 1) are sqrt(260) apart and
    # (1, -8), (-1, 8) give an exactly perpendicular sqrt(260) (dot product (16, 2)·(-2, 16) = 0): product 260.
    shape = (9, 32, 32)
    k, j, i = np.indices(shape)
    x, y = i - 16, j - 16
    disc = (x**2 + y**2 <= 36) & ((k == 2) | (k == 3))
    plus = (((np.abs(x) <= 8) & (np.abs(y) <= 1)) | ((np.abs(x) <= 1) & (np.abs(y) <= 8))) & ((k == 5) | (k == 6))
    affine, _ = _grid(shape)
    assert disc[2].sum() == 113 and plus[5].sum() == 93
    by_area = bidimensional_measurement(disc | plus, affine)
    by_product = bidimensional_measurement(disc | plus, affine, plane="largest_product")
    assert by_area is not None and by_product is not None
    assert (by_area.plane_z_lps_mm, by_area.product_mm2) == (pytest.approx(ORIGIN[2] + 2), pytest.approx(144.0))
    assert by_product.plane_z_lps_mm == pytest.approx(ORIGIN[2] + 5)
    assert by_product.longest_diameter_mm == pytest.approx(math.sqrt(260))
    assert by_product.perpendicular_diameter_mm == pytest.approx(math.sqrt(260))
    assert by_product.angle_between_deg == pytest.approx(90.0)
    assert by_product.cross_section_area_mm2 == pytest.approx(93.0)
    with pytest.raises(ValueError, match="plane"):
        bidimensional_measurement(disc, affine, plane="largest")  # type: ignore[arg-type]


def test_a_separate_perpendicular_minimum_as_in_rano_bm() -> None:
    rano_bm = MeasurabilityCriteria(min_perpendicular_diameter_mm=5.0)
    assert assess_measurability(12.0, 6.0, 3, criteria=rano_bm).measurable
    result = assess_measurability(12.0, 4.0, 3, slice_thickness_mm=6.0, criteria=rano_bm)
    assert result.reason_codes == ("perpendicular_too_short",)
    assert result.reasons == ("perpendicular diameter 4.0 mm is below 5.0 mm",)
    assert assess_measurability(11.0, 6.0, 3, slice_thickness_mm=6.0, criteria=rano_bm).reason_codes == (
        "longest_too_short",)
