"""Input series choice: post-contrast T1 first, then T1, then FLAIR; never OncoFlow's own outputs."""

from __future__ import annotations

import pytest

from oncoflow.dicom.series_selection import SeriesCandidate, classify, select_input_series
from oncoflow.dicom.volume_builder import InputError

PREFERENCE = ("t1c", "t1", "flair")


def series(oid: str, description: str, modality: str = "MR", n: int = 100, **tags: object) -> SeriesCandidate:
    return SeriesCandidate(orthanc_id=oid, series_instance_uid=f"1.2.{len(oid)}", modality=modality,
                           n_instances=n, description=description, **tags)


@pytest.mark.parametrize(
    ("description", "kind"),
    [
        ("T1 MPRAGE post-contrast", "t1c"),
        ("AX T1 +C", "t1c"),
        ("t1_se_tra_Gd", "t1c"),
        ("T1 MPRAGE", "t1"),
        ("AX FLAIR", "flair"),
        ("T2 TSE", "t2"),
        ("localizer", None),
    ],
)
def test_classify_by_description(description: str, kind: str | None) -> None:
    assert classify(series("a", description)) == kind


def test_classify_by_sequence_attributes() -> None:
    assert classify(series("a", "", repetition_time_ms=500, echo_time_ms=10, contrast_agent="Gadovist")) == "t1c"
    assert classify(series("a", "", repetition_time_ms=9000, echo_time_ms=90, inversion_time_ms=2500,
                           scanning_sequence="SE\\IR")) == "flair"
    assert classify(series("a", "", repetition_time_ms=4000, echo_time_ms=100)) == "t2"


def test_prefers_post_contrast_t1_and_ignores_outputs() -> None:
    chosen = select_input_series(
        [
            series("flair", "AX FLAIR"),
            series("t1", "T1 MPRAGE"),
            series("t1c", "T1 MPRAGE post", n=176),
            series("seg", "OncoFlow SEG", modality="SEG", n=1),
            series("mine", "T1 post", manufacturer="OncoFlow"),
        ],
        PREFERENCE,
    )
    assert chosen.candidate.orthanc_id == "t1c" and chosen.kind == "t1c"


def test_falls_back_in_preference_order_then_to_largest_mr() -> None:
    assert select_input_series([series("f", "FLAIR"), series("t1", "T1")], PREFERENCE).kind == "t1"
    assert select_input_series([series("f", "FLAIR"), series("t2", "T2")], ("flair",)).kind == "flair"
    fallback = select_input_series([series("x", "scout", n=3), series("y", "DWI", n=60)], PREFERENCE)
    assert fallback.candidate.orthanc_id == "y" and "largest MR series" in fallback.reason


def test_study_without_mr_is_refused() -> None:
    with pytest.raises(InputError, match="no MR series.*CT"):
        select_input_series([series("ct", "HEAD", modality="CT")], PREFERENCE)
