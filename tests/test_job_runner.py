"""The job runner's handling of a full disk and of a failing job store (no Orthanc needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncoflow.core.disk_space import MIB, DiskSpace, disk_space
from oncoflow.pipeline.job_runner import DISK_WAIT_S, JobRunner
from oncoflow.pipeline.job_store import JobStore


class RecordingPipeline:
    def __init__(self) -> None:
        self.ran: list[int] = []

    def run(self, job: Any) -> None:
        self.ran.append(job.id)


def space(free_mb: int) -> DiskSpace:
    return DiskSpace(Path("/home"), free_mb * MIB, 100 * MIB, 10 * MIB)


def test_a_job_waits_while_the_disk_is_full_then_fails_with_the_numbers(tmp_path: Path) -> None:
    store, pipeline = JobStore(tmp_path / "jobs.sqlite3"), RecordingPipeline()
    free = {"mb": 3}
    runner = JobRunner(store, pipeline, rest=None, max_attempts=2,  # type: ignore[arg-type]
                       disk_space=lambda: space(free["mb"]))
    job_id = store.enqueue("study-1", "stable-study")
    assert job_id is not None
    first = store.claim_next()
    runner._run_one(first)
    held = store.get(job_id)
    assert held.state == "queued" and pipeline.ran == []
    assert "not enough free disk space: 3 MiB free of 100 MiB" in held.error and "ONCOFLOW_MIN_FREE_MB=10" in held.error
    assert any(f"retry in {DISK_WAIT_S:.0f} s" in e["message"] for e in held.as_json()["events"])
    with store._transaction() as db:  # due again now (instead of waiting DISK_WAIT_S)
        db.execute("UPDATE jobs SET not_before=0 WHERE id=?", (job_id,))
    runner._run_one(store.claim_next())  # second and last attempt: failed, with the reason
    failed = store.get(job_id)
    assert failed.state == "failed" and failed.error.startswith("gave up after 2 attempts: not enough free disk")
    assert pipeline.ran == []

    free["mb"] = 50  # space freed: the next study runs
    second = store.enqueue("study-2", "stable-study")
    runner._run_one(store.claim_next())
    assert pipeline.ran == [second]


def test_the_loop_survives_a_failing_job_store(tmp_path: Path) -> None:
    class BrokenStore(JobStore):
        calls = 0

        def claim_next(self, *args: Any, **kwargs: Any) -> Any:
            BrokenStore.calls += 1
            if BrokenStore.calls == 1:
                raise OSError("database or disk is full")
            runner._stop.set()
            return None

    store = BrokenStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, RecordingPipeline(), rest=None, max_attempts=2)  # type: ignore[arg-type]
    runner.catch_up = lambda: 0  # type: ignore[method-assign]  (no Orthanc here)
    import oncoflow.pipeline.job_runner as job_runner

    job_runner.LOOP_ERROR_PAUSE_S, saved = 0.01, job_runner.LOOP_ERROR_PAUSE_S
    try:
        runner._loop()  # returns once stopped: the error did not end the thread
    finally:
        job_runner.LOOP_ERROR_PAUSE_S = saved
    assert BrokenStore.calls == 2


def test_disk_space_reads_the_file_system(tmp_path: Path) -> None:
    measured = disk_space(tmp_path, 1)
    assert measured.total_bytes > measured.free_bytes > 0 and measured.ok
    assert not disk_space(tmp_path, 2**40).ok  # a minimum of 1 EiB is never met
    assert measured.as_json()["min_free_mb"] == 1
