"""Like with like: two time points are compared only when measured on the same sequence and tumour region."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from oncoflow.measure.longitudinal_comparison import ComparisonError
from oncoflow.pipeline.job_store import Job
from oncoflow.pipeline.measurement_basis import MeasurementBasis, comparability
from oncoflow.pipeline.patient_timeline import _like_with_like


def outputs(reference: str = "t1c", region: str = "TC", seen: tuple[str, ...] = ("t1c", "t1", "t2", "flair"),
            left_out: tuple[str, ...] = (), compartments: bool = True,
            ran: tuple[str, ...] = ("nnunet_a", "nnunet_b")) -> dict[str, Any]:
    """A job's outputs as study_pipeline records them (only the fields the basis reads)."""
    return {"sequences": {"reference": reference, "co_registration": {
        "reference": reference, "sequences": {k: {"how": "rigid"} for k in seen},
        "left_out": {k: f"{k} did not register" for k in left_out}}},
        "driving_region": region, "compartments": compartments, "panel": {"ran": list(ran)}}


def test_the_same_basis_is_compared_without_remarks() -> None:
    assert comparability(MeasurementBasis.of(outputs()), MeasurementBasis.of(outputs())).refused is None
    assert comparability(MeasurementBasis.of(outputs()), MeasurementBasis.of(outputs())).differences == ()


def test_another_reference_sequence_is_refused_with_both_named() -> None:
    found = comparability(MeasurementBasis.of(outputs()), MeasurementBasis.of(outputs(reference="flair")))
    assert found.refused is not None
    assert "baseline was measured on t1c, the follow-up on flair" in found.refused


def test_another_region_is_refused() -> None:
    found = comparability(MeasurementBasis.of(outputs(region="TC")), MeasurementBasis.of(outputs(region="WT")))
    assert found.refused is not None and "region TC" in found.refused and "region WT" in found.refused


def test_smaller_differences_stand_but_are_named() -> None:
    follow_up = outputs(left_out=("flair",), compartments=False, ran=("nnunet_a",))
    found = comparability(MeasurementBasis.of(outputs()), MeasurementBasis.of(follow_up))
    assert found.refused is None
    assert found.differences == (
        "the experts saw flair, t1, t1c, t2 at baseline and t1, t1c, t2 at follow-up",
        "experts nnunet_a, nnunet_b at baseline, nnunet_a at follow-up",
        "compartments (enhancing, necrosis, oedema) fused at baseline only",
    )


def test_an_unrecorded_basis_is_said_not_taken_as_a_match() -> None:
    found = comparability(MeasurementBasis.of({"driving_region": "TC"}), MeasurementBasis.of(outputs()))
    assert found.refused is None and "not recorded" in found.differences[0]


def _studies(*visit_outputs: dict[str, Any]) -> list[tuple[date, str, str, Job]]:
    return [(date(2026, 1 + i, 1), "", f"s{i}", Job(i, f"s{i}", f"1.{i}", "done", 1, None, None, None, {}, o,
                                                     "stable", 0.0, 0.0)) for i, o in enumerate(visit_outputs)]


def test_a_follow_up_unlike_its_first_visit_is_refused_even_when_like_its_baseline() -> None:
    """With the previous visit as baseline, visits 2 and 3 on FLAIR are alike, but the response reads visit 3
    against the first (T1c): refused."""
    studies = _studies(outputs(), outputs(reference="flair"), outputs(reference="flair"))
    with pytest.raises(ComparisonError, match="measured on t1c, the follow-up on flair"):
        _like_with_like(studies, 1, 2)
    assert _like_with_like(_studies(outputs(), outputs(), outputs(ran=("nnunet_a",))), 1, 2) == (
        "experts nnunet_a, nnunet_b at baseline, nnunet_a at follow-up",)
