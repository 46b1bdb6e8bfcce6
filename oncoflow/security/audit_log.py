"""An append-only, PHI-free, tamper-evident audit log (in the spirit of IHE ATNA).

Every access, analysis, report and assignment change is one :class:`AuditRecord`:
who (``actor``, ``role``), did what (``action``, from the fixed vocabulary
:data:`ACTIONS`), to which resource (``resource_uid``), with which ``outcome``, when
(``at``) and a short ``detail``. The log lives in one SQLite file, by default
``$ONCOFLOW_HOME/oncoflow-audit.sqlite3`` (created with mode 0600, WAL journal).

Examples
--------
>>> log = AuditLog(home / "oncoflow-audit.sqlite3")
>>> log.append("anonymous", "anonymous", "study.read", "1.2.826.0.1.3680043.8.498.1", "success",
...            "HTTP 200 GET /oncoflow/studies/{study}")
>>> log.verify()  # number of records checked; raises AuditChainBroken when tampered with
>>> log.close()

From a shell: ``python -m oncoflow.security.audit_log verify PATH`` (exit 0 intact, 1 broken,
2 unusable) and ``python -m oncoflow.security.audit_log export PATH`` (JSON lines on stdout).

No PHI, and whose job that is
-----------------------------
The log must never hold a patient's name, PatientID, birth date or any other
identifier. **The caller is responsible for never passing them**: refer to a patient
only through :func:`patient_reference` (an opaque keyed token ``pt-`` + 16 hex), to
studies and instances by their DICOM UIDs, and to jobs as ``job-<n>``.
:meth:`AuditLog.append` adds a syntactic guard that catches the common mistakes (a
name, a free-text sentence, a bare numeric MRN) but cannot recognise every identifier;
its error messages never repeat the refused value, so they are safe to log. The rules:

- ``actor``: 1-64 characters from ``A-Z a-z 0-9 . _ @ : + -`` and inner spaces (a
  user id, an AE title, ``oncoflow`` for the system, ``anonymous``);
- ``role``: one of :data:`ROLES`; ``action``: one of :data:`ACTIONS`;
  ``outcome``: one of :data:`OUTCOMES` (ATNA EventOutcomeIndicator 0 / 4 / 8, see
  :data:`ATNA_EVENT_OUTCOME`);
- ``resource_uid``: ``None`` or one of

  * a DICOM UID: digits and dots, at most 64 characters, no empty or zero-padded
    component (a value made only of digits and dots must be a valid UID, so a bare
    numeric PatientID/MRN such as ``12345678`` is refused);
  * a job reference ``job-<n>`` (a value starting ``job-`` must be exactly that);
  * a patient token ``pt-`` + 16 lowercase hex from :func:`patient_reference` (a value
    starting ``pt-`` must be exactly that);
  * an opaque token ``[A-Za-z0-9._:-]{1,80}`` (an Orthanc resource id, a UUID): no
    spaces, slashes, ``^`` or other punctuation, so no names, routes or sentences;

- ``detail``: ``None`` or 1-200 characters of printable ASCII (``0x20``-``0x7E``),
  e.g. ``"HTTP 403 GET /oncoflow/studies/{study}"``: the route *pattern*, not the URL.

Append-only and tamper-evident
------------------------------
SQLite triggers abort every ``UPDATE`` and ``DELETE`` on the table, and every
``INSERT`` that is not the next id chained to the last record (which also stops
``INSERT OR REPLACE``), so even SQL through the same file cannot silently change it.
Someone who drops the triggers can still edit the file; the hash chain makes that
visible: each record stores ``previous_hash`` (the ``record_hash`` of the record
before it, ``"0" * 64`` for record 1) and its own ``record_hash``.
:meth:`AuditLog.verify` walks the records in id order and raises
:class:`AuditChainBroken` at the first record whose id leaves a gap, whose
``previous_hash`` is not the previous record's hash (a record removed, inserted or
reordered), or whose content no longer gives its ``record_hash`` (an edit). An edit
whose author also recomputed that record's hash shows at the *next* record.

Limits, as for any unkeyed hash chain: removing the newest records, or rewriting the
whole chain from some record on, is only detectable against a copy of the head kept
elsewhere. ``verify`` prints the head (count and last hash): record it outside this
machine from time to time (e.g. in the backup log), and compare with :meth:`AuditLog.head`.

Canonical encoding (for an external auditor)
--------------------------------------------
``record_hash`` is the lowercase hex SHA-256 of the UTF-8 (in fact pure ASCII) bytes of::

    json.dumps([id, at, actor, role, action, resource_uid, outcome, detail, previous_hash],
               ensure_ascii=True, separators=(",", ":"))

with ``id`` a JSON integer, ``resource_uid`` and ``detail`` ``null`` when absent, and the
strings exactly as exported, e.g.
``[1,"2026-11-25T15:04:05.123Z","anonymous","anonymous","study.read","1.2.3","success",null,"000...000"]``.
``at`` is UTC, ISO 8601 with milliseconds and a ``Z`` (``2026-11-25T15:04:05.123Z``),
taken inside the writing transaction so it never goes backwards along the ids (unless
the clock does). :meth:`AuditLog.export_jsonl` writes one JSON object per record with
these fields and ``record_hash``, in id order, so the chain can be recomputed without
OncoFlow.

Concurrency
-----------
One :class:`AuditLog` is safe to share between threads (a lock around its connection).
Each append reads the last record and inserts the next one inside one
``BEGIN IMMEDIATE`` transaction, so several processes appending to the same file also
keep one gap-free chain. :meth:`AuditLog.verify` and :meth:`AuditLog.export_jsonl`
stream the records through their own connection (a WAL snapshot), in batches, without
blocking writers or loading the whole log in memory.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

GENESIS_HASH = "0" * 64
"""The ``previous_hash`` of record 1."""

ROLES: frozenset[str] = frozenset({"admin", "radiologist", "doctor", "clinician", "worker", "pipeline", "modality",
                                   "system", "anonymous"})
OUTCOMES: tuple[str, ...] = ("success", "refused", "failed")
ATNA_EVENT_OUTCOME: dict[str, int] = {"success": 0, "refused": 4, "failed": 8}
"""Our outcome words as ATNA / DICOM EventOutcomeIndicator codes (0 success, 4 minor, 8 serious failure)."""

ACTIONS: frozenset[str] = frozenset(
    {
        "study.read",  # a study's results, images or timeline were read
        "study.analyse",  # an analysis was started (or refused / failed)
        "study.clinical",  # a time point's clinical status or steroid dose entered (or refused)
        "segmentation.approve",  # a radiologist approved a SEG as the study's measured segmentation (or was refused)
        "segmentation.withdraw",  # an approval withdrawn: the automatic segmentation is measured again
        "report.create",
        "report.read",
        "notes.upload",  # clinical notes added to the patient's document store
        "notes.erase",
        "assignment.change",  # a patient assigned to / removed from a doctor
        "dicom.store",  # C-STORE or REST upload accepted
        "dicom.store.refused",  # a received file refused by the upload guard, or a resent instance that differs
        "dicom.refused",  # a DICOM association or command refused (unknown peer, wrong host, command not allowed)
        "dicom.route",  # results (or a rejection note) sent to the hospital's PACS by C-STORE, or given up
        "login.refused",  # a Keycloak login refused (wrong password or TOTP code, code replayed, code missing)
        "http.refused",  # a REST request refused (authorisation, validation)
        "audit.read",  # GET /oncoflow/audit: reading the audit log is itself audited
        "audit.export",
    }
)
"""The fixed action vocabulary; adding an action is a one-line change here."""

MAX_DETAIL_LENGTH = 200
MAX_RECORDS_PER_READ = 10_000

_FIELDS = ("id", "at", "actor", "role", "action", "resource_uid", "outcome", "detail", "previous_hash", "record_hash")
_COLUMNS = ", ".join(_FIELDS)
_BATCH = 1000
_LAST = "SELECT id, record_hash FROM audit_record ORDER BY id DESC LIMIT 1"

_ACTOR = re.compile(r"[A-Za-z0-9._@:+-](?:[A-Za-z0-9 ._@:+-]{0,62}[A-Za-z0-9._@:+-])?")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")
_DICOM_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_JOB = re.compile(r"job-(?:0|[1-9][0-9]{0,18})")
_PATIENT_TOKEN = re.compile(r"pt-[0-9a-f]{16}")
_OPAQUE_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,80}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")

_TRIGGERS = ("audit_record_no_update", "audit_record_no_delete", "audit_record_append_only")
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS audit_record (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        resource_uid TEXT,
        outcome TEXT NOT NULL,
        detail TEXT,
        previous_hash TEXT NOT NULL,
        record_hash TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS audit_record_by_action ON audit_record (action, id)",
    """
    CREATE TRIGGER IF NOT EXISTS audit_record_no_update BEFORE UPDATE ON audit_record
    BEGIN SELECT RAISE(ABORT, 'the OncoFlow audit log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS audit_record_no_delete BEFORE DELETE ON audit_record
    BEGIN SELECT RAISE(ABORT, 'the OncoFlow audit log is append-only: DELETE refused'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS audit_record_append_only BEFORE INSERT ON audit_record
    WHEN NEW.id IS NULL
        OR NEW.id <> (SELECT COALESCE(MAX(id), 0) + 1 FROM audit_record)
        OR NEW.previous_hash IS NOT COALESCE(
            (SELECT record_hash FROM audit_record ORDER BY id DESC LIMIT 1), '{GENESIS_HASH}')
    BEGIN SELECT RAISE(ABORT, 'the OncoFlow audit log is append-only: INSERT must chain to the last record'); END
    """,
)


class AuditChainBroken(Exception):
    """The audit log was tampered with (or damaged).

    ``record_id`` is the first record found bad (``None`` when the problem is not one
    record, e.g. missing append-only triggers); ``reason`` says why.
    """

    def __init__(self, record_id: int | None, reason: str) -> None:
        self.record_id = record_id
        self.reason = reason
        where = f"audit record {record_id}" if record_id is not None else "audit log"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class AuditRecord:
    """One audit event; see the module docstring for each field's rules."""

    id: int  # 1, 2, 3... without gaps
    at: str  # ISO 8601 UTC with milliseconds, e.g. 2026-11-25T15:04:05.123Z
    actor: str  # user id / AE title / "oncoflow" / "anonymous"
    role: str  # one of ROLES
    action: str  # one of ACTIONS
    resource_uid: str | None  # DICOM UID, job-<n>, pt-<hex> or opaque token; never a PatientID or name
    outcome: str  # success | refused | failed
    detail: str | None  # short PHI-free printable ASCII
    previous_hash: str  # hex sha256 of the previous record ("0" * 64 for the first)
    record_hash: str  # hex sha256 of canonical_encoding(...) of the fields above

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, fields in the documented order."""
        return asdict(self)


def canonical_encoding(
    id: int,
    at: str,
    actor: str,
    role: str,
    action: str,
    resource_uid: str | None,
    outcome: str,
    detail: str | None,
    previous_hash: str,
) -> bytes:
    """The bytes whose SHA-256 is ``record_hash`` (see "Canonical encoding" in the module docstring)."""
    fields = [id, at, actor, role, action, resource_uid, outcome, detail, previous_hash]
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _record_hash(row: Sequence[Any]) -> str:
    """``record_hash`` for a row of the first nine fields."""
    return hashlib.sha256(canonical_encoding(*row[:9])).hexdigest()


def patient_reference(patient_id: str, key: bytes) -> str:
    """An opaque, stable token for a patient: ``pt-`` + 16 hex of an HMAC-SHA256 under ``key``.

    The same PatientID and key always give the same token, so an auditor can follow one
    patient's assignment changes; without the key the token cannot be computed from a
    guessed PatientID. The HMAC input is domain-separated (``oncoflow-audit-patient``),
    so the token is not linkable to the report pseudonym even under the same key.
    """
    if not patient_id:
        raise ValueError("patient_reference needs a non-empty PatientID")
    if len(key) < 16:
        raise ValueError("the patient reference key must be at least 16 bytes")
    message = b"oncoflow-audit-patient\x00" + patient_id.encode("utf-8")
    return "pt-" + hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def _check_resource_uid(resource_uid: str | None) -> None:
    if resource_uid is None:
        return
    # Messages never repeat the value: it may be exactly the PHI we are refusing.
    if not isinstance(resource_uid, str):
        raise ValueError("resource_uid must be a string or None")
    if _DIGITS_AND_DOTS.fullmatch(resource_uid):
        if len(resource_uid) > 64 or not _DICOM_UID.fullmatch(resource_uid):
            raise ValueError(
                "resource_uid of digits and dots is not a valid DICOM UID (value not shown; a bare numeric"
                " PatientID must go through patient_reference)"
            )
        return
    if resource_uid.startswith("job-"):
        if not _JOB.fullmatch(resource_uid):
            raise ValueError("resource_uid starting 'job-' must be job-<integer> (value not shown)")
        return
    if resource_uid.startswith("pt-"):
        if not _PATIENT_TOKEN.fullmatch(resource_uid):
            raise ValueError("resource_uid starting 'pt-' must be a patient_reference token (value not shown)")
        return
    if not _OPAQUE_TOKEN.fullmatch(resource_uid):
        raise ValueError(
            "resource_uid must be a DICOM UID, job-<n>, a pt- token or an opaque token [A-Za-z0-9._:-]{1,80}"
            " (value not shown: it may carry PHI)"
        )


def _validate(actor: str, role: str, action: str, resource_uid: str | None, outcome: str, detail: str | None) -> None:
    if not isinstance(actor, str) or not _ACTOR.fullmatch(actor):
        raise ValueError("actor must be 1-64 characters of A-Z a-z 0-9 . _ @ : + - and inner spaces (value not shown)")
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {sorted(ACTIONS)}")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {list(OUTCOMES)}")
    _check_resource_uid(resource_uid)
    if detail is not None and (
        not isinstance(detail, str) or len(detail) > MAX_DETAIL_LENGTH or not _PRINTABLE_ASCII.fullmatch(detail)
    ):
        raise ValueError(
            f"detail must be None or 1-{MAX_DETAIL_LENGTH} characters of printable ASCII (value not shown)"
        )


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), waiting up to 30 s for locks."""
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def _table_exists(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_record'").fetchone()
    return row is not None


def _stream(connection: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """All rows in id order, in batches (one statement: one consistent WAL snapshot)."""
    cursor = connection.execute(f"SELECT {_COLUMNS} FROM audit_record ORDER BY id")
    try:
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        cursor.close()


def _verify_connection(connection: sqlite3.Connection) -> tuple[int, str]:
    """Check the whole chain; (records checked, head hash). Raises :class:`AuditChainBroken`."""
    connection.execute("BEGIN")  # one read snapshot for the rows and the schema check
    rows = _stream(connection)
    try:
        expected_id = 1
        previous = GENESIS_HASH
        for row in rows:
            record_id, previous_hash, record_hash = row[0], row[8], row[9]
            if record_id != expected_id:
                if isinstance(record_id, int) and record_id > expected_id:
                    raise AuditChainBroken(expected_id, f"missing (the next record is {record_id})")
                raise AuditChainBroken(expected_id, "the record ids are not consecutive")
            if previous_hash != previous:
                raise AuditChainBroken(
                    record_id,
                    "previous_hash does not match the hash of "
                    + (f"record {record_id - 1}" if record_id > 1 else "the chain's start")
                    + " (a record was removed, inserted or reordered)",
                )
            try:
                recomputed = _record_hash(row)
            except (TypeError, ValueError) as error:
                raise AuditChainBroken(record_id, f"the record cannot be encoded ({error})") from None
            if not isinstance(record_hash, str) or not _HEX64.fullmatch(record_hash) or recomputed != record_hash:
                raise AuditChainBroken(record_id, "record_hash does not match the record's content (edited)")
            previous = record_hash
            expected_id += 1
        names = {
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        }
        missing = [name for name in _TRIGGERS if name not in names]
        if missing:
            raise AuditChainBroken(
                None,
                f"the chain is intact ({expected_id - 1} records) but the append-only triggers"
                f" {', '.join(missing)} are missing",
            )
        return expected_id - 1, previous
    finally:
        rows.close()  # a generator left by an exception would keep its statement open
        connection.execute("ROLLBACK")


def _export_connection(connection: sqlite3.Connection, out: TextIO) -> int:
    count = 0
    for row in _stream(connection):
        out.write(json.dumps(dict(zip(_FIELDS, row, strict=True)), ensure_ascii=True, separators=(",", ":")) + "\n")
        count += 1
    return count


class AuditLog:
    """The audit log in one SQLite file; safe to share between threads and processes.

    Parameters
    ----------
    path:
        The SQLite file, e.g. ``$ONCOFLOW_HOME/oncoflow-audit.sqlite3``; created (mode
        0600, parent directories 0700, WAL journal) when missing. An existing log is
        opened as it is: its schema is never altered.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it is 0600 from the first byte; SQLite gives
            # its -wal and -shm files the same mode.
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = _connect(self._path)
        try:
            if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise RuntimeError(f"the audit log {self._path} cannot use a WAL journal")
            connection.execute("PRAGMA synchronous = FULL")  # an audit record survives a power cut once appended
            if not _table_exists(connection):
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:  # IF NOT EXISTS: another process may have won the race
                        connection.execute(statement)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
        except BaseException:
            connection.close()
            raise
        self._connection: sqlite3.Connection | None = connection

    @property
    def path(self) -> Path:
        return self._path

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the audit log is closed")
        return self._connection

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        resource_uid: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> AuditRecord:
        """Append one record and return it (with its id and hashes).

        Raises ``ValueError`` when a field breaks the rules in the module docstring (the
        message never repeats the value).
        """
        _validate(actor, role, action, resource_uid, outcome, detail)
        with self._lock:
            connection = self._open_connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                last = connection.execute(_LAST).fetchone()
                record_id, previous_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
                fields = (record_id, _utc_now(), actor, role, action, resource_uid, outcome, detail, previous_hash)
                record = AuditRecord(*fields, record_hash=_record_hash(fields))
                connection.execute(
                    f"INSERT INTO audit_record ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*fields, record.record_hash),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return record

    def records(self, since_id: int = 0, limit: int = 1000, action: str | None = None) -> list[AuditRecord]:
        """Records with ``id > since_id`` in id order, at most ``limit`` (1-10000), optionally one ``action``.

        Page through the log with ``since_id`` = the last id of the previous page.
        """
        if since_id < 0:
            raise ValueError("since_id must be >= 0")
        if not 1 <= limit <= MAX_RECORDS_PER_READ:
            raise ValueError(f"limit must be between 1 and {MAX_RECORDS_PER_READ}")
        query = f"SELECT {_COLUMNS} FROM audit_record WHERE id > ?"
        parameters: list[Any] = [since_id]
        if action is not None:
            query += " AND action = ?"
            parameters.append(action)
        query += " ORDER BY id LIMIT ?"
        parameters.append(limit)
        with self._lock:
            rows = self._open_connection().execute(query, parameters).fetchall()
        return [AuditRecord(*row) for row in rows]

    def head(self) -> tuple[int, str]:
        """(number of records, record_hash of the last one or ``"0" * 64``): keep a copy elsewhere."""
        with self._lock:
            last = self._open_connection().execute(_LAST).fetchone()
        return (last[0], last[1]) if last else (0, GENESIS_HASH)

    def verify(self) -> int:
        """Check the hash chain and the append-only triggers; return the number of records checked.

        Raises :class:`AuditChainBroken` naming the first bad record and why. Runs on its
        own connection, streaming, so appends go on meanwhile (they are not checked).
        """
        self._open_connection()
        connection = _connect(self._path)
        try:
            return _verify_connection(connection)[0]
        finally:
            connection.close()

    def export_jsonl(self, out: TextIO) -> int:
        """Write every record as one JSON object per line (the :class:`AuditRecord` fields) to ``out``.

        Returns the number of records written. Nothing is checked: recompute the chain
        from the export, or run :meth:`verify`.
        """
        self._open_connection()
        connection = _connect(self._path)
        try:
            return _export_connection(connection, out)
        finally:
            connection.close()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oncoflow.security.audit_log verify|export PATH``: 0 intact / exported, 1 broken chain, 2 unusable
    file."""
    parser = argparse.ArgumentParser(prog="python -m oncoflow.security.audit_log",
                                     description="OncoFlow audit log tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    verify_parser = commands.add_parser("verify", help="check the hash chain and the append-only triggers")
    verify_parser.add_argument("path", type=Path)
    export_parser = commands.add_parser("export", help="write the records as JSON lines (to stdout by default)")
    export_parser.add_argument("path", type=Path)
    export_parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    arguments = parser.parse_args(argv)

    path: Path = arguments.path
    if not path.is_file():
        print(f"no audit log at {path}", file=sys.stderr)
        return 2
    # Open the file as it is (no schema creation, no writes): verifying must not change the evidence.
    connection = _connect(path)
    try:
        try:
            usable = _table_exists(connection)
        except sqlite3.DatabaseError as error:
            print(f"{path} is not a readable SQLite file: {error}", file=sys.stderr)
            return 2
        if not usable:
            print(f"{path} holds no OncoFlow audit log (no audit_record table)", file=sys.stderr)
            return 2
        if arguments.command == "verify":
            try:
                count, head = _verify_connection(connection)
            except AuditChainBroken as error:
                print(f"BROKEN: {error}", file=sys.stderr)
                return 1
            print(f"ok: {count} records, head {head}")
            return 0
        if arguments.output is None:
            _export_connection(connection, sys.stdout)
        else:
            with arguments.output.open("w", encoding="ascii") as out:
                count = _export_connection(connection, out)
            print(f"exported {count} records to {arguments.output}", file=sys.stderr)
        return 0
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
