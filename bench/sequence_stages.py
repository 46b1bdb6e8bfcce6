"""``make bench``: a four-sequence study's stages, and what a full-size BraTS nnU-Net costs on this CPU.

1. **Four sequences, default panel.** One study from the evaluation generator (Colin27's full head, a grown
   glioma): T1c 3-D at 1 x 0.9 x 0.9 mm (about 160 x 256 x 256 after the head's extent), T1, T2 and FLAIR axial
   2-D with 5 mm slices, one frame of reference. It is pushed by C-STORE to a fresh stack; the stages come from
   the status route (selection, volume build, co-registration, brain extraction, inference, fusion, SEG encode,
   store), the turnaround from the last C-STORE to the job's end.
2. **A full-size nnU-Net.** nnU-Net's default 3d_fullres plans for a BraTS 2021-like dataset (its own
   planner: about 31 M parameters, patch 128^3), random weights, in OncoFlow's nnU-Net expert, on a four-channel
   155 x 240 x 240 input at 1 mm: the model time alone, and its ratio to the demo panel's whole turnaround.

Writes ``bench/results/sequence-stages-<UTC>.json`` and ``sequence-stages-latest.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import write_result
from pydicom.uid import generate_uid
from turnaround import bench_stack, peak_rss_gib, push_and_wait

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = 515
PROTOCOL = {"t1c": ((1.0, 0.9, 0.9), "axial"), "t1": ((5.0, 0.9, 0.9), "axial"),
            "t2": ((5.0, 0.9, 0.9), "axial"), "flair": ((5.0, 0.9, 0.9), "axial")}
BRATS_SHAPE = (155, 240, 240)


def four_sequence_study(directory: Path) -> tuple[str, dict[str, list[int]]]:
    """Write the study, one folder per sequence; returns its StudyInstanceUID and each sequence's shape."""
    from oncoflow.phantoms.evaluation_generator import evaluation_study, grow_tumour
    from oncoflow.phantoms.phantom_dicom import StudyInfo, sequence_series_info, series_datasets, write_datasets

    study = evaluation_study(SEED, grow_tumour(SEED, (8.0,)), protocol=PROTOCOL)  # type: ignore[arg-type]
    uid = generate_uid()
    info = StudyInfo(patient_id="BENCH-4SEQ", patient_name="Bench^FourSequences", accession_number="B4SEQ",
                     study_instance_uid=uid)
    frame = generate_uid()
    for kind, volume in study.images.items():
        write_datasets(series_datasets(volume, info, sequence_series_info(kind, generate_uid(), frame)),
                       directory / kind)
    return uid, {kind: list(volume.shape) for kind, volume in study.images.items()}


def full_size_nnunet_seconds(work: Path) -> dict[str, Any]:
    """The default BraTS 3d_fullres network, random weights, on one four-channel 155 x 240 x 240 input."""
    sys.path.insert(0, str(REPO_ROOT))
    from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

    from tests.brats_layout_model import write_model_folder

    folder = work / "Dataset137_BraTS2021" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    parameters = write_model_folder(folder, work, tiny=False)
    expert = NnUNetExpert(folder, name="nnunet_brats_full")
    expert.load()
    if not expert.ready:
        raise SystemExit(f"full-size nnU-Net not ready: {expert.not_ready_reason}")
    rng = np.random.default_rng(0)
    image = rng.normal(600.0, 150.0, size=(4, *BRATS_SHAPE)).astype(np.float32)
    started = time.perf_counter()
    output = expert.predict(image, (1.0, 1.0, 1.0))
    seconds = time.perf_counter() - started
    return {"parameters": parameters, "input": [4, *BRATS_SHAPE], "spacing_mm": [1.0, 1.0, 1.0],
            "patch_size": json.loads((folder / "plans.json").read_text())["configurations"]["3d_fullres"]["patch_size"],
            "seconds": round(seconds, 1), "mask_shape": list(output.mask.shape)}


def main() -> int:
    from oncoflow.services.stack import service_pid

    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-4seq-"))
    study_uid, shapes = four_sequence_study(base / "study")
    with bench_stack(base / "home", None) as settings:
        job, push_started, last_store = push_and_wait(settings, base / "study", study_uid)
        worker_rss_gib = peak_rss_gib(service_pid(settings, "worker") or 0)
    turnaround_s = job["updated_at"] - last_store
    outputs = job["outputs"]
    four = {
        "shapes": shapes, "panel": outputs["panel"], "push_s": round(last_store - push_started, 2),
        "turnaround_s": round(turnaround_s, 2), "stages_s": job["timings_s"],
        "co_registration": outputs["sequences"]["co_registration"], "left_out": outputs["sequences"]["left_out"],
        "regions": outputs.get("regions"), "plausibility": outputs.get("plausibility"),
        "worker_peak_rss_gib": round(worker_rss_gib, 3),
    }
    print(four, flush=True)
    full = full_size_nnunet_seconds(base)
    full["ratio_to_four_sequence_turnaround"] = round(full["seconds"] / turnaround_s, 2)
    print(write_result("sequence-stages", {"four_sequence_study": four, "full_size_nnunet": full}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
