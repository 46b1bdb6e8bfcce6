"""Fusion strategies and agreement on constructed masks whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.measure.fusion import (
    FusionError,
    agreement_flag,
    agreement_score,
    confidence_weighted,
    fuse,
    majority_vote,
    staple,
    weighted_vote,
)
from oncoflow.measure.mask_metrics import dice, iou, volume_cm3


def cube(lo: int, hi: int, shape: tuple[int, int, int] = (8, 8, 8)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[lo:hi, lo:hi, lo:hi] = 1
    return mask


def test_metrics_on_known_overlaps() -> None:
    a = np.zeros((1, 1, 4), np.uint8)
    b = np.zeros((1, 1, 4), np.uint8)
    a[0, 0, :2] = 1  # voxels 0, 1
    b[0, 0, 1:4] = 1  # voxels 1, 2, 3
    assert dice(a, b) == pytest.approx(2 * 1 / (2 + 3))
    assert iou(a, b) == pytest.approx(1 / 4)
    assert dice(np.zeros(4), np.zeros(4)) == 1.0 and iou(np.zeros(4), np.zeros(4)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert volume_cm3(b, voxel_volume_mm3=2.0) == pytest.approx(3 * 2.0 / 1000)
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.zeros((2, 2)))


def test_majority_vote_counts_voxels() -> None:
    # along one line: expert 1 says voxels 0-2, expert 2 voxels 1-3, expert 3 voxels 2-4
    masks = {f"e{i}": np.zeros((1, 1, 6), np.uint8) for i in range(3)}
    for i, mask in enumerate(masks.values()):
        mask[0, 0, i: i + 3] = 1
    fused = majority_vote(masks)
    assert fused[0, 0].tolist() == [0, 1, 1, 1, 0, 0]  # 2 of 3 on voxels 1 and 3, 3 of 3 on voxel 2


def test_majority_with_two_experts_needs_both() -> None:
    a, b = cube(0, 4), cube(2, 6)
    assert np.array_equal(majority_vote({"a": a, "b": b}), a & b)


def test_one_empty_expert_leaves_the_others_consensus() -> None:
    a, b = cube(1, 5), cube(2, 6)
    result = fuse({"a": a, "b": b, "empty": np.zeros_like(a)}, voxel_volume_mm3=1.0)
    assert np.array_equal(result.mask, a & b)
    assert result.experts["empty"].dice == 0.0 and result.experts["empty"].volume_cm3 == 0.0
    # pairwise Dice: a-b = 2*27/(64+64), a-empty = 0, b-empty = 0
    assert result.agreement_score == pytest.approx(round((2 * 27 / 128) / 3, 4))
    assert result.flag == "low"


def test_weights_decide_the_vote() -> None:
    a, b, c = cube(0, 4), cube(4, 8), cube(4, 8)
    heavy_a = weighted_vote({"a": a, "b": b, "c": c}, {"a": 3.0, "b": 1.0, "c": 1.0})
    assert np.array_equal(heavy_a, a)  # 3/5 > 0.5
    equal = weighted_vote({"a": a, "b": b, "c": c}, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert np.array_equal(equal, b)  # b and c outvote a
    with pytest.raises(FusionError, match="no fusion weight"):
        weighted_vote({"a": a, "b": b}, {"a": 1.0})
    with pytest.raises(FusionError, match="needs ONCOFLOW_FUSION_WEIGHTS"):
        fuse({"a": a}, 1.0, "weighted")


def test_confidence_weighted_averages_probabilities() -> None:
    shape = (1, 1, 3)
    masks = {"soft": np.array([[[1, 1, 0]]], np.uint8), "hard": np.array([[[0, 1, 1]]], np.uint8)}
    soft = np.array([[[0.9, 0.6, 0.45]]], np.float32)
    fused = confidence_weighted(masks, {"soft": soft, "hard": None})
    # means: (0.9 + 0) / 2 = 0.45, (0.6 + 1) / 2 = 0.8, (0.45 + 1) / 2 = 0.725
    assert fused.reshape(-1).tolist() == [0, 1, 1]
    assert fused.shape == shape


def test_staple_against_a_hand_computed_case() -> None:
    # Two experts outline the same 4x4x4 cube, the third sees nothing. EM converges to the
    # cube as truth, with sensitivity 1, 1, 0 and specificity 1 for all three.
    a = cube(2, 6)
    fused, rates = staple({"a": a, "b": a.copy(), "blind": np.zeros_like(a)})
    assert np.array_equal(fused, a)
    assert rates["a"][0] == pytest.approx(1.0, abs=1e-3) and rates["b"][0] == pytest.approx(1.0, abs=1e-3)
    assert rates["blind"][0] == pytest.approx(0.0, abs=1e-3)
    assert all(r[1] == pytest.approx(1.0, abs=1e-3) for r in rates.values())


def test_staple_weighs_a_reliable_expert_up() -> None:
    # Three experts: two agree on a cube, the third adds a shell of false positives around it.
    # STAPLE keeps the cube and rates the third's specificity below the others'.
    a = cube(3, 5, (10, 10, 10))
    noisy = cube(1, 7, (10, 10, 10))
    result = fuse({"a": a, "b": a.copy(), "noisy": noisy}, 1.0, "staple")
    assert np.array_equal(result.mask, a)
    assert result.experts["noisy"].staple_specificity < result.experts["a"].staple_specificity


def test_agreement_flags() -> None:
    assert agreement_flag(0.95) == "high" and agreement_flag(0.90) == "high"
    assert agreement_flag(0.89) == "review" and agreement_flag(0.75) == "review"
    assert agreement_flag(0.74) == "low"
    assert agreement_flag(None) == "single expert"
    assert agreement_score({"only": cube(0, 2)}) is None
    same = fuse({"a": cube(0, 4), "b": cube(0, 4)}, 0.5)
    assert same.agreement_score == 1.0 and same.flag == "high"
    assert same.volume_cm3 == pytest.approx(64 * 0.5 / 1000, abs=1e-3)


def test_shapes_must_match() -> None:
    with pytest.raises(FusionError, match="differ in shape"):
        majority_vote({"a": cube(0, 2), "b": np.zeros((2, 2, 2), np.uint8)})
    with pytest.raises(FusionError, match="no expert mask"):
        majority_vote({})
