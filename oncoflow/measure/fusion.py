"""Fusion of the panel's tumour masks into one, and how well the experts agree.

Strategies (``ONCOFLOW_FUSION``):

* ``majority`` (default): a voxel is tumour when more than half of the experts say so
  (with two experts, both must);
* ``staple``: SimpleITK's ``STAPLEImageFilter`` (Warfield et al. 2004) estimates each
  expert's sensitivity and specificity and the truth by expectation–maximisation; the
  fused mask is the voxels whose estimated tumour probability is at least 0.5;
* ``weighted``: a vote weighted by ``ONCOFLOW_FUSION_WEIGHTS``; tumour when the
  weighted share of experts saying so exceeds 0.5;
* ``confidence``: the weighted mean of the experts' tumour probabilities exceeds 0.5;
  an expert that gives no probability contributes its binary mask (0 or 1).

Agreement: the score is the mean Dice over all pairs of experts (two empty masks
agree), independent of the fused mask it is compared with. Its flag: ≥ 0.90 "high",
0.75–0.90 "review", below 0.75 "low" (manual check). With a single expert there is
no agreement to measure: score ``None``, flag "single expert".

The experts given here all vote. Which experts vote at all is decided by the caller: experts derived from another
expert's output (:mod:`oncoflow.measure.region_fusion`, docs/uncertainty.md) are measured against the fused mask
but are not given to the fusion, nor counted in the agreement score.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from oncoflow.measure.mask_metrics import dice, iou, volume_cm3

FusionStrategy = Literal["majority", "staple", "weighted", "confidence"]
STRATEGIES: tuple[FusionStrategy, ...] = ("majority", "staple", "weighted", "confidence")
AgreementFlag = Literal["high", "review", "low", "single expert"]
HIGH_AGREEMENT = 0.90
REVIEW_AGREEMENT = 0.75


class FusionError(ValueError):
    """The masks cannot be fused (none given, shapes differ, weights missing)."""


@dataclass(frozen=True)
class ExpertAgreement:
    """One expert measured against the fused mask."""

    dice: float
    iou: float
    volume_cm3: float
    staple_sensitivity: float | None = None  # STAPLE's estimate, only with the staple strategy
    staple_specificity: float | None = None


@dataclass(frozen=True)
class FusionResult:
    mask: npt.NDArray[np.uint8]
    strategy: FusionStrategy
    volume_cm3: float
    agreement_score: float | None  # mean pairwise Dice between experts
    flag: AgreementFlag
    experts: dict[str, ExpertAgreement] = field(default_factory=dict)  # the voters and any expert measured beside
    voters: tuple[str, ...] = ()  # the experts whose masks were fused (agreement_score is among them)


def agreement_flag(score: float | None) -> AgreementFlag:
    if score is None:
        return "single expert"
    if score >= HIGH_AGREEMENT:
        return "high"
    return "review" if score >= REVIEW_AGREEMENT else "low"


def agreement_score(masks: Mapping[str, np.ndarray]) -> float | None:
    """Mean Dice over every pair of experts; ``None`` for fewer than two."""
    pairs = list(itertools.combinations(masks.values(), 2))
    if not pairs:
        return None
    return float(np.mean([dice(a, b) for a, b in pairs]))


def _stack(masks: Mapping[str, np.ndarray]) -> npt.NDArray[np.bool_]:
    if not masks:
        raise FusionError("no expert mask to fuse")
    shapes = {m.shape for m in masks.values()}
    if len(shapes) != 1:
        raise FusionError(f"expert masks differ in shape: {sorted(shapes)}")
    return np.stack([np.asarray(m).astype(bool, copy=False) for m in masks.values()])


def _weights(names: list[str], weights: Mapping[str, float] | None) -> npt.NDArray[np.float64]:
    if weights is None:
        return np.ones(len(names))
    missing = [n for n in names if n not in weights]
    if missing:
        raise FusionError(f"no fusion weight for experts {missing}; set ONCOFLOW_FUSION_WEIGHTS")
    values = np.array([float(weights[n]) for n in names])
    if np.any(values < 0) or values.sum() <= 0:
        given = dict(zip(names, values.tolist(), strict=True))
        raise FusionError(f"fusion weights must be non-negative with a positive sum, got {given}")
    return values


def majority_vote(masks: Mapping[str, np.ndarray]) -> npt.NDArray[np.uint8]:
    votes = _stack(masks).sum(axis=0, dtype=np.int32)
    return (2 * votes > len(masks)).astype(np.uint8)


def weighted_vote(masks: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> npt.NDArray[np.uint8]:
    w = _weights(list(masks), weights)
    share = np.tensordot(w / w.sum(), _stack(masks).astype(np.float32), axes=1)
    return (share > 0.5).astype(np.uint8)


def confidence_weighted(
    masks: Mapping[str, np.ndarray],
    probabilities: Mapping[str, np.ndarray | None],
    weights: Mapping[str, float] | None = None,
) -> npt.NDArray[np.uint8]:
    """Weighted mean of soft tumour probabilities; binary masks stand in where no probability is given."""
    names = list(masks)
    _stack(masks)  # checks shapes
    w = _weights(names, weights)
    total = np.zeros(next(iter(masks.values())).shape, np.float32)
    for weight, name in zip(w / w.sum(), names, strict=True):
        soft = probabilities.get(name)
        if soft is not None and soft.shape != total.shape:
            raise FusionError(f"probability of {name} has shape {soft.shape}, its mask {total.shape}")
        total += np.float32(weight) * (soft.astype(np.float32) if soft is not None else masks[name].astype(np.float32))
    return (total > 0.5).astype(np.uint8)


def staple(masks: Mapping[str, np.ndarray]) -> tuple[npt.NDArray[np.uint8], dict[str, tuple[float, float]]]:
    """STAPLE by SimpleITK; returns the fused mask and each expert's (sensitivity, specificity)."""
    import SimpleITK as sitk

    _stack(masks)
    names = list(masks)
    images = [sitk.GetImageFromArray(np.asarray(masks[n]).astype(np.uint8)) for n in names]
    if len(images) == 1:
        return np.asarray(masks[names[0]]).astype(bool).astype(np.uint8), {names[0]: (1.0, 1.0)}
    staple_filter = sitk.STAPLEImageFilter()
    staple_filter.SetForegroundValue(1.0)
    probability = sitk.GetArrayFromImage(staple_filter.Execute(images))
    rates = {
        n: (float(se), float(sp))
        for n, se, sp in zip(names, staple_filter.GetSensitivity(), staple_filter.GetSpecificity(), strict=True)
    }
    return (probability >= 0.5).astype(np.uint8), rates


def fuse_masks(
    masks: Mapping[str, np.ndarray],
    strategy: FusionStrategy = "majority",
    weights: Mapping[str, float] | None = None,
    probabilities: Mapping[str, np.ndarray | None] | None = None,
) -> tuple[npt.NDArray[np.uint8], dict[str, tuple[float, float]]]:
    """The fused mask by ``strategy`` alone (no agreement measured), and STAPLE's (sensitivity, specificity) per
    expert (empty for the other strategies). :func:`fuse` and the leave-one-expert-out re-fusions
    (:mod:`oncoflow.measure.region_fusion`) both fuse through here, so they apply the same rule."""
    if strategy == "majority":
        return majority_vote(masks), {}
    if strategy == "staple":
        return staple(masks)
    if strategy == "weighted":
        if weights is None:
            raise FusionError("the weighted strategy needs ONCOFLOW_FUSION_WEIGHTS")
        return weighted_vote(masks, weights), {}
    if strategy == "confidence":
        return confidence_weighted(masks, probabilities or {}, weights), {}
    raise FusionError(f"unknown fusion strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def fuse(
    masks: Mapping[str, np.ndarray],
    voxel_volume_mm3: float,
    strategy: FusionStrategy = "majority",
    weights: Mapping[str, float] | None = None,
    probabilities: Mapping[str, np.ndarray | None] | None = None,
) -> FusionResult:
    """Fuse the experts' masks (name -> ``(slice, row, column)`` mask) and measure each against the result; every
    expert given votes (:attr:`FusionResult.voters`)."""
    fused, rates = fuse_masks(masks, strategy, weights, probabilities)
    score = agreement_score(masks)
    experts = {
        name: ExpertAgreement(
            dice=round(dice(mask, fused), 4),
            iou=round(iou(mask, fused), 4),
            volume_cm3=round(volume_cm3(mask, voxel_volume_mm3), 3),
            staple_sensitivity=round(rates[name][0], 4) if name in rates else None,
            staple_specificity=round(rates[name][1], 6) if name in rates else None,
        )
        for name, mask in masks.items()
    }
    return FusionResult(
        mask=fused,
        strategy=strategy,
        volume_cm3=round(volume_cm3(fused, voxel_volume_mm3), 3),
        agreement_score=None if score is None else round(score, 4),
        flag=agreement_flag(score),
        experts=experts,
        voters=tuple(masks),
    )
