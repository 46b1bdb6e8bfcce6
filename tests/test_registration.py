"""Registration component: Volume <-> SimpleITK conversion, preprocessing, affine registration of a real
brain (Colin27) moved by a known affine, warping of masks, landmark errors.

The elastix tests run only where itk-elastix is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from oncoflow_registration import (
    brain_landmarks_mm,
    from_sitk,
    head_mask,
    mask_to_sitk,
    normalized_cross_correlation,
    prepare_for_registration,
    register_affine,
    resample_to,
    target_registration_error_mm,
    to_sitk,
)
from oncoflow_registration import warp as warp_module
from oncoflow_registration.affine_registration import elastix_maps_to_affine
from oncoflow_registration.preprocess import resample_isotropic

from oncoflow.core.volume import Volume

COLIN27 = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
TEST_SPACING_MM = 2.0
SQRT_HALF = float(np.sqrt(0.5))
ITK_SWIG_WARNINGS = "ignore:builtin type:DeprecationWarning"  # itk's SWIG wrappers on Python 3.11


# --------------------------------------------------------------------------------------------------- helpers


def make_volume(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    row: tuple[float, float, float],
    column: tuple[float, float, float],
    slice_: tuple[float, float, float],
    origin_mm: tuple[float, float, float] = (-40.0, 25.5, 10.0),
    seed: int = 0,
) -> Volume:
    voxels = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return Volume(voxels, spacing_mm, origin_mm, row, column, slice_)


GEOMETRIES = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "axial left-handed": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "oblique": ((SQRT_HALF, SQRT_HALF, 0.0), (0.0, 0.0, -1.0), (-SQRT_HALF, SQRT_HALF, 0.0)),
}


def known_affine(center_mm: tuple[float, float, float]) -> sitk.AffineTransform:
    """Fixed -> moving: 6 degrees about L-R and about S-I, 3 % larger, shifted (6, -4, 4) mm (|t| = 8.2 mm)."""
    transform = sitk.AffineTransform(3)
    transform.SetCenter(center_mm)
    transform.Rotate(1, 2, np.deg2rad(6.0))  # about x (L-R)
    transform.Rotate(0, 1, np.deg2rad(-6.0))  # about z (S-I)
    transform.Scale(1.03)
    transform.Translate((6.0, -4.0, 4.0))
    return transform


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def baseline() -> Volume:
    """Colin27 (skull-stripped), smoothed and resampled to 2 mm, as an axial Volume."""
    assert COLIN27.exists(), f"{COLIN27} is missing: make test installs mricron-data (scripts/bootstrap.sh)"
    image = sitk.Cast(sitk.ReadImage(str(COLIN27)), sitk.sitkFloat32)
    image = sitk.DICOMOrient(image, "LPS")
    image = resample_isotropic(sitk.SmoothingRecursiveGaussian(image, TEST_SPACING_MM / 2), TEST_SPACING_MM)
    return from_sitk(image)


@pytest.fixture(scope="module")
def true_transform(baseline: Volume) -> sitk.AffineTransform:
    center = baseline.affine_lps() @ np.array([*(np.array(baseline.shape) / 2), 1.0])
    return known_affine(tuple(center[:3]))


@pytest.fixture(scope="module")
def follow_up(baseline: Volume, true_transform: sitk.AffineTransform) -> Volume:
    """The baseline moved by ``true_transform`` on a larger grid, with a smooth 30 % bias field and noise."""
    fixed = to_sitk(baseline)
    grid = sitk.Image([s + 10 for s in fixed.GetSize()], sitk.sitkFloat32)
    grid.SetSpacing(fixed.GetSpacing())
    grid.SetDirection(fixed.GetDirection())
    grid.SetOrigin(tuple(np.array(fixed.GetOrigin()) - 5 * TEST_SPACING_MM))
    # moving(y) = fixed(T^-1(y)), so that T maps fixed points onto the same anatomy in the moving image
    moved = from_sitk(sitk.Resample(fixed, grid, true_transform.GetInverse(), sitk.sitkLinear, 0.0))
    ramp = np.linspace(0.85, 1.15, moved.shape[2], dtype=np.float32)[None, None, :]
    noise = np.random.default_rng(7).normal(0.0, 1.0, moved.shape).astype(np.float32)
    voxels = np.where(moved.voxels > 0, moved.voxels * ramp + noise, 0.0).astype(np.float32)
    return Volume(voxels, moved.spacing_mm, moved.origin_mm, moved.row_direction, moved.column_direction,
                  moved.slice_direction)


@pytest.fixture(scope="module")
def prepared(baseline: Volume, follow_up: Volume) -> tuple[sitk.Image, sitk.Image]:
    fixed = prepare_for_registration(baseline, spacing_mm=TEST_SPACING_MM)
    moving = prepare_for_registration(follow_up, spacing_mm=TEST_SPACING_MM)
    return fixed, moving


@pytest.fixture(scope="module")
def landmarks(prepared: tuple[sitk.Image, sitk.Image]) -> np.ndarray:
    return brain_landmarks_mm(prepared[0])


# --------------------------------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_sitk_round_trip_keeps_voxels_and_geometry(name: str) -> None:
    row, column, slice_ = GEOMETRIES[name]
    volume = make_volume((5, 7, 9), (3.0, 0.8, 0.9), row, column, slice_)
    image = to_sitk(volume)

    assert image.GetSize() == (9, 7, 5)
    assert image.GetSpacing() == pytest.approx((0.9, 0.8, 3.0))
    assert image.GetOrigin() == pytest.approx(volume.origin_mm)
    assert image.GetPixelID() == sitk.sitkFloat32
    back = from_sitk(image)
    np.testing.assert_array_equal(back.voxels, volume.voxels)
    for attribute in ("spacing_mm", "origin_mm", "row_direction", "column_direction", "slice_direction"):
        assert getattr(back, attribute) == pytest.approx(getattr(volume, attribute), abs=1e-12)
    assert from_sitk(image, like=volume).origin_mm == volume.origin_mm


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_index_to_physical_point_matches_volume_affine(name: str) -> None:
    row, column, slice_ = GEOMETRIES[name]
    volume = make_volume((5, 7, 9), (3.0, 0.8, 0.9), row, column, slice_)
    image = to_sitk(volume)
    for s, r, c in [(0, 0, 0), (4, 6, 8), (2, 3, 1), (1.5, 0.25, 7.75)]:
        expected = volume.affine_lps() @ np.array([s, r, c, 1.0])
        assert image.TransformContinuousIndexToPhysicalPoint((c, r, s)) == pytest.approx(expected[:3], abs=1e-9)


def test_mask_round_trip_is_uint8() -> None:
    volume = make_volume((4, 5, 6), (2.0, 1.0, 1.0), *GEOMETRIES["coronal"])
    mask = volume.voxels > 0.5
    image = mask_to_sitk(mask, volume)
    assert image.GetPixelID() == sitk.sitkUInt8
    back = from_sitk(image, like=volume)
    assert back.voxels.dtype == np.uint8
    np.testing.assert_array_equal(back.voxels, mask.astype(np.uint8))


def test_from_sitk_refuses_a_different_grid() -> None:
    volume = make_volume((4, 5, 6), (2.0, 1.0, 1.0), *GEOMETRIES["axial"])
    image = to_sitk(volume)
    image.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        from_sitk(image, like=volume)


# --------------------------------------------------------------------------------------------------- preprocessing


def test_prepare_gives_the_same_image_for_axial_and_coronal_storage(baseline: Volume) -> None:
    """DICOMOrient: the same anatomy stored as coronal slices gives the same registration image."""
    axial = baseline.voxels  # (z: S, y: P, x: L), identity directions
    n_z = axial.shape[0]
    coronal = Volume(
        voxels=np.ascontiguousarray(axial[::-1].transpose(1, 0, 2)),  # (y, -z, x)
        spacing_mm=(baseline.spacing_mm[1], baseline.spacing_mm[0], baseline.spacing_mm[2]),
        origin_mm=tuple(baseline.affine_lps() @ np.array([n_z - 1, 0, 0, 1.0]))[:3],
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 0.0, -1.0),
        slice_direction=(0.0, 1.0, 0.0),
    )
    a = prepare_for_registration(baseline, spacing_mm=TEST_SPACING_MM, bias_correction=False)
    b = prepare_for_registration(coronal, spacing_mm=TEST_SPACING_MM, bias_correction=False)
    assert b.GetDirection() == pytest.approx(np.eye(3).ravel())
    assert b.GetOrigin() == pytest.approx(a.GetOrigin())
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(b), sitk.GetArrayViewFromImage(a), atol=1e-5)


def test_prepare_normalises_inside_the_head(prepared: tuple[sitk.Image, sitk.Image]) -> None:
    fixed, _ = prepared
    assert fixed.GetSpacing() == pytest.approx((TEST_SPACING_MM,) * 3)
    values = sitk.GetArrayViewFromImage(fixed)[sitk.GetArrayViewFromImage(head_mask(fixed)) > 0]
    assert abs(values.mean()) < 0.05
    assert values.std() == pytest.approx(1.0, abs=0.05)


def test_brain_mask_hook_blanks_the_outside(baseline: Volume) -> None:
    brain = sitk.Cast(to_sitk(baseline) > 60, sitk.sitkUInt8)  # a crude "brain extraction"
    image = prepare_for_registration(baseline, brain_mask=brain, spacing_mm=TEST_SPACING_MM, bias_correction=False)
    array = sitk.GetArrayViewFromImage(image)
    outside = sitk.GetArrayViewFromImage(brain) == 0
    assert np.ptp(array[outside]) == pytest.approx(0.0, abs=1e-5)


# --------------------------------------------------------------------------------------------------- registration


def check_recovers_known_affine(result, true_transform: sitk.AffineTransform, landmarks: np.ndarray) -> None:
    tre = target_registration_error_mm(result.transform, true_transform, landmarks)
    assert len(landmarks) >= 15
    assert float(np.median(tre)) <= 1.0, tre
    assert float(tre.max()) <= TEST_SPACING_MM, tre
    assert result.ncc_after > result.ncc_before
    assert result.ncc_after > 0.9
    assert isinstance(result.transform, sitk.AffineTransform)


def test_sitk_registration_recovers_a_known_affine(prepared, true_transform, landmarks) -> None:
    result = register_affine(*prepared, method="sitk")
    assert result.method == "sitk"
    check_recovers_known_affine(result, true_transform, landmarks)
    assert result.seconds < 30


def test_elastix_falls_back_to_sitk_when_itk_is_missing(prepared, true_transform, landmarks, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "itk", None)  # import itk -> ImportError
    result = register_affine(*prepared, method="elastix")
    assert result.method.startswith("sitk (elastix not installed: ")
    check_recovers_known_affine(result, true_transform, landmarks)


@pytest.fixture(scope="module")
def elastix_result(prepared):
    return register_affine(*prepared, method="elastix")


@pytest.mark.filterwarnings(ITK_SWIG_WARNINGS)
def test_elastix_registration_recovers_a_known_affine(elastix_result, true_transform, landmarks) -> None:
    assert elastix_result.method == "elastix"
    check_recovers_known_affine(elastix_result, true_transform, landmarks)


@pytest.mark.filterwarnings(ITK_SWIG_WARNINGS)
def test_elastix_conversion_maps_points_like_transformix(elastix_result, prepared, landmarks, tmp_path) -> None:
    import itk  # itk-elastix: in requirements.lock, never optional in the tests
    maps = elastix_result.parameters["transform_parameter_maps"]
    assert [m["Transform"][0] for m in maps] == ["EulerTransform", "AffineTransform"]
    parameter_object = itk.ParameterObject.New()
    for parameter_map in maps:
        parameter_object.AddParameterMap(parameter_map)
    points = np.vstack([landmarks[:5], [[0.0, 0.0, 0.0], [60.0, -80.0, 40.0]]])
    point_file = tmp_path / "points.txt"
    point_file.write_text(f"point\n{len(points)}\n" + "".join(" ".join(f"{v:.6f}" for v in p) + "\n" for p in points))
    moving = itk.image_from_array(sitk.GetArrayFromImage(prepared[1]))
    itk.transformix_pointset(moving, parameter_object, fixed_point_set_file_name=str(point_file),
                             output_directory=str(tmp_path))
    transformix = np.array([
        [float(v) for v in line.split("OutputPoint = [")[1].split("]")[0].split()]
        for line in (tmp_path / "outputpoints.txt").read_text().splitlines()
        if "OutputPoint" in line
    ])
    converted = np.array([elastix_maps_to_affine(maps).TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(converted, transformix, atol=1e-3)  # transformix prints 6 decimals
    result = np.array([elastix_result.transform.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(result, transformix, atol=1e-3)


def test_ncc_of_an_image_with_itself_is_one(prepared) -> None:
    fixed, _ = prepared
    assert normalized_cross_correlation(fixed, fixed) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------- warp


def cube_volume(origin_mm=(0.0, 0.0, 0.0), geometry: str = "axial") -> Volume:
    voxels = np.zeros((20, 20, 20), dtype=np.float32)
    voxels[6:12, 6:12, 6:12] = 1.0
    return Volume(voxels, (2.0, 2.0, 2.0), origin_mm, *GEOMETRIES[geometry])


def test_warp_of_a_mask_lands_a_shifted_cube_where_expected() -> None:
    reference = cube_volume()
    # the follow-up mask is the same cube, stored on a grid whose origin is 6 mm further left (+x)
    moving = cube_volume(origin_mm=(6.0, 0.0, 0.0))
    # the anatomy moved 6 mm: a baseline point x maps to x + 6 mm in the follow-up
    shift = sitk.TranslationTransform(3, (6.0, 0.0, 0.0))
    warped = resample_to(reference, moving, shift, is_mask=True)
    assert warped.dtype == np.uint8
    np.testing.assert_array_equal(warped, reference.voxels.astype(np.uint8))

    warped_without_shift = resample_to(reference, moving, None, is_mask=True)
    expected = np.zeros_like(warped_without_shift)
    expected[6:12, 6:12, 9:15] = 1  # 6 mm = 3 columns towards +x
    np.testing.assert_array_equal(warped_without_shift, expected)


def test_warp_of_a_mask_uses_nearest_neighbour_only(monkeypatch) -> None:
    reference = cube_volume()
    moving = cube_volume()
    rotation = sitk.Euler3DTransform((18.0, 18.0, 18.0), 0.2, 0.1, 0.3, (1.3, -0.7, 0.4))
    interpolators: list[int] = []
    real_resample = sitk.Resample

    def spy(*args, **kwargs):
        interpolators.append(args[3])
        return real_resample(*args, **kwargs)

    monkeypatch.setattr(warp_module.sitk, "Resample", spy)
    mask = resample_to(reference, mask_to_sitk(moving.voxels, moving), rotation, is_mask=True)
    image = resample_to(reference, moving, rotation, is_mask=False)
    assert interpolators == [sitk.sitkNearestNeighbor, sitk.sitkLinear]
    assert set(np.unique(mask)) <= {0, 1}
    assert mask.sum() > 0
    assert image.dtype == np.float32
    assert np.any((image > 0.01) & (image < 0.99))  # linear blends


# --------------------------------------------------------------------------------------------------- landmarks


def test_brain_landmarks_are_reproducible_and_inside_the_brain(baseline: Volume) -> None:
    points = brain_landmarks_mm(baseline)
    assert points.shape == (20, 3)
    np.testing.assert_array_equal(points, brain_landmarks_mm(baseline))
    mask = head_mask(to_sitk(baseline))
    for p in points:
        index = mask.TransformPhysicalPointToIndex(tuple(p))
        assert mask[index] == 1


def test_target_registration_error_measures_the_difference_of_mapped_points() -> None:
    points = np.array([[0.0, 0.0, 0.0], [10.0, -20.0, 30.0]])
    identity = sitk.AffineTransform(3)
    assert target_registration_error_mm(identity, identity, points) == pytest.approx([0.0, 0.0])
    shifted = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    assert target_registration_error_mm(shifted, identity, points) == pytest.approx([5.0, 5.0])
