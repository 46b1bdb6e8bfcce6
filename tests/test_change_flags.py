"""The follow-up flag: its order of precedence, its thresholds and its reason text."""

from __future__ import annotations

import pytest

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.measure.change_flags import change_flag

BASELINE_CM3 = 10.0


def follow_up_cm3(percent: float) -> float:
    """The follow-up volume that is ``percent`` % away from a 10 cm3 baseline."""
    return BASELINE_CM3 * (1 + percent / 100)


@pytest.mark.parametrize(
    ("percent", "flag"),
    [(25.1, "progression"), (25.0, "minor change"), (-25.0, "response"), (-24.9, "minor change"),
     (5.0, "stable"), (-5.0, "stable"), (5.1, "minor change"), (0.0, "stable")],
)
def test_volume_categories_at_their_thresholds(percent: float, flag: str) -> None:
    assert change_flag(BASELINE_CM3, follow_up_cm3(percent), None, 0.9)[0] == flag


def test_poor_registration_comes_first() -> None:
    flag, reason = change_flag(BASELINE_CM3, 18.0, (79.0, 81.0), 0.3)
    assert flag == "poor registration" and "0.30 < 0.50" in reason
    assert change_flag(BASELINE_CM3, 18.0, None, None)[0] == "poor registration"


def test_high_uncertainty_only_when_the_interval_straddles_a_threshold() -> None:
    """The interval decides the category only where its ends fall on two sides of +25 % or -25 %: a wide interval
    on one side is no reason for review (40 of 40 benchmark pairs were flagged by the old half-width rule)."""
    flag, reason = change_flag(BASELINE_CM3, follow_up_cm3(30.0), (20.0, 40.0), 0.9)
    assert flag == "high uncertainty" and "straddles the +25% threshold" in reason
    assert change_flag(BASELINE_CM3, follow_up_cm3(-30.0), (-40.0, -20.0), 0.9)[0] == "high uncertainty"
    assert change_flag(BASELINE_CM3, follow_up_cm3(80.0), (40.0, 120.0), 0.9)[0] == "progression"  # wide, one side
    assert change_flag(BASELINE_CM3, follow_up_cm3(2.0), (-6.0, 10.0), 0.9)[0] == "stable"  # near 0: no review
    reason = change_flag(BASELINE_CM3, follow_up_cm3(0.0), (-30.0, 30.0), 0.9)[1]
    assert "+25% and -25%" in reason
    # at the thresholds themselves, as the categories read them: > +25 is progression, <= -25 is response
    assert change_flag(BASELINE_CM3, follow_up_cm3(26.0), (25.0, 27.0), 0.9)[0] == "high uncertainty"
    assert change_flag(BASELINE_CM3, follow_up_cm3(-26.0), (-27.0, -25.0), 0.9)[0] == "response"
    custom = ChangeThresholds(progression_percent=50.0)
    assert change_flag(BASELINE_CM3, follow_up_cm3(30.0), (20.0, 40.0), 0.9, custom)[0] == "minor change"


def test_zero_volumes_are_not_a_new_lesion_unless_tumour_appears() -> None:
    """No tumour at baseline and none at follow-up is stable (a complete response staying complete); tumour
    where there was none is progression."""
    assert change_flag(0.0, 0.0, None, 0.9) == ("stable", "no tumour at baseline or follow-up")
    flag, reason = change_flag(0.0, 1.25, None, 0.9)
    assert flag == "progression" and reason == "no tumour at baseline, 1.25 cm3 at follow-up: new lesion"


def test_reasons_state_the_numbers() -> None:
    assert change_flag(BASELINE_CM3, 13.824, None, 0.9) == ("progression", "volume +38.2% > +25%")
