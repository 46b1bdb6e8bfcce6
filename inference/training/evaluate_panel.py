"""Held-out accuracy of the default panel's demo experts, alone and fused (``make evaluate-panel``).

The three demo nnU-Nets run on the same 24 fresh phantoms as ``train_demo_model.py``
evaluates (seeds 100000-100023, both anatomies); their masks are fused by every
strategy of :mod:`oncoflow.measure.fusion` and each result is scored by Dice against the
phantom truth. Also records the agreement score and flag per case, to see whether a
low agreement does flag the worse cases. Writes ``bench/results/panel-accuracy.json``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from oncoflow.core.config import REPO_ROOT
from oncoflow.measure.fusion import STRATEGIES, fuse
from oncoflow.measure.mask_metrics import dice
from oncoflow.phantoms.tumour_phantom import make_phantom

EXPERTS = ("nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2")
TEST_SEEDS = range(100_000, 100_024)  # as in train_demo_model.py
OUT = REPO_ROOT / "bench" / "results" / "panel-accuracy.json"


def main() -> int:
    from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

    repository = REPO_ROOT / "inference" / "model_repository"
    experts = {name: NnUNetExpert(repository / name / "1" / "nnunet", name=name, input_channels=["t1c"])
               for name in EXPERTS}
    for expert in experts.values():
        expert.load()
        if not expert.ready:
            raise SystemExit(f"{expert.name}: {expert.not_ready_reason}")
    cases = []
    started = time.perf_counter()
    for seed in TEST_SEEDS:
        phantom = make_phantom(seed, head=False)
        volume = phantom.volume
        outputs = {n: e.predict(volume.voxels, volume.spacing_mm, with_probability=True) for n, e in experts.items()}
        masks = {n: o.mask for n, o in outputs.items()}
        probabilities = {n: o.probability for n, o in outputs.items()}
        case: dict[str, object] = {"seed": seed, "anatomy": phantom.anatomy, "shape": list(volume.shape)}
        case["experts"] = {n: round(dice(m, phantom.tumour_mask), 4) for n, m in masks.items()}
        fused = {}
        for strategy in STRATEGIES:
            weights = {n: 1.0 for n in EXPERTS} if strategy == "weighted" else None
            result = fuse(masks, volume.voxel_volume_mm3, strategy, weights, probabilities)
            fused[strategy] = round(dice(result.mask, phantom.tumour_mask), 4)
            case["agreement_score"], case["flag"] = result.agreement_score, result.flag
        case["fused"] = fused
        cases.append(case)
        print(case, flush=True)

    def mean(values: list[float]) -> float:
        return round(float(np.mean(values)), 4)

    summary = {
        "n_cases": len(cases),
        "mean_dice_experts": {n: mean([c["experts"][n] for c in cases]) for n in EXPERTS},  # type: ignore[index]
        "mean_dice_fused": {s: mean([c["fused"][s] for c in cases]) for s in STRATEGIES},  # type: ignore[index]
        "median_dice_fused": {s: round(float(np.median([c["fused"][s] for c in cases])), 4)  # type: ignore[index]
                              for s in STRATEGIES},
        "flags": {f: sum(c["flag"] == f for c in cases) for f in ("high", "review", "low")},
        "mean_majority_dice_by_flag": {
            f: mean([c["fused"]["majority"] for c in cases if c["flag"] == f])  # type: ignore[index]
            for f in ("high", "review", "low") if any(c["flag"] == f for c in cases)
        },
        "seconds": round(time.perf_counter() - started, 1),
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
