"""The report stage: a time point's findings -> summary -> PDF -> signature -> Encapsulated PDF in the PACS.

Runs after a time point's SR is stored (:mod:`.patient_timeline`). It reads the numbers the
timeline stored (never recomputes them), retrieves the patient's notes (:mod:`oncoflow_rag`),
writes the summary (deterministic, or by the configured LLM with its numbers checked),
draws the overlays and the volume plot, lays out the PDF, signs it with the configured
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
from oncoflow.pipeline.job_store import Job, JobStore
from oncoflow.pipeline.notes_service import NotesService
from oncoflow.report.pdf_signature import sign_pdf
from oncoflow.report.report_figures import TimePointImage, VolumePoint, overlay_figure, volume_plot
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
    seg: Dataset  # the ensemble SEG
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
        plot = volume_plot([VolumePoint(p.study_date, p.volume_cm3, p.volume_ci95_cm3,
                                        is_baseline=p.study_date == baseline_date,
                                        is_current=p.study_date == inputs.current.study_date)
                            for p in findings.time_points])
        overlays = overlay_figure(images)
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
