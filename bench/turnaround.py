"""``make bench``: turnaround of one ~256x256x160 phantom study, last C-STORE -> SEG stored.

Starts its own stack on free ports (a temporary ONCOFLOW_HOME), pushes the study with
storescu, and reads the job's stage timings back from the status route. In the same
run it times the pure ``nnUNetPredictor`` on the same volume (same model folder, same
settings as the worker), so the ratio turnaround / pure inference is measured on one
machine at one moment. Writes ``bench/results/turnaround-<UTC time>.json`` and
``bench/results/latest.json``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (160, 256, 256)
SEED = 424242


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def pure_predictor_seconds(voxels: np.ndarray, spacing_mm: tuple[float, float, float], model_dir: Path) -> float:
    """The same nnU-Net inference the worker runs, called directly: the denominator of the ratio."""
    from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

    expert = NnUNetExpert(model_dir)
    expert.load()
    if not expert.ready:
        raise SystemExit(f"nnU-Net model not ready: {expert.not_ready_reason}")
    expert.predict(voxels[:16], spacing_mm)  # warm-up, as the worker is warm
    started = time.perf_counter()
    expert.predict(voxels, spacing_mm)
    return time.perf_counter() - started


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="oncoflow-bench-"))
    stable_age_s = int(os.environ.get("ONCOFLOW_STABLE_AGE_S", "1"))
    os.environ.update(
        {
            "ONCOFLOW_HOME": str(home),
            "ONCOFLOW_HTTP_PORT": str(free_port()),
            "ONCOFLOW_DICOM_PORT": str(free_port()),
            "ONCOFLOW_WORKER_PORT": str(free_port()),
            "ONCOFLOW_STABLE_AGE_S": str(stable_age_s),
        }
    )
    from oncoflow.config import load_settings
    from oncoflow.phantom import make_phantom
    from oncoflow.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets
    from oncoflow.stack import SERVICES, http_get, service_pid, start_service, stop_service, wait_healthy

    settings = load_settings()
    started = time.perf_counter()
    phantom = make_phantom(SEED, shape=SHAPE)
    phantom_s = time.perf_counter() - started
    study = StudyInfo(patient_id="BENCH-1", study_instance_uid=generate_uid())
    write_datasets(series_datasets(phantom.volume, study, SeriesInfo(generate_uid())), home / "study")

    for name in SERVICES:
        start_service(settings, name)
    try:
        for name in SERVICES:
            wait_healthy(settings, name, 300)
        model_url = f"{settings.worker_http_url}/v2/models/{settings.segmentation_model}/ready"
        while http_get(model_url)[0] != 200:
            time.sleep(0.5)
        push_started = time.time()
        subprocess.run(
            ["storescu", "-aec", settings.aet, "+sd", "+r", "-nh", "127.0.0.1", str(settings.dicom_port),
             str(home / "study")],
            check=True, capture_output=True,
        )
        last_store = time.time()
        url = f"{settings.orthanc_url}/oncoflow/studies/{study.study_instance_uid}"
        while True:
            status, body = http_get(url)
            job = json.loads(body) if status == 200 else None
            if job and job["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        if job["state"] != "done":
            raise SystemExit(f"bench job failed: {job['error']}")
        seg_stored = job["updated_at"]
        worker_rss_gib = peak_rss_gib(service_pid(settings, "worker") or 0)
        orthanc_rss_gib = peak_rss_gib(service_pid(settings, "orthanc") or 0)
    finally:
        for name in reversed(SERVICES):
            stop_service(settings, name)

    model_dir = settings.nnunet_model_dir or settings.model_repository / settings.segmentation_model / "1" / "nnunet"
    pure_s = pure_predictor_seconds(phantom.volume.voxels, phantom.volume.spacing_mm, model_dir)
    timings = job["timings_s"]
    turnaround_s = seg_stored - last_store
    processing_s = sum(timings[k] for k in ("select_series", "volume_build", "inference", "seg_encode", "store"))
    result = {
        "benchmark": "turnaround",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "node": platform.node()},
        "study": {"shape": list(SHAPE), "spacing_mm": list(phantom.volume.spacing_mm), "images": SHAPE[0]},
        "stable_age_s": stable_age_s,
        "push_s": round(last_store - push_started, 3),
        "turnaround_s": round(turnaround_s, 3),
        "processing_s": round(processing_s, 3),
        "stages_s": timings,
        "pure_nnunet_predictor_s": round(pure_s, 3),
        "ratio_turnaround_to_pure_inference": round(turnaround_s / pure_s, 3),
        "ratio_processing_to_pure_inference": round(processing_s / pure_s, 3),
        "worker_peak_rss_gib": round(worker_rss_gib, 3),
        "orthanc_peak_rss_gib": round(orthanc_rss_gib, 3),
        "phantom_generation_s": round(phantom_s, 3),
        "goals": {"turnaround_s": 20.0, "ratio_turnaround_to_pure_inference": 1.5, "worker_peak_rss_gib": 2.0},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(result, indent=2)
    (RESULTS / f"turnaround-{stamp}.json").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
