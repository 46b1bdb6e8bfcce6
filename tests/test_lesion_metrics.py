"""Lesion measurements against closed forms on analytic shapes, in axial and non-axial geometries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from oncoflow.core.volume import Volume
from oncoflow.measure.lesion_metrics import (
    FusedVolume,
    JackknifeCI,
    LesionMeasurements,
    change_ci95,
    growth_rate_cm3_per_day,
    hd95_mm,
    jackknife_interval,
    longest_axial_diameter_mm,
    max_caliper_mm,
    measure_lesion,
    surface_distances_mm,
    volume_change,
    volume_ci95,
)

SPACING = (2.0, 0.8, 0.9)  # (slice, row, column) mm
CENTRE = np.array([10.31, -20.17, 35.23])  # LPS mm, off the voxel lattice on purpose

AXIAL = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))  # slice, column (row index), row (column index)
CORONAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0))
SAGITTAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


def _rotation_x(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


def _rotation_z(degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def _oblique(rotation: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(rotation @ np.asarray(d)) for d in AXIAL)


def _grid(directions, spacing, half_extent_mm: float):
    """A Volume geometry centred near CENTRE covering ``±half_extent_mm``, and the LPS centres of its voxels."""
    slice_dir, column_dir, row_dir = directions
    n = [int(math.ceil(half_extent_mm / s)) + 2 for s in spacing]
    axes = np.array([slice_dir, column_dir, row_dir], dtype=float)
    origin = CENTRE - sum(n[k] * spacing[k] * axes[k] for k in range(3)) + np.array([0.13, -0.07, 0.11])
    volume = Volume(
        voxels=np.zeros([2 * k + 1 for k in n], np.float32),
        spacing_mm=spacing,
        origin_mm=tuple(origin),
        row_direction=row_dir,
        column_direction=column_dir,
        slice_direction=slice_dir,
    )
    affine = volume.affine_lps()
    index = np.indices(volume.shape).reshape(3, -1).T.astype(float)
    points = (index @ affine[:3, :3].T + affine[:3, 3]).reshape(*volume.shape, 3)
    return volume, points


def _sphere(directions, radius: float, spacing=SPACING):
    volume, points = _grid(directions, spacing, radius)
    return np.linalg.norm(points - CENTRE, axis=-1) <= radius, volume


def _z_cylinder(directions, radius: float, half_height: float, spacing=SPACING):
    volume, points = _grid(directions, spacing, max(radius, half_height))
    d = points - CENTRE
    inside = (np.hypot(d[..., 0], d[..., 1]) <= radius) & (np.abs(d[..., 2]) <= half_height)
    return inside, volume


# --------------------------------------------------------------------------- sphere


R = 15.0


@pytest.mark.parametrize(
    "directions",
    [AXIAL, CORONAL, SAGITTAL, _oblique(_rotation_x(30)), _oblique(_rotation_z(25) @ _rotation_x(-40))],
    ids=["axial", "coronal", "sagittal", "oblique-x30", "oblique-zx"],
)
def test_sphere_volume_and_diameters_in_any_geometry(directions):
    mask, volume = _sphere(directions, R)
    m = measure_lesion(mask, volume.affine_lps(), volume.voxel_volume_mm3)
    assert isinstance(m, LesionMeasurements)
    assert m.volume_cm3 == pytest.approx(4 / 3 * math.pi * R**3 / 1000, rel=0.03)
    # centre-to-centre lengths of voxels inside the sphere: at most 2R, short by less than a voxel
    assert 2 * R - 2.0 <= m.max_caliper_mm <= 2 * R + 1e-9
    assert 2 * R - 2.0 <= m.longest_axial_diameter_mm <= 2 * R + 1e-9
    assert m.longest_axial_diameter_mm <= m.max_caliper_mm + 1e-9


def test_voxel_volume_defaults_to_affine_determinant():
    mask, volume = _sphere(_oblique(_rotation_x(30)), 6.0)
    assert measure_lesion(mask, volume.affine_lps()).volume_cm3 == pytest.approx(
        mask.sum() * 2.0 * 0.8 * 0.9 / 1000, rel=1e-9
    )


# --------------------------------------------------------------------------- axial diameter, non-axial series


@pytest.mark.parametrize(
    "directions",
    [AXIAL, CORONAL, SAGITTAL, _oblique(_rotation_x(30)), _oblique(_rotation_x(-45) @ _rotation_z(20))],
    ids=["axial", "coronal", "sagittal", "oblique-x30", "oblique-xz"],
)
def test_vertical_cylinder_axial_diameter_is_its_width_not_the_tilted_section(directions):
    radius, half_height = 8.0, 20.0
    mask, volume = _z_cylinder(directions, radius, half_height)
    affine = volume.affine_lps()
    diameter = longest_axial_diameter_mm(mask, affine)
    # a slice plane tilted by 30-45° would cut an ellipse 15-40 % longer than 2r
    assert 2 * radius - 2.0 <= diameter <= 2 * radius + 1e-9
    caliper = max_caliper_mm(mask, affine)
    assert caliper == pytest.approx(math.hypot(2 * half_height, 2 * radius), abs=2.5)


def test_box_axial_diameter_is_the_diagonal_of_its_axial_section():
    spacing = (3.0, 0.7, 0.9)
    mask = np.zeros((12, 30, 30), bool)
    mask[2:9, 4:20, 5:27] = True  # 7 slices, 16 rows, 22 columns
    volume = Volume(
        np.zeros(mask.shape, np.float32),
        spacing,
        (5.0, -3.0, 40.0),
        row_direction=AXIAL[2],
        column_direction=AXIAL[1],
        slice_direction=AXIAL[0],
    )
    affine = volume.affine_lps()
    x, y, z = 21 * 0.9, 15 * 0.7, 6 * 3.0
    assert longest_axial_diameter_mm(mask, affine) == pytest.approx(math.hypot(x, y), abs=1e-9)
    assert max_caliper_mm(mask, affine) == pytest.approx(math.sqrt(x * x + y * y + z * z), abs=1e-9)
    m = measure_lesion(mask, affine, volume.voxel_volume_mm3)
    assert m.volume_cm3 == pytest.approx(7 * 16 * 22 * 3.0 * 0.7 * 0.9 / 1000)


def test_box_in_coronal_series_uses_axial_planes_not_slices():
    spacing = (1.5, 1.2, 0.6)  # slice along y (A-P), rows along -z, columns along x
    mask = np.zeros((20, 20, 40), bool)
    mask[3:13, 2:17, 4:30] = True  # 10 slices (y), 15 rows (z), 26 columns (x)
    volume = Volume(
        np.zeros(mask.shape, np.float32),
        spacing,
        (-7.0, 12.0, 60.0),
        row_direction=CORONAL[2],
        column_direction=CORONAL[1],
        slice_direction=CORONAL[0],
    )
    affine = volume.affine_lps()
    x, y, z = 25 * 0.6, 9 * 1.5, 14 * 1.2
    assert longest_axial_diameter_mm(mask, affine) == pytest.approx(math.hypot(x, y), abs=1e-9)
    assert longest_axial_diameter_mm(mask, affine) != pytest.approx(math.hypot(x, z), abs=0.5)
    assert max_caliper_mm(mask, affine) == pytest.approx(math.sqrt(x * x + y * y + z * z), abs=1e-9)


def test_in_plane_rotation_keeps_the_box_diagonal():
    mask = np.zeros((5, 12, 12), bool)
    mask[1:4, 2:9, 3:11] = True
    spacing = (2.5, 0.5, 0.5)
    directions = _oblique(_rotation_z(37))
    volume = Volume(
        np.zeros(mask.shape, np.float32),
        spacing,
        (0.0, 0.0, 0.0),
        row_direction=directions[2],
        column_direction=directions[1],
        slice_direction=directions[0],
    )
    assert longest_axial_diameter_mm(mask, volume.affine_lps()) == pytest.approx(math.hypot(3.0, 3.5), abs=1e-9)


def test_degenerate_masks():
    affine = np.diag([2.0, 0.8, 0.9, 1.0])[[2, 1, 0, 3]]  # axial: slice index -> z, row -> y, column -> x
    mask = np.zeros((5, 6, 7), bool)
    assert longest_axial_diameter_mm(mask, affine) == 0.0
    assert max_caliper_mm(mask, affine) == 0.0
    mask[2, 3, 3] = True  # one voxel: centre to centre, 0 mm
    assert longest_axial_diameter_mm(mask, affine) == 0.0
    assert max_caliper_mm(mask, affine) == 0.0
    mask[2, 3, 3:6] = True  # a line of three voxels along columns (0.9 mm apart)
    assert longest_axial_diameter_mm(mask, affine) == pytest.approx(1.8)
    assert max_caliper_mm(mask, affine) == pytest.approx(1.8)
    mask[:] = False
    mask[0:4, 1, 1] = True  # a vertical line: long in 3-D, a point in every axial plane
    assert longest_axial_diameter_mm(mask, affine) == 0.0
    assert max_caliper_mm(mask, affine) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        max_caliper_mm(mask, np.zeros((4, 4)))
    # with the identity-like diagonal affine the slice index runs along x: the same line is axial
    assert longest_axial_diameter_mm(mask, np.diag([2.0, 0.8, 0.9, 1.0])) == pytest.approx(6.0)


# --------------------------------------------------------------------------- surface distances / HD95


def test_hd95_of_concentric_spheres_is_the_radius_difference():
    r1, r2 = 14.0, 9.0
    big, volume = _sphere(AXIAL, r1)
    _, points = _grid(AXIAL, SPACING, r1)
    small = np.linalg.norm(points - CENTRE, axis=-1) <= r2
    hd = hd95_mm(big, small, volume.spacing_mm)
    assert hd == pytest.approx(r1 - r2, abs=1.0)
    a_to_b, b_to_a = surface_distances_mm(big, small, volume.spacing_mm)
    assert np.median(a_to_b) == pytest.approx(r1 - r2, abs=1.0)
    assert np.median(b_to_a) == pytest.approx(r1 - r2, abs=1.0)
    assert hd95_mm(small, big, volume.spacing_mm) == hd


def test_hd95_identity_and_empty_masks():
    mask, volume = _sphere(AXIAL, 6.0)
    assert hd95_mm(mask, mask, volume.spacing_mm) == 0.0
    empty = np.zeros_like(mask)
    assert hd95_mm(mask, empty, volume.spacing_mm) is None
    assert hd95_mm(empty, mask, volume.spacing_mm) is None
    assert hd95_mm(empty, empty, volume.spacing_mm) == 0.0
    with pytest.raises(ValueError):
        surface_distances_mm(mask, empty, volume.spacing_mm)


def test_surface_distances_use_anisotropic_spacing():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[2, 5, 5] = True
    b[5, 5, 5] = True  # 3 slices away
    assert hd95_mm(a, b, (2.0, 0.8, 0.9)) == pytest.approx(6.0)
    b[:] = False
    b[2, 8, 1] = True  # 3 rows, 4 columns away
    assert hd95_mm(a, b, (2.0, 0.8, 0.9)) == pytest.approx(math.hypot(2.4, 3.6))


def test_hd95_is_the_max_of_the_directed_percentiles():
    a = np.zeros((3, 3, 30), bool)
    a[1, 1, 1] = True
    b = a.copy()
    b[1, 1, 21] = True  # b has a second surface voxel 20 columns (10 mm) away
    # a->b: [0]; b->a: [0, 10]; directed P95 = 9.5 (pooled over [0, 0, 10] it would be 9.0)
    assert hd95_mm(a, b, (1.0, 1.0, 0.5)) == pytest.approx(9.5)
    a_to_b, b_to_a = surface_distances_mm(a, b, (1.0, 1.0, 0.5))
    assert a_to_b.tolist() == [0.0]
    assert sorted(b_to_a.tolist()) == [0.0, 10.0]


def test_surface_of_a_solid_box_is_its_shell():
    a = np.zeros((8, 8, 8), bool)
    a[1:7, 1:7, 1:7] = True  # 6³ box, 4³ interior
    a_to_b, _ = surface_distances_mm(a, a, (1.0, 1.0, 1.0))
    assert len(a_to_b) == 6**3 - 4**3


# --------------------------------------------------------------------------- change


def test_volume_change_and_growth_rate():
    assert volume_change(10.0, 12.0) == pytest.approx((2.0, 20.0))
    assert volume_change(8.0, 6.0) == pytest.approx((-2.0, -25.0))
    assert volume_change(0.0, 5.0) == (5.0, None)
    assert growth_rate_cm3_per_day(10.0, 13.0, 30.0) == pytest.approx(0.1)
    assert growth_rate_cm3_per_day(10.0, 7.0, 60.0) == pytest.approx(-0.05)
    assert growth_rate_cm3_per_day(10.0, 13.0, 0.0) is None
    assert growth_rate_cm3_per_day(10.0, 13.0, -3.0) is None
    with pytest.raises(ValueError):
        volume_change(-1.0, 2.0)


T_2 = 4.302652729911275  # t_{0.975, 2}
T_3 = 3.182446305284263  # t_{0.975, 3}
# fused volumes reported at visits A and B, and the fusion re-run with each voter left out (cm³)
FUSED_A = FusedVolume(11.0, {"ada": 10.0, "bob": 11.5, "cyd": 12.0})
FUSED_B = FusedVolume(14.0, {"ada": 12.0, "bob": 14.0, "cyd": 15.0})


def test_change_interval_is_around_the_reported_change_with_paired_replicates() -> None:
    ci = change_ci95(FUSED_A, FUSED_B, "percent_change")
    assert isinstance(ci, JackknifeCI)
    estimate = 100 * (14 - 11) / 11  # the fused volumes' change: 27.27 %, not the replicates' mean
    replicates = [100 * 2 / 10, 100 * 2.5 / 11.5, 100 * 3 / 12]  # ada, bob, cyd left out at both visits
    mean = sum(replicates) / 3
    se = math.sqrt(2 / 3 * sum((r - mean) ** 2 for r in replicates))
    assert ci.n_experts == 3
    assert ci.estimate == pytest.approx(estimate)
    assert ci.standard_error == pytest.approx(se)
    assert (ci.low, ci.high) == pytest.approx((estimate - T_2 * se, estimate + T_2 * se))
    assert (ci.low + ci.high) / 2 == pytest.approx(estimate)
    assert stats.t.ppf(0.975, 2) == pytest.approx(T_2)


def test_change_interval_of_the_difference_in_cm3() -> None:
    ci = change_ci95(FUSED_A, FUSED_B, "delta_cm3")
    assert ci is not None and ci.estimate == pytest.approx(3.0)
    # replicates 2.0, 2.5, 3.0: mean 2.5, squared deviations 0.25 + 0 + 0.25
    assert ci.standard_error == pytest.approx(math.sqrt(2 / 3 * 0.5))
    assert (ci.low, ci.high) == pytest.approx((3.0 - T_2 * ci.standard_error, 3.0 + T_2 * ci.standard_error))


def test_an_expert_voting_at_one_visit_only_leaves_the_other_visit_as_reported() -> None:
    """Panels that differ: the replicate of an expert that did not vote at a visit keeps that visit's volume."""
    follow_up = FusedVolume(14.0, {"ada": 12.0, "bob": 15.0, "dan": 13.0})  # cyd skipped, dan new
    ci = change_ci95(FUSED_A, follow_up, "delta_cm3")
    assert ci is not None and ci.n_experts == 4
    replicates = [12.0 - 10.0, 15.0 - 11.5, 14.0 - 12.0, 13.0 - 11.0]  # ada, bob, cyd (B as reported), dan (A)
    mean = sum(replicates) / 4
    se = math.sqrt(3 / 4 * sum((r - mean) ** 2 for r in replicates))
    assert ci.standard_error == pytest.approx(se)
    assert ci.high == pytest.approx(3.0 + T_3 * se)


def test_change_interval_undefined_cases() -> None:
    assert change_ci95(FusedVolume(10.0), FUSED_B) is None  # a job that stored no leave-one-out volumes
    single = FusedVolume(10.0, {}, ("ada",))  # one voter: nothing left to fuse without it
    assert change_ci95(single, FusedVolume(12.0, {}, ("ada",))) is None
    assert change_ci95(single, FUSED_B) is None  # ada's replicate at A is undefined
    zero = FusedVolume(0.0, {"ada": 0.0, "bob": 0.0})
    assert change_ci95(zero, FusedVolume(1.0, {"ada": 1.0, "bob": 2.0})) is None  # % of a zero baseline
    assert change_ci95(zero, FusedVolume(1.0, {"ada": 1.0, "bob": 2.0}), "delta_cm3") is not None
    same = change_ci95(FUSED_A, FUSED_A)
    assert same is not None and (same.estimate, same.standard_error, same.low, same.high) == pytest.approx((0, 0, 0, 0))
    assert jackknife_interval(1.0, [1.0]) is None and jackknife_interval(None, [1.0, 2.0]) is None
    assert jackknife_interval(1.0, [1.0, None]) is None


def test_volume_ci95_is_around_the_fused_volume() -> None:
    ci = volume_ci95(11.0, {"a": 10.0, "b": 12.0, "c": 11.5})
    # the replicates' mean is 11.1667, the reported (fused) volume 11.0: the interval is centred on 11.0
    assert ci is not None and ci.estimate == pytest.approx(11.0) and ci.n_experts == 3
    replicates = [10.0, 12.0, 11.5]
    mean = sum(replicates) / 3
    assert ci.standard_error == pytest.approx(math.sqrt(2 / 3 * sum((r - mean) ** 2 for r in replicates)))
    assert ci.low == pytest.approx(11.0 - T_2 * ci.standard_error)
    assert ci.high == pytest.approx(11.0 + T_2 * ci.standard_error)
    assert volume_ci95(10.0, {}) is None and volume_ci95(10.0, None) is None
    same = volume_ci95(5.0, {"a": 5.0, "b": 5.0})
    assert same is not None and same.low == same.high == 5.0
