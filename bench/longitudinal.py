"""``make bench-longitudinal``: accuracy of the change measurement over 40 longitudinal phantom pairs.

Each pair (``oncoflow.phantoms.longitudinal_phantom.make_validation_set``: progression, response,
stable and minor change over Colin27 and MNI152, head motion up to 10° and 15 mm, other
orientation and spacing at follow-up) is compared twice with the plugin's own
:func:`~oncoflow.measure.longitudinal_comparison.compare` (itk-elastix):

* ``truth``: the phantoms' truth masks stand in for the panel, which isolates
  registration, warping, measurement and flagging;
* ``panel``: the three demo nnU-Nets segment both visits and are fused by majority
  vote, as in the PACS: the whole measurement chain, segmentation included.

Reported per mode: absolute error of the % change against the true change (median,
95th percentile), flag accuracy against the true category, and the registration
target error at 20 brain landmarks of each pair. Writes
``bench/results/longitudinal-<UTC>.json`` and ``bench/results/longitudinal-latest.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
N_PAIRS = int(os.environ.get("ONCOFLOW_BENCH_PAIRS", "40"))


def main() -> int:
    from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

    from oncoflow.core.change_thresholds import ChangeThresholds
    from oncoflow.core.config import REPO_ROOT
    from oncoflow.measure.fusion import majority_vote
    from oncoflow.measure.longitudinal_comparison import TimePointData, compare
    from oncoflow.measure.mask_metrics import volume_cm3
    from oncoflow.phantoms.longitudinal_phantom import landmarks_mm, make_validation_set

    names = ("nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2")
    experts = [NnUNetExpert(REPO_ROOT / "inference" / "model_repository" / n / "1" / "nnunet", name=n,
                           input_channels=["t1c"]) for n in names]
    for expert in experts:
        expert.load()
    thresholds = ChangeThresholds()
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    cases = make_validation_set(N_PAIRS)
    pairs: list[dict[str, Any]] = []
    for case in cases:
        truth_pct = case.true_percent_change(0, 1)
        truth_flag = case.true_category(0, 1, thresholds)
        row: dict[str, Any] = {"seed": case.seed, "anatomy": case.anatomy, "true_percent_change": round(truth_pct, 2),
                               "true_category": truth_flag}
        for mode in ("truth", "panel"):
            points = []
            for visit in case.time_points:
                volume = visit.phantom.volume
                if mode == "truth":
                    mask = visit.phantom.tumour_mask
                    expert_volumes = {"truth": volume_cm3(mask, volume.voxel_volume_mm3)}
                else:
                    masks = {e.name: e.predict(volume.voxels, volume.spacing_mm).mask for e in experts}
                    mask = majority_vote(masks)
                    expert_volumes = {n: volume_cm3(m, volume.voxel_volume_mm3) for n, m in masks.items()}
                points.append(TimePointData(f"{case.seed}-{mode}", visit.study_date, volume, mask, expert_volumes))
            result = compare(points[0], points[1], thresholds, "elastix")
            error = None if result.percent_change is None else result.percent_change - truth_pct
            category = None if result.percent_change is None else thresholds.category(result.percent_change)
            row[mode] = {"percent_change": result.percent_change, "error_points": error, "flag": result.flag,
                         "flag_correct": result.flag == truth_flag, "category_correct": category == truth_flag,
                         "ncc_after": result.registration_ncc_after,
                         "registration_s": result.registration_s, "method": result.registration_method,
                         "ci95": result.percent_change_ci95}
            if mode == "truth":
                landmarks = landmarks_mm(case)
                motion = case.time_points[1].motion_to_baseline
                seen = (np.linalg.inv(motion) @ np.c_[landmarks, np.ones(len(landmarks))].T)
                mapped = (result.follow_up_to_baseline_lps @ seen).T[:, :3]
                tre = np.linalg.norm(mapped - landmarks, axis=1)
                row["tre_mm"] = {"median": float(np.median(tre)), "max": float(tre.max())}
        pairs.append(row)
        print(json.dumps(row), flush=True)
        write(pairs, started, stamp)  # after every pair: a long run that is stopped keeps what it measured

    result = write(pairs, started, stamp)
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}, indent=2))
    return 0


def write(pairs: list[dict[str, Any]], started: float, stamp: str) -> dict[str, Any]:
    """Summarise the pairs measured so far and write them to bench/results."""

    def summary(mode: str) -> dict[str, Any]:
        errors = np.abs([p[mode]["error_points"] for p in pairs if p[mode]["error_points"] is not None])
        return {
            "median_abs_error_points": round(float(np.median(errors)), 2),
            "p95_abs_error_points": round(float(np.percentile(errors, 95)), 2),
            "flag_accuracy": round(float(np.mean([p[mode]["flag_correct"] for p in pairs])), 3),
            "category_accuracy_of_percent_change": round(float(np.mean(
                [p[mode].get("category_correct", False) for p in pairs])), 3),
            "review_flags": sum(p[mode]["flag"] in ("poor registration", "high uncertainty") for p in pairs),
            "flag_accuracy_without_review_flags": round(float(np.mean(
                [p[mode]["flag_correct"] for p in pairs if p[mode]["flag"] not in ("poor registration",
                                                                                      "high uncertainty")] or [0])), 3),
        }

    tre_medians = [p["tre_mm"]["median"] for p in pairs]
    result = {
        "benchmark": "longitudinal",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_pairs": len(pairs),
        "n_pairs_planned": N_PAIRS,
        "truth_masks": summary("truth"),
        "panel": summary("panel"),
        "tre_mm": {"median_of_pair_medians": round(float(np.median(tre_medians)), 3),
                   "worst_pair_median": round(float(np.max(tre_medians)), 3),
                   "max": round(float(max(p["tre_mm"]["max"] for p in pairs)), 3)},
        "registration_s_median": round(float(np.median([p["truth"]["registration_s"] for p in pairs])), 2),
        "registration_method": pairs[0]["truth"]["method"],
        "seconds": round(time.perf_counter() - started, 1),
        "goals": {"median_abs_error_points": 3.0, "p95_abs_error_points": 10.0, "flag_accuracy": 0.95,
                  "tre_median_mm": 1.0},
        "pairs": pairs,
    }

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / f"longitudinal-{stamp}.json").write_text(text + "\n")
    (RESULTS / "longitudinal-latest.json").write_text(text + "\n")
    return result


def rescore(path: Path) -> int:
    """Re-apply the current change flag rule (``change_flag``) to the measurements stored in a run's JSON (% change,
    CI, NCC): the flag accuracy today of those measurements, without measuring again. Prints it; writes nothing."""
    from oncoflow.core.change_thresholds import ChangeThresholds
    from oncoflow.measure.change_flags import change_flag

    run, thresholds = json.loads(path.read_text()), ChangeThresholds()
    review = ("poor registration", "high uncertainty")
    out: dict[str, Any] = {"rescored": str(path), "measured_utc": run["utc"], "n_pairs": len(run["pairs"])}
    for mode in ("truth", "panel"):
        flags = []
        for pair in run["pairs"]:
            measured = pair[mode]
            ci = None if measured["ci95"] is None else tuple(measured["ci95"])
            flag, _ = change_flag(100.0, 100.0 + measured["percent_change"], ci, measured["ncc_after"], thresholds)
            flags.append((flag, pair["true_category"]))
        kept = [(f, t) for f, t in flags if f not in review]
        out[mode] = {"flag_accuracy": round(float(np.mean([f == t for f, t in flags])), 3),
                     "review_flags": len(flags) - len(kept),
                     "flag_accuracy_without_review_flags": round(float(np.mean([f == t for f, t in kept] or [0])), 3)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rescore":  # bench/longitudinal.py --rescore bench/results/<run>.json
        sys.exit(rescore(Path(sys.argv[2])))
    sys.exit(main())
