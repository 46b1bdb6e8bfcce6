"""The report lesion by lesion (RANO 2.0): the lesion table, the suggested response and the lesion views with their
diameters, from synthetic timeline rows (no stack). The PDF is read with poppler's eyes: pdftotext for the words,
pdftoppm for the pixels of the drawn diameters."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oncoflow_rag.clinical_findings import ChangeFinding, ClinicalFindings, TimePointFinding
from oncoflow_rag.clinical_summary import ClinicalSummary
from PIL import Image

from oncoflow.core.volume import Volume
from oncoflow.pipeline.report_stage import lesion_rows, lesion_views, response_summary, target_sums
from oncoflow.report.lesion_content import LesionChange
from oncoflow.report.report_figures import (
    LesionAxes,
    TimePointImage,
    VolumePoint,
    lesion_axes_figure,
    lesion_centre_mm,
    orthogonal_slice,
    overlay_figure,
    view_pixel,
    volume_plot,
)
from oncoflow.report.report_pdf import ReportContent, render_report_pdf

from .conftest import axial_volume

DATES = ("2025-01-10", "2025-04-10", "2025-07-10")
HALF_DIAGONAL = 16.0 / np.sqrt(2.0)  # the long axis: 32 mm from patient right-anterior to left-posterior
HALF_PERPENDICULAR = 8.0 / np.sqrt(2.0)  # the perpendicular one: 16 mm
PLANE_Z = 20.0  # slice 20 of axial_volume (z = -40 + 3 x 20)
LONG_AXIS = [[-HALF_DIAGONAL, -HALF_DIAGONAL, PLANE_Z], [HALF_DIAGONAL, HALF_DIAGONAL, PLANE_Z]]
PERPENDICULAR_AXIS = [[HALF_PERPENDICULAR, -HALF_PERPENDICULAR, PLANE_Z],
                      [-HALF_PERPENDICULAR, HALF_PERPENDICULAR, PLANE_Z]]


def lesion(tracking_id: str, status: str, volume: float, longest: float, perpendicular: float, *,
           measurable: bool = True, reasons: tuple[str, ...] = (), merged: tuple[str, ...] = (),
           split_from: str | None = None, target: bool = False) -> dict[str, Any]:
    """A lesion row as oncoflow.pipeline.lesion_tracking.lesion_row writes it."""
    return {"label": 1, "tracking_id": tracking_id, "status": status, "merged_ids": list(merged),
            "split_from": split_from, "target": target, "volume_cm3": volume, "longest_diameter_mm": longest,
            "perpendicular_diameter_mm": perpendicular, "product_mm2": round(longest * perpendicular, 1),
            "max_caliper_mm": longest + 1.0, "measurable": measurable, "not_measurable": list(reasons),
            "centroid_lps_mm": [0.0, 0.0, 19.5], "long_axis_lps_mm": LONG_AXIS,
            "perpendicular_axis_lps_mm": PERPENDICULAR_AXIS}


def timeline_rows() -> list[dict[str, Any]]:
    """Three visits: Lesion 2 merges into Lesion 1, Lesion 3 (not measurable) is gone, Lesion 4 is new and
    Lesion 5 a part split off Lesion 1."""
    small = ("longest diameter 6.0 mm under 10 mm",)
    visits = [
        [lesion("Lesion 1", "baseline", 10.0, 25.0, 16.0), lesion("Lesion 2", "baseline", 2.0, 12.5, 8.0),
         lesion("Lesion 3", "baseline", 0.3, 6.0, 5.0, measurable=False, reasons=small)],
        [lesion("Lesion 1", "continued", 8.0, 20.0, 15.0, target=True),
         lesion("Lesion 2", "continued", 1.5, 10.0, 8.0, target=True),
         lesion("Lesion 3", "continued", 0.2, 5.0, 4.0, measurable=False, reasons=small)],
        [lesion("Lesion 1", "merged", 6.0, 32.0, 16.0, merged=("Lesion 2",), target=True),
         lesion("Lesion 4", "new", 0.5, 12.0, 10.0),
         lesion("Lesion 5", "split", 0.4, 9.0, 4.0, measurable=False,
                reasons=("longest diameter 9.0 mm under 10 mm",), split_from="Lesion 1")],
    ]
    responses = [None,
                 {"criteria": "RANO 2.0", "category": "SD", "confirmation": "not needed", "label": "SD",
                  "targets": ["Lesion 1", "Lesion 2"], "unit": "mm2", "target_sum": 380.0, "baseline_sum": 500.0,
                  "nadir_sum": 500.0, "change_from_baseline_percent": -24.0, "change_from_nadir_percent": -24.0,
                  "reasons": ["sum of targets -24.0% from baseline: neither response nor progression"]},
                 {"criteria": "RANO 2.0", "category": "PD", "confirmation": "preliminary", "label": "PD (preliminary)",
                  "targets": ["Lesion 1", "Lesion 2"], "unit": "mm2", "target_sum": 512.0, "baseline_sum": 500.0,
                  "nadir_sum": 380.0, "change_from_baseline_percent": 2.4, "change_from_nadir_percent": 34.74,
                  "reasons": ["new measurable lesion: Lesion 4", "sum of targets +34.7% from the nadir"]}]
    return [{"orthanc_study_id": f"s{i}", "study_instance_uid": f"1.2.3.{i}", "study_date": d, "error": None,
             "measurements": {"volume_cm3": 12.3}, "lesions": visits[i], "response": responses[i]}
            for i, d in enumerate(DATES)]


def test_lesion_rows_match_by_tracking_id_and_list_new_and_gone_lesions() -> None:
    rows = timeline_rows()
    table = lesion_rows(rows, rows[2])
    assert [(r.tracking_id, r.status) for r in table] == [
        ("Lesion 1", "merged"), ("Lesion 4", "new"), ("Lesion 5", "split"), ("Lesion 3", "gone")]
    first, new, part, gone = table
    assert first.target is True and new.target is False and gone.target is False
    # Lesion 2 merged into Lesion 1: against both visits the two count together
    assert first.vs_baseline == LesionChange(pytest.approx(100 * (6.0 - 12.0) / 12.0),
                                             pytest.approx(100 * (512.0 - 500.0) / 500.0))
    assert first.vs_previous == LesionChange(pytest.approx(100 * (6.0 - 9.5) / 9.5),
                                             pytest.approx(100 * (512.0 - 380.0) / 380.0))
    assert new.vs_baseline == new.vs_previous == LesionChange(note="new")
    assert part.vs_previous == LesionChange(note="split from Lesion 1") and not part.measurable
    assert gone.vs_baseline == gone.vs_previous == LesionChange(note="gone")
    assert gone.last_seen == date(2025, 4, 10) and gone.measurable is None and gone.volume_cm3 is None
    # the first visit: targets not chosen yet, no change
    baseline = lesion_rows(rows, rows[0])
    assert [r.target for r in baseline] == [None, None, None] and baseline[0].vs_baseline is None
    # an older row, stored before lesions were tracked: no table, no response
    old = {k: v for k, v in rows[2].items() if k not in ("lesions", "response")}
    assert lesion_rows([*rows[:2], old], old) == () and response_summary(old) is None
    assert lesion_rows([old], old) == ()


def test_response_target_sums_and_views_come_from_the_stored_rows() -> None:
    rows = timeline_rows()
    response = response_summary(rows[2])
    assert response is not None and response.label == "PD (preliminary)" and response.unit_text == "mm²"
    assert response.targets == ("Lesion 1", "Lesion 2") and len(response.reasons) == 2
    assert target_sums(rows, rows[2]) == [500.0, 380.0, 512.0]
    assert target_sums(rows, rows[0]) == [None, None, None]
    views = lesion_views(rows[2])
    assert [v.label for v in views] == ["Lesion 1 (target)"]  # the only target seen at this visit
    assert views[0].long_axis_lps_mm == tuple(tuple(p) for p in LONG_AXIS)
    assert [v.label for v in lesion_views(rows[0])] == ["Lesion 1 (largest lesion)"]  # no target yet


def head_with_oblique_lesion() -> tuple[Volume, np.ndarray]:
    """A 40x64x64 axial volume (3x2x2 mm), an elliptic lesion at the centre of slices 18-22, its long axis
    (32 mm) from the patient's right-anterior to the left-posterior, its short axis 16 mm."""
    voxels = np.full((40, 64, 64), 10.0, np.float32)
    x = -64 + 2.0 * np.arange(64)
    y = -64 + 2.0 * np.arange(64)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    along, across = (xx + yy) / np.sqrt(2.0), (xx - yy) / np.sqrt(2.0)
    ellipse = (along / 16.0) ** 2 + (across / 8.0) ** 2 <= 1.0
    mask = np.zeros(voxels.shape, np.uint8)
    mask[18:23][:, ellipse] = 1
    voxels[mask > 0] = 100.0
    voxels[:, 4:60, 4:60] += 20.0  # a head around it
    return axial_volume(voxels), mask


def test_view_pixel_is_where_orthogonal_slice_puts_a_point() -> None:
    volume, mask = head_with_oblique_lesion()
    centre = lesion_centre_mm(volume, mask)
    labels = orthogonal_slice(volume, mask, centre, "axial")[1]
    rows, cols = np.nonzero(labels)
    assert np.allclose(view_pixel(volume, centre, centre, "axial"), (rows.mean(), cols.mean()), atol=1.0)
    # 10 mm to the patient's left is 10 pixels to the right; 10 mm posterior is 10 pixels down
    row, col = view_pixel(volume, centre, centre + np.array([10.0, 10.0, 0.0]), "axial")
    assert np.allclose((row - rows.mean(), col - cols.mean()), (10.0, 10.0), atol=1.0)


def colour_masks(pixels: np.ndarray) -> dict[str, np.ndarray]:
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return {"cyan": (r < 90) & (g > 170) & (b > 190), "green": (r < 130) & (g > 200) & (b < 130),
            "red": (r > 180) & (g < 110) & (b < 110)}


def check_axes_drawn(pixels: np.ndarray, centred: bool = True) -> None:
    """The long axis (cyan) runs from upper left to lower right (patient right-anterior to left-posterior), the
    perpendicular (green) from upper right to lower left, about half as long, both inside the lesion's red outline
    and, with ``centred``, crossing at its centre."""
    found = colour_masks(pixels)
    assert found["cyan"].sum() > 30 and found["green"].sum() > 15, {k: int(v.sum()) for k, v in found.items()}
    points = {k: np.argwhere(v).astype(float) for k, v in found.items()}
    assert np.corrcoef(points["cyan"].T)[0, 1] > 0.95  # rows grow with columns: down and to the right
    assert np.corrcoef(points["green"].T)[0, 1] < -0.95
    red_centre = (points["red"].min(axis=0) + points["red"].max(axis=0)) / 2
    red_span = points["red"].max(axis=0) - points["red"].min(axis=0)
    for name in ("cyan", "green"):
        centre = (points[name].min(axis=0) + points[name].max(axis=0)) / 2
        assert np.all(points[name].min(axis=0) >= points["red"].min(axis=0) - 2), name
        assert np.all(points[name].max(axis=0) <= points["red"].max(axis=0) + 2), name
        assert not centred or np.all(np.abs(centre - red_centre) < 0.08 * red_span), (name, centre, red_centre)
    length = {k: float(np.linalg.norm(points[k].max(axis=0) - points[k].min(axis=0))) for k in ("cyan", "green")}
    assert 1.6 < length["cyan"] / length["green"] < 2.6, length
    # the long axis spans the outline's long direction: 32 mm of the ellipse's ~36 mm diagonal extent
    assert 0.7 < (points["cyan"].max(axis=0) - points["cyan"].min(axis=0))[1] / red_span[1] < 1.05


def test_lesion_figure_draws_the_diameters_where_they_are() -> None:
    volume, mask = head_with_oblique_lesion()
    view = LesionAxes("Lesion 1 (target)", (0.0, 0.0, 19.5), tuple(map(tuple, LONG_AXIS)),  # type: ignore[arg-type]
                      tuple(map(tuple, PERPENDICULAR_AXIS)))  # type: ignore[arg-type]
    png = lesion_axes_figure(volume, mask, [view])
    check_axes_drawn(np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int))
    plain = lesion_axes_figure(volume, mask, [LesionAxes("Lesion 2", (0.0, 0.0, 19.5), None, None)])
    found = colour_masks(np.asarray(Image.open(BytesIO(plain)).convert("RGB")).astype(int))
    assert found["cyan"].sum() == 0 and found["green"].sum() == 0 and found["red"].sum() > 30


def test_volume_plot_adds_the_target_sum_series() -> None:
    points = [VolumePoint(date(2025, 1, 1), 10.0, None, is_baseline=True, target_sum=500.0),
              VolumePoint(date(2025, 4, 1), 14.0, None, is_current=True, target_sum=620.0)]
    with_sum = np.asarray(Image.open(BytesIO(volume_plot(points, "mm²"))).convert("RGB")).astype(int)
    orange = (np.abs(with_sum - np.array([0xDD, 0x6B, 0x20])).sum(axis=-1) < 60).sum()
    assert orange > 50
    volumetric = np.asarray(Image.open(BytesIO(volume_plot(points, "cm³"))).convert("RGB")).astype(int)
    assert (np.abs(volumetric - np.array([0xDD, 0x6B, 0x20])).sum(axis=-1) < 60).sum() > 50  # on the volume axis
    without = volume_plot([VolumePoint(p.study_date, p.volume_cm3, None) for p in points])
    pixels = np.asarray(Image.open(BytesIO(without)).convert("RGB")).astype(int)
    assert (np.abs(pixels - np.array([0xDD, 0x6B, 0x20])).sum(axis=-1) < 60).sum() == 0


def report(rows: list[dict[str, Any]], index: int, with_lesions: bool = True) -> bytes:
    """The report of visit ``index`` of ``rows`` from synthetic findings and figures."""
    volume, mask = head_with_oblique_lesion()
    current = rows[index]
    points = tuple(TimePointFinding(date.fromisoformat(r["study_date"]), 12.3, (11.0, 13.0), 30.0)
                   for r in rows[:index + 1])
    change = None if index == 0 else ChangeFinding(
        date.fromisoformat(DATES[0]), date.fromisoformat(DATES[index]), 181, 12.0, 6.9, -5.1, -42.5, (-50.0, -35.0),
        0.71, 4.2, -0.0282, "response", "volume fell by 42.5%")
    findings = ClinicalFindings(points, change, ("nnunet",), 0.9, "high")
    summary = ClinicalSummary("Follow-up MRI of the tumour.", "deterministic", None, (), None, False, None)
    views = lesion_views(current)
    sums = target_sums(rows[:index + 1], current)
    response = response_summary(current) if with_lesions else None
    content = ReportContent(
        institution="Test hospital", patient_pseudonym="OF-AAAA-BBBB", patient_age="54 years", patient_sex="female",
        study_instance_uid=current["study_instance_uid"], findings=findings, summary=summary, experts=(),
        fusion_strategy="staple", registration=None,
        overlay_png=overlay_figure([TimePointImage(f"Visit {k + 1}", volume, mask) for k in {0, index}]),
        volume_plot_png=volume_plot([VolumePoint(p.study_date, p.volume_cm3, p.volume_ci95_cm3, target_sum=s)
                                     for p, s in zip(points, sums, strict=True)],
                                    None if response is None else response.unit_text),
        software=(("OncoFlow", "test"),), signer_name="Test signer", signed_at=datetime(2025, 7, 11, tzinfo=UTC),
        lesions=lesion_rows(rows[:index + 1], current) if with_lesions else (),
        response=response,
        lesion_overlay_png=lesion_axes_figure(volume, mask, views) if with_lesions and views else None,
    )
    return render_report_pdf(content)


def pdftotext(pdf: bytes, directory: Path) -> str:
    path = directory / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def pages_png(pdf: bytes, directory: Path, dpi: int = 150) -> list[np.ndarray]:
    path = directory / "render.pdf"
    path.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-png", "-r", str(dpi), str(path), str(directory / "page")], check=True)
    return [np.asarray(Image.open(p).convert("RGB")).astype(int) for p in sorted(directory.glob("page-*.png"))]


def test_report_shows_the_response_first_and_each_lesion(tmp_path: Path) -> None:
    rows = timeline_rows()
    text = pdftotext(report(rows, 2), tmp_path)
    flat = " ".join(text.split())
    # the response: near the top, before the summary, with its criteria, confirmation and reasons
    assert flat.index("Suggested response: PD (preliminary)") < flat.index("Clinical summary")
    assert "Criteria: RANO 2.0. Confirmation: preliminary." in flat  # just below the category
    assert "• new measurable lesion: Lesion 4" in flat and "• sum of targets +34.7% from the nadir" in flat
    assert ("Sum of the target lesions (Lesion 1, Lesion 2): 512.00 mm²; baseline 500.00 mm², nadir 380.00 mm²; "
            "change from baseline +2.4%, from nadir +34.7%.") in flat
    assert "a suggestion for the radiologist to confirm" in flat
    # the lesion table: one line per lesion, by tracking identifier
    table = text.split("Lesions, this study", 1)[1].split("Lesion views", 1)[0]
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^\s*(Lesion \d)\b.*$", table, re.MULTILINE)}
    assert set(lines) == {"Lesion 1", "Lesion 3", "Lesion 4", "Lesion 5"}, table
    assert re.search(r"merged \(Lesion\s+target\s+yes\s+6\.00\s+32\.0 × 16\.0\s+512\.0\s+vol -50\.0%\s+vol -36\.8%",
                     lines["Lesion 1"]), lines["Lesion 1"]
    assert re.search(r"prod \+2\.4%\s+prod \+34\.7%", table)  # the products' changes below the volumes'
    assert re.search(r"new\s+non-target\s+yes\s+0\.50\s+12\.0 × 10\.0\s+120\.0\s+new\s+new", lines["Lesion 4"])
    assert re.search(r"split from Lesion\s+non-target\s+no: longest\s+0\.40\s+9\.0 × 4\.0\s+36\.0\s+"
                     r"split from\s+split from", lines["Lesion 5"]), lines["Lesion 5"]
    assert re.search(r"gone \(last seen\s+non-target\s+not seen\s+n/a\s+n/a\s+n/a\s+gone\s+gone", lines["Lesion 3"])
    assert "2025-04-10)" in table and "under 10 mm" in table


def test_report_pages_draw_the_diameters_on_the_lesion_view(tmp_path: Path) -> None:
    pages = pages_png(report(timeline_rows(), 2), tmp_path)
    assert len(pages) == 4  # response and volumes; lesions; overlays and plot; panel and signature
    check_axes_drawn(pages[1])  # the lesion page (flowing on from page 1, on a page of its own here)
    assert colour_masks(pages[2])["cyan"].sum() == 0  # the three-view overlays draw no diameters


def test_first_visit_and_older_rows(tmp_path: Path) -> None:
    rows = timeline_rows()
    text = " ".join(pdftotext(report(rows, 0), tmp_path).split())
    assert "Response: not assessed." in text and "it is the baseline" in text
    assert "Suggested response" not in text and "Lesion 3" in text and "Change vs" in text
    old = report(rows, 2, with_lesions=False)
    text = " ".join(pdftotext(old, tmp_path).split())
    assert "Suggested response" not in text and "Response:" not in text and "Lesions, this study" not in text
    rendered = tmp_path / "old"
    rendered.mkdir()
    assert len(pages_png(old, rendered)) == 3  # as before lesions were tracked


def test_the_measured_diameters_of_a_real_lesion_are_drawn_on_it() -> None:
    """The lesion row as the timeline writes it (oncoflow.pipeline.lesion_tracking on the mask), drawn by the
    report: the measured diameters lie on the lesion, oriented as the ellipse is."""
    from oncoflow.pipeline.lesion_tracking import first_visit, lesion_row, lesions_of

    volume, mask = head_with_oblique_lesion()
    tracked = first_visit(lesions_of(mask, volume, join_distance_mm=5.0))
    rows = [lesion_row(tracked, found, target=True) for found in tracked.lesions.lesions]
    assert len(rows) == 1 and 28.0 < rows[0]["longest_diameter_mm"] < 36.0, rows
    views = lesion_views({"lesions": rows})
    assert views[0].label == "Lesion 1 (target)"
    png = lesion_axes_figure(volume, mask, views)
    # RANO's perpendicular is the longest chord perpendicular to the long axis, not always through the centre
    check_axes_drawn(np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int), centred=False)


def test_report_stage_reads_the_lesions_and_response_from_the_stored_timeline(tmp_path: Path) -> None:
    """ClinicalReportWriter.write on a timeline stored in a JobStore (no Orthanc: the PACS and notes are stand-ins):
    the signed report it stores shows the stored response and lesions."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from oncoflow.core.config import load_settings
    from oncoflow.dicom.encapsulated_pdf_writer import read_encapsulated_pdf
    from oncoflow.measure.longitudinal_comparison import TimePointData
    from oncoflow.pipeline.job_store import Job, JobStore
    from oncoflow.pipeline.report_stage import ClinicalReportWriter, ReportInputs
    from oncoflow.report.signing_certificates import ensure_development_signer

    settings = load_settings({"ONCOFLOW_HOME": str(tmp_path)})
    ensure_development_signer(settings.signing_paths[0].parent, "Test hospital")
    store = JobStore(tmp_path / "jobs.db")
    for row in timeline_rows():
        stored = {"measurements": {"volume_cm3": 12.3, "volume_ci95_cm3": [11.0, 13.5],
                                   "longest_axial_diameter_mm": 30.0},
                  "lesions": row["lesions"], "response": row["response"]}
        store.save_time_point(row["orthanc_study_id"], "P1", row["study_instance_uid"], row["study_date"], None,
                              stored, None)

    class Notes:
        def documents(self, patient_id: str) -> list[object]:
            return []

    class Pacs:
        stored: Dataset | None = None

        def store_replacing(self, dataset: Dataset) -> None:
            self.stored = dataset

    def dataset(sop_class: str, **attributes: str) -> Dataset:
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = sop_class, generate_uid(), generate_uid()
        ds.StudyInstanceUID = "1.2.3.2"
        for key, value in attributes.items():
            setattr(ds, key, value)
        return ds

    volume, mask = head_with_oblique_lesion()
    current = TimePointData("1.2.3.2", date(2025, 7, 10), volume, mask, {"nnunet": 6.0})
    image = dataset("1.2.840.10008.5.1.4.1.1.4", PatientID="P1", PatientName="Doe^Jane", StudyDate="20250710",
                    Modality="MR", PatientSex="F", PatientAge="054Y")
    job = Job(1, "s2", "1.2.3.2", "done", 1, None, None, None, {}, {}, "stable", 0.0, 0.0)
    pacs = Pacs()
    writer = ClinicalReportWriter(settings, pacs, store, Notes(), b"k" * 32)  # type: ignore[arg-type]
    writer.write(ReportInputs("P1", "s2", job, current, image, dataset("1.2.840.10008.5.1.4.1.1.66.4"),
                              dataset("1.2.840.10008.5.1.4.1.1.88.22"), None))
    assert pacs.stored is not None
    pdf = read_encapsulated_pdf(pacs.stored)
    text = " ".join(pdftotext(pdf, tmp_path).split())
    assert "Suggested response: PD (preliminary)" in text and "• new measurable lesion: Lesion 4" in text
    assert all(f"Lesion {k}" in text for k in (1, 3, 4, 5)) and "gone (last seen" in text and "2025-04-10)" in text
    assert "Doe" not in text and "P1" not in text
