"""End to end on the scale-out configuration: the PostgreSQL job queue, Orthanc only queueing
(``ONCOFLOW_JOB_CONSUMER=off``) and two pipeline worker processes consuming it, with a short lease (6 s).

Each test breaks something real and then reads the outcome back from Orthanc and the shared job database:

* a pipeline worker SIGKILLed in the middle of a job: its lease lapses, the other worker finishes the job
  (attempt 2), and the study holds one set of results;
* the queue's PostgreSQL stopped for 30 s while studies arrive and a job runs: every study is processed once
  the database is back, none twice;
* Orthanc restarted during a burst of C-STOREs from three senders (who then send again, as modalities retry):
  every instance is stored, every study processed, no series duplicated.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest

from oncoflow.pacs.orthanc_http import HttpOrthanc, OrthancHttpError
from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.services import postgres_server
from oncoflow.services.stack import service_pid, services, stop_service

from .conftest import (
    TEST_AET,
    Stack,
    free_port,
    fresh_database,
    postgres_cluster,
    running_stack,
    unique_study,
    write_series,
)
from .test_e2e_result_routing import PACS_AET, HospitalPacs

pytestmark = pytest.mark.e2e

PIPELINE_WORKERS = 2
LEASE_S = 6.0
OUTAGE_S = 30.0


@dataclasses.dataclass
class ScaleOut:
    stack: Stack
    cluster: postgres_server.PostgresCluster
    jobs: JobStore  # the shared queue, read by the test directly

    def jobs_of(self, study_uid: str) -> list[Job]:
        return self.jobs.history(self.stack.study_id(study_uid))

    def pipeline_workers(self) -> dict[int, str]:
        """PID -> service name of the running pipeline workers."""
        names = [name for name in services(self.stack.settings) if name.startswith("pipeline-")]
        return {pid: name for name in names if (pid := service_pid(self.stack.settings, name)) is not None}

    def assert_one_result_set(self, study_uid: str) -> None:
        """No series duplicated, and the MR, SEG, SR and report (DOC) all present."""
        _, series = self.stack.get(f"/studies/{self.stack.study_id(study_uid)}/series")
        kinds = Counter((s["MainDicomTags"].get("Modality"), s["MainDicomTags"].get("SeriesDescription"))
                        for s in series)
        assert not {kind: n for kind, n in kinds.items() if n > 1}, (study_uid, kinds)
        assert {"MR", "SEG", "SR", "DOC"} <= {modality for modality, _ in kinds}, (study_uid, kinds)


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOut]:
    with postgres_cluster() as cluster:
        url = postgres_server.ensure_database(cluster, "oncoflow")
        env = {
            "ONCOFLOW_PANEL": "nnunet_demo",
            "ONCOFLOW_DATABASE_URL": url,
            "ONCOFLOW_JOB_CONSUMER": "off",
            "ONCOFLOW_PIPELINE_WORKERS": str(PIPELINE_WORKERS),
            "ONCOFLOW_JOB_LEASE_S": str(LEASE_S),
            "ONCOFLOW_REGISTRATION": "sitk",
        }
        with running_stack(tmp_path_factory.mktemp("scale-out-home"), **env) as stack:
            jobs = JobStore(url)
            try:
                yield ScaleOut(stack, cluster, jobs)
            finally:
                jobs.close()


def _study(directory: Path, name: str, seed: int, shape: tuple[int, int, int] = (24, 48, 48)) -> str:
    study = dataclasses.replace(unique_study(name), patient_id=f"SCALE-{name}")
    write_series(directory, make_phantom(seed, shape=shape).volume, study)
    return study.study_instance_uid


def _wait_done(scale_out: ScaleOut, study_uids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Wait until each study's latest job is done (fails on a failed one); returns the jobs as the API shows them."""
    deadline = time.monotonic() + timeout_s
    finished: dict[str, dict[str, Any]] = {}
    while len(finished) < len(study_uids) and time.monotonic() < deadline:
        for uid in study_uids:
            job = scale_out.stack.job(uid) if uid not in finished else None
            if job and job["state"] == "failed":
                raise AssertionError(f"study {uid} failed: {job['error']}; events {job['events']}")
            if job and job["state"] == "done":
                finished[uid] = job
        time.sleep(0.5)
    missing = [uid for uid in study_uids if uid not in finished]
    assert not missing, f"not done in {timeout_s:.0f} s: {[(uid, scale_out.stack.job(uid)) for uid in missing]}"
    return finished


def test_a_worker_killed_mid_job_loses_it_to_the_other_one_which_finishes_it_once(
        scale_out: ScaleOut, tmp_path: Path) -> None:
    stack = scale_out.stack
    uid = _study(tmp_path / "study", "killed", 8101, shape=(64, 96, 96))  # inference long enough to kill within
    stack.push(tmp_path / "study")
    running = stack.wait_event(uid, "input series", timeout_s=120)  # chosen, panel running
    assert running["state"] == "running" and running["claimed_by"], running
    victim_pid = int(running["claimed_by"].rsplit(":", 1)[1])
    workers = scale_out.pipeline_workers()
    assert victim_pid in workers, f"job claimed by {running['claimed_by']}, pipeline workers {workers}"
    stop_service(stack.settings, workers[victim_pid], sig=signal.SIGKILL)
    assert not stack.seg_series(uid), "a SEG was stored before the kill: the job was not killed mid-way"

    job = _wait_done(scale_out, [uid], timeout_s=180)[uid]
    messages = [event["message"] for event in job["events"]]
    assert job["attempts"] == 2 and job["claimed_by"] != running["claimed_by"], (job["claimed_by"], messages)
    assert any(f"the lease of {running['claimed_by']} expired" in m for m in messages), messages
    assert [j.state for j in scale_out.jobs_of(uid)] == ["done"], "one job, redelivered, done once"
    assert len(stack.seg_series(uid)) == len(job["outputs"]["seg_sop_instance_uids"])  # the expert's and the fused
    scale_out.assert_one_result_set(uid)
    stack.restart(workers[victim_pid])


def test_the_queue_database_down_for_thirty_seconds_loses_no_study(scale_out: ScaleOut, tmp_path: Path) -> None:
    stack = scale_out.stack
    first = _study(tmp_path / "first", "outage-first", 8201, shape=(64, 96, 96))
    during = [_study(tmp_path / f"during-{i}", f"outage-{i}", 8210 + i) for i in range(3)]
    stack.push(tmp_path / "first")
    stack.wait_event(first, "input series", timeout_s=120)  # a job is running when the database goes
    postgres_server.stop(scale_out.cluster, "immediate")  # as a crash of the database server
    stopped_at = time.monotonic()
    try:
        for index in range(len(during)):
            stack.push(tmp_path / f"during-{index}")  # C-STORE still works: Orthanc's index is its own
        status, health = stack.get("/oncoflow/health")
        assert status == 503 and "job database unreadable" in str(health["jobs"]), (status, health)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
    finally:
        postgres_server.start(scale_out.cluster)
    jobs = _wait_done(scale_out, [first, *during], timeout_s=240)
    for uid in (first, *during):
        assert [j.state for j in scale_out.jobs_of(uid)].count("done") == 1, scale_out.jobs_of(uid)
        scale_out.assert_one_result_set(uid)
    first_messages = [event["message"] for event in jobs[first]["events"]]
    assert jobs[first]["attempts"] >= 2 and any("redelivered" in m for m in first_messages), first_messages
    assert len(scale_out.pipeline_workers()) == PIPELINE_WORKERS, "a pipeline worker died in the outage"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["restart", "crash"])
def test_orthanc_restarted_during_a_c_store_burst_loses_nothing(scale_out: ScaleOut, tmp_path: Path,
                                                                 stop_signal: signal.Signals) -> None:
    """SIGTERM: Orthanc finishes the open associations before it exits (measured: no sender sees an error);
    SIGKILL (a crash): the senders' associations break, and what they send again is stored and processed."""
    stack = scale_out.stack
    senders, per_sender, slices = 3, 4, 48
    uids = [_study(tmp_path / f"sender-{i % senders}" / str(i), f"burst-{stop_signal.name}-{i}", 8300 + i,
                   shape=(slices, 48, 48)) for i in range(senders * per_sender)]
    total = senders * per_sender * slices
    _, before = stack.get("/statistics")

    def send(sender: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["storescu", "-aet", TEST_AET, "-aec", stack.settings.aet, "+sd", "+r", "-nh",
                               "127.0.0.1", str(stack.settings.dicom_port), str(tmp_path / f"sender-{sender}")],
                              capture_output=True, text=True, timeout=300)

    received_at_restart: list[int] = []

    def restart_orthanc() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # restart once a sixth of the burst is in
            status, statistics = stack.get("/statistics")
            received = int(statistics["CountInstances"]) - int(before["CountInstances"]) if status == 200 else 0
            if received >= total // 6:
                break
            time.sleep(0.05)
        received_at_restart.append(received)
        stop_service(stack.settings, "orthanc", sig=stop_signal)
        stack.restart("orthanc")

    restarter = threading.Thread(target=restart_orthanc)
    restarter.start()
    with ThreadPoolExecutor(senders) as pool:
        first_round = list(pool.map(send, range(senders)))
    restarter.join(180)
    assert received_at_restart and received_at_restart[0] < total, "the restart came after the burst"
    interrupted = [sender for sender, result in enumerate(first_round) if result.returncode != 0]
    if stop_signal == signal.SIGKILL:
        assert interrupted, f"no sender saw the crash ({received_at_restart[0]} of {total} instances in)"
    with ThreadPoolExecutor(senders) as pool:  # the modalities send again what failed
        again = list(pool.map(send, interrupted))
    assert all(result.returncode == 0 for result in again), [r.stderr[-300:] for r in again]

    _wait_done(scale_out, uids, timeout_s=420)
    time.sleep(2 * float(stack.env["ONCOFLOW_STABLE_AGE_S"]) + 1)  # any late trigger is queued by now
    jobs = _wait_done(scale_out, uids, timeout_s=240)
    for uid in uids:
        _, series = stack.get(f"/studies/{stack.study_id(uid)}/series")
        mr = [s for s in series if s["MainDicomTags"].get("Modality") == "MR"]
        assert len(mr) == 1 and len(mr[0]["Instances"]) == slices, (uid, [len(s["Instances"]) for s in mr])
        scale_out.assert_one_result_set(uid)
        assert len(stack.seg_series(uid)) == len(jobs[uid]["outputs"]["seg_sop_instance_uids"])
    print({"signal": stop_signal.name, "received_at_restart": received_at_restart[0], "of": total,
           "senders_interrupted": interrupted,
           "jobs_per_study": {uid[-6:]: len(scale_out.jobs_of(uid)) for uid in uids}})


@contextmanager
def hospital_pacs_running(pacs: HospitalPacs) -> Iterator[HospitalPacs]:
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


def test_a_pipeline_worker_with_login_on_works_with_its_service_account_only(postgres, tmp_path: Path) -> None:
    """Login on: the pipeline worker's requests carry the ``oncoflow-pipeline`` service account's tokens (role
    ``pipeline``): it processes a study to the end and routes its results to the hospital's PACS (dcmqrscp), never
    refused, while the same request without a token is."""
    uid = _study(tmp_path / "study", "login-on", 8401)
    pacs = HospitalPacs(tmp_path / "hospital-pacs", free_port())
    env = {"ONCOFLOW_AUTH": "on", "ONCOFLOW_PANEL": "nnunet_demo", "ONCOFLOW_REGISTRATION": "sitk",
           "ONCOFLOW_DATABASE_URL": fresh_database(postgres, "login_on"), "ONCOFLOW_JOB_CONSUMER": "off",
           "ONCOFLOW_PIPELINE_WORKERS": "1", "ONCOFLOW_ROUTE_TO": f"{PACS_AET}@127.0.0.1:{pacs.port}"}
    with running_stack(tmp_path / "home", **env) as stack, hospital_pacs_running(pacs):
        assert stack.settings.pipeline_client_path.stat().st_mode & 0o777 == 0o600
        stack.push(tmp_path / "study")
        job = stack.wait_job(uid, timeout_s=240)
        assert job["state"] == "done", job["error"]
        assert job["claimed_by"].startswith("worker@"), job["claimed_by"]
        _, series = stack.get(f"/studies/{stack.study_id(uid)}/series")
        assert {"SEG", "SR", "DOC"} <= {s["MainDicomTags"].get("Modality") for s in series}
        results = {s["MainDicomTags"]["SeriesInstanceUID"] for s in series if s["MainDicomTags"].get("Modality") in
                   ("SR", "DOC") or s["MainDicomTags"].get("SeriesDescription", "").startswith("OncoFlow SEG ensemble")}
        deadline = time.monotonic() + 180  # routed by the worker after the job is done
        while {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
               for p in pacs.storage.glob("*.dcm")} < results:
            assert time.monotonic() < deadline, f"not routed: {stack.job(uid)}"
            time.sleep(1)
        with pytest.raises(OrthancHttpError) as refused:  # the same calls without the account's token
            HttpOrthanc(stack.settings.orthanc_url, 10).RestApiGet(f"/studies/{stack.study_id(uid)}")
        assert refused.value.status == 403  # what the request filter answers a request without a token
        status, body = stack.get("/oncoflow/audit?limit=1000")
        assert status == 200
        refusals = [r for r in body["records"]
                    if r["actor"] == "service-account-oncoflow-pipeline" and r["outcome"] != "success"]
        assert not refusals, refusals[:3]
