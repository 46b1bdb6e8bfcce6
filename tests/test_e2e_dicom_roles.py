"""DICOM peers by role, on a real Orthanc: store peers may only C-STORE, query peers get their own rights from their
own IP address, and every refusal is in the audit log (issue 19, points 1 and 2).

One stack with login off (the DICOM side does not use HTTP tokens) and these peers:

* ``TESTSCU`` and ``STORESCU`` (store peers, 127.0.0.1): ``storescu`` stores; ``findscu``, ``getscu`` and
  ``movescu`` are refused;
* ``QRPEER@127.0.0.1:<port>/find+move+get`` (a workstation on this machine): finds, gets and moves the study,
  the control that shows the refusals come from the roles, not from a broken Q/R;
* ``FARPEER@127.0.0.2:104/find`` (a query peer declared on another address): calling from 127.0.0.1 it is refused
  at association;
* ``INTRUDER``, on no list: refused at association.

Each refusal must appear exactly once in the audit log (action ``dicom.refused``, actor the calling AE title, the
command and the reason in the detail), read back through ``GET /oncoflow/audit``. A resent source instance with
other pixels never replaces the stored one (``OverwriteInstances`` off): by C-STORE Orthanc keeps the original and
tells the sender Success (Orthanc 1.10.1 gives plug-ins no safe hook to refuse it); by REST the upload route refuses
it with 409 and audits it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from .conftest import TEST_AET, Stack, axial_volume, free_port, required_tool, running_stack, unique_study, write_series

pytestmark = pytest.mark.e2e

QR_PORT = free_port()


@pytest.fixture(scope="module")
def roles_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("oncoflow-dicom-roles"),
                       ONCOFLOW_QUERY_PEERS=f"QRPEER@127.0.0.1:{QR_PORT}/find+move+get,FARPEER@127.0.0.2:104/find",
                       ONCOFLOW_PANEL="nnunet_demo") as stack:
        yield stack


@pytest.fixture(scope="module")
def stored(roles_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A small study stored by the store peer: (StudyInstanceUID, the folder of its files)."""
    study = unique_study("dicom-roles")
    folder = tmp_path_factory.mktemp("roles-study")
    voxels = np.random.default_rng(11).uniform(50, 900, (6, 16, 16)).astype(np.float32)
    write_series(folder, axial_volume(voxels), study)
    roles_stack.push(folder)
    assert roles_stack.studies_with_uid(study.study_instance_uid)
    return study.study_instance_uid, folder


def dcmtk(tool: str, stack: Stack, calling: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [required_tool(tool), "-aet", calling, "-aec", stack.settings.aet, *arguments, "127.0.0.1",
               str(stack.settings.dicom_port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def study_query(study_uid: str) -> list[str]:
    return ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]


def find(stack: Stack, calling: str, study_uid: str, out: Path) -> int:
    """The number of C-FIND answers ``calling`` got (each written by findscu as a file)."""
    out.mkdir()
    dcmtk("findscu", stack, calling, "-X", "-od", str(out), *study_query(study_uid))
    return len(list(out.iterdir()))


def get(stack: Stack, calling: str, study_uid: str, out: Path) -> int:
    """The number of instances ``calling`` retrieved by C-GET."""
    out.mkdir()
    dcmtk("getscu", stack, calling, "-od", str(out), *study_query(study_uid))
    return len(list(out.iterdir()))


def move(stack: Stack, calling: str, study_uid: str, out: Path, port: int) -> int:
    """The number of instances C-MOVEd to ``calling`` itself (movescu receives them on ``port``)."""
    out.mkdir()
    dcmtk("movescu", stack, calling, "-aem", calling, "--port", str(port), "-od", str(out), *study_query(study_uid))
    return len(list(out.iterdir()))


def dicom_refusals(stack: Stack) -> list[dict[str, Any]]:
    status, body = stack.get("/oncoflow/audit?action=dicom.refused&limit=1000")
    assert status == 200, body
    return body["records"]


def new_refusals(stack: Stack, before: int, expected: int) -> list[dict[str, Any]]:
    """The refusals audited since ``before``, once ``expected`` of them are in (Orthanc's log is read in the
    background, within a second); a few seconds more must bring no extra one."""
    deadline = time.monotonic() + 20
    records = dicom_refusals(stack)[before:]
    while len(records) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        records = dicom_refusals(stack)[before:]
    time.sleep(2)
    return dicom_refusals(stack)[before:]


def test_a_store_peer_stores_and_is_refused_every_query_and_retrieve(roles_stack: Stack, stored: tuple[str, Path],
                                                                      tmp_path: Path) -> None:
    study_uid, _ = stored
    before = len(dicom_refusals(roles_stack))
    assert find(roles_stack, TEST_AET, study_uid, tmp_path / "find") == 0
    assert get(roles_stack, TEST_AET, study_uid, tmp_path / "get") == 0
    assert move(roles_stack, TEST_AET, study_uid, tmp_path / "move", free_port()) == 0
    records = new_refusals(roles_stack, before, 3)
    assert [(r["actor"], r["role"], r["outcome"]) for r in records] == [(TEST_AET, "modality", "refused")] * 3
    assert [r["detail"] for r in records] == [f"{command} from 127.0.0.1: {command} not allowed for this peer"
                                              for command in ("Find", "Get", "Move")]


def test_a_query_peer_finds_gets_and_moves_from_its_own_address(roles_stack: Stack, stored: tuple[str, Path],
                                                                 tmp_path: Path) -> None:
    study_uid, folder = stored
    before = len(dicom_refusals(roles_stack))
    instances = len(list(folder.iterdir()))
    assert find(roles_stack, "QRPEER", study_uid, tmp_path / "find") == 1
    assert get(roles_stack, "QRPEER", study_uid, tmp_path / "get") >= instances  # the MR (and OncoFlow's results)
    assert move(roles_stack, "QRPEER", study_uid, tmp_path / "move", QR_PORT) >= instances
    assert new_refusals(roles_stack, before, 0) == []


@pytest.mark.parametrize(("calling", "reason"), [
    ("FARPEER", "association from 127.0.0.1: calls from another host than configured (127.0.0.2)"),
    ("INTRUDER", "association from 127.0.0.1: unknown AE title"),
])
def test_a_peer_on_the_wrong_host_or_on_no_list_is_refused_at_association(
        roles_stack: Stack, stored: tuple[str, Path], tmp_path: Path, calling: str, reason: str) -> None:
    study_uid, _ = stored
    before = len(dicom_refusals(roles_stack))
    assert find(roles_stack, calling, study_uid, tmp_path / "find") == 0
    assert "Association Rejected" in dcmtk("echoscu", roles_stack, calling).stderr
    records = new_refusals(roles_stack, before, 2)
    assert [(r["actor"], r["detail"]) for r in records] == [(calling, reason)] * 2


def _md5_of_stored(stack: Stack, sop_instance_uid: str) -> str:
    status, answer = stack.request("POST", "/tools/lookup", sop_instance_uid.encode())
    assert status == 200, answer
    (instance,) = [m["ID"] for m in json.loads(answer) if m["Type"] == "Instance"]
    return hashlib.md5(stack.get_bytes(f"/instances/{instance}/file")).hexdigest()  # noqa: S324 (not security)


def test_a_resent_source_instance_never_replaces_the_stored_one(roles_stack: Stack, stored: tuple[str, Path],
                                                                tmp_path: Path) -> None:
    _, folder = stored
    original_path = sorted(folder.iterdir())[0]
    original = pydicom.dcmread(original_path)
    uid = str(original.SOPInstanceUID)
    kept = _md5_of_stored(roles_stack, uid)
    changed = pydicom.dcmread(original_path)
    changed.PixelData = (np.asarray(changed.pixel_array) + 7).astype(changed.pixel_array.dtype).tobytes()
    changed_path = tmp_path / "changed.dcm"
    changed.save_as(changed_path, enforce_file_format=True)

    # by C-STORE: Orthanc keeps the original (the sender is told Success)
    sent = subprocess.run([required_tool("storescu"), "-aet", TEST_AET, "-aec", roles_stack.settings.aet, "127.0.0.1",
                           str(roles_stack.settings.dicom_port), str(changed_path)], capture_output=True, text=True,
                          timeout=60)
    assert sent.returncode == 0, sent.stderr
    assert _md5_of_stored(roles_stack, uid) == kept

    # by REST: refused with 409 before Orthanc sees it, and audited; the same bytes again are simply kept
    before = len(roles_stack.get("/oncoflow/audit?action=dicom.store.refused&limit=1000")[1]["records"])
    buffer = io.BytesIO()
    changed.save_as(buffer, enforce_file_format=True)
    status, body = roles_stack.request("POST", "/instances", buffer.getvalue())
    assert status == 409 and b"already stored with other content" in body, body
    assert _md5_of_stored(roles_stack, uid) == kept
    status, body = roles_stack.request("POST", "/instances", original_path.read_bytes())
    assert status == 200 and json.loads(body)["Status"] == "AlreadyStored", body
    records = roles_stack.get("/oncoflow/audit?action=dicom.store.refused&limit=1000")[1]["records"][before:]
    assert [(r["actor"], r["resource_uid"], r["outcome"]) for r in records] == [("rest", uid, "refused")]
    assert "already stored with other content" in records[0]["detail"]
