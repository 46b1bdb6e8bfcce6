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
}
REGIONS = ("ET", "TC", "WT")
FLAGS = tuple(name.removeprefix("flag:") for name in PRIVATE_CODES if name.startswith("flag:"))

# Standard concepts
VOLUME = codes.SCT.Volume  # SCT 118565006
LONG_AXIS = codes.SCT.LongAxis  # SCT 103339001: longest axial diameter
MAX_3D_DIAMETER = codes.IBSI.Maximum3DDiameterOfAMesh  # IBSI L0JK: max 3-D caliper
VOLUME_METHOD = codes.DCM.SumOfSegmentedVoxelMethodForVolume  # DCM 126030
PRIOR_REPORT = Code("122075", "DCM", "Prior report for current patient")
REGISTRATION_METHOD = Code("128446", "DCM", "Registration Method")
TRANSFORMATION_MATRIX = Code("130520", "DCM", "Transformation Matrix")

# UCUM units
CM3 = Code("cm3", "UCUM", "cubic centimeter")
MM = Code("mm", "UCUM", "millimeter")
PERCENT = Code("%", "UCUM", "percent")
DAY = Code("d", "UCUM", "day")
NO_UNITS = Code("1", "UCUM", "no units")
CM3_PER_DAY = Code("cm3/d", "UCUM", "cubic centimeter per day")

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


def write_measurement_report(
    source_images: Sequence[Dataset],
    seg: Dataset,
    lesion: LesionAtTimePoint,
    change: LongitudinalChange | None,
    experts_ran: Sequence[str],
    experts_not_run: Mapping[str, str],
    fingerprint: str,
    *,
    series_number: int = SR_SERIES_NUMBER,
) -> Dataset:
    """The TID 1500 report of ``lesion`` (and its ``change`` against the baseline) for this study.

    ``seg`` is the ensemble SEG of ``source_images``; ``experts_not_run`` maps an
    expert's name to why it did not run. Returns a :class:`highdicom.sr.Comprehensive3DSR`.
    """
    if not source_images:
        raise ValueError("no source images")
    parameters = [f"{_EXPERT_RUN}{name}" for name in experts_ran]
    parameters += [f"{_EXPERT_NOT_RUN}{name}: {reason}" for name, reason in experts_not_run.items()]
    parameters.append(f"{_FINGERPRINT}{fingerprint}")
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"OncoFlow expert panel ({', '.join(experts_ran) or 'no expert'})",
        version=__version__,
        parameters=parameters,
        manufacturer=MANUFACTURER,
    )
    measurements = [
        hd.sr.Measurement(name=VOLUME, value=float(lesion.volume_cm3), unit=CM3, method=VOLUME_METHOD),
        hd.sr.Measurement(name=LONG_AXIS, value=float(lesion.longest_axial_diameter_mm), unit=MM),
        hd.sr.Measurement(name=MAX_3D_DIAMETER, value=float(lesion.max_caliper_mm), unit=MM),
    ]
    time_point = (
        hd.sr.TimePointContext("baseline", time_point_type=codes.cid6146.Baseline)
        if change is None else hd.sr.TimePointContext("follow-up")
    )
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=lesion.tracking_uid, identifier=lesion.tracking_id),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=lesion.segment_number,
            source_series=hd.sr.SourceSeriesForSegmentation(source_images[0].SeriesInstanceUID),
        ),
        time_point_context=time_point,
        finding_category=codes.SCT.MorphologicallyAbnormalStructure,
        finding_type=codes.SCT.Neoplasm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Brain)],
        algorithm_id=algorithm,
        measurements=measurements,
    )
    group[0].ContentSequence.extend(_region_items(lesion))
    if change is not None:
        group[0].ContentSequence.extend(_change_items(change))
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
        imaging_measurements=[group],
        title=codes.cid7021.OncologyMeasurementReport,
    )
    evidence = [*source_images, seg]
    if change is not None and change.prior_sr is not None:
        evidence.append(change.prior_sr)  # another study: PertinentOtherEvidenceSequence
    content = content_digest(repr(lesion), _change_content(change), *experts_ran,
                             repr(sorted(experts_not_run.items())), str(seg.SOPInstanceUID), str(series_number),
                             *(str(ds.SOPInstanceUID) for ds in source_images), __version__)
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


def read_measurement_report(sr: Dataset) -> dict[str, Any]:
    """Read back what :func:`write_measurement_report` wrote (first volumetric group).

    Keys: the :class:`LesionAtTimePoint` fields, the :class:`LongitudinalChange` fields (``None``
    when absent; ``prior_sr`` becomes ``prior_sr_sop_instance_uid``), plus ``has_change``,
    ``experts_ran``, ``experts_not_run``, ``fingerprint``, ``time_point`` and ``study_instance_uid``.
    """
    parsed = hd.sr.Comprehensive3DSR.from_dataset(sr)
    content = parsed.content
    if not isinstance(content, hd.sr.MeasurementReport):
        raise ValueError("not a TID 1500 measurement report")
    groups = content.get_volumetric_roi_measurement_groups()
    if not groups:
        raise ValueError("the report has no volumetric ROI measurement group")
    group = groups[0]
    by_key: dict[tuple[str, str], list[Dataset]] = {}
    for item in group[0].ContentSequence:
        by_key.setdefault(_code_key(item), []).append(item)

    def first(code: Code) -> Dataset | None:
        found = by_key.get(_key(code))
        return found[0] if found else None

    def num(code: Code) -> float | None:
        item = first(code)
        if item is None:
            return None
        value = item.MeasuredValueSequence[0]
        return float(value.FloatingPointValue if "FloatingPointValue" in value else value.NumericValue)

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
        "tracking_id": group.tracking_identifier,
        "tracking_uid": None if group.tracking_uid is None else str(group.tracking_uid),
        "volume_cm3": num(VOLUME),
        "longest_axial_diameter_mm": num(LONG_AXIS),
        "max_caliper_mm": num(MAX_3D_DIAMETER),
        "experts_ran": [p.removeprefix(_EXPERT_RUN) for p in parameters if p.startswith(_EXPERT_RUN)],
        "experts_not_run": experts_not_run,
        "fingerprint": fingerprints[0] if fingerprints else None,
        "time_point": text(Code("C2348792", "UMLS", "Time Point")),
        "region": text(private_code("driving_region")),
        "segment_number": _referenced_segment_number(group),
        "region_volumes_cm3": {r: v for r in REGIONS if (v := num(private_code(f"region:{r}"))) is not None},
        "plausibility": text(private_code("plausibility")),
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
