"""End to end under load: 18 phantom studies pushed at once by 3 concurrent storescu processes.

Every study must be processed exactly once (one job done, one ensemble SEG, one SR, one report; no
duplicate series), Orthanc and the worker stay within a memory bound while it runs, and the plugin's
C-STORE path holds up under concurrent associations while the pipeline stores its own results (the
situation that deadlocked Orthanc when the upload guard ran in the received-instance callback).
Throughput is printed (speed goals live in ``make bench``, not here). Two configurations: the embedded one
(Orthanc's plugin runs the jobs one at a time, SQLite queue), and the scale-out one (PostgreSQL queue,
Orthanc only queues, two pipeline worker processes share one inference worker), where the jobs must
also have been spread over both workers.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.stack import service_pid

from .conftest import TEST_AET, fresh_database, running_stack, unique_study, write_series

pytestmark = pytest.mark.e2e

STUDIES = 18  # 6 per sender: concurrent associations and a queue several jobs deep (30 cost 6 minutes a run more)
SENDERS = 3
RSS_LIMIT_GIB = {"orthanc": 3.0, "worker": 3.0}


def rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return 0.0


@pytest.mark.parametrize("pipeline_workers", [0, 2], ids=["embedded", "two-pipeline-workers"])
def test_studies_from_three_senders_are_each_processed_once(tmp_path: Path, pipeline_workers: int,
                                                                   request: pytest.FixtureRequest) -> None:
    uids = []
    for index in range(STUDIES):
        study = dataclasses.replace(unique_study(f"load-{index}"), patient_id=f"LOAD-{index:02d}")
        write_series(tmp_path / f"sender-{index % SENDERS}" / str(index),
                     make_phantom(7000 + index, shape=(24, 48, 48)).volume, study)
        uids.append(study.study_instance_uid)
    scale_out = {}
    if pipeline_workers:
        scale_out = {"ONCOFLOW_DATABASE_URL": fresh_database(request.getfixturevalue("postgres"), "load"),
                     "ONCOFLOW_JOB_CONSUMER": "off", "ONCOFLOW_PIPELINE_WORKERS": str(pipeline_workers)}
    with running_stack(tmp_path / "home", ONCOFLOW_PANEL="nnunet_demo", **scale_out) as stack:
        limits = {**RSS_LIMIT_GIB, **{f"pipeline-{i}": 3.0 for i in range(1, pipeline_workers + 1)}}
        pids = {name: service_pid(stack.settings, name) for name in limits}
        started = time.monotonic()

        def send(sender: int) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["storescu", "-aet", TEST_AET, "-aec", stack.settings.aet, "+sd", "+r", "-nh",
                                   "127.0.0.1", str(stack.settings.dicom_port), str(tmp_path / f"sender-{sender}")],
                                  capture_output=True, text=True, timeout=600)

        with ThreadPoolExecutor(SENDERS) as pool:
            results = list(pool.map(send, range(SENDERS)))
        pushed_s = time.monotonic() - started
        assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
        peak = dict.fromkeys(limits, 0.0)
        jobs = {}
        deadline = time.monotonic() + 900
        while len(jobs) < STUDIES and time.monotonic() < deadline:
            for name, pid in pids.items():
                assert pid is not None and service_pid(stack.settings, name) == pid, f"{name} restarted or died"
                peak[name] = max(peak[name], rss_gib(pid))
            for uid in uids:
                if uid not in jobs:
                    job = stack.job(uid)
                    if job and job["state"] in ("done", "failed"):
                        jobs[uid] = job
            time.sleep(1)
        processed_s = time.monotonic() - started
        assert len(jobs) == STUDIES, f"{STUDIES - len(jobs)} studies not processed in time"
        failed = {uid: job["error"] for uid, job in jobs.items() if job["state"] != "done"}
        assert not failed, failed
        for uid in uids:
            _, series = stack.get(f"/studies/{stack.study_id(uid)}/series")
            kinds = Counter((s["MainDicomTags"].get("Modality"), s["MainDicomTags"].get("SeriesDescription"))
                            for s in series)
            duplicated = {kind: n for kind, n in kinds.items() if n > 1}
            assert not duplicated, (uid, duplicated)
            assert {"MR", "SEG", "SR", "DOC"} <= {kind for kind, _ in kinds}, (uid, kinds)
            assert [j["state"] for j in jobs[uid]["history"]].count("done") == 1, jobs[uid]["history"]
        for name, limit in limits.items():
            assert peak[name] < limit, f"{name} peaked at {peak[name]:.2f} GiB"
        claimed_by = Counter(job["claimed_by"] for job in jobs.values())
        if pipeline_workers:  # every job ran in a pipeline worker, and both workers took their share
            kinds = {str(consumer).split("@")[0] for consumer in claimed_by}
            assert kinds == {"worker"} and len(claimed_by) == pipeline_workers, claimed_by
        print(json.dumps({"studies": STUDIES, "senders": SENDERS, "pipeline_workers": pipeline_workers,
                          "jobs_per_consumer": sorted(claimed_by.values()),
                          "push_s": round(pushed_s, 1),
                          "all_processed_s": round(processed_s, 1),
                          "studies_per_hour": round(STUDIES / processed_s * 3600),
                          "peak_rss_gib": {k: round(v, 2) for k, v in peak.items()}}))
