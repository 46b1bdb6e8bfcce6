"""Multi-frame input end to end: a full-head T1c phantom sent by storescu as one Legacy Converted Enhanced MR
object, or as stack 1 of an Enhanced MR object with a second (sagittal) stack, gives SEGs whose frames reference
the object's frames; a 4-D Enhanced MR object fails its job with the reason.

The ensemble SEG is read back with pydicom alone: each SEG frame's ReferencedFrameNumber (0008,1160) names a frame
of the object, whose ConversionSourceAttributesSequence names the classic slice it was made from, so the mask is
put together on the phantom's own slice order and scored against the phantom's truth.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from oncoflow.core.volume import Volume
from oncoflow.phantoms.phantom_dicom import SeriesInfo, series_datasets, study_instance_uid
from oncoflow.phantoms.tumour_phantom import make_phantom

from .conftest import TEST_AET, Stack, unique_study
from .enhanced_mr_objects import StackSpec, enhanced_mr, legacy_converted
from .seg_oracle import dice
from .test_multiframe_volume import axial_stack

pytestmark = pytest.mark.e2e

LEGACY_CONVERTED_ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.4"


def push_file(stack: Stack, path: Path) -> str:
    """C-STORE one file, storescu proposing only its SOP class (-R) and transfer syntax; returns storescu's log."""
    result = subprocess.run(["storescu", "-v", "-R", "-aet", TEST_AET, "-aec", stack.settings.aet,
                             "127.0.0.1", str(stack.settings.dicom_port), str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"storescu of {path} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_legacy_converted_full_head_gives_a_seg_on_its_frames(stack: Stack, tmp_path: Path) -> None:
    phantom = make_phantom(9101, shape=(40, 64, 64))  # the phantom of test_e2e_pipeline, sent as classic slices there
    study = unique_study("multiframe-lcemr")
    classic = series_datasets(phantom.volume, study, SeriesInfo(generate_uid()))
    converted = legacy_converted(classic)
    path = tmp_path / "t1c-multiframe.dcm"
    converted.save_as(path, enforce_file_format=True)
    log = push_file(stack, path)
    assert "Received Store Response (Success)" in log  # the object's own SOP class proposed and accepted

    job = stack.wait_job(study.study_instance_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    outputs = job["outputs"]
    chosen = outputs["sequences"]["sequences"]["t1c"]
    assert chosen["stack_id"] == "1" and chosen["images"] == 40, chosen
    assert outputs["input_images"] == 40

    segs = {}
    for item in stack.seg_series(study.study_instance_uid):
        for instance in item["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file")))
            segs[str(ds.SOPInstanceUID)] = ds
    ensemble = segs[outputs["ensemble_seg_sop_instance_uid"]]
    _, study_series = stack.get(f"/studies/{stack.study_id(study.study_instance_uid)}/series")
    mr = [s for s in study_series if s["MainDicomTags"].get("Modality") == "MR"]
    assert len(mr) == 1 and len(mr[0]["Instances"]) == 1  # one object, stored as sent
    stored = pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{mr[0]['Instances'][0]}/file")))
    assert stored.SOPClassUID == LEGACY_CONVERTED_ENHANCED_MR

    slice_of_classic = {str(ds.SOPInstanceUID): index for index, ds in enumerate(classic)}
    slice_of_frame = {
        number: slice_of_classic[str(groups.ConversionSourceAttributesSequence[0].ReferencedSOPInstanceUID)]
        for number, groups in enumerate(converted.PerFrameFunctionalGroupsSequence, start=1)
    }
    frames = np.asarray(ensemble.pixel_array, np.uint8).reshape(int(ensemble.NumberOfFrames), 64, 64)
    fused = np.zeros(phantom.tumour_mask.shape, np.uint8)
    for frame, item in zip(frames, ensemble.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == converted.SOPInstanceUID
        assert source.ReferencedSOPClassUID == LEGACY_CONVERTED_ENHANCED_MR
        if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
               if "SegmentIdentificationSequence" in item else 1) == 1:
            fused[slice_of_frame[int(source.ReferencedFrameNumber)]] |= frame
    score = dice(fused, phantom.tumour_mask)
    assert score >= 0.75, f"ensemble Dice {score:.3f} against the phantom truth"


def test_four_d_enhanced_mr_fails_its_job_with_the_reason(stack: Stack, tmp_path: Path) -> None:
    study = unique_study("multiframe-4d")
    ds = enhanced_mr([StackSpec("1", axial_stack())], study_uid=study_instance_uid(study),
                     extra_dimension=(2, "Temporal Position Index"), patient_id=study.patient_id)
    path = tmp_path / "dynamic.dcm"
    ds.save_as(path, enforce_file_format=True)
    log = push_file(stack, path)
    assert "Received Store Response (Success)" in log
    job = stack.wait_job(study.study_instance_uid, timeout_s=120)
    assert job["state"] == "failed"
    assert "4-D multi-frame object: stack 1 has 12 frames at 6 positions, 2 frames at one position along " \
           "Temporal Position Index" in job["error"], job["error"]
    status, _ = stack.get("/system")
    assert status == 200  # Orthanc keeps running


def test_enhanced_mr_with_two_stacks_is_segmented_on_the_larger_stack(stack: Stack, tmp_path: Path) -> None:
    phantom = make_phantom(9101, shape=(40, 64, 64))
    localiser = Volume(np.random.default_rng(7).integers(0, 400, (8, 64, 64)).astype(np.float32),
                       (5.0, 3.0, 3.0), (-20.0, -100.0, 90.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0))
    study = unique_study("multiframe-emr-two-stacks")
    ds = enhanced_mr([StackSpec("1", phantom.volume), StackSpec("2", localiser)], study_uid=study_instance_uid(study),
                     patient_id=study.patient_id)
    path = tmp_path / "t1c-enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert "Received Store Response (Success)" in push_file(stack, path)

    job = stack.wait_job(study.study_instance_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    chosen = job["outputs"]["sequences"]["sequences"]["t1c"]
    assert chosen["stack_id"] == "1" and chosen["images"] == 40, chosen
    assert any("stack 2" in reason and "more images" in reason for reason in job["outputs"]["sequences"]["left_out"])

    segs = [pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{i}/file")))
            for s in stack.seg_series(study.study_instance_uid) for i in s["Instances"]]
    ensemble = next(s for s in segs if str(s.SOPInstanceUID) == job["outputs"]["ensemble_seg_sop_instance_uid"])
    frames = np.asarray(ensemble.pixel_array, np.uint8).reshape(int(ensemble.NumberOfFrames), 64, 64)
    fused = np.zeros(phantom.tumour_mask.shape, np.uint8)
    for frame, item in zip(frames, ensemble.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == ds.SOPInstanceUID
        content = ds.PerFrameFunctionalGroupsSequence[int(source.ReferencedFrameNumber) - 1].FrameContentSequence[0]
        assert content.StackID == "1"
        if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
               if "SegmentIdentificationSequence" in item else 1) == 1:
            fused[int(content.InStackPositionNumber) - 1] |= frame
    score = dice(fused, phantom.tumour_mask)
    assert score >= 0.75, f"ensemble Dice {score:.3f} against the phantom truth"
