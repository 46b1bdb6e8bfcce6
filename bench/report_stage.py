"""``make bench`` (report part): the report stage of a three-visit phantom patient, without an LLM.

One stack (panel: the demo nnU-Net, so the run stays short) receives the three visits of a
longitudinal phantom (160x256x256 each) with two clinical notes uploaded after the first.
For the third visit the job's own timing of the report stage (retrieval, summary, figures,
layout, signing, DICOM store) is read from the status route; then the report is made again
through ``POST /oncoflow/studies/{uid}/report`` three times, warm: the route's own report time
and its wall time (which adds reading both visits' images back from Orthanc).
The goal is a report stage of at most 5 s on 2 cores (LLM excluded: none configured).
Writes ``bench/results/report-<UTC time>.json`` and ``bench/results/report-latest.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench_results import write_result
from pydicom.uid import generate_uid
from turnaround import SHAPE, bench_stack, push_and_wait

SEED = 515151
NOTE = ("Neuropathology: glioblastoma, IDH-wildtype, MGMT promoter methylated. Gross total resection of the right "
        "frontal lesion. Adjuvant temozolomide with chemoradiation was started. The patient reports fewer seizures.")


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> dict[str, object]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def main() -> int:
    from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case, study_info_kwargs
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets

    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-report-"))
    case = make_longitudinal_case(SEED, 3, shape=SHAPE, categories=["progression", "response"])
    visits = []
    for index in range(3):
        datasets = series_datasets(case.time_points[index].phantom.volume, StudyInfo(**study_info_kwargs(case, index)),
                                   SeriesInfo(generate_uid()))
        write_datasets(datasets, base / "visits" / str(index))
        visits.append((base / "visits" / str(index), str(datasets[0].StudyInstanceUID)))
    for key in ("OLLAMA_HOST", "ONCOFLOW_LLM_MODEL"):
        os.environ.pop(key, None)
    with bench_stack(base / "home", "nnunet_demo") as settings:
        jobs = [push_and_wait(settings, *visits[0])[0]]
        post(f"{settings.orthanc_url}/oncoflow/patients/{case.patient_id}/documents", NOTE.encode(),
             {"Content-Type": "text/plain", "Content-Disposition": 'attachment; filename="pathology.txt"'})
        for visit in visits[1:]:
            jobs.append(push_and_wait(settings, *visit)[0])
        report = jobs[2]["outputs"]["longitudinal"]["report"]
        if "error" in report:
            raise SystemExit(f"no report: {report['error']}")
        again_s, again_report_s = [], []
        for _ in range(3):
            started = time.perf_counter()
            answer = post(f"{settings.orthanc_url}/oncoflow/studies/{visits[2][1]}/report", b"")
            again_s.append(time.perf_counter() - started)  # also reads both visits' images back from Orthanc
            again_report_s.append(float(answer["report_s"]))  # type: ignore[arg-type]
    # "longitudinal" (registration, comparison, SR, REG) includes the report stage: taken out here
    processing_s = sum(v for k, v in jobs[2]["timings_s"].items() if k not in ("queue_wait", "report"))
    processing_s -= report["report_s"]
    result = {
        "benchmark": "report",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "study": {"shape": list(SHAPE), "visits": 3, "notes": 1, "llm": None},
        "in_job": {"report_s": report["report_s"], "stages_s": report["report_stages_s"],
                   "summary_source": report["summary_source"], "passages": report["passages"]},
        "report_again_wall_s": [round(s, 3) for s in again_s],
        "report_again_report_s": again_report_s,
        "report_again_median_report_s": round(statistics.median(again_report_s), 3),
        "third_visit_processing_without_report_s": round(processing_s, 3),
        "ratio_report_to_rest_of_job": round(report["report_s"] / processing_s, 3),
        "goals": {"in_job.report_s": 5.0, "report_again_median_report_s": 5.0},
    }
    print(write_result("report", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
