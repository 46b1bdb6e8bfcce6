"""The flag a follow-up gets: how the tumour changed, or why the number needs a human look.

Flags, checked in this order (the first that applies wins), each with its reason text:

1. ``poor registration``: the follow-up could not be aligned to the baseline well enough
   (normalised cross-correlation after registration below ``min_registration_ncc``): review
   (the comparison then re-segments the registered follow-up and says so in the reason);
2. ``high uncertainty``: the experts disagree about the change so much that the category depends on whom
   one believes: the 95 % interval of the reported % change (leave-one-expert-out jackknife of the fused
   volumes, docs/uncertainty.md) straddles the progression or the response threshold
   (its ends fall in different categories of those two). A wide interval that stays on one side of both
   thresholds is no reason for review: a +80 % change with an interval of +40 % to +120 % is progression
   whichever expert is right;
3. ``progression``: volume change > ``progression_percent`` (+25 %), or tumour where the baseline had none
   (a new lesion, or disease back after a complete response);
4. ``response``: volume change <= ``response_percent`` (−25 %);
5. ``stable``: ``|change| <= stable_percent`` (5 %), or no tumour at either time point;
6. ``minor change`` otherwise.

The volume categories (3–6) follow the spirit of RANO/RECIST volumetric criteria; the
thresholds are settings (``ONCOFLOW_PROGRESSION_PERCENT`` ...), not clinical advice.
"""

from __future__ import annotations

from typing import Literal

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.measure.lesion_metrics import volume_change

Flag = Literal["poor registration", "high uncertainty", "progression", "response", "stable", "minor change"]


def change_flag(
    volume_baseline_cm3: float,
    volume_follow_up_cm3: float,
    ci95: tuple[float, float] | None,
    registration_ncc: float | None,
    thresholds: ChangeThresholds = ChangeThresholds(),  # noqa: B008 (immutable)
) -> tuple[Flag, str]:
    """The flag and its reason for a follow-up, from the volumes measured at both time points (cm³) and the
    95 % interval of the % change (``None``: no interval, e.g. one expert)."""
    if registration_ncc is None or registration_ncc < thresholds.min_registration_ncc:
        shown = "none" if registration_ncc is None else f"{registration_ncc:.2f}"
        return "poor registration", (
            f"registration NCC {shown} < {thresholds.min_registration_ncc:.2f}: review the alignment"
        )
    if volume_baseline_cm3 == 0:
        if volume_follow_up_cm3 == 0:
            return "stable", "no tumour at baseline or follow-up"
        return "progression", f"no tumour at baseline, {volume_follow_up_cm3:.2f} cm3 at follow-up: new lesion"
    percent_change = volume_change(volume_baseline_cm3, volume_follow_up_cm3)[1]
    assert percent_change is not None  # the baseline volume is not 0
    if ci95 is not None:
        low, high = ci95
        progression, response = thresholds.progression_percent, thresholds.response_percent
        beyond = {f"{progression:+g}%": lambda p: p > progression, f"{response:+g}%": lambda p: p <= response}
        crossed = [name for name, is_beyond in beyond.items() if is_beyond(low) != is_beyond(high)]
        if crossed:
            return "high uncertainty", (
                f"experts disagree: 95% CI {ci95[0]:+.1f}% to {ci95[1]:+.1f}% around {percent_change:+.1f}% "
                f"straddles the {' and '.join(crossed)} threshold; review"
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
