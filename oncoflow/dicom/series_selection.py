"""Pick the input series of a study: MR, 3-D, preferring post-contrast T1, then T1, then FLAIR.

The preference order comes from ``ONCOFLOW_SERIES_PREFERENCE``. A series is
classified from its SeriesDescription / ProtocolName / SequenceName first, then
from sequence attributes (ContrastBolusAgent (0018,0010), ScanningSequence
(0018,0020), RepetitionTime (0018,0080), EchoTime (0018,0081), InversionTime
(0018,0082)). OncoFlow's own outputs (SEG, SR, DOC, ...) are never inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from oncoflow.dicom.derived_object import MANUFACTURER
from oncoflow.dicom.volume_builder import InputError

OUTPUT_MODALITIES = frozenset({"SEG", "SR", "DOC", "PR", "KO", "REG", "RTSTRUCT"})

_CONTRAST = re.compile(r"(post|\+\s*c\b|\bc\+|gad|gd\b|gd[-_ ]|contrast|\bce\b|\bce[-_]|enhanc|mprage.*post)", re.I)
_FLAIR = re.compile(r"(flair|dark[ _-]?fluid|tirm)", re.I)
_T1 = re.compile(r"(t1|mprage|spgr|bravo|tfe\b|vibe|fspgr)", re.I)
_T2 = re.compile(r"(t2|tse\b|fse\b)", re.I)


@dataclass(frozen=True)
class SeriesCandidate:
    """What selection needs to know of one series (from Orthanc's tags of its first instance)."""

    orthanc_id: str
    series_instance_uid: str
    modality: str
    n_instances: int
    description: str = ""
    protocol_name: str = ""
    sequence_name: str = ""
    manufacturer: str = ""
    contrast_agent: str = ""
    scanning_sequence: str = ""
    repetition_time_ms: float | None = None
    echo_time_ms: float | None = None
    inversion_time_ms: float | None = None


@dataclass(frozen=True)
class Selection:
    candidate: SeriesCandidate
    kind: str | None  # "t1c", "t1", "flair", "t2" or None when unclassified
    reason: str


def is_oncoflow_output(candidate: SeriesCandidate) -> bool:
    return candidate.modality in OUTPUT_MODALITIES or candidate.manufacturer == MANUFACTURER


def classify(candidate: SeriesCandidate) -> str | None:
    """The MR weighting of a series, or ``None`` when it cannot be told."""
    text = " ".join((candidate.description, candidate.protocol_name, candidate.sequence_name))
    if _FLAIR.search(text):
        return "flair"
    if _T1.search(text):
        return "t1c" if (_CONTRAST.search(text) or candidate.contrast_agent.strip()) else "t1"
    if _T2.search(text):
        return "t2"
    tr, te, ti = candidate.repetition_time_ms, candidate.echo_time_ms, candidate.inversion_time_ms
    if ti is not None and ti >= 1500 and "IR" in candidate.scanning_sequence:
        return "flair"
    if tr is not None and te is not None:
        if tr < 1000 and te < 30:
            return "t1c" if candidate.contrast_agent.strip() else "t1"
        if tr > 2000 and te > 70:
            return "t2"
    return None


def select_input_series(candidates: Sequence[SeriesCandidate], preference: Sequence[str]) -> Selection:
    """Choose the input series; ties go to the series with more images.

    Raises:
        InputError: when the study holds no MR series.
    """
    inputs = [c for c in candidates if not is_oncoflow_output(c)]
    mr = [c for c in inputs if c.modality == "MR"]
    if not mr:
        found = sorted({c.modality or "?" for c in inputs}) or ["none"]
        raise InputError(f"the study has no MR series (modalities found: {', '.join(found)})")
    kinds = {c.orthanc_id: classify(c) for c in mr}
    for wanted in preference:
        matching = [c for c in mr if kinds[c.orthanc_id] == wanted]
        if matching:
            best = max(matching, key=lambda c: c.n_instances)
            return Selection(best, wanted, f"preferred kind '{wanted}' ({best.description or 'no description'})")
    best = max(mr, key=lambda c: c.n_instances)
    return Selection(
        best,
        kinds[best.orthanc_id],
        f"no series matched {', '.join(preference)}; took the largest MR series "
        f"({best.description or 'no description'}, {best.n_instances} images)",
    )
