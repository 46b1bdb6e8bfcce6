"""The job runner's handling of a full disk, of a failing job store and of the catch-up (no Orthanc needed)."""

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


class ChangesLog:
    """Orthanc's ``/changes`` as the REST API pages it: ``since`` exclusive, ``limit`` per page."""

    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []

    def add(self, change_type: str, study_id: str) -> None:
        self.changes.append({"Seq": len(self.changes) + 1, "ChangeType": change_type, "ID": study_id,
                             "Date": "20261208T000000"})

    def get_json(self, uri: str) -> Any:
        if uri == "/changes?last":
            return {"Changes": self.changes[-1:], "Done": True, "Last": len(self.changes)}
        if uri.startswith("/changes?"):
            query = dict(part.split("=") for part in uri.split("?")[1].split("&"))
            page = [c for c in self.changes if c["Seq"] > int(query["since"])][:int(query["limit"])]
            return {"Changes": page, "Done": not page or page[-1]["Seq"] == len(self.changes),
                    "Last": page[-1]["Seq"] if page else int(query["since"])}
        if uri.startswith("/studies/"):
            return {"ID": uri.removeprefix("/studies/")}
        if uri.startswith("/series/") and uri.endswith("/study"):  # here a series is named after its study
            return {"ID": uri.removeprefix("/series/").removesuffix("/study")}
        raise AssertionError(f"unexpected GET {uri}")


def test_the_catch_up_leaves_studies_stored_after_the_start_to_their_stable_study(tmp_path: Path) -> None:
    """A study missed before Orthanc started is queued by the catch-up; one that arrives while the thread is
    still starting up (its database slow, say) is left to its STABLE_STUDY, so it is not queued half-received."""
    changes = ChangesLog()
    changes.add("NewStudy", "missed")
    store = JobStore(tmp_path / "jobs.sqlite3")
    runner = JobRunner(store, RecordingPipeline(), rest=changes, max_attempts=2)  # type: ignore[arg-type]
    runner._thread = type("NotStarted", (), {"start": lambda self: None})()  # type: ignore[assignment]
    runner.start()  # Orthanc started: the newest change is read here
    changes.add("NewStudy", "arriving")  # C-STOREd before the thread's catch-up ran
    changes.add("NewSeries", "arriving")

    assert runner.catch_up() == 1
    assert [(j.orthanc_study_id, j.trigger) for j in store.history("missed")] == [("missed", "catch-up")]
    assert store.history("arriving") == []
    assert store.get_state("orthanc_changes_seq") == "1"  # the next start reads on from here

    restarted = JobRunner(store, RecordingPipeline(), rest=changes, max_attempts=2)  # type: ignore[arg-type]
    restarted._thread = runner._thread  # type: ignore[assignment]
    restarted.start()  # "arriving" never became stable before this restart: now it is caught up
    assert restarted.catch_up() == 1
    assert [j.trigger for j in store.history("arriving")] == ["catch-up"]
    assert store.get_state("orthanc_changes_seq") == "3"


def test_disk_space_reads_the_file_system(tmp_path: Path) -> None:
    measured = disk_space(tmp_path, 1)
    assert measured.total_bytes > measured.free_bytes > 0 and measured.ok
    assert not disk_space(tmp_path, 2**40).ok  # a minimum of 1 EiB is never met
    assert measured.as_json()["min_free_mb"] == 1
