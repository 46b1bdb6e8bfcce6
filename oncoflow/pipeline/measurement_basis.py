"""What a time point's tumour was measured on, and whether two time points measured it alike.

A change between two visits means something only when both were measured the same way: on the same MR
sequence (an enhancing volume on a T1c against one on a FLAIR is not a change, it is another quantity), and
as the same tumour region (tumour core against whole tumour). The patient timeline refuses to compare time
points that differ there, and names the smaller differences that leave the comparison standing but ask the
reader to look (a sequence the panel saw at one visit only, other experts, compartments fused at one visit
only).

The basis is read from the job's outputs (``oncoflow.pipeline.study_pipeline``): ``sequences.reference`` (the
reference sequence kind), ``sequences.co_registration`` (the sequences the experts saw), ``driving_region``,
``compartments`` and ``panel.ran``. A job from before these were recorded has an unknown basis, which is said,
never taken as a match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeasurementBasis:
    """How one time point was measured."""

    reference_kind: str | None  # the MR sequence the masks are on: t1c, t1, t2, flair; None: not recorded
    driving_region: str  # the tumour region the change follows: ET, TC or WT
    sequences: frozenset[str]  # the sequences the experts saw (co-registered onto the reference)
    compartments: bool  # enhancing, necrosis and oedema fused (else regions only)
    experts: frozenset[str]  # the experts that ran

    @classmethod
    def of(cls, outputs: Mapping[str, Any]) -> MeasurementBasis:
        """The basis recorded in a job's ``outputs``."""
        sequences = outputs.get("sequences") or {}
        aligned = sequences.get("co_registration") or {}
        seen = set(aligned.get("sequences") or {}) - set(aligned.get("left_out") or {})
        return cls(
            reference_kind=sequences.get("reference"),
            driving_region=str(outputs.get("driving_region", "TC")),
            sequences=frozenset(seen),
            compartments=bool(outputs.get("compartments", False)),
            experts=frozenset((outputs.get("panel") or {}).get("ran", [])),
        )


@dataclass(frozen=True)
class Comparability:
    """Whether two time points may be compared: ``refused`` says why not; ``differences`` are what the reader
    should know about a comparison that stands."""

    refused: str | None
    differences: tuple[str, ...]


def _names(kinds: frozenset[str]) -> str:
    return ", ".join(sorted(kinds)) or "none"


def comparability(baseline: MeasurementBasis, follow_up: MeasurementBasis) -> Comparability:
    """Like with like: refused on another reference sequence or tumour region; the other differences named."""
    if baseline.reference_kind is None or follow_up.reference_kind is None:
        which = "baseline" if baseline.reference_kind is None else "follow-up"
        unknown = (f"the {which}'s measurement sequence was not recorded (an older job): like with like not "
                   "checked; re-analyse it to check",)
        return Comparability(None, unknown)
    if baseline.reference_kind != follow_up.reference_kind:
        return Comparability(
            f"not like with like: the baseline was measured on {baseline.reference_kind}, the follow-up on "
            f"{follow_up.reference_kind}; send the follow-up's {baseline.reference_kind} to compare", ())
    if baseline.driving_region != follow_up.driving_region:
        return Comparability(
            f"not like with like: the baseline measured region {baseline.driving_region}, the follow-up region "
            f"{follow_up.driving_region} (ONCOFLOW_DRIVING_REGION changed?); re-analyse one of them", ())
    differences = []
    if baseline.sequences != follow_up.sequences:
        differences.append(f"the experts saw {_names(baseline.sequences)} at baseline and "
                           f"{_names(follow_up.sequences)} at follow-up")
    if baseline.experts != follow_up.experts:
        differences.append(f"experts {_names(baseline.experts)} at baseline, {_names(follow_up.experts)} at "
                           "follow-up")
    if baseline.compartments != follow_up.compartments:
        differences.append("compartments (enhancing, necrosis, oedema) fused at "
                           f"{'baseline' if baseline.compartments else 'follow-up'} only")
    return Comparability(None, tuple(differences))
