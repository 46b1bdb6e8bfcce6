"""A radiologist's clicks turned into a refined tumour mask by the panel's promptable expert (SAM2).

``POST /oncoflow/studies/{StudyInstanceUID}/refine`` with JSON::

    {"points": [{"position_mm": [x, y, z], "positive": true}, ...],
     "include_current": true}

``position_mm`` is a point in the patient coordinate system (LPS, mm), as a viewer
reports a click. ``positive`` false marks "not tumour". With ``include_current`` the
box prompts of the study's current ensemble SEG are added to the clicks. The refined
mask is stored as a new SEG version in the same study (series number 9100 + version,
"OncoFlow SEG refined vN"); earlier versions and the automatic SEGs stay.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import highdicom as hd

from oncoflow.core.config import Settings
from oncoflow.core.prompts import SliceBox, SlicePoint, boxes_from_mask
from oncoflow.dicom.seg_writer import (
    REFINED_DESCRIPTION_PREFIX,
    REFINED_RGB,
    REFINED_SERIES_NUMBER,
    AlgorithmInfo,
    read_source_mask,
    region_segment_numbers,
    write_segmentation,
)
from oncoflow.dicom.volume_builder import InputError
from oncoflow.measure.mask_metrics import volume_cm3
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.job_store import JobStore
from oncoflow.pipeline.request_refusal import RequestRefused, json_object
from oncoflow.pipeline.study_input import StudyInput
from oncoflow.pipeline.worker_client import ModelUnavailable, WorkerClient, WorkerUnavailable

MAX_POINTS = 64
OUTSIDE_TOLERANCE_VOXELS = 0.5


@dataclass(frozen=True)
class RefineRequest:
    points_mm: tuple[tuple[tuple[float, float, float], bool], ...]  # ((x, y, z) LPS mm, positive)
    include_current: bool

    @classmethod
    def parse(cls, body: bytes | str) -> RefineRequest:
        data = json_object(body)
        if not isinstance(data.get("points"), list) or not data["points"]:
            raise RequestRefused(400, 'the body must be {"points": [{"position_mm": [x, y, z], "positive": true}]}')
        if len(data["points"]) > MAX_POINTS:
            raise RequestRefused(400, f"at most {MAX_POINTS} points, got {len(data['points'])}")
        points = []
        for i, point in enumerate(data["points"]):
            position = point.get("position_mm") if isinstance(point, dict) else None
            if (not isinstance(position, list) or len(position) != 3
                    or not all(isinstance(v, int | float) and math.isfinite(v) for v in position)):
                raise RequestRefused(400, f"points[{i}].position_mm must be three finite numbers (LPS mm)")
            positive = point.get("positive", True)
            if not isinstance(positive, bool):
                raise RequestRefused(400, f"points[{i}].positive must be true or false")
            points.append(((float(position[0]), float(position[1]), float(position[2])), positive))
        include = data.get("include_current", True)
        if not isinstance(include, bool):
            raise RequestRefused(400, "include_current must be true or false")
        return cls(tuple(points), include)


class Refinement:
    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, study_input: StudyInput,
                 worker: WorkerClient) -> None:
        self.settings = settings
        self.rest = rest
        self.store = store
        self.input = study_input
        self.worker = worker

    def _promptable_model(self) -> str:
        try:
            models = self.worker.describe(self.settings.panel)
        except WorkerUnavailable as exc:
            raise RequestRefused(503, str(exc)) from exc
        for model in models.values():
            if model.state == "READY" and model.role == "promptable":
                return model.name
        # a model that is not ready does not say what it is for: name every one, with its reason
        reasons = "; ".join(f"{m.name}: {m.reason}" for m in models.values() if m.state != "READY")
        raise RequestRefused(503, f"no promptable expert (SAM2) is ready to refine ({reasons or 'none in the panel'})")

    def refine(self, study_instance_uid: str, body: bytes | str) -> dict[str, Any]:
        request = RefineRequest.parse(body)
        study_id = self.rest.lookup_study(study_instance_uid)
        if study_id is None:
            raise RequestRefused(404, f"no study {study_instance_uid} in Orthanc")
        model = self._promptable_model()
        timings: dict[str, float] = {}
        try:
            selection, instance_ids = self.input.select(study_id, timings)
            stack = self.input.build(instance_ids, timings, selection.candidate.stack_id)
        except InputError as exc:
            raise RequestRefused(422, f"the study's input cannot be refined: {exc}") from exc
        volume = stack.volume

        points: list[SlicePoint] = []
        for (position, positive) in request.points_mm:
            s, r, c = volume.voxel_index(position)
            limits = volume.shape
            if any(v < -OUTSIDE_TOLERANCE_VOXELS or v > n - 1 + OUTSIDE_TOLERANCE_VOXELS
                   for v, n in zip((s, r, c), limits, strict=True)):
                raise RequestRefused(400, f"point {list(position)} mm lies outside series "
                                          f"{selection.candidate.series_instance_uid} "
                                          f"(voxel {s:.1f}, {r:.1f}, {c:.1f})")
            points.append(SlicePoint(int(round(min(max(s, 0), limits[0] - 1))), min(max(r, 0.0), limits[1] - 1),
                                     min(max(c, 0.0), limits[2] - 1), positive))

        boxes: list[SliceBox] = []
        job = self.store.latest_done(study_id)
        if request.include_current and job is not None:
            current = self._current_mask(job.outputs.get("ensemble_seg_sop_instance_uid"), stack)
            if current is not None:
                boxes = boxes_from_mask(current)

        try:
            result = self.worker.segment(model, volume, boxes, points)
        except (WorkerUnavailable, ModelUnavailable) as exc:
            raise RequestRefused(503, str(exc)) from exc
        except InputError as exc:
            raise RequestRefused(400, str(exc)) from exc

        study_uid = study_instance_uid
        version = self.store.next_refinement_version(study_uid)
        prompts = {
            "points_voxel": [[p.slice_index, round(p.row, 2), round(p.col, 2), int(p.positive)] for p in points],
            "boxes_voxel": [[b.slice_index, b.row_min, b.col_min, b.row_max, b.col_max] for b in boxes],
            "points_mm": [[*pos, positive] for pos, positive in request.points_mm],
        }
        key = hashlib.sha256(json.dumps([instance_ids, prompts, version]).encode()).hexdigest()
        seg = write_segmentation(
            stack.datasets, result.mask,
            AlgorithmInfo(model, result.model_version, {"prompts": f"{len(points)} clicks, {len(boxes)} boxes"}),
            key, role=f"refined-{version}", series_number=REFINED_SERIES_NUMBER + version,
            series_description=f"{REFINED_DESCRIPTION_PREFIX} v{version} ({model})",
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            display_rgb=REFINED_RGB,
        )
        self.rest.store(seg)
        refined_cm3 = round(volume_cm3(result.mask, volume.voxel_volume_mm3), 3)
        self.store.add_refinement(study_uid, version, str(seg.SOPInstanceUID), prompts, refined_cm3)
        return {
            "study_instance_uid": study_uid,
            "version": version,
            "sop_instance_uid": str(seg.SOPInstanceUID),
            "series_instance_uid": str(seg.SeriesInstanceUID),
            "model": {"name": model, "version": result.model_version},
            "volume_cm3": refined_cm3,
            "prompts": prompts,
            "inference_s": round(result.inference_s, 3),
        }

    def _current_mask(self, sop_instance_uid: str | None, stack: Any) -> Any:
        """The current SEG's tumour core on the input grid (SAM2 outlines a core), or ``None`` when it is gone or
        does not fit."""
        if not sop_instance_uid:
            return None
        seg = self.rest.instance_dataset(sop_instance_uid)
        if seg is None:
            return None
        try:
            return read_source_mask(seg, stack.datasets, region_segment_numbers(seg, "TC") or [1])
        except (ValueError, KeyError):
            return None
