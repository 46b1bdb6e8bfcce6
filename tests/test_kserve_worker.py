"""The worker driven only through NVIDIA's tritonclient, as the plugin (or any Triton client) drives it.

The served nnU-Net is built here without training: hand-written plans for a tiny
3d_fullres U-Net, the network instantiated as nnU-Net's trainer does, saved in
nnU-Net's checkpoint format. Its output layer is set to call every voxel tumour,
so the mask is exactly nnU-Net's nonzero crop box: a deterministic check that the
mask comes back on the input grid, axes in order, after crop and resampling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from oncoflow.core.config import REPO_ROOT

from .conftest import free_port

DEMO = REPO_ROOT / "inference" / "model_repository" / "nnunet_demo"
SPACING_MM = (3.0, 2.0, 2.0)  # the tiny plans' spacing: (slice, row, column) mm
BOX = (slice(3, 17), slice(5, 25), slice(12, 36))  # nonzero region of the test volume (20, 40, 40)


BRATS_2021_CHANNELS = ("T1", "T1ce", "T2", "Flair")  # nnU-Net's Dataset137 channel_names


def write_tiny_nnunet(folder: Path, labels: dict[str, int] | None = None, channels: int = 1,
                      tumour_bias: bool = True, channel_names: tuple[str, ...] | None = None) -> None:
    """An nnU-Net v2 trained-model folder (dataset.json, plans.json, fold_0/checkpoint_final.pth), untrained.

    ``tumour_bias``: zero the output layer's weights and bias it to the last label,
    so every voxel of nnU-Net's crop box is predicted as that label.
    """
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    labels = labels or {"background": 0, "tumour": 1}
    names = channel_names or (("MRI",) if channels == 1 else BRATS_2021_CHANNELS[:channels])
    dataset = {"channel_names": {str(i): name for i, name in enumerate(names)}, "labels": labels,
               "numTraining": 1, "file_ending": ".nii.gz", "name": "tiny test model"}
    conv = [[3, 3, 3], [3, 3, 3]]
    plans = {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(SPACING_MM), "original_median_shape_after_transp": [20, 40, 40],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(i): {"max": 1000.0, "mean": 300.0, "median": 300.0, "min": 0.0, "percentile_00_5": 0.0,
                     "percentile_99_5": 900.0, "std": 100.0} for i in range(channels)},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [16, 32, 32], "median_image_size_in_voxels": [20.0, 40.0, 40.0],
            "spacing": list(SPACING_MM), "normalization_schemes": ["ZScoreNormalization"] * channels,
            "use_mask_for_norm": [False] * channels,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 2, "features_per_stage": [8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": conv, "strides": [[1, 1, 1], [2, 2, 2]], "n_conv_per_stage": [2, 2],
                    "n_conv_per_stage_decoder": [2], "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        }},
    }
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration("3d_fullres")
    heads = plans_manager.get_label_manager(dataset).num_segmentation_heads
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(plans_manager, configuration, channels, heads,
                                                       enable_deep_supervision=False)
    if tumour_bias:
        head = network.decoder.seg_layers[-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.arange(heads, dtype=torch.float32) * 4.0)
    (folder / "fold_0").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps(plans))
    torch.save({"network_weights": network.state_dict(),
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset,
                              "device": "cpu"},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
               folder / "fold_0" / "checkpoint_final.pth")


def _volume() -> np.ndarray:
    """(20, 40, 40) float32: zero outside ``BOX``, MR-like intensities inside."""
    volume = np.zeros((20, 40, 40), np.float32)
    rng = np.random.default_rng(0)
    volume[BOX] = rng.normal(300.0, 50.0, volume[BOX].shape).astype(np.float32) + 100.0
    return volume


def _add_model(repository: Path, name: str, folder: Path | None = None) -> None:
    """A copy of the demo config.pbtxt under ``name``; its nnU-Net folder is ``folder`` (or missing)."""
    (repository / name / "1").mkdir(parents=True)
    config = (DEMO / "config.pbtxt").read_text().replace('name: "nnunet_demo"', f'name: "{name}"')
    (repository / name / "config.pbtxt").write_text(config)
    if folder is not None:
        (repository / name / "1" / "nnunet").symlink_to(folder, target_is_directory=True)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "nnunet"
    write_tiny_nnunet(folder)
    return folder


@pytest.fixture(scope="module")
def worker_url(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[str]:
    """``host:port`` of a worker serving ``tiny`` (ready) and ``no_weights`` (its nnU-Net folder missing)."""
    repository = tmp_path_factory.mktemp("repository")
    _add_model(repository, "tiny", tiny_model)
    _add_model(repository, "no_weights")  # the same expert with its folder missing: not ready, with the reason
    port = free_port()
    env = {**os.environ, "ONCOFLOW_WORKER_PORT": str(port), "ONCOFLOW_MODEL_REPOSITORY": str(repository),
           "ONCOFLOW_HOME": str(tmp_path_factory.mktemp("home")), "ONCOFLOW_PANEL": "tiny",
           "PYTHONUNBUFFERED": "1"}
    env.pop("ONCOFLOW_MODEL_WEIGHTS", None)
    log_path = repository.parent / "worker.log"
    log = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "oncoflow_inference"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    try:
        deadline = time.monotonic() + 120
        while not _answers(client, "tiny"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"model did not become ready:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        client.close()
        process.terminate()
        process.wait(20)
        log.close()


@pytest.fixture(scope="module")
def worker(worker_url: str) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(worker_url, network_timeout=120)
    yield client
    client.close()


def _answers(client: triton_http.InferenceServerClient, model: str) -> bool:
    try:
        return bool(client.is_model_ready(model))
    except Exception:
        return False


def _inputs(volume: np.ndarray, spacing_mm: list[float] | tuple[float, ...]) -> list[triton_http.InferInput]:
    image = triton_http.InferInput("IMAGE", list(volume.shape), "FP32")
    image.set_data_from_numpy(volume, binary_data=True)
    spacing = triton_http.InferInput("SPACING_MM", [len(spacing_mm)], "FP32")
    spacing.set_data_from_numpy(np.asarray(spacing_mm, np.float32), binary_data=True)
    return [image, spacing]


def test_health_and_metadata(worker: triton_http.InferenceServerClient) -> None:
    assert worker.is_server_live() and worker.is_server_ready()
    server = worker.get_server_metadata()
    assert server["name"] == "oncoflow-worker" and "binary_tensor_data" in server["extensions"]
    metadata = worker.get_model_metadata("tiny")
    assert metadata["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("IMAGE", "FP32", [-1, -1, -1]), ("SPACING_MM", "FP32", [3])]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [("MASK", "UINT8"), ("PROBABILITY", "FP16")]
    assert worker.get_model_metadata("tiny", model_version="1")["name"] == "tiny"
    with pytest.raises(InferenceServerException, match="unknown model"):
        worker.get_model_metadata("tiny", model_version="7")


def test_model_config_is_tritons_with_the_models_own_parameters(worker: triton_http.InferenceServerClient) -> None:
    """``GET /v2/models/{m}/config``: the config.pbtxt as Triton gives it (tritonclient reads it)."""
    config = worker.get_model_config("tiny")
    assert config["name"] == "tiny" and config["backend"] == "python"
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("IMAGE", "TYPE_FP32", [-1, -1, -1]), ("SPACING_MM", "TYPE_FP32", [3])]
    parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
    # the demo config names the channel (the tiny folder's dataset.json says "MRI") and wants the brain alone
    assert parameters["input_channels"] == "t1c" and parameters["skull_stripped"] == "true"
    assert parameters["expert"] == "nnunet"
    # a model that cannot load still shows its file's configuration (nothing declared by a loaded model)
    assert worker.get_model_config("no_weights")["parameters"]["skull_stripped"] == {"string_value": "true"}
    with pytest.raises(InferenceServerException, match="unknown model"):
        worker.get_model_config("nonexistent")


def test_missing_model_folder_is_reported_not_faked(worker: triton_http.InferenceServerClient) -> None:
    assert worker.is_model_ready("tiny")
    assert not worker.is_model_ready("no_weights")
    assert not worker.is_model_ready("no_such_model")
    index = {m["name"]: m for m in worker.get_model_repository_index()}
    assert index["tiny"]["state"] == "READY" and index["tiny"]["reason"] == ""
    assert index["no_weights"]["state"] == "UNAVAILABLE"
    assert index["no_weights"]["reason"].endswith("no_weights/1/nnunet does not exist"), index["no_weights"]
    with pytest.raises(InferenceServerException, match="not ready.*does not exist") as info:
        worker.infer("no_weights", _inputs(_volume(), SPACING_MM))
    assert info.value.status() == "503"  # the plugin retries or reports; never a made-up mask


def test_binary_infer_returns_mask_on_the_input_grid(worker: triton_http.InferenceServerClient) -> None:
    volume = _volume()
    outputs = [triton_http.InferRequestedOutput("MASK", binary_data=True),
               triton_http.InferRequestedOutput("PROBABILITY", binary_data=True)]
    result = worker.infer("tiny", _inputs(volume, SPACING_MM), outputs=outputs, request_id="r-1")
    mask, probability = result.as_numpy("MASK"), result.as_numpy("PROBABILITY")
    assert mask.dtype == np.uint8 and mask.shape == volume.shape
    assert probability.dtype == np.float16 and probability.shape == volume.shape
    expected = np.zeros(volume.shape, np.uint8)
    expected[BOX] = 1  # the output layer says "tumour" everywhere nnU-Net looks: its nonzero crop box
    np.testing.assert_array_equal(mask, expected)
    assert np.all(probability[mask == 1] > 0.9) and np.all(probability[mask == 0] == 0)
    response = result.get_response()
    assert response["id"] == "r-1" and response["model_version"] == "1"
    assert response["parameters"]["inference_s"] > 0
    assert response["parameters"]["model_version"].startswith("1/fold0-")


def test_resampled_and_json_outputs(worker: triton_http.InferenceServerClient) -> None:
    volume = _volume()[:, :24, :30]  # not the plans' spacing: nnU-Net resamples there and back
    result = worker.infer("tiny", _inputs(np.ascontiguousarray(volume), (4.5, 1.5, 2.5)),
                          outputs=[triton_http.InferRequestedOutput("MASK", binary_data=False)])
    mask = result.as_numpy("MASK")
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    assert result.as_numpy("PROBABILITY") is None  # not requested, not computed
    np.testing.assert_array_equal(mask > 0, volume != 0)  # the box again, on this grid


def test_health_answers_during_inference(worker: triton_http.InferenceServerClient, worker_url: str) -> None:
    volume = np.tile(_volume(), (1, 2, 2))  # (20, 80, 80): seconds of model time on 2 cores
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        client = triton_http.InferenceServerClient(worker_url, network_timeout=120)
        try:
            client.infer("tiny", _inputs(volume, SPACING_MM))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            client.close()
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    answered_while_busy = 0  # health answers that came back before the inference did
    while not done.is_set():
        assert worker.is_server_live() and worker.is_model_ready("tiny")
        answered_while_busy += not done.is_set()
    thread.join()
    assert not errors, errors
    # A worker that blocked on the model call would answer the first check only once inference is over
    # (then nothing counts); one that stays responsive answers many checks meanwhile. No clock is read.
    assert answered_while_busy >= 3, answered_while_busy


@pytest.mark.parametrize(
    ("volume", "spacing", "message"),
    [
        (np.zeros((8, 8), np.float32), [1.0, 1.0, 1.0], "IMAGE must have shape \\[-1, -1, -1\\], got \\[8, 8\\]"),
        (np.zeros((4, 8, 8), np.float32), [1.0, -1.0, 1.0], "SPACING_MM must be 3 positive"),
        (np.zeros((4, 8, 8), np.float32), [1.0, 1.0], "SPACING_MM must have shape \\[3\\]"),
        (np.full((4, 8, 8), np.nan, np.float32), [1.0, 1.0, 1.0], "NaN"),
    ],
)
def test_bad_requests_are_400_and_server_lives_on(
    worker: triton_http.InferenceServerClient, volume: np.ndarray, spacing: list[float], message: str
) -> None:
    with pytest.raises(InferenceServerException, match=message) as info:
        worker.infer("tiny", _inputs(volume, spacing))
    assert info.value.status() == "400"
    assert worker.is_server_live() and worker.is_model_ready("tiny")


def test_wrong_datatype_and_unknown_output_are_400(worker: triton_http.InferenceServerClient) -> None:
    image = triton_http.InferInput("IMAGE", [4, 8, 8], "FP64")
    image.set_data_from_numpy(np.ones((4, 8, 8)), binary_data=True)
    spacing = _inputs(np.ones((4, 8, 8), np.float32), SPACING_MM)[1]
    with pytest.raises(InferenceServerException, match="IMAGE must be FP32, got FP64"):
        worker.infer("tiny", [image, spacing])
    with pytest.raises(InferenceServerException, match="unknown outputs \\['LABELS'\\]"):
        worker.infer("tiny", _inputs(_volume(), SPACING_MM),
                     outputs=[triton_http.InferRequestedOutput("LABELS")])
    assert worker.is_server_ready()


def test_expert_maps_multi_label_models_and_refuses_missing_channels(tmp_path: Path) -> None:
    """A BraTS-like folder (labels 1, 2, 3; four channels) loads unchanged; tumour_labels picks the labels."""
    from oncoflow_inference.experts.base import ExpertInputError
    from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

    brats = {"background": 0, "edema": 1, "non_enhancing": 2, "enhancing": 3}
    write_tiny_nnunet(tmp_path / "labels", labels=brats)
    volume = _volume()
    expert = NnUNetExpert(tmp_path / "labels", tumour_labels=[2, 3], input_channels=["t1c"])
    expert.load()
    assert expert.ready, expert.not_ready_reason
    output = expert.predict(volume, SPACING_MM, with_probability=True)  # predicts label 3 in the box
    assert output.mask.dtype == np.uint8 and output.mask.shape == volume.shape
    np.testing.assert_array_equal(output.mask > 0, volume != 0)
    assert output.probability is not None and output.probability.shape == volume.shape
    edema_only = NnUNetExpert(tmp_path / "labels", tumour_labels=[1], input_channels=["t1c"])
    edema_only.load()
    assert edema_only.predict(volume, SPACING_MM).mask.sum() == 0

    wrong = NnUNetExpert(tmp_path / "labels", tumour_labels=[5], input_channels=["t1c"])
    wrong.load()
    assert not wrong.ready and "tumour_labels [5] are not labels" in str(wrong.not_ready_reason)

    write_tiny_nnunet(tmp_path / "four", channels=4)  # channel_names T1, T1ce, T2, Flair
    four = NnUNetExpert(tmp_path / "four")
    four.load()
    assert four.ready and four.channels == ("t1", "t1c", "t2", "flair")
    assert four.declared_parameters() == {"input_channels": "t1,t1c,t2,flair", "output_labels": "TC"}  # one label
    with pytest.raises(ExpertInputError, match="takes 4 channels"):
        four.predict(volume, SPACING_MM)
    assert four.predict(np.stack([volume] * 4), SPACING_MM).mask.shape == volume.shape

    write_tiny_nnunet(tmp_path / "unnamed", channels=2, channel_names=("MRI", "other"))
    unnamed = NnUNetExpert(tmp_path / "unnamed")
    unnamed.load()
    assert not unnamed.ready and "set input_channels in config.pbtxt" in str(unnamed.not_ready_reason)
    named = NnUNetExpert(tmp_path / "unnamed", input_channels=["T1Gd", "t2f"])
    named.load()
    assert named.ready and named.channels == ("t1c", "flair")

    (tmp_path / "four" / "plans.json").unlink()
    gone = NnUNetExpert(tmp_path / "four")
    gone.load()
    assert not gone.ready and gone.not_ready_reason == f"nnU-Net model folder {tmp_path / 'four'} has no plans.json"


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "ONCOFLOW_WORKER_PORT": "not-a-port", "ONCOFLOW_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "oncoflow_inference"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "ONCOFLOW_WORKER_PORT='not-a-port' is not an integer" in done.stderr

