"""End to end with a changed panel: SAM2 and MedGemma (random weights) in, one nnU-Net's weights taken away.

The stack runs from a copy of the model repository in which SAM2 works on 64-pixel
frames (CPU time; real weights want the config's 1024), with ``ONCOFLOW_MODEL_WEIGHTS`` pointing SAM2 at a
checkpoint built by the test (``tests/sam2_tiny.py``: the shipped config with random
weights), MedGemma at a tiny random Gemma 3 (``tests/medgemma_tiny.py``) and
``nnunet_demo_2d`` at a folder that does not exist. Fusion is STAPLE. These prove the
code paths (prompting SAM2 from nnU-Net's mask, MedGemma's boxes and sentence over the
wire, the degraded panel reported in the outputs, refinement by clicks stored as SEG
versions), not accuracy: random models outline nothing in particular.
"""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from oncoflow.core.config import REPO_ROOT
from oncoflow.dicom.seg_writer import read_segmentation_mask
from oncoflow.measure.mask_metrics import volume_cm3
from oncoflow.phantoms.tumour_phantom import make_phantom

from .conftest import Stack, running_stack, unique_study, write_series
from .medgemma_tiny import build_tiny_medgemma
from .sam2_tiny import build_random_sam2_checkpoint

pytestmark = pytest.mark.e2e

PHANTOM_SHAPE = (24, 64, 64)
PANEL = "nnunet_demo,nnunet_demo_2d,nnunet_demo_3d_seed2,sam2,medgemma"


@pytest.fixture(scope="module")
def panel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("panel")
    repository = base / "model_repository"
    shutil.copytree(REPO_ROOT / "inference" / "model_repository", repository)
    config = repository / "sam2" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "48" } }', 'string_value: "24" } }\n'
                      'parameters { key: "image_size" value: { string_value: "64" } }'))
    checkpoint = build_random_sam2_checkpoint(base / "sam2-random.pt")
    medgemma = build_tiny_medgemma(base / "medgemma-tiny")
    with running_stack(
        base / "home",
        ONCOFLOW_MODEL_REPOSITORY=str(repository),
        ONCOFLOW_PANEL=PANEL,
        ONCOFLOW_FUSION="staple",
        ONCOFLOW_MODEL_WEIGHTS=f"nnunet_demo_2d={base / 'no-such-model'},sam2={checkpoint},medgemma={medgemma}",
        ONCOFLOW_WORKER_TIMEOUT_S="900",
    ) as stack:
        yield stack


def post(stack: Stack, path: str, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(f"{stack.settings.orthanc_url}{path}", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def pushed(panel_stack: Stack, tmp_path_factory: pytest.TempPathFactory):
    phantom = make_phantom(9201, shape=PHANTOM_SHAPE)
    study = unique_study("e2e-panel")
    directory = tmp_path_factory.mktemp("e2e-panel")
    datasets = write_series(directory, phantom.volume, study)
    panel_stack.push(directory)
    job = panel_stack.wait_job(study.study_instance_uid, timeout_s=600)
    return study.study_instance_uid, datasets, phantom, job


def test_degraded_panel_is_reported_and_sam2_is_prompted(panel_stack: Stack, pushed) -> None:
    study_uid, datasets, phantom, job = pushed
    assert job["state"] == "done", job["error"]
    outputs = job["outputs"]
    assert outputs["panel"]["ran"] == ["nnunet_demo", "nnunet_demo_3d_seed2", "sam2", "medgemma"]
    reason = outputs["panel"]["skipped"]["nnunet_demo_2d"]
    assert "no-such-model" in reason and "does not exist" in reason
    sam2 = outputs["experts"]["sam2"]
    assert sam2["status"] == "ran" and sam2["mask_from"] == "sam2 prompted by nnunet_demo boxes"
    medgemma = outputs["experts"]["medgemma"]
    assert medgemma["role"] == "localiser" and medgemma["status"] == "ran"
    assert medgemma["mask_from"] in ("sam2 prompted by medgemma boxes", "no boxes: no tumour seen")
    assert isinstance(medgemma["findings"], str)
    assert outputs["fusion"]["strategy"] == "staple"
    # SAM2 outlines nnunet_demo's boxes: derived, stored and measured but not voting (docs/uncertainty.md)
    assert outputs["derived_experts"] == {"sam2": "nnunet_demo"} and sam2["derived_from"] == "nnunet_demo"
    assert outputs["voting_experts"] == ["nnunet_demo", "nnunet_demo_3d_seed2", "medgemma"]
    assert set(outputs["leave_one_out_volumes_cm3"]) == set(outputs["voting_experts"])
    assert all(outputs["experts"][n]["staple_sensitivity"] is not None for n in outputs["voting_experts"])
    assert any("expert nnunet_demo_2d skipped" in e["message"] for e in job["events"])

    sources = [ds.SOPInstanceUID for ds in datasets]
    descriptions = {}
    for series in panel_stack.seg_series(study_uid):
        (instance,) = series["Instances"]
        seg = pydicom.dcmread(io.BytesIO(panel_stack.get_bytes(f"/instances/{instance}/file")))
        descriptions[seg.SeriesDescription] = seg
    assert set(descriptions) == {"OncoFlow SEG ensemble (staple, 4 experts)", "OncoFlow SEG expert nnunet_demo",
                                 "OncoFlow SEG expert nnunet_demo_3d_seed2", "OncoFlow SEG expert sam2",
                                 "OncoFlow SEG expert medgemma", "OncoFlow SEG brain (deepbet)"}
    brain = read_segmentation_mask(descriptions["OncoFlow SEG brain (deepbet)"], sources)
    assert phantom.brain_mask is not None
    overlap = 2.0 * float((brain.astype(bool) & phantom.brain_mask.astype(bool)).sum()) / float(
        brain.astype(bool).sum() + phantom.brain_mask.astype(bool).sum())
    assert overlap > 0.85, f"brain SEG Dice {overlap:.3f} against the anatomy's brain"
    ensemble = descriptions["OncoFlow SEG ensemble (staple, 4 experts)"]
    parameters = str(ensemble.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters)
    assert "nnunet_demo_2d: not ready" in parameters
    sam2_mask = read_segmentation_mask(descriptions["OncoFlow SEG expert sam2"], sources)
    voxel_mm3 = float(np.prod(phantom.volume.spacing_mm))
    assert sam2["volume_cm3"] == pytest.approx(volume_cm3(sam2_mask, voxel_mm3), rel=1e-4, abs=1e-3)


def test_refine_by_clicks_stores_seg_versions(panel_stack: Stack, pushed) -> None:
    study_uid, datasets, phantom, job = pushed
    assert job["state"] == "done", job["error"]
    volume = phantom.volume
    centre = np.argwhere(phantom.tumour_mask).mean(axis=0).round()
    centre_mm = (volume.affine_lps() @ np.array([*centre, 1.0]))[:3].tolist()
    status, first = post(panel_stack, f"/oncoflow/studies/{study_uid}/refine",
                         {"points": [{"position_mm": centre_mm, "positive": True}]})
    assert status == 200, first
    assert first["version"] == 1 and first["model"]["name"] == "sam2"
    assert first["prompts"]["points_voxel"] == [[*map(int, centre), 1]]
    assert len(first["prompts"]["boxes_voxel"]) >= 1  # include_current: the ensemble's boxes joined the click

    status, second = post(panel_stack, f"/oncoflow/studies/{study_uid}/refine",
                          {"points": [{"position_mm": centre_mm, "positive": True}], "include_current": False})
    assert status == 200 and second["version"] == 2 and second["prompts"]["boxes_voxel"] == []

    refined = {}
    for series in panel_stack.seg_series(study_uid):
        (instance,) = series["Instances"]
        seg = pydicom.dcmread(io.BytesIO(panel_stack.get_bytes(f"/instances/{instance}/file")))
        refined[str(seg.SOPInstanceUID)] = seg
    for answer in (first, second):
        seg = refined[answer["sop_instance_uid"]]
        assert seg.SeriesDescription == f"OncoFlow SEG refined v{answer['version']} (sam2)"
        assert seg.SeriesNumber == 9100 + answer["version"]
        assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
        mask = read_segmentation_mask(seg, [ds.SOPInstanceUID for ds in datasets])
        # the plugin's spacing comes from DICOM's decimal strings: equal to the phantom's to ~1e-6
        assert answer["volume_cm3"] == pytest.approx(volume_cm3(mask, volume.voxel_volume_mm3), rel=1e-4, abs=1e-3)
    status, body = panel_stack.get(f"/oncoflow/studies/{study_uid}")
    assert [r["version"] for r in body["refinements"]] == [1, 2]


def test_refine_rejects_bad_requests(panel_stack: Stack, pushed) -> None:
    study_uid = pushed[0]
    far = [1e4, 1e4, 1e4]
    status, body = post(panel_stack, f"/oncoflow/studies/{study_uid}/refine", {"points": [{"position_mm": far}]})
    assert status == 400 and "lies outside series" in body["error"]
    status, body = post(panel_stack, f"/oncoflow/studies/{study_uid}/refine", {"points": []})
    assert status == 400 and "points" in body["error"]
    status, body = post(panel_stack, f"/oncoflow/studies/{study_uid}/refine", {"points": [{"position_mm": [1, 2]}]})
    assert status == 400 and "three finite numbers" in body["error"]
    status, body = post(panel_stack, "/oncoflow/studies/1.2.3.999/refine", {"points": [{"position_mm": [0, 0, 0]}]})
    assert status == 404


def test_panel_route_reports_each_expert(panel_stack: Stack) -> None:
    status, body = panel_stack.get("/oncoflow/panel")
    assert status == 200 and body["fusion"] == "staple"
    experts = {e["name"]: e for e in body["experts"]}
    assert experts["sam2"]["state"] == "READY" and experts["sam2"]["role"] == "promptable"
    assert experts["nnunet_demo"]["role"] == "segmenter" and experts["medgemma"]["role"] == "localiser"
    assert experts["nnunet_demo_2d"]["state"] == "UNAVAILABLE" and "does not exist" in experts["nnunet_demo_2d"][
        "reason"]


def test_refine_without_a_ready_sam2_says_why(stack: Stack, tmp_path: Path) -> None:
    phantom = make_phantom(9202, shape=(40, 64, 64))  # a whole head: brain extraction refuses a 16-slice slab
    study = unique_study("e2e-refine-503")
    write_series(tmp_path / "s", phantom.volume, study)
    stack.push(tmp_path / "s")
    assert stack.wait_job(study.study_instance_uid)["state"] == "done"  # the worker has settled every model
    status, body = post(stack, f"/oncoflow/studies/{study.study_instance_uid}/refine",
                        {"points": [{"position_mm": [0.0, 0.0, 0.0]}]})
    assert status == 503 and "sam2.1_hiera_tiny.pt" in body["error"]
