"""The panel of experts: run the ready ones on one volume, then fuse their masks.

Order of work (``ONCOFLOW_PANEL`` gives the experts and their priority):

1. Ask the worker which experts are ready and what each is for (:class:`ModelInfo`).
   An expert still loading makes the job wait (:class:`WorkerUnavailable`); an
   unavailable one is skipped, with the worker's reason. An expert that wants a
   skull-stripped input gets the volume masked by the brain
   (:class:`~oncoflow.pipeline.brain_extraction.BrainMask`), or is skipped when there is none.
2. Segmenters (nnU-Net) and localisers (MedGemma) run at once on a pool of
   ``ONCOFLOW_PANEL_CONCURRENCY`` threads; the worker bounds its model calls the same way.
3. The promptable expert (SAM2) is prompted with boxes from the first segmenter (in
   panel order) that found a tumour. Each localiser's boxes become its mask through
   SAM2 box prompts, or, without a ready SAM2, by filling the boxes.
4. Each mask is kept inside the brain mask, when there is one (a tumour of the brain is inside it; the
   volume cut off is recorded per expert as ``outside_brain_cm3``), and the masks of the experts that ran
   are fused per region, ET, TC and WT, among the experts that give each
   (:func:`oncoflow.measure.region_fusion.fuse_regions`): a compartment map gives all three, a binary mask
   (SAM2, MedGemma's boxes, an older model) its one region, the tumour core. SAM2 is prompted with the
   tumour core's boxes.

Nothing is made up: an expert that did not run has no mask, and the panel result says
why (``skipped``: not ready or nothing to prompt with; ``failed``: it refused the input).

Derived experts (:attr:`ExpertRun.derived_from`) are not independent opinions and do not vote in the fusion nor
count as a leave-one-out replicate; their masks are still stored (their own SEG) and measured against the fused
mask. Two kinds: the promptable expert prompted with a segmenter's boxes is derived from that segmenter (it
outlines what the segmenter found); a localiser whose boxes were filled into a mask (no SAM2 ready, or SAM2
refused them) is derived from its own boxes (a box is not an outline: its volume is the box's). A localiser whose
boxes SAM2 outlined, or that saw no tumour while SAM2 was ready, votes: the localisation is its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from oncoflow.core.config import Settings
from oncoflow.core.mr_channels import CHANNELS, channel_list
from oncoflow.core.prompts import SliceBox, boxes_from_mask, mask_from_boxes
from oncoflow.core.tumour_compartments import REGIONS, Compartment, Region
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import InputError
from oncoflow.measure.fusion import FusionResult
from oncoflow.measure.region_fusion import ExpertOutputRegions, RegionFusion, fuse_regions
from oncoflow.measure.segmentation_plausibility import Plausibility, assess_plausibility
from oncoflow.pipeline.brain_extraction import BrainMask
from oncoflow.pipeline.worker_client import (
    LocalisationResult,
    ModelInfo,
    ModelRole,
    ModelUnavailable,
    SegmentationResult,
    WorkerClient,
    WorkerUnavailable,
)

log = logging.getLogger("oncoflow.panel")

RunStatus = Literal["ran", "skipped", "failed"]
T = TypeVar("T")


@dataclass
class ExpertRun:
    """What one expert did for one study."""

    name: str
    role: ModelRole
    status: RunStatus
    reason: str | None = None  # why it was skipped or failed
    version: str | None = None
    runtime_s: float | None = None  # model time in the worker (SAM2 included for a localiser's mask)
    mask: npt.NDArray[np.uint8] | None = None
    probability: npt.NDArray[np.float16] | None = None
    mask_from: str | None = None  # how the mask was made: "model", "sam2 prompted by X", "filled boxes"
    findings: str | None = None  # a localiser's sentence
    boxes: tuple[SliceBox, ...] = ()  # a localiser's boxes (voxel indices)
    skull_stripped: bool = False  # it was given the brain alone
    outside_brain_cm3: float | None = None  # its mask outside the brain mask, cut off (None: no brain mask)
    compartments: frozenset[Compartment] = frozenset()  # a compartment map's compartments; empty: binary
    region: Region | None = "TC"  # the region of a binary mask
    # not an independent opinion: the expert whose output its mask was made from (itself: its own boxes, filled)
    derived_from: str | None = None

    @property
    def output(self) -> ExpertOutputRegions | None:
        """Its mask as regions (``None`` without a mask)."""
        if self.mask is None:
            return None
        return ExpertOutputRegions(self.mask, self.compartments, None if self.compartments else self.region)

    def region_probabilities(self) -> dict[Region, np.ndarray]:
        """Its probabilities per region: a compartment model's (3, ...) P(ET), P(TC), P(WT); a binary one's."""
        if self.probability is None:
            return {}
        if self.compartments and self.probability.ndim == 4:
            return dict(zip(REGIONS, self.probability, strict=True))
        if self.region is not None and self.probability.ndim == 3:
            return {self.region: self.probability}
        return {}

    def summary(self) -> dict[str, object]:
        """JSON for the job's outputs (no arrays)."""
        return {
            "role": self.role, "status": self.status, "reason": self.reason, "version": self.version,
            "runtime_s": None if self.runtime_s is None else round(self.runtime_s, 4), "mask_from": self.mask_from,
            "findings": self.findings, "skull_stripped_input": self.skull_stripped,
            "outside_brain_cm3": None if self.outside_brain_cm3 is None else round(self.outside_brain_cm3, 3),
            "derived_from": self.derived_from,
        }


@dataclass
class PanelResult:
    runs: dict[str, ExpertRun]  # in panel order
    fusion: FusionResult  # the driving region's (regions.driving)
    regions: RegionFusion
    fusion_s: float
    wall_s: float  # from the readiness check to the fused mask
    experts_s: float = field(default=0.0)  # sum of the experts' model times

    @property
    def ran(self) -> list[ExpertRun]:
        return [r for r in self.runs.values() if r.status == "ran"]

    def plausibility(self, brain_mask: npt.NDArray[np.uint8] | None, voxel_volume_mm3: float) -> Plausibility:
        """The guard of :mod:`oncoflow.measure.segmentation_plausibility` on the largest region fused."""
        largest = next(r for r in reversed(REGIONS) if r in self.regions.regions)  # REGIONS: inner to outer
        per_expert = {r.name: (float(np.count_nonzero(r.mask)) * voxel_volume_mm3 / 1000.0, r.outside_brain_cm3)
                      for r in self.ran if r.mask is not None and r.outside_brain_cm3 is not None}
        return assess_plausibility(self.regions.regions[largest].mask, voxel_volume_mm3, brain_mask, per_expert)


def expert_image(model: ModelInfo, reference: Volume, channels: Mapping[str, Volume],
                 reference_kind: str | None) -> npt.NDArray[np.float32] | str:
    """The ``IMAGE`` an expert takes from this study, or why it cannot run on it.

    An expert that declares no channel takes the reference series. One that declares one takes that sequence (or,
    when the study's series could not be told apart, the reference as it is). One that declares several takes
    them stacked ``(channel, slice, row, column)`` in its order, each on the reference grid.
    """
    wanted = model.input_channels
    if not wanted:
        return reference.voxels
    missing = [c for c in wanted if c not in channels]
    if len(wanted) == 1 and model.image_rank == 3:
        if not missing:
            return channels[wanted[0]].voxels
        if reference_kind is None:
            return reference.voxels
    if missing:
        have = channel_list(c for c in CHANNELS if c in channels) or "no sequence it can tell"  # type: ignore[misc]
        return f"takes {channel_list(wanted)}; {channel_list(missing)} missing (the study gives {have})"
    return np.stack([channels[c].voxels for c in wanted]).astype(np.float32)


class ExpertPanel:
    def __init__(self, settings: Settings, worker: WorkerClient) -> None:
        self.settings = settings
        self.worker = worker

    def describe(self) -> dict[str, ModelInfo]:
        """The panel's experts as the worker sees them; waits (raises) while any is loading."""
        info = self.worker.describe(self.settings.panel)
        loading = [name for name, i in info.items() if i.state == "LOADING"]
        if loading:
            raise WorkerUnavailable(f"experts {loading} are still loading on {self.worker.url}")
        return info

    def run(self, volume: Volume, brain: BrainMask | None = None, channels: Mapping[str, Volume] | None = None,
            reference_kind: str | None = None) -> PanelResult:
        """Run the panel on ``volume``, the reference series (of kind ``reference_kind``, ``None`` when unknown).

        ``channels`` (kind -> volume on the reference grid, the reference included) feed the experts that declare
        their input channels; ``brain`` (on the same grid) feeds the experts that want the brain alone and bounds
        every expert's mask.
        """
        started = time.perf_counter()
        info = self.describe()
        brain = brain or BrainMask(None, None, unavailable="no brain extraction was run")
        available = dict(channels or {})
        if reference_kind is not None:
            available.setdefault(reference_kind, volume)
        runs: dict[str, ExpertRun] = {}
        ready: dict[str, ExpertRun] = {}
        images: dict[str, npt.NDArray[np.float32]] = {}
        for name in self.settings.panel:
            model = info[name]
            if model.state != "READY":
                runs[name] = ExpertRun(name, model.role, "skipped", f"not ready: {model.reason}")
                continue
            if model.role == "unknown":
                runs[name] = ExpertRun(name, model.role, "skipped", "gives neither MASK nor BOXES")
                continue
            if model.skull_stripped and brain.mask is None:
                runs[name] = ExpertRun(name, model.role, "skipped",
                                       f"wants a skull-stripped input and there is no brain mask: {brain.unavailable}")
                continue
            image = expert_image(model, volume, available, reference_kind)
            if isinstance(image, str):
                runs[name] = ExpertRun(name, model.role, "skipped", image)
                continue
            images[name] = brain.strip_array(image) if model.skull_stripped else image
            runs[name] = ready[name] = ExpertRun(
                name, model.role, "skipped", "not run yet", skull_stripped=model.skull_stripped,
                compartments=model.compartments if model.role == "segmenter" else frozenset(),
                region=model.binary_region if model.role == "segmenter" else "TC",
            )

        def given(run: ExpertRun) -> Volume:
            return replace(volume, voxels=images[run.name]) if images[run.name].ndim == 3 else volume

        def channel_image(run: ExpertRun) -> npt.NDArray[np.float32] | None:
            return images[run.name] if images[run.name].ndim == 4 else None

        if not ready:
            reasons = "; ".join(f"{n}: {r.reason}" for n, r in runs.items())
            if any(info[n].state == "READY" for n in runs):  # ready experts that this study cannot feed
                raise InputError(f"no expert of the panel can run on this study ({reasons})")
            raise ModelUnavailable(f"no expert of the panel is ready ({reasons})")
        promptable = next((n for n, r in ready.items() if r.role == "promptable"), None)

        with ThreadPoolExecutor(self.settings.panel_concurrency, thread_name_prefix="oncoflow-panel") as pool:
            first: dict[str, Future[SegmentationResult | LocalisationResult]] = {}
            for name, run in ready.items():
                if run.role == "segmenter":
                    first[name] = pool.submit(
                        self.worker.segment, name, given(run), with_probability=self.settings.fusion == "confidence",
                        image=channel_image(run),
                    )
                elif run.role == "localiser":
                    first[name] = pool.submit(self.worker.localise, name, given(run))
            for name, future in first.items():
                self._settle(runs[name], future, self._record_first)
            self._keep_inside(runs, brain, volume.voxel_volume_mm3)  # SAM2 is prompted inside the brain only

            second: dict[str, Future[SegmentationResult]] = {}
            cores = {n: r.output.region_mask("TC") for n, r in runs.items() if r.role == "segmenter"
                     and r.status == "ran" and r.output is not None and "TC" in r.output.regions}
            prompt_source = next((runs[n] for n, core in cores.items() if core.any()), None)
            if promptable is not None:
                if prompt_source is None:
                    runs[promptable].reason = "no prompt: no segmenter of the panel found a tumour core to outline"
                else:
                    boxes = boxes_from_mask(cores[prompt_source.name].astype(np.uint8))
                    runs[promptable].mask_from = f"sam2 prompted by {prompt_source.name} boxes"
                    runs[promptable].derived_from = prompt_source.name  # outlines what that segmenter found
                    second[promptable] = pool.submit(self.worker.segment, promptable, given(runs[promptable]), boxes)
            for run in runs.values():
                if run.role != "localiser" or run.status != "ran":
                    continue
                boxes = run.boxes
                if promptable is not None and boxes:
                    run.mask_from = f"{promptable} prompted by {run.name} boxes"
                    second[run.name] = pool.submit(self.worker.segment, promptable, given(runs[promptable]),
                                                   list(boxes))
                else:
                    run.mask = mask_from_boxes(boxes, volume.shape)
                    run.mask_from = "filled boxes" if boxes else "no boxes: no tumour seen"
                    if promptable is None:  # no SAM2 to outline its boxes: a box (or nothing) is not an outline
                        run.derived_from = run.name
            for name, future in second.items():
                run = runs[name]
                if run.role != "localiser":
                    self._settle(run, future, self._record_prompted)
                    continue
                try:
                    self._record_prompted(run, future.result())
                except InputError as exc:  # SAM2 refused the boxes: the localiser's answer still counts
                    run.mask = mask_from_boxes(run.boxes, volume.shape)
                    run.mask_from = f"filled boxes ({promptable} refused them: {exc})"
                    run.derived_from = run.name

        self._keep_inside(runs, brain, volume.voxel_volume_mm3)
        outputs = {n: r.output for n, r in runs.items() if r.status == "ran" and r.output is not None}
        if not outputs:
            reasons = "; ".join(f"{n}: {r.reason}" for n, r in runs.items())
            raise InputError(f"no expert of the panel could segment the volume ({reasons})")
        fusion_started = time.perf_counter()
        regions = fuse_regions(
            outputs, volume.voxel_volume_mm3, self.settings.fusion,  # type: ignore[arg-type]
            self.settings.fusion_weights, {n: runs[n].region_probabilities() for n in outputs},
            self.settings.driving_region,  # type: ignore[arg-type]
            {n: source for n in outputs if (source := runs[n].derived_from) is not None},
        )
        fusion_s = time.perf_counter() - fusion_started
        return PanelResult(
            runs=runs,
            fusion=regions.driving,
            regions=regions,
            fusion_s=fusion_s,
            wall_s=time.perf_counter() - started,
            experts_s=sum(r.runtime_s or 0.0 for r in runs.values() if r.status == "ran"),
        )

    @staticmethod
    def _keep_inside(runs: dict[str, ExpertRun], brain: BrainMask, voxel_volume_mm3: float) -> None:
        """Cut every mask (and probability) not cut yet to the brain mask, recording the volume cut off as
        ``outside_brain_cm3``; nothing happens without a brain mask. Called after each round: a mask is set once
        (the second round only fills the masks of SAM2 and the localisers), so a mask cut before is skipped."""
        if brain.mask is None:
            return
        inside = brain.mask > 0
        for run in runs.values():
            if run.mask is None or run.outside_brain_cm3 is not None:
                continue
            outside_cm3 = float(np.count_nonzero(run.mask.astype(bool) & ~inside)) * voxel_volume_mm3 / 1000.0
            run.outside_brain_cm3 = outside_cm3
            if outside_cm3:
                run.mask = np.where(inside, run.mask, 0).astype(np.uint8)
            if run.probability is not None:
                run.probability = np.where(inside, run.probability, 0).astype(np.float16)

    @staticmethod
    def _settle(run: ExpertRun, future: Future[T], record: Callable[[ExpertRun, T], None]) -> None:
        """Record a finished call; a refused input fails this expert only, a lost worker fails the job."""
        try:
            record(run, future.result())
        except InputError as exc:
            run.status, run.reason, run.mask = "failed", str(exc), None
            log.warning("expert %s failed: %s", run.name, exc)

    @staticmethod
    def _record_first(run: ExpertRun, result: SegmentationResult | LocalisationResult) -> None:
        run.status, run.reason = "ran", None
        run.version, run.runtime_s = result.model_version, result.inference_s
        if isinstance(result, SegmentationResult):
            run.mask, run.probability, run.mask_from = result.mask, result.probability, "model"
        else:
            run.boxes, run.findings = result.boxes, result.findings

    @staticmethod
    def _record_prompted(run: ExpertRun, result: SegmentationResult) -> None:
        if run.role == "promptable":
            run.status, run.reason, run.version = "ran", None, result.model_version
            run.runtime_s = result.inference_s
        else:  # a localiser whose boxes SAM2 turned into a mask
            run.runtime_s = (run.runtime_s or 0.0) + result.inference_s
        run.mask = result.mask
