"""RANO 2.0 / RANO-BM response rules on hand-made time points: each rule, each threshold, the edge cases the
review found (a zero baseline, a complete response, a missing volume), confirmation and the mixed-tumour table.
Every expected category is worked out by hand from the numbers in the test."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from oncoflow.measure.rano_response import (
    RANO2_BIDIMENSIONAL,
    RANO2_NON_ENHANCING,
    RANO2_VOLUMETRIC,
    RANO_BM,
    ClinicalState,
    LesionValue,
    ResponseCriteria,
    TimePointLesions,
    assess_time_points,
    choose_targets,
    combine_enhancing_and_non_enhancing,
)

START = date(2026, 1, 5)
NO_CONFIRMATION = ResponseCriteria("RANO 2.0, bidimensional, unconfirmed", "product_mm2", -50.0, 25.0, 3,
                                   confirm_response=False)


def visit(weeks: int, new: tuple[str, ...] = (), clinical: ClinicalState | None = None,
          non_target_progression: bool = False, **values: float) -> TimePointLesions:
    """A time point ``weeks`` after the start; each keyword is a lesion's value (a measurable one unless it is
    below 100, i.e. 10 mm x 10 mm, in mm2)."""
    return TimePointLesions(START + timedelta(weeks=weeks),
                            {k: LesionValue(v, v >= 100.0) for k, v in values.items()}, new,
                            non_target_progression, clinical or ClinicalState("stable", 0.0))


def categories(time_points: list[TimePointLesions], criteria: ResponseCriteria = NO_CONFIRMATION) -> list[str]:
    return [r.category for r in assess_time_points(time_points, criteria)]


def test_targets_are_the_largest_measurable_lesions_up_to_three() -> None:
    baseline = visit(0, L1=400.0, L2=900.0, L3=50.0, L4=150.0, L5=625.0)  # L3 is not measurable (< 10 x 10 mm)
    assert choose_targets(baseline, RANO2_BIDIMENSIONAL) == ("L2", "L5", "L1")
    assert choose_targets(baseline, RANO_BM) == ("L2", "L5", "L1", "L4")  # up to five; L3 still not measurable


@pytest.mark.parametrize(("follow_up_mm2", "expected"), [
    (500.0, "PR"),  # 1000 -> 500: -50 %, at the threshold
    (510.0, "SD"),  # -49 %
    (1250.0, "PD"),  # +25 % from the nadir (the baseline), at the threshold
    (1240.0, "SD"),  # +24 %
])
def test_bidimensional_thresholds(follow_up_mm2: float, expected: str) -> None:
    assert categories([visit(0, L1=600.0, L2=400.0), visit(8, L1=follow_up_mm2 * 0.6, L2=follow_up_mm2 * 0.4)]) == [
        expected]


@pytest.mark.parametrize(("follow_up_cm3", "expected"), [(3.5, "PR"), (3.6, "SD"), (14.0, "PD"), (13.9, "SD")])
def test_volumetric_thresholds(follow_up_cm3: float, expected: str) -> None:
    criteria = ResponseCriteria("RANO 2.0, volumetric, unconfirmed", "volume_cm3", -65.0, 40.0, 3,
                                confirm_response=False)
    time_points = [TimePointLesions(START, {"L1": LesionValue(10.0, True)}),
                   TimePointLesions(START + timedelta(weeks=8), {"L1": LesionValue(follow_up_cm3, True)},
                                    clinical=ClinicalState("stable", 0.0))]
    assert categories(time_points, criteria) == [expected]
    assert RANO2_VOLUMETRIC.partial_response_percent == -65.0 and RANO2_VOLUMETRIC.progression_percent == 40.0


def test_progression_is_measured_from_the_nadir_and_response_from_the_baseline() -> None:
    """1000 -> 400 (PR) -> 520 (+30 % from the nadir 400: PD, although still -48 % from the baseline)."""
    responses = assess_time_points([visit(0, L1=1000.0), visit(8, L1=400.0), visit(16, L1=520.0)], NO_CONFIRMATION)
    assert [r.category for r in responses] == ["PR", "PD"]
    assert responses[1].nadir_sum == 400.0 and responses[1].change_from_nadir_percent == pytest.approx(30.0)
    assert responses[1].change_from_baseline_percent == pytest.approx(-48.0)


def test_one_lesion_grows_while_the_sum_stays_stable_and_a_new_lesion_is_progression() -> None:
    """L1 +35 % and L2 -35 % keep the sum of equal lesions at 0 %: SD by RANO (which sums the targets); a new
    measurable lesion is PD whatever the sum, a new lesion too small to measure is not."""
    baseline = visit(0, L1=400.0, L2=400.0)
    assert categories([baseline, visit(8, L1=540.0, L2=260.0)]) == ["SD"]
    assert categories([baseline, visit(8, new=("L3",), L1=400.0, L2=400.0, L3=121.0)]) == ["PD"]
    assert categories([baseline, visit(8, new=("L3",), L1=400.0, L2=400.0, L3=36.0)]) == ["SD"]


def test_complete_response_then_reappearance() -> None:
    """Everything gone is CR; a sum of 0 at the nadir makes any return of target disease PD. A CR that stays a CR
    is not progression (the old flag called 0 cm3 -> 0 cm3 a new lesion)."""
    assert categories([visit(0, L1=400.0), visit(8, L1=0.0), visit(16, L1=0.0), visit(24, L1=150.0)]) == [
        "CR", "CR", "PD"]
    # targets gone but a non-target lesion left: PR, not CR
    assert categories([visit(0, L1=400.0, L2=50.0), visit(8, L1=0.0, L2=40.0)]) == ["PR"]


def test_no_measurable_disease_at_baseline() -> None:
    """No targets: nothing can respond; stable unless a new measurable lesion (or the reader) says progression."""
    baseline = visit(0, L1=36.0)
    assert choose_targets(baseline, RANO2_BIDIMENSIONAL) == ()
    assert categories([baseline, visit(8, L1=0.0)]) == ["SD"]
    assert categories([baseline, visit(8, new=("L2",), L1=36.0, L2=144.0)]) == ["PD"]
    assert categories([visit(0), visit(8)]) == ["SD"]  # no lesion at all, ever
    assert categories([baseline, visit(8, non_target_progression=True, L1=64.0)]) == ["PD"]


def test_clinical_state_and_corticosteroids() -> None:
    baseline = visit(0, clinical=ClinicalState("stable", 4.0), L1=400.0)
    worse = ClinicalState("worse", 4.0)
    assert categories([baseline, visit(8, clinical=worse, L1=400.0)]) == ["PD"]  # clinical deterioration alone
    more_steroids = ClinicalState("stable", 8.0)
    assert categories([baseline, visit(8, clinical=more_steroids, L1=420.0)]) == ["SD"]  # a higher dose alone: no PD
    assert categories([baseline, visit(8, clinical=more_steroids, L1=100.0)]) == ["SD"]  # -75 %, but more steroids
    assert categories([baseline, visit(8, clinical=ClinicalState("stable", 2.0), L1=0.0)]) == ["PR"]  # CR on steroids
    assert categories([baseline, visit(8, clinical=ClinicalState("improved", 0.0), L1=0.0)]) == ["CR"]
    unknown = assess_time_points([baseline, TimePointLesions(START + timedelta(weeks=8),
                                                             {"L1": LesionValue(100.0, True)})], NO_CONFIRMATION)
    assert unknown[0].category == "PR" and "not entered" in unknown[0].reasons[-1]


def test_responses_need_a_confirming_scan_four_weeks_later() -> None:
    responses = assess_time_points([visit(0, L1=1000.0), visit(8, L1=400.0), visit(10, L1=380.0),
                                    visit(13, L1=390.0), visit(21, L1=0.0), visit(26, L1=0.0)], RANO2_BIDIMENSIONAL)
    assert [r.label for r in responses] == [
        "PR (preliminary)",
        "PR (preliminary)",  # two weeks later: too soon
        "PR (confirmed)",  # five weeks after the first PR
        "CR (preliminary)",  # a PR cannot confirm a CR
        "CR (confirmed)",
    ]
    interrupted = assess_time_points([visit(0, L1=1000.0), visit(8, L1=400.0), visit(14, L1=900.0),
                                      visit(20, L1=400.0)], RANO2_BIDIMENSIONAL)
    assert [r.label for r in interrupted] == ["PR (preliminary)", "PD", "PR (preliminary)"]  # 900 = +125 % from 400


def test_progression_confirmation_when_the_criteria_ask_for_it() -> None:
    criteria = ResponseCriteria("RANO 2.0, PD confirmed", "product_mm2", -50.0, 25.0, 3, confirm_progression=True)
    labels = [r.label for r in assess_time_points([visit(0, L1=400.0), visit(8, L1=600.0), visit(12, L1=700.0)],
                                                  criteria)]
    assert labels == ["PD (preliminary)", "PD (confirmed)"]
    pseudo = [r.label for r in assess_time_points([visit(0, L1=400.0), visit(8, L1=600.0), visit(12, L1=420.0)],
                                                  criteria)]
    assert pseudo == ["PD (preliminary)", "SD"]  # not confirmed: possible pseudoprogression


def test_minor_response_only_for_non_enhancing_criteria() -> None:
    time_points = [visit(0, L1=400.0), visit(8, L1=280.0)]  # -30 %
    assert categories(time_points, RANO2_NON_ENHANCING) == ["MR"]
    assert categories(time_points) == ["SD"]


def test_rano_bm_uses_the_sum_of_longest_diameters() -> None:
    criteria = ResponseCriteria("RANO-BM, unconfirmed", "longest_diameter_mm", -30.0, 20.0, 5, confirm_response=False)
    baseline = TimePointLesions(START, {"M1": LesionValue(20.0, True), "M2": LesionValue(10.0, True)})

    def later(m1: float, m2: float) -> TimePointLesions:
        return TimePointLesions(START + timedelta(weeks=8), {"M1": LesionValue(m1, True), "M2": LesionValue(m2, True)},
                                clinical=ClinicalState("stable", 0.0))

    assert categories([baseline, later(14.0, 7.0)], criteria) == ["PR"]  # 30 -> 21 mm: -30 %
    assert categories([baseline, later(24.0, 12.0)], criteria) == ["PD"]  # +20 %
    assert categories([baseline, later(23.0, 12.0)], criteria) == ["SD"]  # +16.7 %


@pytest.mark.parametrize(("enhancing", "non_enhancing", "overall"), [
    ("PD", "CR", "PD"), ("SD", "PD", "PD"), ("PR", "SD", "PR"), ("SD", "MR", "MR"), ("CR", "SD", "SD"),
    ("SD", "CR", "SD"), ("CR", "PR", "PR"), ("CR", "CR", "CR"), ("SD", "SD", "SD"), ("PR", "MR", "MR"),
])
def test_mixed_tumours_combine_as_the_table_says(enhancing: str, non_enhancing: str, overall: str) -> None:
    assert combine_enhancing_and_non_enhancing(enhancing, non_enhancing) == overall  # type: ignore[arg-type]


def test_dates_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing date order"):
        assess_time_points([visit(8, L1=400.0), visit(0, L1=400.0)], RANO2_BIDIMENSIONAL)


def test_the_configured_names_are_the_criteria() -> None:
    from oncoflow.core.config import RESPONSE_CRITERIA
    from oncoflow.measure.rano_response import CRITERIA

    assert set(RESPONSE_CRITERIA) == set(CRITERIA)
