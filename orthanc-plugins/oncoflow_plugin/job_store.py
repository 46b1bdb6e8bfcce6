"""Durable job queue and history in SQLite, under ``ONCOFLOW_HOME``.

A job is one processing of one study. Its life: ``queued`` -> ``running`` ->
``done`` | ``failed``; a transient failure (the worker unreachable) puts it back
to ``queued`` with a ``not_before`` time. Jobs left ``running`` by a crash are
re-queued at start-up (:meth:`JobStore.recover`), so each study's job finishes even
if Orthanc or the worker was killed mid-way.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JobState = Literal["queued", "running", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    orthanc_study_id TEXT NOT NULL,
    study_instance_uid TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    error TEXT,
    input_series_instance_uid TEXT,
    fingerprint TEXT,
    timings_json TEXT NOT NULL DEFAULT '{}',
    outputs_json TEXT NOT NULL DEFAULT '{}',
    trigger TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, not_before);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs(orthanc_study_id);
CREATE TABLE IF NOT EXISTS job_events (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    at REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plugin_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS expert_evaluations (
    study_instance_uid TEXT NOT NULL,
    expert TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    dice REAL NOT NULL,
    iou REAL NOT NULL,
    volume_cm3 REAL NOT NULL,
    runtime_s REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (study_instance_uid, expert)
);
CREATE TABLE IF NOT EXISTS timeline (
    orthanc_study_id TEXT PRIMARY KEY,
    patient_id TEXT,
    study_instance_uid TEXT,
    study_date TEXT,
    baseline_study_instance_uid TEXT,
    result_json TEXT,
    error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_patient ON timeline(patient_id);
CREATE TABLE IF NOT EXISTS refinements (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    prompts_json TEXT NOT NULL,
    volume_cm3 REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (study_instance_uid, version)
);
"""


@dataclass
class Job:
    id: int
    orthanc_study_id: str
    study_instance_uid: str | None
    state: JobState
    attempts: int
    error: str | None
    input_series_instance_uid: str | None
    fingerprint: str | None
    timings_s: dict[str, float]
    outputs: dict[str, Any]
    trigger: str
    created_at: float
    updated_at: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "study_instance_uid": self.study_instance_uid,
            "orthanc_study_id": self.orthanc_study_id,
            "state": self.state,
            "attempts": self.attempts,
            "error": self.error,
            "input_series_instance_uid": self.input_series_instance_uid,
            "timings_s": self.timings_s,
            "outputs": self.outputs,
            "trigger": self.trigger,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "events": self.events,
        }


class JobStore:
    """Thread-safe access to the job database (one connection, serialised by a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- queue -----------------------------------------------------------------------------------

    def enqueue(self, orthanc_study_id: str, trigger: str) -> int | None:
        """Queue the study unless a queued job for it exists already; returns the new job id."""
        now = time.time()
        with self._transaction() as db:
            pending = db.execute(
                "SELECT id FROM jobs WHERE orthanc_study_id=? AND state='queued'", (orthanc_study_id,)
            ).fetchone()
            if pending:
                return None
            cursor = db.execute(
                "INSERT INTO jobs (orthanc_study_id, state, trigger, created_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?)",
                (orthanc_study_id, trigger, now, now),
            )
            job_id = int(cursor.lastrowid or 0)
            db.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, now, f"queued ({trigger})"))
            return job_id

    def claim_next(self) -> Job | None:
        """Mark the oldest due queued job ``running`` (one per study at a time) and return it."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE state='queued' AND not_before<=? AND orthanc_study_id NOT IN "
                "(SELECT orthanc_study_id FROM jobs WHERE state='running') ORDER BY id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state='running', attempts=attempts+1, updated_at=? WHERE id=?", (now, row["id"])
            )
            db.execute(
                "INSERT INTO job_events VALUES (?, ?, ?)", (row["id"], now, f"running (attempt {row['attempts'] + 1})")
            )
        job = self.get(int(row["id"]))
        assert job is not None
        return job

    def recover(self) -> int:
        """Re-queue jobs left ``running`` by a crash; returns how many."""
        now = time.time()
        with self._transaction() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE state='running'")]
            for job_id in ids:
                db.execute("UPDATE jobs SET state='queued', updated_at=? WHERE id=?", (now, job_id))
                db.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, now, "re-queued after restart"))
        return len(ids)

    # -- progress --------------------------------------------------------------------------------

    def update(self, job_id: int, **fields: Any) -> None:
        """Set columns of a job; ``timings_s`` and ``outputs`` are stored as JSON."""
        columns = {
            "timings_json" if k == "timings_s" else "outputs_json" if k == "outputs" else k: (
                json.dumps(v) if k in ("timings_s", "outputs") else v
            )
            for k, v in fields.items()
        }
        allowed = {
            "study_instance_uid", "input_series_instance_uid", "fingerprint", "timings_json", "outputs_json",
        }
        if not set(columns) <= allowed:
            raise ValueError(f"cannot update {sorted(set(columns) - allowed)}")
        assignments = ", ".join(f"{c}=?" for c in columns)
        with self._transaction() as db:
            db.execute(
                f"UPDATE jobs SET {assignments}, updated_at=? WHERE id=?",
                (*columns.values(), time.time(), job_id),
            )

    def add_event(self, job_id: int, message: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, time.time(), message))

    def finish(self, job_id: int, state: Literal["done", "failed"], error: str | None = None) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state=?, error=?, updated_at=? WHERE id=?", (state, error, now, job_id))
            message = f"{state}: {error}" if error else state
            db.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, now, message))

    def retry_later(self, job_id: int, delay_s: float, reason: str) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state='queued', not_before=?, error=?, updated_at=? WHERE id=?",
                (now + delay_s, reason, now, job_id),
            )
            db.execute(
                "INSERT INTO job_events VALUES (?, ?, ?)", (job_id, now, f"retry in {delay_s:.0f} s: {reason}")
            )

    def discard(self, job_id: int, into_job_id: int, message: str) -> None:
        """Drop a redundant trigger job, noting it on the job that already holds the result."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM job_events WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            db.execute("INSERT INTO job_events VALUES (?, ?, ?)", (into_job_id, now, message))

    # -- queries ---------------------------------------------------------------------------------

    def _job(self, row: sqlite3.Row, with_events: bool) -> Job:
        events = []
        if with_events:
            events = [
                {"at": e["at"], "message": e["message"]}
                for e in self._db.execute(
                    "SELECT at, message FROM job_events WHERE job_id=? ORDER BY rowid", (row["id"],)
                )
            ]
        return Job(
            id=row["id"],
            orthanc_study_id=row["orthanc_study_id"],
            study_instance_uid=row["study_instance_uid"],
            state=row["state"],
            attempts=row["attempts"],
            error=row["error"],
            input_series_instance_uid=row["input_series_instance_uid"],
            fingerprint=row["fingerprint"],
            timings_s=json.loads(row["timings_json"]),
            outputs=json.loads(row["outputs_json"]),
            trigger=row["trigger"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            events=events,
        )

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            return self._job(row, with_events=True) if row else None

    def latest(self, orthanc_study_id: str) -> Job | None:
        """The study's newest job, with its events."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? ORDER BY id DESC LIMIT 1", (orthanc_study_id,)
            ).fetchone()
            return self._job(row, with_events=True) if row else None

    def latest_done(self, orthanc_study_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? AND state='done' ORDER BY id DESC LIMIT 1",
                (orthanc_study_id,),
            ).fetchone()
            return self._job(row, with_events=False) if row else None

    def history(self, orthanc_study_id: str) -> list[Job]:
        """All jobs of the study, oldest first, without events."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? ORDER BY id", (orthanc_study_id,)
            ).fetchall()
            return [self._job(r, with_events=False) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {r[0]: r[1] for r in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}

    # -- expert evaluations and refinements ------------------------------------------------------

    def record_evaluations(self, job_id: int, study_instance_uid: str, rows: list[dict[str, Any]]) -> None:
        """Each expert's agreement with the fused mask for the study; a study's newer job replaces its rows.

        ``rows``: dicts with ``expert``, ``dice``, ``iou``, ``volume_cm3``, ``runtime_s``.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM expert_evaluations WHERE study_instance_uid=?", (study_instance_uid,))
            db.executemany(
                "INSERT INTO expert_evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(study_instance_uid, r["expert"], job_id, r["dice"], r["iou"], r["volume_cm3"], r.get("runtime_s"),
                  now) for r in rows],
            )

    def model_stats(self) -> list[dict[str, Any]]:
        """Per expert across studies: number of studies, mean Dice and IoU against the fused mask, mean runtime."""
        with self._lock:
            rows = self._db.execute(
                "SELECT expert, COUNT(*) AS studies, AVG(dice) AS mean_dice, AVG(iou) AS mean_iou, "
                "MIN(dice) AS min_dice, AVG(volume_cm3) AS mean_volume_cm3, AVG(runtime_s) AS mean_runtime_s "
                "FROM expert_evaluations GROUP BY expert ORDER BY expert"
            ).fetchall()
        return [
            {k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in r.keys()}  # noqa: SIM118 (Row)
            for r in rows
        ]

    def add_refinement(
        self, study_instance_uid: str, version: int, sop_instance_uid: str, prompts: dict[str, Any],
        volume_cm3: float,
    ) -> None:
        """Record a stored refined SEG of ``version`` (from :meth:`next_refinement_version`)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO refinements VALUES (?, ?, ?, ?, ?, ?)",
                (study_instance_uid, version, sop_instance_uid, json.dumps(prompts), volume_cm3, time.time()),
            )

    def next_refinement_version(self, study_instance_uid: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM refinements WHERE study_instance_uid=?", (study_instance_uid,)
            ).fetchone()
        return int(row[0]) + 1

    def refinements(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT version, sop_instance_uid, prompts_json, volume_cm3, created_at FROM refinements "
                "WHERE study_instance_uid=? ORDER BY version", (study_instance_uid,)
            ).fetchall()
        return [
            {"version": r["version"], "sop_instance_uid": r["sop_instance_uid"],
             "prompts": json.loads(r["prompts_json"]), "volume_cm3": r["volume_cm3"], "created_at": r["created_at"]}
            for r in rows
        ]

    # -- patient timeline -----------------------------------------------------------------------

    def save_time_point(
        self, orthanc_study_id: str, patient_id: str | None, study_instance_uid: str | None, study_date: str | None,
        baseline_study_instance_uid: str | None, result: dict[str, Any] | None, error: str | None,
    ) -> None:
        """Store (replace) a study's time point: its measurements and comparison, or the error that stopped it.

        An error keeps the identity fields already stored for the study (``None`` leaves them).
        """
        with self._transaction() as db:
            old = db.execute("SELECT * FROM timeline WHERE orthanc_study_id=?", (orthanc_study_id,)).fetchone()
            keep = dict(old) if old else {}
            db.execute(
                "INSERT OR REPLACE INTO timeline VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (orthanc_study_id, patient_id or keep.get("patient_id"),
                 study_instance_uid or keep.get("study_instance_uid"), study_date or keep.get("study_date"),
                 baseline_study_instance_uid, json.dumps(result) if result is not None else None, error, time.time()),
            )

    def update_time_point(self, orthanc_study_id: str, **fields: Any) -> None:
        """Merge ``fields`` into a stored time point's result (e.g. its report's UID)."""
        with self._transaction() as db:
            row = db.execute("SELECT result_json FROM timeline WHERE orthanc_study_id=?",
                             (orthanc_study_id,)).fetchone()
            if row is None:
                raise KeyError(f"no time point for study {orthanc_study_id}")
            result = {**(json.loads(row[0]) if row[0] else {}), **fields}
            db.execute("UPDATE timeline SET result_json=?, updated_at=? WHERE orthanc_study_id=?",
                       (json.dumps(result), time.time(), orthanc_study_id))

    def _time_point_row(self, row: sqlite3.Row) -> dict[str, Any]:
        result = json.loads(row["result_json"]) if row["result_json"] else {}
        return {"orthanc_study_id": row["orthanc_study_id"], "patient_id": row["patient_id"],
                "study_instance_uid": row["study_instance_uid"], "study_date": row["study_date"],
                "baseline_study_instance_uid": row["baseline_study_instance_uid"], "error": row["error"],
                "updated_at": row["updated_at"], **result}

    def time_point(self, orthanc_study_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM timeline WHERE orthanc_study_id=?", (orthanc_study_id,)).fetchone()
        return self._time_point_row(row) if row else None

    def timeline(self, patient_id: str) -> list[dict[str, Any]]:
        """The patient's time points in date order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM timeline WHERE patient_id=? ORDER BY study_date, orthanc_study_id", (patient_id,)
            ).fetchall()
        return [self._time_point_row(r) for r in rows]

    # -- plugin state ----------------------------------------------------------------------------

    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM plugin_state WHERE key=?", (key,)).fetchone()
            return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO plugin_state VALUES (?, ?)", (key, value))
