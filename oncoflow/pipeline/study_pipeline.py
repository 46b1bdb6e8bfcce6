"""One job, one study: DICOM in -> volume -> the panel's masks -> DICOM-SEGs back into the same study.

Stages and their timing keys: ``select_series`` (the study's sequences and its reference), ``volume_build``,
``co_registration`` (:mod:`oncoflow.pipeline.sequence_alignment`), ``brain_extraction``
(:mod:`oncoflow.pipeline.brain_extraction`: a non-brain image fails the job here), ``inference``
(the whole panel, fusion included), ``model_inference`` (sum of the experts' model times),
``fusion``, ``seg_encode``, ``store``. The SEGs (the ensemble, one per expert that ran, and the
brain mask the tumour was looked for in) derive their UIDs from the input fingerprint (the chosen series' instances and
the panel's configuration) and their content (mask, algorithm and weights), so a re-run
after a crash finds its SEGs already stored instead of duplicating them; a study whose
input or result changed (more slices arrived, a model was updated) gets new SEGs, and
the earlier automatic ones are deleted before they are stored. Refined SEGs (a
radiologist's clicks) are never replaced.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from oncoflow import __version__
from oncoflow.core.config import Settings
from oncoflow.core.tumour_compartments import Compartment
from oncoflow.dicom.derived_object import MANUFACTURER
from oncoflow.dicom.seg_writer import (
    BRAIN,
    BRAIN_RGB,
    BRAIN_SERIES_NUMBER,
    ENSEMBLE_SERIES_NUMBER,
    EXPERT_RGB,
    EXPERT_SERIES_NUMBER,
    REFINED_DESCRIPTION_PREFIX,
    REGION_SEGMENTS,
    AlgorithmInfo,
    compartment_segments,
    write_segmentation,
)
from oncoflow.dicom.volume_builder import InputError
from oncoflow.pacs.orthanc_http import OrthancUnavailable
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.brain_extraction import BrainExtraction, BrainMask
from oncoflow.pipeline.expert_panel import ExpertPanel, PanelResult
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.sequence_alignment import SequenceAlignment
from oncoflow.pipeline.stage_timing import timed
from oncoflow.pipeline.study_input import StudyInput
from oncoflow.pipeline.time_point import loaded_time_point

REANALYSE_TRIGGER = "reanalyse"  # a radiologist asked: run the whole pipeline even when the input is unchanged
REASSESS_TRIGGER = "reassess"  # the clinical state changed: the timeline (response, SRs, reports) again, same SEGs

log = logging.getLogger("oncoflow.pipeline")


class StudyPipeline:
    """Runs claimed jobs; raises ``WorkerUnavailable`` for the runner to retry later."""

    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, study_input: StudyInput,
                 brain: BrainExtraction, panel: ExpertPanel) -> None:
        self.settings = settings
        self.rest = rest
        self.store = store
        self.input = study_input
        self.alignment = SequenceAlignment(settings)
        self.brain = brain
        self.panel = panel
        # set by the plugin: the patient's timeline, updated before a job is marked done (study id, job) -> result
        self.timeline: Callable[[str, Job, Any], dict[str, Any]] | None = None
        # set by the assembly when results are routed on (ONCOFLOW_ROUTE_TO): called with the study's Orthanc ID
        # once its job is done (SEGs, SR, REG and report stored)
        self.results_done: Callable[[str], None] | None = None

    def _fingerprint(self, instances: dict[str, list[str]]) -> str:
        """The input (each sequence's instances) and the panel's configuration: same fingerprint, same result, same
        SEG UIDs."""
        digest = hashlib.sha256()
        weights = sorted((self.settings.fusion_weights or {}).items())
        inputs = [part for kind in sorted(instances) for part in (f"sequence {kind}", *sorted(instances[kind]))]
        for part in (*self.settings.panel, self.settings.fusion, repr(weights), str(self.settings.brain_extraction),
                     self.settings.driving_region, *inputs):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()

    def oncoflow_segs(self, orthanc_study_id: str) -> list[dict[str, Any]]:
        """The study's SEG series written by OncoFlow (automatic and refined)."""
        return [
            s
            for s in self.rest.get_json(f"/studies/{orthanc_study_id}/series")
            if s.get("MainDicomTags", {}).get("Modality") == "SEG"
            and s.get("MainDicomTags", {}).get("Manufacturer") == MANUFACTURER
        ]

    def run(self, job: Job) -> None:
        """Process ``job`` to ``done``; ``InputError`` and transient errors propagate to the runner.

        Stage timings are saved whatever the outcome.
        """
        timings: dict[str, float] = {"queue_wait": round(time.time() - job.created_at, 4)}
        try:
            self._run(job, timings)
        finally:
            self.store.update(job.id, timings_s=timings)

    def _run(self, job: Job, timings: dict[str, float]) -> None:
        study_id = job.orthanc_study_id
        try:
            study = self.rest.get_json(f"/studies/{study_id}")
        except OrthancUnavailable:
            raise  # Orthanc restarting (a pipeline worker's HTTP): the job is retried, not failed
        except Exception as exc:
            raise InputError(f"study {study_id} is no longer in Orthanc ({exc})") from exc
        study_uid = str(study["MainDicomTags"].get("StudyInstanceUID"))
        self.store.update(job.id, study_instance_uid=study_uid)

        sequences, instances = self.input.select_sequences(study_id, timings)
        selection = sequences.reference
        reference_kind = selection.kind or ""
        instance_ids = instances[reference_kind]
        fingerprint = self._fingerprint(instances)
        self.store.update(
            job.id, input_series_instance_uid=selection.candidate.series_instance_uid, fingerprint=fingerprint
        )
        self.store.add_event(job.id, f"input series {selection.candidate.series_instance_uid}: {selection.reason}")
        for kind, candidate in sequences.sequences.items():
            if kind != reference_kind:
                self.store.add_event(job.id, f"sequence {kind}: series {candidate.series_instance_uid} "
                                             f"({sequences.reasons[kind]})")
        for reason in sequences.left_out:
            self.store.add_event(job.id, f"left out: {reason}")

        previous = self.store.latest_done(study_id)
        existing = self.oncoflow_segs(study_id)
        if previous and previous.fingerprint == fingerprint and job.trigger != REANALYSE_TRIGGER and any(
            s["ID"] == previous.outputs.get("seg_orthanc_series_id") for s in existing
        ):
            if job.trigger == REASSESS_TRIGGER and self.timeline is not None:
                self._reassess(job, previous, timings)
                return
            self.store.discard(job.id, previous.id, f"re-triggered ({job.trigger}); input unchanged, SEGs kept")
            return

        stack = self.input.build(instance_ids, timings, selection.candidate.stack_id)
        others = {kind: self.input.build(ids, timings, sequences.sequences[kind].stack_id)
                  for kind, ids in instances.items() if kind != reference_kind}
        with timed(timings, "co_registration"):
            alignment = self.alignment.align(reference_kind, stack, others)
        for reason in alignment.left_out.values():
            self.store.add_event(job.id, f"left out: {reason}")

        with timed(timings, "brain_extraction"):
            brain = self.brain.run(stack.volume)
        if brain.unavailable:
            self.store.add_event(job.id, f"no brain mask: {brain.unavailable}")
        with timed(timings, "inference"):
            panel = self.panel.run(stack.volume, brain, alignment.volumes, selection.kind)
        timings["model_inference"] = round(panel.experts_s, 4)
        timings["fusion"] = round(panel.fusion_s, 4)
        for name, run in panel.runs.items():
            if run.status != "ran":
                self.store.add_event(job.id, f"expert {name} {run.status}: {run.reason}")
        plausibility = panel.plausibility(brain.mask, stack.volume.voxel_volume_mm3)
        if plausibility.review:
            self.store.add_event(job.id, plausibility.verdict)

        with timed(timings, "seg_encode"):
            input_series = {kind: c.series_instance_uid for kind, c in sequences.sequences.items()
                            if kind in alignment.volumes}
            segs = self._write_segs(stack.datasets, panel, brain, fingerprint, input_series)

        with timed(timings, "store"):
            # Orthanc never overwrites an instance and a UID names one content only: the earlier automatic SEGs
            # that this result does not repeat are deleted first, then the new ones stored; a SEG already there
            # (same series UID, so the same content) is kept as it is. Refined SEGs are never touched.
            wanted = {str(seg.SeriesInstanceUID) for seg in segs.values()}
            replaced = [
                s for s in existing
                if s["MainDicomTags"].get("SeriesInstanceUID") not in wanted
                and not str(s["MainDicomTags"].get("SeriesDescription", "")).startswith(REFINED_DESCRIPTION_PREFIX)
            ]
            for old in replaced:
                self.rest.delete(f"/series/{old['ID']}")
            present = {s["MainDicomTags"].get("SeriesInstanceUID"): s["ID"] for s in existing if s not in replaced}
            stored_series = {
                role: present.get(str(seg.SeriesInstanceUID)) or str(self.rest.store(seg)["ParentSeries"])
                for role, seg in segs.items()
            }
        for old in replaced:
            self.store.add_event(
                job.id,
                f"replaced earlier SEG series {old['MainDicomTags'].get('SeriesInstanceUID')} "
                f"({old['MainDicomTags'].get('SeriesDescription', '')}; input now {len(instance_ids)} images)",
            )

        fusion = panel.fusion
        experts: dict[str, dict[str, Any]] = {}
        for name, run in panel.runs.items():
            entry = run.summary()
            if name in segs:
                entry["seg_sop_instance_uid"] = str(segs[name].SOPInstanceUID)
                entry["regions"] = {region: {"dice_vs_fused": result.experts[name].dice,
                                             "volume_cm3": result.experts[name].volume_cm3}
                                    for region, result in panel.regions.regions.items() if name in result.experts}
            if name in fusion.experts:
                agreement = fusion.experts[name]
                entry.update(
                    dice_vs_fused=agreement.dice, iou_vs_fused=agreement.iou, volume_cm3=agreement.volume_cm3,
                    staple_sensitivity=agreement.staple_sensitivity, staple_specificity=agreement.staple_specificity,
                )
            experts[name] = entry
        ensemble = segs["ensemble"]
        self.store.update(
            job.id,
            outputs={
                "seg_sop_instance_uids": [str(seg.SOPInstanceUID) for seg in segs.values()],
                "seg_series_instance_uid": str(ensemble.SeriesInstanceUID),
                "seg_orthanc_series_id": stored_series["ensemble"],
                "ensemble_seg_sop_instance_uid": str(ensemble.SOPInstanceUID),
                "input_images": len(stack.datasets),  # slices (frames of a multi-frame object)
                "sequences": {**sequences.as_json(), "co_registration": alignment.report,
                              "left_out": [*sequences.left_out, *alignment.left_out.values()]},
                "tumour_volume_cm3": fusion.volume_cm3,  # the driving region's
                **panel.regions.summary(),
                "plausibility": plausibility.as_json(),
                "fusion": {
                    "strategy": fusion.strategy, "agreement_score": fusion.agreement_score, "flag": fusion.flag,
                    "volume_cm3": fusion.volume_cm3, "runtime_s": round(panel.fusion_s, 4),
                },
                "panel": {
                    "ran": [r.name for r in panel.ran],
                    "skipped": {n: r.reason for n, r in panel.runs.items() if r.status != "ran"},
                    "wall_s": round(panel.wall_s, 4),
                    "experts_s": round(panel.experts_s, 4),
                },
                "experts": experts,
                "brain_extraction": {**brain.summary(), "seg_sop_instance_uid":
                                     str(segs["brain"].SOPInstanceUID) if "brain" in segs else None},
                "findings": next((r.findings for r in panel.ran if r.findings), None),
            },
        )
        if self.timeline is not None:
            with timed(timings, "longitudinal"):
                current = self.store.get(job.id)
                assert current is not None
                try:
                    loaded = loaded_time_point(study["MainDicomTags"], stack, panel.fusion.mask, ensemble,
                                               current.outputs, brain.mask)
                except ValueError:  # e.g. no StudyDate: the timeline says why when it reads the study itself
                    loaded = None
                longitudinal = self.timeline(study_id, current, loaded)
            if longitudinal.get("error"):
                self.store.add_event(job.id, f"not compared with an earlier study: {longitudinal['error']}")
            report = longitudinal.get("report") or {}
            if report.get("error"):
                self.store.add_event(job.id, report["error"])
            if report.get("report_s") is not None:
                timings["report"] = report["report_s"]  # part of "longitudinal"
            self.store.update(job.id, outputs={**current.outputs, "longitudinal": longitudinal})
        self.store.record_evaluations(job.id, study_uid, [
            {"expert": name, "dice": a.dice, "iou": a.iou, "volume_cm3": a.volume_cm3,
             "runtime_s": panel.runs[name].runtime_s}
            for name, a in fusion.experts.items()
        ])
        self.store.finish(job.id, "done", attempt=job.attempts)  # acknowledged only now (at-least-once delivery)
        if self.results_done is not None:
            self.results_done(study_id)
        log.info("study %s: %d SEGs stored (%s, agreement %s) in %.2f s", study_id, len(segs), fusion.strategy,
                 fusion.agreement_score, sum(timings.values()))

    def _reassess(self, job: Job, previous: Job, timings: dict[str, float]) -> None:
        """The timeline of an unchanged study again (its SRs and reports, from the study on), e.g. after a clinical
        state was entered; the SEGs and the done job stay, and this job is folded into it."""
        assert self.timeline is not None
        with timed(timings, "longitudinal"):
            outcome = self.timeline(job.orthanc_study_id, previous, None)
        detail = outcome.get("error") or (outcome.get("response") or {}).get("label") or "no response (first visit)"
        self.store.discard(job.id, previous.id, f"reassessed ({job.trigger}): {detail}")
        if self.results_done is not None:
            self.results_done(job.orthanc_study_id)

    def _write_segs(self, datasets: list[Dataset], panel: PanelResult, brain: BrainMask, fingerprint: str,
                    input_series: dict[str, str]) -> dict[str, Dataset]:
        """The ensemble SEG first, then one SEG per expert that ran (panel order), then the brain mask.

        The ensemble holds the compartments (enhancing tumour, necrosis, oedema) when the panel fused all three
        regions, else the regions it fused, each as one segment; an expert's SEG holds its compartments, or its
        one region."""
        fusion, regions = panel.fusion, panel.regions
        skipped = "; ".join(f"{n}: {r.reason}" for n, r in panel.runs.items() if r.status != "ran")
        ensemble_parameters = {
            "fusion": fusion.strategy,
            "agreement": " ".join(f"{r}={f.agreement_score} ({f.flag})" for r, f in regions.regions.items()),
            "driving_region": regions.driving_region,
            "experts_ran": " ".join(r.name for r in panel.ran),
            "experts_not_run": skipped or "none",
            "input_series": " ".join(f"{kind}={uid}" for kind, uid in sorted(input_series.items())) or "reference",
        }
        if regions.compartments is not None:
            kinds, labels = compartment_segments(
                {Compartment.ENHANCING, Compartment.NECROSIS, Compartment.OEDEMA}, regions.compartments)
        else:
            kinds = [REGION_SEGMENTS[r] for r in regions.regions]
            labels = np.zeros(fusion.mask.shape, np.uint8)
            for number, region in reversed(list(enumerate(regions.regions, start=1))):  # ET over TC over WT
                labels[regions.regions[region].mask > 0] = number
        segs = {
            "ensemble": write_segmentation(
                datasets, labels,
                AlgorithmInfo(f"OncoFlow panel ({fusion.strategy})", __version__, ensemble_parameters),
                fingerprint, role="ensemble", series_number=ENSEMBLE_SERIES_NUMBER, segments=kinds,
                series_description=f"OncoFlow SEG ensemble ({fusion.strategy}, {len(panel.ran)} experts)",
            )
        }
        for index, name in enumerate(self.settings.panel):
            run = panel.runs[name]
            if run.status != "ran" or run.mask is None:
                continue
            if run.compartments:
                kinds, labels = compartment_segments(run.compartments, run.mask)
            else:
                kinds, labels = [REGION_SEGMENTS[run.region or "TC"]], (run.mask > 0).astype(np.uint8)
            agreement = {r: f.experts[name].dice for r, f in regions.regions.items() if name in f.experts}
            segs[name] = write_segmentation(
                datasets, labels,
                AlgorithmInfo(name, run.version or "unknown",
                              {"mask_from": run.mask_from or "model",
                               "dice_vs_fused": " ".join(f"{r}={d}" for r, d in agreement.items())}),
                fingerprint, role=f"expert-{name}", series_number=EXPERT_SERIES_NUMBER + index,
                series_description=f"OncoFlow SEG expert {name}", segments=kinds,
                display_rgb=EXPERT_RGB[index % len(EXPERT_RGB)],
            )
        if brain.mask is not None and brain.check is not None:
            segs["brain"] = write_segmentation(
                datasets, brain.mask,
                AlgorithmInfo(brain.model or "brain extraction", brain.version or "unknown",
                              {"volume_cm3": f"{brain.check.volume_cm3:.1f}"}),
                fingerprint, role="brain", series_number=BRAIN_SERIES_NUMBER,
                series_description=f"OncoFlow SEG brain ({brain.model})", segment=BRAIN, display_rgb=BRAIN_RGB,
            )
        return segs
