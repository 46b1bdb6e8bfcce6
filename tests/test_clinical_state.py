"""A time point's clinical status and steroid dose: the entry's checks, its storage, and the response it changes.

The expected categories are RANO 2.0's rules written out by hand for each case (docs/response-criteria.md):
clinical deterioration is PD whatever the images show; a PR needs a steroid dose no higher than at baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oncoflow.core.config import load_settings
from oncoflow.pipeline.clinical_state import ClinicalEntry, ClinicalEntryError
from oncoflow.pipeline.job_store import JobStore
from oncoflow.pipeline.patient_timeline import PatientTimeline


def test_a_valid_entry_is_read() -> None:
    assert ClinicalEntry.parse(b'{"status": "worse", "steroid_mg_per_day": 8}') == ClinicalEntry("worse", 8.0)
    assert ClinicalEntry.parse('{"status": null, "steroid_mg_per_day": null}') == ClinicalEntry(None, None)
    assert ClinicalEntry.parse(b'{"status": "stable", "steroid_mg_per_day": 0}') == ClinicalEntry("stable", 0.0)


@pytest.mark.parametrize(("body", "message"), [
    (b"", "not JSON"),
    (b"[1]", "the body must be"),
    (b'{"status": "worse"}', "the body must be"),  # both keys, so "not known" is said, not implied
    (b'{"status": "worse", "steroid_mg_per_day": 1, "note": "x"}', "the body must be"),
    (b'{"status": "better", "steroid_mg_per_day": 1}', "status must be one of improved, stable, worse"),
    (b'{"status": "stable", "steroid_mg_per_day": -2}', "between 0 and 100"),
    (b'{"status": "stable", "steroid_mg_per_day": 400}', "between 0 and 100"),  # 4 mg typed as 400
    (b'{"status": "stable", "steroid_mg_per_day": "4 mg"}', "a number or null"),
    (b'{"status": "stable", "steroid_mg_per_day": true}', "a number or null"),
    (b'{"status": "stable", "steroid_mg_per_day": NaN}', "a number or null"),
])
def test_a_bad_entry_is_refused_with_its_reason(body: bytes, message: str) -> None:
    with pytest.raises(ClinicalEntryError, match=message):
        ClinicalEntry.parse(body)


def test_the_store_keeps_the_last_entry_and_who_made_it(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    assert store.clinical_state("1.2.3") is None
    store.set_clinical_state("1.2.3", "stable", 4.0, "dr-a")
    store.set_clinical_state("1.2.3", "worse", None, "dr-b")
    stored = store.clinical_state("1.2.3")
    assert stored is not None
    assert (stored["status"], stored["steroid_mg_per_day"], stored["entered_by"]) == ("worse", None, "dr-b")


def _lesion(tracking_id: str, volume_cm3: float, status: str) -> dict[str, Any]:
    return {"tracking_id": tracking_id, "status": status, "split_from": None, "measurable": volume_cm3 > 0,
            "volume_cm3": volume_cm3, "product_mm2": 0.0, "longest_diameter_mm": 0.0, "target": False}


@pytest.fixture
def two_visits(tmp_path: Path) -> tuple[PatientTimeline, JobStore]:
    """A baseline with one 10 cm3 lesion and a follow-up 60 days later where it measures 2 cm3 (-80 %: a PR by the
    volumetric rule, preliminary until confirmed)."""
    store = JobStore(tmp_path / "jobs.sqlite")
    for orthanc_id, uid, day, volume, status in (("s1", "1.1", "2026-01-05", 10.0, "baseline"),
                                                  ("s2", "1.2", "2026-03-06", 2.0, "continued")):
        store.save_time_point(orthanc_id, "P1", uid, day, None, {"lesions": [_lesion("Lesion 1", volume, status)],
                                                                  "response": None}, None)
    settings = load_settings({"ONCOFLOW_HOME": str(tmp_path)})
    return PatientTimeline(settings, None, store, None, None, None), store  # type: ignore[arg-type]  # stored rows only


def test_without_an_entry_the_measured_response_stands(two_visits: tuple[PatientTimeline, JobStore]) -> None:
    timeline, store = two_visits
    response = timeline.reassess("s2")["response"]
    assert (response["category"], response["confirmation"]) == ("PR", "preliminary")
    assert "not entered" in " ".join(response["reasons"])
    assert store.time_point("s2")["response"] == response  # type: ignore[index]


def test_clinical_deterioration_is_progression(two_visits: tuple[PatientTimeline, JobStore]) -> None:
    timeline, store = two_visits
    store.set_clinical_state("1.2", "worse", 2.0, "dr-a")
    response = timeline.reassess("s2")["response"]
    assert response["category"] == "PD" and "clinical deterioration" in " ".join(response["reasons"])
    assert store.time_point("s2")["clinical"]["status"] == "worse"  # type: ignore[index]


def test_a_raised_steroid_dose_holds_a_partial_response_at_stable(
        two_visits: tuple[PatientTimeline, JobStore]) -> None:
    timeline, store = two_visits
    store.set_clinical_state("1.1", "stable", 2.0, "dr-a")
    store.set_clinical_state("1.2", "improved", 8.0, "dr-a")
    assert timeline.reassess("s2")["response"]["category"] == "SD"
    store.set_clinical_state("1.2", "improved", 2.0, "dr-a")  # the same dose as at baseline: the PR stands
    assert timeline.reassess("s2")["response"]["category"] == "PR"


def test_a_baseline_entry_reassesses_the_later_visits(two_visits: tuple[PatientTimeline, JobStore]) -> None:
    timeline, store = two_visits
    store.set_clinical_state("1.1", "stable", 0.0, "dr-a")
    store.set_clinical_state("1.2", "stable", 6.0, "dr-a")
    assert timeline.reassess("s1")["response"] is None  # the first visit has no response of its own ...
    assert store.time_point("s2")["response"]["category"] == "SD"  # type: ignore[index]  # ... its follow-up does


def test_a_study_without_an_assessed_time_point_cannot_be_reassessed(
        two_visits: tuple[PatientTimeline, JobStore]) -> None:
    timeline, _ = two_visits
    with pytest.raises(KeyError, match="no assessed time point"):
        timeline.reassess("s9")
