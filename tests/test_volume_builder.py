"""Volume building from DICOM headers and pixels: geometry, rescale and every refusal."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import InputError, build_volume, check_headers
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets


def oblique_volume(n_slices: int = 12) -> Volume:
    angle = np.deg2rad(17.0)
    c, s = float(np.cos(angle)), float(np.sin(angle))
    row, col = (c, 0.0, -s), (0.0, 1.0, 0.0)
    normal = tuple(np.cross(row, col))
    voxels = np.random.default_rng(1).uniform(0, 1000, (n_slices, 24, 30)).astype(np.float32)
    return Volume(voxels, (2.5, 1.25, 0.8), (-40.0, -55.0, 12.0), row, col, normal)


def datasets(volume: Volume, rescale_slope: float | None = None) -> list:
    return series_datasets(volume, StudyInfo(), SeriesInfo(generate_uid()), rescale_slope=rescale_slope)


def test_oblique_shuffled_series_rebuilds_geometry_and_pixels() -> None:
    volume = oblique_volume()
    shuffled = datasets(volume, rescale_slope=0.25)
    random.Random(3).shuffle(shuffled)
    built = build_volume(shuffled, max_voxels=10**7).volume
    assert built.shape == volume.shape
    np.testing.assert_allclose(built.spacing_mm, volume.spacing_mm, atol=1e-3)
    np.testing.assert_allclose(built.affine_lps(), volume.affine_lps(), atol=1e-3)
    # 12-bit storage of values in 0..1000 with slope 0.25: error at most half a step
    assert np.abs(built.voxels - volume.voxels).max() <= 0.125 + 1e-4


def test_reverse_slice_order_keeps_patient_positions() -> None:
    volume = oblique_volume()
    built = build_volume(list(reversed(datasets(volume))), max_voxels=10**7)
    positions = [tuple(map(float, ds.ImagePositionPatient)) for ds in built.datasets]
    np.testing.assert_allclose(positions, [volume.slice_position_mm(i) for i in range(volume.shape[0])], atol=1e-3)


def refused(series: list, max_voxels: int = 10**7) -> str:
    with pytest.raises(InputError) as info:
        build_volume(series, max_voxels)
    return str(info.value)


def test_non_mr_is_refused() -> None:
    series = series_datasets(oblique_volume(), StudyInfo(), SeriesInfo(generate_uid(), modality="CT"))
    assert "not MR" in refused(series)


def test_single_slice_is_refused() -> None:
    assert "single slice" in refused(datasets(oblique_volume())[:1])


def test_missing_slice_is_named() -> None:
    series = datasets(oblique_volume())
    del series[5]
    message = refused(series)
    assert "missing slice" in message and "1 slice(s) missing" in message


def test_inconsistent_spacing_is_named() -> None:
    series = datasets(oblique_volume())
    for ds in series[6:]:
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = list(np.asarray(ds.ImagePositionPatient, float) + 0.9 * normal)
    assert "inconsistent slice spacing" in refused(series)


def test_four_d_series_is_refused() -> None:
    volume = oblique_volume()
    phase_2 = datasets(volume)
    for ds in phase_2:
        ds.SOPInstanceUID = generate_uid()
    assert "4-D series" in refused(datasets(volume) + phase_2)


def test_rgb_is_refused() -> None:
    series = datasets(oblique_volume())
    series[0].SamplesPerPixel = 3
    series[0].PhotometricInterpretation = "RGB"
    assert "RGB" in refused(series)


def test_mixed_sizes_are_refused() -> None:
    series = datasets(oblique_volume())
    series[2].Rows = 12
    assert "mixed image sizes" in refused(series)


def test_size_limit_is_checked_before_decoding() -> None:
    series = datasets(oblique_volume())
    for ds in series:
        del ds.PixelData  # would fail to decode: the limit must be hit first
    assert "exceeds the limit" in refused(series, max_voxels=1000)


def test_corrupt_pixel_data_is_refused() -> None:
    series = datasets(oblique_volume())
    series[4].PixelData = series[4].PixelData[:100]
    message = refused(series)
    assert "corrupt pixel data" in message and series[4].SOPInstanceUID in message


def test_instances_without_image_size_are_refused_clearly() -> None:
    volume = Volume(np.zeros((4, 8, 8), np.float32), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0),
                    (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    datasets = series_datasets(volume, StudyInfo(), SeriesInfo(generate_uid()))
    del datasets[2].Rows
    with pytest.raises(InputError, match="without Rows: not an image series"):
        check_headers(datasets, 10_000)


def compressible_volume() -> Volume:
    """Six 64 x 64 axial slices: OpenJPEG's default five decomposition levels need 32 pixels a side or more."""
    voxels = np.random.default_rng(2).uniform(0, 1000, (6, 64, 64)).astype(np.float32)
    return Volume(voxels, (3.0, 1.0, 1.0), (-32.0, -32.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_losslessly_compressed_series_gives_the_stored_values(syntax: UID) -> None:
    volume = compressible_volume()
    series = datasets(volume)
    for ds in series:
        ds.compress(syntax)  # pydicom's own RLE encoder, pyjpegls, pylibjpeg-openjpeg
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in series} == {syntax}
    built = build_volume(series, max_voxels=10**7).volume
    np.testing.assert_array_equal(built.voxels, np.round(volume.voxels))  # values 0..1000 stored as round(voxel)


@pytest.mark.parametrize(("syntax", "named"), [
    ("1.2.840.10008.1.2.4.92", "pixel data in JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) "
                               "(1.2.840.10008.1.2.4.92) cannot be decoded here"),
    # JPEG XL Lossless: pydicom 3.0 has no decoder, and names it only once pynetdicom 3 has added it to its UIDs
    ("1.2.840.10008.1.2.4.110", "1.2.840.10008.1.2.4.110"),
])
def test_undecodable_transfer_syntax_is_named(syntax: str, named: str) -> None:
    series = datasets(compressible_volume())
    for ds in series:
        ds.compress(JPEG2000Lossless)
        ds.file_meta.TransferSyntaxUID = syntax
    reason = refused(series)
    assert named in reason and reason.startswith("pixel data in ") and reason.endswith(" cannot be decoded here")
