"""Accuracy of a panel on studies it was not trained on (``make evaluate-panel``).

The demo experts learn from :mod:`oncoflow.phantoms.training_generator` (MNI152 heads, noise blobs, random
contrasts). They are judged here on :mod:`oncoflow.phantoms.evaluation_generator` only: Colin27's full head,
gliomas grown by reaction-diffusion, fixed protocol contrasts, a tilted head, each sequence on its own scanner grid
(T1c 3-D 1.2 mm, T1, T2 and FLAIR 2-D with 5 mm slices). The path is the pipeline's:

* the sequences the experts take, co-registered onto the T1c grid by :class:`SequenceAlignment` (elastix rigid);
* deepbet's brain mask on the T1c, the brain alone for the experts that want it, each mask cut to the brain;
* each expert loaded from its ``config.pbtxt`` as the worker loads it; the regions fused by majority vote
  (:func:`oncoflow.measure.region_fusion.fuse_regions`); the plausibility guard on the largest region.

Measured, per expert and fused, for each region an expert gives (ET, TC, WT):

* Dice against the truth on the T1c grid;
* lesion detection (the fused TC touches the true core) and false-positive lesions per scan (fused WT pieces,
  26-connected, that touch no true tumour);
* fused voxels outside the anatomy's true brain (not deepbet's: that one bounds the masks by construction);
* false-positive volume on tumour-free heads, and whether the guard let it pass;
* the percent change of TC and WT between two snapshots of one tumour (a follow-up), against the true change.

Writes ``bench/results/panel-accuracy-<UTC>.json`` and ``panel-accuracy-latest.json`` (:mod:`bench_results`).

    python bench/evaluate_panel.py --patients 20 --tumour-free 6 [--panel synth=nnunet_synth_4seq,... --panel ...]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from bench_results import write_result
from pydicom.dataset import Dataset
from scipy import ndimage

from oncoflow.core.config import DEFAULT_PANEL, REPO_ROOT, load_settings
from oncoflow.core.mr_channels import Channel
from oncoflow.core.tumour_compartments import REGIONS, Region, region_mask
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import SortedSeries
from oncoflow.measure.mask_metrics import dice, volume_cm3
from oncoflow.measure.region_fusion import ExpertOutputRegions, fuse_regions
from oncoflow.measure.segmentation_plausibility import assess_plausibility
from oncoflow.phantoms.evaluation_generator import FULL_PROTOCOL, EvaluationStudy, evaluation_study, grow_tumour
from oncoflow.pipeline.sequence_alignment import SequenceAlignment

SNAPSHOTS_CM3 = (3.0, 9.0)  # tumour core at baseline and follow-up (about +200 %)
REPOSITORY = REPO_ROOT / "inference" / "model_repository"


@dataclass(frozen=True)
class Fused:
    """One panel's fused regions on a study, and the guard's verdict on the largest."""

    regions: dict[Region, npt.NDArray[np.bool_]]
    guard: str

    @property
    def largest(self) -> npt.NDArray[np.bool_]:
        return self.regions[max(self.regions, key=REGIONS.index)]


@dataclass(frozen=True)
class PanelOutput:
    """One study through the experts: each expert's regions, each panel's fusion, the brain."""

    experts: dict[str, ExpertOutputRegions]
    fused: dict[str, Fused]  # panel name -> its fusion
    brain: npt.NDArray[np.bool_]
    left_out: dict[str, str]


class Panel:
    """deepbet and the panels' nnU-Net experts, built from the model repository as the worker builds them."""

    def __init__(self, panels: dict[str, list[str]]) -> None:
        from oncoflow_inference.expert_registry import build_expert
        from oncoflow_inference.experts.brain_extraction_expert import BrainExtractionExpert
        from oncoflow_inference.experts.nnunet_expert import NnUNetExpert
        from oncoflow_inference.model_repository import load_model_config

        settings = load_settings({})
        self.alignment = SequenceAlignment(settings)
        self.deepbet = BrainExtractionExpert("deepbet", None, torch_threads=2)
        self.deepbet.load()
        self.experts: dict[str, NnUNetExpert] = {}
        self.skull_stripped: dict[str, bool] = {}
        self.panels = panels
        for name in dict.fromkeys(n for members in panels.values() for n in members):
            config = load_model_config(REPOSITORY / name)
            expert = build_expert(config, settings)
            if not isinstance(expert, NnUNetExpert):
                raise SystemExit(f"{name}: not an nnU-Net segmenter (this benchmark runs the segmenters)")
            expert.load()
            if not expert.ready:
                raise SystemExit(f"{name}: {expert.not_ready_reason}")
            self.experts[name] = expert
            self.skull_stripped[name] = config.parameters.get("skull_stripped", "false").lower() == "true"
        if not self.deepbet.ready:
            raise SystemExit(f"deepbet: {self.deepbet.not_ready_reason}")

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The sequences the experts take, T1c (the reference) first."""
        wanted = {c for e in self.experts.values() for c in e.channels} | {"t1c"}
        return ("t1c", *sorted(wanted - {"t1c"}))  # type: ignore[return-value]

    def brain(self, volume: Volume) -> npt.NDArray[np.bool_]:
        from oncoflow_inference.segmentation_tensors import AFFINE_LPS, BRAIN_MASK, IMAGE, SPACING_MM

        result = self.deepbet.infer({IMAGE: volume.voxels, SPACING_MM: np.asarray(volume.spacing_mm, np.float32),
                                     AFFINE_LPS: volume.affine_lps().astype(np.float32)}, {BRAIN_MASK})
        return result.outputs[BRAIN_MASK] > 0

    def segment(self, images: dict[Channel, Volume], frame_of_reference: str) -> PanelOutput:
        """Align, extract the brain, run every expert and fuse, as the pipeline does for one study."""
        def series(volume: Volume) -> SortedSeries:
            header = Dataset()
            header.FrameOfReferenceUID = frame_of_reference
            return SortedSeries([header], volume)

        reference = images["t1c"]
        aligned = self.alignment.align("t1c", series(reference),
                                       {k: series(v) for k, v in images.items() if k != "t1c"})
        brain = self.brain(reference)
        outputs: dict[str, ExpertOutputRegions] = {}
        for name, expert in self.experts.items():
            if any(c not in aligned.volumes for c in expert.channels):
                continue  # a sequence left out: the pipeline skips this expert too
            stacked = np.stack([aligned.volumes[c].voxels for c in expert.channels]).astype(np.float32)
            if self.skull_stripped[name]:
                stacked = np.where(brain[None], stacked, np.float32(0)).astype(np.float32)
            mask = expert.predict(stacked, reference.spacing_mm).mask
            mask = np.where(brain, mask, 0).astype(np.uint8)
            compartments = frozenset(expert.compartments.values())
            outputs[name] = ExpertOutputRegions(mask, compartments, None if compartments else expert.tumour_region)
        fused = {}
        for panel, members in self.panels.items():
            fusion = fuse_regions({n: outputs[n] for n in members if n in outputs}, reference.voxel_volume_mm3,
                                  "majority")
            regions = {r: fusion.regions[r].mask > 0 for r in REGIONS if r in fusion.regions}
            largest = regions[max(regions, key=REGIONS.index)]
            guard = assess_plausibility(largest.astype(np.uint8), reference.voxel_volume_mm3, brain.astype(np.uint8),
                                        {})
            fused[panel] = Fused(regions, guard.verdict)
        return PanelOutput(outputs, fused, brain, aligned.left_out)


def _pieces_touching_nothing(mask: npt.NDArray[np.bool_], truth_any: npt.NDArray[np.bool_]) -> int:
    """Connected pieces (26-connected) of ``mask`` that touch no true tumour (any compartment)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    touching = set(np.unique(labels[truth_any & mask]).tolist()) - {0}
    return count - len(touching)


def _stats(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    array = np.asarray(values, float)
    return {"n": int(array.size), "mean": round(float(array.mean()), 4), "median": round(float(np.median(array)), 4),
            "p10": round(float(np.percentile(array, 10)), 4), "min": round(float(array.min()), 4)}


def _default_experts() -> list[str]:
    """The default panel's nnU-Net segmenters (SAM2 and MedGemma need weights this machine cannot download)."""
    names = [n.strip() for n in DEFAULT_PANEL.split(",")]
    return [n for n in names if (REPOSITORY / n / "config.pbtxt").is_file()
            and 'string_value: "nnunet"' in (REPOSITORY / n / "config.pbtxt").read_text()]


def _study_row(seed: int, snapshot: int, study: EvaluationStudy, out: PanelOutput) -> dict[str, object]:
    volume = study.images["t1c"]
    voxel_mm3 = volume.voxel_volume_mm3
    truth_regions = {r: region_mask(study.truth, r) for r in REGIONS}

    def fused_row(fused: Fused) -> dict[str, object]:
        core = fused.regions.get("TC", fused.largest)
        return {
            "dice": {r: round(dice(m, truth_regions[r]), 4) for r, m in fused.regions.items()},
            "cm3": {r: round(volume_cm3(m, voxel_mm3), 3) for r, m in fused.regions.items()},
            "detected": bool(np.any(core & truth_regions["TC"])),
            "false_positive_lesions": _pieces_touching_nothing(fused.largest, study.truth > 0),
            "outside_true_brain_cm3": round(volume_cm3(fused.largest & ~study.brain, voxel_mm3), 3),
            "guard": fused.guard,
        }

    return {
        "seed": seed, "snapshot": snapshot, "shape": list(volume.shape),
        "true_cm3": {r: round(v, 3) for r, v in study.volumes_cm3.items()},
        "dice": {name: {r: round(dice(o.region_mask(r), truth_regions[r]), 4) for r in o.regions}
                 for name, o in out.experts.items()},
        "fused": {panel: fused_row(f) for panel, f in out.fused.items()},
        "left_out": out.left_out,
    }


def _panel_summary(panel: str, studies: list[dict[str, Any]], pairs: list[dict[str, Any]],
                   empty: list[dict[str, Any]]) -> dict[str, object]:
    rows = [s["fused"][panel] for s in studies]
    regions = sorted({r for row in rows for r in row["dice"]}, key=REGIONS.index)
    changes = {}
    for region in ("TC", "WT"):
        errors = [p[panel][region]["error_points"] for p in pairs if p[panel][region]["error_points"] is not None]
        changes[region] = {"pairs": len(pairs), "measured": len(errors),
                           "abs_error_points": _stats([abs(e) for e in errors]), "signed_error_points": _stats(errors)}
    free = [e["fused"][panel] for e in empty]
    return {
        "dice": {r: _stats([row["dice"][r] for row in rows if r in row["dice"]]) for r in regions},
        "detected": f"{sum(bool(row['detected']) for row in rows)} of {len(rows)}",
        "false_positive_lesions_per_scan": round(float(np.mean([row["false_positive_lesions"] for row in rows])), 3)
        if rows else None,
        "outside_true_brain_cm3": _stats([row["outside_true_brain_cm3"] for row in rows]),
        "review_flagged_by_guard": f"{sum(row['guard'] != 'plausible' for row in rows)} of {len(rows)}",
        "tumour_free": {"heads": len(free), "fused_fp_cm3": _stats([f["cm3"] for f in free]),
                        "with_any_fused_voxel": sum(f["cm3"] > 0 for f in free),
                        "review_flagged_by_guard": sum(f["guard"] != "plausible" for f in free)},
        "percent_change": changes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20, help="gliomas, each seen twice (baseline, follow-up)")
    parser.add_argument("--tumour-free", type=int, default=6, help="heads without a tumour")
    parser.add_argument("--first-seed", type=int, default=900_000)
    parser.add_argument("--panel", action="append", metavar="NAME=EXPERT,EXPERT",
                        help="a panel to fuse (repeatable); default: the default panel's nnU-Net segmenters")
    parser.add_argument("--name", default="panel-accuracy", help="result file prefix under bench/results/")
    args = parser.parse_args()
    panels = dict(_panel_argument(p) for p in args.panel) if args.panel else {"default": _default_experts()}

    started = time.perf_counter()
    panel = Panel(panels)
    protocol = {c: FULL_PROTOCOL[c] for c in panel.channels}
    studies: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    empty: list[dict[str, Any]] = []
    for patient in range(args.patients):
        seed = args.first_seed + patient
        try:
            tumour = grow_tumour(seed, SNAPSHOTS_CM3)
        except ValueError as exc:
            print(f"patient {seed}: {exc}", flush=True)
            continue
        measured = []
        for snapshot in range(len(SNAPSHOTS_CM3)):
            study = evaluation_study(seed, tumour, snapshot, protocol=protocol, channels=panel.channels)
            row = _study_row(seed, snapshot, study, panel.segment(study.images, f"1.2.826.0.1.3680043.8.498.{seed}"))
            studies.append(row)
            measured.append(row)
            print(json.dumps(row), flush=True)
        pair: dict[str, Any] = {"seed": seed}
        for name in panels:
            pair[name] = {}
            for region in ("TC", "WT"):
                true_change = 100.0 * (measured[1]["true_cm3"][region] / measured[0]["true_cm3"][region] - 1.0)
                before = measured[0]["fused"][name]["cm3"].get(region)
                after = measured[1]["fused"][name]["cm3"].get(region)
                change = 100.0 * (after / before - 1.0) if before and after is not None else None
                pair[name][region] = {"true_percent": round(true_change, 1),
                                      "measured_percent": None if change is None else round(change, 1),
                                      "error_points": None if change is None else round(change - true_change, 1)}
        pairs.append(pair)
    for index in range(args.tumour_free):
        seed = args.first_seed + 10_000 + index
        study = evaluation_study(seed, None, protocol=protocol, channels=panel.channels)
        out = panel.segment(study.images, f"1.2.826.0.1.3680043.8.498.{seed}")
        voxel_mm3 = study.images["t1c"].voxel_volume_mm3
        row = {"seed": seed, "fp_cm3": {n: round(volume_cm3(o.mask > 0, voxel_mm3), 3) for n, o in out.experts.items()},
               "fused": {name: {"cm3": round(volume_cm3(f.largest, voxel_mm3), 3), "guard": f.guard}
                         for name, f in out.fused.items()}}
        empty.append(row)
        print(json.dumps(row), flush=True)

    summary = {
        "what": "panels on held-out evaluation studies (Colin27 full heads, reaction-diffusion gliomas, fixed 3 T "
                f"contrasts, each sequence on its own grid: {', '.join(panel.channels)}; tilted)",
        "panels": panels,
        "experts": {n: {"channels": list(e.channels), "skull_stripped": panel.skull_stripped[n],
                        "dice": {r: _stats([s["dice"][n][r] for s in studies if r in s["dice"].get(n, {})])
                                 for r in REGIONS if any(r in s["dice"].get(n, {}) for s in studies)},
                        "tumour_free_cm3": _stats([e["fp_cm3"][n] for e in empty if n in e["fp_cm3"]])}
                    for n, e in panel.experts.items()},
        "fused": {name: _panel_summary(name, studies, pairs, empty) for name in panels},
        "seconds": round(time.perf_counter() - started, 1),
        "studies": studies, "pairs": pairs, "tumour_free_heads": empty,
    }
    write_result(args.name, summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("studies", "pairs", "tumour_free_heads")},
                     indent=1))
    return 0


def _panel_argument(text: str) -> tuple[str, list[str]]:
    name, _, experts = text.partition("=")
    members = [e.strip() for e in experts.split(",") if e.strip()]
    if not name or not members:
        raise SystemExit(f"--panel {text!r}: give NAME=EXPERT,EXPERT")
    return name.strip(), members


if __name__ == "__main__":
    raise SystemExit(main())
