"""The flag a follow-up gets: how the tumour changed, or why the number needs a human look.

Flags, checked in this order (the first that applies wins), each with its reason text:

1. ``poor registration``: the follow-up could not be aligned to the baseline well enough
   (normalised cross-correlation after registration below ``min_registration_ncc``): review
   (the comparison then re-segments the registered follow-up and says so in the reason);
2. ``high uncertainty``: the experts disagree about the change: the 95 % jackknife
   interval of the % change, as a half-width, exceeds ``max_ci_to_change`` (15 %) of
   ``|% change|``: review;
3. ``progression``: volume change > ``progression_percent`` (+25 %);
4. ``response``: volume change <= ``response_percent`` (−25 %);
5. ``stable``: ``|change| <= stable_percent`` (5 %);
6. ``minor change`` otherwise.

The volume categories (3–6) follow the spirit of RANO/RECIST volumetric criteria; the
thresholds are settings (``ONCOFLOW_PROGRESSION_PERCENT`` ...), not clinical advice.
"""

from __future__ import annotations

from typing import Literal

from oncoflow.core.change_thresholds import ChangeThresholds

Flag = Literal["poor registration", "high uncertainty", "progression", "response", "stable", "minor change"]


def change_flag(
    percent_change: float | None,
    ci95: tuple[float, float] | None,
    registration_ncc: float | None,
    thresholds: ChangeThresholds = ChangeThresholds(),  # noqa: B008 (immutable)
) -> tuple[Flag, str]:
    """The flag and its reason for a follow-up; ``percent_change`` None means no baseline volume."""
    if registration_ncc is None or registration_ncc < thresholds.min_registration_ncc:
        shown = "none" if registration_ncc is None else f"{registration_ncc:.2f}"
        return "poor registration", (
            f"registration NCC {shown} < {thresholds.min_registration_ncc:.2f}: review the alignment"
        )
    if percent_change is None:
        return "progression", "no tumour at baseline, tumour at follow-up: new lesion"
    if ci95 is not None:
        half_width = (ci95[1] - ci95[0]) / 2.0
        if abs(percent_change) > 0 and half_width / abs(percent_change) > thresholds.max_ci_to_change:
            return "high uncertainty", (
                f"experts disagree: 95% CI {ci95[0]:+.1f}% to {ci95[1]:+.1f}% around {percent_change:+.1f}% "
                f"(half-width {half_width / abs(percent_change):.0%} of the change > "
                f"{thresholds.max_ci_to_change:.0%}); review"
            )
    category = thresholds.category(percent_change)
    reasons = {
        "progression": f"volume {percent_change:+.1f}% > +{thresholds.progression_percent:g}%",
        "response": f"volume {percent_change:+.1f}% <= {thresholds.response_percent:g}%",
        "stable": f"volume {percent_change:+.1f}% within ±{thresholds.stable_percent:g}%",
        "minor change": f"volume {percent_change:+.1f}%, between ±{thresholds.stable_percent:g}% and the "
                        f"progression/response thresholds",
    }
    return category, reasons[category]
