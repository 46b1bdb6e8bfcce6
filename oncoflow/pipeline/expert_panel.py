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
   are fused (:func:`oncoflow.measure.fusion.fuse`).

Nothing is made up: an expert that did not run has no mask, and the panel result says
why (``skipped``: not ready or nothing to prompt with; ``failed``: it refused the input).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from oncoflow.core.config import Settings
from oncoflow.core.prompts import SliceBox, boxes_from_mask, mask_from_boxes
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import InputError
from oncoflow.measure.fusion import FusionResult, fuse
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

    def summary(self) -> dict[str, object]:
        """JSON for the job's outputs (no arrays)."""
        return {
            "role": self.role, "status": self.status, "reason": self.reason, "version": self.version,
            "runtime_s": None if self.runtime_s is None else round(self.runtime_s, 4), "mask_from": self.mask_from,
            "findings": self.findings, "skull_stripped_input": self.skull_stripped,
            "outside_brain_cm3": None if self.outside_brain_cm3 is None else round(self.outside_brain_cm3, 3),
        }


@dataclass
class PanelResult:
    runs: dict[str, ExpertRun]  # in panel order
    fusion: FusionResult
    fusion_s: float
    wall_s: float  # from the readiness check to the fused mask
    experts_s: float = field(default=0.0)  # sum of the experts' model times

    @property
    def ran(self) -> list[ExpertRun]:
        return [r for r in self.runs.values() if r.status == "ran"]


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

    def run(self, volume: Volume, brain: BrainMask | None = None) -> PanelResult:
        """Run the panel on ``volume``; ``brain`` (on the same grid) feeds the experts that want the brain alone
        and bounds every expert's mask."""
        started = time.perf_counter()
        info = self.describe()
        brain = brain or BrainMask(None, None, unavailable="no brain extraction was run")
        runs: dict[str, ExpertRun] = {}
        ready: dict[str, ExpertRun] = {}
        for name in self.settings.panel:
            model = info[name]
            if model.state != "READY":
                runs[name] = ExpertRun(name, model.role, "skipped", f"not ready: {model.reason}")
            elif model.role == "unknown":
                runs[name] = ExpertRun(name, model.role, "skipped", "gives neither MASK nor BOXES")
            elif model.skull_stripped and brain.mask is None:
                runs[name] = ExpertRun(name, model.role, "skipped",
                                       f"wants a skull-stripped input and there is no brain mask: {brain.unavailable}")
            else:
                runs[name] = ready[name] = ExpertRun(name, model.role, "skipped", "not run yet",
                                                     skull_stripped=model.skull_stripped)
        stripped = brain.strip(volume) if any(r.skull_stripped for r in ready.values()) else volume

        def given(run: ExpertRun) -> Volume:
            return stripped if run.skull_stripped else volume
        if not ready:
            reasons = "; ".join(f"{n}: {r.reason}" for n, r in runs.items())
            raise ModelUnavailable(f"no expert of the panel is ready ({reasons})")
        promptable = next((n for n, r in ready.items() if r.role == "promptable"), None)

        with ThreadPoolExecutor(self.settings.panel_concurrency, thread_name_prefix="oncoflow-panel") as pool:
            first: dict[str, Future[SegmentationResult | LocalisationResult]] = {}
            for name, run in ready.items():
                if run.role == "segmenter":
                    first[name] = pool.submit(
                        self.worker.segment, name, given(run), with_probability=self.settings.fusion == "confidence"
                    )
                elif run.role == "localiser":
                    first[name] = pool.submit(self.worker.localise, name, given(run))
            for name, future in first.items():
                self._settle(runs[name], future, self._record_first)
            self._keep_inside(runs, brain, volume.voxel_volume_mm3)  # SAM2 is prompted inside the brain only

            second: dict[str, Future[SegmentationResult]] = {}
            prompt_source = next(
                (r for r in runs.values() if r.role == "segmenter" and r.status == "ran" and r.mask is not None
                 and r.mask.any()),
                None,
            )
            if promptable is not None:
                if prompt_source is None:
                    runs[promptable].reason = "no prompt: no segmenter of the panel found a tumour to outline"
                else:
                    assert prompt_source.mask is not None
                    boxes = boxes_from_mask(prompt_source.mask)
                    runs[promptable].mask_from = f"sam2 prompted by {prompt_source.name} boxes"
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

        self._keep_inside(runs, brain, volume.voxel_volume_mm3)
        masks = {n: r.mask for n, r in runs.items() if r.status == "ran" and r.mask is not None}
        if not masks:
            reasons = "; ".join(f"{n}: {r.reason}" for n, r in runs.items())
            raise InputError(f"no expert of the panel could segment the volume ({reasons})")
        fusion_started = time.perf_counter()
        probabilities = {n: runs[n].probability for n in masks}
        weights = {n: w for n, w in (self.settings.fusion_weights or {}).items() if n in masks} or None
        fusion = fuse(masks, volume.voxel_volume_mm3, self.settings.fusion, weights,  # type: ignore[arg-type]
                      probabilities)
        fusion_s = time.perf_counter() - fusion_started
        return PanelResult(
            runs=runs,
            fusion=fusion,
            fusion_s=fusion_s,
            wall_s=time.perf_counter() - started,
            experts_s=sum(r.runtime_s or 0.0 for r in runs.values() if r.status == "ran"),
        )

    @staticmethod
    def _keep_inside(runs: dict[str, ExpertRun], brain: BrainMask, voxel_volume_mm3: float) -> None:
        """Cut every mask (and probability) to the brain mask, adding the volume cut off to
        ``outside_brain_cm3``; nothing happens without a brain mask."""
        if brain.mask is None:
            return
        inside = brain.mask > 0
        for run in runs.values():
            if run.mask is None:
                continue
            outside_cm3 = float(np.count_nonzero(run.mask.astype(bool) & ~inside)) * voxel_volume_mm3 / 1000.0
            run.outside_brain_cm3 = (run.outside_brain_cm3 or 0.0) + outside_cm3
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
