"""DICOM-SEG encoding: highdicom round trip, codes, references, dciodvfy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import generate_uid

from oncoflow.core.volume import Volume
from oncoflow.dicom.seg_writer import AlgorithmInfo, read_segmentation_mask, write_segmentation
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets

from .conftest import required_tool


@pytest.fixture(scope="module")
def source() -> list:
    voxels = np.random.default_rng(0).uniform(0, 900, (10, 32, 32)).astype(np.float32)
    volume = Volume(voxels, (3.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    return series_datasets(volume, StudyInfo(), SeriesInfo(generate_uid()))


def test_seg_round_trip_codes_and_references(source: list) -> None:
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[3:7, 10:20, 12:18] = 1  # slices 0-2 and 7-9 stay empty: they must still be encoded
    seg = write_segmentation(source, mask, AlgorithmInfo("nnunet_demo", "1"), fingerprint="f1")
    assert seg.NumberOfFrames == 10
    uids = [ds.SOPInstanceUID for ds in source]
    np.testing.assert_array_equal(read_segmentation_mask(seg, uids), mask)
    segment = seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentAlgorithmName == "nnunet_demo"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    assert seg.StudyInstanceUID == source[0].StudyInstanceUID
    assert isinstance(hd.seg.Segmentation.from_dataset(seg), hd.seg.Segmentation)


def test_one_uid_names_one_content(source: list) -> None:
    """The same result keeps its UIDs (a re-run stores nothing new); any other content never reuses them."""
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[3:6, 10:20, 10:20] = 1
    one_voxel_more = mask.copy()
    one_voxel_more[7, 1, 1] = 1
    weights = AlgorithmInfo("m", "fold0-0123456789ab")
    first = write_segmentation(source, mask, weights, fingerprint="same")
    again = write_segmentation(source, mask.copy(), AlgorithmInfo("m", "fold0-0123456789ab"), fingerprint="same")
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (first.SOPInstanceUID, first.SeriesInstanceUID)
    others = [
        write_segmentation(source, one_voxel_more, weights, fingerprint="same"),  # another mask
        write_segmentation(source, mask, AlgorithmInfo("m", "fold0-fedcba987654"), fingerprint="same"),  # new weights
        write_segmentation(source, mask, weights, fingerprint="same", series_description="renamed"),
        write_segmentation(source, mask, weights, fingerprint="other"),  # other input
    ]
    uids = {first.SOPInstanceUID} | {other.SOPInstanceUID for other in others}
    series = {first.SeriesInstanceUID} | {other.SeriesInstanceUID for other in others}
    assert len(uids) == len(series) == 1 + len(others)


def test_dciodvfy_reports_no_error_or_warning(source: list, tmp_path: Path) -> None:
    dciodvfy = required_tool("dciodvfy")
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[4, 5:9, 5:9] = 1
    path = tmp_path / "seg.dcm"
    write_segmentation(source, mask, AlgorithmInfo("nnunet_demo", "1"), fingerprint="v").save_as(path)
    source[0].save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    for checked in (path, tmp_path / "mr.dcm"):
        report = subprocess.run([dciodvfy, str(checked)], capture_output=True, text=True).stderr
        assert "Error" not in report and "Warning" not in report, report


def test_segments_carry_their_display_colour(source: list) -> None:
    from oncoflow.dicom.seg_writer import ENSEMBLE_RGB, REFINED_RGB

    rows, columns = int(source[0].Rows), int(source[0].Columns)
    mask = np.zeros((len(source), rows, columns), np.uint8)
    mask[1, 2:4, 2:4] = 1
    for rgb in (ENSEMBLE_RGB, REFINED_RGB):
        seg = write_segmentation(source, mask, AlgorithmInfo("a", "1"), "fp", display_rgb=rgb)
        lab = seg.SegmentSequence[0].RecommendedDisplayCIELabValue
        assert hd.color.CIELabColor.from_dicom_value(lab).to_rgb() == pytest.approx(rgb, abs=2)
