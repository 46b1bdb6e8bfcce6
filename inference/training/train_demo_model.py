"""Train OncoFlow's small demo nnU-Net v2 model on phantoms (``make demo-model``; never run in CI).

Steps: phantoms from both real brains (Colin27, MNI152) with varied orientation and
resolution -> nnU-Net raw dataset -> nnU-Net's own fingerprint / planning /
preprocessing -> plans shrunk to a CPU-sized 3d_fullres U-Net (features 8..64,
patch 48x64x64) -> one fold trained with a short poly schedule -> a slim model
folder (dataset.json, plans.json, fold_0/checkpoint_final.pth saved with
trainer_name 'nnUNetTrainer' and no optimizer state) -> held-out Dice on fresh
phantoms with ``nnUNetPredictor``, written to ``evaluation.json``.

    python inference/training/train_demo_model.py --out inference/model_repository/nnunet_demo/1/nnunet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID:03d}_OncoFlowPhantoms"
TRAIN_SEEDS = range(0, 160)
TEST_SEEDS = range(100_000, 100_024)
TINY_FEATURES = [8, 16, 32, 64, 64]
PATCH = {"3d_fullres": [48, 64, 64], "2d": [128, 128]}
BATCH = {"3d_fullres": 2, "2d": 12}
CONFIGURATIONS = tuple(PATCH)


def write_case(image: np.ndarray, spacing_mm: tuple[float, float, float], path: Path) -> None:
    """Save a ``(slice, row, column)`` array so nnU-Net reads it back with spacing ``(slice, row, column)``."""
    itk = sitk.GetImageFromArray(image)
    itk.SetSpacing(tuple(float(s) for s in reversed(spacing_mm)))
    sitk.WriteImage(itk, str(path), useCompression=True)


def build_raw_dataset(raw_dir: Path) -> None:
    from oncoflow.phantoms.tumour_phantom import make_phantom

    images, labels = raw_dir / "imagesTr", raw_dir / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for seed in TRAIN_SEEDS:
        phantom = make_phantom(seed, tumour=seed % 10 != 9)  # a few healthy brains
        name = f"phantom_{seed:04d}"
        write_case(phantom.volume.voxels, phantom.volume.spacing_mm, images / f"{name}_0000.nii.gz")
        write_case(phantom.tumour_mask, phantom.volume.spacing_mm, labels / f"{name}.nii.gz")
    dataset = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "tumour": 1},
        "numTraining": len(TRAIN_SEEDS),
        "file_ending": ".nii.gz",
        "name": "OncoFlow brain tumour phantoms (T1c, Colin27 + MNI152)",
    }
    (raw_dir / "dataset.json").write_text(json.dumps(dataset, indent=2))


def shrink_plans(plans_path: Path) -> None:
    """Replace the default 3d_fullres and 2d networks by CPU-sized ones."""
    plans = json.loads(plans_path.read_text())
    n_stages = len(TINY_FEATURES)
    for name, patch in PATCH.items():
        config = plans["configurations"][name]
        dims = len(patch)
        config["patch_size"] = patch
        config["batch_size"] = BATCH[name]
        config["architecture"]["arch_kwargs"].update(
            n_stages=n_stages,
            features_per_stage=TINY_FEATURES,
            kernel_sizes=[[3] * dims] * n_stages,
            strides=[[1] * dims] + [[2] * dims] * (n_stages - 1),
            n_conv_per_stage=[2] * n_stages,
            n_conv_per_stage_decoder=[2] * (n_stages - 1),
        )
    plans_path.write_text(json.dumps(plans, indent=2))


def train(env: dict[str, str], configuration: str, epochs: int, iterations: int, seed: int) -> Path:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    CPU = torch.device("cpu")

    class DemoTrainer(nnUNetTrainer):
        # nnU-Net records its init arguments by signature, so the signature must stay the parent's.
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = CPU) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = 2
            self.initial_lr = 1e-2

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(2)
    preprocessed = Path(env["nnUNet_preprocessed"]) / DATASET_NAME
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    plans["continue_training"] = False  # nnU-Net 2.8's run_training sets this before building a trainer
    trainer = DemoTrainer(
        plans=plans,
        configuration=configuration,
        fold=0,
        dataset_json=load_json(str(preprocessed / "dataset.json")),
        device=torch.device("cpu"),
    )
    trainer.run_training()
    return Path(trainer.output_folder)


def export_slim(trained: Path, preprocessed: Path, out: Path) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "fold_0").mkdir(exist_ok=True)
    checkpoint = torch.load(trained / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    slim = {
        "network_weights": checkpoint["network_weights"],
        "init_args": checkpoint["init_args"],
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": checkpoint.get("inference_allowed_mirroring_axes"),
        "current_epoch": checkpoint.get("current_epoch"),
    }
    torch.save(slim, out / "fold_0" / "checkpoint_final.pth")
    shutil.copy(preprocessed / "nnUNetPlans.json", out / "plans.json")
    shutil.copy(preprocessed / "dataset.json", out / "dataset.json")


def evaluate(out: Path) -> dict[str, object]:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from oncoflow.phantoms.tumour_phantom import make_phantom

    predictor = nnUNetPredictor(
        tile_step_size=0.5, use_gaussian=True, use_mirroring=False, perform_everything_on_device=False,
        device=torch.device("cpu"), verbose=False, allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(out), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    per_case = []
    for seed in TEST_SEEDS:
        phantom = make_phantom(seed)
        seg = predictor.predict_single_npy_array(
            phantom.volume.voxels[None], {"spacing": list(phantom.volume.spacing_mm)}, None, None, False
        )
        truth, predicted = phantom.tumour_mask.astype(bool), np.asarray(seg) > 0
        dice = 2.0 * (truth & predicted).sum() / max(truth.sum() + predicted.sum(), 1)
        per_case.append({"seed": seed, "anatomy": phantom.anatomy, "shape": list(phantom.volume.shape),
                         "dice": round(float(dice), 4)})
        print(per_case[-1], flush=True)
    big = make_phantom(7, shape=(160, 256, 256))
    started = time.perf_counter()
    predictor.predict_single_npy_array(big.volume.voxels[None], {"spacing": list(big.volume.spacing_mm)}, None, None,
                                       False)
    dices = [c["dice"] for c in per_case]
    return {
        "mean_dice": round(float(np.mean(dices)), 4),
        "median_dice": round(float(np.median(dices)), 4),
        "n_cases": len(per_case),
        "per_case": per_case,
        "inference_seconds_256x256x160": round(time.perf_counter() - started, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("work-demo-model"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configuration", choices=CONFIGURATIONS, default="3d_fullres")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    work = args.work.resolve()
    env = {
        **os.environ,
        "nnUNet_raw": str(work / "raw"),
        "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"),
        "nnUNet_n_proc_DA": "1",
        "nnUNet_compile": "false",
    }
    os.environ.update(env)
    started = time.perf_counter()
    raw_dir = work / "raw" / DATASET_NAME
    if not (raw_dir / "dataset.json").exists():
        build_raw_dataset(raw_dir)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    preprocessed = work / "preprocessed" / DATASET_NAME
    if not (preprocessed / "nnUNetPlans.json").is_file():
        extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True)
        plan_experiments([DATASET_ID])
        shrink_plans(preprocessed / "nnUNetPlans.json")
    if not (preprocessed / f"nnUNetPlans_{args.configuration}").is_dir():
        preprocess([DATASET_ID], configurations=(args.configuration,), num_processes=(2,))
    train_started = time.perf_counter()
    trained = train(env, args.configuration, args.epochs, args.iterations, args.seed)
    train_s = time.perf_counter() - train_started
    export_slim(trained, preprocessed, args.out)
    evaluation = evaluate(args.out)
    evaluation.update(
        train_seconds=round(train_s, 1),
        total_seconds=round(time.perf_counter() - started, 1),
        iterations=args.epochs * args.iterations,
        epochs=args.epochs,
        configuration=args.configuration,
        seed=args.seed,
        train_cases=len(TRAIN_SEEDS),
        checkpoint_bytes=(args.out / "fold_0" / "checkpoint_final.pth").stat().st_size,
    )
    (args.out / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    print(json.dumps({k: v for k, v in evaluation.items() if k != "per_case"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
