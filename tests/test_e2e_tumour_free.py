"""A head without a tumour, end to end: the panel finds nothing, and every object says so.

The head is the evaluation generator's (Colin27's own full-head scan, fixed T1c contrast, tilted on a 3 mm
scanner grid), never seen by the demo models. What a radiologist reads back from the PACS: an ensemble SEG whose
tumour segment is empty, an SR with a volume of 0 cm³ and a plausible verdict, and a signed report saying there
is no measurable tumour. Checked with pydicom, dcmtk's dsrdump and poppler's pdftotext, not OncoFlow's readers.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from oncoflow.phantoms.evaluation_generator import evaluation_study

from .conftest import Stack, required_tool, unique_study, write_series
from .seg_oracle import segment_mask

pytestmark = pytest.mark.e2e


def test_a_tumour_free_head_gives_an_empty_seg_and_says_so(stack: Stack, tmp_path: Path) -> None:
    head = evaluation_study(910_000, None, protocol={"t1c": ((3.0, 3.0, 3.0), "axial")}, channels=("t1c",))
    assert not head.truth.any()
    study = unique_study("tumour-free")
    datasets = write_series(tmp_path / "t1c", head.images["t1c"], study, series_description="AX 3D T1 POST GD")
    stack.push(tmp_path / "t1c")
    job = stack.wait_job(study.study_instance_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    outputs = job["outputs"]
    assert outputs["tumour_volume_cm3"] == 0.0, outputs["experts"]
    assert outputs["plausibility"]["verdict"] == "plausible"

    sources = [str(ds.SOPInstanceUID) for ds in datasets]
    instances = {}
    for series in stack.seg_series(study.study_instance_uid):
        for instance in series["Instances"]:
            seg = pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file")))
            instances[str(seg.SeriesDescription)] = seg
    ensemble = next(seg for name, seg in instances.items() if name.startswith("OncoFlow SEG ensemble"))
    assert not segment_mask(ensemble, sources, 1).any()  # the tumour segment holds no voxel
    brain = segment_mask(instances["OncoFlow SEG brain (deepbet)"], sources)
    assert 2.0 * float((brain.astype(bool) & head.brain).sum()) / float(brain.astype(bool).sum() + head.brain.sum()) \
        > 0.85

    _, series = stack.get(f"/studies/{stack.study_id(study.study_instance_uid)}/series")
    (sr_series,) = [s for s in series if s["MainDicomTags"].get("Modality") == "SR"]
    sr_path = tmp_path / "sr.dcm"
    sr_path.write_bytes(stack.get_bytes(f"/instances/{sr_series['Instances'][0]}/file"))
    dump = subprocess.run([required_tool("dsrdump"), str(sr_path)], capture_output=True, text=True, check=True).stdout
    (volume,) = re.findall(r'<contains NUM:\(,,"Volume"\)="([^"]+)" \(cm3,UCUM', dump)
    assert float(volume) == 0.0, dump
    assert '<contains TEXT:(,,"Segmentation plausibility")="plausible">' in dump

    report = outputs["longitudinal"]["report"]
    assert report.get("report_sop_instance_uid"), report
    status, pdf = stack.request("GET", f"/oncoflow/reports/{report['report_sop_instance_uid']}.pdf")
    assert status == 200 and pdf[:5] == b"%PDF-"
    pdf_path = tmp_path / "report.pdf"
    pdf_path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "No measurable tumour" in " ".join(text.split()), text
    assert np.isfinite(outputs["fusion"]["volume_cm3"])
