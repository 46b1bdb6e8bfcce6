"""A study's input: its series described, its sequences and reference series chosen, their volumes built.

Read from Orthanc (:class:`oncoflow.pacs.orthanc_rest.OrthancRest`) by the pipeline, the timeline (to read an
earlier time point again) and the refinement. A series sent as one multi-frame object (Enhanced MR, Legacy
Converted Enhanced MR) is read whole to describe it: one candidate per stack, its acquisition attributes taken
from the object's shared functional groups where they are not top-level.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydicom.dataset import Dataset

from oncoflow.core.config import Settings
from oncoflow.dicom.enhanced_mr_frames import MultiFrameError, shared_attribute, stacks
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
            described = (
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
            if len(instances) == 1 and (_int_or_none(first.get("NumberOfFrames")) or 1) > 1:
                candidates.extend(self._stack_candidates(described, instances[0]))
            else:
                candidates.append(described)
        return candidates

    def _stack_candidates(self, series: SeriesCandidate, instance_id: str) -> list[SeriesCandidate]:
        """One candidate per stack of a multi-frame object, counted in frames; the object unchanged (its stack
        unknown: building it names the problem) when its frames cannot be grouped."""
        ds = read_instance(self.rest.get_bytes(f"/instances/{instance_id}/file"))
        acquisition = _acquisition(ds, series)
        try:
            found = stacks(ds)
        except MultiFrameError:
            return [acquisition]
        return [dataclasses.replace(acquisition, stack_id=stack_id, n_instances=len(frames))
                for stack_id, frames in found.items()]

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

    def build(self, instance_ids: list[str], timings: dict[str, float], stack_id: str | None = None) -> SortedSeries:
        """The series' volume with its geometry (of stack ``stack_id`` in a multi-frame object, the candidate's
        :attr:`SeriesCandidate.stack_id`); raises :class:`InputError`."""
        with timed(timings, "volume_build"):
            datasets = [read_instance(self.rest.get_bytes(f"/instances/{i}/file")) for i in instance_ids]
            return build_volume(datasets, self.settings.max_voxels, stack_id)


def _acquisition(ds: Dataset, series: SeriesCandidate) -> SeriesCandidate:
    """``series`` with the acquisition attributes a multi-frame object keeps in its shared functional groups
    (MRTimingAndRelatedParametersSequence, MREchoSequence, UnassignedSharedConvertedAttributesSequence, ...)."""
    def text(keyword: str, current: str) -> str:
        return current or str(shared_attribute(ds, keyword) or "")

    def number(keyword: str, current: float | None) -> float | None:
        return current if current is not None else _float_or_none(shared_attribute(ds, keyword))

    echo_time_ms = number("EchoTime", series.echo_time_ms)
    return dataclasses.replace(
        series, protocol_name=text("ProtocolName", series.protocol_name),
        sequence_name=text("SequenceName", series.sequence_name) or text("PulseSequenceName", ""),
        contrast_agent=text("ContrastBolusAgent", series.contrast_agent),
        scanning_sequence=text("ScanningSequence", series.scanning_sequence),
        repetition_time_ms=number("RepetitionTime", series.repetition_time_ms),
        echo_time_ms=echo_time_ms if echo_time_ms is not None else number("EffectiveEchoTime", None),
        inversion_time_ms=number("InversionTime", series.inversion_time_ms))
