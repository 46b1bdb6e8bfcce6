"""Response assessment over a patient's time points: RANO 2.0 (bidimensional or volumetric) or RANO-BM.

The rules, with where each comes from and which are still assumptions, are in ``docs/response-criteria.md``
(Wen et al., J Clin Oncol 2023, "RANO 2.0"; Lin et al., Lancet Oncol 2015, "RANO-BM"). This module applies
them to numbers already measured; it never looks at an image.

* **Targets** are chosen at baseline (the first time point): the measurable lesions with the largest value of
  the criteria's measure, up to ``max_targets``. Every other lesion is non-target. Targets stay targets; a
  target not seen at a later time point counts 0.
* **The sum** of the targets' measure (sum of products of perpendicular diameters in mm², of volumes in cm³,
  or of longest diameters in mm for RANO-BM) is compared:

  - with the **baseline** for a response: PR when it fell by at least ``partial_response_percent``
    (−50 % bidimensional, −65 % volumetric, −30 % RANO-BM); MR (minor response, non-enhancing tumour only)
    when it fell by at least ``minor_response_percent`` (−25 %); CR when every target is gone and no other
    disease is left;
  - with the **nadir** (the smallest sum so far, the baseline included) for progression: PD when it rose by at
    least ``progression_percent`` (+25 %, +40 %, +20 %), or when disease is back after the sum reached 0.

* **PD whatever the sum**: a new measurable lesion, unequivocal progression of non-target disease (the
  reader's call, given as input), clinical deterioration (given as input: "not attributable to other causes" is
  the reader's call too).
* **Corticosteroids** (dexamethasone-equivalent mg per day, given as input): CR needs no more than the
  physiological dose; PR and MR need a dose no higher than at baseline, else the best is SD. A higher dose
  alone never makes PD.
* **Confirmation**: with ``confirm_response`` a CR, PR or MR is *preliminary* until a later time point at
  least ``confirmation_min_days`` later shows a response at least as good (then that later one is
  *confirmed*); with ``confirm_progression`` the first PD is *preliminary* and a later PD confirms it (a scan
  after a preliminary PD that is not PD leaves it unconfirmed: possible pseudoprogression).
* No measurable disease at baseline: no targets, so no PR or CR can be measured; only PD (a new measurable
  lesion, non-target progression, clinical deterioration) or SD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

ResponseCategory = Literal["CR", "PR", "MR", "SD", "PD"]
Confirmation = Literal["preliminary", "confirmed", "not needed"]
Measure = Literal["product_mm2", "volume_cm3", "longest_diameter_mm"]
ClinicalStatus = Literal["improved", "stable", "worse"]

MEASURE_UNITS: dict[Measure, str] = {"product_mm2": "mm2", "volume_cm3": "cm3", "longest_diameter_mm": "mm"}
_RANK: dict[ResponseCategory, int] = {"CR": 0, "PR": 1, "MR": 2, "SD": 3, "PD": 4}  # better first


@dataclass(frozen=True)
class ResponseCriteria:
    """One set of response criteria; percentages are of the reference sum (negative: a decrease)."""

    name: str
    measure: Measure
    partial_response_percent: float
    progression_percent: float
    max_targets: int
    minor_response_percent: float | None = None  # only non-enhancing tumour has a minor response
    confirm_response: bool = True
    confirm_progression: bool = False
    confirmation_min_days: int = 28
    physiological_steroid_mg_per_day: float = 0.0  # dexamethasone-equivalent; above it there is no CR

    @property
    def unit(self) -> str:
        """The unit of the measure and of its sums: mm2, cm3 or mm."""
        return MEASURE_UNITS[self.measure]

    def __post_init__(self) -> None:
        if not self.partial_response_percent < 0 < self.progression_percent or self.max_targets < 1:
            raise ValueError(f"{self.name}: a response threshold below 0, a progression threshold above 0 and "
                             "at least one target are needed")


RANO2_BIDIMENSIONAL = ResponseCriteria("RANO 2.0, bidimensional", "product_mm2", -50.0, 25.0, 3)
RANO2_VOLUMETRIC = ResponseCriteria("RANO 2.0, volumetric", "volume_cm3", -65.0, 40.0, 3)
RANO2_NON_ENHANCING = ResponseCriteria("RANO 2.0, non-enhancing, bidimensional", "product_mm2", -50.0, 25.0, 3,
                                       minor_response_percent=-25.0)
RANO_BM = ResponseCriteria("RANO-BM", "longest_diameter_mm", -30.0, 20.0, 5)
CRITERIA: dict[str, ResponseCriteria] = {
    "rano2-bidimensional": RANO2_BIDIMENSIONAL, "rano2-volumetric": RANO2_VOLUMETRIC,
    "rano2-non-enhancing": RANO2_NON_ENHANCING, "rano-bm": RANO_BM,
}


@dataclass(frozen=True)
class LesionValue:
    """One tracked lesion at one time point, in the criteria's measure (0 when it is gone)."""

    value: float
    measurable: bool


@dataclass(frozen=True)
class ClinicalState:
    """What the clinician entered for a time point; ``None``: not entered."""

    status: ClinicalStatus | None = None
    steroid_mg_per_day: float | None = None  # dexamethasone-equivalent


@dataclass(frozen=True)
class TimePointLesions:
    """A time point's lesions by tracking identifier, and what the reader adds."""

    study_date: date
    lesions: Mapping[str, LesionValue]
    new_lesions: tuple[str, ...] = ()  # tracking identifiers first seen at this time point
    non_target_progression: bool = False  # unequivocal progression of non-target disease (the reader's call)
    clinical: ClinicalState = field(default_factory=ClinicalState)


@dataclass(frozen=True)
class Response:
    """The response of one follow-up, with the sums it was read from and why."""

    study_date: date
    category: ResponseCategory
    confirmation: Confirmation
    targets: tuple[str, ...]
    target_sum: float
    baseline_sum: float
    nadir_sum: float  # the smallest sum before this time point, the baseline included
    change_from_baseline_percent: float | None  # None when the baseline sum is 0
    change_from_nadir_percent: float | None  # None when the nadir sum is 0
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        """``"PR (preliminary)"``, ``"PD"`` ..."""
        return self.category if self.confirmation == "not needed" else f"{self.category} ({self.confirmation})"


def choose_targets(baseline: TimePointLesions, criteria: ResponseCriteria) -> tuple[str, ...]:
    """The baseline's measurable lesions with the largest measure, at most ``criteria.max_targets``, largest first
    (ties by tracking identifier, so the choice is reproducible)."""
    measurable = [(v.value, k) for k, v in baseline.lesions.items() if v.measurable and v.value > 0]
    return tuple(k for _, k in sorted(measurable, key=lambda item: (-item[0], item[1]))[:criteria.max_targets])


def _percent(value: float, reference: float) -> float | None:
    return None if reference == 0 else 100.0 * (value - reference) / reference


def assess_time_points(time_points: Sequence[TimePointLesions], criteria: ResponseCriteria) -> list[Response]:
    """The response of every follow-up (``time_points[1:]``, in date order) against the baseline
    (``time_points[0]``) and the nadir; raises ``ValueError`` when the dates are not in order."""
    if any(b.study_date <= a.study_date for a, b in zip(time_points, time_points[1:], strict=False)):
        raise ValueError("time points must be in strictly increasing date order")
    if not time_points:
        return []
    baseline = time_points[0]
    targets = choose_targets(baseline, criteria)
    sums = [sum(tp.lesions[t].value if t in tp.lesions else 0.0 for t in targets) for tp in time_points]
    responses: list[Response] = []
    for index in range(1, len(time_points)):
        category, reasons = _category(time_points, index, targets, sums, criteria)
        confirmation = _confirmation(responses, time_points[index].study_date, category, criteria)
        nadir = min(sums[:index])
        responses.append(Response(
            study_date=time_points[index].study_date, category=category, confirmation=confirmation,
            targets=targets, target_sum=sums[index], baseline_sum=sums[0], nadir_sum=nadir,
            change_from_baseline_percent=_percent(sums[index], sums[0]),
            change_from_nadir_percent=_percent(sums[index], nadir), reasons=tuple(reasons)))
    return responses


def _category(time_points: Sequence[TimePointLesions], index: int, targets: tuple[str, ...], sums: list[float],
              criteria: ResponseCriteria) -> tuple[ResponseCategory, list[str]]:
    current = time_points[index]
    unit = criteria.unit
    baseline_sum, nadir, total = sums[0], min(sums[:index]), sums[index]
    progression = []
    new_measurable = [k for k in current.new_lesions if k in current.lesions and current.lesions[k].measurable]
    if new_measurable:
        progression.append(f"new measurable lesion(s): {', '.join(new_measurable)}")
    if targets and nadir == 0 and total > 0:
        progression.append(f"target disease back after a complete response ({total:.1f} {unit})")
    elif nadir > 0 and 100.0 * (total - nadir) / nadir >= criteria.progression_percent:
        progression.append(f"sum of targets {total:.1f} {unit} is {100.0 * (total - nadir) / nadir:+.1f}% from the "
                           f"nadir {nadir:.1f} {unit} (>= {criteria.progression_percent:+g}%)")
    if current.non_target_progression:
        progression.append("unequivocal progression of non-target disease")
    if current.clinical.status == "worse":
        progression.append("clinical deterioration")
    if progression:
        return "PD", progression

    if not targets:
        return "SD", ["no measurable disease at baseline: no response can be measured, and no progression seen"]
    change = 100.0 * (total - baseline_sum) / baseline_sum
    others_left = any(v.value > 0 for k, v in current.lesions.items() if k not in targets)
    measured: ResponseCategory
    if total == 0 and not others_left:
        measured, reasons = "CR", ["every lesion is gone"]
    elif change <= criteria.partial_response_percent:
        measured, reasons = "PR", [f"sum of targets {change:+.1f}% from baseline "
                                   f"(<= {criteria.partial_response_percent:+g}%)"]
        if total == 0:
            reasons.append("targets gone, non-target disease left")
    elif criteria.minor_response_percent is not None and change <= criteria.minor_response_percent:
        measured, reasons = "MR", [f"sum of targets {change:+.1f}% from baseline "
                                   f"(<= {criteria.minor_response_percent:+g}%)"]
    else:
        return "SD", [f"sum of targets {change:+.1f}% from baseline, {100.0 * (total - nadir) / nadir:+.1f}% from "
                      "the nadir: neither response nor progression"]
    return _clinically_limited(measured, reasons, time_points[0].clinical, current.clinical, criteria)


def _clinically_limited(measured: ResponseCategory, reasons: list[str], baseline: ClinicalState,
                        current: ClinicalState, criteria: ResponseCriteria) -> tuple[ResponseCategory, list[str]]:
    """A measured CR, PR or MR held back by the steroid dose or an unknown clinical state."""
    dose, baseline_dose = current.steroid_mg_per_day, baseline.steroid_mg_per_day
    if measured == "CR" and dose is not None and dose > criteria.physiological_steroid_mg_per_day:
        measured = "PR"
        reasons.append(f"corticosteroids {dose:g} mg/day above the physiological dose: PR, not CR")
    if dose is not None and baseline_dose is not None and dose > baseline_dose:
        reasons.append(f"corticosteroids raised from {baseline_dose:g} to {dose:g} mg/day: at best SD")
        return "SD", reasons
    if current.status is None or dose is None:
        reasons.append("clinical status or steroid dose not entered: assumed stable")
    return measured, reasons


def _confirmation(earlier: list[Response], study_date: date, category: ResponseCategory,
                  criteria: ResponseCriteria) -> Confirmation:
    """Whether ``category`` at ``study_date`` needs no confirmation, is preliminary, or is confirmed: a response by
    a response at least as good at least ``confirmation_min_days`` earlier, with only responses in between; a PD
    by a PD at the time point just before."""
    if category == "PD":
        if not criteria.confirm_progression:
            return "not needed"
        return "confirmed" if earlier and earlier[-1].category == "PD" else "preliminary"
    if category == "SD" or not criteria.confirm_response:
        return "not needed"
    for previous in reversed(earlier):
        if previous.category not in ("CR", "PR", "MR"):
            break  # the run of responses starts after it
        if _RANK[previous.category] <= _RANK[category] and \
                (study_date - previous.study_date).days >= criteria.confirmation_min_days:
            return "confirmed"
    return "preliminary"


def combine_enhancing_and_non_enhancing(enhancing: ResponseCategory,
                                        non_enhancing: ResponseCategory) -> ResponseCategory:
    """The overall category of a mixed tumour assessed in parallel (docs/response-criteria.md, section 6):
    PD in either is PD; a CR in one leaves the other's category; a response (PR, MR) with SD is that response;
    otherwise (PR with MR) the weaker response."""
    pair = (enhancing, non_enhancing)
    if "PD" in pair:
        return "PD"
    for neutral in ("CR", "SD"):  # CR + x = x (CR + CR = CR); then SD + (PR or MR) = PR or MR, SD + SD = SD
        if neutral in pair:
            return pair[1] if pair[0] == neutral else pair[0]
    return max(pair, key=lambda category: _RANK[category])
