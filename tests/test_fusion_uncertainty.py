"""Uncertainty of the reported numbers: leave-one-expert-out re-fusion, the intervals built from it, and experts
derived from another expert's output that do not vote. Oracles are counted by hand or with numpy here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.core.config import load_settings
from oncoflow.core.prompts import SliceBox
from oncoflow.core.tumour_compartments import Compartment
from oncoflow.core.volume import Volume
from oncoflow.measure.change_flags import change_flag
from oncoflow.measure.lesion_metrics import volume_ci95
from oncoflow.measure.longitudinal_comparison import change_ci95_from_masks
from oncoflow.measure.region_fusion import ExpertOutputRegions, fuse_regions
from oncoflow.pipeline.expert_panel import ExpertPanel
from oncoflow.pipeline.time_point import leave_one_out
from oncoflow.pipeline.worker_client import LocalisationResult, ModelInfo, SegmentationResult

T_2 = 4.302652729911275  # t_{0.975, 2}
CM3 = 1000.0  # voxel volume in mm³: one voxel is 1 cm³, so volumes are voxel counts


def segment(start: int, stop: int, length: int = 30) -> np.ndarray:
    """A binary mask on a (1, 1, length) grid: voxels ``start`` to ``stop - 1``."""
    mask = np.zeros((1, 1, length), np.uint8)
    mask[0, 0, start:stop] = 1
    return mask


# baseline: a 10, b 12, c 18 voxels. Majority (2 of 3): 0-11 = 12. Two experts: both must agree (intersection).
BASELINE = {"a": segment(0, 10), "b": segment(0, 12), "c": segment(2, 20)}
# follow-up: a 16, b 18, c 21 voxels. Majority: 0-17 = 18.
FOLLOW_UP = {"a": segment(0, 16), "b": segment(0, 18), "c": segment(3, 24)}


def binary(masks: dict[str, np.ndarray]) -> dict[str, ExpertOutputRegions]:
    return {n: ExpertOutputRegions(m, frozenset(), "TC") for n, m in masks.items()}


def jackknife_se(replicates: list[float]) -> float:
    mean = sum(replicates) / len(replicates)
    n = len(replicates)
    return math.sqrt((n - 1) / n * sum((r - mean) ** 2 for r in replicates))


def test_leave_one_out_refusion_and_the_volume_interval_around_the_fused_volume() -> None:
    fusion = fuse_regions(binary(BASELINE), CM3, driving_region="TC")
    assert fusion.driving.volume_cm3 == 12.0  # voxels 0-11
    # a left out: b ∩ c = 2-11 (10); b left out: a ∩ c = 2-9 (8); c left out: a ∩ b = 0-9 (10)
    assert fusion.leave_one_out_cm3 == {"a": 10.0, "b": 8.0, "c": 10.0}
    assert fusion.summary()["leave_one_out_volumes_cm3"] == {"a": 10.0, "b": 8.0, "c": 10.0}
    assert fusion.summary()["voting_experts"] == ["a", "b", "c"]
    ci = volume_ci95(fusion.driving.volume_cm3, fusion.leave_one_out_cm3)
    se = math.sqrt(2 / 3 * ((10 - 28 / 3) ** 2 + (8 - 28 / 3) ** 2 + (10 - 28 / 3) ** 2))  # = 4/3
    assert se == pytest.approx(4 / 3)
    assert ci is not None and ci.standard_error == pytest.approx(se)
    assert (ci.low, ci.high) == pytest.approx((12 - T_2 * se, 12 + T_2 * se))
    experts_mean = (10 + 12 + 18) / 3
    assert (ci.low + ci.high) / 2 == pytest.approx(12.0) != experts_mean  # the reported number, not the mean


def test_change_interval_for_a_pair_of_visits_from_the_experts_masks_and_its_flag() -> None:
    ci = change_ci95_from_masks(BASELINE, FOLLOW_UP, CM3, CM3)
    estimate = 100 * (18 - 12) / 12  # the fused volumes' change: +50 %
    # follow-up without a: b ∩ c = 3-17 (15); without b: a ∩ c = 3-15 (13); without c: a ∩ b = 0-15 (16)
    replicates = [100 * (15 - 10) / 10, 100 * (13 - 8) / 8, 100 * (16 - 10) / 10]  # a, b, c out at both visits
    se = jackknife_se(replicates)
    assert ci is not None and ci.n_experts == 3
    assert ci.estimate == pytest.approx(estimate)
    assert (ci.low, ci.high) == pytest.approx((estimate - T_2 * se, estimate + T_2 * se))  # 17.1 % to 82.9 %
    means = [sum(int(m.sum()) for m in v.values()) / 3 for v in (BASELINE, FOLLOW_UP)]
    assert 100 * (means[1] - means[0]) / means[0] == pytest.approx(37.5)  # the experts' means: not what is reported
    flag, reason = change_flag(12.0, 18.0, (ci.low, ci.high), 0.9)
    assert flag == "high uncertainty" and "+25%" in reason  # the interval straddles the progression threshold
    delta = change_ci95_from_masks(BASELINE, FOLLOW_UP, CM3, CM3, statistic="delta_cm3")
    assert delta is not None and delta.estimate == pytest.approx(6.0)
    assert delta.standard_error == pytest.approx(jackknife_se([15 - 10, 13 - 8, 16 - 10]))


def test_the_flag_follows_the_interval_not_its_width() -> None:
    """Experts that agree closely give an interval above +25 %: progression, not review."""
    baseline = {"a": segment(0, 100, 200), "b": segment(0, 100, 200), "c": segment(0, 101, 200)}  # fused 0-99
    follow_up = {"a": segment(0, 150, 200), "b": segment(0, 151, 200), "c": segment(0, 152, 200)}  # fused 0-150
    ci = change_ci95_from_masks(baseline, follow_up, CM3, CM3)
    # baseline without any one: 100; follow-up without a: b ∩ c = 151, without b or c: 150
    replicates = [100 * 51 / 100, 100 * 50 / 100, 100 * 50 / 100]
    assert ci is not None and ci.estimate == pytest.approx(51.0)
    assert ci.standard_error == pytest.approx(jackknife_se(replicates)) == pytest.approx(2 / 3)
    assert ci.low == pytest.approx(51.0 - T_2 * 2 / 3) and ci.low > 25.0
    assert change_flag(100.0, 151.0, (ci.low, ci.high), 0.9)[0] == "progression"


def test_a_derived_expert_is_measured_but_does_not_vote() -> None:
    sam2 = segment(0, 10)  # SAM2 prompted with a's boxes: it outlines what a found
    experts = binary({**BASELINE, "sam2": sam2})
    counted = fuse_regions(experts, CM3, driving_region="TC")  # as if it were independent: 4 voters, 3 must agree
    assert counted.driving.volume_cm3 == 10.0  # 0-9 (a, sam2 and b or c); 10-11 now b and c only: out
    fusion = fuse_regions(experts, CM3, driving_region="TC", derived_from={"sam2": "a"})
    alone = fuse_regions(binary(BASELINE), CM3, driving_region="TC")
    np.testing.assert_array_equal(fusion.driving.mask, alone.driving.mask)  # the vote of a, b, c
    assert fusion.driving.voters == ("a", "b", "c")
    assert fusion.leave_one_out_cm3 == {"a": 10.0, "b": 8.0, "c": 10.0}  # not a replicate of its own
    assert fusion.driving.agreement_score == alone.driving.agreement_score  # among the voters
    measured = fusion.driving.experts["sam2"]  # against the fused mask 0-11: all of its 10 voxels
    assert measured.dice == pytest.approx(round(2 * 10 / (10 + 12), 4)) and measured.volume_cm3 == 10.0
    summary = fusion.summary()
    assert summary["derived_experts"] == {"sam2": "a"}
    assert summary["regions"]["TC"]["voters"] == ["a", "b", "c"] and "sam2" in summary["regions"]["TC"]["experts"]


def test_derived_experts_vote_only_when_no_independent_expert_gives_the_region() -> None:
    fusion = fuse_regions(binary({"medgemma": segment(0, 6)}), CM3, driving_region="TC",
                          derived_from={"medgemma": "medgemma"})
    assert fusion.driving.voters == ("medgemma",) and fusion.driving.volume_cm3 == 6.0
    assert fusion.leave_one_out_cm3 == {}  # one voter: nothing to leave out


def ball(shape: tuple[int, int, int], radius: float, centre: tuple[float, float, float]) -> np.ndarray:
    k, i, j = np.indices(shape)
    return ((k - centre[0]) ** 2 + (i - centre[1]) ** 2 + (j - centre[2]) ** 2) <= radius**2


def glioma(shift: int, rim: float = 6) -> np.ndarray:
    """Oedema 1 (radius 9) around enhancing 3 (radius ``rim``) around necrosis 2 (radius 3)."""
    shape, centre = (24, 24, 24), (12.0, 12.0, 12.0 + shift)
    labels = np.zeros(shape, np.uint8)
    labels[ball(shape, 9, centre)] = 1
    labels[ball(shape, rim, centre)] = 3
    labels[ball(shape, 3, centre)] = 2
    return labels


def test_leave_one_out_of_compartment_maps_rebuilds_the_compartments() -> None:
    maps = {"a": glioma(0), "b": glioma(1, rim=7), "c": glioma(-2, rim=5)}
    every = frozenset({Compartment.OEDEMA, Compartment.NECROSIS, Compartment.ENHANCING})
    experts = {n: ExpertOutputRegions(m, every) for n, m in maps.items()}
    for region, labels in (("ET", (3,)), ("WT", (1, 2, 3))):
        fusion = fuse_regions(experts, 1.0, driving_region=region)  # type: ignore[arg-type]
        pairs = {"a": ("b", "c"), "b": ("a", "c"), "c": ("a", "b")}
        # two experts: a voxel is in the region when both say so; ET is not widened, WT holds everything inside it
        expected = {out: float(np.count_nonzero(np.isin(maps[x], labels) & np.isin(maps[y], labels))) / 1000
                    for out, (x, y) in pairs.items()}
        assert fusion.leave_one_out_cm3 == pytest.approx(expected)
        assert len(set(expected.values())) > 1  # the experts differ: a real spread


class FakeWorker:
    """Two segmenters, SAM2 and MedGemma, answering from fixed masks and boxes."""

    url = "fake://worker"

    def __init__(self, sam2_ready: bool = True) -> None:
        self.sam2_ready = sam2_ready
        self.prompted: list[tuple[str, int]] = []

    def describe(self, names: Any) -> dict[str, ModelInfo]:
        segmenter = {"inputs": frozenset({"IMAGE", "SPACING_MM"}), "outputs": frozenset({"MASK"})}
        return {
            "seg_a": ModelInfo("seg_a", "READY", None, **segmenter),  # type: ignore[arg-type]
            "seg_b": ModelInfo("seg_b", "READY", None, **segmenter),  # type: ignore[arg-type]
            "sam2": ModelInfo("sam2", "READY" if self.sam2_ready else "UNAVAILABLE",
                              None if self.sam2_ready else "not installed",
                              frozenset({"IMAGE", "BOXES"}), frozenset({"MASK"})),
            "medgemma": ModelInfo("medgemma", "READY", None, frozenset({"IMAGE"}), frozenset({"BOXES", "FINDINGS"})),
        }

    def segment(self, model: str, volume: Volume, boxes: Any = (), points: Any = (), with_probability: bool = False,
                image: Any = None) -> SegmentationResult:
        mask = np.zeros(volume.shape, np.uint8)
        if model == "seg_a":
            mask[1:3, 2:6, 2:6] = 1
        elif model == "seg_b":
            mask[1:3, 2:7, 2:7] = 1
        else:  # sam2: the boxes' voxels
            self.prompted.append((model, len(boxes)))
            for box in boxes:
                mask[box.slice_index, int(box.row_min):int(box.row_max) + 1, int(box.col_min):int(box.col_max) + 1] = 1
        return SegmentationResult(mask, None, model, "1", 0.01, 0.01)

    def localise(self, model: str, volume: Volume) -> LocalisationResult:
        boxes = (SliceBox(1, 1, 1, 6, 6), SliceBox(2, 1, 1, 6, 6))
        return LocalisationResult(boxes, "a lesion", model, "1", 0.01, 0.01)


def panel_run(worker: FakeWorker) -> Any:
    settings = load_settings({"ONCOFLOW_HOME": "/tmp/oncoflow-uncertainty-test",
                              "ONCOFLOW_PANEL": "seg_a,seg_b,sam2,medgemma", "ONCOFLOW_DRIVING_REGION": "TC"})
    volume = Volume(np.ones((4, 8, 8), np.float32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0),
                    (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    return ExpertPanel(settings, worker).run(volume)  # type: ignore[arg-type]


def test_the_panel_marks_sam2_prompted_by_a_segmenter_as_derived_and_medgemma_outlined_by_sam2_votes() -> None:
    result = panel_run(FakeWorker())
    assert result.runs["sam2"].derived_from == "seg_a"  # prompted with the first segmenter's boxes
    assert result.runs["medgemma"].derived_from is None  # its own boxes, outlined by SAM2
    assert result.regions.derived_from == {"sam2": "seg_a"}
    assert result.fusion.voters == ("seg_a", "seg_b", "medgemma")
    assert set(result.fusion.experts) == {"seg_a", "seg_b", "sam2", "medgemma"}
    assert set(result.regions.leave_one_out_cm3) == {"seg_a", "seg_b", "medgemma"}
    assert result.runs["sam2"].summary()["derived_from"] == "seg_a"


def test_medgemma_boxes_filled_without_sam2_are_derived() -> None:
    result = panel_run(FakeWorker(sam2_ready=False))
    assert result.runs["medgemma"].mask_from == "filled boxes"
    assert result.runs["medgemma"].derived_from == "medgemma"
    assert result.fusion.voters == ("seg_a", "seg_b")
    # two segmenters: both must agree, 2 slices x 4 x 4 voxels of 1 mm³; each left out leaves the other's mask
    assert result.fusion.volume_cm3 == pytest.approx(32 / 1000)
    assert result.regions.leave_one_out_cm3 == pytest.approx({"seg_a": 50 / 1000, "seg_b": 32 / 1000})


def test_a_time_point_reads_the_stored_leave_one_out_volumes() -> None:
    outputs = {"leave_one_out_volumes_cm3": {"a": 10.0, "b": 8.0}, "voting_experts": ["a", "b"]}
    assert leave_one_out(outputs) == ({"a": 10.0, "b": 8.0}, ("a", "b"))
    assert leave_one_out({"experts": {}}) == (None, None)  # a job from before: no interval
    assert ChangeThresholds().progression_percent == 25.0  # the threshold the flag tests above straddle


@pytest.mark.parametrize("driving", ["ET", "TC", "WT"])
def test_leave_one_out_is_the_job_fusion_re_run_without_that_expert(driving: str) -> None:
    """Consistency with the fusion the job runs: each leave-one-out volume equals fuse_regions run again on the
    panel less that expert (compartment maps and binary tumour cores mixed; compartments rebuilt or not)."""
    every = frozenset({Compartment.OEDEMA, Compartment.NECROSIS, Compartment.ENHANCING})
    core = ball((24, 24, 24), 7, (12.0, 12.0, 13.0)).astype(np.uint8)
    panels = [
        {"a": ExpertOutputRegions(glioma(0), every), "b": ExpertOutputRegions(glioma(1, rim=7), every),
         "c": ExpertOutputRegions(glioma(-2, rim=5), every), "d": ExpertOutputRegions(core, frozenset(), "TC")},
        # one compartment map: without it, ET and WT are not fused and TC is not widened
        {"a": ExpertOutputRegions(glioma(0), every), "d": ExpertOutputRegions(core, frozenset(), "TC"),
         "e": ExpertOutputRegions(np.roll(core, 2, axis=2), frozenset(), "TC")},
    ]
    for experts in panels:
        fusion = fuse_regions(experts, 8.0, driving_region=driving)  # type: ignore[arg-type]
        assert set(fusion.leave_one_out_cm3) == set(fusion.driving.voters if len(fusion.driving.voters) > 1 else ())
        for left_out, volume in fusion.leave_one_out_cm3.items():
            again = fuse_regions({n: o for n, o in experts.items() if n != left_out}, 8.0,
                                 driving_region=fusion.driving_region)
            assert volume == pytest.approx(again.driving.volume_cm3, abs=1e-3), (driving, left_out)


def test_no_interval_when_a_re_fusion_is_impossible() -> None:
    """Weighted vote: without ``a`` the experts left weigh nothing, so that replicate (and the interval) is missing;
    the job's own fusion still stands."""
    fusion = fuse_regions(binary(BASELINE), CM3, "weighted", {"a": 1.0, "b": 0.0, "c": 0.0}, driving_region="TC")
    assert fusion.driving.volume_cm3 == 10.0  # a alone decides
    assert fusion.leave_one_out_cm3 == {}
    assert volume_ci95(fusion.driving.volume_cm3, fusion.leave_one_out_cm3) is None
