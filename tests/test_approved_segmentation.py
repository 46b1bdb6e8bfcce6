"""The radiologist's word wins (issue 18, item 5): approving a SEG, the routes' answers, which mask the timeline
measures, what a re-analysis says, and the SR and report saying so. No Orthanc: fakes of its REST API hold real
SEG datasets (highdicom) over a small phantom series."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import highdicom as hd
import numpy as np
import pytest
from oncoflow_rag.clinical_findings import ClinicalFindings, TimePointFinding
from oncoflow_rag.clinical_summary import ClinicalSummary
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from oncoflow.api.study_routes import StudyRoutes
from oncoflow.core.volume import Volume
from oncoflow.dicom.seg_writer import (
    BRAIN,
    REFINED_DESCRIPTION_PREFIX,
    TUMOUR,
    AlgorithmInfo,
    SegmentKind,
    write_segmentation,
)
from oncoflow.dicom.sr_writer import LesionAtTimePoint, read_measurement_report, write_measurement_report
from oncoflow.dicom.stored_seg import StoredSegError, mask_on_sources, tumour_segments
from oncoflow.dicom.volume_builder import build_volume
from oncoflow.measure.longitudinal_comparison import ComparisonError
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets
from oncoflow.pipeline.approved_segmentation import ApprovalRequest, ApprovedSegmentation, describe
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.patient_timeline import PatientTimeline
from oncoflow.pipeline.request_refusal import RequestRefused
from oncoflow.pipeline.time_point import loaded_time_point
from oncoflow.report.report_pdf import ReportContent, render_report_pdf
from oncoflow.security.access_audit import AccessAudit
from oncoflow.security.access_policy import Permission, is_allowed, may_approve_segmentation, route_rule
from oncoflow.security.access_tokens import AccessToken
from oncoflow.security.audit_log import AuditLog

from .conftest import required_tool

SHAPE = (8, 24, 24)
SPACING = (3.0, 1.0, 1.0)  # slice, row, column (mm): 3 mm³ a voxel
OTHER_KIND = SegmentKind("Other", codes.SCT.AnatomicalStructure, codes.SCT.Tissue)
EDITED_KIND = SegmentKind("Edited tumour", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)


def box(slices: slice, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[slices, rows, cols] = 1
    return mask


ENSEMBLE_MASK = box(slice(2, 6), slice(6, 14), slice(6, 14))  # 256 voxels
EDITED_MASK = box(slice(3, 5), slice(8, 12), slice(8, 12))  # 32 voxels: far from the ensemble (Dice 0.22)


class Study:
    """One phantom study: its MR series, its SEGs, and the fakes of Orthanc's REST API and the study input."""

    def __init__(self, tmp_path: Path) -> None:
        voxels = np.random.default_rng(3).uniform(100, 900, SHAPE).astype(np.float32)
        volume = Volume(voxels, SPACING, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
        self.uid = generate_uid()
        self.datasets = series_datasets(volume, StudyInfo(study_instance_uid=self.uid), SeriesInfo(generate_uid()))
        self.series_uid = str(self.datasets[0].SeriesInstanceUID)
        self.stack = build_volume(self.datasets, 10**7)
        self.instances: dict[str, Dataset] = {}
        self.ensemble = self.add(write_segmentation(self.datasets, ENSEMBLE_MASK, AlgorithmInfo("panel", "1"), "fp",
                                                    role="ensemble"))
        self.store = JobStore(tmp_path / "jobs.db")
        job_id = self.store.enqueue("study-1", "stable-study")
        assert job_id is not None
        self.store.update(job_id, study_instance_uid=self.uid, input_series_instance_uid=self.series_uid,
                          fingerprint="fp", outputs={
                              "ensemble_seg_sop_instance_uid": str(self.ensemble.SOPInstanceUID),
                              "seg_sop_instance_uids": [str(self.ensemble.SOPInstanceUID)],
                              "driving_region": "TC", "tumour_volume_cm3": 0.768,
                              "experts": {"nnunet": {"status": "ran", "volume_cm3": 0.7}},
                              "leave_one_out_volumes_cm3": {"nnunet": 0.7}, "voting_experts": ["nnunet"]})
        assert self.store.claim_next() is not None
        self.store.finish(job_id, "done")
        self.job_id = job_id
        self.rest = SimpleNamespace(
            lookup_study=lambda uid: "study-1" if uid == self.uid else None,
            instance_dataset=lambda uid: self.instances.get(uid),
            get_json=self.get_json,
        )
        selection = SimpleNamespace(candidate=SimpleNamespace(series_instance_uid=self.series_uid, stack_id=None))
        self.input = SimpleNamespace(select=lambda study_id, timings: (selection, ["i"] * len(self.datasets)),
                                     build=lambda ids, timings, stack_id=None: self.stack)

    def get_json(self, uri: str) -> Any:
        assert uri == "/studies/study-1", uri
        return {"MainDicomTags": {"StudyInstanceUID": self.uid, "StudyDate": "20260101"}}

    def add(self, seg: Dataset) -> Dataset:
        self.instances[str(seg.SOPInstanceUID)] = seg
        return seg

    def edited(self, mask: np.ndarray = EDITED_MASK, kinds: list[SegmentKind] | None = None,
               omit_empty_frames: bool = True, manufacturer: str = "OHIF") -> Dataset:
        """A SEG as a viewer stores it: another manufacturer, empty frames left out, its own segment names."""
        kinds = kinds or [EDITED_KIND]
        descriptions = [hd.seg.SegmentDescription(
            segment_number=n, segment_label=k.label, segmented_property_category=k.category,
            segmented_property_type=k.property_type, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
            for n, k in enumerate(kinds, start=1)]
        seg = hd.seg.Segmentation(
            source_images=self.datasets, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=300,
            sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
            manufacturer_model_name="viewer", software_versions="3.13", device_serial_number="1",
            series_description="Edited segmentation", omit_empty_frames=omit_empty_frames)
        return self.add(seg)

    def job(self) -> Job:
        job = self.store.get(self.job_id)
        assert job is not None
        return job

    def approvals(self) -> ApprovedSegmentation:
        return ApprovedSegmentation(self.rest, self.store, self.input)  # type: ignore[arg-type]


@pytest.fixture
def study(tmp_path: Path) -> Study:
    return Study(tmp_path)


# -- the job store -----------------------------------------------------------------------------------------------


def test_the_store_keeps_one_approval_in_force_and_the_history(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    assert store.segmentation_approval("1.2.3") is None
    assert store.withdraw_segmentation_approval("1.2.3", "alice") is None
    first = store.approve_segmentation("1.2.3", "1.2.3.4", "1.2.3.5", [2, 1], "refined SEG v1", "1.2.3.9", 4.2,
                                       "alice", "radiologist")
    assert first["segment_numbers"] == [1, 2] and first["approved_by"] == "alice" and first["withdrawn_at"] is None
    assert store.segmentation_approval("1.2.3") == first
    second = store.approve_segmentation("1.2.3", "1.2.3.6", None, [1], "SEG stored by OHIF", "1.2.3.9", 3.0,
                                        "bob", "radiologist")
    assert store.segmentation_approval("1.2.3") == second  # the newer one; the first was withdrawn by bob
    history = store.segmentation_approvals("1.2.3")
    assert [a["sop_instance_uid"] for a in history] == ["1.2.3.4", "1.2.3.6"]
    assert history[0]["withdrawn_by"] == "bob" and history[0]["withdrawn_at"] is not None
    withdrawn = store.withdraw_segmentation_approval("1.2.3", "carol")
    assert withdrawn is not None and withdrawn["withdrawn_by"] == "carol"
    assert store.segmentation_approval("1.2.3") is None
    assert store.segmentation_approval("9.9") is None and store.segmentation_approvals("9.9") == []


# -- the SEG itself: its tumour segment, its mask ----------------------------------------------------------------


def test_the_tumour_segment_is_found_or_must_be_named(study: Study) -> None:
    refined = write_segmentation(study.datasets, EDITED_MASK, AlgorithmInfo("sam2", "1"), "fp", role="refined-1",
                                 series_description=f"{REFINED_DESCRIPTION_PREFIX} v1 (sam2)")
    assert tumour_segments(refined, "TC") == [1]  # OncoFlow's own "Tumour core" segment, by code and label
    assert tumour_segments(study.edited(), "TC") == [1]  # the one segment there is
    labels = EDITED_MASK + 2 * box(slice(0, 1), slice(0, 2), slice(0, 2))
    two = study.edited(labels, [EDITED_KIND, OTHER_KIND])
    with pytest.raises(StoredSegError, match=r"2 segments .*'Edited tumour'.*'Other'.*segment_numbers"):
        tumour_segments(two, "TC")
    assert tumour_segments(two, "TC", [1]) == [1]
    with pytest.raises(StoredSegError, match="no segment"):
        tumour_segments(two, "TC", [3])
    with_brain = study.edited(labels, [TUMOUR, BRAIN])
    assert tumour_segments(with_brain, "TC") == [1]
    with pytest.raises(StoredSegError, match="the brain"):
        tumour_segments(with_brain, "TC", [2])
    brain_only = study.edited(EDITED_MASK, [BRAIN])
    with pytest.raises(StoredSegError, match="only the brain"):
        tumour_segments(brain_only, "TC")


def test_a_viewer_seg_without_its_empty_frames_is_read_whole(study: Study) -> None:
    seg = study.edited(omit_empty_frames=True)
    assert int(seg.NumberOfFrames) == 2  # only the two slices drawn on
    np.testing.assert_array_equal(mask_on_sources(seg, study.datasets, [1]), EDITED_MASK)
    other = series_datasets(study.stack.volume, StudyInfo(), SeriesInfo(generate_uid()))
    with pytest.raises(StoredSegError, match="reference none"):
        mask_on_sources(seg, other, [1])


# -- approving -----------------------------------------------------------------------------------------------------


def test_the_request_body_is_checked() -> None:
    assert ApprovalRequest.parse(b'{"sop_instance_uid": "1.2.3"}') == ApprovalRequest("1.2.3", None)
    assert ApprovalRequest.parse('{"sop_instance_uid": "1.2.3", "segment_numbers": [2, 1, 2]}').segment_numbers == \
        (1, 2)
    for body in (b"", b"{", b"[]", b'{"sop_instance_uid": 5}', b'{"sop_instance_uid": "1.2.x"}',
                 b'{"sop_instance_uid": "1.2", "segment_numbers": []}',
                 b'{"sop_instance_uid": "1.2", "segment_numbers": [true]}',
                 b'{"sop_instance_uid": "1.2", "segment_numbers": [0]}'):
        with pytest.raises(RequestRefused) as raised:
            ApprovalRequest.parse(body)
        assert raised.value.status == 400, body


def test_only_a_seg_of_the_study_drawn_on_its_input_can_be_approved(study: Study) -> None:
    approvals = study.approvals()

    def refused(sop_uid: str, status: int, text: str, **extra: Any) -> None:
        with pytest.raises(RequestRefused) as raised:
            approvals.approve(study.uid, json.dumps({"sop_instance_uid": sop_uid, **extra}), "alice", "radiologist")
        assert raised.value.status == status and text in raised.value.message, raised.value.message

    refused("1.2.3.4", 404, "no instance")
    study.add(study.datasets[0])
    refused(str(study.datasets[0].SOPInstanceUID), 422, "not a SEG")
    refused(str(study.ensemble.SOPInstanceUID), 422, "automatic SEGs")
    foreign = study.add(copy.deepcopy(study.edited()))  # a copy: highdicom shares data elements with the sources
    foreign.StudyInstanceUID = generate_uid()
    refused(str(foreign.SOPInstanceUID), 422, "another study")
    other_series = study.add(copy.deepcopy(study.edited()))
    other_series.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.999"
    refused(str(other_series.SOPInstanceUID), 422, "not the study's input series")
    labels = EDITED_MASK + 2 * box(slice(0, 1), slice(0, 2), slice(0, 2))
    two = study.edited(labels, [EDITED_KIND, OTHER_KIND])
    refused(str(two.SOPInstanceUID), 422, "segment_numbers")
    with pytest.raises(RequestRefused) as raised:  # the answer lists the segments to choose from, as data
        approvals.approve(study.uid, json.dumps({"sop_instance_uid": str(two.SOPInstanceUID)}), "alice", "radiologist")
    listed = raised.value.as_json()["segments"]
    assert [(s["number"], s["label"]) for s in listed] == [  # type: ignore[union-attr]
        (1, EDITED_KIND.label), (2, OTHER_KIND.label)]
    empty = study.edited(box(slice(0, 1), slice(0, 2), slice(0, 2)) * 2, [OTHER_KIND, EDITED_KIND])
    refused(str(empty.SOPInstanceUID), 422, "empty", segment_numbers=[1])  # segment 1 holds nothing
    with pytest.raises(RequestRefused) as raised:
        approvals.approve("1.2.3", json.dumps({"sop_instance_uid": str(two.SOPInstanceUID)}), "alice", "radiologist")
    assert raised.value.status == 404
    assert study.store.segmentation_approval(study.uid) is None  # nothing was recorded

    result = approvals.approve(study.uid, json.dumps({"sop_instance_uid": str(two.SOPInstanceUID),
                                                      "segment_numbers": [1]}), "alice", "radiologist")
    approval = result["approval"]
    assert approval["segment_numbers"] == [1] and approval["approved_by"] == "alice"
    assert approval["volume_cm3"] == pytest.approx(EDITED_MASK.sum() * 3.0 / 1000, abs=1e-6)
    assert approval["source"] == "SEG stored by OHIF ('Edited segmentation')"
    assert approval["input_series_instance_uid"] == study.series_uid
    assert result["statement"].startswith("approved by radiologist alice, ")
    in_force = result["in_force"]
    assert in_force["automatic_volume_cm3"] == pytest.approx(ENSEMBLE_MASK.sum() * 3.0 / 1000, abs=1e-6)
    assert in_force["dice_vs_automatic"] == pytest.approx(2 * 32 / (32 + 256), abs=1e-4)
    assert in_force["automatic_differs"] is True and "DIFFERS A LOT" in in_force["note"]


def test_a_refined_seg_is_named_by_its_version(study: Study) -> None:
    refined = study.add(write_segmentation(study.datasets, EDITED_MASK, AlgorithmInfo("sam2", "1"), "fp",
                                           role="refined-1",
                                           series_description=f"{REFINED_DESCRIPTION_PREFIX} v1 (sam2)"))
    study.store.add_refinement(study.uid, 1, str(refined.SOPInstanceUID), {}, 0.096)
    result = study.approvals().approve(study.uid, json.dumps({"sop_instance_uid": str(refined.SOPInstanceUID)}),
                                       "alice", "radiologist")
    assert result["approval"]["source"] == "refined SEG v1" and result["approval"]["segment_numbers"] == [1]


# -- which mask the timeline measures ------------------------------------------------------------------------------


def timeline(study: Study) -> PatientTimeline:
    return PatientTimeline(SimpleNamespace(), study.rest, study.store, study.input, None, None)  # type: ignore[arg-type]


def test_the_timeline_measures_the_approved_seg_and_never_silently_the_ensemble(study: Study) -> None:
    measured = timeline(study)._time_point("study-1", study.job())
    np.testing.assert_array_equal(measured[0].fused_mask, ENSEMBLE_MASK)
    assert measured[2].SOPInstanceUID == study.ensemble.SOPInstanceUID
    assert measured[0].expert_volumes_cm3 == {"nnunet": 0.7}

    edited = study.edited()
    study.approvals().approve(study.uid, json.dumps({"sop_instance_uid": str(edited.SOPInstanceUID)}), "alice",
                              "radiologist")
    current, _, seg = timeline(study)._time_point("study-1", study.job())
    np.testing.assert_array_equal(current.fused_mask, EDITED_MASK)
    assert seg.SOPInstanceUID == edited.SOPInstanceUID
    assert current.measurements.volume_cm3 == pytest.approx(32 * 3.0 / 1000)
    # the panel's spread says nothing about the radiologist's mask: no experts' volumes, no leave-one-out
    assert current.expert_volumes_cm3 == {} and current.leave_one_out_volumes_cm3 is None

    del study.instances[str(edited.SOPInstanceUID)]  # the approved SEG deleted from the PACS: an error, not a fallback
    with pytest.raises(ComparisonError, match="no longer in the PACS.*withdraw"):
        timeline(study)._time_point("study-1", study.job())

    study.store.withdraw_segmentation_approval(study.uid, "alice")
    np.testing.assert_array_equal(timeline(study)._time_point("study-1", study.job())[0].fused_mask, ENSEMBLE_MASK)


def test_a_reanalysis_keeps_the_approval_and_says_how_far_the_new_result_is(study: Study) -> None:
    calls: list[Any] = []

    def update(study_id: str, job: Job, loaded: Any = None) -> dict[str, Any]:
        calls.append(loaded)
        return {"sr_sop_instance_uid": "1.2.3"}

    wrapped = study.approvals().around_timeline(update)
    loaded = loaded_time_point(study.get_json("/studies/study-1")["MainDicomTags"], study.stack, ENSEMBLE_MASK,
                               study.ensemble, study.job().outputs)
    assert wrapped("study-1", study.job(), loaded) == {"sr_sop_instance_uid": "1.2.3"}  # no approval: as it was
    assert calls == [loaded]

    edited = study.edited()
    study.approvals().approve(study.uid, json.dumps({"sop_instance_uid": str(edited.SOPInstanceUID)}), "alice",
                              "radiologist")
    outcome = wrapped("study-1", study.job(), loaded)
    assert calls[-1] is None  # the timeline reads the study again: the approved SEG, not the new ensemble's mask
    in_force = outcome["approved_segmentation"]
    assert in_force["sop_instance_uid"] == str(edited.SOPInstanceUID) and in_force["approved_by"] == "alice"
    assert in_force["automatic_differs"] is True and in_force["dice_vs_automatic"] == pytest.approx(0.2222, abs=1e-4)
    assert in_force["volume_change_percent"] == pytest.approx(700.0)
    events = [e["message"] for e in study.job().events]
    assert any("approved segmentation in force" in e and "DIFFERS A LOT" in e for e in events), events

    near = loaded_time_point(study.get_json("/studies/study-1")["MainDicomTags"], study.stack, EDITED_MASK,
                             study.ensemble, study.job().outputs)
    assert wrapped("study-1", study.job(), near)["approved_segmentation"]["automatic_differs"] is False


# -- the routes ----------------------------------------------------------------------------------------------------


def token(username: str, *roles: str) -> AccessToken:
    return AccessToken(username, username, frozenset(roles), frozenset(), None, 2**31)


class Routes:
    def __init__(self, study: Study, tmp_path: Path) -> None:
        self.study = study
        self.log = AuditLog(tmp_path / "audit.db")
        self.audit = AccessAudit(self.log, b"k" * 32)
        self.caller: AccessToken | None = None
        self.audit.current_caller = lambda: self.caller
        self.updates: list[str] = []
        parts = SimpleNamespace(rest=study.rest, store=study.store, study_input=study.input, audit=self.audit,
                                routing=None, timeline=SimpleNamespace(update=self.update))
        self.routes = StudyRoutes(parts, None, None)  # type: ignore[arg-type]

    def update(self, study_id: str, job: Job, loaded: Any = None) -> dict[str, Any]:
        measured = timeline(self.study)._time_point(study_id, job)[2]
        self.updates.append(str(measured.SOPInstanceUID))
        return {"sr_sop_instance_uid": "1.2.826.1", "measured": str(measured.SOPInstanceUID)}

    def call(self, method: str, body: dict[str, Any] | None = None, uid: str | None = None) -> tuple[int, Any]:
        answer = self.routes.approved_seg(uid or self.study.uid, method, json.dumps(body or {}).encode())
        return answer.status, json.loads(answer.body)


def test_the_routes_approve_show_and_withdraw_with_the_audit(study: Study, tmp_path: Path) -> None:
    routes = Routes(study, tmp_path)
    status, shown = routes.call("GET")
    assert status == 200 and shown["approval"] is None
    assert shown["measured_seg_sop_instance_uid"] == str(study.ensemble.SOPInstanceUID)
    assert routes.call("GET", uid="1.2.3")[0] == 404

    edited = study.edited()
    routes.caller = token("dan", "doctor")
    status, answer = routes.call("POST", {"sop_instance_uid": str(edited.SOPInstanceUID)})
    assert status == 403 and "radiologist" in answer["error"]
    routes.caller = token("root", "admin")  # an administrator is not a radiologist
    assert routes.call("POST", {"sop_instance_uid": str(edited.SOPInstanceUID)})[0] == 403
    routes.caller = token("alice", "radiologist")
    assert routes.call("POST", {"sop_instance_uid": str(study.ensemble.SOPInstanceUID)})[0] == 422
    assert routes.call("DELETE")[0] == 404  # nothing in force yet
    assert routes.updates == []  # no refusal recomputed anything

    status, answer = routes.call("POST", {"sop_instance_uid": str(edited.SOPInstanceUID)})
    assert status == 200, answer
    assert answer["approval"]["approved_by"] == "alice" and answer["approval"]["approved_role"] == "radiologist"
    assert answer["statement"].startswith("approved by radiologist alice, ")
    assert answer["timeline"]["measured"] == str(edited.SOPInstanceUID)  # recomputed at once, on the approved SEG
    assert answer["timeline"]["approved_segmentation"]["automatic_differs"] is True
    job = study.job()
    assert job.outputs["longitudinal"]["measured"] == str(edited.SOPInstanceUID)
    assert any(e["message"].startswith("segmentation approved: ") for e in job.events)
    status, shown = routes.call("GET")
    assert shown["approval"]["sop_instance_uid"] == str(edited.SOPInstanceUID)
    assert shown["measured_seg_sop_instance_uid"] == str(edited.SOPInstanceUID)
    status_answer = routes.routes.study_status(study.uid)
    assert json.loads(status_answer.body)["approved_segmentation"]["statement"].startswith("approved by radiologist")

    status, answer = routes.call("DELETE")
    assert status == 200 and answer["withdrawn"]["withdrawn_by"] == "alice"
    assert routes.updates == [str(edited.SOPInstanceUID), str(study.ensemble.SOPInstanceUID)]
    assert json.loads(routes.routes.study_status(study.uid).body)["approved_segmentation"] is None

    approvals = [(r.actor, r.role, r.outcome, r.detail) for r in routes.log.records(action="segmentation.approve")]
    assert approvals[:3] == [("dan", "doctor", "refused", "403 role doctor may not approve a segmentation"),
                             ("root", "admin", "refused", "403 role admin may not approve a segmentation"),
                             ("alice", "radiologist", "refused", "POST: 422")]
    assert approvals[3][:3] == ("alice", "radiologist", "success") and str(edited.SOPInstanceUID) in approvals[3][3]
    withdrawals = [(r.actor, r.outcome) for r in routes.log.records(action="segmentation.withdraw")]
    assert withdrawals == [("alice", "refused"), ("alice", "success")]
    assert all(r.resource_uid == study.uid for r in routes.log.records(action="segmentation.approve"))


def test_the_role_table_lets_radiologists_alone_approve() -> None:
    uri = "/oncoflow/studies/1.2.3/approved-seg"
    assert route_rule("GET", uri).permission is Permission.READ_RESULTS
    assert route_rule("POST", uri).permission is Permission.APPROVE_SEGMENTATION
    assert route_rule("DELETE", uri).permission is Permission.APPROVE_SEGMENTATION
    assert route_rule("POST", uri).value == "1.2.3"
    assert may_approve_segmentation({"radiologist"}) and may_approve_segmentation({"doctor", "radiologist"})
    for roles in ({"admin"}, {"doctor"}, {"clinician"}, {"pipeline"}, {"worker"}, set()):
        assert not may_approve_segmentation(roles), roles
    approve, show = route_rule("POST", uri), route_rule("GET", uri)
    assert is_allowed({"radiologist"}, {"PAT-A"}, approve, "PAT-A")
    assert not is_allowed({"radiologist"}, {"PAT-A"}, approve, "PAT-B")  # only an assigned patient's study
    assert not is_allowed({"admin"}, set(), approve, "PAT-A") and is_allowed({"admin"}, set(), show, "PAT-A")
    assert is_allowed({"doctor"}, {"PAT-A"}, show, "PAT-A") and not is_allowed({"doctor"}, {"PAT-A"}, approve, "PAT-A")


# -- saying so: SR and report ----------------------------------------------------------------------------------------


def test_the_sr_references_the_approved_seg_and_says_who_approved_it(study: Study) -> None:
    edited = study.edited()
    approval = study.store.approve_segmentation(study.uid, str(edited.SOPInstanceUID), None, [1], "SEG stored by OHIF",
                                                study.series_uid, 0.096, "alice", "radiologist")
    lesion = LesionAtTimePoint("Lesion 1", generate_uid(), 0.096, 4.0, 5.0)
    note = f"{describe(approval)}: SEG stored by OHIF"
    sr = write_measurement_report(study.datasets, edited, lesion, None, ["nnunet"], {}, "fp", segmentation_note=note)
    read = read_measurement_report(sr)
    assert read["segmentation_note"] == note and note.startswith("approved by radiologist alice, 20")
    assert read["referenced_seg_sop_instance_uid"] == str(edited.SOPInstanceUID)
    plain = write_measurement_report(study.datasets, study.ensemble, lesion, None, ["nnunet"], {}, "fp")
    assert read_measurement_report(plain)["segmentation_note"] is None
    assert plain.SOPInstanceUID != sr.SOPInstanceUID  # saying so is part of the content: another UID
    anonymous = dict(approval, approved_by="anonymous", approved_role="anonymous")
    assert describe(anonymous).startswith("approved by an anonymous user (login off), ")


def test_the_report_says_the_measurements_come_from_the_approved_segmentation(tmp_path: Path) -> None:
    png = BytesIO()
    Image.new("RGB", (40, 30), "white").save(png, format="PNG")
    findings = ClinicalFindings((TimePointFinding(date(2026, 1, 1), 0.096, None, 4.0),), None, ("nnunet",), None,
                                None)
    content = ReportContent(
        institution="Test hospital", patient_pseudonym="OF-AAAA-BBBB", patient_age=None, patient_sex=None,
        study_instance_uid="1.2.3", findings=findings,
        summary=ClinicalSummary("Follow-up MRI.", "deterministic", None, (), None, False, None), experts=(),
        fusion_strategy="staple", registration=None, overlay_png=png.getvalue(), volume_plot_png=png.getvalue(),
        software=(("OncoFlow", "test"),), signer_name="Test signer", signed_at=datetime(2026, 1, 2, tzinfo=UTC),
        review_reasons=("too small",),
        segmentation_note="The measurements come from the approved segmentation: refined SEG v1 (SEG 1.2.3.4, "
                          "segments 1), approved by radiologist alice, 2026-01-02 10:15 UTC; not from the panel's "
                          "automatic segmentation.")
    path = tmp_path / "report.pdf"
    path.write_bytes(render_report_pdf(content))
    text = " ".join(subprocess.run([required_tool("pdftotext"), str(path), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Approved segmentation. The measurements come from the approved segmentation" in text
    assert "approved by radiologist alice, 2026-01-02 10:15 UTC" in text
    assert "it is not the one measured" in text and "Segmentation implausible" not in text
