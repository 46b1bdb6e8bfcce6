"""The worker driven only through NVIDIA's tritonclient, as the plugin (or any Triton client) drives it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from oncoflow.config import REPO_ROOT
from oncoflow.phantom import make_phantom

from .conftest import free_port

DEMO = REPO_ROOT / "inference" / "model_repository" / "nnunet_demo"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[triton_http.InferenceServerClient]:
    repository = tmp_path_factory.mktemp("repository")
    shutil.copytree(DEMO, repository / "nnunet_demo", symlinks=True)
    # the same expert with its weights taken away: must be served as not ready, with the reason
    (repository / "no_weights" / "1").mkdir(parents=True)
    config = (DEMO / "config.pbtxt").read_text().replace('name: "nnunet_demo"', 'name: "no_weights"')
    (repository / "no_weights" / "config.pbtxt").write_text(config)
    port = free_port()
    env = {**os.environ, "ONCOFLOW_WORKER_PORT": str(port), "ONCOFLOW_MODEL_REPOSITORY": str(repository),
           "ONCOFLOW_HOME": str(tmp_path_factory.mktemp("home"))}
    log = open(repository / "worker.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen([sys.executable, "-m", "oncoflow_inference"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.is_model_ready("nnunet_demo"):
                    break
            except Exception:
                pass
            assert process.poll() is None, (repository / "worker.log").read_text()
            time.sleep(0.3)
        yield client
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_health_and_metadata(worker: triton_http.InferenceServerClient) -> None:
    assert worker.is_server_live() and worker.is_server_ready()
    metadata = worker.get_model_metadata("nnunet_demo")
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [("IMAGE", "FP32"), ("SPACING_MM", "FP32")]
    assert {o["name"] for o in metadata["outputs"]} == {"MASK", "PROBABILITY"}


def test_missing_weights_are_reported_not_faked(worker: triton_http.InferenceServerClient) -> None:
    assert worker.is_model_ready("nnunet_demo")
    assert not worker.is_model_ready("no_weights")
    index = {m["name"]: m for m in worker.get_model_repository_index()}
    assert index["no_weights"]["state"] == "UNAVAILABLE"
    assert "no_weights/1/nnunet does not exist" in index["no_weights"]["reason"]
    image = triton_http.InferInput("IMAGE", [4, 8, 8], "FP32")
    image.set_data_from_numpy(np.zeros((4, 8, 8), np.float32), binary_data=True)
    spacing = triton_http.InferInput("SPACING_MM", [3], "FP32")
    spacing.set_data_from_numpy(np.ones(3, np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match="not ready"):
        worker.infer("no_weights", [image, spacing])


def _inputs(volume: np.ndarray, spacing_mm: list[float]) -> list[triton_http.InferInput]:
    image = triton_http.InferInput("IMAGE", list(volume.shape), "FP32")
    image.set_data_from_numpy(volume, binary_data=True)
    spacing = triton_http.InferInput("SPACING_MM", [len(spacing_mm)], "FP32")
    spacing.set_data_from_numpy(np.asarray(spacing_mm, np.float32), binary_data=True)
    return [image, spacing]


def test_binary_infer_returns_mask_and_probability(worker: triton_http.InferenceServerClient) -> None:
    phantom = make_phantom(777, shape=(40, 64, 64))
    outputs = [triton_http.InferRequestedOutput("MASK", binary_data=True),
               triton_http.InferRequestedOutput("PROBABILITY", binary_data=True)]
    result = worker.infer("nnunet_demo", _inputs(phantom.volume.voxels, list(phantom.volume.spacing_mm)),
                          outputs=outputs)
    mask, probability = result.as_numpy("MASK"), result.as_numpy("PROBABILITY")
    assert mask.shape == phantom.tumour_mask.shape and mask.dtype == np.uint8
    assert probability.dtype == np.float16 and probability.shape == mask.shape
    assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, (probability.astype(np.float32) > 0.5).astype(np.uint8))
    truth = phantom.tumour_mask.astype(bool)
    dice = 2 * (truth & (mask > 0)).sum() / (truth.sum() + mask.sum())
    assert dice > 0.6, dice
    assert result.get_response()["parameters"]["inference_s"] > 0


@pytest.mark.parametrize(
    ("volume", "spacing", "message"),
    [
        (np.zeros((8, 8), np.float32), [1.0, 1.0, 1.0], "IMAGE must be 3-D"),
        (np.zeros((4, 8, 8), np.float32), [1.0, -1.0, 1.0], "SPACING_MM must be 3 positive"),
        (np.full((4, 8, 8), np.nan, np.float32), [1.0, 1.0, 1.0], "NaN"),
    ],
)
def test_bad_requests_are_400_and_server_lives_on(
    worker: triton_http.InferenceServerClient, volume: np.ndarray, spacing: list[float], message: str
) -> None:
    with pytest.raises(InferenceServerException, match=message) as info:
        worker.infer("nnunet_demo", _inputs(volume, spacing))
    assert info.value.status() == "400"
    assert worker.is_server_live() and worker.is_model_ready("nnunet_demo")
