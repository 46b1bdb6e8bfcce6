"""A study's input: its series described, the input series chosen by the preference rule, its volume built.

Read from Orthanc (:class:`oncoflow.pacs.orthanc_rest.OrthancRest`) by the pipeline, the timeline (to read an
earlier time point again) and the refinement.
"""

from __future__ import annotations

from typing import Any

from oncoflow.core.config import Settings
from oncoflow.dicom.series_selection import (
    OUTPUT_MODALITIES,
    Selection,
    SeriesCandidate,
    is_oncoflow_output,
    select_input_series,
)
from oncoflow.dicom.volume_builder import InputError, SortedSeries, build_volume, read_instance
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.stage_timing import timed


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class StudyInput:
    """Chooses and reads the input series of a study stored in Orthanc."""

    def __init__(self, settings: Settings, rest: OrthancRest) -> None:
        self.settings = settings
        self.rest = rest

    def candidates(self, orthanc_study_id: str) -> list[SeriesCandidate]:
        """Every series of the study, described from its main tags and its first instance's header."""
        candidates = []
        for series in self.rest.get_json(f"/studies/{orthanc_study_id}/series"):
            tags = series.get("MainDicomTags", {})
            instances = series.get("Instances", [])
            first: dict[str, Any] = {}
            if instances and tags.get("Modality") not in OUTPUT_MODALITIES:
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

    def select(self, orthanc_study_id: str, timings: dict[str, float]) -> tuple[Selection, list[str]]:
        """The input series (by the preference rule) and its instances' Orthanc IDs; raises :class:`InputError`."""
        with timed(timings, "select_series"):
            candidates = self.candidates(orthanc_study_id)
            if all(is_oncoflow_output(c) for c in candidates) and candidates:
                raise InputError("the study holds only OncoFlow outputs")
            selection = select_input_series(candidates, self.settings.series_preference)
            instance_ids: list[str] = self.rest.get_json(f"/series/{selection.candidate.orthanc_id}")["Instances"]
        return selection, instance_ids

    def build(self, instance_ids: list[str], timings: dict[str, float]) -> SortedSeries:
        """The series' volume with its geometry; raises :class:`InputError`."""
        with timed(timings, "volume_build"):
            datasets = [read_instance(self.rest.get_bytes(f"/instances/{i}/file")) for i in instance_ids]
            return build_volume(datasets, self.settings.max_voxels)
