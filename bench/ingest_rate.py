"""``make bench`` (ingest part): C-STORE instances per second with the OncoFlow plugin loaded ÷ without it.

Two Orthanc configurations from the same :func:`oncoflow.services.orthanc_config.orthanc_configuration`, differing only
in the plugin: *with* loads orthanc-python + the OncoFlow plugin + DICOMweb (what ``make up`` runs), *without*
loads DICOMweb alone. Each run starts Orthanc on an empty home, pushes the same three phantom studies
(3 x 180 slices of 256 x 256, 16-bit) with one ``storescu`` association and times it from the first byte to
storescu's exit. StableAge is long (600 s), so no analysis starts during the push: what is measured is what
the plugin adds per instance (its change callback reads each C-STORE instance's Origin and file for the
upload guard). Runs alternate without / with, ``RUNS`` of each, and the ratio of the medians is reported
(goal >= 0.95). Writes ``bench/results/ingest-<UTC>.json`` and ``ingest-latest.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_results import write_result
from pydicom.uid import generate_uid
from turnaround import free_port

RUNS = 3
STUDIES = 3
SETTLE_S = 25.0  # after Orthanc answers, in both modes: the plugin imports itk (~8 s) and loads the notes model
SHAPE = (180, 256, 256)


def write_studies(directory: Path) -> int:
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets
    from oncoflow.phantoms.tumour_phantom import make_phantom

    count = 0
    for index in range(STUDIES):
        study = StudyInfo(patient_id=f"INGEST-{index}", study_instance_uid=str(generate_uid()))
        datasets = series_datasets(make_phantom(8800 + index, shape=SHAPE).volume, study,
                                   SeriesInfo(str(generate_uid())))
        write_datasets(datasets, directory / str(index))
        count += len(datasets)
    return count


def one_run(base: Path, studies: Path, with_plugin: bool, run: int) -> float:
    from oncoflow.core.config import load_settings
    from oncoflow.services.orthanc_config import orthanc_configuration

    home = base / f"{'with' if with_plugin else 'without'}-{run}"
    env = {**os.environ, "ONCOFLOW_HOME": str(home), "ONCOFLOW_HTTP_PORT": str(free_port()),
           "ONCOFLOW_DICOM_PORT": str(free_port()), "ONCOFLOW_WORKER_PORT": str(free_port()),
           "ONCOFLOW_STABLE_AGE_S": "600", "ONCOFLOW_AUTH": "off"}
    settings = load_settings(env)
    configuration: dict[str, Any] = orthanc_configuration(settings)
    if not with_plugin:
        configuration["Plugins"] = [str(settings.orthanc_plugin_dir / "libOrthancDicomWeb.so")]
        configuration.pop("PythonScript")
    home.mkdir(parents=True)
    settings.orthanc_storage_dir.mkdir(parents=True)
    config_path = home / "orthanc.json"
    config_path.write_text(json.dumps(configuration))
    with open(home / "orthanc.log", "wb") as log:
        orthanc = subprocess.Popen(["/usr/sbin/Orthanc", str(config_path)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for(f"{settings.orthanc_url}/system")
        started = time.perf_counter()
        subprocess.run(["storescu", "-aec", settings.aet, "+sd", "+r", "-nh", "127.0.0.1", str(settings.dicom_port),
                        str(studies)], check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        orthanc.terminate()
        orthanc.wait(timeout=60)


def wait_for(url: str, timeout_s: float = 120) -> None:
    from oncoflow.services.stack import http_get

    deadline = time.monotonic() + timeout_s
    while http_get(url)[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer in {timeout_s} s")
        time.sleep(0.2)
    time.sleep(SETTLE_S)  # the plugin's start-up threads (elastix import, embedding model) finish before timing


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-ingest-"))
    instances = write_studies(base / "studies")
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    for run in range(RUNS):
        for mode in ("without", "with"):
            seconds[mode].append(one_run(base, base / "studies", mode == "with", run))
    rates = {mode: [instances / s for s in values] for mode, values in seconds.items()}
    result = {
        "what": "C-STORE ingest, one storescu association, empty Orthanc, same files; with / without the plugin",
        "instances_per_run": instances,
        "studies_per_run": STUDIES,
        "shape": list(SHAPE),
        "seconds": seconds,
        "instances_per_s": {mode: statistics.median(values) for mode, values in rates.items()},
        "ratio_with_over_without": statistics.median(rates["with"]) / statistics.median(rates["without"]),
        "goal": ">= 0.95",
    }
    print(write_result("ingest", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
