"""Hostile input against a running stack: a malformed-DICOM corpus by C-STORE and REST, then fuzzed HTTP.

A valid study is stored and analysed first, so that there is data to lose. Every file of
:mod:`tests.hostile_dicom_corpus` is then pushed alone by C-STORE (``storescu``, allowed AE
title) and by ``POST /instances``. After each batch Orthanc, the plugin and the worker must
answer, and the first study must keep its instances and its SEG. The upload guard
(:mod:`oncoflow.security.upload_guard`) must have discarded every file it refuses, with one
``dicom.store.refused`` audit record each. Last, about 200 malformed HTTP requests hit
OncoFlow's routes: no 5xx but the documented 503 (a worker or expert unavailable). The
counts are written to ``$ONCOFLOW_HOME/test-artifacts/hostile-input.json`` (for the README).
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.stack import http_get

from .conftest import TEST_AET, Stack, unique_study, write_series
from .hostile_dicom_corpus import HostileCase, clean_slice, hostile_cases, write_corpus

pytestmark = pytest.mark.e2e

DOCUMENTED_5XX = {503}  # /oncoflow/panel, refine and reports when the worker or an expert is unavailable
FUZZ_REQUESTS = 200
REST_CRASHES_ORTHANC: tuple[str, ...] = ()
"""Cases not pushed by REST. Orthanc 1.10.1 segfaults on a POST /instances nested >= 48 levels even when the
received-instance callback discards it (it parses the file afterwards); the guard now takes over POST /instances
and refuses such files before Orthanc parses them, so every case is pushed."""


def _alive(stack: Stack) -> dict[str, int]:
    return {
        "orthanc": http_get(f"{stack.settings.orthanc_url}/system", timeout_s=10)[0],
        "plugin": http_get(f"{stack.settings.orthanc_url}/oncoflow/health", timeout_s=10)[0],
        "worker": http_get(f"{stack.settings.worker_http_url}/v2/health/ready", timeout_s=10)[0],
    }


def _snapshot(stack: Stack, study_uid: str) -> tuple[int, list[str]]:
    _, instances = stack.get(f"/studies/{stack.study_id(study_uid)}/instances")
    return len(instances), sorted(s["ID"] for s in stack.seg_series(study_uid))


def _stored(stack: Stack, sop_instance_uid: str | None) -> bool:
    if sop_instance_uid is None:
        return False
    request = urllib.request.Request(f"{stack.settings.orthanc_url}/tools/lookup", data=sop_instance_uid.encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return any(m["Type"] == "Instance" for m in json.loads(response.read()))


def _delete(stack: Stack, sop_instance_uid: str | None) -> None:
    """Remove a case's instance, so that the other channel's push is judged on its own."""
    if sop_instance_uid is None:
        return
    request = urllib.request.Request(f"{stack.settings.orthanc_url}/tools/lookup", data=sop_instance_uid.encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        for match in json.loads(response.read()):
            if match["Type"] == "Instance":
                urllib.request.urlopen(urllib.request.Request(
                    f"{stack.settings.orthanc_url}/instances/{match['ID']}", method="DELETE"), timeout=10).close()


def _c_store(stack: Stack, path: Path) -> int:
    try:
        done = subprocess.run(["storescu", "-aet", TEST_AET, "-aec", stack.settings.aet, "127.0.0.1",
                               str(stack.settings.dicom_port), str(path)], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return -999
    return done.returncode


GUARD_REFUSED = "refused by the guard"


def _rest_store(stack: Stack, data: bytes) -> tuple[int, str]:
    """The HTTP status and what answered: Orthanc's Status when stored, :data:`GUARD_REFUSED` for the upload
    guard's 400 ("upload refused: <reason>"), "rejected" for Orthanc's own refusal."""
    request = urllib.request.Request(f"{stack.settings.orthanc_url}/instances", data=data, method="POST",
                                     headers={"Content-Type": "application/dicom"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, str(json.loads(response.read()).get("Status"))
    except urllib.error.HTTPError as exc:
        try:
            error = str(json.loads(exc.read()).get("error", ""))
        except ValueError:
            error = ""
        return exc.code, GUARD_REFUSED if exc.code == 400 and error.startswith("upload refused: ") else "rejected"
    except (OSError, ValueError) as exc:
        return 0, type(exc).__name__


def _stow(stack: Stack, path: str, data: bytes) -> tuple[int, list[int]]:
    """A STOW-RS of one file, written as OHIF 3.13 writes it; the status and the failure reasons answered."""
    boundary = "oncoflow-test-boundary-0123456789"
    body = (f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--".encode())
    status, answer = stack.request("POST", path, body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary="{boundary}"',
        "Accept": "application/dicom+json"})
    try:
        failed = json.loads(answer).get("00081198", {}).get("Value", [])
    except (ValueError, AttributeError):
        failed = []
    return status, [item["00081197"]["Value"][0] for item in failed]


def _refusals(stack: Stack) -> list[dict[str, Any]]:
    """Every ``dicom.store.refused`` audit record, once their number has stopped growing (the guard of stored
    instances runs from Orthanc's change callback, a moment after storescu is told Success)."""
    records: list[dict[str, Any]] = []
    for _ in range(20):
        status, body = stack.get("/oncoflow/audit?action=dicom.store.refused&limit=1000")
        assert status == 200, body
        if records and len(body["records"]) == len(records):
            break
        records = body["records"]
        time.sleep(0.5)
    return records


def _check_refusal_records(records: list[dict[str, Any]], refused: list[HostileCase], actor: str) -> None:
    """Exactly one audit record per refused case, from ``actor``, naming the case's reason."""
    assert len(records) == len(refused), ([r["detail"] for r in records], [c.name for c in refused])
    assert all(r["actor"] == actor and r["outcome"] == "refused" and r["role"] == "modality" for r in records)
    details = [r["detail"] or "" for r in records]
    for case in refused:
        assert sum(case.guard_reason in detail for detail in details) >= 1, (case.name, details)


def _check_unharmed(stack: Stack, study_uid: str, before: tuple[int, list[str]], batch: str) -> None:
    alive = _alive(stack)
    assert set(alive.values()) == {200}, f"after {batch}: {alive}"
    assert _snapshot(stack, study_uid) == before, f"after {batch}: the first study changed"


def _fuzz_requests(rng: random.Random, study_uid: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    uids = [study_uid, "1.2.3", "9" * 64, "1..2", "0.0.0.0"]
    patients = ["PAT-x", "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 200, "%E2%80%AE"]
    paths = [
        "/oncoflow/health", "/oncoflow/panel", "/oncoflow/audit", "/oncoflow/model-stats",
        "/oncoflow/model-stats.png", "/oncoflow/studies/{uid}", "/oncoflow/studies/{uid}/refine",
        "/oncoflow/patients/{pat}/timeline", "/oncoflow/patients/{pat}/documents",
        "/oncoflow/patients/{pat}/documents/search", "/oncoflow/reports/{uid}.pdf", "/oncoflow/dicom-web/studies",
        "/oncoflow/audit?since_id=-1&limit=99999999", "/oncoflow/audit?limit=abc",
        "/oncoflow/patients/{pat}/documents/search?q=%00&k=-5", "/oncoflow/studies/{uid}/report",
        "/oncoflow/studies/{uid}/reanalyse",
    ]
    bodies = [b"", b"{", b"null", b"[]", b'{"clicks": "x"}', b'{"clicks": [[1e309, -1e309, "a"]]}',
              b'{"clicks": [' + b"[0,0,0]," * 5000 + b"[0,0,0]]}", b"\xff\xfe\x00garbage", b"%PDF-1.4\n%%EOF",
              bytes(rng.getrandbits(8) for _ in range(2048))]
    content_types = ["application/json", "text/plain", "application/pdf", "multipart/form-data; boundary=",
                     "\x7f", "a" * 2000]
    dispositions = ['attachment; filename="../../../../etc/passwd"', 'attachment; filename="a\\x00.pdf"',
                    "attachment; filename*=UTF-8''%2e%2e%2f%2e%2e%2fx.txt", "inline", "a" * 4000,
                    'attachment; filename="' + "x" * 1000 + '.txt"']
    requests = []
    for _ in range(FUZZ_REQUESTS):
        path = rng.choice(paths)
        uid = rng.choice(uids)
        if ("reanalyse" in path or "report" in path or "refine" in path) and uid == study_uid:
            uid = "1.2.3"  # the first study's results must stay as they are
        path = path.format(uid=uid, pat=rng.choice(patients))
        if rng.random() < 0.05:
            path += "?" + "q=" + "A" * rng.choice([4000, 16000, 70000])
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
        headers = {"Content-Type": rng.choice(content_types)}
        if "documents" in path or rng.random() < 0.2:
            headers["Content-Disposition"] = rng.choice(dispositions)
        if rng.random() < 0.1:
            headers["X-Junk"] = "b" * 8000
        requests.append((method, path, rng.choice(bodies) if method not in ("GET", "HEAD") else b"", headers))
    return requests


def _send(stack: Stack, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", stack.settings.http_port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0  # the server closed the connection (e.g. a URL or header over its limits)
    finally:
        connection.close()


def test_hostile_input(stack: Stack, tmp_path: Path) -> None:
    counts: dict[str, Any] = {}
    # 1. data to lose: a valid study (a full-head phantom), analysed
    study = unique_study("hostile-first")
    write_series(tmp_path / "first", make_phantom(9501, shape=(24, 48, 48)).volume, study)
    stack.push(tmp_path / "first")
    assert stack.wait_job(study.study_instance_uid)["state"] == "done"
    before = _snapshot(stack, study.study_instance_uid)
    for _ in range(30):  # the job's outputs (SEG, SR, report) are all stored once two snapshots agree
        time.sleep(1)
        later = _snapshot(stack, study.study_instance_uid)
        if later == before:
            break
        before = later
    assert before[0] > 12 and before[1], before  # the 12 slices and the job's SEG, SR and report
    refused_before = len(_refusals(stack))

    cases: list[HostileCase] = hostile_cases(clean_slice(unique_study("hostile-corpus")))
    paths = write_corpus(cases, tmp_path / "corpus")
    per_case: dict[str, dict[str, Any]] = {}

    # 2. C-STORE, one association per file
    for case in cases:
        rc = _c_store(stack, paths[case.name])
        per_case[case.name] = {"kind": case.kind, "guard": case.guard_reason, "cstore_rc": rc,
                               "cstore_stored": _stored(stack, case.sop_instance_uid)}
        _delete(stack, case.sop_instance_uid)
    _check_unharmed(stack, study.study_instance_uid, before, "the C-STORE batch")
    # Over C-STORE no preamble travels: the guard can only refuse, after storage, a file too deeply nested that
    # storescu delivered (told Success); each one is deleted and audited once, as coming from "dicom"
    after_cstore = _refusals(stack)
    delivered_nested = [c for c in cases if c.kind == "structure" and c.guard_reason is not None
                        and per_case[c.name]["cstore_rc"] == 0]
    assert delivered_nested, "the corpus must deliver at least one deeply nested file by C-STORE"
    _check_refusal_records(after_cstore[refused_before:], delivered_nested, "dicom")

    # 3. REST, one POST /instances per file
    for case in cases:
        if case.name.startswith(REST_CRASHES_ORTHANC):
            per_case[case.name].update(rest_status=-1, rest_outcome="not tried (crashes Orthanc 1.10.1)",
                                       rest_stored=False)
            continue
        status, outcome = _rest_store(stack, case.data)
        per_case[case.name].update(rest_status=status, rest_outcome=outcome,
                                   rest_stored=_stored(stack, case.sop_instance_uid))
        assert set(_alive(stack).values()) == {200}, f"after REST {case.name}: {_alive(stack)}"
    _check_unharmed(stack, study.study_instance_uid, before, "the REST batch")

    for case in cases:
        result = per_case[case.name]
        # over REST the guard sees the file's bytes before Orthanc does: it answers every case it must refuse
        # (and only those) with its own 400, and nothing of them is stored
        assert (result["rest_outcome"] == GUARD_REFUSED) == (case.guard_reason is not None), (case.name, result)
        if case.guard_reason is not None:
            assert not result["rest_stored"], (case.name, result)
        if case.kind == "structure" and case.guard_reason is not None:  # C-STORE carries no preamble: only these
            assert not result["cstore_stored"], (case.name, result)
    assert per_case["clean"]["rest_stored"] and per_case["clean"]["cstore_stored"], per_case["clean"]

    refusals = _refusals(stack)[refused_before:]
    guard_refused_rest = [c for c in cases if per_case[c.name]["rest_outcome"] == GUARD_REFUSED]
    _check_refusal_records(refusals[len(after_cstore) - refused_before:], guard_refused_rest, "rest")
    refused_before_parse = len(guard_refused_rest)

    # 4. STOW-RS, one file per request as OHIF sends them, through OncoFlow's route: every case the guard must
    # refuse is refused (409, failure reason 0xC000) before anything parses it, audited once as "stow"; the
    # DICOMweb plug-in's own STOW-RS route is closed (403), so no file can go round the guard
    after_rest = _refusals(stack)
    for case in cases:
        status, failures = _stow(stack, "/oncoflow/dicom-web/studies", case.data)
        per_case[case.name].update(stow_status=status, stow_failures=failures,
                                   stow_stored=_stored(stack, case.sop_instance_uid))
        _delete(stack, case.sop_instance_uid)
        assert set(_alive(stack).values()) == {200}, f"after STOW {case.name}: {_alive(stack)}"
    _check_unharmed(stack, study.study_instance_uid, before, "the STOW-RS batch")
    for case in cases:
        result = per_case[case.name]
        if case.guard_reason is not None:
            assert (result["stow_status"], result["stow_failures"], result["stow_stored"]) == (409, [0xC000], False), \
                (case.name, result)
    assert per_case["clean"]["stow_status"] == 200 and per_case["clean"]["stow_stored"], per_case["clean"]
    guarded = [c for c in cases if c.guard_reason is not None]
    # files the guard lets through but no DICOM reader can parse are refused too (0xC000) instead of being handed
    # to the DICOMweb plug-in: each is one more record, "unreadable DICOM"
    unreadable = [c for c in cases if c.guard_reason is None and per_case[c.name]["stow_status"] == 409]
    assert all(per_case[c.name]["stow_failures"] == [0xC000] and not per_case[c.name]["stow_stored"]
               for c in unreadable), [per_case[c.name] for c in unreadable]
    stow_records = _refusals(stack)[len(after_rest):]
    assert sum(r["detail"].startswith("unreadable DICOM") for r in stow_records) == len(unreadable), stow_records
    _check_refusal_records([r for r in stow_records if not r["detail"].startswith("unreadable DICOM")], guarded,
                           "stow")
    assert _stow(stack, "/dicom-web/studies", next(c for c in cases if c.name == "clean").data)[0] == 403

    # 5. fuzzed HTTP requests to OncoFlow's routes
    statuses: Counter[int] = Counter()
    unexpected = []
    for method, path, body, headers in _fuzz_requests(random.Random(7), study.study_instance_uid):
        status = _send(stack, method, path, body, headers)
        statuses[status] += 1
        if status >= 500 and status not in DOCUMENTED_5XX:
            unexpected.append((status, method, path[:120]))
    _check_unharmed(stack, study.study_instance_uid, before, "the HTTP fuzz loop")

    counts = {
        "corpus_files": len(cases),
        "cstore": {"tried": len(cases), "stored": sum(r["cstore_stored"] for r in per_case.values()),
                   "refused_by_guard": sum(r["actor"] == "dicom" for r in refusals),
                   "scu_failed": sum(r["cstore_rc"] != 0 for r in per_case.values())},
        "stow": {"tried": len(cases), "stored": sum(r["stow_stored"] for r in per_case.values()),
                 "refused_by_guard_before_parsing": len(guarded), "refused_unreadable": len(unreadable)},
        "rest": {"tried": sum(r["rest_status"] != -1 for r in per_case.values()),
                 "stored": sum(r["rest_stored"] for r in per_case.values()),
                 "refused_by_guard_before_parsing": refused_before_parse,
                 "rejected_by_orthanc": sum(400 <= r["rest_status"] < 500 for r in per_case.values())
                 - refused_before_parse,
                 "no_answer": sum(r["rest_status"] == 0 for r in per_case.values())},
        "audit_refusals": len(refusals),
        "http_fuzz": {"tried": FUZZ_REQUESTS, "by_status": {str(k): v for k, v in sorted(statuses.items())},
                      "unexpected_5xx": len(unexpected)},
        "survived": {"orthanc": True, "plugin": True, "worker": True, "first_study_unchanged": True},
        "cases": per_case,
    }
    artifacts = stack.settings.home / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "hostile-input.json").write_text(json.dumps(counts, indent=2))
    print(json.dumps({k: v for k, v in counts.items() if k != "cases"}, indent=2))
    assert not unexpected, unexpected
