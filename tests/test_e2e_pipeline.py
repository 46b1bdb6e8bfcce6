"""End to end on real processes: storescu -> Orthanc + plugin -> KServe worker (the panel) -> DICOM-SEGs.

Each test pushes its own phantom study (a planted tumour in a real head, scalp, skull
and eyes included, as scanners send it) and reads the result back from Orthanc: the
ensemble, per-expert and brain SEG objects, the ensemble's Dice against the phantom
truth, the brain mask's Dice against the anatomy's brain, dciodvfy's verdict, the job
status route and the model-stats routes. The default panel runs: deepbet extracts the
brain, three demo nnU-Nets (trained on brains alone) are ready, SAM2 and MedGemma
without weights (skipped, with the reason).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from oncoflow.phantoms.phantom_dicom import write_datasets
from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.stack import stop_service

from .conftest import Stack, required_tool, unique_study, write_series
from .seg_oracle import dice, majority, mean_pairwise_dice, segment_mask

pytestmark = pytest.mark.e2e

PHANTOM_SHAPE = (40, 64, 64)


def push_phantom(stack: Stack, tmp_path: Path, name: str, seed: int, keep: slice = slice(None)):
    """Write and C-STORE a full-head T1c phantom series; returns (study UID, datasets in slice order, phantom)."""
    phantom = make_phantom(seed, shape=PHANTOM_SHAPE)
    study = unique_study(name)
    datasets = write_series(tmp_path / name, phantom.volume, study)
    for path in sorted((tmp_path / name).iterdir())[keep.stop or len(datasets):]:
        path.unlink()  # push only the kept slices
    stack.push(tmp_path / name)
    return study.study_instance_uid, datasets, phantom


DEMO_EXPERTS = ["nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2"]


def stored_segs(stack: Stack, study_uid: str) -> dict[str, pydicom.Dataset]:
    """The study's SEG objects by SOP Instance UID."""
    segs = {}
    for series in stack.seg_series(study_uid):
        for instance in series["Instances"]:
            ds = pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file")))
            segs[str(ds.SOPInstanceUID)] = ds
    return segs


def algorithm(seg: pydicom.Dataset) -> pydicom.Dataset:
    return seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]


def test_push_gives_ensemble_and_expert_segs(stack: Stack, tmp_path: Path) -> None:
    study_uid, datasets, phantom = push_phantom(stack, tmp_path, "e2e-dice", seed=9101)
    job = stack.wait_job(study_uid)
    assert job["state"] == "done", job["error"]
    assert set(job["timings_s"]) >= {"select_series", "volume_build", "brain_extraction", "inference", "fusion",
                                     "seg_encode", "store"}
    outputs = job["outputs"]
    assert outputs["panel"]["ran"] == DEMO_EXPERTS
    assert set(outputs["panel"]["skipped"]) == {"sam2", "medgemma"}
    assert "sam2.1_hiera_tiny.pt" in outputs["panel"]["skipped"]["sam2"]  # the missing weights, named
    assert "not ready" in outputs["panel"]["skipped"]["medgemma"]

    segs = stored_segs(stack, study_uid)
    assert set(segs) == set(outputs["seg_sop_instance_uids"]) and len(segs) == 1 + len(DEMO_EXPERTS) + 1
    sources = [ds.SOPInstanceUID for ds in datasets]

    # the brain the tumour was looked for in: its own SEG, SCT 12738006 "Brain", checked against the anatomy
    brain_extraction = outputs["brain_extraction"]
    brain_seg = segs[brain_extraction["seg_sop_instance_uid"]]
    segment = brain_seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "12738006"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert brain_seg.SeriesDescription == "OncoFlow SEG brain (deepbet)" and brain_seg.SeriesNumber == 9050
    brain = segment_mask(brain_seg, sources)
    brain_score = dice(brain, phantom.brain_mask)
    assert brain_score >= 0.85, f"brain Dice {brain_score:.3f} against the anatomy's brain"
    assert brain_extraction["volume_cm3"] == pytest.approx(
        brain.sum() * float(np.prod(phantom.volume.spacing_mm)) / 1000, rel=1e-3)
    ensemble = segs[outputs["ensemble_seg_sop_instance_uid"]]
    assert ensemble.StudyInstanceUID == study_uid
    assert algorithm(ensemble).AlgorithmName == "OncoFlow panel (majority)"
    parameters = str(algorithm(ensemble).AlgorithmParameters)
    assert "nnunet_demo_2d" in parameters and "sam2" in parameters and "medgemma" in parameters
    fused = segment_mask(ensemble, sources)
    score = dice(fused, phantom.tumour_mask)
    assert score >= 0.75, f"ensemble Dice {score:.3f} against the phantom truth"
    assert not (fused.astype(bool) & ~brain.astype(bool)).any(), "the tumour SEG reaches outside the brain SEG"

    # Every fusion number is recomputed from the SEGs read back (tests/seg_oracle.py: pydicom and numpy only)
    expert_masks = {}
    voxel_cm3 = float(np.prod(phantom.volume.spacing_mm)) / 1000
    for name in DEMO_EXPERTS:
        expert = outputs["experts"][name]
        seg = segs[expert["seg_sop_instance_uid"]]
        assert algorithm(seg).AlgorithmName == name and seg.SeriesDescription == f"OncoFlow SEG expert {name}"
        mask = expert_masks[name] = segment_mask(seg, sources)
        assert expert["dice_vs_fused"] == pytest.approx(dice(mask, fused), abs=1e-3)
        assert expert["volume_cm3"] == pytest.approx(mask.sum() * voxel_cm3, rel=1e-4, abs=1e-3)
        assert expert["runtime_s"] > 0 and expert["status"] == "ran" and expert["skull_stripped_input"] is True
    np.testing.assert_array_equal(fused, majority(list(expert_masks.values())))  # the vote, voxel by voxel

    fusion = outputs["fusion"]
    agreement = mean_pairwise_dice(list(expert_masks.values()))
    assert fusion["strategy"] == "majority" and fusion["agreement_score"] == pytest.approx(agreement, abs=1e-3)
    # the flag from the README's bands (>= 0.90 high, 0.75-0.89 review, < 0.75 low) on the oracle's agreement
    assert fusion["flag"] == ("high" if agreement >= 0.9 else "review" if agreement >= 0.75 else "low")
    assert fusion["volume_cm3"] == pytest.approx(fused.sum() * voxel_cm3, rel=1e-4, abs=1e-3)

    dciodvfy = required_tool("dciodvfy")
    for uid, seg in segs.items():
        path = tmp_path / f"{uid}.dcm"
        seg.save_as(path)
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True).stderr
        assert "Error" not in report, report

    status, stats = stack.get("/oncoflow/model-stats")
    assert status == 200
    by_expert = {row["expert"]: row for row in stats["experts"]}
    assert set(by_expert) >= set(DEMO_EXPERTS) and all(by_expert[n]["studies"] >= 1 for n in DEMO_EXPERTS)
    png = stack.get_bytes("/oncoflow/model-stats.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_status_route_for_unknown_study_is_404(stack: Stack) -> None:
    status, body = stack.get("/oncoflow/studies/1.2.3.4.5.6.7")
    assert status == 404 and "no OncoFlow job" in body["error"]


def test_resend_and_more_slices_never_duplicate(stack: Stack, tmp_path: Path) -> None:
    study_uid, datasets, _ = push_phantom(stack, tmp_path, "e2e-idem", seed=9102, keep=slice(0, 30))
    first = stack.wait_job(study_uid)
    assert first["state"] == "done" and first["outputs"]["input_images"] == 30

    stack.push(tmp_path / "e2e-idem")  # the same 30 files again
    again = stack.wait_event(study_uid, "input unchanged, SEGs kept")
    assert again["job_id"] == first["job_id"] and again["state"] == "done"
    first_segs = {s["ID"] for s in stack.seg_series(study_uid)}
    assert len(first_segs) == len(first["outputs"]["seg_sop_instance_uids"])

    # the 10 missing slices arrive: a new SEG replaces the earlier one
    write_datasets(datasets[30:], tmp_path / "rest")
    stack.push(tmp_path / "rest")
    updated = stack.wait_job(study_uid, min_job_id=first["job_id"] + 1)
    assert updated["state"] == "done" and updated["outputs"]["input_images"] == 40
    segs = stack.seg_series(study_uid)
    assert len(segs) == len(updated["outputs"]["seg_sop_instance_uids"]) and not first_segs & {s["ID"] for s in segs}
    assert updated["outputs"]["seg_orthanc_series_id"] in {s["ID"] for s in segs}
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
    assert len(stack.seg_series(study_uid)) == len(job["outputs"]["seg_sop_instance_uids"])


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
    assert len(stack.seg_series(study_uid)) == len(job["outputs"]["seg_sop_instance_uids"])


def test_study_received_before_a_crash_is_caught_up(stack: Stack, tmp_path: Path) -> None:
    # Orthanc dies right after the C-STORE, before the study became stable: no STABLE_STUDY
    # ever fires for it, and only the /changes catch-up at the next start can find it.
    study_uid, _, _ = push_phantom(stack, tmp_path, "e2e-catchup", seed=9105)
    stop_service(stack.settings, "orthanc", sig=signal.SIGKILL)
    stack.restart("orthanc")
    job = stack.wait_job(study_uid, timeout_s=180)
    assert job["state"] == "done", job["error"]
    assert len(stack.seg_series(study_uid)) == len(job["outputs"]["seg_sop_instance_uids"])
