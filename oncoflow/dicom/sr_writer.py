"""Encode the tumour measurements of one time point as a Comprehensive 3D SR (TID 1500, highdicom).

Document tree (all under the TID 1500 root "Oncology Measurement Report")::

    CONTAINER Oncology Measurement Report (DCM 126001, CID 7021)
      language, observation context (device observer OncoFlow), procedure reported LN 25056-3 (MRI)
      CONTAINER Imaging Measurements
        CONTAINER Measurement Group (TID 1411, Volumetric ROI)
          HAS OBS CONTEXT  Tracking Identifier (TEXT) / Tracking Unique Identifier (UIDREF)   <- lesion link
          CONTAINS Finding category = SCT 49755003, Finding = SCT 108369006 "Neoplasm"
          HAS CONCEPT MOD  Finding site = SCT 12738006 "Brain"
          HAS CONCEPT MOD  Algorithm Name / Version / Parameters (TID 4019):
                           "expert run: <name>", "expert not run: <name>: <reason>", "input fingerprint: <fp>"
          HAS OBS CONTEXT  Time Point (TID 1502): "baseline" (type UMLS C1442488 Baseline) or "follow-up"
          CONTAINS Referenced Segment (IMAGE, the lesion's segment of the ensemble SEG) + Source Series For Segmentation
          CONTAINS NUM Volume (SCT 118565006, cm3), method DCM 126030 "Sum of segmented voxel method"
          CONTAINS NUM Long axis (SCT 103339001, mm)                  = longest axial diameter
          CONTAINS NUM Maximum 3D Diameter of a Mesh (IBSI L0JK, mm)  = max 3-D caliper
          CONTAINS TEXT 99ONCOFLOW DRIVREGION: the region measured, ET, TC or WT (BraTS); the referenced segment
                        is the first of that region's segments in the ensemble SEG
          CONTAINS NUM  99ONCOFLOW VOLET, VOLTC, VOLWT (cm3): the fused volume of each region measured
          CONTAINS TEXT 99ONCOFLOW PLAUSIBLE: "plausible" or "segmentation implausible: review (reasons)"
          CONTAINS TEXT 99ONCOFLOW SEGSOURCE (only when a radiologist's approved SEG is measured instead of the
                        ensemble, which is then the referenced SEG): "approved by radiologist <user>, <time>: ..."
          -- only with a LongitudinalChange (this study B against its baseline A) --
          CONTAINS UIDREF 99ONCOFLOW BASESTUDYUID, DATE 99ONCOFLOW BASESTUDYDATE
          CONTAINS COMPOSITE DCM 122075 "Prior report for current patient" -> the baseline's OncoFlow SR (if given)
          CONTAINS NUM  99ONCOFLOW DAYSBASE, VOLBASE, VOLCUR, VOLDELTA, VOLPCT, VOLPCTCILO, VOLPCTCIHI,
                        DICEREG, HD95REG, GROWTHRATE, NCCBEFORE, NCCAFTER  (each omitted when None / not finite)
          CONTAINS TEXT DCM 128446 "Registration Method"
          CONTAINS TEXT DCM 130520 "Transformation Matrix": 16 numbers, row-major 4x4 follow-up -> baseline
                        affine in patient LPS mm (x_baseline = M @ [x_followup, 1]), Python repr (exact)
          CONTAINS CODE 99ONCOFLOW CHGFLAG = 99ONCOFLOW FLAG* (qualitative evaluation)
          CONTAINS TEXT 99ONCOFLOW CHGREASON (the flag's reason)
        -- lesion by lesion (issue 18; only the fields given are written) --
          in the TID 1411 group: NUM Perpendicular Axis (SCT 131189007, mm), NUM 99ONCOFLOW SPDPRODUCT (mm2),
          CODE Baseline Category (DCM 112016) = DCM 112074 target / 112075 non-target,
          CODE 99ONCOFLOW MEASURABLE = SCT Yes/No, CODE 99ONCOFLOW LESSTATUS = 99ONCOFLOW STAT*
        CONTAINER Measurement Group (TID 1501, diameters, when endpoints are given; same tracking identifier)
          NUM Long axis / Perpendicular Axis, each INFERRED FROM SCOORD3D POLYLINE (2 points, LPS mm)
        CONTAINER Measurement Group (TID 1501) per compartment: Finding = NCIt C113842 / SCT 6574001 /
          SCT 79654002 / NCIt C81175, NUM Volume (cm3); same tracking identifier
        ... repeated per lesion (the change goes into the first lesion's group only)
      CONTAINER Qualitative Evaluations (UMLS C0034375, TID 1500 row 12; only with a ResponseAssessment)
        CONTAINER Response Evaluation (DCM 112020)
          CODE Response Evaluation Method (DCM 112021) = NCIt C114879 RANO; TEXT 99ONCOFLOW RESPMETHOD
          CODE Current Response (DCM 112048) = DCM 112041-112044 (target), 112045-112047 (non-target)
          CODE 99ONCOFLOW RESPCAT = RESPCR..RESPPD; CODE 99ONCOFLOW RESPCONF = CONF*
          NUM 99ONCOFLOW SUMBASE / SUMNADIR / SUMCUR; TEXT 99ONCOFLOW RESPREASON

The baseline SR is also listed in PertinentOtherEvidenceSequence (it belongs to another study). The
PredecessorDocumentsSequence is *not* used: it means "earlier version of this same document", and the
baseline's report is a different document.

Codes (standard):

    =====================  ===========  ========================================  =====
    item                   scheme code  meaning                                    unit
    =====================  ===========  ========================================  =====
    volume_cm3             SCT 118565006 Volume                                    cm3
    longest_axial_diam.    SCT 103339001 Long axis                                 mm
    max_caliper_mm         IBSI L0JK     Maximum 3D Diameter of a Mesh (CID 7469)  mm
    finding                SCT 108369006 Neoplasm
    finding site           SCT 12738006  Brain
    volume method          DCM 126030    Sum of segmented voxel method for volume
    prior SR reference     DCM 122075    Prior report for current patient
    registration method    DCM 128446    Registration Method                       (TEXT)
    transform              DCM 130520    Transformation Matrix                     (TEXT)
    =====================  ===========  ========================================  =====

Private codes, coding scheme designator ``99ONCOFLOW`` (declared in CodingSchemeIdentificationSequence; dciodvfy
then warns "Unrecognized defined term <99ONCOFLOW>", which is expected for any private scheme):

    ====================  ==============  ====================================================  ======
    field                 code value      code meaning                                          unit
    ====================  ==============  ====================================================  ======
    prior_study_uid       BASESTUDYUID    Baseline Study Instance UID                           UIDREF
    prior_study_date      BASESTUDYDATE   Baseline study date                                   DATE
    days_between          DAYSBASE        Interval since baseline study                         d
    volume_prior_cm3      VOLBASE         Tumour volume at baseline                             cm3
    volume_current_cm3    VOLCUR          Tumour volume at this time point, comparison          cm3
    delta_cm3             VOLDELTA        Tumour volume change from baseline                    cm3
    percent_change        VOLPCT          Tumour volume percent change from baseline            %
    ci95 low              VOLPCTCILO      Volume percent change 95% CI lower bound              %
    ci95 high             VOLPCTCIHI      Volume percent change 95% CI upper bound              %
    dice                  DICEREG         Dice coefficient of registered masks                  1
    hd95_mm               HD95REG         Hausdorff distance 95th percentile, registered        mm
    growth_rate           GROWTHRATE      Tumour volume growth rate                             cm3/d
    ncc_before            NCCBEFORE       Normalized cross-correlation before registration      1
    ncc_after             NCCAFTER        Normalized cross-correlation after registration       1
    flag (concept)        CHGFLAG         Longitudinal change assessment                        CODE
    flag_reason           CHGREASON       Longitudinal change assessment reason                 TEXT
    flag values           FLAGPOORREG     poor registration
                          FLAGUNCERTAIN   high uncertainty
                          FLAGPROGRESS    progression
                          FLAGRESPONSE    response
                          FLAGSTABLE      stable
                          FLAGMINOR       minor change
    region (driving)      DRIVREGION      Tumour region measured                                TEXT
    region volumes        VOLET           Enhancing tumour volume                               cm3
                          VOLTC           Tumour core volume                                    cm3
                          VOLWT           Whole tumour volume                                   cm3
    plausibility          PLAUSIBLE       Segmentation plausibility                             TEXT
    segmentation_note     SEGSOURCE       Segmentation measured                                 TEXT
    ====================  ==============  ====================================================  ======

UIDs derive from the fingerprint, the baseline's StudyInstanceUID (empty without one) and a digest of
every value the report states, so the same result gives the same SOP Instance UID while a report with any
other number (another baseline, another segmentation of it, other experts) gets a new one.
ContentDate/ContentTime are the time of writing (highdicom's default), so two writes share UIDs but
not every byte.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from oncoflow import __version__
from oncoflow.dicom.derived_object import MANUFACTURER, SPECIFIC_CHARACTER_SET, content_digest, derived_uid

Point3D = tuple[float, float, float]
Segment3D = tuple[Point3D, Point3D]

SR_SERIES_NUMBER = 9010
SR_SERIES_DESCRIPTION = "OncoFlow SR tumour measurements"
PRIVATE_SCHEME = "99ONCOFLOW"

PRIVATE_CODES: dict[str, tuple[str, str]] = {
    "prior_study_instance_uid": ("BASESTUDYUID", "Baseline Study Instance UID"),
    "prior_study_date": ("BASESTUDYDATE", "Baseline study date"),
    "days_between": ("DAYSBASE", "Interval since baseline study"),
    "volume_prior_cm3": ("VOLBASE", "Tumour volume at baseline"),
    "volume_current_cm3": ("VOLCUR", "Tumour volume at this time point, comparison"),
    "delta_cm3": ("VOLDELTA", "Tumour volume change from baseline"),
    "percent_change": ("VOLPCT", "Tumour volume percent change from baseline"),
    "percent_change_ci95_low": ("VOLPCTCILO", "Volume percent change 95% CI lower bound"),
    "percent_change_ci95_high": ("VOLPCTCIHI", "Volume percent change 95% CI upper bound"),
    "dice": ("DICEREG", "Dice coefficient of registered masks"),
    "hd95_mm": ("HD95REG", "Hausdorff distance 95th percentile, registered"),
    "growth_rate_cm3_per_day": ("GROWTHRATE", "Tumour volume growth rate"),
    "registration_ncc_before": ("NCCBEFORE", "Normalized cross-correlation before registration"),
    "registration_ncc_after": ("NCCAFTER", "Normalized cross-correlation after registration"),
    "flag": ("CHGFLAG", "Longitudinal change assessment"),
    "flag_reason": ("CHGREASON", "Longitudinal change assessment reason"),
    "flag:poor registration": ("FLAGPOORREG", "poor registration"),
    "flag:high uncertainty": ("FLAGUNCERTAIN", "high uncertainty"),
    "flag:progression": ("FLAGPROGRESS", "progression"),
    "flag:response": ("FLAGRESPONSE", "response"),
    "flag:stable": ("FLAGSTABLE", "stable"),
    "flag:minor change": ("FLAGMINOR", "minor change"),
    "region:ET": ("VOLET", "Enhancing tumour volume"),
    "region:TC": ("VOLTC", "Tumour core volume"),
    "region:WT": ("VOLWT", "Whole tumour volume"),
    "driving_region": ("DRIVREGION", "Tumour region measured"),
    "plausibility": ("PLAUSIBLE", "Segmentation plausibility"),
    "segmentation_source": ("SEGSOURCE", "Segmentation measured"),  # an approved SEG measured, by whom and when
    # lesion by lesion (issue 18)
    "product_mm2": ("SPDPRODUCT", "Product of perpendicular diameters"),
    "measurable": ("MEASURABLE", "Measurable lesion"),
    "status": ("LESSTATUS", "Lesion tracking status"),
    "status:tracked": ("STATTRACKED", "tracked"),
    "status:new": ("STATNEW", "new lesion"),
    "status:merged": ("STATMERGED", "merged lesions"),
    "status:split": ("STATSPLIT", "split lesion"),
    "status:gone": ("STATGONE", "lesion no longer seen"),
    # response assessment (issue 18)
    "response_method": ("RESPMETHOD", "Response assessment method and version"),
    "response_category": ("RESPCAT", "Overall response category"),
    "category:CR": ("RESPCR", "Complete response"),
    "category:PR": ("RESPPR", "Partial response"),
    "category:MR": ("RESPMR", "Minor response"),
    "category:SD": ("RESPSD", "Stable disease"),
    "category:PD": ("RESPPD", "Progressive disease"),
    "confirmation": ("RESPCONF", "Response confirmation status"),
    "confirmation:preliminary": ("CONFPRELIM", "preliminary"),
    "confirmation:confirmed": ("CONFCONFIRMED", "confirmed"),
    "confirmation:not needed": ("CONFNOTNEEDED", "confirmation not needed"),
    "baseline_sum": ("SUMBASE", "Sum of target lesion measurements at baseline"),
    "nadir_sum": ("SUMNADIR", "Sum of target lesion measurements at nadir"),
    "current_sum": ("SUMCUR", "Sum of target lesion measurements at this time point"),
    "response_reason": ("RESPREASON", "Response assessment reason"),
}
REGIONS = ("ET", "TC", "WT")
FLAGS = tuple(name.removeprefix("flag:") for name in PRIVATE_CODES if name.startswith("flag:"))
LESION_STATUSES = tuple(name.removeprefix("status:") for name in PRIVATE_CODES if name.startswith("status:"))
RESPONSE_CATEGORIES = tuple(name.removeprefix("category:") for name in PRIVATE_CODES if name.startswith("category:"))
CONFIRMATIONS = tuple(name.removeprefix("confirmation:") for name in PRIVATE_CODES
                      if name.startswith("confirmation:"))

# Standard concepts
VOLUME = codes.SCT.Volume  # SCT 118565006
LONG_AXIS = codes.SCT.LongAxis  # SCT 103339001: longest axial diameter
MAX_3D_DIAMETER = codes.IBSI.Maximum3DDiameterOfAMesh  # IBSI L0JK: max 3-D caliper
VOLUME_METHOD = codes.DCM.SumOfSegmentedVoxelMethodForVolume  # DCM 126030
PRIOR_REPORT = Code("122075", "DCM", "Prior report for current patient")
REGISTRATION_METHOD = Code("128446", "DCM", "Registration Method")
TRANSFORMATION_MATRIX = Code("130520", "DCM", "Transformation Matrix")
PERPENDICULAR_AXIS = codes.SCT.PerpendicularAxis  # SCT 131189007
BASELINE_CATEGORY = codes.DCM.BaselineCategory  # DCM 112016 (CID 6145 values)
TARGET_LESION = codes.DCM.TargetLesionAtBaseline  # DCM 112074
NON_TARGET_LESION = codes.DCM.NonTargetLesionAtBaseline  # DCM 112075
YES, NO = codes.SCT.Yes, codes.SCT.No  # SCT 373066001 / 373067005
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")  # TID 1500 row 12
RESPONSE_EVALUATION = codes.DCM.ResponseEvaluation  # DCM 112020
RESPONSE_EVALUATION_METHOD = codes.DCM.ResponseEvaluationMethod  # DCM 112021 (CID 6147)
RANO = codes.NCIt.RANO  # NCIt C114879, the only RANO code (no RANO 2.0 / RANO-BM code)
CURRENT_RESPONSE = codes.DCM.CurrentResponse  # DCM 112048
# target-lesion response (CID 6143/6144): DCM 112041..112044
TARGET_RESPONSES: dict[str, Code] = {
    "CR": codes.DCM.TargetLesionCompleteResponse,
    "PR": codes.DCM.TargetLesionPartialResponse,
    "PD": codes.DCM.TargetLesionProgressiveDisease,
    "SD": codes.DCM.TargetLesionStableDisease,
}
# non-target response (CID 6143/6144): DCM 112045..112047
NON_TARGET_RESPONSES: dict[str, Code] = {
    "CR": codes.DCM.NonTargetLesionCompleteResponse,
    "non-CR/non-PD": codes.DCM.NonTargetLesionIncompleteResponseOrStableDisease,
    "PD": codes.DCM.NonTargetLesionProgressiveDisease,
}
# the compartments of a lesion (the SEG's segment types, CID 7168): name -> finding
COMPARTMENTS: dict[str, Code] = {
    "enhancing tumour": codes.NCIt.EnhancingLesion,  # NCIt C113842
    "necrosis": codes.SCT.Necrosis,  # SCT 6574001
    "oedema": codes.SCT.Edema,  # SCT 79654002
    "non-enhancing tumour": codes.NCIt.NonEnhancingLesion,  # NCIt C81175
}
SOURCE = codes.SCT.Source  # SCT 260753009: purpose of the SCOORD3D (TID 320 "inferred from")

# UCUM units
CM3 = Code("cm3", "UCUM", "cubic centimeter")
MM = Code("mm", "UCUM", "millimeter")
PERCENT = Code("%", "UCUM", "percent")
DAY = Code("d", "UCUM", "day")
NO_UNITS = Code("1", "UCUM", "no units")
CM3_PER_DAY = Code("cm3/d", "UCUM", "cubic centimeter per day")
MM2 = Code("mm2", "UCUM", "square millimeter")
SUM_UNITS: dict[str, Code] = {"mm2": MM2, "mm": MM, "cm3": CM3}

# Change measurements: field -> unit (the concept comes from PRIVATE_CODES); order = order in the SR
_CHANGE_NUMS: dict[str, Code] = {
    "days_between": DAY,
    "volume_prior_cm3": CM3,
    "volume_current_cm3": CM3,
    "delta_cm3": CM3,
    "percent_change": PERCENT,
    "percent_change_ci95_low": PERCENT,
    "percent_change_ci95_high": PERCENT,
    "dice": NO_UNITS,
    "hd95_mm": MM,
    "growth_rate_cm3_per_day": CM3_PER_DAY,
    "registration_ncc_before": NO_UNITS,
    "registration_ncc_after": NO_UNITS,
}
_LEGACY_LESION_FIELDS = ("tracking_id", "tracking_uid", "volume_cm3", "longest_axial_diameter_mm", "max_caliper_mm",
                         "region", "segment_number", "region_volumes_cm3", "plausibility")
_EXPERT_RUN = "expert run: "
_EXPERT_NOT_RUN = "expert not run: "
_FINGERPRINT = "input fingerprint: "


@dataclass(frozen=True)
class LesionAtTimePoint:
    """The tracked lesion at one time point, measured on its ``region`` (the SEG segments that make it)."""

    tracking_id: str  # e.g. "Lesion 1" (TrackingIdentifier, same across time points)
    tracking_uid: str  # the same UID at every time point of this patient's lesion
    volume_cm3: float
    longest_axial_diameter_mm: float
    max_caliper_mm: float
    region: str = "TC"  # the driving region measured: ET, TC or WT (BraTS)
    segment_number: int = 1  # the ensemble SEG segment referenced (the first of the region's segments)
    region_volumes_cm3: Mapping[str, float] = field(default_factory=dict)  # fused ET / TC / WT, where measured
    plausibility: str | None = None  # "plausible" or "segmentation implausible: review (reasons)"
    # lesion by lesion (issue 18); None / empty: not written, and the document is the single-lesion one of before
    perpendicular_diameter_mm: float | None = None  # longest diameter perpendicular to the long axis, same slice
    product_mm2: float | None = None  # long axis x perpendicular diameter (RANO bidimensional product)
    long_axis_lps_mm: Segment3D | None = None  # the long axis' two endpoints, patient LPS mm
    perpendicular_axis_lps_mm: Segment3D | None = None  # the perpendicular diameter's two endpoints
    compartment_volumes_cm3: Mapping[str, float] = field(default_factory=dict)  # COMPARTMENTS name -> cm3
    measurable: bool | None = None  # measurable disease (RANO)
    target: bool | None = None  # RANO target lesion (True) or non-target (False)
    status: str | None = None  # one of LESION_STATUSES: tracked, new, merged, split, gone


@dataclass(frozen=True)
class ResponseAssessment:
    """The response of this time point (RANO 2.0 or RANO-BM), written in the report's Qualitative Evaluations."""

    category: str  # overall: CR, PR, MR, SD or PD (RESPONSE_CATEGORIES)
    confirmation: str  # preliminary, confirmed or not needed (CONFIRMATIONS)
    method: str  # e.g. "RANO 2.0, bidimensional"; a name starting with "RANO" also gets NCIt C114879 "RANO"
    target_response: str | None = None  # CR, PR, SD or PD (TARGET_RESPONSES)
    non_target_response: str | None = None  # CR, non-CR/non-PD or PD (NON_TARGET_RESPONSES)
    reasons: tuple[str, ...] = ()  # one TEXT item each
    baseline_sum: float | None = None  # sum over the target lesions, in sum_unit
    nadir_sum: float | None = None
    current_sum: float | None = None
    sum_unit: str = "mm2"  # mm2 (sum of products), mm (sum of diameters, RANO-BM) or cm3 (volumes)


@dataclass(frozen=True)
class LongitudinalChange:
    """This time point (B) against its baseline (A); absent for the first study."""

    prior_study_instance_uid: str
    prior_study_date: date
    prior_sr: Dataset | None  # the baseline's OncoFlow SR if stored (to reference it); None otherwise
    days_between: float
    volume_prior_cm3: float
    volume_current_cm3: float
    delta_cm3: float
    percent_change: float | None
    percent_change_ci95: tuple[float, float] | None  # jackknife across experts
    dice: float | None  # registered masks
    hd95_mm: float | None
    growth_rate_cm3_per_day: float | None
    registration_method: str
    registration_ncc_before: float | None
    registration_ncc_after: float | None
    flag: str  # one of FLAGS
    flag_reason: str  # e.g. "volume +38.2% > +25%"
    transform_lps: np.ndarray | None  # 4x4 follow-up -> baseline affine (patient mm)


def private_code(name: str) -> Code:
    value, meaning = PRIVATE_CODES[name]
    return Code(value, PRIVATE_SCHEME, meaning)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def _change_values(change: LongitudinalChange) -> dict[str, float | None]:
    ci = change.percent_change_ci95
    return {
        "days_between": change.days_between,
        "volume_prior_cm3": change.volume_prior_cm3,
        "volume_current_cm3": change.volume_current_cm3,
        "delta_cm3": change.delta_cm3,
        "percent_change": change.percent_change,
        "percent_change_ci95_low": None if ci is None else ci[0],
        "percent_change_ci95_high": None if ci is None else ci[1],
        "dice": change.dice,
        "hd95_mm": change.hd95_mm,
        "growth_rate_cm3_per_day": change.growth_rate_cm3_per_day,
        "registration_ncc_before": change.registration_ncc_before,
        "registration_ncc_after": change.registration_ncc_after,
    }


def _change_items(change: LongitudinalChange) -> list[Dataset]:
    """The longitudinal content items, appended to the measurement group (CONTAINS)."""
    if change.flag not in FLAGS:
        raise ValueError(f"unknown flag {change.flag!r}; expected one of {FLAGS}")
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[Dataset] = [
        hd.sr.UIDRefContentItem(private_code("prior_study_instance_uid"), change.prior_study_instance_uid, contains),
        hd.sr.DateContentItem(private_code("prior_study_date"), change.prior_study_date, contains),
    ]
    if change.prior_sr is not None:
        items.append(hd.sr.CompositeContentItem(
            PRIOR_REPORT, change.prior_sr.SOPClassUID, change.prior_sr.SOPInstanceUID, contains))
    for name, value in _change_values(change).items():
        if _finite(value):
            items.append(hd.sr.NumContentItem(private_code(name), float(value), _CHANGE_NUMS[name],
                                              relationship_type=contains))
    items.append(hd.sr.TextContentItem(REGISTRATION_METHOD, change.registration_method or "none", contains))
    if change.transform_lps is not None:
        matrix = np.asarray(change.transform_lps, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"transform_lps must be 4x4, got {matrix.shape}")
        items.append(hd.sr.TextContentItem(
            TRANSFORMATION_MATRIX, " ".join(repr(float(v)) for v in matrix.ravel()), contains))
    items.append(hd.sr.CodeContentItem(private_code("flag"), private_code(f"flag:{change.flag}"), contains))
    items.append(hd.sr.TextContentItem(private_code("flag_reason"), change.flag_reason or change.flag, contains))
    return items


def _region_items(lesion: LesionAtTimePoint) -> list[Dataset]:
    """The region measured (TEXT) and the fused volume of each tumour region (NUM, cm³), in the group."""
    if lesion.region not in REGIONS:
        raise ValueError(f"unknown region {lesion.region!r}; expected one of {REGIONS}")
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[Dataset] = [hd.sr.TextContentItem(private_code("driving_region"), lesion.region, contains)]
    for region in REGIONS:
        value = lesion.region_volumes_cm3.get(region)
        if _finite(value):
            items.append(hd.sr.NumContentItem(private_code(f"region:{region}"), float(value), CM3,
                                              relationship_type=contains))
    if lesion.plausibility:
        items.append(hd.sr.TextContentItem(private_code("plausibility"), lesion.plausibility, contains))
    return items


def _change_content(change: LongitudinalChange | None) -> str:
    """Every value of ``change`` as text (the prior SR by its UID, the matrix as a list): part of the SR's UIDs."""
    if change is None:
        return ""
    values = {f.name: getattr(change, f.name) for f in fields(change) if f.name not in ("prior_sr", "transform_lps")}
    values["prior_sr"] = "" if change.prior_sr is None else str(change.prior_sr.SOPInstanceUID)
    values["transform_lps"] = None if change.transform_lps is None else np.asarray(change.transform_lps).tolist()
    return repr(sorted(values.items()))


def _lesion_content(lesion: LesionAtTimePoint) -> str:
    """``repr(lesion)`` as before issue 18 when no new field is set (same UIDs as then), else every field."""
    names = [f.name for f in fields(lesion)]
    new_fields = {n: getattr(lesion, n) for n in names if n not in _LEGACY_LESION_FIELDS}
    if any(v is not None and v != {} for v in new_fields.values()):
        return repr(lesion)
    return f"{type(lesion).__name__}({', '.join(f'{n}={getattr(lesion, n)!r}' for n in _LEGACY_LESION_FIELDS)})"


def _segment_points(name: str, points: Segment3D) -> np.ndarray:
    data = np.asarray(points, dtype=np.float64)
    if data.shape != (2, 3) or not np.all(np.isfinite(data)):
        raise ValueError(f"{name} must be two finite 3-D points (LPS mm), got {points!r}")
    return data


def _check_lesion(lesion: LesionAtTimePoint) -> None:
    if lesion.status is not None and lesion.status not in LESION_STATUSES:
        raise ValueError(f"unknown lesion status {lesion.status!r}; expected one of {LESION_STATUSES}")
    unknown = set(lesion.compartment_volumes_cm3) - set(COMPARTMENTS)
    if unknown:
        raise ValueError(f"unknown compartments {sorted(unknown)}; expected some of {tuple(COMPARTMENTS)}")
    for name in ("long_axis_lps_mm", "perpendicular_axis_lps_mm"):
        if getattr(lesion, name) is not None:
            _segment_points(name, getattr(lesion, name))


def _lesion_measurements(lesion: LesionAtTimePoint) -> list[hd.sr.Measurement]:
    measurements = [
        hd.sr.Measurement(name=VOLUME, value=float(lesion.volume_cm3), unit=CM3, method=VOLUME_METHOD),
        hd.sr.Measurement(name=LONG_AXIS, value=float(lesion.longest_axial_diameter_mm), unit=MM),
    ]
    if _finite(lesion.perpendicular_diameter_mm):
        measurements.append(hd.sr.Measurement(name=PERPENDICULAR_AXIS, value=float(lesion.perpendicular_diameter_mm),
                                              unit=MM))
    if _finite(lesion.product_mm2):
        measurements.append(hd.sr.Measurement(name=private_code("product_mm2"), value=float(lesion.product_mm2),
                                              unit=MM2))
    measurements.append(hd.sr.Measurement(name=MAX_3D_DIAMETER, value=float(lesion.max_caliper_mm), unit=MM))
    return measurements


def _lesion_evaluations(lesion: LesionAtTimePoint) -> list[hd.sr.QualitativeEvaluation]:
    evaluations = []
    if lesion.target is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(
            BASELINE_CATEGORY, TARGET_LESION if lesion.target else NON_TARGET_LESION))
    if lesion.measurable is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(private_code("measurable"), YES if lesion.measurable else NO))
    if lesion.status is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(private_code("status"), private_code(f"status:{lesion.status}")))
    return evaluations


def _diameter_group(lesion: LesionAtTimePoint, tracking: hd.sr.TrackingIdentifier,
                    time_point: hd.sr.TimePointContext, frame_of_reference_uid: str,
                    ) -> hd.sr.MeasurementsAndQualitativeEvaluations | None:
    """TID 1501 group with the diameters as NUM, each INFERRED FROM its SCOORD3D POLYLINE (two points)."""
    measurements = []
    for name, value, points in (
        (LONG_AXIS, lesion.longest_axial_diameter_mm, lesion.long_axis_lps_mm),
        (PERPENDICULAR_AXIS, lesion.perpendicular_diameter_mm, lesion.perpendicular_axis_lps_mm),
    ):
        if points is None:
            continue
        data = _segment_points(name.meaning, points)
        if not _finite(value):  # endpoints without the number: the distance between them
            value = float(np.linalg.norm(data[1] - data[0]))
        measurements.append(hd.sr.Measurement(
            name=name, value=float(value), unit=MM,
            referenced_coordinates=[hd.sr.CoordinatesForMeasurement3D(
                graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE, graphic_data=data,
                frame_of_reference_uid=frame_of_reference_uid)],
        ))
    if not measurements:
        return None
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        time_point_context=time_point,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_type=codes.SCT.Neoplasm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
        measurements=measurements,
    )


def _compartment_groups(lesion: LesionAtTimePoint, tracking: hd.sr.TrackingIdentifier,
                        time_point: hd.sr.TimePointContext) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One TID 1501 group per compartment given: finding = the compartment, NUM Volume (cm3)."""
    groups = []
    for name, finding in COMPARTMENTS.items():  # fixed order
        value = lesion.compartment_volumes_cm3.get(name)
        if not _finite(value):
            continue
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            time_point_context=time_point,
            finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            finding_type=finding,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            measurements=[hd.sr.Measurement(name=VOLUME, value=float(value), unit=CM3, method=VOLUME_METHOD)],
        ))
    return groups


def _response_container(response: ResponseAssessment) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12 "Qualitative Evaluations" holding a DCM 112020 "Response Evaluation" container."""
    if response.category not in RESPONSE_CATEGORIES:
        raise ValueError(f"unknown response category {response.category!r}; expected one of {RESPONSE_CATEGORIES}")
    if response.confirmation not in CONFIRMATIONS:
        raise ValueError(f"unknown confirmation {response.confirmation!r}; expected one of {CONFIRMATIONS}")
    if response.target_response is not None and response.target_response not in TARGET_RESPONSES:
        raise ValueError(f"unknown target response {response.target_response!r}; "
                         f"expected one of {tuple(TARGET_RESPONSES)}")
    if response.non_target_response is not None and response.non_target_response not in NON_TARGET_RESPONSES:
        raise ValueError(f"unknown non-target response {response.non_target_response!r}; "
                         f"expected one of {tuple(NON_TARGET_RESPONSES)}")
    if response.sum_unit not in SUM_UNITS:
        raise ValueError(f"unknown sum unit {response.sum_unit!r}; expected one of {tuple(SUM_UNITS)}")
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[Dataset] = []
    if response.method.upper().startswith("RANO"):
        items.append(hd.sr.CodeContentItem(RESPONSE_EVALUATION_METHOD, RANO, contains))
    items.append(hd.sr.TextContentItem(private_code("response_method"), response.method, contains))
    if response.target_response is not None:
        items.append(hd.sr.CodeContentItem(CURRENT_RESPONSE, TARGET_RESPONSES[response.target_response], contains))
    if response.non_target_response is not None:
        items.append(hd.sr.CodeContentItem(
            CURRENT_RESPONSE, NON_TARGET_RESPONSES[response.non_target_response], contains))
    items.append(hd.sr.CodeContentItem(
        private_code("response_category"), private_code(f"category:{response.category}"), contains))
    items.append(hd.sr.CodeContentItem(
        private_code("confirmation"), private_code(f"confirmation:{response.confirmation}"), contains))
    for name in ("baseline_sum", "nadir_sum", "current_sum"):
        value = getattr(response, name)
        if _finite(value):
            items.append(hd.sr.NumContentItem(private_code(name), float(value), SUM_UNITS[response.sum_unit],
                                              relationship_type=contains))
    for reason in response.reasons:
        items.append(hd.sr.TextContentItem(private_code("response_reason"), reason, contains))
    evaluation = hd.sr.ContainerContentItem(RESPONSE_EVALUATION, relationship_type=contains)
    evaluation.ContentSequence = hd.sr.ContentSequence(items)
    container = hd.sr.ContainerContentItem(QUALITATIVE_EVALUATIONS, relationship_type=contains)
    container.ContentSequence = hd.sr.ContentSequence([evaluation])
    return container


def write_measurement_report(
    source_images: Sequence[Dataset],
    seg: Dataset,
    lesion: LesionAtTimePoint | None,
    change: LongitudinalChange | None,
    experts_ran: Sequence[str],
    experts_not_run: Mapping[str, str],
    fingerprint: str,
    *,
    series_number: int = SR_SERIES_NUMBER,
    lesions: Sequence[LesionAtTimePoint] | None = None,
    response: ResponseAssessment | None = None,
    segmentation_note: str | None = None,
) -> Dataset:
    """The TID 1500 report of ``lesion`` (and its ``change`` against the baseline) for this study.

    ``lesions``, when given, wins over ``lesion`` (which may then be None): one group set per lesion, in
    order; ``change`` goes into the first lesion's group. ``response`` adds the report's Qualitative
    Evaluations. ``seg`` is the ensemble SEG of ``source_images``, or the radiologist's approved SEG measured
    instead, which ``segmentation_note`` then says (a TEXT item in each lesion group: "approved by radiologist
    <user>, <time>: ..."); ``experts_not_run`` maps an expert's name to why it did not run. Returns a
    :class:`highdicom.sr.Comprehensive3DSR`.
    """
    if not source_images:
        raise ValueError("no source images")
    all_lesions = list(lesions) if lesions is not None else ([] if lesion is None else [lesion])
    if not all_lesions:
        raise ValueError("no lesion")
    if len({le.tracking_id for le in all_lesions}) < len(all_lesions) or \
            len({le.tracking_uid for le in all_lesions}) < len(all_lesions):
        raise ValueError("two lesions share a tracking identifier or tracking UID")
    for each in all_lesions:
        _check_lesion(each)
    parameters = [f"{_EXPERT_RUN}{name}" for name in experts_ran]
    parameters += [f"{_EXPERT_NOT_RUN}{name}: {reason}" for name, reason in experts_not_run.items()]
    parameters.append(f"{_FINGERPRINT}{fingerprint}")
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"OncoFlow expert panel ({', '.join(experts_ran) or 'no expert'})",
        version=__version__,
        parameters=parameters,
        manufacturer=MANUFACTURER,
    )
    time_point = (
        hd.sr.TimePointContext("baseline", time_point_type=codes.cid6146.Baseline)
        if change is None else hd.sr.TimePointContext("follow-up")
    )
    frame_of_reference_uid = str(getattr(source_images[0], "FrameOfReferenceUID", ""))
    groups: list[Any] = []
    for index, each in enumerate(all_lesions):
        tracking = hd.sr.TrackingIdentifier(uid=each.tracking_uid, identifier=each.tracking_id)
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=each.segment_number,
                source_series=hd.sr.SourceSeriesForSegmentation(source_images[0].SeriesInstanceUID),
            ),
            time_point_context=time_point,
            finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            finding_type=codes.SCT.Neoplasm,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
            algorithm_id=algorithm,
            measurements=_lesion_measurements(each),
            qualitative_evaluations=_lesion_evaluations(each) or None,
        )
        group[0].ContentSequence.extend(_region_items(each))
        if segmentation_note:
            group[0].ContentSequence.append(hd.sr.TextContentItem(
                private_code("segmentation_source"), segmentation_note, hd.sr.RelationshipTypeValues.CONTAINS))
        if change is not None and index == 0:
            group[0].ContentSequence.extend(_change_items(change))
        groups.append(group)
        if each.long_axis_lps_mm is not None or each.perpendicular_axis_lps_mm is not None:
            if not frame_of_reference_uid:
                raise ValueError("diameter endpoints need the source images' FrameOfReferenceUID")
            diameters = _diameter_group(each, tracking, time_point, frame_of_reference_uid)
            if diameters is not None:
                groups.append(diameters)
        groups.extend(_compartment_groups(each, tracking, time_point))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DCM.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=derived_uid("sr-device", MANUFACTURER),
                    name="OncoFlow",
                    manufacturer_name=MANUFACTURER,
                    model_name="OncoFlow tumour measurements",
                ),
            ),
        ),
        procedure_reported=codes.cid100.MRIUnspecifiedBodyRegion,
        imaging_measurements=groups,
        title=codes.cid7021.OncologyMeasurementReport,
    )
    if response is not None:
        report[0].ContentSequence.append(_response_container(response))
    evidence = [*source_images, seg]
    if change is not None and change.prior_sr is not None:
        evidence.append(change.prior_sr)  # another study: PertinentOtherEvidenceSequence
    extra = [] if response is None else [repr(response)]
    if segmentation_note:
        extra.append(f"segmentation: {segmentation_note}")
    content = content_digest(*(_lesion_content(each) for each in all_lesions), _change_content(change),
                             *experts_ran, repr(sorted(experts_not_run.items())), str(seg.SOPInstanceUID),
                             str(series_number), *(str(ds.SOPInstanceUID) for ds in source_images), __version__,
                             *extra)
    key = (fingerprint, change.prior_study_instance_uid if change is not None else "", content)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=derived_uid("sr-series", *key),
        series_number=series_number,
        sop_instance_uid=derived_uid("sr-instance", *key),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
        specific_character_set=SPECIFIC_CHARACTER_SET,  # the source's PatientName in any script
        manufacturer_model_name="OncoFlow tumour measurements",
        software_versions=f"oncoflow {__version__}"[:64],
        device_serial_number="oncoflow-0001",
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=PRIVATE_SCHEME,
            name="OncoFlow private codes",
            responsible_organization=MANUFACTURER,
        )],
    )


def _code_key(item: Dataset) -> tuple[str, str]:
    concept = item.ConceptNameCodeSequence[0]
    return str(concept.CodingSchemeDesignator), str(concept.CodeValue)


def _key(code: Code) -> tuple[str, str]:
    return code.scheme_designator, code.value


def _parse_da(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def _referenced_segment_number(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> int | None:
    reference = group.referenced_segment
    numbers = None if reference is None else reference.referenced_segment_numbers
    return int(numbers[0]) if numbers else None


def _items_by_key(container: Dataset) -> dict[tuple[str, str], list[Dataset]]:
    by_key: dict[tuple[str, str], list[Dataset]] = {}
    for item in container.get("ContentSequence", []):
        by_key.setdefault(_code_key(item), []).append(item)
    return by_key


def _num_of(item: Dataset) -> float:
    value = item.MeasuredValueSequence[0]
    return float(value.FloatingPointValue if "FloatingPointValue" in value else value.NumericValue)


def _concept_value(item: Dataset) -> tuple[str, str]:
    concept = item.ConceptCodeSequence[0]
    return str(concept.CodingSchemeDesignator), str(concept.CodeValue)


def _scoord3d_points(item: Dataset) -> Segment3D | None:
    """The two points of the SCOORD3D that a NUM item is inferred from."""
    for child in item.get("ContentSequence", []):
        if child.ValueType == "SCOORD3D":
            data = [float(v) for v in child.GraphicData]
            return (tuple(data[0:3]), tuple(data[3:6]))  # type: ignore[return-value]
    return None


def _finding(group_item: Dataset) -> tuple[str, str] | None:
    found = _items_by_key(group_item).get(_key(codes.DCM.Finding))
    return None if not found else _concept_value(found[0])


def _read_lesion_group(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> dict[str, Any]:
    """The :class:`LesionAtTimePoint` fields of one TID 1411 lesion group (compartments and endpoints: empty)."""
    by_key = _items_by_key(group[0])

    def num(code: Code) -> float | None:
        found = by_key.get(_key(code))
        return None if not found else _num_of(found[0])

    def text(code: Code) -> str | None:
        found = by_key.get(_key(code))
        return None if not found else str(found[0].TextValue)

    def coded(code: Code) -> tuple[str, str] | None:
        found = by_key.get(_key(code))
        return None if not found else _concept_value(found[0])

    target = coded(BASELINE_CATEGORY)
    measurable = coded(private_code("measurable"))
    status = coded(private_code("status"))
    status_by_value = {PRIVATE_CODES[f"status:{s}"][0]: s for s in LESION_STATUSES}
    return {
        "tracking_id": group.tracking_identifier,
        "tracking_uid": None if group.tracking_uid is None else str(group.tracking_uid),
        "volume_cm3": num(VOLUME),
        "longest_axial_diameter_mm": num(LONG_AXIS),
        "max_caliper_mm": num(MAX_3D_DIAMETER),
        "region": text(private_code("driving_region")),
        "segment_number": _referenced_segment_number(group),
        "region_volumes_cm3": {r: v for r in REGIONS if (v := num(private_code(f"region:{r}"))) is not None},
        "plausibility": text(private_code("plausibility")),
        "perpendicular_diameter_mm": num(PERPENDICULAR_AXIS),
        "product_mm2": num(private_code("product_mm2")),
        "long_axis_lps_mm": None,
        "perpendicular_axis_lps_mm": None,
        "compartment_volumes_cm3": {},
        "measurable": None if measurable is None else measurable == _key(YES),
        "target": None if target is None else target == _key(TARGET_LESION),
        "status": None if status is None else status_by_value.get(status[1], status[1]),
    }


def _read_response(sr: Dataset) -> dict[str, Any] | None:
    """The :class:`ResponseAssessment` fields (plus ``method_code``) from the root's Qualitative Evaluations."""
    for container in _items_by_key(sr).get(_key(QUALITATIVE_EVALUATIONS), []):
        for evaluation in _items_by_key(container).get(_key(RESPONSE_EVALUATION), []):
            by_key = _items_by_key(evaluation)

            def first(code: Code, by_key: dict = by_key) -> Dataset | None:
                found = by_key.get(_key(code))
                return found[0] if found else None

            currents = [_concept_value(i) for i in by_key.get(_key(CURRENT_RESPONSE), [])]
            target = {_key(c): name for name, c in TARGET_RESPONSES.items()}
            non_target = {_key(c): name for name, c in NON_TARGET_RESPONSES.items()}
            category = first(private_code("response_category"))
            confirmation = first(private_code("confirmation"))
            category_by_value = {PRIVATE_CODES[f"category:{c}"][0]: c for c in RESPONSE_CATEGORIES}
            confirmation_by_value = {PRIVATE_CODES[f"confirmation:{c}"][0]: c for c in CONFIRMATIONS}
            method = first(private_code("response_method"))
            method_code = first(RESPONSE_EVALUATION_METHOD)
            result: dict[str, Any] = {
                "category": None if category is None else category_by_value.get(_concept_value(category)[1]),
                "confirmation": None if confirmation is None
                else confirmation_by_value.get(_concept_value(confirmation)[1]),
                "method": None if method is None else str(method.TextValue),
                "method_code": None if method_code is None else _concept_value(method_code),
                "target_response": next((target[c] for c in currents if c in target), None),
                "non_target_response": next((non_target[c] for c in currents if c in non_target), None),
                "reasons": tuple(str(i.TextValue) for i in by_key.get(_key(private_code("response_reason")), [])),
                "sum_unit": None,
            }
            for name in ("baseline_sum", "nadir_sum", "current_sum"):
                item = first(private_code(name))
                result[name] = None if item is None else _num_of(item)
                if item is not None:
                    result["sum_unit"] = str(item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue)
            return result
    return None


def read_measurement_report(sr: Dataset) -> dict[str, Any]:
    """Read back what :func:`write_measurement_report` wrote.

    Keys: the :class:`LesionAtTimePoint` fields of the first lesion (but ``volume_cm3``: all lesions' volumes
    together, the patient's tumour at this time point), the :class:`LongitudinalChange`
    fields (``None`` when absent; ``prior_sr`` becomes ``prior_sr_sop_instance_uid``), plus ``has_change``,
    ``experts_ran``, ``experts_not_run``, ``fingerprint``, ``time_point`` and ``study_instance_uid``;
    ``segmentation_note`` (an approved SEG measured: who approved it and when; else ``None``) and
    ``referenced_seg_sop_instance_uid`` (the SEG the first lesion group references); ``lesions``: every lesion's
    :class:`LesionAtTimePoint` fields (a dict each, in order, compartments and diameter endpoints included);
    ``response``: the :class:`ResponseAssessment` fields plus ``method_code`` ((scheme, code) of DCM 112021's
    value), or None.
    """
    parsed = hd.sr.Comprehensive3DSR.from_dataset(sr)
    content = parsed.content
    if not isinstance(content, hd.sr.MeasurementReport):
        raise ValueError("not a TID 1500 measurement report")
    groups = content.get_volumetric_roi_measurement_groups()
    if not groups:
        raise ValueError("the report has no volumetric ROI measurement group")
    lesions = [_read_lesion_group(g) for g in groups]
    by_uid = {lesion["tracking_uid"]: lesion for lesion in lesions}
    compartment_by_finding = {_key(code): name for name, code in COMPARTMENTS.items()}
    for other in content.get_image_measurement_groups():  # TID 1501: diameters and compartments
        lesion = by_uid.get(None if other.tracking_uid is None else str(other.tracking_uid))
        if lesion is None:
            continue
        finding = _finding(other[0])
        other_items = _items_by_key(other[0])
        if finding in compartment_by_finding:
            volume = other_items.get(_key(VOLUME))
            if volume:
                lesion["compartment_volumes_cm3"][compartment_by_finding[finding]] = _num_of(volume[0])
            continue
        for name, code in (("long_axis_lps_mm", LONG_AXIS), ("perpendicular_axis_lps_mm", PERPENDICULAR_AXIS)):
            for item in other_items.get(_key(code), []):
                lesion[name] = _scoord3d_points(item)
    group = groups[0]
    by_key = _items_by_key(group[0])

    def first(code: Code) -> Dataset | None:
        found = by_key.get(_key(code))
        return found[0] if found else None

    def num(code: Code) -> float | None:
        item = first(code)
        return None if item is None else _num_of(item)

    def text(code: Code) -> str | None:
        item = first(code)
        return None if item is None else str(item.TextValue)

    parameters = [str(i.TextValue) for i in by_key.get(_key(codes.DCM.AlgorithmParameters), [])]
    experts_not_run = {}
    for parameter in parameters:
        if parameter.startswith(_EXPERT_NOT_RUN):
            name, _, reason = parameter.removeprefix(_EXPERT_NOT_RUN).partition(": ")
            experts_not_run[name] = reason
    fingerprints = [p.removeprefix(_FINGERPRINT) for p in parameters if p.startswith(_FINGERPRINT)]
    result: dict[str, Any] = {
        "study_instance_uid": str(sr.StudyInstanceUID),
        **lesions[0],
        # the patient's tumour at this time point: every lesion together (the lesions partition the fused mask)
        "volume_cm3": float(sum(lesion["volume_cm3"] for lesion in lesions)),
        "experts_ran": [p.removeprefix(_EXPERT_RUN) for p in parameters if p.startswith(_EXPERT_RUN)],
        "experts_not_run": experts_not_run,
        "fingerprint": fingerprints[0] if fingerprints else None,
        "time_point": text(Code("C2348792", "UMLS", "Time Point")),
        "segmentation_note": text(private_code("segmentation_source")),
        "referenced_seg_sop_instance_uid": None if group.referenced_segment is None
        else str(group.referenced_segment.referenced_sop_instance_uid),
        "lesions": lesions,
        "response": _read_response(sr),
    }
    values = {name: num(private_code(name)) for name in _CHANGE_NUMS}
    low, high = values.pop("percent_change_ci95_low"), values.pop("percent_change_ci95_high")
    result.update(values)
    result["percent_change_ci95"] = None if low is None or high is None else (low, high)
    prior_uid = first(private_code("prior_study_instance_uid"))
    prior_date = first(private_code("prior_study_date"))
    prior_sr = first(PRIOR_REPORT)
    flag = first(private_code("flag"))
    flag_by_value = {PRIVATE_CODES[f"flag:{f}"][0]: f for f in FLAGS}
    matrix = text(TRANSFORMATION_MATRIX)
    result.update({
        "has_change": flag is not None,
        "prior_study_instance_uid": None if prior_uid is None else str(prior_uid.UID),
        "prior_study_date": None if prior_date is None else _parse_da(str(prior_date.Date)),
        "prior_sr_sop_instance_uid": None if prior_sr is None
        else str(prior_sr.ReferencedSOPSequence[0].ReferencedSOPInstanceUID),
        "registration_method": text(REGISTRATION_METHOD),
        "flag": None if flag is None else flag_by_value.get(
            str(flag.ConceptCodeSequence[0].CodeValue), str(flag.ConceptCodeSequence[0].CodeMeaning)),
        "flag_reason": text(private_code("flag_reason")),
        "transform_lps": None if matrix is None else np.array([float(v) for v in matrix.split()]).reshape(4, 4),
    })
    return result
