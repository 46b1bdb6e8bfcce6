"""Accuracy of the default panel on studies it was not trained on (``make evaluate-panel``).

The demo experts learn from :mod:`oncoflow.phantoms.training_generator` (MNI152 heads, noise blobs, random
contrasts). They are judged here on :mod:`oncoflow.phantoms.evaluation_generator` only: Colin27's full head,
gliomas grown by reaction-diffusion, fixed protocol contrasts, a tilted head on a scanner grid. The path is
the pipeline's: deepbet's brain mask, the brain alone for the experts that want it, each mask cut to the brain,
majority vote, the plausibility guard.

Measured, per expert and fused, on the tumour core (TC, what the demo models segment):

* Dice against the truth on the T1c grid; lesion detection (any overlap with the true core) and false-positive
  lesions per scan (fused pieces touching no true tumour);
* false-positive volume on tumour-free heads, and whether the guard let it pass;
* the percent change of TC between two snapshots of one tumour (a follow-up), against the true change.

Writes ``bench/results/panel-accuracy-<UTC>.json`` and ``panel-accuracy-latest.json`` (:mod:`bench_results`).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import numpy.typing as npt
from bench_results import write_result
from scipy import ndimage

from oncoflow.core.config import REPO_ROOT
from oncoflow.core.volume import Volume
from oncoflow.measure.fusion import fuse
from oncoflow.measure.mask_metrics import dice
from oncoflow.measure.segmentation_plausibility import assess_plausibility
from oncoflow.phantoms.evaluation_generator import evaluation_study, grow_tumour

EXPERTS = ("nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2")
PROTOCOL = {"t1c": ((1.5, 1.5, 1.5), "axial")}  # the demo experts take T1c alone
SNAPSHOTS_CM3 = (3.0, 9.0)  # tumour core at baseline and follow-up (about +200 %)


class Panel:
    """deepbet and the demo nnU-Nets, loaded from the repository as the worker loads them."""

    def __init__(self) -> None:
        from oncoflow_inference.experts.brain_extraction_expert import BrainExtractionExpert
        from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

        repository = REPO_ROOT / "inference" / "model_repository"
        self.deepbet = BrainExtractionExpert("deepbet", None, torch_threads=2)
        self.deepbet.load()
        self.experts = {n: NnUNetExpert(repository / n / "1" / "nnunet", name=n, input_channels=["t1c"])
                        for n in EXPERTS}
        for expert in self.experts.values():
            expert.load()
        for expert in (self.deepbet, *self.experts.values()):
            if not expert.ready:
                raise SystemExit(f"{expert.name}: {expert.not_ready_reason}")

    def brain(self, volume: Volume) -> npt.NDArray[np.uint8]:
        from oncoflow_inference.segmentation_tensors import AFFINE_LPS, BRAIN_MASK, IMAGE, SPACING_MM

        result = self.deepbet.infer({IMAGE: volume.voxels, SPACING_MM: np.asarray(volume.spacing_mm, np.float32),
                                     AFFINE_LPS: volume.affine_lps().astype(np.float32)}, {BRAIN_MASK})
        return result.outputs[BRAIN_MASK]

    def segment(self, volume: Volume) -> dict[str, object]:
        """Each expert's mask and the fused one, as the panel makes them, with the guard's verdict."""
        brain = self.brain(volume) > 0
        stripped = np.where(brain, volume.voxels, np.float32(0)).astype(np.float32)
        masks, outside = {}, {}
        for name, expert in self.experts.items():
            mask = expert.predict(stripped, volume.spacing_mm).mask > 0
            outside[name] = float(np.count_nonzero(mask & ~brain)) * volume.voxel_volume_mm3 / 1000.0
            masks[name] = (mask & brain).astype(np.uint8)
        fused = fuse(masks, volume.voxel_volume_mm3, "majority")
        inside = {n: (float(np.count_nonzero(m)) * volume.voxel_volume_mm3 / 1000.0, outside[n])
                  for n, m in masks.items()}
        guard = assess_plausibility(fused.mask, volume.voxel_volume_mm3, brain.astype(np.uint8), inside)
        return {"masks": masks, "fused": fused.mask, "agreement": fused.agreement_score, "flag": fused.flag,
                "guard": guard}


def _false_positive_lesions(fused: npt.NDArray[np.bool_], truth_any: npt.NDArray[np.bool_]) -> int:
    """Connected pieces (26-connected) of the fused mask that touch no true tumour (any compartment)."""
    labels, count = ndimage.label(fused, structure=np.ones((3, 3, 3), bool))
    touching = set(np.unique(labels[truth_any & fused]).tolist()) - {0}
    return count - len(touching)


def _cm3(mask: npt.NDArray, volume: Volume) -> float:
    return float(np.count_nonzero(mask)) * volume.voxel_volume_mm3 / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20, help="gliomas, each seen twice (baseline, follow-up)")
    parser.add_argument("--tumour-free", type=int, default=6, help="heads without a tumour")
    parser.add_argument("--first-seed", type=int, default=900_000)
    args = parser.parse_args()

    started = time.perf_counter()
    panel = Panel()
    studies, pairs, empty = [], [], []
    for patient in range(args.patients):
        seed = args.first_seed + patient
        try:
            tumour = grow_tumour(seed, SNAPSHOTS_CM3)
        except ValueError as exc:
            print(f"patient {seed}: {exc}", flush=True)
            continue
        measured = []
        for snapshot in range(len(SNAPSHOTS_CM3)):
            study = evaluation_study(seed, tumour, snapshot, protocol=PROTOCOL, channels=("t1c",))  # type: ignore[arg-type]
            volume = study.images["t1c"]
            truth_tc = np.isin(study.truth, (2, 3))
            out = panel.segment(volume)
            row = {
                "seed": seed, "snapshot": snapshot, "shape": list(volume.shape),
                "true_cm3": {r: round(v, 3) for r, v in study.volumes_cm3.items()},
                "tc_cm3_on_grid": round(_cm3(truth_tc, volume), 3),
                "dice_tc": {n: round(dice(m, truth_tc), 4) for n, m in out["masks"].items()},  # type: ignore[union-attr]
                "fused_dice_tc": round(dice(out["fused"], truth_tc), 4),  # type: ignore[arg-type]
                "fused_tc_cm3": round(_cm3(out["fused"], volume), 3),  # type: ignore[arg-type]
                "detected": bool(np.any(np.asarray(out["fused"]).astype(bool) & truth_tc)),
                "false_positive_lesions": _false_positive_lesions(np.asarray(out["fused"]).astype(bool),
                                                                  study.truth > 0),
                "agreement": out["agreement"], "flag": out["flag"],
                "guard": out["guard"].verdict,  # type: ignore[union-attr]
            }
            studies.append(row)
            measured.append(row)
            print(json.dumps(row), flush=True)
        true_change = 100.0 * (measured[1]["true_cm3"]["TC"] - measured[0]["true_cm3"]["TC"]) / measured[0][
            "true_cm3"]["TC"]
        if measured[0]["fused_tc_cm3"] > 0:
            change = 100.0 * (measured[1]["fused_tc_cm3"] - measured[0]["fused_tc_cm3"]) / measured[0]["fused_tc_cm3"]
            pairs.append({"seed": seed, "true_percent": round(true_change, 1), "measured_percent": round(change, 1),
                          "error_points": round(change - true_change, 1)})
        else:
            pairs.append({"seed": seed, "true_percent": round(true_change, 1), "measured_percent": None,
                          "error_points": None})
    for index in range(args.tumour_free):
        seed = args.first_seed + 10_000 + index
        study = evaluation_study(seed, None, protocol=PROTOCOL, channels=("t1c",))  # type: ignore[arg-type]
        volume = study.images["t1c"]
        out = panel.segment(volume)
        row = {"seed": seed, "fp_cm3": {n: round(_cm3(m, volume), 3) for n, m in out["masks"].items()},  # type: ignore[union-attr]
               "fused_fp_cm3": round(_cm3(out["fused"], volume), 3),  # type: ignore[arg-type]
               "guard": out["guard"].verdict}  # type: ignore[union-attr]
        empty.append(row)
        print(json.dumps(row), flush=True)

    def stats(values: list[float]) -> dict[str, float | int]:
        array = np.asarray(values, float)
        return {"n": int(array.size), "mean": round(float(array.mean()), 4),
                "median": round(float(np.median(array)), 4), "p10": round(float(np.percentile(array, 10)), 4),
                "min": round(float(array.min()), 4)}

    errors = [p["error_points"] for p in pairs if p["error_points"] is not None]
    summary = {
        "what": "default demo panel on held-out evaluation studies (Colin27 full heads, reaction-diffusion "
                "gliomas, fixed contrasts, T1c 1.5 mm, tilted); region TC",
        "dice_tc_experts": {n: stats([s["dice_tc"][n] for s in studies]) for n in EXPERTS},
        "dice_tc_fused": stats([s["fused_dice_tc"] for s in studies]),
        "detected": f"{sum(s['detected'] for s in studies)} of {len(studies)}",
        "false_positive_lesions_per_scan": round(float(np.mean([s["false_positive_lesions"] for s in studies])), 3),
        "review_flagged_by_guard": f"{sum(s['guard'] != 'plausible' for s in studies)} of {len(studies)}",
        "tumour_free": {"heads": len(empty),
                        "fused_fp_cm3": stats([e["fused_fp_cm3"] for e in empty]) if empty else None,
                        "with_any_fused_voxel": sum(e["fused_fp_cm3"] > 0 for e in empty),
                        "review_flagged_by_guard": sum(e["guard"] != "plausible" for e in empty)},
        "percent_change": {"pairs": len(pairs), "measured": len(errors),
                           "abs_error_points": stats([abs(e) for e in errors]) if errors else None,
                           "signed_error_points": stats(errors) if errors else None},
        "seconds": round(time.perf_counter() - started, 1),
        "studies": studies, "pairs": pairs, "tumour_free_heads": empty,
    }
    write_result("panel-accuracy", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("studies", "pairs", "tumour_free_heads")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
