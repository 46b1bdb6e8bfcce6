"""End to end: patient names in Hebrew, Arabic, Cyrillic, Chinese and Latin-1 accents survive the whole flow.

Five full-head phantom studies, each written in a character set a scanner of that country uses
(SpecificCharacterSet (0008,0005): ISO_IR 138 Hebrew and ISO_IR 127 Arabic and ISO_IR 100 Latin-1, each
single-byte; GB18030 Chinese; ISO_IR 192 UTF-8 Cyrillic), are pushed by storescu into one stack whose report
prints the name (``ONCOFLOW_REPORT_PATIENT_NAME=on``), and all five jobs are awaited together. Each name must
come back unchanged from:

* the QIDO-RS study search OHIF's study list makes, through OncoFlow's proxy (DICOM JSON is UTF-8: Orthanc's
  ``DefaultEncoding`` Latin-1 answered ``"^"`` for Hebrew), and a search by the family name;
* OHIF's study list in headless Chromium (the row's text; screenshot in the artifacts);
* the SEG, the SR and the Encapsulated PDF read back from Orthanc (pydicom decodes each with its own
  SpecificCharacterSet, which must be able to encode the name);
* the report PDF's header: its text (pdftotext), and every letter drawn with a real glyph (not .notdef) of a
  font embedded in the PDF, read from the embedded font programs themselves (fontTools).

The oracle is the name as written here and the codecs of the standard character sets, never OncoFlow's code.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydicom.charset import python_encoding

from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.ohif_viewer import ensure_ohif_dist

from .conftest import Stack, run_browser_test, running_stack, unique_study, write_series
from .pdf_text_oracle import drawn_with_glyphs, pdf_words, win_ansi
from .test_e2e_longitudinal import oncoflow_objects

pytestmark = pytest.mark.e2e

PHANTOM_SHAPE = (40, 64, 64)
JOB_TIMEOUT_S = 900  # five pipeline runs one after the other on two busy cores
BROWSER_TIMEOUT_S = 180


@dataclass(frozen=True)
class NamedPatient:
    key: str
    patient_name: str  # DICOM PN: Family^Given
    character_set: str  # SpecificCharacterSet (0008,0005) the scanner writes
    shown_name: str  # as OHIF's study list shows it: "Family, Given"


PATIENTS = (
    NamedPatient("hebrew", "כהן^דוד", "ISO_IR 138", "כהן, דוד"),
    NamedPatient("arabic", "حداد^ليلى", "ISO_IR 127", "حداد, ليلى"),
    NamedPatient("cyrillic", "Иванов^Пётр", "ISO_IR 192", "Иванов, Пётр"),
    NamedPatient("chinese", "王^小明", "GB18030", "王, 小明"),
    NamedPatient("latin1", "Müller^José", "ISO_IR 100", "Müller, José"),
)


@pytest.fixture(scope="module")
def names_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("charsets-home"), ONCOFLOW_REPORT_PATIENT_NAME="on") as stack:
        yield stack


@pytest.fixture(scope="module")
def pushed(names_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The five studies, written in their own character sets, pushed, then all five jobs awaited."""
    ensure_ohif_dist()
    studies = {}
    for seed, patient in enumerate(PATIENTS, start=9401):
        study = replace(unique_study(f"charset-{patient.key}"), patient_name=patient.patient_name,
                        specific_character_set=patient.character_set,
                        study_description=f"Character set check {patient.key}")
        directory = tmp_path_factory.mktemp(f"charset-{patient.key}")
        datasets = write_series(directory, make_phantom(seed, shape=PHANTOM_SHAPE).volume, study)
        # what goes on the wire: the name in the scanner's own bytes (single-byte sets are not UTF-8)
        raw = next(p for p in sorted(directory.rglob("*")) if p.is_file()).read_bytes()
        encoded = patient.patient_name.encode(python_encoding[patient.character_set])
        assert encoded in raw and (patient.character_set == "ISO_IR 192" or patient.patient_name.encode() not in raw)
        names_stack.push(directory)
        studies[patient.key] = {"uid": study.study_instance_uid, "patient_id": study.patient_id,
                                "sources": datasets}
    for patient in PATIENTS:
        job = names_stack.wait_job(studies[patient.key]["uid"], timeout_s=JOB_TIMEOUT_S)
        assert job["state"] == "done", (patient.key, job["error"])
        studies[patient.key]["job"] = job
    return studies


def dicom_json_name(answer: dict[str, Any]) -> str:
    return str(answer["00100010"]["Value"][0]["Alphabetic"])


def test_qido_study_search_keeps_every_name(names_stack: Stack, pushed: dict[str, dict[str, Any]]) -> None:
    # the study list's own request (OHIF 3.13), through OncoFlow's QIDO proxy
    status, body = names_stack.request(
        "GET", "/oncoflow/dicom-web/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060")
    assert status == 200, body[:300]
    by_uid = {a["0020000D"]["Value"][0]: a for a in json.loads(body)}
    for patient in PATIENTS:
        answer = by_uid[pushed[patient.key]["uid"]]
        assert dicom_json_name(answer) == patient.patient_name, (patient.key, answer["00100010"])
        # OHIF's search box: the family name with a wildcard, percent-encoded UTF-8 as a browser sends it
        family = urllib.parse.quote(patient.patient_name.split("^")[0] + "*")
        status, body = names_stack.request("GET", f"/oncoflow/dicom-web/studies?PatientName={family}")
        assert status == 200, (patient.key, body[:300])
        found = [a for a in json.loads(body) if a["0020000D"]["Value"][0] == pushed[patient.key]["uid"]]
        assert len(found) == 1 and dicom_json_name(found[0]) == patient.patient_name, (patient.key, body[:300])


def test_ohif_study_list_shows_every_name(names_stack: Stack, pushed: dict[str, dict[str, Any]]) -> None:
    artifacts = names_stack.settings.home / "test-artifacts" / "character-sets"
    rows = [{"patient_id": pushed[p.key]["patient_id"], "shown_name": p.shown_name} for p in PATIENTS]
    run_browser_test("character-sets.test.mjs", {"ONCOFLOW_URL": names_stack.settings.orthanc_url,
                                                 "EXPECT_ROWS": json.dumps(rows)}, artifacts, BROWSER_TIMEOUT_S)
    assert (artifacts / "character-sets.png").stat().st_size > 10_000
    page_text = (artifacts / "character-sets-page.txt").read_text(encoding="utf-8")
    for patient in PATIENTS:
        assert patient.shown_name in page_text, patient.key


@pytest.mark.parametrize("modality", ["SEG", "SR", "DOC"])
def test_derived_objects_keep_the_name(names_stack: Stack, pushed: dict[str, dict[str, Any]], modality: str) -> None:
    for patient in PATIENTS:
        objects = oncoflow_objects(names_stack, pushed[patient.key]["uid"], modality)
        assert objects, (patient.key, modality)
        for ds in objects:
            assert str(ds.PatientName) == patient.patient_name, (patient.key, modality, str(ds.PatientName))
            assert ds.PatientID == pushed[patient.key]["patient_id"]
            character_set = ds.SpecificCharacterSet
            assert isinstance(character_set, str), (modality, character_set)  # one set, no code extensions
            patient.patient_name.encode(python_encoding[character_set])  # raises when the set cannot hold it


def test_report_header_prints_the_name_with_real_glyphs(names_stack: Stack, pushed: dict[str, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    for patient in PATIENTS:
        report = pushed[patient.key]["job"]["outputs"]["longitudinal"]["report"]
        assert "error" not in report, (patient.key, report)
        status, pdf = names_stack.request("GET", f"/oncoflow/reports/{report['report_sop_instance_uid']}.pdf")
        assert status == 200 and pdf.startswith(b"%PDF"), (patient.key, status)
        path = tmp_path / f"{patient.key}.pdf"
        path.write_bytes(pdf)
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                              check=True).stdout
        header = text.split("Clinical summary", 1)[0]
        (line,) = [li for li in header.splitlines() if li.strip().startswith("Patient ") and "pseudonym" not in li]
        components = patient.patient_name.split("^")
        assert set(components) <= pdf_words(line), (patient.key, line)  # each name part whole, in reading order
        letters = {c for c in patient.patient_name if c.isalpha()}
        embedded = drawn_with_glyphs(pdf)
        # a letter is drawn when an embedded font has its glyph, or it is one of base-14 Helvetica's WinAnsi set
        missing = {c for c in letters if c not in embedded and not win_ansi(c)}
        assert not missing, (patient.key, sorted(missing), "not drawn by any embedded font")
        if patient.key != "latin1":
            assert letters <= embedded, (patient.key, sorted(letters - embedded))

