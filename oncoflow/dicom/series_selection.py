"""Find a study's sequences (T1, T1c, T2, FLAIR) and its reference series: post-contrast T1, then T1, then FLAIR.

The reference order comes from ``ONCOFLOW_SERIES_PREFERENCE``. A series is
classified (:func:`classify`) by ``ONCOFLOW_SEQUENCE_PATTERNS`` first (a site's own
regular expressions on SeriesDescription / ProtocolName / SequenceName, per sequence),
then by the usual names in those attributes, then by its acquisition: ContrastBolusAgent
(0018,0010), ScanningSequence (0018,0020), RepetitionTime (0018,0080), EchoTime
(0018,0081), InversionTime (0018,0082). Two series of one kind (a repeat after motion, a
2-D and a 3-D T1c): the one with more images is taken, then the later SeriesNumber, and
the other is named as left out. OncoFlow's own outputs (SEG, SR, DOC, ...) are never inputs.

A series sent as one multi-frame object (Enhanced MR, Legacy Converted Enhanced MR) gives one candidate per stack
(StackID, 0020,9056, or orientation; :mod:`oncoflow.dicom.enhanced_mr_frames`), counted in frames, and the stack
chosen is named in the selection's JSON and reasons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    series_number: int | None = None
    stack_id: str | None = None  # the stack of a multi-frame object ("" its only one), None for a classic series

    @property
    def key(self) -> tuple[str, str | None]:
        """The candidate's identity: its series and, in a multi-frame object, its stack."""
        return self.orthanc_id, self.stack_id

    @property
    def name(self) -> str:
        """The series UID, with the stack of a multi-frame object with several stacks."""
        return f"{self.series_instance_uid} stack {self.stack_id}" if self.stack_id else self.series_instance_uid


@dataclass(frozen=True)
class Selection:
    candidate: SeriesCandidate
    kind: str | None  # "t1c", "t1", "flair", "t2" or None when unclassified
    reason: str


@dataclass(frozen=True)
class SequenceSelection:
    """The study's sequences: one series per kind found, the reference among them, and what was left out."""

    reference: Selection
    sequences: dict[str, SeriesCandidate]  # kind -> series ("t1c", "t1", "t2", "flair")
    reasons: dict[str, str]  # kind -> why this series
    left_out: list[str] = field(default_factory=list)  # series not used, each with the reason

    def as_json(self) -> dict[str, object]:
        return {
            "reference": self.reference.kind,
            "sequences": {kind: {"series_instance_uid": c.series_instance_uid, "description": c.description,
                                 "images": c.n_instances, "reason": self.reasons[kind],
                                 **({"stack_id": c.stack_id} if c.stack_id is not None else {})}
                          for kind, c in self.sequences.items()},
            "left_out": self.left_out,
        }


def is_oncoflow_output(candidate: SeriesCandidate) -> bool:
    return candidate.modality in OUTPUT_MODALITIES or candidate.manufacturer == MANUFACTURER


def classify(candidate: SeriesCandidate, patterns: Mapping[str, str] | None = None) -> str | None:
    """The MR weighting of a series, or ``None`` when it cannot be told; ``patterns`` (kind -> regular expression,
    case-insensitive) are a site's own names and are tried first."""
    text = " ".join((candidate.description, candidate.protocol_name, candidate.sequence_name))
    for kind, pattern in (patterns or {}).items():
        if re.search(pattern, text, re.I):
            return kind
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
    kinds = {c.key: classify(c) for c in mr}
    for wanted in preference:
        matching = [c for c in mr if kinds[c.key] == wanted]
        if matching:
            best = max(matching, key=lambda c: c.n_instances)
            return Selection(best, wanted, f"preferred kind '{wanted}' ({best.description or 'no description'})")
    best = max(mr, key=lambda c: c.n_instances)
    return Selection(
        best,
        kinds[best.key],
        f"no series matched {', '.join(preference)}; took the largest MR series "
        f"({best.description or 'no description'}, {best.n_instances} images)",
    )


def select_sequences(candidates: Sequence[SeriesCandidate], preference: Sequence[str],
                     patterns: Mapping[str, str] | None = None) -> SequenceSelection:
    """One series per sequence kind, and the reference (the first kind of ``preference`` found).

    A study whose MR series cannot be classified keeps today's rule: its largest MR series is the reference, of
    unknown kind. Raises :class:`InputError` when the study holds no MR series.
    """
    inputs = [c for c in candidates if not is_oncoflow_output(c)]
    mr = [c for c in inputs if c.modality == "MR"]
    if not mr:
        found = sorted({c.modality or "?" for c in inputs}) or ["none"]
        raise InputError(f"the study has no MR series (modalities found: {', '.join(found)})")
    by_kind: dict[str, list[SeriesCandidate]] = {}
    for candidate in mr:
        kind = classify(candidate, patterns)
        if kind is not None:
            by_kind.setdefault(kind, []).append(candidate)
    sequences: dict[str, SeriesCandidate] = {}
    reasons: dict[str, str] = {}
    left_out: list[str] = []
    for kind, found in by_kind.items():
        ranked = sorted(found, key=lambda c: (c.n_instances, c.series_number or 0), reverse=True)
        chosen = sequences[kind] = ranked[0]
        reasons[kind] = f"{chosen.description or 'no description'} ({chosen.n_instances} images" + (
            f", stack {chosen.stack_id} of a multi-frame object)" if chosen.stack_id else ")")
        for other in ranked[1:]:
            left_out.append(f"{kind} series {other.name} ({other.description or 'no description'}, "
                            f"{other.n_instances} images) not used: {chosen.description or chosen.series_instance_uid}"
                            f" has {'more images' if chosen.n_instances > other.n_instances else 'a later number'}")
    for candidate in mr:
        if classify(candidate, patterns) is None:
            left_out.append(f"series {candidate.name} ({candidate.description or 'no description'}) "
                            "is no sequence OncoFlow can tell (T1, T1c, T2, FLAIR)")
    reference_kind = next((kind for kind in preference if kind in sequences), None)
    if reference_kind is None:
        fallback = select_input_series(mr, preference)
        return SequenceSelection(fallback, {}, {}, left_out)
    chosen = sequences[reference_kind]
    reference = Selection(chosen, reference_kind,
                          f"preferred kind '{reference_kind}' ({chosen.description or 'no description'})")
    return SequenceSelection(reference, sequences, reasons, left_out)
