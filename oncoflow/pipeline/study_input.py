"""A study's input: its series described, its sequences and reference series chosen, their volumes built.

Read from Orthanc (:class:`oncoflow.pacs.orthanc_rest.OrthancRest`) by the pipeline, the timeline (to read an
earlier time point again) and the refinement.
"""

from __future__ import annotations

from typing import Any

from oncoflow.core.config import Settings
from oncoflow.dicom.series_selection import (
    OUTPUT_MODALITIES,
    Selection,
    SequenceSelection,
    SeriesCandidate,
    is_oncoflow_output,
    select_sequences,
)
from oncoflow.dicom.volume_builder import InputError, SortedSeries, build_volume, read_instance
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.stage_timing import timed


def _int_or_none(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


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
                    series_number=_int_or_none(tags.get("SeriesNumber", first.get("SeriesNumber"))),
                )
            )
        return candidates

    def select_sequences(self, orthanc_study_id: str,
                         timings: dict[str, float]) -> tuple[SequenceSelection, dict[str, list[str]]]:
        """The study's sequences and reference, and each chosen series' instances (Orthanc IDs; the reference under
        its kind, or ``""`` when its kind is unknown); raises :class:`InputError`."""
        with timed(timings, "select_series"):
            candidates = self.candidates(orthanc_study_id)
            if all(is_oncoflow_output(c) for c in candidates) and candidates:
                raise InputError("the study holds only OncoFlow outputs")
            selection = select_sequences(candidates, self.settings.series_preference, self.settings.sequence_patterns)
            chosen = {kind: c.orthanc_id for kind, c in selection.sequences.items()}
            chosen.setdefault(selection.reference.kind or "", selection.reference.candidate.orthanc_id)
            instances = {kind: list(self.rest.get_json(f"/series/{series}")["Instances"])
                         for kind, series in chosen.items()}
        return selection, instances

    def select(self, orthanc_study_id: str, timings: dict[str, float]) -> tuple[Selection, list[str]]:
        """The reference series and its instances' Orthanc IDs; raises :class:`InputError`."""
        selection, instances = self.select_sequences(orthanc_study_id, timings)
        return selection.reference, instances[selection.reference.kind or ""]

    def build(self, instance_ids: list[str], timings: dict[str, float]) -> SortedSeries:
        """The series' volume with its geometry; raises :class:`InputError`."""
        with timed(timings, "volume_build"):
            datasets = [read_instance(self.rest.get_bytes(f"/instances/{i}/file")) for i in instance_ids]
            return build_volume(datasets, self.settings.max_voxels)
