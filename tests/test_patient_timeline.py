"""Which earlier time point a follow-up is compared with (ONCOFLOW_BASELINE)."""

from __future__ import annotations

import pytest

from oncoflow.core.config import load_settings
from oncoflow.pipeline.patient_timeline import PatientTimeline

VOLUMES_CM3 = [10.0, 6.0, 8.0, 4.0, 9.0]  # time points in date order


@pytest.mark.parametrize(("rule", "expected"), [("previous", [0, 1, 2, 3]), ("first", [0, 0, 0, 0]),
                                               ("nadir", [0, 1, 1, 3])])
def test_baseline_rules(rule: str, expected: list[int]) -> None:
    settings = load_settings({"ONCOFLOW_HOME": "/tmp/oncoflow-timeline-test", "ONCOFLOW_BASELINE": rule})
    timeline = PatientTimeline(settings, None, None, None, None, None)  # type: ignore[arg-type]  # only the rule is used
    assert [timeline._baseline_index(i, VOLUMES_CM3) for i in range(1, 5)] == expected


def test_a_time_point_without_a_volume_is_never_the_nadir() -> None:
    """A job that measured no volume (``None``) was read as 0 cm3 and became the nadir of every later visit."""
    settings = load_settings({"ONCOFLOW_HOME": "/tmp/oncoflow-timeline-test", "ONCOFLOW_BASELINE": "nadir"})
    timeline = PatientTimeline(settings, None, None, None, None, None)  # type: ignore[arg-type]  # only the rule is used
    volumes = [10.0, None, 8.0, 0.0, 3.0]
    assert [timeline._baseline_index(i, volumes) for i in range(1, 5)] == [0, 0, 2, 3]  # 0.0 is measured: a CR
    assert timeline._baseline_index(1, [None]) == 0  # nothing measured before: the first time point
