"""Lay out the clinical report as PDF (reportlab): what the referring clinician reads.

Page 1: patient (name, only when configured; pseudonym, age, sex), the time points, the suggested response (RANO 2.0
or RANO-BM: category, confirmation, target sum, reasons) for the radiologist to confirm, the clinical summary, the
volume table (baseline, follow-up, delta, % change, 95 % CI) and the change flag with its reason.
Then, flowing on from page 1 when the timeline tracked lesions: each lesion of the study by tracking identifier
(target or not, measurable or why not, volume, the two perpendicular diameters and their product, change against
the baseline and the previous visit; new and gone lesions) and an axial view of the target lesions with their
diameters. Next page: overlays through the lesion (baseline beside follow-up) and the volume (and the target
sum) over time.
Last page: the panel (each expert's volume, Dice against the ensemble, version), the
agreement, the notes cited, the algorithm versions, and the signature block.

Every number shown comes from :class:`ReportContent`; nothing is computed here but
formatting. The PDF is unsigned: :mod:`.pdf_signature` signs it afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from xml.sax.saxutils import escape

from oncoflow_rag.clinical_findings import ClinicalFindings
from oncoflow_rag.clinical_summary import ClinicalSummary
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from oncoflow.report.lesion_content import LesionChange, LesionRow, ResponseSummary
from oncoflow.report.report_fonts import unicode_markup

REPORT_TITLE = "OncoFlow MRI brain tumour follow-up report"
NO_TUMOUR = "No measurable tumour: the panel's fused segmentation of this study is empty."
RESPONSE_COLOURS = {"PD": "#c53030", "CR": "#2f855a", "PR": "#2f855a", "MR": "#2f855a", "SD": "#2b6cb0"}
SUGGESTION_NOTE = ("Computed by OncoFlow from the tracked lesions: a suggestion for the radiologist to confirm or "
                   "overrule, not a diagnosis. Non-target progression, clinical state and corticosteroid dose are "
                   "the reader's to add.")
FLAG_COLOURS = {"progression": "#c53030", "response": "#2f855a", "stable": "#2b6cb0", "minor change": "#2b6cb0"}


@dataclass(frozen=True)
class ExpertRow:
    name: str
    status: str  # ran | skipped | failed
    volume_cm3: float | None
    dice_vs_ensemble: float | None  # the expert's agreement with the fused mask
    iou_vs_ensemble: float | None
    version: str | None
    note: str | None  # why it did not run, or where its mask came from


@dataclass(frozen=True)
class RegionRow:
    """One BraTS tumour region of this study, fused across the panel."""

    region: str  # ET | TC | WT
    name: str  # e.g. "Tumour core"
    volume_cm3: float | None
    agreement_score: float | None  # mean pairwise Dice of the experts that segment it
    agreement_flag: str | None
    experts: tuple[str, ...]
    measured: bool  # the region the response is measured on


@dataclass(frozen=True)
class ReportContent:
    institution: str
    patient_pseudonym: str
    patient_age: str | None  # e.g. "54 years"
    patient_sex: str | None  # "female" | "male" | "other"
    study_instance_uid: str
    findings: ClinicalFindings
    summary: ClinicalSummary
    experts: tuple[ExpertRow, ...]
    fusion_strategy: str
    registration: str | None  # e.g. "elastix rigid+affine, NCC 0.41 -> 0.93"
    overlay_png: bytes
    volume_plot_png: bytes
    software: tuple[tuple[str, str], ...]  # (component, version)
    signer_name: str
    signed_at: datetime
    regions: tuple[RegionRow, ...] = ()
    review_reasons: tuple[str, ...] = ()  # the plausibility guard's: the segmentation needs a human look
    patient_name: str | None = None  # PatientName (0010,0010) as text, any script; None: the pseudonym only
    lesions: tuple[LesionRow, ...] = ()  # this study's lesions (and those gone); empty: the timeline tracked none
    response: ResponseSummary | None = None  # None: the first visit, or no response stored
    lesion_overlay_png: bytes | None = None  # axial views of the target lesions with their diameters
    # a radiologist's approved SEG was measured instead of the panel's: which, who approved it and when
    segmentation_note: str | None = None


def _f(value: float | None, digits: int, signed: bool = False, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}{unit}" if signed else f"{value:.{digits}f}{unit}"


def _range(bounds: tuple[float, float] | None, digits: int, signed: bool = False, unit: str = "") -> str:
    if bounds is None:
        return "n/a"
    return f"{_f(bounds[0], digits, signed, unit)} to {_f(bounds[1], digits, signed, unit)}"


def _table(rows: Sequence[Sequence[str]], widths: Sequence[float], header: bool = True) -> Table:
    table = Table([list(r) for r in rows], colWidths=list(widths), hAlign="LEFT", repeatRows=1 if header else 0)
    style = [("FONTSIZE", (0, 0), (-1, -1), 8.5), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
             ("VALIGN", (0, 0), (-1, -1), "TOP")]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#edf2f7")),
                  ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")]
    table.setStyle(TableStyle(style))
    return table


MAX_IMAGE_HEIGHT_MM = 200.0  # an A4 page's frame is about 260 mm high: room for a heading above a figure


def _image(png: bytes, width_mm: float, max_height_mm: float = MAX_IMAGE_HEIGHT_MM) -> Image:
    """The PNG ``width_mm`` wide, or narrower when it would be taller than ``max_height_mm`` (a tall overlay of
    several time points must never overflow the page, which reportlab refuses with a LayoutError)."""
    from reportlab.lib.utils import ImageReader

    reader = ImageReader(BytesIO(png))
    pixel_width, pixel_height = reader.getSize()
    scale_mm = min(width_mm / pixel_width, max_height_mm / pixel_height)  # mm per pixel
    return Image(BytesIO(png), width=pixel_width * scale_mm * mm, height=pixel_height * scale_mm * mm)


def _response_box(content: ReportContent, body: ParagraphStyle, small: ParagraphStyle) -> list[object]:
    """The suggested response, framed, right after the patient's table; nothing when no lesions were tracked."""
    response = content.response
    if response is None and not content.lesions:
        return []
    if response is None:
        lines = [Paragraph("<b>Response: not assessed.</b> " + escape(
            "This study is the patient's first tracked visit: it is the baseline. Target lesions are chosen from its "
            "measurable lesions when the next visit is assessed."), body)]
    else:
        colour = RESPONSE_COLOURS.get(response.category, "#b7791f")
        unit = response.unit_text
        targets = ", ".join(response.targets) or "none"
        lines = [
            Paragraph(f'<font size="12" color="{colour}"><b>Suggested response: {escape(response.label)}</b></font>',
                      ParagraphStyle("response", parent=body, leading=15)),
            Paragraph(escape(
                f"Criteria: {response.criteria}. Confirmation: {response.confirmation}. "
                f"Sum of the target lesions ({targets}): {_f(response.target_sum, 2, unit=' ' + unit)}; baseline "
                f"{_f(response.baseline_sum, 2, unit=' ' + unit)}, nadir {_f(response.nadir_sum, 2, unit=' ' + unit)}; "
                f"change from baseline {_f(response.change_from_baseline_percent, 1, signed=True, unit='%')}, "
                f"from nadir {_f(response.change_from_nadir_percent, 1, signed=True, unit='%')}."), body),
            *[Paragraph(escape(f"• {reason}"), body) for reason in response.reasons],
        ]
    lines.append(Paragraph(escape(SUGGESTION_NOTE), small))
    box = Table([[line] for line in lines], colWidths=[180 * mm], hAlign="LEFT")
    box.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 1.0, colors.HexColor("#2d3748")),
                             ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#f7fafc")),
                             ("TOPPADDING", (0, 0), (-1, -1), 1.2), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.2)]))
    return [box, Spacer(1, 2 * mm)]


def _change_text(change: LesionChange | None) -> str:
    if change is None:
        return "baseline"
    if change.note is not None:
        return escape(change.note)
    return (f"vol {_f(change.volume_percent, 1, signed=True, unit='%')}<br/>"
            f"prod {_f(change.product_percent, 1, signed=True, unit='%')}")


def _lesion_status(row: LesionRow) -> str:
    if row.status == "gone":
        return "gone" + (f" (last seen {row.last_seen.isoformat()})" if row.last_seen else "")
    if row.status == "merged" and row.merged_ids:
        return f"merged ({', '.join(row.merged_ids)} joined it)"
    if row.status == "split" and row.split_from:
        return f"split from {row.split_from}"
    return row.status


def _lesion_page(content: ReportContent, h2: ParagraphStyle, small: ParagraphStyle) -> list[object]:
    """The lesion table and the views of the target lesions."""
    rows: list[list[object]] = [["Lesion", "Status", "Target", "Measurable", "Volume\n(cm³)", "Diameters\n(mm)",
                                 "Product\n(mm²)", "Change vs\nbaseline", "Change vs\nprevious"]]
    for row in content.lesions:
        if row.measurable is None:
            measurable = "not seen"
        else:
            measurable = "yes" if row.measurable else "no: " + "; ".join(row.not_measurable or ("not measurable",))
        diameters = ("n/a" if row.longest_diameter_mm is None or row.perpendicular_diameter_mm is None
                     else f"{row.longest_diameter_mm:.1f} × {row.perpendicular_diameter_mm:.1f}")
        rows.append([row.tracking_id, Paragraph(escape(_lesion_status(row)), small),
                     "n/a" if row.target is None else ("target" if row.target else "non-target"),
                     Paragraph(escape(measurable), small), _f(row.volume_cm3, 2), diameters, _f(row.product_mm2, 1),
                     *(Paragraph(_change_text(change), small) for change in (row.vs_baseline, row.vs_previous))])
    story: list[object] = [
        Paragraph("Lesions, this study", h2),
        Paragraph(escape("Each lesion by its tracking identifier across visits: the two perpendicular diameters on "
                         "the axial plane of its largest cross-section and their product (RANO 2.0); changes of "
                         "volume (vol) and product (prod) against the same lesion at the baseline and at the "
                         "previous visit."), small),
        Spacer(1, 2 * mm),
        _table(rows, [16 * mm, 25 * mm, 17 * mm, 28 * mm, 15 * mm, 21 * mm, 16 * mm, 21 * mm, 21 * mm]),
    ]
    if content.lesion_overlay_png is not None:
        from reportlab.lib.utils import ImageReader

        width_px = ImageReader(BytesIO(content.lesion_overlay_png)).getSize()[0]
        story += [Spacer(1, 3 * mm), KeepTogether([
            Paragraph("Lesion views", h2),
            Paragraph("Axial view through each lesion's measurement plane, centred on its centroid: fused mask in red, "
                      "longest diameter in cyan, perpendicular diameter in green; radiological convention (R = "
                      "patient's right, anterior up).", small),
            _image(content.lesion_overlay_png, min(180.0, 0.2 * width_px), max_height_mm=80.0)])]
    return story


def render_report_pdf(content: ReportContent) -> bytes:
    """The unsigned report as PDF bytes (A4)."""
    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9.5, leading=12.5)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#4a5568"))
    h2 = styles["Heading2"]
    findings = content.findings
    change = findings.change
    story: list[object] = [
        Paragraph(escape(REPORT_TITLE), styles["Title"]),
        Paragraph(unicode_markup(content.institution), small),
        Spacer(1, 4 * mm),
    ]
    patient_rows: list[list[object]] = [
        *([["Patient", Paragraph(unicode_markup(content.patient_name), body)]] if content.patient_name else []),
        ["Patient (pseudonym)", content.patient_pseudonym],
        ["Age at this study", content.patient_age or "not recorded"],
        ["Sex", content.patient_sex or "not recorded"],
        ["Study", content.study_instance_uid],
    ]
    for index, point in enumerate(findings.time_points):
        role = "this study" if index == len(findings.time_points) - 1 else f"time point {index + 1}"
        if change is not None and point.study_date == change.baseline_date:
            role += " (baseline)"
        patient_rows.append([f"MRI {point.study_date.isoformat()}", role])
    story += [_table(patient_rows, [45 * mm, 120 * mm], header=False), Spacer(1, 4 * mm)]
    story += _response_box(content, body, small)

    source = (f"written by {content.summary.model} from the findings and notes, numbers checked"
              if content.summary.source == "llm" else "built from the computed findings and the patient's notes")
    story += [Paragraph("Clinical summary", h2), Paragraph(escape(content.summary.text), body),
              Paragraph(escape(f"Summary {source}."), small)]
    if content.summary.note:
        story.append(Paragraph(escape(f"Note: {content.summary.note}"), small))

    if content.segmentation_note:
        story.append(Paragraph('<font color="#2b6cb0"><b>Approved segmentation.</b></font> '
                               + escape(content.segmentation_note), body))
    if content.review_reasons and content.segmentation_note:
        story.append(Paragraph(escape("The panel's automatic segmentation failed a plausibility check ("
                                      + "; ".join(content.review_reasons) + "); it is not the one measured."), small))
    elif content.review_reasons:
        story.append(Paragraph(
            '<font color="#c53030"><b>Segmentation implausible: review.</b></font> '
            + escape("The numbers below come from a segmentation that failed a plausibility check ("
                     + "; ".join(content.review_reasons) + "). Check it in the viewer before using them."), body))
    story.append(Paragraph("Tumour volume", h2))
    if change is None:
        only = findings.time_points[-1]
        story.append(_table([
            ["Study date", "Volume (cm³)", "95% CI, panel mean (cm³)", "Longest axial diameter (mm)"],
            [only.study_date.isoformat(), _f(only.volume_cm3, 2), _range(only.volume_ci95_cm3, 2),
             _f(only.longest_axial_diameter_mm, 1)],
        ], [30 * mm, 30 * mm, 50 * mm, 50 * mm]))
        story.append(Paragraph("No earlier study of this patient: no change is measured.", small))
    else:
        ci = change.percent_change_ci95
        story.append(_table([
            ["", f"A: baseline {change.baseline_date.isoformat()}", f"B: follow-up {change.follow_up_date.isoformat()}",
             "Delta B-A", "% change", "95% CI of % change"],
            ["Volume (cm³)", _f(change.volume_baseline_cm3, 2), _f(change.volume_follow_up_cm3, 2),
             _f(change.delta_cm3, 2, signed=True), _f(change.percent_change, 1, signed=True, unit="%"),
             _range(ci, 1, signed=True, unit="%")],
        ], [24 * mm, 36 * mm, 36 * mm, 22 * mm, 20 * mm, 32 * mm]))
        story.append(Spacer(1, 2 * mm))
        story.append(_table([
            ["Interval", "Dice (registered)", "HD95", "Growth rate", "Registration"],
            [f"{change.days_between} days", _f(change.dice, 3), _f(change.hd95_mm, 1, unit=" mm"),
             _f(change.growth_rate_cm3_per_day, 4, signed=True, unit=" cm³/day"), content.registration or "n/a"],
        ], [22 * mm, 28 * mm, 22 * mm, 34 * mm, 64 * mm]))
        colour = FLAG_COLOURS.get(change.flag, "#b7791f")
        story += [Spacer(1, 3 * mm), Paragraph(
            f'<font color="{colour}"><b>Flag: {escape(change.flag)}</b></font> — {escape(change.flag_reason)}', body)]

    if findings.time_points and findings.time_points[-1].volume_cm3 == 0:
        story.append(Paragraph(escape(NO_TUMOUR), body))
    if content.regions:
        story += [Spacer(1, 3 * mm), Paragraph("Tumour regions, this study" + (
            " (automatic panel, for reference)" if content.segmentation_note else ""), h2)]
        rows = [["Region", "Volume (cm³)", "Agreement", "Experts", ""]]
        for row in content.regions:
            agreement = "n/a" if row.agreement_score is None else f"{row.agreement_score:.3f} ({row.agreement_flag})"
            rows.append([f"{row.name} ({row.region})", _f(row.volume_cm3, 2), agreement,
                         Paragraph(escape(", ".join(row.experts)), small), "measured" if row.measured else ""])
        story.append(_table(rows, [44 * mm, 24 * mm, 34 * mm, 52 * mm, 20 * mm]))
        measured = next((r for r in content.regions if r.measured), None)
        if content.segmentation_note:
            story.append(Paragraph(escape("Volumes, diameters and the change are measured on the approved "
                                          "segmentation, not on these automatic regions."), small))
        elif measured is not None:
            story.append(Paragraph(escape(f"Volumes, diameters and the change are measured on the "
                                          f"{measured.name.lower()} ({measured.region})."), small))

    if content.lesions:  # flows on from page 1 (its length varies with the summary), a page of its own at most
        story += [CondPageBreak(70 * mm), *_lesion_page(content, h2, small)]
    story += [PageBreak(), Paragraph("Segmentation overlays", h2),
              Paragraph(("The measured mask in red (this study: the approved segmentation)" if content.segmentation_note
                         else "Fused (ensemble) mask in red") + ", each time point cut through its own lesion centre; "
                        "radiological convention (R = patient's right, A = anterior).", small),
              _image(content.overlay_png, 100 if len(findings.time_points) > 1 else 60),
              Paragraph("Volume over time", h2), _image(content.volume_plot_png, 150)]

    story += [PageBreak(), Paragraph("Panel of experts", h2)]
    rows = [["Expert", "Status", "Volume\n(cm³)", "Dice vs\nensemble", "IoU vs\nensemble", "Version", "Note"]]
    for expert in content.experts:
        rows.append([Paragraph(escape(expert.name), small), expert.status, _f(expert.volume_cm3, 2),
                     _f(expert.dice_vs_ensemble, 3), _f(expert.iou_vs_ensemble, 3),
                     Paragraph(escape(expert.version or ""), small), Paragraph(escape(expert.note or ""), small)])
    story.append(_table(rows, [34 * mm, 13 * mm, 16 * mm, 16 * mm, 16 * mm, 34 * mm, 51 * mm]))
    agreement = ("n/a" if findings.agreement_score is None
                 else f"{findings.agreement_score:.3f} ({findings.agreement_flag})")
    story.append(Paragraph(escape(f"Fusion: {content.fusion_strategy}; agreement (mean pairwise Dice): {agreement}; "
                                  f"experts that ran: {', '.join(findings.experts_ran) or 'none'}."), body))
    if content.summary.passages:
        story.append(Paragraph("Notes cited", h2))
        for passage in content.summary.passages:
            story.append(Paragraph(escape(f"[{passage.filename}, part {passage.chunk_index + 1}] {passage.text}"),
                                   small))
    story += [Paragraph("Software", h2),
              _table([["Component", "Version"], *[[c, v] for c, v in content.software]], [60 * mm, 60 * mm])]
    story += [Paragraph("Signature", h2), Paragraph(escape(
        f"Electronically signed by {content.signer_name} for {content.institution} on "
        f"{content.signed_at.strftime('%Y-%m-%d %H:%M UTC')}. The signature (PAdES, CMS, SHA-256) covers this "
        "whole document: any change after signing makes it fail verification."), body),
        Spacer(1, 3 * mm),
        Paragraph("Computed by OncoFlow, research software: volumes and flags support, and do not replace, the "
                  "radiologist's reading.", small)]

    buffer = BytesIO()

    def footer(canvas: object, document: object) -> None:
        canvas.saveState()  # type: ignore[attr-defined]
        canvas.setFont("Helvetica", 7)  # type: ignore[attr-defined]
        canvas.drawString(15 * mm, 10 * mm, f"{REPORT_TITLE} · {content.patient_pseudonym} · "  # type: ignore[attr-defined]
                          f"page {document.page}")  # type: ignore[attr-defined]
        canvas.restoreState()  # type: ignore[attr-defined]

    document = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                                 bottomMargin=18 * mm, title=REPORT_TITLE, author=content.institution,
                                 subject=f"{content.patient_pseudonym}, study {content.study_instance_uid}",
                                 creator="OncoFlow")
    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
