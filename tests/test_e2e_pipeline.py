"""End to end on real processes: storescu -> Orthanc + plugin -> KServe worker (nnU-Net) -> DICOM-SEG.

Each test pushes its own phantom study (a planted tumour in real brain anatomy) and
reads the result back from Orthanc: the SEG object, its Dice against the phantom
truth, dciodvfy's verdict and the job status route.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from oncoflow_plugin.seg_writer import read_segmentation_mask

from oncoflow.phantom import make_phantom
from oncoflow.phantom_dicom import write_datasets
from oncoflow.stack import stop_service

from .conftest import Stack, unique_study, write_series

pytestmark = pytest.mark.e2e

PHANTOM_SHAPE = (40, 64, 64)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def push_phantom(stack: Stack, tmp_path: Path, name: str, seed: int, keep: slice = slice(None)):
    """Write and C-STORE a T1c phantom series; returns (study UID, datasets in slice order, phantom)."""
    phantom = make_phantom(seed, shape=PHANTOM_SHAPE)
    study = unique_study(name)
    datasets = write_series(tmp_path / name, phantom.volume, study)
    for path in sorted((tmp_path / name).iterdir())[keep.stop or len(datasets):]:
        path.unlink()  # push only the kept slices
    stack.push(tmp_path / name)
    return study.study_instance_uid, datasets, phantom


def stored_seg(stack: Stack, job: dict) -> pydicom.Dataset:
    series_id = job["outputs"]["seg_orthanc_series_id"]
    _, series = stack.get(f"/series/{series_id}")
    (instance,) = series["Instances"]
    return pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file")))


def test_push_gives_seg_that_matches_truth(stack: Stack, tmp_path: Path) -> None:
    study_uid, datasets, phantom = push_phantom(stack, tmp_path, "e2e-dice", seed=9101)
    job = stack.wait_job(study_uid)
    assert job["state"] == "done", job["error"]
    assert set(job["timings_s"]) >= {"select_series", "volume_build", "inference", "seg_encode", "store"}
    seg = stored_seg(stack, job)
    assert seg.SOPInstanceUID == job["outputs"]["seg_sop_instance_uids"][0]
    assert seg.StudyInstanceUID == study_uid
    mask = read_segmentation_mask(seg, [ds.SOPInstanceUID for ds in datasets])
    score = dice(mask, phantom.tumour_mask)
    assert score >= 0.75, f"Dice {score:.3f} against the phantom truth"

    if shutil.which("dciodvfy"):
        path = tmp_path / "seg.dcm"
        seg.save_as(path)
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True).stderr
        assert "Error" not in report, report


def test_status_route_for_unknown_study_is_404(stack: Stack) -> None:
    status, body = stack.get("/oncoflow/studies/1.2.3.4.5.6.7")
    assert status == 404 and "no OncoFlow job" in body["error"]


def test_resend_and_more_slices_never_duplicate(stack: Stack, tmp_path: Path) -> None:
    study_uid, datasets, _ = push_phantom(stack, tmp_path, "e2e-idem", seed=9102, keep=slice(0, 30))
    first = stack.wait_job(study_uid)
    assert first["state"] == "done" and first["outputs"]["input_images"] == 30

    stack.push(tmp_path / "e2e-idem")  # the same 30 files again
    again = stack.wait_event(study_uid, "input unchanged, SEG kept")
    assert again["job_id"] == first["job_id"] and again["state"] == "done"
    assert len(stack.seg_series(study_uid)) == 1

    # the 10 missing slices arrive: a new SEG replaces the earlier one
    write_datasets(datasets[30:], tmp_path / "rest")
    stack.push(tmp_path / "rest")
    updated = stack.wait_job(study_uid, min_job_id=first["job_id"] + 1)
    assert updated["state"] == "done" and updated["outputs"]["input_images"] == 40
    segs = stack.seg_series(study_uid)
    assert [s["ID"] for s in segs] == [updated["outputs"]["seg_orthanc_series_id"]]
    assert any("replaced earlier SEG" in e["message"] for e in updated["events"])
    assert [j["state"] for j in updated["history"]] == ["done", "done"]


def test_worker_killed_mid_job_finishes_exactly_once(stack: Stack, tmp_path: Path) -> None:
    worker_pid = int((stack.settings.run_dir / "worker.pid").read_text())
    os.kill(worker_pid, signal.SIGSTOP)  # freeze it so the job is surely in flight when it dies
    try:
        study_uid, _, _ = push_phantom(stack, tmp_path, "e2e-kill", seed=9103)
        stack.wait_job(study_uid, states=("running",), timeout_s=60)
    finally:
        stop_service(stack.settings, "worker", sig=signal.SIGKILL)
    stack.restart("worker")
    job = stack.wait_job(study_uid, timeout_s=180)
    assert job["state"] == "done", job["error"]
    assert job["attempts"] >= 2
    assert any(e["message"].startswith("retry") for e in job["events"]), job["events"]
    assert len(stack.seg_series(study_uid)) == 1


def test_orthanc_killed_mid_job_resumes_after_restart(stack: Stack, tmp_path: Path) -> None:
    worker_pid = int((stack.settings.run_dir / "worker.pid").read_text())
    os.kill(worker_pid, signal.SIGSTOP)
    try:
        study_uid, _, _ = push_phantom(stack, tmp_path, "e2e-orthanc", seed=9104)
        stack.wait_job(study_uid, states=("running",), timeout_s=60)
        stop_service(stack.settings, "orthanc", sig=signal.SIGKILL)
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    stack.restart("orthanc")
    job = stack.wait_job(study_uid, timeout_s=180)
    assert job["state"] == "done", job["error"]
    assert any("re-queued after restart" in e["message"] for e in job["events"]), job["events"]
    assert len(stack.seg_series(study_uid)) == 1


def test_study_received_before_a_crash_is_caught_up(stack: Stack, tmp_path: Path) -> None:
    # Orthanc dies right after the C-STORE, before the study became stable: no STABLE_STUDY
    # ever fires for it, and only the /changes catch-up at the next start can find it.
    study_uid, _, _ = push_phantom(stack, tmp_path, "e2e-catchup", seed=9105)
    stop_service(stack.settings, "orthanc", sig=signal.SIGKILL)
    stack.restart("orthanc")
    job = stack.wait_job(study_uid, timeout_s=180)
    assert job["state"] == "done", job["error"]
    assert len(stack.seg_series(study_uid)) == 1
