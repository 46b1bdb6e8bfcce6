"""``make bench`` (viewer part): time to first image and until the OncoFlow panel is filled, in headless Chromium.

One stack (panel: the demo nnU-Net) receives a longitudinal phantom's baseline and follow-up
(160x256x256 each); then ``ohif-extension/browser-tests/review-mode.test.mjs`` opens the follow-up
beside its baseline in the OncoFlow review mode three times, each with a fresh browser profile
(nothing cached), and reports the time from navigation to the first non-black viewport pixel and
to the panel showing the flag. Goal: both under 10 s. Writes ``bench/results/viewer-<UTC>.json``
and ``bench/results/viewer-latest.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from urllib.request import Request, urlopen

from bench_results import write_result
from pydicom import dcmread
from pydicom.uid import generate_uid
from turnaround import SHAPE, bench_stack, push_and_wait

SEED = 616161
RUNS = 3
BROWSER_TESTS = Path(__file__).resolve().parent.parent / "ohif-extension" / "browser-tests"


def main() -> int:
    from oncoflow.dicom.sr_writer import read_measurement_report
    from oncoflow.phantoms.longitudinal_phantom import make_longitudinal_case, study_info_kwargs
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets

    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-viewer-"))
    case = make_longitudinal_case(SEED, shape=SHAPE, categories=["progression"])
    visits = []
    for index in range(2):
        datasets = series_datasets(case.time_points[index].phantom.volume, StudyInfo(**study_info_kwargs(case, index)),
                                   SeriesInfo(generate_uid()))
        write_datasets(datasets, base / "visits" / str(index))
        visits.append((base / "visits" / str(index), str(datasets[0].StudyInstanceUID)))
    runs = []
    with bench_stack(base / "home", "nnunet_demo") as settings:
        for visit in visits:
            push_and_wait(settings, *visit)
        with urlopen(f"{settings.orthanc_url}/oncoflow/studies/{visits[1][1]}") as answer:
            sr_uid = json.loads(answer.read())["outputs"]["longitudinal"]["sr_sop_instance_uid"]
        with urlopen(Request(f"{settings.orthanc_url}/tools/lookup", data=sr_uid.encode(), method="POST")) as answer:
            instance = json.loads(answer.read())[0]["ID"]
        with urlopen(f"{settings.orthanc_url}/instances/{instance}/file") as answer:
            measured = read_measurement_report(dcmread(BytesIO(answer.read())))
        for run in range(RUNS):
            artifacts = base / f"run-{run}"
            env = {**os.environ, "ONCOFLOW_URL": settings.orthanc_url, "FOLLOW_UP_UID": visits[1][1],
                   "BASELINE_UID": visits[0][1], "ARTIFACTS_DIR": str(artifacts),
                   "EXPECT_SR": json.dumps({k: measured[k] for k in ("volume_prior_cm3", "volume_cm3",
                                                                       "percent_change", "flag")})}
            result = subprocess.run(["node", "--test", "review-mode.test.mjs"], cwd=BROWSER_TESTS, env=env,
                                    capture_output=True, text=True, timeout=400)
            timing = json.loads((artifacts / "review-timing.json").read_text())
            runs.append({**timing, "browser_test_passed": result.returncode == 0})
    first_image = [r["first_image_ms"] / 1000 for r in runs if "first_image_ms" in r]
    panel = [r["panel_filled_ms"] / 1000 for r in runs if "panel_filled_ms" in r]
    result = {
        "benchmark": "viewer",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "study": {"shape": list(SHAPE), "studies_opened": 2, "browser": "apt chromium, headless, swiftshader"},
        "runs": runs,
        "first_image_median_s": round(statistics.median(first_image), 2) if first_image else None,
        "panel_filled_median_s": round(statistics.median(panel), 2) if panel else None,
        "goals": {"first_image_median_s": 10.0, "panel_filled_median_s": 10.0},
    }
    print(write_result("viewer", result))
    return 0 if all(r["browser_test_passed"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
