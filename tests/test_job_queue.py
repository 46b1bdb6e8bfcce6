"""The job queue's delivery guarantees, on SQLite and on a real PostgreSQL (Debian's server, started here).

At least once, acknowledged after completion: a claim holds a lease; an expired lease hands the job to the
next consumer with one more attempt, and the first consumer's late acknowledgement is refused (fencing by
attempt). On PostgreSQL, consumers with their own connections never claim the same job
(``FOR UPDATE SKIP LOCKED``), and the store rides out a database restart.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oncoflow.pipeline import sql_database
from oncoflow.pipeline.job_runner import JobRunner
from oncoflow.pipeline.job_store import JobStore
from oncoflow.pipeline.sql_database import DatabaseUnavailable
from oncoflow.services import postgres_server

from .conftest import fresh_database, postgres_cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "sqlite":
        return tmp_path / "jobs.sqlite3"
    return fresh_database(request.getfixturevalue("postgres"), "queue")


def test_an_expired_lease_redelivers_the_job_and_fences_the_first_consumer(location: str | Path) -> None:
    store = JobStore(location)
    job_id = store.enqueue("study-1", "stable-study")
    assert store.enqueue("study-1", "stable-study") is None  # one queued job per study
    first = store.claim_next("worker-a", lease_s=0.5)
    assert first is not None and first.id == job_id and first.attempts == 1 and first.claimed_by == "worker-a"
    assert store.claim_next("worker-b", lease_s=0.5) is None  # held
    assert store.renew(first, 0.5)
    time.sleep(0.7)  # worker-a "died": no renewal
    second = store.claim_next("worker-b", lease_s=30)
    assert second is not None and second.id == job_id and second.attempts == 2
    assert "redelivered on worker-b (attempt 2): the lease of worker-a expired" in second.events[-1]["message"]
    assert not store.renew(first, 30)  # worker-a comes back: not its job any more
    assert not store.finish(job_id, "done", attempt=first.attempts)
    assert not store.retry_later(job_id, 1, "late", attempt=first.attempts)
    assert store.get(job_id).state == "running"
    assert store.finish(job_id, "done", attempt=second.attempts)
    done = store.get(job_id)
    assert done.state == "done" and done.attempts == 2
    assert [e["message"] for e in done.events].count("done") == 1
    assert store.claim_next("worker-c") is None
    store.close()


def test_a_study_runs_one_job_at_a_time_and_a_retry_waits(location: str | Path) -> None:
    store = JobStore(location)
    first = store.enqueue("study-1", "stable-study")
    running = store.claim_next("a")
    second = store.enqueue("study-1", "reanalyse")  # queued behind the running one
    assert running.id == first and second is not None and second != first
    assert store.claim_next("b") is None  # the study's job runs: its second waits
    assert store.retry_later(first, 60, "worker unavailable", attempt=running.attempts)
    nxt = store.claim_next("b")
    assert nxt is not None and nxt.id == second  # the first waits 60 s; nothing else of the study runs
    assert store.counts() == {"queued": 1, "running": 1}
    store.close()


def run_consumers(consume: Callable[[str], None], count: int = 4) -> None:
    """``consume(name)`` in ``count`` threads at once (each its own store: as other processes or hosts)."""
    threads = [threading.Thread(target=consume, args=(f"consumer-{n}",)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)


def test_postgresql_consumers_never_claim_the_same_job(postgres: postgres_server.PostgresCluster) -> None:
    url = fresh_database(postgres, "concurrent")
    producer = JobStore(url)
    jobs = {producer.enqueue(f"study-{i}", "stable-study") for i in range(40)}
    claimed: list[int] = []
    lock = threading.Lock()

    def consume(name: str) -> None:
        store = JobStore(url)  # its own connection, as another process or host
        while (job := store.claim_next(name, lease_s=60)) is not None:
            with lock:
                claimed.append(job.id)
            assert store.finish(job.id, "done", attempt=job.attempts)
        store.close()

    run_consumers(consume)
    assert Counter(claimed).most_common(1)[0][1] == 1, "a job was claimed twice"
    assert set(claimed) == jobs
    assert producer.counts() == {"done": 40}
    consumers = {producer.get(j).claimed_by for j in jobs}
    assert len(consumers) > 1, "one consumer took everything: the test did not exercise concurrency"
    producer.close()


def test_postgresql_consumers_never_run_two_jobs_of_one_study(postgres: postgres_server.PostgresCluster) -> None:
    """Each study has an expired job (its consumer died) and a newer queued one: concurrent consumers must take
    one of them per study, never both (the second waits while the first runs)."""
    url = fresh_database(postgres, "one_per_study")
    producer = JobStore(url)
    studies = [f"study-{i}" for i in range(30)]
    for study in studies:
        producer.enqueue(study, "stable-study")
        first = producer.claim_next("dead-consumer", lease_s=2)
        assert first is not None and first.orthanc_study_id == study
        assert producer.enqueue(study, "new-instances") is not None  # the first one is running: a second job
    time.sleep(2.1)  # every lease of the dead consumer has lapsed
    claimed: list[str] = []
    lock = threading.Lock()

    def consume(name: str) -> None:
        store = JobStore(url)
        while (job := store.claim_next(name, lease_s=60)) is not None:  # held, never finished
            with lock:
                claimed.append(job.orthanc_study_id)
        store.close()

    run_consumers(consume)
    twice = [study for study, n in Counter(claimed).items() if n > 1]
    assert not twice, f"two jobs of one study running at once: {twice}"
    assert sorted(claimed) == sorted(studies)
    producer.close()


@pytest.fixture
def private_postgres() -> Iterator[postgres_server.PostgresCluster]:
    """A cluster of this test's own, to stop and start."""
    with postgres_cluster() as cluster:
        yield cluster


class RecordingPipeline:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.ran: list[int] = []

    def run(self, job: object) -> None:
        self.ran.append(job.id)  # type: ignore[attr-defined]
        self.store.finish(job.id, "done", attempt=job.attempts)  # type: ignore[attr-defined]


def test_the_queue_rides_out_a_database_outage(private_postgres: postgres_server.PostgresCluster) -> None:
    url = postgres_server.ensure_database(private_postgres, "oncoflow")
    store = JobStore(url)
    pipeline = RecordingPipeline(store)
    runner = JobRunner(store, pipeline, rest=None, max_attempts=3, consumer="orthanc-a")  # type: ignore[arg-type]
    postgres_server.stop(private_postgres, "immediate")  # as a crash of the database server
    with pytest.raises(DatabaseUnavailable):
        store.counts()
    assert runner.enqueue("study-during-outage", "stable-study") is None  # kept, not lost, Orthanc not blocked
    with pytest.raises(DatabaseUnavailable):
        runner._queue_kept()
    postgres_server.start(private_postgres)
    runner._queue_kept()  # the database is back: the kept trigger is queued
    job = store.claim_next("orthanc-a")
    assert job is not None and job.orthanc_study_id == "study-during-outage" and job.trigger == "stable-study"
    runner._run_one(job)
    assert pipeline.ran == [job.id] and store.get(job.id).state == "done"
    store.close()


def test_a_restarted_database_is_reconnected_to_without_a_failed_call(
        private_postgres: postgres_server.PostgresCluster) -> None:
    store = JobStore(postgres_server.ensure_database(private_postgres, "oncoflow_restart"))
    store.enqueue("study", "stable-study")
    postgres_server.stop(private_postgres, "fast")
    postgres_server.start(private_postgres)  # the store's connection is closed by the server, unnoticed yet
    time.sleep(sql_database.PRE_PING_AFTER_S + 0.1)
    assert store.counts() == {"queued": 1}  # checked before use, replaced: the first call after it succeeds
    store.close()


def test_an_sqlite_store_made_before_leases_gains_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, orthanc_study_id TEXT NOT NULL, "
                "study_instance_uid TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL "
                "NOT NULL DEFAULT 0, error TEXT, input_series_instance_uid TEXT, fingerprint TEXT, timings_json TEXT "
                "NOT NULL DEFAULT '{}', outputs_json TEXT NOT NULL DEFAULT '{}', trigger TEXT NOT NULL, created_at "
                "REAL NOT NULL, updated_at REAL NOT NULL)")
    old.execute("INSERT INTO jobs (orthanc_study_id, state, trigger, created_at, updated_at) "
                "VALUES ('s', 'running', 'stable-study', 1, 1)")
    old.commit()
    old.close()
    store = JobStore(path)
    assert store.recover() == 1  # the crash-left job of the old store comes back
    job = store.claim_next("orthanc", lease_s=10)
    assert job is not None and job.orthanc_study_id == "s" and job.claimed_by == "orthanc"
    store.close()
