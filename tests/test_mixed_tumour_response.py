"""RANO 2.0 for a mixed tumour: the enhancing and the non-enhancing (T2/FLAIR) disease assessed in parallel.

Each case states both courses and the category RANO 2.0's combination table gives (docs/response-criteria.md,
section 6: PD with anything is PD; a response with SD is that response; CR with x is x), worked out by hand:
the enhancing disease by volume (PR at -65 %, PD at +40 % from the nadir), the T2/FLAIR disease by the product
of diameters (PR at -50 %, MR at -25 %, PD at +25 % from the nadir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oncoflow.core.config import load_settings
from oncoflow.pipeline.job_store import JobStore
from oncoflow.pipeline.patient_timeline import PatientTimeline


def _row(volume_cm3: float, product_mm2: float, status: str) -> dict[str, Any]:
    return {"tracking_id": "Lesion 1", "status": status, "split_from": None, "measurable": volume_cm3 > 0,
            "volume_cm3": volume_cm3, "product_mm2": product_mm2, "longest_diameter_mm": 0.0, "target": False}


def _timeline(tmp_path: Path, enhancing_cm3: tuple[float, float], flair_mm2: tuple[float, float] | None,
              **env: str) -> PatientTimeline:
    """Two visits 60 days apart; the enhancing lesion's volumes, the T2/FLAIR lesion's products (``None``: the
    SEGs held no whole-tumour region)."""
    store = JobStore(tmp_path / "jobs.sqlite")
    for index, (orthanc_id, day) in enumerate((("s1", "2026-01-05"), ("s2", "2026-03-06"))):
        status = "baseline" if index == 0 else "continued"
        result = {"lesions": [_row(enhancing_cm3[index], 400.0, status)], "response": None,
                  "non_enhancing_lesions": None if flair_mm2 is None else [_row(30.0, flair_mm2[index], status)]}
        store.save_time_point(orthanc_id, "P1", f"1.{index}", day, None, result, None)
    settings = load_settings({"ONCOFLOW_HOME": str(tmp_path), **env})
    return PatientTimeline(settings, None, store, None, None, None)  # type: ignore[arg-type]  # stored rows only


@pytest.mark.parametrize(("enhancing_cm3", "flair_mm2", "category", "enhancing", "non_enhancing"), [
    ((10.0, 2.0), (1000.0, 1000.0), "PR", "PR", "SD"),  # -80 % enhancing, FLAIR unchanged: the response stands
    ((10.0, 10.5), (1000.0, 1300.0), "PD", "SD", "PD"),  # FLAIR +30 % from the nadir: PD, the enhancing is stable
    ((10.0, 0.0), (1000.0, 400.0), "PR", "CR", "PR"),  # enhancing gone, FLAIR -60 %: the non-CR part, PR
    ((10.0, 10.0), (1000.0, 700.0), "MR", "SD", "MR"),  # FLAIR -30 %: a minor response, non-enhancing only
])
def test_the_two_categories_are_combined(tmp_path: Path, enhancing_cm3: tuple[float, float],
                                         flair_mm2: tuple[float, float], category: str, enhancing: str,
                                         non_enhancing: str) -> None:
    response = _timeline(tmp_path, enhancing_cm3, flair_mm2).reassess("s2")["response"]
    assert (response["enhancing"]["category"], response["non_enhancing"]["category"]) == (enhancing, non_enhancing)
    assert response["category"] == category
    assert f"enhancing {enhancing} with non-enhancing {non_enhancing} is {category}" in response["reasons"][-1]


def test_an_enhancing_presentation_reads_the_enhancing_disease_only(tmp_path: Path) -> None:
    response = _timeline(tmp_path, (10.0, 10.5), (1000.0, 1300.0),
                         ONCOFLOW_TUMOUR_PRESENTATION="enhancing").reassess("s2")["response"]
    assert response["category"] == "SD" and "non_enhancing" not in response


def test_without_a_whole_tumour_region_the_enhancing_response_is_given_alone(tmp_path: Path) -> None:
    response = _timeline(tmp_path, (10.0, 2.0), None).reassess("s2")["response"]
    assert response["category"] == "PR" and "non_enhancing" not in response


def test_an_unknown_presentation_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ONCOFLOW_TUMOUR_PRESENTATION='glioma' is not one of mixed, enhancing"):
        load_settings({"ONCOFLOW_HOME": str(tmp_path), "ONCOFLOW_TUMOUR_PRESENTATION": "glioma"})
