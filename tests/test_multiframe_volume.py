"""Volumes from multi-frame MR objects: Legacy Converted Enhanced MR (highdicom, from a classic series) and a
hand-built Enhanced MR with two stacks (one axial, one sagittal), checked against the volumes the objects were
made from; the selection of a stack; the SEG of a multi-frame source; every refusal's message."""

from __future__ import annotations

import copy
import io
import random

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from oncoflow.core.volume import Volume
from oncoflow.dicom.seg_writer import AlgorithmInfo, read_source_mask, write_segmentation
from oncoflow.dicom.series_selection import SeriesCandidate, select_sequences
from oncoflow.dicom.volume_builder import InputError, build_volume
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets

from .enhanced_mr_objects import StackSpec, enhanced_mr, legacy_converted


def axial_stack(n_slices: int = 6) -> Volume:
    voxels = np.random.default_rng(2).integers(0, 800, (n_slices, 16, 20)).astype(np.float32) * 2
    return Volume(voxels, (3.0, 1.5, 1.25), (-20.0, -30.0, 10.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def sagittal_stack(n_slices: int = 5) -> Volume:
    voxels = np.random.default_rng(3).integers(0, 900, (n_slices, 16, 20)).astype(np.float32)
    # rows run anterior to posterior (+y), columns head to foot (-z), slices along row x column: left to right (-x)
    return Volume(voxels, (4.0, 0.9, 1.1), (-8.0, -40.0, 60.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0))


def oblique_classic_series() -> tuple[Volume, list[pydicom.Dataset]]:
    angle = np.deg2rad(14.0)
    c, s = float(np.cos(angle)), float(np.sin(angle))
    row, col = (c, 0.0, -s), (0.0, 1.0, 0.0)
    voxels = np.random.default_rng(4).integers(0, 1000, (10, 18, 22)).astype(np.float32)
    volume = Volume(voxels, (2.0, 1.2, 0.9), (-30.0, -45.0, 5.0), row, col, tuple(np.cross(row, col)))
    return volume, series_datasets(volume, StudyInfo(study_instance_uid=generate_uid()), SeriesInfo(generate_uid()))


def roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The object as a peer receives it: saved as Part 10 and read again."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def assert_same_volume(built: Volume, expected: Volume) -> None:
    assert built.shape == expected.shape
    np.testing.assert_allclose(built.spacing_mm, expected.spacing_mm, atol=1e-3)
    np.testing.assert_allclose(built.origin_mm, expected.origin_mm, atol=1e-3)
    for got, want in ((built.row_direction, expected.row_direction),
                      (built.column_direction, expected.column_direction),
                      (built.slice_direction, expected.slice_direction)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_array_equal(built.voxels, expected.voxels)


def test_legacy_converted_object_gives_the_classic_series_volume() -> None:
    volume, classic = oblique_classic_series()
    random.Random(1).shuffle(classic)  # the converter keeps the order it is given: frames out of slice order
    converted = roundtrip(legacy_converted(classic))
    assert converted.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4.4" and converted.NumberOfFrames == 10
    built = build_volume([converted], max_voxels=10**6)
    assert_same_volume(built.volume, volume)
    # each slice is a frame of the one object, named by its frame number
    assert {str(ds.SOPInstanceUID) for ds in built.datasets} == {str(converted.SOPInstanceUID)}
    positions = [converted.PerFrameFunctionalGroupsSequence[ds.frame_number - 1].PlanePositionSequence[0]
                 .ImagePositionPatient for ds in built.datasets]
    np.testing.assert_allclose([float(p[0]) for p in positions],
                               [volume.origin_mm[0] + i * volume.spacing_mm[0] * volume.slice_direction[0]
                                for i in range(10)], atol=1e-3)


def test_enhanced_mr_with_two_stacks_gives_one_volume_per_stack() -> None:
    axial, sagittal = axial_stack(), sagittal_stack()
    ds = roundtrip(enhanced_mr([StackSpec("1", axial, rescale_slope=2.0), StackSpec("2", sagittal)]))
    assert_same_volume(build_volume([ds], 10**6, stack_id="1").volume, axial)
    assert_same_volume(build_volume([ds], 10**6, stack_id="2").volume, sagittal)  # per-frame pixel measures win
    with pytest.raises(InputError, match=r"holds 2 stacks \(1, 2\); none was chosen"):
        build_volume([ds], 10**6)


def test_stacks_without_stack_id_are_split_by_orientation() -> None:
    axial, sagittal = axial_stack(), sagittal_stack()
    ds = enhanced_mr([StackSpec("1", axial), StackSpec("2", sagittal)])
    for groups in ds.PerFrameFunctionalGroupsSequence:
        del groups.FrameContentSequence[0].StackID
    ds = roundtrip(ds)
    assert_same_volume(build_volume([ds], 10**6, stack_id="sagittal").volume, sagittal)
    assert_same_volume(build_volume([ds], 10**6, stack_id="axial").volume, axial)


def test_the_voxel_limit_holds_before_decoding() -> None:
    ds = enhanced_mr([StackSpec("1", axial_stack())])
    ds.PixelData = b"\x00" * 10  # never decoded: the header check refuses first
    with pytest.raises(InputError, match=r"16x20x6 = 1920 voxels exceeds the limit of 1000"):
        build_volume([ds], max_voxels=1000)


def test_mixed_orientations_within_one_stack_are_named() -> None:
    ds = enhanced_mr([StackSpec("1", axial_stack()), StackSpec("1", sagittal_stack())])
    with pytest.raises(InputError, match=r"mixed orientations within stack 1: 2 different ImageOrientationPatient"):
        build_volume([ds], 10**6)


def test_missing_plane_position_is_named() -> None:
    ds = enhanced_mr([StackSpec("1", axial_stack())], shuffle_seed=None)
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    with pytest.raises(InputError, match=r"frame 4 has no plane position \(PlanePositionSequence"):
        build_volume([ds], 10**6)


def test_four_d_object_names_its_extra_dimension() -> None:
    ds = enhanced_mr([StackSpec("1", axial_stack())], extra_dimension=(3, "Temporal Position Index"))
    with pytest.raises(InputError, match=r"4-D multi-frame object: stack 1 has 18 frames at 6 positions, 3 frames "
                                         r"at one position along Temporal Position Index"):
        build_volume([ds], 10**6)


def test_missing_slices_in_a_stack_are_named() -> None:
    ds = enhanced_mr([StackSpec("1", axial_stack(8))], shuffle_seed=None)
    kept = [i for i in range(8) if i not in (4, 5)]
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([ds.PerFrameFunctionalGroupsSequence[i] for i in kept])
    frame_bytes = 16 * 20 * 2
    ds.PixelData = b"".join(ds.PixelData[i * frame_bytes:(i + 1) * frame_bytes] for i in kept)
    ds.NumberOfFrames = len(kept)
    with pytest.raises(InputError, match=r"missing slice\(s\): a gap of 9.00 mm .* \(2 slice\(s\) missing\)"):
        build_volume([ds], 10**6)


def test_selection_takes_the_larger_stack_and_names_it() -> None:
    def candidate(stack_id: str, frames: int) -> SeriesCandidate:
        return SeriesCandidate("orthanc-series", "1.2.3", "MR", frames, "T1 post-contrast", stack_id=stack_id)

    selection = select_sequences([candidate("1", 6), candidate("2", 40)], ["t1c", "t1", "flair"])
    assert selection.reference.candidate.stack_id == "2"
    chosen = selection.as_json()["sequences"]["t1c"]  # type: ignore[index]
    assert chosen["stack_id"] == "2" and "stack 2 of a multi-frame object" in chosen["reason"]
    assert any("series 1.2.3 stack 1" in reason for reason in selection.left_out)


def test_seg_of_a_multiframe_source_references_its_frames() -> None:
    axial, sagittal = axial_stack(), sagittal_stack()
    ds = roundtrip(enhanced_mr([StackSpec("1", axial), StackSpec("2", sagittal)]))
    stack = build_volume([ds], 10**6, stack_id="2")
    mask = np.zeros(sagittal.shape, dtype=np.uint8)
    mask[1:4, 4:9, 6:12] = 1
    seg = roundtrip(write_segmentation(stack.datasets, mask, AlgorithmInfo("test", "1"), "fingerprint"))
    np.testing.assert_array_equal(read_source_mask(seg, stack.datasets), mask)
    # every SEG frame names a frame of stack 2 of the source, at the SEG frame's own position
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == ds.SOPInstanceUID
        referenced = ds.PerFrameFunctionalGroupsSequence[int(source.ReferencedFrameNumber) - 1]
        assert referenced.FrameContentSequence[0].StackID == "2"
        np.testing.assert_allclose([float(v) for v in referenced.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], atol=1e-3)
    assert copy.deepcopy(stack.datasets[0]).SOPInstanceUID == ds.SOPInstanceUID
