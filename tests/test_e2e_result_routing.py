"""Results routed to the hospital's main PACS (issue 20, part 4), end to end on real components.

dcmtk's ``dcmqrscp`` (its own ``dcmqrscp.cfg`` in a temporary folder, a free port, bit-preserving storage) plays
the hospital PACS ``HOSPITALPACS``; an OncoFlow stack routes to it (``ONCOFLOW_ROUTE_TO``, every expert's SEG:
``ONCOFLOW_ROUTE_OBJECTS=all``) and lets it query and retrieve (``ONCOFLOW_QUERY_PEERS`` with find+move). One
full-head phantom patient (a follow-up first, its baseline later) goes through the one-expert panel:

* every result object of the study (SEGs, SR, Encapsulated PDF) arrives, its data set byte for byte as Orthanc
  holds it (the bytes after the File Meta Information: the File Meta group is each writer's own, Orthanc's from
  the uploader and dcmqrscp's naming dcmqrscp, and is not sent by C-STORE at all);
* the PACS is down for 30 s after a routing attempt failed, while the baseline arrives late and re-measures the
  follow-up: once it is back, the baseline's results, the follow-up's new SR, REG and report, and a rejection note
  (KOS, "Rejected for Quality Reasons") withdrawing exactly the follow-up's replaced SR and report, all arrive;
* the PACS, emptied, finds the study's SEG, SR and PDF series by C-FIND and C-MOVEs them to itself.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from oncoflow.phantoms.longitudinal_phantom import LongitudinalCase, make_longitudinal_case

from .conformance_statement import coded_concepts, table_after
from .conftest import Stack, free_port, required_tool, running_stack
from .test_e2e_dicom_roles import dcmtk
from .test_e2e_longitudinal import GRID, push_visit

pytestmark = pytest.mark.e2e

PACS_AET = "HOSPITALPACS"
DOWN_S = 30.0
DICM_OFFSET = 132  # 128-byte preamble + "DICM"
DCMQRSCP_CONFIG = """NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{aet}  {storage}  RW  (200, 1024mb)  ANY
AETable END
"""


@dataclass
class HospitalPacs:
    """dcmqrscp as the hospital's PACS: C-STORE SCP (and Q/R SCP) for any calling AE title, on ``port``."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.folder / "dcmqrscp.cfg"
        config.write_text(DCMQRSCP_CONFIG.format(port=self.port, aet=PACS_AET, storage=self.storage))
        log = (self.folder / "dcmqrscp.log").open("ab")
        # +B: each received data set written exactly as it came over the wire. Not --single-process: dcmqrscp
        # 3.6.7 then dies of a segmentation fault after its first association (measured)
        self.process = subprocess.Popen([required_tool("dcmqrscp"), "-c", str(config), "+B", str(self.port)],
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while subprocess.run([required_tool("echoscu"), "-aet", "PROBE", "-aec", PACS_AET, "127.0.0.1",
                              str(self.port)], capture_output=True).returncode != 0:
            assert self.process.poll() is None and time.monotonic() < deadline, "dcmqrscp did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def empty(self) -> None:
        """Stop, delete everything stored, start again."""
        self.stop()
        for path in self.storage.iterdir():
            path.unlink()
        self.start()

    def files(self) -> dict[str, Path]:
        """The stored files by SOPInstanceUID."""
        return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
                for p in self.storage.glob("*.dcm")}


def data_set_bytes(part10: bytes) -> bytes:
    """The bytes after the File Meta Information of a Part 10 file: its group length (0002,0000), an explicit VR
    UL element right after "DICM", says where the data set starts."""
    assert part10[128:DICM_OFFSET] == b"DICM" and part10[DICM_OFFSET:DICM_OFFSET + 6] == b"\x02\x00\x00\x00UL"
    group_length = int.from_bytes(part10[DICM_OFFSET + 8:DICM_OFFSET + 12], "little")
    return part10[DICM_OFFSET + 12 + group_length:]


@pytest.fixture(scope="module")
def hospital_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HospitalPacs]:
    pacs = HospitalPacs(tmp_path_factory.mktemp("hospital-pacs"), free_port())
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


@pytest.fixture(scope="module")
def routing_stack(hospital_pacs: HospitalPacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    destination = f"{PACS_AET}@127.0.0.1:{hospital_pacs.port}"
    with running_stack(tmp_path_factory.mktemp("oncoflow-routing"), ONCOFLOW_PANEL="nnunet_demo",
                       ONCOFLOW_ROUTE_TO=destination, ONCOFLOW_ROUTE_OBJECTS="all", ONCOFLOW_ROUTE_RETRY_S="900",
                       ONCOFLOW_QUERY_PEERS=f"{destination}/find+move") as stack:
        yield stack


@pytest.fixture(scope="module")
def patient() -> LongitudinalCase:
    return make_longitudinal_case(3111, categories=["progression"], shape=GRID["shape"])


def oncoflow_instances(stack: Stack, study_uid: str) -> dict[str, tuple[str, str]]:
    """OncoFlow's objects in the study as Orthanc holds them: SOPInstanceUID -> (Orthanc ID, Modality)."""
    _, series = stack.get(f"/studies/{stack.study_id(study_uid)}/series")
    found = {}
    for s in series:
        if s["MainDicomTags"].get("Manufacturer") == "OncoFlow":
            for instance in s["Instances"]:
                _, tags = stack.get(f"/instances/{instance}/simplified-tags")
                found[tags["SOPInstanceUID"]] = (instance, s["MainDicomTags"]["Modality"])
    return found


def routed_events(stack: Stack, study_uid: str) -> list[str]:
    job = stack.job(study_uid)
    return [e["message"] for e in (job or {}).get("events", []) if e["message"].startswith("routed ")]


def wait_routed(stack: Stack, study_uid: str, more_than: int, timeout_s: float = 300) -> list[str]:
    """Wait until the study's latest job records more than ``more_than`` successful routings; returns them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = routed_events(stack, study_uid)
        if len(events) > more_than:
            return events
        time.sleep(0.5)
    raise AssertionError(f"study {study_uid} not routed again in {timeout_s} s; events: {stack.job(study_uid)}")


def wait_event(stack: Stack, study_uid: str, text: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(text in e["message"] for e in (stack.job(study_uid) or {}).get("events", [])):
        assert time.monotonic() < deadline, f"no event '{text}' for {study_uid}: {stack.job(study_uid)}"
        time.sleep(0.5)


def assert_arrived_identical(stack: Stack, pacs: HospitalPacs, instances: dict[str, tuple[str, str]]) -> None:
    """Every instance is stored at the PACS, its data set byte-identical to Orthanc's file."""
    files = pacs.files()
    missing = sorted(set(instances) - set(files))
    assert not missing, f"not at the hospital PACS: {missing}"
    for uid, (orthanc_id, modality) in instances.items():
        sent = data_set_bytes(stack.get_bytes(f"/instances/{orthanc_id}/file"))
        received = data_set_bytes(files[uid].read_bytes())
        assert received == sent, f"{modality} {uid}: {len(received)} bytes received, {len(sent)} in Orthanc"


@pytest.fixture(scope="module")
def routed_follow_up(routing_stack: Stack, hospital_pacs: HospitalPacs, patient: LongitudinalCase,
                     tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, tuple[str, str]]]:
    """The follow-up visit pushed and routed: (its StudyInstanceUID, its OncoFlow objects as routed)."""
    study_uid = push_visit(routing_stack, tmp_path_factory.mktemp("follow-up"), patient, 1)
    job = routing_stack.wait_job(study_uid, timeout_s=400)
    assert job["state"] == "done", job["error"]
    wait_routed(routing_stack, study_uid, 0)
    return study_uid, oncoflow_instances(routing_stack, study_uid)


def test_every_result_arrives_byte_identical(routing_stack: Stack, hospital_pacs: HospitalPacs,
                                             routed_follow_up: tuple[str, dict[str, tuple[str, str]]]) -> None:
    study_uid, instances = routed_follow_up
    modalities = sorted(modality for _, modality in instances.values())
    # the ensemble, the expert's and the brain SEG (ONCOFLOW_ROUTE_OBJECTS=all), the SR and the signed report
    assert modalities == ["DOC", "SEG", "SEG", "SEG", "SR"], modalities
    assert_arrived_identical(routing_stack, hospital_pacs, instances)
    (event,) = routed_events(routing_stack, study_uid)
    assert event.startswith(f"routed 5 object(s) (DOC 1, SEG 3, SR 1) to {PACS_AET}@127.0.0.1:{hospital_pacs.port}")
    status, audit = routing_stack.get("/oncoflow/audit?action=dicom.route&limit=100")
    assert status == 200
    assert [(r["resource_uid"], r["outcome"]) for r in audit["records"]] == [(study_uid, "success")]


def test_results_and_withdrawals_arrive_after_the_pacs_was_down(
        routing_stack: Stack, hospital_pacs: HospitalPacs, patient: LongitudinalCase, tmp_path: Path,
        routed_follow_up: tuple[str, dict[str, tuple[str, str]]]) -> None:
    follow_up_uid, routed_before = routed_follow_up
    routings_before = len(routed_events(routing_stack, follow_up_uid))
    hospital_pacs.stop()
    # the baseline arrives after its follow-up: its results are new, and the follow-up's SR, REG and report are
    # made again (compared now), replacing the ones the PACS already holds
    baseline_uid = push_visit(routing_stack, tmp_path, patient, 0)
    job = routing_stack.wait_job(baseline_uid, timeout_s=400)
    assert job["state"] == "done", job["error"]
    wait_event(routing_stack, baseline_uid, "C-STORE attempt 1 failed")
    time.sleep(DOWN_S)  # the PACS stays down 30 s after OncoFlow found it down
    assert routed_events(routing_stack, baseline_uid) == []
    hospital_pacs.start()

    wait_routed(routing_stack, baseline_uid, 0)
    wait_routed(routing_stack, follow_up_uid, routings_before)
    baseline = oncoflow_instances(routing_stack, baseline_uid)
    follow_up = oncoflow_instances(routing_stack, follow_up_uid)
    assert sorted(m for _, m in baseline.values()) == ["DOC", "SEG", "SEG", "SEG", "SR"]
    assert_arrived_identical(routing_stack, hospital_pacs, {**baseline, **follow_up})

    # what OncoFlow replaced is withdrawn by one rejection note, which references exactly those instances
    replaced = set(routed_before) - set(follow_up)
    assert sorted(routed_before[uid][1] for uid in replaced) == ["DOC", "SR"]
    assert sorted(m for uid, (_, m) in follow_up.items() if uid not in routed_before) == ["DOC", "KO", "REG", "SR"]
    (note_uid,) = [uid for uid, (_, m) in follow_up.items() if m == "KO"]
    note = pydicom.dcmread(hospital_pacs.files()[note_uid])
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113001", "DCM", "Rejected for Quality Reasons")
    referenced = {str(sop.ReferencedSOPInstanceUID) for study in note.CurrentRequestedProcedureEvidenceSequence
                  for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    assert referenced == replaced
    assert {str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for item in note.ContentSequence
            if "ReferencedSOPSequence" in item} == replaced
    assert str(note.StudyInstanceUID) == follow_up_uid and str(note.PatientID) == patient.patient_id
    # as docs/dicom-conformance.md says: its row in 6.1, its codes in 6.2
    assert {"uid": str(note.SOPClassUID), "modality": "KO", "seriesnumber": str(note.SeriesNumber)}.items() <= next(
        row for row in table_after("### 6.1") if row["modality"] == "KO").items()
    assert coded_concepts(note) <= {(row["scheme"], row["code"]) for row in table_after("### 6.2")}


def find_series(stack: Stack, study_uid: str, out: Path) -> dict[str, str]:
    """The study's series as the hospital PACS finds them by C-FIND: SeriesInstanceUID -> Modality."""
    out.mkdir()
    result = dcmtk("findscu", stack, PACS_AET, "-S", "-X", "-od", str(out), "-k", "QueryRetrieveLevel=SERIES",
                   "-k", f"StudyInstanceUID={study_uid}", "-k", "SeriesInstanceUID", "-k", "Modality")
    assert result.returncode == 0, result.stderr
    answers = [pydicom.dcmread(p) for p in out.iterdir()]
    return {str(a.SeriesInstanceUID): str(a.Modality) for a in answers}


def test_the_pacs_finds_and_moves_the_results(routing_stack: Stack, hospital_pacs: HospitalPacs, tmp_path: Path,
                                              routed_follow_up: tuple[str, dict[str, tuple[str, str]]]) -> None:
    study_uid, _ = routed_follow_up
    hospital_pacs.empty()
    found = find_series(routing_stack, study_uid, tmp_path / "find")
    wanted = {uid: modality for uid, modality in found.items() if modality in ("SEG", "SR", "DOC")}
    assert sorted(wanted.values()) == ["DOC", "SEG", "SEG", "SEG", "SR"], found
    for series_uid in wanted:
        moved = dcmtk("movescu", routing_stack, PACS_AET, "-aem", PACS_AET, "-S", "-k", "QueryRetrieveLevel=SERIES",
                      "-k", f"StudyInstanceUID={study_uid}", "-k", f"SeriesInstanceUID={series_uid}")
        assert moved.returncode == 0, moved.stderr
    expected: dict[str, Any] = {uid: (orthanc_id, modality) for uid, (orthanc_id, modality)
                                in oncoflow_instances(routing_stack, study_uid).items() if modality in wanted.values()}
    stored = hospital_pacs.files()
    assert set(stored) == set(expected)
    assert sorted(str(pydicom.dcmread(p, stop_before_pixels=True).Modality) for p in stored.values()) == [
        "DOC", "SEG", "SEG", "SEG", "SR"]
    assert_arrived_identical(routing_stack, hospital_pacs, expected)
