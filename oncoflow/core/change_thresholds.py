"""The thresholds of the change assessment (settings) and the volume category of a % change.

A core type: :mod:`oncoflow.core.config` reads the thresholds from the environment, :mod:`oncoflow.measure.change_flags`
applies them, and the longitudinal phantoms name their true categories with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VolumeCategory = Literal["progression", "response", "stable", "minor change"]
VOLUME_CATEGORIES: tuple[VolumeCategory, ...] = ("progression", "response", "stable", "minor change")


@dataclass(frozen=True)
class ChangeThresholds:
    """Thresholds in percent of the baseline (earlier) volume, plus the review gates."""

    progression_percent: float = 25.0
    response_percent: float = -25.0
    stable_percent: float = 5.0
    min_registration_ncc: float = 0.5  # NCC after registration below which the alignment is poor

    def category(self, percent_change: float) -> VolumeCategory:
        """The volume category of a % change (flags 3–6)."""
        if percent_change > self.progression_percent:
            return "progression"
        if percent_change <= self.response_percent:
            return "response"
        if abs(percent_change) <= self.stable_percent:
            return "stable"
        return "minor change"
