"""A randomly initialised nnU-Net v2 model folder in the layout of nnU-Net's Dataset137 (BraTS 2021).

What a hospital drops in: ``dataset.json`` (channels T1, T1ce, T2, Flair; region-based labels whole tumor
[1, 2, 3], tumor core [2, 3], enhancing tumor [3]; ``regions_class_order`` [1, 2, 3]), ``plans.json`` and
``fold_0/checkpoint_final.pth`` as nnU-Net's trainer saves it. The plans come from nnU-Net's own
``ExperimentPlanner`` run on a BraTS-like fingerprint (1 mm, 140 x 171 x 137 after cropping, so the default
3d_fullres network of about 31 M parameters, patch 128 x 128 x 128); :func:`write_model_folder` with ``tiny=True``
shrinks the network and the patch, and coarsens the spacing to 3 mm, so a test runs it in seconds. The weights
are nnU-Net's own He initialisation: random, as the test needs, never trained.
"""

from __future__ import annotations

import json
import os
import tempfile
from copy import deepcopy
from pathlib import Path

DATASET_NAME = "Dataset137_BraTS2021"
DATASET_JSON = {
    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
    "regions_class_order": [1, 2, 3],
    "numTraining": 1251,
    "file_ending": ".nii.gz",
}
_FOREGROUND = {str(i): {"max": 5000.0, "mean": 700.0, "median": 650.0, "min": 0.0, "percentile_00_5": 50.0,
                        "percentile_99_5": 2500.0, "std": 400.0} for i in range(4)}


def default_plans(work: Path) -> dict:
    """nnU-Net's default plans for a BraTS 2021-like dataset, from its own planner (no image is read)."""
    scratch = Path(tempfile.mkdtemp(prefix="nnunet-plan-", dir=work))
    for name in ("raw", "preprocessed", "results"):
        os.environ[f"nnUNet_{name}"] = str(scratch / name)
    raw, preprocessed = scratch / "raw" / DATASET_NAME, scratch / "preprocessed" / DATASET_NAME
    raw.mkdir(parents=True)
    preprocessed.mkdir(parents=True)
    cases = 20
    dataset = {**deepcopy(DATASET_JSON), "overwrite_image_reader_writer": "SimpleITKIO",
               "dataset": {f"c{i}": {"images": [f"imagesTr/c{i}_000{c}.nii.gz" for c in range(4)],
                                     "label": f"labelsTr/c{i}.nii.gz"} for i in range(cases)}}
    (raw / "dataset.json").write_text(json.dumps(dataset))
    fingerprint = {"spacings": [[1.0, 1.0, 1.0]] * cases, "shapes_after_crop": [[140, 171, 137]] * cases,
                   "median_relative_size_after_cropping": 0.70,
                   "foreground_intensity_properties_per_channel": _FOREGROUND}
    (preprocessed / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    ExperimentPlanner(DATASET_NAME, gpu_memory_target_in_gb=8, plans_name="nnUNetPlans").plan_experiment()
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    plans["configurations"] = {"3d_fullres": plans["configurations"]["3d_fullres"]}
    return plans


def _tiny(plans: dict) -> dict:
    tiny = deepcopy(plans)
    config = tiny["configurations"]["3d_fullres"]
    config.update(patch_size=[32, 32, 32], batch_size=2, spacing=[3.0, 3.0, 3.0])
    config["architecture"]["arch_kwargs"].update(
        n_stages=4, features_per_stage=[8, 16, 32, 64], kernel_sizes=[[3, 3, 3]] * 4,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[2] * 4,
        n_conv_per_stage_decoder=[2] * 3)
    return tiny


def write_model_folder(folder: Path, work: Path, tiny: bool = True, seed: int = 0) -> int:
    """Write the folder; returns the network's number of parameters."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = default_plans(work)
    if tiny:
        plans = _tiny(plans)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON, indent=2))
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    inputs = determine_num_input_channels(manager, configuration, DATASET_JSON)
    heads = manager.get_label_manager(DATASET_JSON).num_segmentation_heads  # 3 sigmoid regions
    torch.manual_seed(seed)
    network = nnUNetTrainer.build_network_architecture(manager, configuration, inputs, heads,
                                                       enable_deep_supervision=False)
    torch.save({
        "network_weights": network.state_dict(), "optimizer_state": None, "grad_scaler_state": None, "logging": {},
        "_best_ema": None, "current_epoch": 0,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": DATASET_JSON,
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }, folder / "fold_0" / "checkpoint_final.pth")
    return sum(p.numel() for p in network.parameters())
