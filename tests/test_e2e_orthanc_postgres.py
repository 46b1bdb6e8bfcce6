"""Two real Orthanc processes sharing one PostgreSQL index (the postgresql plugin) and one DICOM file storage.

Each Orthanc has its own home, ports and log, and loads OncoFlow's Python plugin too (its health route must
answer on a PostgreSQL index). No inference worker runs: a study that becomes stable on Orthanc A gets a job
there that waits for the worker and retries; nothing here waits for jobs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oncoflow.core.config import Settings, load_settings
from oncoflow.phantoms.tumour_phantom import make_phantom
from oncoflow.services.orthanc_config import write_orthanc_configuration
from oncoflow.services.stack import http_get

from .conftest import TEST_AET, free_port, fresh_database, unique_study, write_series

pytestmark = pytest.mark.e2e

ORTHANC = "/usr/sbin/Orthanc"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0  # SIGTERM, then SIGKILL
SLICES = 16


@dataclass
class OrthancProcess:
    """One Orthanc started as ``/usr/sbin/Orthanc <home>/run/orthanc.json``, logging to ``<home>/log/orthanc.log``."""

    name: str
    env: dict[str, str]  # the ONCOFLOW_* variables of this Orthanc (its plugin reads them too)
    settings: Settings = field(init=False)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.settings = load_settings(self.env)

    @property
    def url(self) -> str:
        return self.settings.orthanc_url

    @property
    def log(self) -> Path:
        return self.settings.log_dir / "orthanc.log"

    def start(self) -> None:
        """Write the generated configuration and start Orthanc (does not wait)."""
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        config_path = write_orthanc_configuration(self.settings, self.settings.run_dir / "orthanc.json")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ONCOFLOW_")}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([ORTHANC, str(config_path)], stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.settings.home, start_new_session=True,
                                            env={**inherited, **self.env, "PYTHONUNBUFFERED": "1"})

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll OncoFlow's health route until it answers 200 (the plugin is up on the PostgreSQL index)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, \
                f"Orthanc {self.name} exited ({self.process and self.process.returncode}); see {self.log}"
            if http_get(f"{self.url}/oncoflow/health")[0] == 200:
                return
            time.sleep(0.25)
        raise AssertionError(f"Orthanc {self.name} not healthy in {timeout_s:.0f} s; see {self.log}")

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL after :data:`STOP_TIMEOUT_S` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        """``method path`` on this Orthanc's REST API; (status, body), status 0 when nothing answered."""
        if method == "GET":
            return http_get(f"{self.url}{path}", timeout_s=30)
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path} on Orthanc {self.name}: {status} {body[:200]!r}; see {self.log}"
        return json.loads(body)

    def study_ids(self, study_uid: str) -> list[str]:
        """Orthanc's IDs of the studies with this StudyInstanceUID."""
        studies = self.get_json("/studies?expand")
        return [s["ID"] for s in studies if s["MainDicomTags"].get("StudyInstanceUID") == study_uid]

    def instances(self, study_id: str) -> list[str]:
        return sorted(i["ID"] for i in self.get_json(f"/studies/{study_id}/instances"))

    def push(self, directory: Path) -> None:
        """C-STORE every file of ``directory`` with dcmtk's storescu."""
        result = subprocess.run(["storescu", "-aet", TEST_AET, "-aec", self.settings.aet, "+sd", "+r", "-nh",
                                 "127.0.0.1", str(self.settings.dicom_port), str(directory)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"storescu to Orthanc {self.name} failed: {result.stderr}; see {self.log}"


def _orthanc_env(home: Path, index_url: str, storage: Path) -> dict[str, str]:
    return {
        "ONCOFLOW_HOME": str(home),
        "ONCOFLOW_HTTP_PORT": str(free_port()),
        "ONCOFLOW_DICOM_PORT": str(free_port()),
        "ONCOFLOW_WORKER_PORT": str(free_port()),  # nothing listens there
        "ONCOFLOW_AUTH": "off",
        "ONCOFLOW_ORTHANC_INDEX_URL": index_url,
        "ONCOFLOW_ORTHANC_STORAGE": str(storage),
        "ONCOFLOW_STORE_PEERS": f"{TEST_AET}@127.0.0.1,STORESCU@127.0.0.1",
        "ONCOFLOW_STABLE_AGE_S": "2",
        "ONCOFLOW_MIN_FREE_MB": "64",
        "ONCOFLOW_PANEL": "nnunet_demo",
        "ONCOFLOW_REGISTRATION": "sitk",  # no 8 s itk warm-up import in each plugin: nothing is registered here
    }


def _phantom_study(directory: Path, name: str, seed: int) -> str:
    """Write a 16-slice phantom study under ``directory``; its StudyInstanceUID."""
    study = unique_study(name)
    write_series(directory, make_phantom(seed, shape=(SLICES, 32, 32)).volume, study)
    return study.study_instance_uid


def _the_study(orthanc: OrthancProcess, study_uid: str) -> str:
    found = orthanc.study_ids(study_uid)
    assert len(found) == 1, f"Orthanc {orthanc.name} lists {len(found)} studies with UID {study_uid}; see {orthanc.log}"
    return found[0]


def _logs(*orthancs: OrthancProcess) -> str:
    return ", ".join(str(o.log) for o in orthancs)


def test_two_orthancs_share_one_postgresql_index_and_storage(postgres, tmp_path: Path) -> None:
    index_url = fresh_database(postgres, "orthanc_index")
    storage = tmp_path / "shared-storage"
    a = OrthancProcess("A", _orthanc_env(tmp_path / "home-a", index_url, storage))
    b = OrthancProcess("B", _orthanc_env(tmp_path / "home-b", index_url, storage))
    first_uid = _phantom_study(tmp_path / "study-1", "pg-shared-1", 11)
    second_uid = _phantom_study(tmp_path / "study-2", "pg-shared-2", 12)
    try:
        a.start()
        b.start()  # at once, on an empty database: the plugin creates the schema once
        a.wait_healthy()
        b.wait_healthy()
        for orthanc in (a, b):
            backend = orthanc.get_json("/system")["DatabaseBackendPlugin"] or ""
            assert "PostgreSQLIndex" in backend, f"Orthanc {orthanc.name} index: {backend!r}; see {orthanc.log}"

        # pushed to A, listed by B with the same ID and instances, the same bytes from both
        a.push(tmp_path / "study-1")
        first = _the_study(a, first_uid)
        assert _the_study(b, first_uid) == first
        instances = a.instances(first)
        assert len(instances) == SLICES and b.instances(first) == instances, _logs(a, b)
        status_a, file_a = a.request("GET", f"/instances/{instances[0]}/file")
        status_b, file_b = b.request("GET", f"/instances/{instances[0]}/file")
        assert status_a == status_b == 200 and file_a[128:132] == b"DICM", _logs(a, b)
        assert file_a == file_b, f"instance file differs between A and B; see {_logs(a, b)}"

        # pushed to B, then the first study deleted through B: gone from A too
        b.push(tmp_path / "study-2")
        second = _the_study(b, second_uid)
        assert b.request("DELETE", f"/studies/{first}")[0] == 200, _logs(b)
        assert a.study_ids(first_uid) == [] and a.request("GET", f"/studies/{first}")[0] == 404, _logs(a, b)

        # A restarted still sees what was pushed to B
        a.stop()
        a.start()
        a.wait_healthy()
        assert _the_study(a, second_uid) == second and len(a.instances(second)) == SLICES, _logs(a, b)

        statistics = [o.get_json("/statistics") for o in (a, b)]
        assert statistics[0] == statistics[1], f"/statistics differ: {statistics}; see {_logs(a, b)}"
        assert (statistics[0]["CountStudies"], statistics[0]["CountInstances"]) == (1, SLICES), statistics
    finally:
        for orthanc in (a, b):
            orthanc.stop()


def test_a_study_split_across_two_orthancs_makes_one_job_on_the_shared_queue(postgres, tmp_path: Path) -> None:
    """Half the slices C-STOREd to A, half to B: both see the study become stable (two StableStudy changes in
    the shared index), and the shared queue holds one job for it, also after a restart's catch-up."""
    from oncoflow.pipeline.job_store import JobStore

    index_url, queue_url = fresh_database(postgres, "orthanc_index"), fresh_database(postgres, "oncoflow_jobs")
    storage = tmp_path / "shared-storage"
    # no consumer anywhere: the job stays queued, so nothing but the triggers can add or remove jobs
    queue = {"ONCOFLOW_DATABASE_URL": queue_url, "ONCOFLOW_JOB_CONSUMER": "off"}
    a = OrthancProcess("A", {**_orthanc_env(tmp_path / "home-a", index_url, storage), **queue})
    b = OrthancProcess("B", {**_orthanc_env(tmp_path / "home-b", index_url, storage), **queue})
    uid = _phantom_study(tmp_path / "study", "pg-split", 13)
    for index, path in enumerate(sorted((tmp_path / "study").rglob("*.dcm"))):
        half = tmp_path / ("half-a" if index % 2 == 0 else "half-b")
        half.mkdir(exist_ok=True)
        path.rename(half / path.name)
    jobs = JobStore(queue_url)
    try:
        a.start()
        b.start()
        a.wait_healthy()
        b.wait_healthy()
        a.push(tmp_path / "half-a")
        b.push(tmp_path / "half-b")
        study_id = _the_study(a, uid)
        deadline = time.monotonic() + 60
        stable: list[dict[str, Any]] = []
        while len(stable) < 2 and time.monotonic() < deadline:
            changes = a.get_json("/changes?limit=10000")["Changes"]
            stable = [c for c in changes if c["ChangeType"] == "StableStudy" and c["ID"] == study_id]
            time.sleep(0.5)
        assert len(stable) == 2, f"StableStudy fired {len(stable)} time(s), expected once in each; {_logs(a, b)}"
        time.sleep(2)  # both plugins have handled their change by now
        history = jobs.history(study_id)
        assert [(j.state, j.trigger) for j in history] == [("queued", "stable-study")], history

        b.stop()  # a restart catches up from /changes under the shared lock: nothing new to queue
        b.start()
        b.wait_healthy()
        time.sleep(2)
        assert len(jobs.history(study_id)) == 1, jobs.history(study_id)
        assert len(a.instances(study_id)) == SLICES
    finally:
        jobs.close()
        for orthanc in (a, b):
            orthanc.stop()
