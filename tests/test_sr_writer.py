"""TID 1500 measurement report: highdicom round trip, dciodvfy, dsrdump, deterministic UIDs."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import date
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from oncoflow.dicom.derived_object import derived_uid
from oncoflow.dicom.seg_writer import AlgorithmInfo, write_segmentation
from oncoflow.dicom.sr_writer import (
    PRIVATE_CODES,
    PRIVATE_SCHEME,
    SR_SERIES_DESCRIPTION,
    LesionAtTimePoint,
    LongitudinalChange,
    read_measurement_report,
    write_measurement_report,
)
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets

from .conftest import axial_volume, required_tool

EXPERTS = ["nnunet_a", "nnunet_b", "nnunet_c"]
NOT_RUN = {"sam2": "no weights", "medgemma": "no weights: ONCOFLOW_MODEL_WEIGHTS unset"}
TRACKING_UID = derived_uid("tracking", "PAT-SR", "lesion-1")


def _study(accession: str, study_date: str) -> tuple[list[Dataset], Dataset]:
    """A small MR series of one study and its ensemble SEG."""
    study = StudyInfo(patient_id="PAT-SR", patient_name="Test^SR", accession_number=accession,
                      study_date=study_date,
                      study_instance_uid=derived_uid("study", accession))
    voxels = np.random.default_rng(0).uniform(0, 900, (6, 24, 24))
    source = series_datasets(axial_volume(voxels), study, SeriesInfo(derived_uid("series", accession)))
    mask = np.zeros((6, 24, 24), np.uint8)
    mask[2:4, 8:14, 9:15] = 1
    seg = write_segmentation(source, mask, AlgorithmInfo("ensemble", "1"), fingerprint=f"fp-{accession}")
    return source, seg


@pytest.fixture(scope="module")
def baseline() -> tuple[list[Dataset], Dataset, Dataset, LesionAtTimePoint]:
    source, seg = _study("SRBASE", "20260101")
    lesion = LesionAtTimePoint("Lesion 1", TRACKING_UID, volume_cm3=12.3456789012345,
                               longest_axial_diameter_mm=31.25, max_caliper_mm=38.0625)
    sr = write_measurement_report(source, seg, lesion, None, EXPERTS, NOT_RUN, "fp-base")
    return source, seg, sr, lesion


def _change(prior_sr: Dataset | None, **overrides: object) -> LongitudinalChange:
    transform = np.eye(4)
    transform[:3, 3] = (1.5, -2.25, 0.1)
    transform[0, 1] = 0.0123456789
    values = dict(
        prior_study_instance_uid=derived_uid("study", "SRBASE"),
        prior_study_date=date(2026, 1, 1),
        prior_sr=prior_sr,
        days_between=91.0,
        volume_prior_cm3=12.3456789012345,
        volume_current_cm3=17.0641,
        delta_cm3=4.7184210987655,
        percent_change=38.2189,
        percent_change_ci95=(30.5, 44.75),
        dice=0.8123,
        hd95_mm=3.4641016,
        growth_rate_cm3_per_day=0.051850781,
        registration_method="rigid+affine (Mattes MI)",
        registration_ncc_before=0.61,
        registration_ncc_after=0.93,
        flag="progression",
        flag_reason="volume +38.2% > +25%",
        transform_lps=transform,
    )
    values.update(overrides)
    return LongitudinalChange(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def follow_up(baseline: tuple) -> tuple[list[Dataset], Dataset, Dataset, LesionAtTimePoint, LongitudinalChange]:
    _, _, base_sr, _ = baseline
    source, seg = _study("SRFOLLOW", "20260402")
    lesion = LesionAtTimePoint("Lesion 1", TRACKING_UID, volume_cm3=17.0641,
                               longest_axial_diameter_mm=35.5, max_caliper_mm=41.0, region="WT",
                               region_volumes_cm3={"ET": 3.5, "TC": 9.125, "WT": 17.0641},
                               plausibility="segmentation implausible: review (scattered: 9 separate pieces)")
    change = _change(base_sr)
    sr = write_measurement_report(source, seg, lesion, change, EXPERTS, NOT_RUN, "fp-follow")
    return source, seg, sr, lesion, change


def _save(sr: Dataset, path: Path) -> Path:
    sr.save_as(path, enforce_file_format=True)
    return path


def test_baseline_round_trip(baseline: tuple) -> None:
    source, seg, sr, lesion = baseline
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.StudyInstanceUID == source[0].StudyInstanceUID
    assert sr.Manufacturer == "OncoFlow"
    assert sr.SeriesDescription == SR_SERIES_DESCRIPTION
    assert sr.SeriesNumber == 9010
    read = read_measurement_report(sr)
    assert read["tracking_id"] == "Lesion 1"
    assert read["tracking_uid"] == TRACKING_UID
    assert read["volume_cm3"] == lesion.volume_cm3
    assert read["longest_axial_diameter_mm"] == lesion.longest_axial_diameter_mm
    assert read["max_caliper_mm"] == lesion.max_caliper_mm
    assert read["experts_ran"] == EXPERTS
    assert read["experts_not_run"] == NOT_RUN
    assert read["fingerprint"] == "fp-base"
    assert read["time_point"] == "baseline"
    assert read["has_change"] is False
    assert read["region"] == "TC" and read["segment_number"] == 1 and read["region_volumes_cm3"] == {}
    assert read["plausibility"] is None
    for key in ("flag", "flag_reason", "percent_change", "delta_cm3", "dice", "prior_study_instance_uid",
                "transform_lps", "percent_change_ci95", "prior_sr_sop_instance_uid"):
        assert read[key] is None, key
    # segment 1 of the ensemble SEG and the source series are referenced
    group = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()[0]
    segment = group.referenced_segment
    assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert segment.referenced_segment_numbers == [1]
    assert segment.source_series_for_segmentation.value == source[0].SeriesInstanceUID
    evidence = {uid for _, _, uid, _ in hd.sr.Comprehensive3DSR.from_dataset(sr).get_evidence()}
    assert seg.SOPInstanceUID in evidence and source[0].SOPInstanceUID in evidence


def test_follow_up_round_trip(baseline: tuple, follow_up: tuple) -> None:
    _, _, base_sr, _ = baseline
    source, _, sr, lesion, change = follow_up
    read = read_measurement_report(sr)
    assert read["tracking_uid"] == read_measurement_report(base_sr)["tracking_uid"] == TRACKING_UID
    assert read["study_instance_uid"] == source[0].StudyInstanceUID != base_sr.StudyInstanceUID
    assert read["time_point"] == "follow-up"
    assert read["has_change"] is True
    assert read["volume_cm3"] == lesion.volume_cm3
    assert read["longest_axial_diameter_mm"] == lesion.longest_axial_diameter_mm
    assert read["max_caliper_mm"] == lesion.max_caliper_mm
    assert read["region"] == "WT" and read["region_volumes_cm3"] == {"ET": 3.5, "TC": 9.125, "WT": 17.0641}
    assert read["plausibility"] == "segmentation implausible: review (scattered: 9 separate pieces)"
    for field in dataclasses.fields(LongitudinalChange):
        if field.name in ("prior_sr", "transform_lps"):
            continue
        assert read[field.name] == getattr(change, field.name), field.name
    assert read["percent_change_ci95"] == (30.5, 44.75)
    np.testing.assert_array_equal(read["transform_lps"], change.transform_lps)
    assert read["prior_sr_sop_instance_uid"] == base_sr.SOPInstanceUID
    # the baseline SR (another study) is recorded as pertinent other evidence
    other = sr.PertinentOtherEvidenceSequence[0]
    assert other.StudyInstanceUID == base_sr.StudyInstanceUID
    refs = [i.ReferencedSOPInstanceUID for s in other.ReferencedSeriesSequence for i in s.ReferencedSOPSequence]
    assert refs == [base_sr.SOPInstanceUID]
    assert [i.CodingSchemeDesignator for i in sr.CodingSchemeIdentificationSequence] == [PRIVATE_SCHEME]
    assert [i.CodingSchemeDesignator for i in base_sr.CodingSchemeIdentificationSequence] == [PRIVATE_SCHEME]


def test_none_values_are_omitted(baseline: tuple) -> None:
    source, seg, _, lesion = baseline
    change = _change(None, hd95_mm=None, percent_change=None, percent_change_ci95=None, dice=None,
                     growth_rate_cm3_per_day=None, registration_ncc_before=None, registration_ncc_after=None,
                     transform_lps=None, flag="poor registration", flag_reason="NCC after registration 0.21 < 0.5")
    sr = write_measurement_report(source, seg, lesion, change, EXPERTS, {}, "fp-none")
    read = read_measurement_report(sr)
    for key in ("hd95_mm", "percent_change", "percent_change_ci95", "dice", "growth_rate_cm3_per_day",
                "registration_ncc_before", "registration_ncc_after", "transform_lps", "prior_sr_sop_instance_uid"):
        assert read[key] is None, key
    assert read["flag"] == "poor registration"
    assert read["experts_not_run"] == {}
    written = {c.ConceptNameCodeSequence[0].CodeValue
               for c in sr.ContentSequence[-1].ContentSequence[0].ContentSequence}
    for name in ("hd95_mm", "percent_change", "percent_change_ci95_low", "dice", "registration_ncc_after"):
        assert PRIVATE_CODES[name][0] not in written, name
    assert PRIVATE_CODES["delta_cm3"][0] in written
    assert "PertinentOtherEvidenceSequence" not in sr


def test_unknown_flag_is_refused(baseline: tuple) -> None:
    source, seg, _, lesion = baseline
    with pytest.raises(ValueError, match="unknown flag"):
        write_measurement_report(source, seg, lesion, _change(None, flag="growing"), EXPERTS, {}, "fp-x")


def test_same_fingerprint_gives_same_uids(baseline: tuple) -> None:
    source, seg, sr, lesion = baseline
    again = write_measurement_report(source, seg, lesion, None, EXPERTS, NOT_RUN, "fp-base")
    other = write_measurement_report(source, seg, lesion, None, EXPERTS, NOT_RUN, "fp-other")
    assert again.SOPInstanceUID == sr.SOPInstanceUID != other.SOPInstanceUID
    assert again.SeriesInstanceUID == sr.SeriesInstanceUID


def test_file_round_trip(follow_up: tuple, tmp_path: Path) -> None:
    sr = follow_up[2]
    from_file = read_measurement_report(dcmread(_save(sr, tmp_path / "sr.dcm")))
    in_memory = read_measurement_report(sr)
    np.testing.assert_array_equal(from_file.pop("transform_lps"), in_memory.pop("transform_lps"))
    assert from_file == in_memory
    assert from_file["percent_change"] == 38.2189 and from_file["flag"] == "progression"


def test_dciodvfy_reports_no_error(baseline: tuple, follow_up: tuple, tmp_path: Path) -> None:
    dciodvfy = required_tool("dciodvfy")
    for name, sr in (("baseline", baseline[2]), ("follow-up", follow_up[2])):
        path = _save(sr, tmp_path / f"{name}.dcm")
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        output = report.stderr + report.stdout
        assert "Error" not in output, output
        # the only warning allowed is dciodvfy not knowing the private coding scheme
        warnings = [line for line in output.splitlines() if "Warning" in line]
        assert all(f"<{PRIVATE_SCHEME}>" in line for line in warnings), output
        # the private scheme is used (the region measured) and declared in both
        assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME


def test_dsrdump_shows_volume_and_flag(follow_up: tuple, tmp_path: Path) -> None:
    dsrdump = required_tool("dsrdump")
    path = _save(follow_up[2], tmp_path / "sr.dcm")
    dump = subprocess.run([dsrdump, str(path)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert "17.0641" in dump.stdout
    assert "progression" in dump.stdout
    assert "volume +38.2% > +25%" in dump.stdout
    # each region's volume under its concept, and the region measured (dcmtk's own reading)
    for meaning, number in (("Enhancing tumour volume", "3.5"), ("Tumour core volume", "9.125"),
                            ("Whole tumour volume", "17.0641")):
        assert f'<contains NUM:(,,"{meaning}")="{number}" (cm3,UCUM' in dump.stdout, dump.stdout
    assert '<contains TEXT:(,,"Tumour region measured")="WT">' in dump.stdout
