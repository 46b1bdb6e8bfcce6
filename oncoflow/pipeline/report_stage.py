"""The report stage: a time point's findings -> summary -> PDF -> signature -> Encapsulated PDF in the PACS.

Runs after a time point's SR is stored (:mod:`.patient_timeline`). It reads the numbers the
timeline stored (never recomputes them), retrieves the patient's notes (:mod:`oncoflow_rag`),
writes the summary (deterministic, or by the configured LLM with its numbers checked),
draws the overlays, the lesion views and the volume plot, lays out the PDF, signs it with the configured
key (PAdES) and stores it as an Encapsulated PDF that references the SEG and SR, replacing
the study's earlier report. A report that cannot be signed is not stored: the job says why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from oncoflow_rag.clinical_findings import ChangeFinding, ClinicalFindings, TimePointFinding
from oncoflow_rag.clinical_summary import summarise
from oncoflow_rag.passage import Passage
from oncoflow_rag.text_deidentification import PatientIdentity
from pydicom.dataset import Dataset

from oncoflow import __version__
from oncoflow.core.config import Settings
from oncoflow.dicom.encapsulated_pdf_writer import write_encapsulated_pdf
from oncoflow.measure.longitudinal_comparison import TimePointData
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.approved_segmentation import report_note
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.notes_service import NotesService
from oncoflow.report.lesion_content import LesionChange, LesionRow, ResponseSummary
from oncoflow.report.pdf_signature import sign_pdf
from oncoflow.report.report_figures import (
    LesionAxes,
    TimePointImage,
    VolumePoint,
    lesion_axes_figure,
    overlay_figure,
    volume_plot,
)
from oncoflow.report.report_pdf import REPORT_TITLE, ExpertRow, RegionRow, ReportContent, render_report_pdf
from oncoflow.report.signing_certificates import SigningConfigError, load_signer
from oncoflow.security.access_audit import AccessAudit
from oncoflow.security.pseudonyms import patient_pseudonym

log = logging.getLogger("oncoflow.report")

# What the summary asks of the notes: diagnosis, treatment and symptoms around a brain tumour follow-up.
NOTES_QUERY = ("brain tumour diagnosis histology pathology molecular markers; surgery, radiotherapy, chemotherapy "
               "treatment history; neurological symptoms and clinical course")
NOTES_PASSAGES = 4
SEX_NAMES = {"F": "female", "M": "male", "O": "other"}


MAX_LESION_VIEWS = 3  # the report draws at most this many target lesions, largest first


class ReportError(RuntimeError):
    """The report could not be made (signing key unusable, no time point); nothing was stored."""


@dataclass(frozen=True)
class ReportInputs:
    """What the timeline hands over for one time point's report."""

    patient_id: str
    orthanc_study_id: str
    job: Job
    current: TimePointData
    study_image: Dataset  # any image of the study's input series: patient and study attributes
    seg: Dataset  # the ensemble SEG, or the radiologist's approved SEG measured instead
    sr: Dataset  # the time point's SR
    baseline: TimePointData | None


def _date(raw: str) -> date:
    return date.fromisoformat(raw)


def birth_date(image: Dataset) -> date | None:
    """PatientBirthDate (0010,0030) as a date, or ``None`` when absent or not a DICOM date."""
    try:
        return datetime.strptime(str(image.get("PatientBirthDate", "") or "")[:8], "%Y%m%d").date()
    except ValueError:
        return None


def patient_age(image: Dataset, study_date: date) -> str | None:
    """Age at the study: PatientAge (0010,1010) as written, else from PatientBirthDate (0010,0030)."""
    raw = str(image.get("PatientAge", "") or "")
    units = {"Y": "years", "M": "months", "W": "weeks", "D": "days"}
    if len(raw) == 4 and raw[:3].isdigit() and raw[3] in units:
        return f"{int(raw[:3])} {units[raw[3]]}"
    born = birth_date(image)
    if born is None:
        return None
    years = study_date.year - born.year - ((study_date.month, study_date.day) < (born.month, born.day))
    return f"{years} years" if years >= 0 else None


def patient_name_text(image: Dataset) -> str | None:
    """PatientName (0010,0010) as a reader writes it, decoded by pydicom with the image's SpecificCharacterSet
    (0008,0005): "Family, Given Middle" per component group (alphabetic, ideographic, phonetic: joined by
    " = "); ``None`` when absent or empty."""
    groups = []
    for group in str(image.get("PatientName", "") or "").split("="):
        family, *others = (part.strip() for part in group.split("^"))
        rest = " ".join(part for part in others if part)
        groups.append(f"{family}, {rest}" if family and rest else family or rest)
    return " = ".join(g for g in groups if g) or None


def patient_identity(patient_id: str, image: Dataset) -> PatientIdentity:
    """What must not leave the PACS in the text given to an LLM: names, IDs, birth date."""
    name = str(image.get("PatientName", "") or "")
    parts = tuple(p for p in name.replace("^", " ").replace("=", " ").split() if len(p) >= 2)
    others = tuple(str(image.get(k, "")) for k in ("AccessionNumber", "OtherPatientIDs") if image.get(k))
    return PatientIdentity(patient_id=patient_id, names=(name, *parts) if name else (), birth_date=birth_date(image),
                           other_identifiers=others)


def _percent(now: float, then: float) -> float | None:
    return None if then == 0 else 100.0 * (now - then) / then


def _id_order(tracking_id: str) -> tuple[int, str]:
    number = tracking_id.rsplit(" ", 1)[-1]
    return (int(number) if number.isdigit() else 1 << 30), tracking_id


def lesion_change(lesion: dict[str, Any], earlier: list[dict[str, Any]] | None,
                  merged_ids: frozenset[str] = frozenset()) -> LesionChange:
    """``lesion`` (a stored lesion row) against an earlier visit's lesion rows, by tracking identifier: the lesions
    that merged into it (``merged_ids``, at any visit up to this one, and its own ``merged_ids``) count with it.
    ``earlier`` ``None``: that visit's lesions were not tracked."""
    if earlier is None:
        return LesionChange(note="not tracked then")
    ids = {lesion["tracking_id"], *lesion.get("merged_ids", ()), *merged_ids}
    then = [r for r in earlier if r["tracking_id"] in ids]
    if not then:
        return LesionChange(note="new" if lesion["status"] == "new" else
                            f"split from {lesion['split_from']}" if lesion.get("split_from") else "not seen then")
    return LesionChange(_percent(float(lesion["volume_cm3"]), sum(float(r["volume_cm3"]) for r in then)),
                        _percent(float(lesion["product_mm2"]), sum(float(r["product_mm2"]) for r in then)))


def _gone_change(tracking_id: str, earlier: list[dict[str, Any]] | None) -> LesionChange:
    """A lesion no longer seen, against an earlier visit: "gone" when it was there."""
    if earlier is None:
        return LesionChange(note="not tracked then")
    return LesionChange(note="gone" if any(r["tracking_id"] == tracking_id for r in earlier) else "not seen then")


def lesion_rows(rows: list[dict[str, Any]], current: dict[str, Any]) -> tuple[LesionRow, ...]:
    """The lesion table of the study of ``current`` (a timeline row; ``rows`` the patient's rows up to it, in date
    order): its lesions by tracking identifier, then those seen at an earlier visit and no longer (neither here nor
    merged into another): "gone". Empty when the timeline tracked no lesions for it (an older row)."""
    if current.get("lesions") is None:
        return ()
    index = next(i for i, r in enumerate(rows) if r is current)
    response = current.get("response")
    targets = None if not response else set(response.get("targets", ()))

    baseline, previous = (None, None) if index == 0 else (rows[0].get("lesions"), rows[index - 1].get("lesions"))
    absorbed: dict[str, frozenset[str]] = {}  # identifier -> those merged into it so far
    for row in rows[:index + 1]:
        for lesion in row.get("lesions") or ():
            tracking_id = str(lesion["tracking_id"])
            absorbed[tracking_id] = absorbed.get(tracking_id, frozenset()) | set(lesion.get("merged_ids", ()))
    table = [LesionRow(
        tracking_id=str(lesion["tracking_id"]), status=str(lesion["status"]),
        target=None if targets is None else lesion["tracking_id"] in targets,
        measurable=bool(lesion["measurable"]), not_measurable=tuple(lesion.get("not_measurable", ())),
        volume_cm3=lesion.get("volume_cm3"), longest_diameter_mm=lesion.get("longest_diameter_mm"),
        perpendicular_diameter_mm=lesion.get("perpendicular_diameter_mm"), product_mm2=lesion.get("product_mm2"),
        merged_ids=tuple(lesion.get("merged_ids", ())), split_from=lesion.get("split_from"),
        vs_baseline=None if index == 0 else lesion_change(lesion, baseline, absorbed[str(lesion["tracking_id"])]),
        vs_previous=None if index == 0 else lesion_change(lesion, previous, absorbed[str(lesion["tracking_id"])]),
    ) for lesion in sorted(current["lesions"], key=lambda r: _id_order(str(r["tracking_id"])))]
    here = {str(r["tracking_id"]) for r in current["lesions"]}
    merged_away = set().union(*absorbed.values())
    last_seen: dict[str, date] = {}
    for row in rows[:index]:
        for lesion in row.get("lesions") or ():
            last_seen[str(lesion["tracking_id"])] = _date(row["study_date"])
    for tracking_id in sorted(set(last_seen) - here - merged_away, key=_id_order):
        table.append(LesionRow(tracking_id, "gone", None if targets is None else tracking_id in targets, None, (),
                               None, None, None, None, vs_baseline=_gone_change(tracking_id, baseline),
                               vs_previous=_gone_change(tracking_id, previous), last_seen=last_seen[tracking_id]))
    return tuple(table)


def response_summary(current: dict[str, Any]) -> ResponseSummary | None:
    """The response the timeline stored with the study's time point (``None``: the first visit, or an older row)."""
    response = current.get("response")
    if not response:
        return None
    return ResponseSummary(
        criteria=str(response["criteria"]), category=str(response["category"]),
        confirmation=str(response["confirmation"]), label=str(response["label"]),
        targets=tuple(str(t) for t in response.get("targets", ())), unit=str(response["unit"]),
        target_sum=response.get("target_sum"), baseline_sum=response.get("baseline_sum"),
        nadir_sum=response.get("nadir_sum"), change_from_baseline_percent=response.get("change_from_baseline_percent"),
        change_from_nadir_percent=response.get("change_from_nadir_percent"),
        reasons=tuple(str(r) for r in response.get("reasons", ())))


def target_sums(rows: list[dict[str, Any]], current: dict[str, Any]) -> list[float | None]:
    """Each row's sum of the target lesions in the current response's unit (the first visit: the response's
    baseline sum); ``None`` where a row has no response in that unit."""
    response = current.get("response")
    if not response:
        return [None] * len(rows)
    sums: list[float | None] = []
    for index, row in enumerate(rows):
        stored = row.get("response")
        if index == 0 and row.get("lesions") is not None:
            sums.append(response.get("baseline_sum"))
        elif stored and stored.get("unit") == response["unit"] and stored.get("criteria") == response["criteria"]:
            sums.append(stored.get("target_sum"))
        else:
            sums.append(None)
    return sums


def lesion_views(current: dict[str, Any]) -> list[LesionAxes]:
    """The lesions the report draws: the target lesions, largest volume first (at most :data:`MAX_LESION_VIEWS`),
    else the largest lesion."""

    def pair(points: Any) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
        return None if not points else (tuple(points[0]), tuple(points[1]))  # type: ignore[return-value]

    lesions = sorted(current.get("lesions") or (), key=lambda r: -float(r["volume_cm3"]))
    targets = [r for r in lesions if r.get("target")]
    chosen = targets[:MAX_LESION_VIEWS] if targets else lesions[:1]
    return [LesionAxes(f"{r['tracking_id']} ({'target' if r.get('target') else 'largest lesion'})",
                       tuple(r["centroid_lps_mm"]), pair(r.get("long_axis_lps_mm")),  # type: ignore[arg-type]
                       pair(r.get("perpendicular_axis_lps_mm")))
            for r in chosen if r.get("centroid_lps_mm")]


class ClinicalReportWriter:
    """Makes, signs and stores the report of one time point."""

    def __init__(self, settings: Settings, rest: OrthancRest, store: JobStore, notes: NotesService,
                 pseudonym_key: bytes, audit: AccessAudit | None = None) -> None:
        self.settings = settings
        self.pseudonym_key = pseudonym_key  # the installation's secret (oncoflow.security.pseudonyms)
        self.rest = rest
        self.store = store
        self.notes = notes
        self.audit = audit  # each report made: report.create by the system

    def _passages(self, patient_id: str) -> tuple[list[Passage], str]:
        """The notes retrieved for the summary and a key that changes when the patient's documents change."""
        documents = self.notes.documents(patient_id)
        key = ",".join(sorted(d.document_id for d in documents))
        return (self.notes.search(patient_id, NOTES_QUERY, NOTES_PASSAGES) if documents else []), key

    # -- findings from what the timeline stored --------------------------------------------------

    def _time_points(self, inputs: ReportInputs) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The patient's measured time points up to the report's study, and the report's own one."""
        rows = [r for r in self.store.timeline(inputs.patient_id)
                if not r.get("error") and r.get("measurements") and r.get("study_date")
                and _date(r["study_date"]) <= inputs.current.study_date]
        current = next((r for r in rows if r["orthanc_study_id"] == inputs.orthanc_study_id), None)
        if current is None:
            raise ReportError("the study's time point is not in the timeline")
        return rows, current

    def findings(self, inputs: ReportInputs, rows: list[dict[str, Any]], current: dict[str, Any]) -> ClinicalFindings:
        """The report's numbers, as the timeline stored them (``rows``, ``current``: :meth:`_time_points`)."""
        points = tuple(
            TimePointFinding(
                study_date=_date(r["study_date"]),
                volume_cm3=float(r["measurements"]["volume_cm3"]),
                volume_ci95_cm3=None if not r["measurements"].get("volume_ci95_cm3")
                else (float(r["measurements"]["volume_ci95_cm3"][0]), float(r["measurements"]["volume_ci95_cm3"][1])),
                longest_axial_diameter_mm=r["measurements"].get("longest_axial_diameter_mm"),
            )
            for r in rows
        )
        comparison = current.get("comparison")
        change = None
        if comparison:
            baseline_row = next((r for r in rows if r["study_instance_uid"] == comparison[
                "baseline_study_instance_uid"]), None)
            if baseline_row is None:
                raise ReportError("the baseline's time point is not in the timeline")
            ci = comparison.get("percent_change_ci95")
            change = ChangeFinding(
                baseline_date=_date(baseline_row["study_date"]),
                follow_up_date=inputs.current.study_date,
                days_between=int(comparison["days_between"]),
                volume_baseline_cm3=float(comparison["volume_baseline_cm3"]),
                volume_follow_up_cm3=float(comparison["volume_follow_up_cm3"]),
                delta_cm3=float(comparison["delta_cm3"]),
                percent_change=comparison.get("percent_change"),
                percent_change_ci95=None if ci is None else (float(ci[0]), float(ci[1])),
                dice=float(comparison["dice"]),
                hd95_mm=comparison.get("hd95_mm"),
                growth_rate_cm3_per_day=comparison.get("growth_rate_cm3_per_day"),
                flag=str(comparison["flag"]),
                flag_reason=str(comparison["flag_reason"]),
            )
        fusion = inputs.job.outputs.get("fusion", {})
        return ClinicalFindings(
            time_points=points,
            change=change,
            experts_ran=tuple(inputs.job.outputs.get("panel", {}).get("ran", [])),
            agreement_score=fusion.get("agreement_score"),
            agreement_flag=fusion.get("flag"),
        )

    @staticmethod
    def _regions(job: Job) -> tuple[RegionRow, ...]:
        driving = job.outputs.get("driving_region")
        return tuple(RegionRow(region, str(entry.get("name", region)), entry.get("volume_cm3"),
                               entry.get("agreement_score"), entry.get("flag"), tuple(entry.get("experts", ())),
                               region == driving)
                     for region, entry in job.outputs.get("regions", {}).items())

    def _experts(self, job: Job) -> tuple[ExpertRow, ...]:
        rows = []
        for name, entry in job.outputs.get("experts", {}).items():
            note = entry.get("reason") if entry.get("status") != "ran" else (
                None if entry.get("mask_from") in (None, "model") else f"mask from {entry['mask_from']}")
            rows.append(ExpertRow(name, str(entry.get("status")), entry.get("volume_cm3"), entry.get("dice_vs_fused"),
                                  entry.get("iou_vs_fused"), entry.get("version"), note))
        return tuple(rows)

    def _approved_note(self, inputs: ReportInputs) -> str | None:
        """What the report says when the SEG measured is the radiologist's approved one (``None``: the ensemble)."""
        approval = self.store.segmentation_approval(inputs.current.study_instance_uid)
        if approval is None or approval["sop_instance_uid"] != str(inputs.seg.SOPInstanceUID):
            return None
        return report_note(approval)

    # -- the report ----------------------------------------------------------------------------

    def write(self, inputs: ReportInputs) -> dict[str, Any]:
        """Make, sign and store the report; returns its SOP Instance UID and stage timings (s)."""
        started = time.perf_counter()
        try:
            signer = load_signer(*self.settings.signing_paths)
        except SigningConfigError as exc:
            raise ReportError(f"report not made: the signing key is unusable: {exc}") from exc
        rows, current = self._time_points(inputs)
        findings = self.findings(inputs, rows, current)
        timings: dict[str, float] = {}
        mark = time.perf_counter()
        passages, documents_key = self._passages(inputs.patient_id)
        timings["retrieval"] = time.perf_counter() - mark
        mark = time.perf_counter()
        summary = summarise(findings, passages, self.settings.llm, patient_identity(inputs.patient_id,
                                                                                    inputs.study_image))
        timings["summary"] = time.perf_counter() - mark
        mark = time.perf_counter()
        images = []
        if inputs.baseline is not None:
            images.append(TimePointImage(f"Baseline {inputs.baseline.study_date.isoformat()}",
                                         inputs.baseline.volume, inputs.baseline.fused_mask))
        images.append(TimePointImage(f"{'Follow-up' if images else 'Study'} {inputs.current.study_date.isoformat()}",
                                     inputs.current.volume, inputs.current.fused_mask))
        baseline_date = findings.change.baseline_date if findings.change else None
        response = response_summary(current)
        plot = volume_plot([VolumePoint(p.study_date, p.volume_cm3, p.volume_ci95_cm3,
                                        is_baseline=p.study_date == baseline_date,
                                        is_current=p.study_date == inputs.current.study_date, target_sum=total)
                            for p, total in zip(findings.time_points, target_sums(rows, current), strict=True)],
                           target_unit=None if response is None else response.unit_text)
        overlays = overlay_figure(images)
        views = lesion_views(current)
        lesion_overlay = (lesion_axes_figure(inputs.current.volume, inputs.current.fused_mask, views)
                          if views else None)
        timings["figures"] = time.perf_counter() - mark
        mark = time.perf_counter()
        registration = (current.get("comparison") or {}).get("registration")
        signed_at = datetime.now(UTC).replace(microsecond=0)
        content = ReportContent(
            institution=self.settings.report_institution,
            patient_pseudonym=patient_pseudonym(inputs.patient_id, self.pseudonym_key),
            patient_name=patient_name_text(inputs.study_image) if self.settings.report_patient_name else None,
            patient_age=patient_age(inputs.study_image, inputs.current.study_date),
            patient_sex=SEX_NAMES.get(str(inputs.study_image.get("PatientSex", ""))),
            study_instance_uid=inputs.current.study_instance_uid,
            findings=findings,
            summary=summary,
            experts=self._experts(inputs.job),
            regions=self._regions(inputs.job),
            review_reasons=tuple(inputs.job.outputs.get("plausibility", {}).get("reasons", ())),
            fusion_strategy=str(inputs.job.outputs.get("fusion", {}).get("strategy", "")),
            registration=None if not registration else (
                f"{registration['method']} rigid+affine, NCC {registration['ncc_before']:.2f} -> "
                f"{registration['ncc_after']:.2f}" + (", follow-up re-segmented" if registration["resegmented"]
                                                       else "")),
            overlay_png=overlays,
            lesions=lesion_rows(rows, current),
            response=response,
            lesion_overlay_png=lesion_overlay,
            segmentation_note=self._approved_note(inputs),
            volume_plot_png=plot,
            software=(("OncoFlow", __version__), ("fusion", str(inputs.job.outputs.get("fusion", {}).get("strategy"))),
                      ("registration", str((registration or {}).get("method", "n/a"))),
                      ("summary", summary.model or "deterministic")),
            signer_name=signer.subject_name,
            signed_at=signed_at,
        )
        pdf = render_report_pdf(content)
        timings["layout"] = time.perf_counter() - mark
        mark = time.perf_counter()
        signed = sign_pdf(pdf, signer, reason=f"{REPORT_TITLE}, study {inputs.current.study_instance_uid}",
                          location=self.settings.report_institution, signing_time=signed_at)
        timings["signing"] = time.perf_counter() - mark
        mark = time.perf_counter()
        fingerprint = hashlib.sha256("|".join([
            __version__, str(inputs.sr.SOPInstanceUID), documents_key, summary.source, summary.model or "",
        ]).encode()).hexdigest()
        document = write_encapsulated_pdf(signed, inputs.study_image, [inputs.seg, inputs.sr], REPORT_TITLE,
                                          fingerprint, signed_at)
        self.rest.store_replacing(document)
        if self.audit is not None:
            self.audit.record("report.create", str(document.SOPInstanceUID), "success",
                              f"{summary.source} summary, {len(summary.passages)} passages", "oncoflow", "system")
        timings["store"] = time.perf_counter() - mark
        log.info("report %s stored for study %s (%s summary)", document.SOPInstanceUID,
                 inputs.current.study_instance_uid, summary.source)
        return {"report_sop_instance_uid": str(document.SOPInstanceUID), "summary_source": summary.source,
                "summary_note": summary.note, "passages": len(summary.passages),
                "report_s": round(time.perf_counter() - started, 3),
                "report_stages_s": {k: round(v, 3) for k, v in timings.items()}}
