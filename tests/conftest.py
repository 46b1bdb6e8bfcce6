"""Shared fixtures: a real OncoFlow stack (Orthanc + worker, and Keycloak when login is on) on free ports,
and phantom studies.

The default stack runs with ``ONCOFLOW_AUTH=off`` (the pipeline's tests need no login); the security tests
start their own stack with login on (``running_stack(home, ONCOFLOW_AUTH="on", ...)``), whose helpers then
act as ``admin.dev`` with real Keycloak tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyotp
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from oncoflow.core.config import REPO_ROOT, Settings, load_settings
from oncoflow.core.volume import Volume
from oncoflow.phantoms.phantom_dicom import (
    SeriesInfo,
    StudyInfo,
    sequence_series_info,
    series_datasets,
    study_instance_uid,
    write_datasets,
)
from oncoflow.services import postgres_server
from oncoflow.services.keycloak_server import DEVELOPMENT_USERS, DevelopmentLogin
from oncoflow.services.stack import start_service, start_stack, stop_stack, wait_healthy

RESERVED_PORTS = {8042, 4242, 8000}


TEST_AET = "TESTSCU"  # the calling AE title of the tests' storescu: on the stack's allow-list
# The ONCOFLOW_* environment the test session was started with: every stack starts from it alone, so a stack
# started while another one runs (the session stack first used inside a module's own stack) never inherits
# that stack's settings (its panel, its fusion rule).
SESSION_ONCOFLOW_ENV = {k: v for k, v in os.environ.items() if k.startswith("ONCOFLOW_")}


def _replace_oncoflow_env(values: dict[str, str]) -> None:
    """Make ``values`` the whole ONCOFLOW_* environment of this process."""
    for key in [k for k in os.environ if k.startswith("ONCOFLOW_")]:
        del os.environ[key]
    os.environ.update(values)



def required_tool(name: str) -> str:
    """The path of the command-line tool ``name``; the test fails (never skips) when it is missing: every tool
    the tests use is installed by ``make test`` (scripts/bootstrap.sh), so a missing one is a broken set-up."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: make test installs it (scripts/bootstrap.sh)")
    return path


def free_port() -> int:
    """A loopback port free now. Under pytest-xdist (``make test``) each test process takes only ports from its own
    blocks of 64 (block number modulo the number of processes), so two processes never pick the same port before
    either binds it. (Blocks, not residues of the port: Linux hands out odd ports to ``bind(0)``.)"""
    processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    mine = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    for _ in range(10_000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RESERVED_PORTS and (port // 64) % processes == mine:
            return port
    raise RuntimeError(f"no free loopback port in test process {mine + 1} of {processes}'s share")


@dataclass
class TotpCodes:
    """TOTP codes (pyotp) of users whose base32 secrets are known, each from a 30-second window that no login of
    these tests has used yet: Keycloak refuses a code used twice (``otpPolicyCodeReusable`` false), so a second
    login in the same window waits for the next one."""

    secrets: dict[str, str]
    _windows: dict[str, int] = field(default_factory=dict)  # the last window whose code was used, per user

    def code(self, username: str) -> str:
        generator = pyotp.TOTP(self.secrets[username])
        window = int(time.time() // generator.interval)
        used = self._windows.get(username, -1)
        if window <= used:
            time.sleep((used + 1) * generator.interval - time.time() + 0.5)
            window = used + 1
        self._windows[username] = window
        return generator.at(window * generator.interval)

    def reserve_for_browser(self, username: str) -> None:
        """A browser computes its own code within the next 30 s: keep this window and the next from our logins."""
        self.code(username)
        self._windows[username] += 1


@dataclass
class Stack:
    """A running Orthanc + worker, with helpers to push studies and read results."""

    settings: Settings
    env: dict[str, str]
    logins: dict[str, DevelopmentLogin] = field(default_factory=dict)  # development users (login on)
    helper_user: str = "admin.dev"  # whom the helpers below act as when login is on
    _tokens: dict[str, tuple[float, str]] = field(default_factory=dict)
    totp_codes: TotpCodes = field(init=False)

    def __post_init__(self) -> None:
        self.totp_codes = TotpCodes({name: login.totp_secret for name, login in self.logins.items()})

    def browser_login_env(self, username: str) -> dict[str, str]:
        """What a browser test needs to sign ``username`` in (password, TOTP secret, whether Keycloak asks for a
        code); the next two 30-second windows are left to the browser."""
        self.totp_codes.reserve_for_browser(username)
        login = self.logins[username]
        roles = set(DEVELOPMENT_USERS[username]["roles"])
        privileged = bool(self.settings.auth and roles & self.settings.auth.otp_roles)
        return {"ONCOFLOW_USERNAME": username, "ONCOFLOW_PASSWORD": login.password,
                "ONCOFLOW_TOTP_SECRET": login.totp_secret, "ONCOFLOW_EXPECT_OTP": "yes" if privileged else "no"}

    def token(self, username: str) -> str:
        """A fresh access token of a development user (password grant of the test client ``oncoflow-cli``, with
        the user's TOTP code)."""
        cached = self._tokens.get(username)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        assert self.settings.auth is not None, "login is off on this stack"
        form = urllib.parse.urlencode({"grant_type": "password", "client_id": "oncoflow-cli", "username": username,
                                       "password": self.logins[username].password,
                                       "totp": self.totp_codes.code(username),
                                       "scope": "openid"}).encode()
        with urllib.request.urlopen(self.settings.auth.token_url, form,
                                    timeout=30) as response:
            answer = json.loads(response.read())
        self._tokens[username] = (time.monotonic() + answer["expires_in"] - 30, answer["access_token"])
        return answer["access_token"]

    def headers(self, username: str | None = None) -> dict[str, str]:
        """The Authorization header of ``username`` (default: the helper user); none when login is off."""
        if self.settings.auth is None:
            return {}
        return {"Authorization": f"Bearer {self.token(username or self.helper_user)}"}

    def request(self, method: str, path: str, body: bytes | None = None, username: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """``method path`` as ``username`` (default: the helper user); returns (status, body) for any status."""
        request = urllib.request.Request(f"{self.settings.orthanc_url}{path}", data=body, method=method,
                                         headers={**self.headers(username), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""  # nothing answered (as oncoflow.services.stack.http_get)

    def push(self, directory: Path, *storescu_options: str) -> None:
        """C-STORE every file under ``directory`` (storescu); ``storescu_options`` add to its command line, e.g.
        ``-xt`` to propose JPEG-LS lossless."""
        result = subprocess.run(
            ["storescu", "-aet", TEST_AET, "-aec", self.settings.aet, "+sd", "+r", "-nh", *storescu_options,
             "127.0.0.1", str(self.settings.dicom_port), str(directory)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, f"storescu of {directory} failed:\n{result.stdout}\n{result.stderr}"

    def get(self, path: str) -> tuple[int, Any]:
        status, body = self.request("GET", path)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def get_bytes(self, path: str) -> bytes:
        request = urllib.request.Request(f"{self.settings.orthanc_url}{path}", headers=self.headers())
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def job(self, study_uid: str) -> dict[str, Any] | None:
        status, body = self.get(f"/oncoflow/studies/{study_uid}")
        return body if status == 200 else None

    def wait_job(self, study_uid: str, states: tuple[str, ...] = ("done", "failed"), timeout_s: float = 120,
                 min_job_id: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        job = None
        while time.monotonic() < deadline:
            job = self.job(study_uid)
            if job and job["state"] in states and job["job_id"] >= min_job_id:
                return job
            time.sleep(0.25)
        raise AssertionError(f"job of {study_uid} did not reach {states} in {timeout_s} s; last: {job}")

    def wait_event(self, study_uid: str, text: str, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the study's latest job records an event containing ``text``; returns the job."""
        deadline = time.monotonic() + timeout_s
        job = None
        while time.monotonic() < deadline:
            job = self.job(study_uid)
            if job and any(text in e["message"] for e in job["events"]):
                return job
            time.sleep(0.25)
        raise AssertionError(f"no event '{text}' for {study_uid} in {timeout_s} s; last: {job}")

    def restart(self, name: str) -> None:
        _replace_oncoflow_env(self.env)  # the plugin and the worker read their settings from the environment
        start_service(self.settings, name)
        wait_healthy(self.settings, name, 120)

    def studies_with_uid(self, study_uid: str) -> list[str]:
        """Orthanc's IDs of the studies with this StudyInstanceUID (``/tools/lookup``)."""
        request = urllib.request.Request(
            f"{self.settings.orthanc_url}/tools/lookup", data=study_uid.encode(), method="POST", headers=self.headers()
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return [m["ID"] for m in json.loads(response.read()) if m["Type"] == "Study"]

    def study_id(self, study_uid: str) -> str:
        """Orthanc's ID of the study (fails the test when Orthanc does not hold it)."""
        found = self.studies_with_uid(study_uid)
        assert len(found) == 1, f"Orthanc holds {len(found)} studies with UID {study_uid}"
        return found[0]

    def seg_series(self, study_uid: str) -> list[dict[str, Any]]:
        """The SEG series stored in the study."""
        _, series = self.get(f"/studies/{self.study_id(study_uid)}/series")
        return [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]


@contextmanager
def running_stack(home: Path, **extra_env: str) -> Iterator[Stack]:
    """Start Orthanc + worker on free ports with ``extra_env`` (e.g. another panel), stop them after.

    Login is off unless ``extra_env`` sets ``ONCOFLOW_AUTH="on"``: then the stack's own Keycloak starts on a
    free port too, with the development users.
    """
    if shutil.which("storescu") is None or not Path("/usr/sbin/Orthanc").exists():
        pytest.fail("Orthanc and dcmtk must be installed (make test installs them)")
    env = {
        "ONCOFLOW_HOME": str(home),
        "ONCOFLOW_HTTP_PORT": str(free_port()),
        "ONCOFLOW_DICOM_PORT": str(free_port()),
        "ONCOFLOW_WORKER_PORT": str(free_port()),
        "ONCOFLOW_STABLE_AGE_S": "2",
        "ONCOFLOW_MAX_VOXELS": str(64 * 64 * 200),
        "ONCOFLOW_JOB_MAX_ATTEMPTS": "30",
        "ONCOFLOW_STORE_PEERS": f"{TEST_AET}@127.0.0.1,STORESCU@127.0.0.1",
        "ONCOFLOW_AUTH": "off",
        "ONCOFLOW_KEYCLOAK_PORT": str(free_port()),
        "ONCOFLOW_MIN_FREE_MB": "64",
        **extra_env,
    }
    saved = {k: v for k, v in os.environ.items() if k.startswith("ONCOFLOW_")}
    session = {k: v for k, v in SESSION_ONCOFLOW_ENV.items() if k not in ("ONCOFLOW_PANEL", "ONCOFLOW_MODEL_WEIGHTS")}
    env = {**session, **env}  # the panel's defaults unless extra_env says otherwise
    _replace_oncoflow_env(env)
    settings = load_settings()
    try:
        yield Stack(settings, env, start_stack(settings, 180))
    finally:
        stop_stack(settings)
        _replace_oncoflow_env(saved)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The default stack: the default panel (three demo nnU-Nets; SAM2 and MedGemma without weights)."""
    with running_stack(tmp_path_factory.mktemp("oncoflow-home")) as running:
        yield running


@contextmanager
def postgres_cluster() -> Iterator[postgres_server.PostgresCluster]:
    """A real PostgreSQL (Debian's server, a cluster of our own) on a free loopback port, removed after.

    Its folder is a fresh ``/tmp/oncoflow-pg-*`` (mode 0755 parent): PostgreSQL runs as Debian's ``postgres``
    user when the tests run as root, and pytest's own temporary folders are closed to other users.
    """
    try:
        postgres_server.server_bin_dir()
    except postgres_server.PostgresError as exc:
        pytest.fail(f"{exc} (make test installs it)")
    parent = Path(tempfile.mkdtemp(prefix="oncoflow-pg-", dir="/tmp"))
    parent.chmod(0o755)
    cluster = postgres_server.PostgresCluster(parent / "cluster", free_port())
    postgres_server.start(cluster)
    try:
        yield cluster
    finally:
        postgres_server.remove(cluster)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_server.PostgresCluster]:
    """The session's PostgreSQL (each test takes a fresh database in it: :func:`fresh_database`)."""
    with postgres_cluster() as cluster:
        yield cluster


def fresh_database(cluster: postgres_server.PostgresCluster, prefix: str) -> str:
    """A new, empty database in ``cluster`` (a unique name from ``prefix``); returns its URL."""
    return postgres_server.ensure_database(cluster, f"{prefix}_{time.time_ns()}")


def unique_study(name: str) -> StudyInfo:
    uid = generate_uid(entropy_srcs=[name, str(time.time_ns())])
    return StudyInfo(patient_id=f"PAT-{name}"[:64], patient_name=f"Test^{name}", study_instance_uid=uid,
                     accession_number=name[:16])


def write_series(directory: Path, volume: Volume, study: StudyInfo, **series: Any) -> list[Dataset]:
    # keyed by the study's effective UID: two visits written without an explicit StudyInstanceUID must not
    # share a SeriesInstanceUID (a WADO-RS server then cannot tell their series apart)
    info = SeriesInfo(series_instance_uid=generate_uid(entropy_srcs=[study_instance_uid(study), str(series)]),
                      **series)
    datasets = series_datasets(volume, study, info)
    write_datasets(datasets, directory)
    return datasets


def write_sequences(directory: Path, images: dict[str, Volume], study: StudyInfo, shared_frame: bool = True,
                    **changes: dict[str, Any]) -> dict[str, list[Dataset]]:
    """Write one series per sequence (``t1``, ``t1c``, ``t2``, ``flair``) of one study, each in its own folder
    under ``directory``, tagged as a scanner tags it (:data:`oncoflow.phantoms.phantom_dicom.SEQUENCE_SERIES`);
    they share one FrameOfReferenceUID unless ``shared_frame`` is false. ``changes[kind]`` overrides that
    sequence's series attributes (e.g. a FrameOfReferenceUID of its own)."""
    uid = study_instance_uid(study)
    frame = generate_uid(entropy_srcs=[uid, "frame"]) if shared_frame else None
    written = {}
    for kind, volume in images.items():
        series_uid = generate_uid(entropy_srcs=[uid, kind, str(changes.get(kind))])
        overrides = dict(changes.get(kind, {}))
        info = sequence_series_info(kind, series_uid, overrides.pop("frame_of_reference_uid", frame), **overrides)
        written[kind] = series_datasets(volume, study, info)
        write_datasets(written[kind], directory / kind)
    return written


def axial_volume(voxels: np.ndarray, spacing_mm: tuple[float, float, float] = (3.0, 2.0, 2.0)) -> Volume:
    return Volume(voxels.astype(np.float32), spacing_mm, (-64.0, -64.0, -40.0), (1.0, 0.0, 0.0),
                  (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


BROWSER_TESTS = REPO_ROOT / "ohif-extension" / "browser-tests"


def run_browser_test(script: str, env: dict[str, str], artifacts: Path, timeout_s: float) -> None:
    """Run ``ohif-extension/browser-tests/<script>`` (node --test, playwright-core on apt's chromium) with ``env``
    added to the environment; fails the test unless its one test passed (artifacts named in the message)."""
    if not Path("/usr/bin/chromium").exists() or shutil.which("node") is None:
        pytest.fail("chromium (apt) and node are needed: make test installs them (scripts/bootstrap.sh)")
    if not (BROWSER_TESTS / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"playwright-core is not installed: run `npm ci` in {BROWSER_TESTS} (scripts/bootstrap.sh does)")
    result = subprocess.run(["node", "--test", script], cwd=BROWSER_TESTS, env={**os.environ, **env,
                            "ARTIFACTS_DIR": str(artifacts)}, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"browser test failed (artifacts in {artifacts}):\n{result.stdout}\n{result.stderr}"
    assert "# pass 1" in result.stdout and "# fail 0" in result.stdout, result.stdout
