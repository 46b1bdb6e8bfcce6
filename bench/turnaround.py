"""``make bench``: turnaround of one ~256x256x160 phantom study, last C-STORE -> SEGs stored.

Two stacks run one after the other, each on free ports with a temporary ONCOFLOW_HOME:

1. ``single``: the panel is the one demo nnU-Net. The ratio turnaround / pure
   ``nnUNetPredictor`` (same model folder, same settings, timed in the same run) says
   what OncoFlow adds around the model.
2. ``panel``: the default panel (three demo nnU-Nets ready; SAM2 and MedGemma skipped
   without weights). After the job, each ready expert is called alone on the worker with
   the same volume, so the panel's wall time is compared with the slowest expert alone
   plus the fusion time, and with the sum of the experts' times. Then a longitudinal
   phantom's baseline and follow-up (same grid, head moved, lesion grown) are pushed: the
   follow-up's turnaround (last C-STORE to SR stored) is compared with the sum of its
   job's stages (select, volume build, panel, fusion, SEG encode, store, longitudinal).

Stage timings come from the status route. Writes ``bench/results/turnaround-<UTC
time>.json`` and ``bench/results/latest.json``.
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import write_result
from pydicom.uid import generate_uid

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

    expert = NnUNetExpert(model_dir, input_channels=["t1c"])  # the demo model's one channel
    expert.load()
    if not expert.ready:
        raise SystemExit(f"nnU-Net model not ready: {expert.not_ready_reason}")
    expert.predict(voxels[:16], spacing_mm)  # warm-up, as the worker is warm
    started = time.perf_counter()
    expert.predict(voxels, spacing_mm)
    return time.perf_counter() - started


def push_and_wait(settings: Any, study_dir: Path, study_uid: str) -> tuple[dict[str, Any], float, float]:
    """C-STORE a study; returns its finished job, the push start and the end of the last C-STORE (epoch s)."""
    from oncoflow.services.stack import http_get

    push_started = time.time()
    subprocess.run(
        ["storescu", "-aec", settings.aet, "+sd", "+r", "-nh", "127.0.0.1", str(settings.dicom_port), str(study_dir)],
        check=True, capture_output=True,
    )
    last_store = time.time()
    url = f"{settings.orthanc_url}/oncoflow/studies/{study_uid}"
    while True:
        status, body = http_get(url)
        job = json.loads(body) if status == 200 else None
        if job and job["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    if job["state"] != "done":
        raise SystemExit(f"bench job failed: {job['error']}")
    return job, push_started, last_store


@contextmanager
def bench_stack(home: Path, panel: str | None, auth: bool = False, **extra_env: str) -> Iterator[Any]:
    """Orthanc + worker on free ports with ``home`` and ``panel`` (None: the default panel), every
    expert settled; yields the settings and stops both afterwards.

    Login is off (the benchmarks time the pipeline) unless ``auth``: then the stack's own Keycloak runs too.
    ``extra_env``: more ``ONCOFLOW_*`` settings (e.g. the scale-out queue and pipeline workers).
    """
    os.environ.update({
        "ONCOFLOW_HOME": str(home),
        "ONCOFLOW_HTTP_PORT": str(free_port()),
        "ONCOFLOW_DICOM_PORT": str(free_port()),
        "ONCOFLOW_WORKER_PORT": str(free_port()),
        "ONCOFLOW_KEYCLOAK_PORT": str(free_port()),
        "ONCOFLOW_STABLE_AGE_S": os.environ.get("ONCOFLOW_STABLE_AGE_S", "1"),
        "ONCOFLOW_AUTH": "on" if auth else "off",
        **extra_env,
    })
    if panel is None:
        os.environ.pop("ONCOFLOW_PANEL", None)
    else:
        os.environ["ONCOFLOW_PANEL"] = panel
    from oncoflow.core.config import load_settings
    from oncoflow.services.stack import start_stack, stop_stack, wait_model_settled

    settings = load_settings()
    try:
        start_stack(settings, 300)
        for name in settings.panel:
            wait_model_settled(settings, name, 300)
        yield settings
    finally:
        stop_stack(settings)


def run_stack(home: Path, panel: str | None, study_dir: Path, study_uid: str,
              visits: list[tuple[Path, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Start a stack with ``panel`` (None: the default), push the study, return the job and measurements.

    ``visits``: a baseline and its follow-up (directory, StudyInstanceUID), pushed after the study;
    the follow-up's turnaround includes registration, comparison and the SR.
    """
    from oncoflow.services.stack import service_pid

    with bench_stack(home, panel) as settings:
        job, push_started, last_store = push_and_wait(settings, study_dir, study_uid)
        follow_up: dict[str, Any] = {}
        for visit_dir, visit_uid in visits:
            visit_job, _, visit_last_store = push_and_wait(settings, visit_dir, visit_uid)
            stages = {k: v for k, v in visit_job["timings_s"].items() if k not in ("queue_wait", "model_inference")}
            turnaround_s = visit_job["updated_at"] - visit_last_store
            follow_up = {
                "turnaround_s": round(turnaround_s, 3),
                "stages_s": visit_job["timings_s"],
                "sum_of_stages_s": round(sum(stages.values()), 3),
                "ratio_turnaround_to_sum_of_stages": round(turnaround_s / sum(stages.values()), 3),
                "comparison": (visit_job["outputs"].get("longitudinal") or {}).get("comparison"),
            }
        alone_s = experts_alone_seconds(settings, study_dir, job["outputs"]["panel"]["ran"]) if panel is None else {}
        worker_rss_gib = peak_rss_gib(service_pid(settings, "worker") or 0)
        orthanc_rss_gib = peak_rss_gib(service_pid(settings, "orthanc") or 0)
    timings = job["timings_s"]
    return {
        "panel": list(settings.panel),
        "push_s": round(last_store - push_started, 3),
        "turnaround_s": round(job["updated_at"] - last_store, 3),
        "processing_s": round(sum(timings[k] for k in PROCESSING_STAGES), 3),
        "stages_s": timings,
        "experts": {n: {k: e.get(k) for k in ("status", "reason", "runtime_s", "dice_vs_fused", "volume_cm3")}
                    for n, e in job["outputs"]["experts"].items()},
        "fusion": job["outputs"]["fusion"],
        "experts_alone_s": alone_s,
        "follow_up": follow_up,
        "worker_peak_rss_gib": round(worker_rss_gib, 3),
        "orthanc_peak_rss_gib": round(orthanc_rss_gib, 3),
    }


def experts_alone_seconds(settings: Any, study_dir: Path, experts: list[str]) -> dict[str, float]:
    """Each expert called alone on the worker with the study's volume: model seconds, as the worker reports them."""
    import pydicom

    from oncoflow.dicom.volume_builder import build_volume
    from oncoflow.pipeline.worker_client import WorkerClient

    stack = build_volume([pydicom.dcmread(p) for p in sorted(study_dir.iterdir())], settings.max_voxels)
    client = WorkerClient(settings.worker_url, 600)
    return {name: round(client.segment(name, stack.volume).inference_s, 3) for name in experts}


PROCESSING_STAGES = ("select_series", "volume_build", "inference", "seg_encode", "store")


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-"))
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets
    from oncoflow.phantoms.tumour_phantom import make_phantom

    started = time.perf_counter()
    phantom = make_phantom(SEED, shape=SHAPE)
    phantom_s = time.perf_counter() - started
    from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case, study_info_kwargs

    case = make_longitudinal_case(SEED, shape=SHAPE, categories=["progression"])
    visits = []
    for index, visit in enumerate(case.time_points):
        info = StudyInfo(**study_info_kwargs(case, index))
        datasets = series_datasets(visit.phantom.volume, info, SeriesInfo(generate_uid()))
        write_datasets(datasets, base / "visits" / str(index))
        visits.append((base / "visits" / str(index), str(datasets[0].StudyInstanceUID)))
    runs: dict[str, dict[str, Any]] = {}
    for label, panel in (("single", "nnunet_demo"), ("panel", None)):
        study = StudyInfo(patient_id=f"BENCH-{label}", study_instance_uid=generate_uid())
        study_dir = base / label / "study"
        write_datasets(series_datasets(phantom.volume, study, SeriesInfo(generate_uid())), study_dir)
        runs[label] = run_stack(base / label, panel, study_dir, study.study_instance_uid,
                                visits if label == "panel" else [])

    from oncoflow.core.config import load_settings

    model_dir = load_settings().model_repository / "nnunet_demo" / "1" / "nnunet"
    pure_s = pure_predictor_seconds(phantom.volume.voxels, phantom.volume.spacing_mm, model_dir)
    single, panel = runs["single"], runs["panel"]
    panel_wall_s = panel["stages_s"]["inference"]
    fusion_s = panel["fusion"]["runtime_s"]
    in_panel_s = {n: e["runtime_s"] for n, e in panel["experts"].items() if e["status"] == "ran"}
    slowest_alone_s = max(panel["experts_alone_s"].values())
    result = {
        "benchmark": "turnaround",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "node": platform.node()},
        "study": {"shape": list(SHAPE), "spacing_mm": list(phantom.volume.spacing_mm), "images": SHAPE[0]},
        "phantom_generation_s": round(phantom_s, 3),
        "single": {
            **single,
            "pure_nnunet_predictor_s": round(pure_s, 3),
            "ratio_turnaround_to_pure_inference": round(single["turnaround_s"] / pure_s, 3),
            "ratio_processing_to_pure_inference": round(single["processing_s"] / pure_s, 3),
        },
        "panel": {
            **panel,
            "panel_wall_s": panel_wall_s,
            "fusion_s": fusion_s,
            "sum_of_expert_times_in_panel_s": round(sum(in_panel_s.values()), 3),
            "ratio_panel_wall_to_sum_of_experts": round(panel_wall_s / sum(in_panel_s.values()), 3),
            "slowest_expert_alone_s": slowest_alone_s,
            "ratio_panel_wall_to_slowest_alone_plus_fusion": round(panel_wall_s / (slowest_alone_s + fusion_s), 3),
            "ratio_turnaround_to_single_turnaround": round(panel["turnaround_s"] / single["turnaround_s"], 3),
        },
        "goals": {
            "single.turnaround_s": 20.0,
            "single.ratio_turnaround_to_pure_inference": 1.5,
            "single.worker_peak_rss_gib": 2.0,
            "panel.ratio_panel_wall_to_slowest_alone_plus_fusion": 1.3,
            "panel.follow_up.ratio_turnaround_to_sum_of_stages": 1.3,
        },
    }
    print(write_result("turnaround", result, latest="latest.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
