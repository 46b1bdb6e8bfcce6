"""The audit log: append-only, hash-chained, PHI-guarded, concurrent, verifiable from outside."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from oncoflow.security import audit_log
from oncoflow.security.audit_log import AuditChainBroken, AuditLog, AuditRecord, main, patient_reference

REPO_ROOT = Path(__file__).resolve().parent.parent
STUDY_UID = "1.2.826.0.1.3680043.8.498.10758329457362856213"
ORTHANC_ID = "8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d"
KEY = b"k" * 32


def fill(log: AuditLog, count: int) -> list[AuditRecord]:
    return [
        log.append("radiologist-7", "radiologist", "study.read", f"1.2.3.{n}", "success", f"HTTP 200 GET /x/{n}")
        for n in range(1, count + 1)
    ]


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to the file, as a tamperer would open it."""
    return sqlite3.connect(path, isolation_level=None)


def drop_triggers(path: Path) -> None:
    with raw(path) as connection:
        for name in audit_log._TRIGGERS:
            connection.execute(f"DROP TRIGGER {name}")
    connection.close()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "oncoflow-audit.sqlite3"


def test_append_and_read_back(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        first = log.append("anonymous", "anonymous", "study.read", STUDY_UID, "success", "HTTP 200 GET /oncoflow/{s}")
        second = log.append("STORESCU", "modality", "dicom.store.refused", None, "refused", "unknown calling AE")
        third = log.append("oncoflow", "system", "study.analyse", "job-42", "failed")
        records = log.records()
        assert records == [first, second, third]
        assert [r.id for r in records] == [1, 2, 3]
        assert (first.actor, first.role, first.action, first.resource_uid, first.outcome, first.detail) == (
            "anonymous",
            "anonymous",
            "study.read",
            STUDY_UID,
            "success",
            "HTTP 200 GET /oncoflow/{s}",
        )
        assert third.detail is None and second.resource_uid is None
        assert first.previous_hash == "0" * 64
        assert second.previous_hash == first.record_hash and third.previous_hash == second.record_hash
        assert all(re.fullmatch(r"[0-9a-f]{64}", r.record_hash) for r in records)
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r.at) for r in records)
        assert [r.at for r in records] == sorted(r.at for r in records)
        assert log.records(since_id=1, limit=1) == [second]
        assert log.records(action="study.analyse") == [third]
        assert log.head() == (3, third.record_hash)
        assert first.as_dict()["resource_uid"] == STUDY_UID
        with pytest.raises(ValueError):
            log.records(limit=0)
    # Reopening keeps the chain going.
    with AuditLog(log_path) as log:
        assert log.append("oncoflow", "system", "report.create", STUDY_UID, "success").previous_hash == (
            third.record_hash
        )
        assert log.verify() == 4
    with pytest.raises(RuntimeError):
        log.append("oncoflow", "system", "report.create", STUDY_UID, "success")


def test_file_is_private_and_uses_wal(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 2)
        assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(log_path.parent).st_mode) & 0o077 == 0
        with raw(log_path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.close()


def test_verify_passes_on_an_intact_log(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        assert log.verify() == 0
        fill(log, 25)
        assert log.verify() == 25


def test_triggers_refuse_update_delete_and_out_of_chain_inserts(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        records = fill(log, 3)
    connection = raw(log_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE audit_record SET detail = 'changed' WHERE id = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM audit_record WHERE id = 2")
        row = list(connection.execute("SELECT * FROM audit_record WHERE id = 2").fetchone())
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):  # REPLACE deletes without the trigger
            connection.execute("INSERT OR REPLACE INTO audit_record VALUES (?,?,?,?,?,?,?,?,?,?)", row)
        row[0] = 4  # next id, but not chained to record 3
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("INSERT INTO audit_record VALUES (?,?,?,?,?,?,?,?,?,?)", row)
    finally:
        connection.close()
    with AuditLog(log_path) as log:
        assert log.records() == records
        assert log.verify() == 3


def test_edited_detail_is_found(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 10)
        drop_triggers(log_path)
        with raw(log_path) as connection:
            connection.execute("UPDATE audit_record SET detail = 'HTTP 200 GET /nothing' WHERE id = 6")
        connection.close()
        with pytest.raises(AuditChainBroken, match=r"audit record 6: .*edited") as caught:
            log.verify()
        assert caught.value.record_id == 6


def test_edit_with_a_recomputed_hash_shows_at_the_next_record(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        records = fill(log, 5)
        drop_triggers(log_path)
        edited = [*(getattr(records[2], field) for field in audit_log._FIELDS[:9])]
        edited[7] = "HTTP 200 GET /nothing"
        new_hash = hashlib.sha256(audit_log.canonical_encoding(*edited)).hexdigest()
        with raw(log_path) as connection:
            connection.execute(
                "UPDATE audit_record SET detail = ?, record_hash = ? WHERE id = 3", (edited[7], new_hash)
            )
        connection.close()
        with pytest.raises(AuditChainBroken, match=r"audit record 4: previous_hash") as caught:
            log.verify()
        assert caught.value.record_id == 4


def test_deleted_middle_row_is_found(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 10)
        drop_triggers(log_path)
        with raw(log_path) as connection:
            connection.execute("DELETE FROM audit_record WHERE id = 5")
        connection.close()
        with pytest.raises(AuditChainBroken, match=r"audit record 5: missing") as caught:
            log.verify()
        assert caught.value.record_id == 5


def test_deleted_and_renumbered_row_is_found(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 6)
        drop_triggers(log_path)
        with raw(log_path) as connection:
            connection.execute("DELETE FROM audit_record WHERE id = 3")
            connection.execute("UPDATE audit_record SET id = id - 1 WHERE id > 3")
        connection.close()
        with pytest.raises(AuditChainBroken) as caught:
            log.verify()
        assert caught.value.record_id == 3


def test_swapped_rows_are_found(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 8)
        drop_triggers(log_path)
        columns = audit_log._FIELDS[1:]
        with raw(log_path) as connection:
            row3 = connection.execute(f"SELECT {', '.join(columns)} FROM audit_record WHERE id = 3").fetchone()
            row4 = connection.execute(f"SELECT {', '.join(columns)} FROM audit_record WHERE id = 4").fetchone()
            assignments = ", ".join(f"{column} = ?" for column in columns)
            connection.execute(f"UPDATE audit_record SET {assignments} WHERE id = 3", row4)
            connection.execute(f"UPDATE audit_record SET {assignments} WHERE id = 4", row3)
        connection.close()
        with pytest.raises(AuditChainBroken, match=r"audit record 3: previous_hash") as caught:
            log.verify()
        assert caught.value.record_id == 3


def test_tampering_is_found_beyond_the_first_batch(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_log, "_BATCH", 4)  # verify streams in batches: cross several
    with AuditLog(log_path) as log:
        fill(log, 15)
        assert log.verify() == 15
        drop_triggers(log_path)
        with raw(log_path) as connection:
            connection.execute("UPDATE audit_record SET actor = 'someone-else' WHERE id = 13")
        connection.close()
        with pytest.raises(AuditChainBroken) as caught:
            log.verify()
        assert caught.value.record_id == 13


def test_dropped_triggers_alone_are_reported(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 3)
        drop_triggers(log_path)
        with pytest.raises(AuditChainBroken, match="triggers") as caught:
            log.verify()
        assert caught.value.record_id is None


def test_concurrent_threads_keep_one_chain(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def worker(number: int) -> None:
            try:
                start.wait()
                for n in range(50):
                    log.append(f"user-{number}", "doctor", "report.read", f"1.2.{number}.{n + 1}", "success")
            except BaseException as error:  # reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert log.verify() == 400
        assert [r.id for r in log.records(limit=1000)] == list(range(1, 401))
        assert {r.actor for r in log.records(limit=1000)} == {f"user-{n}" for n in range(8)}


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from oncoflow.security.audit_log import AuditLog

    path, name, gate = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    log = AuditLog(path)
    (gate.parent / f"ready-{name}").touch()
    deadline = time.monotonic() + 20
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for n in range(100):
        log.append(name, "modality", "dicom.store", f"1.2.840.{len(name)}.{n + 1}", "success")
        time.sleep(0.001)  # let the other writer in: the appends interleave
    log.close()
    """
)


def test_two_processes_keep_one_chain(log_path: Path, tmp_path: Path) -> None:
    AuditLog(log_path).close()  # both writers open an existing log
    gate = tmp_path / "go"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log_path), name, str(gate)], cwd=REPO_ROOT, env=environment)
        for name in ("SCANNER_A", "SCANNER_BB")
    ]
    deadline = time.monotonic() + 10
    while not all((tmp_path / f"ready-{name}").exists() for name in ("SCANNER_A", "SCANNER_BB")):
        assert time.monotonic() < deadline, "the writer processes did not start"
        time.sleep(0.01)
    gate.touch()
    assert [writer.wait(timeout=30) for writer in writers] == [0, 0]
    with AuditLog(log_path) as log:
        assert log.verify() == 200
        records = log.records(limit=1000)
        assert [r.id for r in records] == list(range(1, 201))
        assert sorted(r.actor for r in records) == ["SCANNER_A"] * 100 + ["SCANNER_BB"] * 100
    switches = sum(a.actor != b.actor for a, b in itertools.pairwise(records))
    assert switches > 10, "the two writers did not overlap, so this test proved nothing"


@pytest.mark.parametrize(
    "resource_uid",
    [
        STUDY_UID,
        "1.2.840.10008.5.1.4.1.1.4",
        "job-42",
        "pt-0123456789abcdef",
        ORTHANC_ID,
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        None,
    ],
)
def test_resource_uid_accepted(log_path: Path, resource_uid: str | None) -> None:
    with AuditLog(log_path) as log:
        assert log.append("oncoflow", "system", "study.analyse", resource_uid, "success").resource_uid == resource_uid


@pytest.mark.parametrize(
    "resource_uid",
    [
        "PAT-0001 Smith",  # a PatientID and a name
        "Smith^John",  # a DICOM person name
        "12345678",  # a bare numeric MRN
        "1.2..3",
        "1.02.3",
        "1.2." + "3" * 70,  # longer than a UID may be
        "job-abc",
        "pt-SMITH",
        "/oncoflow/patients/PAT-0001",
        "Müller",
        "",
        "x" * 81,
    ],
)
def test_resource_uid_refused_without_echoing_it(log_path: Path, resource_uid: str) -> None:
    with AuditLog(log_path) as log:
        with pytest.raises(ValueError) as caught:
            log.append("oncoflow", "system", "study.analyse", resource_uid, "success")
        if resource_uid:
            assert resource_uid not in str(caught.value)
        assert log.records() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", ""),
        ("actor", "Smith^John"),
        ("actor", " padded"),
        ("actor", "a" * 65),
        ("role", "superuser"),
        ("action", "read everything"),
        ("outcome", "ok"),
        ("detail", "patient Müller"),
        ("detail", "line\nbreak"),
        ("detail", "x" * 201),
        ("detail", ""),
    ],
)
def test_other_fields_are_validated(log_path: Path, field: str, value: str) -> None:
    arguments = {
        "actor": "anonymous",
        "role": "anonymous",
        "action": "http.refused",
        "resource_uid": None,
        "outcome": "refused",
        "detail": "HTTP 403 GET /oncoflow/audit",
    }
    with AuditLog(log_path) as log:
        log.append(**arguments)
        with pytest.raises(ValueError):
            log.append(**{**arguments, field: value})
        assert log.verify() == 1


def test_patient_reference_is_stable_keyed_and_opaque(log_path: Path) -> None:
    token = patient_reference("PAT-0001", KEY)
    assert re.fullmatch(r"pt-[0-9a-f]{16}", token)
    assert patient_reference("PAT-0001", KEY) == token
    assert patient_reference("PAT-0001", b"q" * 32) != token
    assert patient_reference("PAT-0002", KEY) != token
    assert "PAT" not in token[3:] and "0001" not in token
    with pytest.raises(ValueError):
        patient_reference("PAT-0001", b"short")
    with pytest.raises(ValueError):
        patient_reference("", KEY)
    with AuditLog(log_path) as log:
        assert log.append("admin-1", "admin", "assignment.change", token, "success", "assigned").resource_uid == token


def test_export_recomputes_independently(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 5)
        log.append("oncoflow", "system", "notes.erase", patient_reference("PAT-9", KEY), "success", None)
        out = io.StringIO()
        assert log.export_jsonl(out) == 6
        expected = log.records()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    previous = "0" * 64
    fields = ["id", "at", "actor", "role", "action", "resource_uid", "outcome", "detail", "previous_hash"]
    for number, line in enumerate(lines, start=1):
        entry = json.loads(line)
        assert list(entry) == [*fields, "record_hash"]
        assert entry["id"] == number and entry["previous_hash"] == previous
        # The documented encoding, written out here without the module's help.
        encoded = json.dumps([entry[name] for name in fields], ensure_ascii=True, separators=(",", ":"))
        assert hashlib.sha256(encoded.encode("ascii")).hexdigest() == entry["record_hash"]
        assert entry == expected[number - 1].as_dict()
        previous = entry["record_hash"]


def test_cli_verifies_exports_and_reports_tampering(
    log_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditLog(log_path) as log:
        records = fill(log, 4)
    assert main(["verify", str(log_path)]) == 0
    assert f"ok: 4 records, head {records[-1].record_hash}" in capsys.readouterr().out
    assert main(["export", str(log_path)]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [1, 2, 3, 4]
    assert main(["export", str(log_path), "--output", str(tmp_path / "audit.jsonl")]) == 0
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 4
    assert main(["verify", str(tmp_path / "absent.sqlite3")]) == 2
    assert not (tmp_path / "absent.sqlite3").exists()

    drop_triggers(log_path)
    with raw(log_path) as connection:
        connection.execute("UPDATE audit_record SET outcome = 'failed' WHERE id = 2")
    connection.close()
    capsys.readouterr()
    assert main(["verify", str(log_path)]) == 1
    assert "audit record 2" in capsys.readouterr().err


def test_module_runs_as_a_script(log_path: Path) -> None:
    with AuditLog(log_path) as log:
        fill(log, 2)
    result = subprocess.run(
        [sys.executable, "-m", "oncoflow.security.audit_log", "verify", str(log_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 records")
