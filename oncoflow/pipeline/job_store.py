"""Durable job queue and history: SQLite under ``ONCOFLOW_HOME``, or a shared PostgreSQL (``ONCOFLOW_DATABASE_URL``).

A job is one processing of one study. Its life: ``queued`` -> ``running`` ->
``done`` | ``failed``; a transient failure (the worker unreachable) puts it back
to ``queued`` with a ``not_before`` time.

Delivery is at least once, acknowledged after completion. A consumer (Orthanc's job thread or a pipeline
worker, :mod:`.pipeline_worker`) claims a job with a lease (``lease_until``, seconds since the epoch) and
renews it while it runs; a job whose lease expired (its consumer was killed, or lost the database) is
claimed again by the next consumer, with one more attempt. Each claim's attempt number fences what follows:
``finish`` and ``retry_later`` of a consumer that lost its lease change nothing. On PostgreSQL, claims use
``FOR UPDATE SKIP LOCKED``, so consumers on several hosts never take the same job. Jobs left ``running`` in
an SQLite store by a crash are re-queued at start-up (:meth:`JobStore.recover`): one process owns it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from oncoflow.pipeline.sql_database import Executor, PostgresDatabase, SqlDatabase, SqliteDatabase, row_dict

log = logging.getLogger("oncoflow.jobs")

JobState = Literal["queued", "running", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id {serial},
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
    updated_at REAL NOT NULL,
    lease_until REAL,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, not_before);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs(orthanc_study_id);
CREATE TABLE IF NOT EXISTS job_events (
    {event_key}
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    at REAL NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plugin_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events(job_id);
CREATE TABLE IF NOT EXISTS expert_evaluations (
    study_instance_uid TEXT NOT NULL,
    expert TEXT NOT NULL,
    job_id BIGINT NOT NULL,
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
CREATE TABLE IF NOT EXISTS clinical_states (
    study_instance_uid TEXT PRIMARY KEY,
    status TEXT,
    steroid_mg_per_day REAL,
    entered_by TEXT NOT NULL,
    entered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segmentation_approvals (
    id {serial},
    study_instance_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT,
    segment_numbers_json TEXT NOT NULL,
    source TEXT NOT NULL,
    input_series_instance_uid TEXT,
    volume_cm3 REAL NOT NULL,
    approved_by TEXT NOT NULL,
    approved_role TEXT NOT NULL,
    approved_at REAL NOT NULL,
    withdrawn_by TEXT,
    withdrawn_at REAL
);
CREATE INDEX IF NOT EXISTS segmentation_approvals_study ON segmentation_approvals(study_instance_uid);
"""
_DIALECT_SCHEMA = {
    # SQLite orders events by rowid; PostgreSQL has none, so its events carry a sequence
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "event_key": "", "event_order": "rowid"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "event_key": "seq BIGSERIAL PRIMARY KEY,", "event_order": "seq"},
}
CLAIM_LOCK = "claim"  # PostgreSQL: claims one at a time, so a study never runs on two consumers at once
_LEASE_COLUMNS = {"lease_until": "REAL", "claimed_by": "TEXT"}  # added to SQLite stores made before leases


def _schema(dialect: str) -> str:
    schema = _SCHEMA
    for token, text in _DIALECT_SCHEMA[dialect].items():
        schema = schema.replace("{" + token + "}", text)
    if dialect == "postgresql":  # REAL is 4-byte there: seconds since the epoch need 8
        schema = schema.replace(" REAL", " DOUBLE PRECISION").replace("INTEGER NOT NULL REFERENCES", "BIGINT NOT NULL "
                                                                      "REFERENCES")
    return schema


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
    claimed_by: str | None = None  # the consumer that holds (or last held) the job

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
            "claimed_by": self.claimed_by,
            "events": self.events,
        }


class JobStore:
    """Thread-safe access to the job database: an SQLite file, or a PostgreSQL URL shared by several processes."""

    def __init__(self, location: Path | str) -> None:
        """``location``: the SQLite file, or a ``postgresql://`` URL (``ONCOFLOW_DATABASE_URL``)."""
        if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
            self._database: SqlDatabase = PostgresDatabase(location, _schema("postgresql"))
        else:
            sqlite = SqliteDatabase(Path(location), _schema("sqlite"))
            missing = {c: t for c, t in _LEASE_COLUMNS.items() if c not in sqlite.columns("jobs")}
            with sqlite.transaction() as db:
                for column, kind in missing.items():
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
            self._database = sqlite
        self._event_order = _DIALECT_SCHEMA[self._database.dialect]["event_order"]

    @property
    def shared(self) -> bool:
        """True when other processes (Orthancs, pipeline workers) use the same queue."""
        return self._database.dialect == "postgresql"

    @contextmanager
    def _transaction(self) -> Iterator[Executor]:
        with self._database.transaction() as db:
            yield db

    def exclusive(self, key: str) -> Any:
        """A context manager held by one process of the installation at a time (e.g. the catch-up)."""
        return self._database.exclusive(key)

    def close(self) -> None:
        self._database.close()

    # -- queue -----------------------------------------------------------------------------------

    def enqueue(self, orthanc_study_id: str, trigger: str) -> int | None:
        """Queue the study unless a queued job for it exists already; returns the new job id."""
        now = time.time()
        with self._transaction() as db:
            self._database.lock_in_transaction(db, f"study:{orthanc_study_id}")  # two Orthancs, one study
            pending = db.execute(
                "SELECT id FROM jobs WHERE orthanc_study_id=? AND state='queued'", (orthanc_study_id,)
            ).fetchone()
            if pending:
                return None
            row = db.execute(
                "INSERT INTO jobs (orthanc_study_id, state, trigger, created_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?) RETURNING id",
                (orthanc_study_id, trigger, now, now),
            ).fetchone()
            job_id = int(row["id"])
            self._event(db, job_id, now, f"queued ({trigger})")
            return job_id

    @staticmethod
    def _event(db: Executor, job_id: int, at: float, message: str) -> None:
        db.execute("INSERT INTO job_events (job_id, at, message) VALUES (?, ?, ?)", (job_id, at, message))

    def claim_next(self, consumer: str = "", lease_s: float = 60.0) -> Job | None:
        """Claim the oldest due job for ``lease_s`` seconds and return it (``running``), or ``None``.

        Due: ``queued`` with ``not_before`` passed and no live job of the same study running; or ``running``
        with an expired lease (its consumer died: redelivered, one more attempt). On PostgreSQL the claims of
        all consumers take turns (:data:`CLAIM_LOCK`) and skip rows locked by a finish or renewal.
        """
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.shared else ""  # never wait on a row being updated
        with self._transaction() as db:
            # Serialised (a transaction of milliseconds): without it two consumers could each see the other's
            # claim uncommitted and run two jobs of one study (an expired one and a newer one) side by side.
            self._database.lock_in_transaction(db, CLAIM_LOCK)
            now = time.time()
            row = db.execute(
                "SELECT * FROM jobs j WHERE ((j.state='queued' AND j.not_before<=?) "
                "OR (j.state='running' AND j.lease_until<?)) AND NOT EXISTS (SELECT 1 FROM jobs r WHERE "
                "r.orthanc_study_id=j.orthanc_study_id AND r.id<>j.id AND r.state='running' AND r.lease_until>=?) "
                f"ORDER BY j.id LIMIT 1{skip_locked}",
                (now, now, now),
            ).fetchone()
            if row is None:
                return None
            attempt = row["attempts"] + 1
            db.execute(
                "UPDATE jobs SET state='running', attempts=?, lease_until=?, claimed_by=?, updated_at=? WHERE id=?",
                (attempt, now + lease_s, consumer or None, now, row["id"]),
            )
            where = f" on {consumer}" if consumer else ""
            if row["state"] == "running":
                message = f"redelivered{where} (attempt {attempt}): the lease of {row['claimed_by']} expired"
            else:
                message = f"running{where} (attempt {attempt})"
            self._event(db, row["id"], now, message)
        job = self.get(int(row["id"]))
        assert job is not None
        return job

    def renew(self, job: Job, lease_s: float) -> bool:
        """Extend the lease of ``job`` (as claimed); False when it is no longer this claim's (redelivered)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until=? WHERE id=? AND state='running' AND attempts=?",
                (time.time() + lease_s, job.id, job.attempts),
            )
            return cursor.rowcount == 1

    def recover(self) -> int:
        """Re-queue jobs left ``running`` by a crash of the one process that owns an SQLite store; returns how many.

        A shared (PostgreSQL) queue recovers nothing here: other consumers may be running those jobs, and
        a dead consumer's jobs come back when their leases expire.
        """
        if self.shared:
            return 0
        now = time.time()
        with self._transaction() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE state='running'").fetchall()]
            for job_id in ids:
                db.execute("UPDATE jobs SET state='queued', updated_at=? WHERE id=?", (now, job_id))
                self._event(db, job_id, now, "re-queued after restart")
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
            self._event(db, job_id, time.time(), message)

    @staticmethod
    def _fence(attempt: int | None) -> tuple[str, tuple[int, ...]]:
        """The condition that a claim (its attempt number) still holds the job."""
        return ("", ()) if attempt is None else (" AND state='running' AND attempts=?", (attempt,))

    def finish(self, job_id: int, state: Literal["done", "failed"], error: str | None = None,
               attempt: int | None = None) -> bool:
        """Acknowledge the job: ``done`` or ``failed``. With ``attempt`` (the claim's), only while that claim
        holds the job; False when it was redelivered meanwhile (the other claim acknowledges it)."""
        now = time.time()
        fence, fence_params = self._fence(attempt)
        with self._transaction() as db:
            cursor = db.execute(f"UPDATE jobs SET state=?, error=?, lease_until=NULL, updated_at=? WHERE id=?{fence}",
                                (state, error, now, job_id, *fence_params))
            if cursor.rowcount != 1:
                log.warning("job %d: attempt %s no longer holds it (redelivered); its %s is dropped", job_id,
                            attempt, state)
                return False
            self._event(db, job_id, now, f"{state}: {error}" if error else state)
            return True

    def retry_later(self, job_id: int, delay_s: float, reason: str, attempt: int | None = None) -> bool:
        """Put the job back in the queue after ``delay_s``; fenced by ``attempt`` as :meth:`finish`."""
        now = time.time()
        fence, fence_params = self._fence(attempt)
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET state='queued', not_before=?, error=?, lease_until=NULL, updated_at=? WHERE id=?"
                f"{fence}", (now + delay_s, reason, now, job_id, *fence_params),
            )
            if cursor.rowcount != 1:
                return False
            self._event(db, job_id, now, f"retry in {delay_s:.0f} s: {reason}")
            return True

    def discard(self, job_id: int, into_job_id: int, message: str) -> None:
        """Drop a redundant trigger job, noting it on the job that already holds the result."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM job_events WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            self._event(db, into_job_id, now, message)

    # -- queries ---------------------------------------------------------------------------------

    def _job(self, db: Executor, row: Mapping[str, Any], with_events: bool) -> Job:
        events = []
        if with_events:
            events = [
                {"at": e["at"], "message": e["message"]}
                for e in db.execute(
                    f"SELECT at, message FROM job_events WHERE job_id=? ORDER BY {self._event_order}", (row["id"],)
                ).fetchall()
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
            claimed_by=row["claimed_by"],
        )

    def get(self, job_id: int) -> Job | None:
        with self._database.reading() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            return self._job(db, row, with_events=True) if row else None

    def latest(self, orthanc_study_id: str) -> Job | None:
        """The study's newest job, with its events."""
        with self._database.reading() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? ORDER BY id DESC LIMIT 1", (orthanc_study_id,)
            ).fetchone()
            return self._job(db, row, with_events=True) if row else None

    def latest_done(self, orthanc_study_id: str) -> Job | None:
        with self._database.reading() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? AND state='done' ORDER BY id DESC LIMIT 1",
                (orthanc_study_id,),
            ).fetchone()
            return self._job(db, row, with_events=False) if row else None

    def history(self, orthanc_study_id: str) -> list[Job]:
        """All jobs of the study, oldest first, without events."""
        with self._database.reading() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE orthanc_study_id=? ORDER BY id", (orthanc_study_id,)
            ).fetchall()
            return [self._job(db, r, with_events=False) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._database.reading() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: int(r["n"]) for r in rows}

    # -- expert evaluations and refinements ------------------------------------------------------

    def record_evaluations(self, job_id: int, study_instance_uid: str, rows: list[dict[str, Any]]) -> None:
        """Each expert's agreement with the fused mask for the study; a study's newer job replaces its rows.

        ``rows``: dicts with ``expert``, ``dice``, ``iou``, ``volume_cm3``, ``runtime_s``.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM expert_evaluations WHERE study_instance_uid=?", (study_instance_uid,))
            for r in rows:
                db.execute(
                    "INSERT INTO expert_evaluations (study_instance_uid, expert, job_id, dice, iou, volume_cm3, "
                    "runtime_s, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (study_instance_uid, r["expert"], job_id, r["dice"], r["iou"], r["volume_cm3"], r.get("runtime_s"),
                     now),
                )

    def model_stats(self) -> list[dict[str, Any]]:
        """Per expert across studies: number of studies, mean Dice and IoU against the fused mask, mean runtime."""
        with self._database.reading() as db:
            rows = db.execute(
                "SELECT expert, COUNT(*) AS studies, AVG(dice) AS mean_dice, AVG(iou) AS mean_iou, "
                "MIN(dice) AS min_dice, AVG(volume_cm3) AS mean_volume_cm3, AVG(runtime_s) AS mean_runtime_s "
                "FROM expert_evaluations GROUP BY expert ORDER BY expert"
            ).fetchall()
        return [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row_dict(r).items()}
            for r in rows
        ]

    def add_refinement(
        self, study_instance_uid: str, version: int, sop_instance_uid: str, prompts: dict[str, Any],
        volume_cm3: float,
    ) -> None:
        """Record a stored refined SEG of ``version`` (from :meth:`next_refinement_version`)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO refinements (study_instance_uid, version, sop_instance_uid, prompts_json, volume_cm3, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (study_instance_uid, version, sop_instance_uid, json.dumps(prompts), volume_cm3, time.time()),
            )

    def next_refinement_version(self, study_instance_uid: str) -> int:
        with self._database.reading() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(version), 0) AS version FROM refinements WHERE study_instance_uid=?",
                (study_instance_uid,),
            ).fetchone()
        return int(row["version"]) + 1

    def refinements(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self._database.reading() as db:
            rows = db.execute(
                "SELECT version, sop_instance_uid, prompts_json, volume_cm3, created_at FROM refinements "
                "WHERE study_instance_uid=? ORDER BY version", (study_instance_uid,)
            ).fetchall()
        return [
            {"version": r["version"], "sop_instance_uid": r["sop_instance_uid"],
             "prompts": json.loads(r["prompts_json"]), "volume_cm3": r["volume_cm3"], "created_at": r["created_at"]}
            for r in rows
        ]

    # -- clinical state of a time point ----------------------------------------------------------

    def set_clinical_state(self, study_instance_uid: str, status: str | None, steroid_mg_per_day: float | None,
                           entered_by: str) -> dict[str, Any]:
        """Record (replace) what a clinician entered for a study's time point: the clinical status (improved,
        stable, worse; ``None``: not known) and the dexamethasone-equivalent dose in mg/day (``None``: not known)."""
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO clinical_states (study_instance_uid, status, steroid_mg_per_day, entered_by, entered_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_instance_uid) DO UPDATE SET status=excluded.status, "
                "steroid_mg_per_day=excluded.steroid_mg_per_day, entered_by=excluded.entered_by, "
                "entered_at=excluded.entered_at",
                (study_instance_uid, status, steroid_mg_per_day, entered_by, now),
            )
        return {"study_instance_uid": study_instance_uid, "status": status, "steroid_mg_per_day": steroid_mg_per_day,
                "entered_by": entered_by, "entered_at": now}

    def clinical_state(self, study_instance_uid: str) -> dict[str, Any] | None:
        """The study's recorded clinical state (the fields of :meth:`set_clinical_state`), or ``None``."""
        with self._database.reading() as db:
            row = db.execute("SELECT * FROM clinical_states WHERE study_instance_uid=?",
                             (study_instance_uid,)).fetchone()
        return row_dict(row) if row else None

    # -- approved segmentations ------------------------------------------------------------------

    @staticmethod
    def _approval(row: Mapping[str, Any]) -> dict[str, Any]:
        return {"approval_id": int(row["id"]), "study_instance_uid": row["study_instance_uid"],
                "sop_instance_uid": row["sop_instance_uid"], "series_instance_uid": row["series_instance_uid"],
                "segment_numbers": json.loads(row["segment_numbers_json"]), "source": row["source"],
                "input_series_instance_uid": row["input_series_instance_uid"], "volume_cm3": row["volume_cm3"],
                "approved_by": row["approved_by"], "approved_role": row["approved_role"],
                "approved_at": row["approved_at"], "withdrawn_by": row["withdrawn_by"],
                "withdrawn_at": row["withdrawn_at"]}

    def approve_segmentation(
        self, study_instance_uid: str, sop_instance_uid: str, series_instance_uid: str | None,
        segment_numbers: list[int], source: str, input_series_instance_uid: str | None, volume_cm3: float,
        approved_by: str, approved_role: str,
    ) -> dict[str, Any]:
        """Record that ``approved_by`` approved the SEG's ``segment_numbers`` as the study's tumour; an approval
        already in force is withdrawn by the same user at the same time (one approval in force per study)."""
        now = time.time()
        with self._transaction() as db:
            self._database.lock_in_transaction(db, f"approval:{study_instance_uid}")
            db.execute("UPDATE segmentation_approvals SET withdrawn_by=?, withdrawn_at=? WHERE study_instance_uid=? "
                       "AND withdrawn_at IS NULL", (approved_by, now, study_instance_uid))
            row = db.execute(
                "INSERT INTO segmentation_approvals (study_instance_uid, sop_instance_uid, series_instance_uid, "
                "segment_numbers_json, source, input_series_instance_uid, volume_cm3, approved_by, approved_role, "
                "approved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (study_instance_uid, sop_instance_uid, series_instance_uid, json.dumps(sorted(segment_numbers)),
                 source, input_series_instance_uid, volume_cm3, approved_by, approved_role, now),
            ).fetchone()
            stored = db.execute("SELECT * FROM segmentation_approvals WHERE id=?", (int(row["id"]),)).fetchone()
            return self._approval(stored)

    def withdraw_segmentation_approval(self, study_instance_uid: str, withdrawn_by: str) -> dict[str, Any] | None:
        """Withdraw the study's approval in force (the automatic result is measured again); returns it as
        withdrawn, or ``None`` when none was in force."""
        now = time.time()
        with self._transaction() as db:
            self._database.lock_in_transaction(db, f"approval:{study_instance_uid}")
            row = db.execute("SELECT id FROM segmentation_approvals WHERE study_instance_uid=? AND withdrawn_at IS "
                             "NULL ORDER BY id DESC LIMIT 1", (study_instance_uid,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE segmentation_approvals SET withdrawn_by=?, withdrawn_at=? WHERE id=?",
                       (withdrawn_by, now, int(row["id"])))
            stored = db.execute("SELECT * FROM segmentation_approvals WHERE id=?", (int(row["id"]),)).fetchone()
            return self._approval(stored)

    def segmentation_approval(self, study_instance_uid: str) -> dict[str, Any] | None:
        """The study's approval in force (the fields of :meth:`approve_segmentation`), or ``None``."""
        with self._database.reading() as db:
            row = db.execute("SELECT * FROM segmentation_approvals WHERE study_instance_uid=? AND withdrawn_at IS "
                             "NULL ORDER BY id DESC LIMIT 1", (study_instance_uid,)).fetchone()
        return self._approval(row) if row else None

    def segmentation_approvals(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """Every approval of the study, withdrawn ones included, oldest first."""
        with self._database.reading() as db:
            rows = db.execute("SELECT * FROM segmentation_approvals WHERE study_instance_uid=? ORDER BY id",
                              (study_instance_uid,)).fetchall()
        return [self._approval(r) for r in rows]

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
            keep = row_dict(old) if old else {}
            db.execute(
                "INSERT INTO timeline (orthanc_study_id, patient_id, study_instance_uid, study_date, "
                "baseline_study_instance_uid, result_json, error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (orthanc_study_id) DO UPDATE SET patient_id=excluded.patient_id, "
                "study_instance_uid=excluded.study_instance_uid, study_date=excluded.study_date, "
                "baseline_study_instance_uid=excluded.baseline_study_instance_uid, "
                "result_json=excluded.result_json, error=excluded.error, updated_at=excluded.updated_at",
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
            result = {**(json.loads(row["result_json"]) if row["result_json"] else {}), **fields}
            db.execute("UPDATE timeline SET result_json=?, updated_at=? WHERE orthanc_study_id=?",
                       (json.dumps(result), time.time(), orthanc_study_id))

    def _time_point_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        result = json.loads(row["result_json"]) if row["result_json"] else {}
        return {"orthanc_study_id": row["orthanc_study_id"], "patient_id": row["patient_id"],
                "study_instance_uid": row["study_instance_uid"], "study_date": row["study_date"],
                "baseline_study_instance_uid": row["baseline_study_instance_uid"], "error": row["error"],
                "updated_at": row["updated_at"], **result}

    def time_point(self, orthanc_study_id: str) -> dict[str, Any] | None:
        with self._database.reading() as db:
            row = db.execute("SELECT * FROM timeline WHERE orthanc_study_id=?", (orthanc_study_id,)).fetchone()
        return self._time_point_row(row) if row else None

    def timeline(self, patient_id: str) -> list[dict[str, Any]]:
        """The patient's time points in date order."""
        with self._database.reading() as db:
            rows = db.execute(
                "SELECT * FROM timeline WHERE patient_id=? ORDER BY study_date, orthanc_study_id", (patient_id,)
            ).fetchall()
        return [self._time_point_row(r) for r in rows]

    # -- plugin state ----------------------------------------------------------------------------

    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self._database.reading() as db:
            row = db.execute("SELECT value FROM plugin_state WHERE key=?", (key,)).fetchone()
            return row["value"] if row else default

    def set_state(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO plugin_state (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))
