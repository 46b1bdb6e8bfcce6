"""Train one of OncoFlow's demo nnU-Net v2 experts on synthetic heads (``make demo-models``; never run in CI).

Steps:

1. **Data**: training cases from :mod:`oncoflow.phantoms.training_generator` (SynthSeg-style: random contrasts,
   deformations, tumours of irregular shape with oedema, necrosis and enhancing tumour, full heads and
   skull-stripped brains, thick and thin slices), from the **MNI152** head only: Colin27 is kept for the
   evaluation (``make evaluate-panel``). The four channels of every case are written once under
   ``<work>/cases``; each model's nnU-Net raw dataset links the channels it takes.
2. **Plans**: nnU-Net's own fingerprint and planner, then shrunk to a CPU-sized U-Net (features 8..64 or
   16..128), a fixed 2 mm target spacing and a small patch.
3. **Training**: one fold, a poly schedule of ``--epochs`` x ``--iterations``, torch on 2 CPU threads (or the GPU
   when one is there), without nnU-Net's data augmentation (the generator's randomisation replaces it).
4. **Export**: a slim model folder (``dataset.json``, ``plans.json``, ``fold_0/checkpoint_final.pth`` with
   trainer name ``nnUNetTrainer`` and no optimizer state) and ``training.json`` (what was trained, how long,
   nnU-Net's own validation Dice on held-out *training-generator* cases: not an evaluation, see
   ``bench/evaluate_panel.py``).

    python inference/training/train_demo_model.py --channels t1,t1c,t2,flair --out inference/model_repository/...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DISPLAY = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}  # dataset.json channel names
ALL_CHANNELS = ("t1", "t1c", "t2", "flair")
TARGET_SPACING_MM = {"3d_fullres": [2.0, 2.0, 2.0], "2d": [2.0, 2.0]}
PATCH = {"3d_fullres": [64, 64, 64], "2d": [128, 128]}
BATCH = {"3d_fullres": 2, "2d": 16}
FEATURES = {"small": [8, 16, 32, 64, 64], "medium": [16, 32, 64, 128, 128]}
# Trained on BraTS regions as nnU-Net trains its BraTS 2021 model (Dataset137): sigmoid outputs for whole tumour,
# tumour core and enhancing tumour over the case files' labels (1 oedema, 2 necrosis, 3 enhancing). Measured here
# with softmax labels instead: after 500 of 1,000 iterations necrosis and enhancing tumour were still never
# predicted (pseudo Dice 0.0), oedema 0.57; the nested regions give the core its whole blob to learn from.
TRAINING_LABELS = {
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]},
    "regions_class_order": [1, 2, 3],
}


def write_image(image: np.ndarray, spacing_mm: tuple[float, float, float], path: Path) -> None:
    """A ``(slice, row, column)`` array saved so nnU-Net reads spacing ``(slice, row, column)`` back."""
    itk = sitk.GetImageFromArray(image)
    itk.SetSpacing(tuple(float(s) for s in reversed(spacing_mm)))
    sitk.WriteImage(itk, str(path), useCompression=True)


def write_case(seed: int, cases: Path) -> str:
    """Generate training case ``seed`` (MNI152 head) into ``cases`` once; returns its name."""
    from oncoflow.phantoms.training_generator import training_case

    name = f"synth_{seed:05d}"
    if (cases / f"{name}.nii.gz").is_file():
        return name
    case = training_case(seed, anatomy="mni152", tumour=seed % 8 != 7)  # one in eight heads is healthy
    for index, channel in enumerate(ALL_CHANNELS):
        volume = case.images[channel]
        write_image(volume.voxels, volume.spacing_mm, cases / f"{name}_{index:04d}.nii.gz")
    write_image(case.labels, case.images["t1"].spacing_mm, cases / f"{name}.nii.gz")  # written last: complete
    return name


def build_raw_dataset(raw: Path, cases: Path, names: list[str], channels: list[str], dataset_name: str) -> None:
    """nnU-Net's raw layout for the model's channels, linking the shared case files."""
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    for name in names:
        for index, channel in enumerate(channels):
            link = raw / "imagesTr" / f"{name}_{index:04d}.nii.gz"
            if not link.exists():
                link.symlink_to(cases / f"{name}_{ALL_CHANNELS.index(channel):04d}.nii.gz")
        label = raw / "labelsTr" / f"{name}.nii.gz"
        if not label.exists():
            label.symlink_to(cases / f"{name}.nii.gz")
    dataset = {
        "channel_names": {str(i): DISPLAY[c] for i, c in enumerate(channels)},
        **TRAINING_LABELS,
        "numTraining": len(names),
        "file_ending": ".nii.gz",
        "name": dataset_name,
        "description": "OncoFlow synthetic heads (MNI152 anatomy; training_generator.py), BraTS 2021 regions "
                       "(as Dataset137)",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))


def shrink_plans(plans_path: Path, configuration: str, features: list[int]) -> None:
    """A CPU-sized network, a fixed 2 mm spacing and a small patch for ``configuration``."""
    plans = json.loads(plans_path.read_text())
    config = plans["configurations"][configuration]
    patch = PATCH[configuration]
    dims = len(patch)
    n_stages = len(features)
    config.update(patch_size=patch, batch_size=BATCH[configuration], spacing=TARGET_SPACING_MM[configuration],
                  use_mask_for_norm=[False] * len(config["normalization_schemes"]))
    config["architecture"]["arch_kwargs"].update(
        n_stages=n_stages,
        features_per_stage=features,
        kernel_sizes=[[3] * dims] * n_stages,
        strides=[[1] * dims] + [[2] * dims] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans_path.write_text(json.dumps(plans, indent=2))


def train(env: dict[str, str], dataset_name: str, configuration: str, epochs: int, iterations: int,
          seed: int) -> tuple[Path, dict[str, object]]:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # nnU-Net's own augmentation is off: the generator already deforms, blurs, biases and re-contrasts every case,
    # and on 2 CPU cores the augmentation would cost more than the network
    class DemoTrainer(nnUNetTrainerNoDA):
        # nnU-Net records its init arguments by signature, so the signature must stay the parent's.
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = device) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = 5
            self.initial_lr = 1e-2

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(2)
    preprocessed = Path(env["nnUNet_preprocessed"]) / dataset_name
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    plans["continue_training"] = False  # nnU-Net 2.8's run_training sets this before building a trainer
    trainer = DemoTrainer(plans=plans, configuration=configuration, fold=0,
                          dataset_json=load_json(str(preprocessed / "dataset.json")), device=device)
    trainer.run_training()
    logger = trainer.logger.local_logger.my_fantastic_logging
    validation = {
        "note": "nnU-Net's pseudo Dice on held-out cases of the TRAINING generator (MNI152): not an evaluation",
        "mean_fg_dice_last_epoch": round(float(logger["mean_fg_dice"][-1]), 4),
        "dice_per_label_last_epoch": [round(float(v), 4) for v in logger["dice_per_class_or_region"][-1]],
        "train_loss_last_epoch": round(float(logger["train_losses"][-1]), 4),
    }
    return Path(trainer.output_folder), validation


def export_slim(trained: Path, preprocessed: Path, out: Path) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "fold_0").mkdir(exist_ok=True)
    checkpoint = torch.load(trained / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    init_args = dict(checkpoint["init_args"])
    init_args["device"] = torch.device("cpu")
    slim = {
        "network_weights": {k: v.cpu() for k, v in checkpoint["network_weights"].items()},
        "init_args": init_args,
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": checkpoint.get("inference_allowed_mirroring_axes"),
        "current_epoch": checkpoint.get("current_epoch"),
    }
    torch.save(slim, out / "fold_0" / "checkpoint_final.pth")
    shutil.copy(preprocessed / "nnUNetPlans.json", out / "plans.json")
    shutil.copy(preprocessed / "dataset.json", out / "dataset.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write (nnU-Net's layout)")
    parser.add_argument("--channels", default="t1,t1c,t2,flair", help="comma-separated, of t1, t1c, t2, flair")
    parser.add_argument("--configuration", choices=tuple(PATCH), default="3d_fullres")
    parser.add_argument("--features", choices=tuple(FEATURES), default="small")
    parser.add_argument("--work", type=Path, default=Path("work-demo-models"))
    parser.add_argument("--dataset-id", type=int, required=True)
    parser.add_argument("--cases", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    channels = [c.strip() for c in args.channels.split(",")]
    if not channels or any(c not in ALL_CHANNELS for c in channels):
        parser.error(f"--channels must name some of {', '.join(ALL_CHANNELS)}")
    work = args.work.resolve()
    dataset_name = f"Dataset{args.dataset_id:03d}_OncoFlowSynth{''.join(DISPLAY[c] for c in channels)}"
    env = {
        **os.environ,
        "nnUNet_raw": str(work / "raw"),
        "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"),
        "nnUNet_n_proc_DA": "1",
        "nnUNet_def_n_proc": "2",
        "nnUNet_compile": "false",
    }
    os.environ.update(env)
    started = time.perf_counter()
    cases = work / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.cases))
    with ProcessPoolExecutor(2) as pool:
        names = list(pool.map(write_case, seeds, [cases] * len(seeds)))
    generate_s = time.perf_counter() - started
    raw = work / "raw" / dataset_name
    build_raw_dataset(raw, cases, names, channels, dataset_name)

    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    preprocessed = work / "preprocessed" / dataset_name
    if (preprocessed / "dataset.json").is_file():  # the labels may have changed: the arrays have not
        shutil.copy(raw / "dataset.json", preprocessed / "dataset.json")
    if not (preprocessed / "nnUNetPlans.json").is_file():
        extract_fingerprints([args.dataset_id], num_processes=2, check_dataset_integrity=True)
        plan_experiments([args.dataset_id])
        shrink_plans(preprocessed / "nnUNetPlans.json", args.configuration, FEATURES[args.features])
    if not (preprocessed / f"nnUNetPlans_{args.configuration}").is_dir():
        preprocess([args.dataset_id], configurations=(args.configuration,), num_processes=(2,))
    train_started = time.perf_counter()
    trained, validation = train(env, dataset_name, args.configuration, args.epochs, args.iterations, args.seed)
    train_s = time.perf_counter() - train_started
    export_slim(trained, preprocessed, args.out)
    record = {
        "dataset": dataset_name,
        "channels": channels,
        "configuration": args.configuration,
        "features": FEATURES[args.features],
        "patch": PATCH[args.configuration],
        "spacing_mm": TARGET_SPACING_MM[args.configuration],
        "training_cases": len(names),
        "anatomy": "mni152 (Colin27 held out for evaluation)",
        "epochs": args.epochs,
        "iterations": args.epochs * args.iterations,
        "seed": args.seed,
        "generate_seconds": round(generate_s, 1),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "checkpoint_bytes": (args.out / "fold_0" / "checkpoint_final.pth").stat().st_size,
        "validation": validation,
    }
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
