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
    ResponseAssessment,
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


# --- issue 18: several lesions, compartments, diameters with endpoints, response ---------------------------

TRACKING_UID_2 = derived_uid("tracking", "PAT-SR", "lesion-2")
LONG_1 = ((10.5, -20.25, 30.0), (45.5, -20.25, 30.0))
PERP_1 = ((28.0, -38.0, 30.0), (28.0, -2.5, 30.0))


def _two_lesions() -> list[LesionAtTimePoint]:
    first = LesionAtTimePoint(
        "Lesion 1", TRACKING_UID, volume_cm3=17.0641, longest_axial_diameter_mm=35.0, max_caliper_mm=41.0,
        perpendicular_diameter_mm=35.5, product_mm2=1242.5, long_axis_lps_mm=LONG_1, perpendicular_axis_lps_mm=PERP_1,
        compartment_volumes_cm3={"enhancing tumour": 3.5, "necrosis": 1.25, "oedema": 12.0,
                                 "non-enhancing tumour": 0.3},
        measurable=True, target=True, status="tracked")
    second = LesionAtTimePoint(
        "Lesion 2", TRACKING_UID_2, volume_cm3=0.8, longest_axial_diameter_mm=8.0, max_caliper_mm=9.5,
        segment_number=1, compartment_volumes_cm3={"enhancing tumour": 0.8}, measurable=False, target=False,
        status="new")
    return [first, second]


RESPONSE = ResponseAssessment(
    category="PD", confirmation="preliminary", method="RANO 2.0, bidimensional", target_response="PD",
    non_target_response="non-CR/non-PD", reasons=("new lesion: Lesion 2", "sum of products +25.4% vs nadir"),
    baseline_sum=990.0, nadir_sum=990.0, current_sum=1242.5, sum_unit="mm2")


@pytest.fixture(scope="module")
def multi(baseline: tuple) -> tuple[list[Dataset], Dataset, Dataset]:
    _, _, base_sr, _ = baseline
    source, seg = _study("SRMULTI", "20260402")
    sr = write_measurement_report(source, seg, None, _change(base_sr), EXPERTS, NOT_RUN, "fp-multi",
                                  lesions=_two_lesions(), response=RESPONSE)
    return source, seg, sr


def _code(item: Dataset, sequence: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    code = getattr(item, sequence)[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def _children(item: Dataset, code: tuple[str, str]) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if _code(c) == code]


def test_multi_lesion_content_tree(multi: tuple, tmp_path: Path) -> None:
    """An oracle that walks the saved file's content tree with pydicom only (not read_measurement_report)."""
    source, seg, sr = multi
    ds = dcmread(_save(sr, tmp_path / "multi.dcm"))
    (imaging,) = _children(ds, ("DCM", "126010"))
    groups = _children(imaging, ("DCM", "125007"))
    # lesion 1: lesion (TID 1411), diameters (TID 1501), 4 compartments; lesion 2: lesion, 1 compartment
    assert len(groups) == 8
    templates = [g.ContentTemplateSequence[0].TemplateIdentifier for g in groups]
    assert templates == ["1411", "1501", "1501", "1501", "1501", "1501", "1411", "1501"]
    ids = [(_children(g, ("DCM", "112039"))[0].TextValue, _children(g, ("DCM", "112040"))[0].UID) for g in groups]
    assert ids == [("Lesion 1", TRACKING_UID)] * 6 + [("Lesion 2", TRACKING_UID_2)] * 2
    findings = [_code(_children(g, ("DCM", "121071"))[0], "ConceptCodeSequence") for g in groups]
    assert findings == [("SCT", "108369006"), ("SCT", "108369006"), ("NCIt", "C113842"), ("SCT", "6574001"),
                        ("SCT", "79654002"), ("NCIt", "C81175"), ("SCT", "108369006"), ("NCIt", "C113842")]
    for g in groups:
        assert _code(_children(g, ("SCT", "276214006"))[0], "ConceptCodeSequence") == ("SCT", "49755003")

    def num(group: Dataset, code: tuple[str, str]) -> float:
        (item,) = _children(group, code)
        return float(item.MeasuredValueSequence[0].NumericValue)

    lesion_1, diameters, enhancing = groups[0], groups[1], groups[2]
    assert num(lesion_1, ("SCT", "131189007")) == 35.5  # Perpendicular Axis
    assert _children(lesion_1, ("SCT", "131189007"))[0].MeasuredValueSequence[0] \
        .MeasurementUnitsCodeSequence[0].CodeValue == "mm"
    assert num(lesion_1, (PRIVATE_SCHEME, "SPDPRODUCT")) == 1242.5
    assert num(lesion_1, ("SCT", "118565006")) == 17.0641
    assert num(enhancing, ("SCT", "118565006")) == 3.5
    assert num(groups[7], ("SCT", "118565006")) == 0.8
    # target / measurable / status as qualitative evaluations
    assert _code(_children(lesion_1, ("DCM", "112016"))[0], "ConceptCodeSequence") == ("DCM", "112074")
    assert _code(_children(groups[6], ("DCM", "112016"))[0], "ConceptCodeSequence") == ("DCM", "112075")
    assert _code(_children(lesion_1, (PRIVATE_SCHEME, "MEASURABLE"))[0], "ConceptCodeSequence") == ("SCT", "373066001")
    assert _code(_children(groups[6], (PRIVATE_SCHEME, "LESSTATUS"))[0], "ConceptCodeSequence") == \
        (PRIVATE_SCHEME, "STATNEW")
    # each lesion group references its segment; the change is in lesion 1's group only
    assert _children(lesion_1, ("DCM", "121191"))[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
        seg.SOPInstanceUID
    assert _children(lesion_1, (PRIVATE_SCHEME, "CHGFLAG")) and not _children(groups[6], (PRIVATE_SCHEME, "CHGFLAG"))
    # the diameters: NUM inferred from a SCOORD3D POLYLINE of two points in the source's frame of reference
    for code, value, points in ((("SCT", "103339001"), 35.0, LONG_1), (("SCT", "131189007"), 35.5, PERP_1)):
        (item,) = _children(diameters, code)
        assert float(item.MeasuredValueSequence[0].NumericValue) == value
        (scoord,) = [c for c in item.ContentSequence if c.ValueType == "SCOORD3D"]
        assert scoord.RelationshipType == "INFERRED FROM"
        assert scoord.GraphicType == "POLYLINE"
        assert scoord.ReferencedFrameOfReferenceUID == source[0].FrameOfReferenceUID
        np.testing.assert_allclose(np.asarray(scoord.GraphicData, dtype=float).reshape(2, 3), np.asarray(points))
    # the response: root Qualitative Evaluations > Response Evaluation
    (evaluations,) = _children(ds, ("UMLS", "C0034375"))
    (response,) = _children(evaluations, ("DCM", "112020"))
    assert _code(_children(response, ("DCM", "112021"))[0], "ConceptCodeSequence") == ("NCIt", "C114879")
    assert [_code(i, "ConceptCodeSequence") for i in _children(response, ("DCM", "112048"))] == \
        [("DCM", "112043"), ("DCM", "112046")]
    assert _code(_children(response, (PRIVATE_SCHEME, "RESPCAT"))[0], "ConceptCodeSequence") == \
        (PRIVATE_SCHEME, "RESPPD")
    assert _code(_children(response, (PRIVATE_SCHEME, "RESPCONF"))[0], "ConceptCodeSequence") == \
        (PRIVATE_SCHEME, "CONFPRELIM")
    assert num(response, (PRIVATE_SCHEME, "SUMCUR")) == 1242.5 and num(response, (PRIVATE_SCHEME, "SUMNADIR")) == 990.0
    assert [i.TextValue for i in _children(response, (PRIVATE_SCHEME, "RESPREASON"))] == list(RESPONSE.reasons)
    # highdicom parses it back as TID 1500
    parsed = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert len(parsed.content.get_volumetric_roi_measurement_groups()) == 2
    assert len(parsed.content.get_image_measurement_groups()) == 6


def test_multi_lesion_round_trip(multi: tuple, tmp_path: Path) -> None:
    sr = multi[2]
    read = read_measurement_report(dcmread(_save(sr, tmp_path / "multi.dcm")))
    lesions = _two_lesions()
    assert len(read["lesions"]) == 2
    for got, lesion in zip(read["lesions"], lesions, strict=True):
        for field in dataclasses.fields(LesionAtTimePoint):
            expected = getattr(lesion, field.name)
            if field.name == "region_volumes_cm3":
                expected = dict(expected)
            assert got[field.name] == expected, field.name
    # the first lesion's fields stay at the top level, as for the single-lesion report
    assert read["tracking_uid"] == TRACKING_UID and read["perpendicular_diameter_mm"] == 35.5
    assert read["flag"] == "progression" and read["time_point"] == "follow-up"
    response = read.pop("response")
    assert response.pop("method_code") == ("NCIt", "C114879")
    assert response == dataclasses.asdict(RESPONSE)


def test_multi_lesion_dciodvfy_and_dsrdump(multi: tuple, tmp_path: Path) -> None:
    path = _save(multi[2], tmp_path / "multi.dcm")
    report = subprocess.run([required_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    output = report.stderr + report.stdout
    assert "Error" not in output, output
    warnings = [line for line in output.splitlines() if "Warning" in line]
    assert all(f"<{PRIVATE_SCHEME}>" in line for line in warnings), output
    dump = subprocess.run([required_tool("dsrdump"), str(path)], capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    assert '<contains NUM:(,,"Perpendicular Axis")="35.5" (mm,UCUM' in dump.stdout, dump.stdout
    assert "SCOORD3D" in dump.stdout
    assert '<contains CODE:(,,"Current Response")=(112043,DCM,"Target Lesion Progressive Disease")>' in dump.stdout
    assert '(RESPPD,99ONCOFLOW,"Progressive disease")' in dump.stdout


def test_single_lesion_call_unchanged(baseline: tuple) -> None:
    """The single-lesion call writes the same document as ``lesions=[lesion]`` and nothing of issue 18."""
    source, seg, sr, lesion = baseline
    as_list = write_measurement_report(source, seg, None, None, EXPERTS, NOT_RUN, "fp-base", lesions=[lesion])
    assert as_list.SOPInstanceUID == sr.SOPInstanceUID
    assert as_list.ContentSequence == sr.ContentSequence
    assert [c.ConceptNameCodeSequence[0].CodeValue for c in sr.ContentSequence][-1] == "126010"  # no response
    assert len(sr.ContentSequence[-1].ContentSequence) == 1  # one group
    read = read_measurement_report(sr)
    assert read["response"] is None and len(read["lesions"]) == 1
    assert read["compartment_volumes_cm3"] == {} and read["perpendicular_diameter_mm"] is None


def test_bad_lesion_inputs_are_refused(baseline: tuple) -> None:
    source, seg, _, lesion = baseline
    for bad, match in ((dataclasses.replace(lesion, status="grown"), "unknown lesion status"),
                       (dataclasses.replace(lesion, compartment_volumes_cm3={"cyst": 1.0}), "unknown compartments"),
                       (dataclasses.replace(lesion, long_axis_lps_mm=((0, 0, 0),)), "two finite 3-D points")):
        with pytest.raises(ValueError, match=match):
            write_measurement_report(source, seg, bad, None, EXPERTS, {}, "fp-x")
    with pytest.raises(ValueError, match="share a tracking"):
        write_measurement_report(source, seg, None, None, EXPERTS, {}, "fp-x", lesions=[lesion, lesion])
    with pytest.raises(ValueError, match="unknown response category"):
        write_measurement_report(source, seg, lesion, None, EXPERTS, {}, "fp-x",
                                 response=dataclasses.replace(RESPONSE, category="CRU"))
