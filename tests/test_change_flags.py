"""The follow-up flag: its order of precedence, its thresholds and its reason text."""

from __future__ import annotations

import pytest

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.measure.change_flags import change_flag


@pytest.mark.parametrize(
    ("percent", "flag"),
    [(25.1, "progression"), (25.0, "minor change"), (-25.0, "response"), (-24.9, "minor change"),
     (5.0, "stable"), (-5.0, "stable"), (5.1, "minor change"), (0.0, "stable")],
)
def test_volume_categories_at_their_thresholds(percent: float, flag: str) -> None:
    assert change_flag(percent, None, 0.9)[0] == flag


def test_poor_registration_comes_first() -> None:
    flag, reason = change_flag(80.0, (79.0, 81.0), 0.3)
    assert flag == "poor registration" and "0.30 < 0.50" in reason
    assert change_flag(80.0, None, None)[0] == "poor registration"


def test_high_uncertainty_when_the_ci_is_wide_relative_to_the_change() -> None:
    flag, reason = change_flag(40.0, (30.0, 50.0), 0.9)  # half-width 10 = 25% of 40 > 15%
    assert flag == "high uncertainty" and "25%" in reason
    assert change_flag(40.0, (36.0, 44.0), 0.9)[0] == "progression"  # 10% of the change
    assert change_flag(40.0, (30.0, 50.0), 0.9, ChangeThresholds(max_ci_to_change=0.3))[0] == "progression"


def test_reasons_state_the_numbers() -> None:
    assert change_flag(38.24, None, 0.9) == ("progression", "volume +38.2% > +25%")
    assert change_flag(None, None, 0.9)[0] == "progression"  # a lesion where there was none
