"""``make bench`` (scale-out part): studies per hour with one and with two pipeline workers, in one run.

Processing capacity, not ingest: in a fresh stack of each configuration (PostgreSQL queue in our own
cluster, Orthanc only queues, panel: the demo nnU-Net, one inference worker) the pipeline workers are stopped,
the same ``STUDIES`` phantoms of ``SHAPE`` (one patient each) are pushed by one storescu and queued, then the
workers start and the time from their start to the last job done gives the studies per hour:

* ``workers-1``, ``workers-2``: one or two pipeline worker processes; the inference worker runs one model
  call at a time with all cores;
* ``workers-2-concurrent``: two pipeline workers, the inference worker running two model calls at once with
  half the threads each.

(With the studies pushed while the workers run, one storescu is the bottleneck here: 12 studies took 69 s to
push and were all processed 5 s later, with one worker as with the embedded consumer.)

Reported: each configuration's studies per hour, its ratio to ``workers-1`` (the machine is noisy: the ratios
measured in one run are what to compare) and the median model inference per job. Writes
``bench/results/scale-out-<UTC>.json`` and ``scale-out-latest.json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_results import write_result
from pydicom.uid import generate_uid
from turnaround import bench_stack, free_port

STUDIES = 12
SHAPE = (64, 128, 128)
PANEL = "nnunet_demo"


def write_studies(directory: Path) -> list[str]:
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets
    from oncoflow.phantoms.tumour_phantom import make_phantom

    uids = []
    for index in range(STUDIES):
        study = StudyInfo(patient_id=f"SCALE-BENCH-{index}", study_instance_uid=str(generate_uid()))
        volume = make_phantom(9100 + index, shape=SHAPE).volume
        write_datasets(series_datasets(volume, study, SeriesInfo(str(generate_uid()))), directory / str(index))
        uids.append(study.study_instance_uid)
    return uids


def job_of(settings: Any, study_uid: str) -> dict[str, Any] | None:
    from oncoflow.services.stack import http_get

    status, body = http_get(f"{settings.orthanc_url}/oncoflow/studies/{study_uid}", timeout_s=10)
    return json.loads(body) if status == 200 else None


def one_configuration(name: str, home: Path, studies: Path, uids: list[str], env: dict[str, str]) -> dict[str, Any]:
    from oncoflow.services.stack import services, start_service, stop_service, wait_healthy

    with bench_stack(home, PANEL, **env) as settings:
        workers = [service for service in services(settings) if service.startswith("pipeline-")]
        for worker in workers:
            stop_service(settings, worker)
        subprocess.run(["storescu", "-aec", settings.aet, "+sd", "+r", "-nh", "127.0.0.1", str(settings.dicom_port),
                        str(studies)], check=True, capture_output=True, timeout=900)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(job_of(settings, uid) for uid in uids):
            time.sleep(0.5)  # every study stable and queued
        started = time.monotonic()
        for worker in workers:
            start_service(settings, worker)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 1800
        while len(done) < len(uids) and time.monotonic() < deadline:
            for uid in uids:
                job = job_of(settings, uid) if uid not in done else None
                if job and job["state"] in ("done", "failed"):
                    done[uid] = job
            time.sleep(0.5)
        elapsed_s = time.monotonic() - started
        for worker in workers:
            wait_healthy(settings, worker, 60)  # still running: none died under the load
    failed = [job["error"] for job in done.values() if job["state"] != "done"]
    if len(done) < len(uids) or failed:
        raise SystemExit(f"{name}: {len(uids) - len(done)} studies not processed, failed: {failed[:3]}")
    inference_s = [job["timings_s"].get("model_inference", 0.0) for job in done.values()]
    result = {"queue_drained_s": round(elapsed_s, 1), "studies_per_hour": round(len(uids) / elapsed_s * 3600),
              "jobs_per_consumer": sorted(Counter(job["claimed_by"] for job in done.values()).values()),
              "median_model_inference_s": round(sorted(inference_s)[len(inference_s) // 2], 2)}
    print(name, json.dumps(result), flush=True)
    return result


def main() -> None:
    from oncoflow.services import postgres_server

    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-scale-", dir="/tmp"))
    base.chmod(0o755)  # PostgreSQL runs as Debian's postgres user when this runs as root
    cluster = postgres_server.PostgresCluster(base / "postgres", free_port())
    cores = os.cpu_count() or 1
    try:
        studies = base / "studies"
        uids = write_studies(studies)
        postgres_server.start(cluster)
        def workers(count: int, concurrency: int) -> dict[str, str]:
            return {"ONCOFLOW_DATABASE_URL": postgres_server.ensure_database(cluster, f"bench_{count}_{concurrency}"),
                    "ONCOFLOW_JOB_CONSUMER": "off", "ONCOFLOW_PIPELINE_WORKERS": str(count),
                    "ONCOFLOW_PANEL_CONCURRENCY": str(concurrency),
                    "ONCOFLOW_TORCH_THREADS": str(max(1, cores // concurrency))}

        configurations = {"workers-1": workers(1, 1), "workers-2": workers(2, 1),
                          "workers-2-concurrent": workers(2, 2)}
        results = {name: one_configuration(name, base / name, studies, uids, env)
                   for name, env in configurations.items()}
    finally:
        postgres_server.remove(cluster)
        shutil.rmtree(base, ignore_errors=True)
    one = results["workers-1"]["studies_per_hour"]
    summary = {
        "benchmark": "scale-out", "studies": STUDIES, "shape": list(SHAPE), "panel": PANEL,
        "machine": {"cpus": cores, "platform": platform.platform()},
        "configurations": results,
        "ratio_to_one_worker": {name: round(r["studies_per_hour"] / one, 3) for name, r in results.items()},
        "note": "ratios from one run on one machine: all processes share its cores (a second worker on the same "
                "2-core machine mostly competes for them; on separate hosts each brings its own)",
    }
    print(write_result("scale-out", summary))


if __name__ == "__main__":
    main()
