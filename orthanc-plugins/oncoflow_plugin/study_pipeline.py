"""One job, one study: DICOM in -> volume -> mask -> DICOM-SEG back into the same study.

Stages and their timing keys: ``select_series``, ``volume_build``, ``inference``,
``seg_encode``, ``store``. The SEG's UIDs derive from the input fingerprint (the
chosen series' instances and the model), so a re-run after a crash stores the
same SOP instance again instead of a second SEG; a study whose input changed
(more slices arrived) gets a new SEG that replaces the earlier one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import Any

from oncoflow.config import Settings

from .job_store import Job, JobStore
from .orthanc_rest import OrthancRest
from .seg_writer import MANUFACTURER, AlgorithmInfo, write_segmentation
from .series_selection import SeriesCandidate, is_oncoflow_output, select_input_series
from .volume_builder import InputError, build_volume, read_instance
from .worker_client import WorkerClient

log = logging.getLogger("oncoflow.pipeline")


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class StudyPipeline:
    """Runs claimed jobs; raises ``WorkerUnavailable`` for the runner to retry later."""

    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, worker: WorkerClient) -> None:
        self.settings = settings
        self.rest = rest
        self.store = store
        self.worker = worker

    @contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            timings[stage] = round(time.perf_counter() - started, 4)

    def _candidates(self, orthanc_study_id: str) -> list[SeriesCandidate]:
        candidates = []
        for series in self.rest.get_json(f"/studies/{orthanc_study_id}/series"):
            tags = series.get("MainDicomTags", {})
            instances = series.get("Instances", [])
            first: dict[str, Any] = {}
            if instances and tags.get("Modality") not in ("SEG", "SR", "DOC"):
                first = self.rest.get_json(f"/instances/{instances[0]}/simplified-tags")
            candidates.append(
                SeriesCandidate(
                    orthanc_id=series["ID"],
                    series_instance_uid=tags.get("SeriesInstanceUID", ""),
                    modality=tags.get("Modality", first.get("Modality", "")),
                    n_instances=len(instances),
                    description=tags.get("SeriesDescription", ""),
                    protocol_name=str(first.get("ProtocolName", "")),
                    sequence_name=str(first.get("SequenceName", "")),
                    manufacturer=str(tags.get("Manufacturer", first.get("Manufacturer", ""))),
                    contrast_agent=str(first.get("ContrastBolusAgent", "")),
                    scanning_sequence=str(first.get("ScanningSequence", "")),
                    repetition_time_ms=_float_or_none(first.get("RepetitionTime")),
                    echo_time_ms=_float_or_none(first.get("EchoTime")),
                    inversion_time_ms=_float_or_none(first.get("InversionTime")),
                )
            )
        return candidates

    def _fingerprint(self, series_id: str, instance_ids: list[str]) -> str:
        digest = hashlib.sha256()
        for part in (self.worker.model_name, series_id, *sorted(instance_ids)):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()

    def _existing_segs(self, orthanc_study_id: str) -> list[dict[str, Any]]:
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
        except Exception as exc:
            raise InputError(f"study {study_id} is no longer in Orthanc ({exc})") from exc
        self.store.update(job.id, study_instance_uid=study["MainDicomTags"].get("StudyInstanceUID"))

        with self._timed(timings, "select_series"):
            candidates = self._candidates(study_id)
            if all(is_oncoflow_output(c) for c in candidates) and candidates:
                raise InputError("the study holds only OncoFlow outputs")
            selection = select_input_series(candidates, self.settings.series_preference)
            series = self.rest.get_json(f"/series/{selection.candidate.orthanc_id}")
        instance_ids: list[str] = series["Instances"]
        fingerprint = self._fingerprint(selection.candidate.orthanc_id, instance_ids)
        self.store.update(
            job.id,
            input_series_instance_uid=selection.candidate.series_instance_uid,
            fingerprint=fingerprint,
        )
        self.store.add_event(job.id, f"input series {selection.candidate.series_instance_uid}: {selection.reason}")

        previous = self.store.latest_done(study_id)
        existing = self._existing_segs(study_id)
        if previous and previous.fingerprint == fingerprint and any(
            s["ID"] == previous.outputs.get("seg_orthanc_series_id") for s in existing
        ):
            self.store.discard(job.id, previous.id, f"re-triggered ({job.trigger}); input unchanged, SEG kept")
            return

        with self._timed(timings, "volume_build"):
            datasets = [read_instance(self.rest.get_bytes(f"/instances/{i}/file")) for i in instance_ids]
            stack = build_volume(datasets, self.settings.max_voxels)

        self.worker.check_ready()
        with self._timed(timings, "inference"):
            result = self.worker.segment(stack.volume)
        timings["model_inference"] = round(result.inference_s, 4)

        with self._timed(timings, "seg_encode"):
            seg = write_segmentation(
                stack.datasets, result.mask, AlgorithmInfo(result.model_name, result.model_version), fingerprint
            )
            buffer = BytesIO()
            seg.save_as(buffer, enforce_file_format=True)

        with self._timed(timings, "store"):
            stored = self.rest.post_json("/instances", buffer.getvalue())
            seg_series_id = str(stored["ParentSeries"])
            replaced = [s for s in existing if s["ID"] != seg_series_id]
            for old in replaced:
                self.rest.delete(f"/series/{old['ID']}")
        for old in replaced:
            self.store.add_event(
                job.id,
                f"replaced earlier SEG series {old['MainDicomTags'].get('SeriesInstanceUID')} "
                f"(input now {len(instance_ids)} images)",
            )

        voxel_mm3 = stack.volume.voxel_volume_mm3
        self.store.update(
            job.id,
            outputs={
                "seg_sop_instance_uids": [str(seg.SOPInstanceUID)],
                "seg_series_instance_uid": str(seg.SeriesInstanceUID),
                "seg_orthanc_series_id": seg_series_id,
                "model": {"name": result.model_name, "version": result.model_version},
                "input_images": len(instance_ids),
                "tumour_volume_cm3": round(float(result.mask.astype(bool).sum()) * voxel_mm3 / 1000.0, 3),
            },
        )
        self.store.finish(job.id, "done")
        log.info("study %s: SEG %s stored in %.2f s", study_id, seg.SOPInstanceUID, sum(timings.values()))
