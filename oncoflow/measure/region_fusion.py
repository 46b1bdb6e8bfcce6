"""The panel's masks fused per BraTS region (ET, TC, WT), the compartments rebuilt, agreement per compartment.

An expert gives the regions its output can be read as (:func:`regions_of`): a compartment map (oedema, necrosis,
enhancing tumour) gives all three, a binary mask the one region it declares (``tumour core`` for OncoFlow's earlier
models, SAM2 and MedGemma). Each region is fused among the experts that give it, with the panel's strategy
(:func:`oncoflow.measure.fusion.fuse`). When ET, TC and WT are all fused, the compartments are rebuilt from them
(:func:`oncoflow.core.tumour_compartments.compartments_from_regions`: ET enhancing, TC outside ET necrosis, WT
outside TC oedema; each region widened to hold the ones inside it).

Agreement per compartment: the mean pairwise Dice of each compartment among the experts that give compartments
(``None`` with fewer than two), next to each region's agreement.

The driving region (``ONCOFLOW_DRIVING_REGION``, default ET as RANO 2.0 measures the enhancing disease) is the one
the change and its flag follow; when no expert gives it, the next of ET, TC, WT that was fused drives, and
:attr:`RegionFusion.driving_note` says so.

Derived experts (``derived_from``: an expert whose mask was made from another expert's output, e.g. SAM2 prompted
with a segmenter's boxes) are measured against the fused mask but do not vote. For the uncertainty of the reported
volume, the driving region is fused again with each of its voters left out (:func:`leave_one_out_volumes`); the
job stores those volumes and the timeline builds its intervals from them (docs/uncertainty.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from oncoflow.core.tumour_compartments import (
    REGION_NAMES,
    REGIONS,
    Compartment,
    Region,
    compartments_from_regions,
    region_mask,
)
from oncoflow.measure.fusion import ExpertAgreement, FusionError, FusionResult, FusionStrategy, fuse, fuse_masks
from oncoflow.measure.mask_metrics import dice, iou, volume_cm3


@dataclass(frozen=True)
class ExpertOutputRegions:
    """What one expert's mask is: a compartment map (``compartments`` set) or one region's binary mask."""

    mask: npt.NDArray[np.uint8]
    compartments: frozenset[Compartment]  # the compartments its map can hold; empty for a binary mask
    region: Region | None = None  # the region of a binary mask

    @property
    def regions(self) -> tuple[Region, ...]:
        return regions_of(self.compartments, self.region)

    def region_mask(self, region: Region) -> npt.NDArray[np.bool_]:
        if self.region is not None:
            return self.mask > 0
        return region_mask(self.mask, region)


def regions_of(compartments: frozenset[Compartment], region: Region | None) -> tuple[Region, ...]:
    """The regions a mask gives: a binary mask its own; a compartment map each region whose core compartments
    it holds (ET: enhancing; TC: enhancing and necrosis; WT: those and oedema)."""
    if region is not None:
        return (region,)
    needs: dict[Region, set[Compartment]] = {
        "ET": {Compartment.ENHANCING}, "TC": {Compartment.ENHANCING, Compartment.NECROSIS},
        "WT": {Compartment.ENHANCING, Compartment.NECROSIS, Compartment.OEDEMA},
    }
    return tuple(r for r in REGIONS if needs[r] <= compartments)


@dataclass(frozen=True)
class RegionFusion:
    """Every fused region, the rebuilt compartments and the driving region."""

    regions: dict[Region, FusionResult]
    compartments: npt.NDArray[np.uint8] | None  # a compartment map when ET, TC and WT were all fused
    compartment_agreement: dict[Compartment, float | None]
    driving_region: Region
    driving_note: str | None  # why another region than the configured one drives
    derived_from: dict[str, str] = field(default_factory=dict)  # derived expert -> the expert its mask came from
    # each voter of the driving region left out -> the driving region's fused volume without it (cm³); empty with
    # fewer than two voters (see leave_one_out_volumes)
    leave_one_out_cm3: dict[str, float] = field(default_factory=dict)

    @property
    def driving(self) -> FusionResult:
        return self.regions[self.driving_region]

    def region_volumes_cm3(self) -> dict[Region, float]:
        return {region: result.volume_cm3 for region, result in self.regions.items()}

    def summary(self) -> dict[str, object]:
        """JSON for the job's outputs (no arrays)."""
        return {
            "driving_region": self.driving_region,
            "driving_region_name": REGION_NAMES[self.driving_region],
            "driving_note": self.driving_note,
            "regions": {
                region: {"name": REGION_NAMES[region], "volume_cm3": result.volume_cm3,
                         "agreement_score": result.agreement_score, "flag": result.flag,
                         "experts": sorted(result.experts), "voters": list(result.voters)}
                for region, result in self.regions.items()
            },
            "voting_experts": list(self.driving.voters),  # the driving region's
            "derived_experts": dict(self.derived_from),
            "leave_one_out_volumes_cm3": {name: round(v, 3) for name, v in self.leave_one_out_cm3.items()},
            "compartments": self.compartments is not None,
            "compartment_agreement": {c.display_name: score for c, score in self.compartment_agreement.items()},
        }


def compartment_agreement(outputs: Mapping[str, ExpertOutputRegions]) -> dict[Compartment, float | None]:
    """Mean pairwise Dice of each compartment among the experts whose maps hold it."""
    scores: dict[Compartment, float | None] = {}
    for compartment in (Compartment.ENHANCING, Compartment.NECROSIS, Compartment.OEDEMA, Compartment.NON_ENHANCING):
        masks = [o.mask == compartment for o in outputs.values() if compartment in o.compartments]
        pairs = list(itertools.combinations(masks, 2))
        if masks:
            scores[compartment] = round(float(np.mean([dice(a, b) for a, b in pairs])), 4) if pairs else None
    return scores


def fuse_regions(
    outputs: Mapping[str, ExpertOutputRegions],
    voxel_volume_mm3: float,
    strategy: FusionStrategy = "majority",
    weights: Mapping[str, float] | None = None,
    probabilities: Mapping[str, Mapping[Region, np.ndarray]] | None = None,
    driving_region: Region = "ET",
    derived_from: Mapping[str, str] | None = None,
) -> RegionFusion:
    """Fuse each region among the experts that give it; ``probabilities`` (expert -> region -> probability) feed
    the confidence strategy. Raises :class:`oncoflow.measure.fusion.FusionError` when no expert gave a mask.

    ``derived_from`` (expert -> the expert whose output its mask was made from) names the experts that are not
    independent: they are measured against the fused mask but do not vote, unless no independent expert gives the
    region (then every expert that gives it votes: :attr:`FusionResult.voters` says who did). The driving
    region's leave-one-expert-out volumes are computed over its voters (:func:`leave_one_out_volumes`)."""
    derived = dict(derived_from or {})
    fused: dict[Region, FusionResult] = {}
    given: dict[Region, dict[str, npt.NDArray[np.uint8]]] = {}
    voting: dict[Region, dict[str, npt.NDArray[np.uint8]]] = {}
    for region in REGIONS:
        masks = {name: o.region_mask(region).astype(np.uint8) for name, o in outputs.items() if region in o.regions}
        if not masks:
            continue
        given[region] = masks
        voting[region] = {n: m for n, m in masks.items() if n not in derived} or masks
        result = fuse(voting[region], voxel_volume_mm3, strategy, *_region_inputs(region, voting[region], weights,
                                                                                  probabilities))
        beside = {n: ExpertAgreement(dice=round(dice(m, result.mask), 4), iou=round(iou(m, result.mask), 4),
                                     volume_cm3=round(volume_cm3(m, voxel_volume_mm3), 3))
                  for n, m in masks.items() if n not in voting[region]}
        fused[region] = replace(result, experts={**result.experts, **beside}) if beside else result
    if not fused:
        raise FusionError("no expert mask to fuse")
    compartments = None
    if all(r in fused for r in REGIONS):
        compartments = compartments_from_regions({r: fused[r].mask > 0 for r in REGIONS})
        for region in REGIONS:  # the rebuilt regions are nested: report what the compartments hold
            fused[region] = _nested(fused[region], region_mask(compartments, region), given[region],
                                    voxel_volume_mm3)
    note = None
    driving = driving_region
    if driving not in fused:
        driving = next(r for r in (*REGIONS[REGIONS.index(driving_region):], *REGIONS) if r in fused)
        note = (f"{REGION_NAMES[driving_region]} ({driving_region}) is given by no expert of this panel: "
                f"{REGION_NAMES[driving]} ({driving}) drives the change")
    left_out = leave_one_out_volumes(voting, voxel_volume_mm3, strategy, weights, probabilities, driving)
    return RegionFusion(fused, compartments, compartment_agreement(outputs), driving, note,
                        {n: s for n, s in derived.items() if n in outputs}, left_out)


def _region_inputs(region: Region, masks: Mapping[str, np.ndarray], weights: Mapping[str, float] | None,
                   probabilities: Mapping[str, Mapping[Region, np.ndarray]] | None,
                   ) -> tuple[dict[str, float] | None, dict[str, np.ndarray | None]]:
    """The fusion weights and the probabilities of ``region`` for the experts of ``masks``."""
    region_weights = {n: w for n, w in (weights or {}).items() if n in masks} or None
    return region_weights, {name: (probabilities or {}).get(name, {}).get(region) for name in masks}


def leave_one_out_volumes(
    voting: Mapping[Region, Mapping[str, np.ndarray]],
    voxel_volume_mm3: float,
    strategy: FusionStrategy = "majority",
    weights: Mapping[str, float] | None = None,
    probabilities: Mapping[str, Mapping[Region, np.ndarray]] | None = None,
    driving_region: Region = "ET",
) -> dict[str, float]:
    """Each voter of ``driving_region`` left out -> the driving region's fused volume (cm³) without it.

    ``voting``: region -> the masks that vote in it (the voters :func:`fuse_regions` chose). For each voter of the
    driving region, the regions its mask depends on are fused again by the same rule
    (:func:`oncoflow.measure.fusion.fuse_masks`, same strategy, weights renormalised over the remaining experts)
    from their voters less that one (a voter that gives several regions is left out of each), the driving region
    is widened to hold the regions inside it where the full fusion would rebuild the compartments, and its volume
    is measured. Empty with fewer than two voters of the driving region (nothing would be left to fuse), or when a
    re-fusion is impossible (the remaining experts have no fusion weight)."""
    names = list(voting.get(driving_region, {}))
    if len(names) < 2:
        return {}
    inner = REGIONS[: REGIONS.index(driving_region) + 1]  # the driving region and the regions inside it
    volumes: dict[str, float] = {}
    for left_out in names:
        kept = {r: {n: m for n, m in masks.items() if n != left_out} for r, masks in voting.items()}
        # fuse_regions rebuilds the compartments (widening each region to hold the ones inside it) only when ET,
        # TC and WT are all fused; the regions outside the driving one change nothing else in its mask
        nested = all(kept.get(r) for r in REGIONS)
        mask = np.zeros(next(iter(voting[driving_region].values())).shape, bool)
        for region in inner:
            if (region == driving_region or nested) and kept.get(region):
                try:
                    fused = fuse_masks(kept[region], strategy,
                                       *_region_inputs(region, kept[region], weights, probabilities))[0]
                except FusionError:  # e.g. the experts left have no weight: no replicate, so no interval
                    return {}
                mask |= fused > 0
        volumes[left_out] = volume_cm3(mask, voxel_volume_mm3)
    return volumes


def _nested(result: FusionResult, mask: npt.NDArray[np.bool_], masks: Mapping[str, npt.NDArray[np.uint8]],
            voxel_volume_mm3: float) -> FusionResult:
    """``result`` with its mask widened to hold the regions inside it, each expert measured against it again."""
    if np.array_equal(result.mask > 0, mask):
        return result
    fused = mask.astype(np.uint8)
    experts = {
        name: replace(result.experts[name], dice=round(dice(m, fused), 4), iou=round(iou(m, fused), 4))
        for name, m in masks.items()
    }
    return replace(result, mask=fused, volume_cm3=round(volume_cm3(fused, voxel_volume_mm3), 3), experts=experts)
