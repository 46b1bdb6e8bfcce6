"""Start and stop the embedded OncoFlow stack (Orthanc + inference worker, and Keycloak when login is on) by PID.

With ``ONCOFLOW_PIPELINE_WORKERS=N`` (and the PostgreSQL queue, ``ONCOFLOW_DATABASE_URL``) it starts N pipeline
workers too (``pipeline-1`` ... ``pipeline-N``), consumers of the shared job queue beside Orthanc's own.

Each service runs in its own process session, logs to ``$ONCOFLOW_HOME/log`` and
records its PID in ``$ONCOFLOW_HOME/run``. :func:`stop_service` only signals a PID
whose command line still is the service it started, so a stale PID file never
kills an unrelated process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from oncoflow.core.config import Settings
from oncoflow.report.signing_certificates import ensure_development_signer
from oncoflow.security.keycloak_admin import KeycloakError
from oncoflow.services import keycloak_server
from oncoflow.services.orthanc_config import orthanc_command, write_orthanc_configuration

SERVICES = ("orthanc", "worker")  # always; then the pipeline workers, see services()
PIPELINE_WORKER = "pipeline"  # pipeline-1, pipeline-2, ...
_CMDLINE_MARK = {"orthanc": "Orthanc", "worker": "oncoflow_inference",
                 PIPELINE_WORKER: "oncoflow.pipeline.pipeline_worker"}


def services(settings: Settings) -> tuple[str, ...]:
    """The services of this stack: Orthanc, the inference worker and ``ONCOFLOW_PIPELINE_WORKERS`` pipeline
    workers, plus any pipeline worker whose PID file is left from a start with more of them."""
    named = {f"{PIPELINE_WORKER}-{index}" for index in range(1, settings.pipeline_workers + 1)}
    if settings.run_dir.is_dir():
        named |= {path.stem for path in settings.run_dir.glob(f"{PIPELINE_WORKER}-*.pid")}
    return (*SERVICES, *sorted(named, key=lambda name: int(name.rsplit("-", 1)[1])))


def _kind(name: str) -> str:
    """``orthanc``, ``worker`` or ``pipeline`` (of ``pipeline-2``)."""
    return PIPELINE_WORKER if name.startswith(f"{PIPELINE_WORKER}-") else name


class StackError(RuntimeError):
    """A service did not start or answer in time; the message points at its log."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return settings.log_dir / f"{name}.log"


def _logs_of(settings: Settings, name: str) -> str:
    """Where a service writes: its output, and Orthanc's own log."""
    own = f" and {settings.orthanc_log_path}" if name == "orthanc" else ""
    return f"{_log_file(settings, name)}{own}"


def service_pid(settings: Settings, name: str) -> int | None:
    """The PID of a running service started by this stack, or ``None``."""
    try:
        pid = int(_pid_file(settings, name).read_text().strip())
        if _has_exited(pid):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    # A live process reads an empty command line for a moment around its exec: still ours.
    return pid if not cmdline or _CMDLINE_MARK[_kind(name)] in cmdline else None


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body), with status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def model_state(settings: Settings, model: str) -> tuple[str, str]:
    """``(state, reason)`` of a model from the worker's repository index (Triton's extension).

    The state is READY, LOADING or UNAVAILABLE, or UNREACHABLE when the worker does not answer.
    """
    request = urllib.request.Request(f"{settings.worker_http_url}/v2/repository/index", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            index = json.loads(response.read())
    except (OSError, ValueError) as exc:
        return "UNREACHABLE", str(exc)
    for entry in index:
        if entry.get("name") == model:
            return str(entry.get("state", "UNAVAILABLE")), str(entry.get("reason", ""))
    return "UNAVAILABLE", f"model {model} is not in the repository {settings.model_repository}"


def wait_model_settled(settings: Settings, model: str, timeout_s: float) -> tuple[str, str]:
    """Wait while the model is LOADING; returns its final ``(state, reason)``."""
    deadline = time.monotonic() + timeout_s
    state, reason = model_state(settings, model)
    while state in ("LOADING", "UNREACHABLE") and time.monotonic() < deadline:
        time.sleep(0.5)
        state, reason = model_state(settings, model)
    return state, reason


def health_url(settings: Settings, name: str) -> str | None:
    """The service's health route; ``None`` for a pipeline worker (no HTTP: see :func:`_pipeline_worker_problem`)."""
    if _kind(name) == PIPELINE_WORKER:
        return None
    if name == "orthanc":
        return f"{settings.orthanc_url}/oncoflow/health"
    return f"{settings.worker_http_url}/v2/health/ready"


def _spawn(settings: Settings, name: str, argv: list[str]) -> int:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(_log_file(settings, name), "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.home,
            env={**os.environ, "ONCOFLOW_HOME": str(settings.home), "PYTHONUNBUFFERED": "1"},
        )
    _pid_file(settings, name).write_text(f"{process.pid}\n")
    return process.pid


def ensure_report_signer(settings: Settings) -> bool:
    """Create the development CA and report-signing certificate under ``$ONCOFLOW_HOME/signing``
    when no signing key is configured and none exists yet; True when it created them."""
    if settings.signing_key is not None:
        return False  # configured: the site's own key and certificate
    return ensure_development_signer(settings.signing_dir, settings.report_institution)


def start_service(settings: Settings, name: str) -> int:
    """Start ``name`` unless it already runs; returns its PID (does not wait for health)."""
    pid = service_pid(settings, name)
    if pid is not None:
        return pid
    if name == "orthanc":
        ensure_report_signer(settings)
        config_path = write_orthanc_configuration(settings, settings.run_dir / "orthanc.json")
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        argv = orthanc_command(settings, config_path)  # its own log: settings.orthanc_log_path
    elif _kind(name) == PIPELINE_WORKER:
        argv = [sys.executable, "-m", "oncoflow.pipeline.pipeline_worker"]
    else:
        argv = [sys.executable, "-m", "oncoflow_inference"]
    return _spawn(settings, name, argv)


def wait_healthy(settings: Settings, name: str, timeout_s: float) -> None:
    """Poll the service's health route until it answers 200, or raise :class:`StackError`."""
    deadline = time.monotonic() + timeout_s
    last_problem = ""
    while time.monotonic() < deadline:
        if service_pid(settings, name) is None:
            raise StackError(f"{name} exited during start-up; see {_logs_of(settings, name)}")
        url = health_url(settings, name)
        if url is None:
            problem = _pipeline_worker_problem(settings)
            if problem is None:
                return
            last_problem = f" (its check: {problem})"
            time.sleep(1)
            continue
        status, body = http_get(url)
        if status == 200:
            return
        if status == 503 and name == "orthanc":  # up, but cannot work (e.g. the disk is full): say why now
            try:
                reason = json.loads(body).get("error", "")
            except ValueError:
                reason = body.decode(errors="replace")[:200]
            raise StackError(f"orthanc is up but not healthy: {reason}")
        time.sleep(0.2)
    raise StackError(f"{name} did not become healthy in {timeout_s:.0f} s{last_problem}; "
                     f"see {_logs_of(settings, name)}")


def _pipeline_worker_problem(settings: Settings) -> str | None:
    """``python -m oncoflow.pipeline.pipeline_worker --check``: ``None`` when the queue and Orthanc answer a
    pipeline worker, else what the check said."""
    env = {**os.environ, "ONCOFLOW_HOME": str(settings.home)}
    checked = subprocess.run([sys.executable, "-m", "oncoflow.pipeline.pipeline_worker", "--check"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    return None if checked.returncode == 0 else (checked.stdout + checked.stderr).strip()[-300:]


def _has_exited(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie: only then are its sockets closed and its ports free.

    (Its command line empties earlier, while the kernel is still tearing it down.)
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def stop_service(settings: Settings, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> bool:
    """Signal the service and wait for it to exit (SIGKILL after ``timeout_s``); True if it ran."""
    pid = service_pid(settings, name)
    if pid is None:
        _pid_file(settings, name).unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while not _has_exited(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)
    _pid_file(settings, name).unlink(missing_ok=True)
    return True


def start_login_server(settings: Settings) -> int | None:
    """Start the embedded Keycloak unless it runs (login on, no external issuer); its PID, or ``None``.

    Does not wait: :func:`set_up_login` waits for the realm and configures it for this stack.
    """
    auth = settings.auth
    if auth is None or auth.keycloak_port is None:
        return None
    pid = keycloak_server.running_pid(settings.home)
    if pid is None:
        pid = keycloak_server.start_keycloak(settings.home, auth.keycloak_port).pid
    return pid


def set_up_login(settings: Settings, timeout_s: float) -> dict[str, keycloak_server.DevelopmentLogin]:
    """Wait for the embedded Keycloak's realm, then set it up for this stack
    (:func:`oncoflow.services.keycloak_server.set_up_stack_realm`); returns the development users' logins."""
    auth = settings.auth
    if auth is None or auth.keycloak_port is None:
        return {}

    def running() -> bool:
        return keycloak_server.running_pid(settings.home) is not None

    try:
        keycloak_server.wait_realm_ready(auth.issuer, running, timeout_s, _log_file(settings, "keycloak"))
    except KeycloakError as exc:
        raise StackError(str(exc)) from exc
    admin_password = keycloak_server.admin_password_file(settings.home).read_text().strip()
    origins = [f"http://127.0.0.1:{settings.http_port}", f"http://localhost:{settings.http_port}"]
    return keycloak_server.set_up_stack_realm(auth.keycloak_url, admin_password, settings.home, origins, {
        keycloak_server.ASSIGNMENTS_CLIENT: settings.assignments_client_path,
        keycloak_server.PIPELINE_CLIENT: settings.pipeline_client_path})


def stop_login_server(settings: Settings) -> bool:
    """Stop the embedded Keycloak this home started; True if it ran."""
    return keycloak_server.stop_home(settings.home)


def start_stack(settings: Settings, timeout_s: float) -> dict[str, keycloak_server.DevelopmentLogin]:
    """Start Keycloak (when login is on), Orthanc and the worker, then the pipeline workers, and wait until
    each answers.

    Keycloak starts first (about 15 s) and Orthanc and the worker start meanwhile; the pipeline workers start
    once the realm is set up (with login on they need the service account's secret it writes). Returns the
    development users' logins (password and TOTP secret; empty with login off); raises :class:`StackError` with
    the reason when one fails.
    """
    start_login_server(settings)
    for name in SERVICES:
        start_service(settings, name)
    for name in SERVICES:
        wait_healthy(settings, name, timeout_s)
    logins = set_up_login(settings, timeout_s)
    pipeline_workers = [name for name in services(settings) if name not in SERVICES]
    for name in pipeline_workers:
        start_service(settings, name)
    for name in pipeline_workers:
        wait_healthy(settings, name, timeout_s)
    return logins


def stop_stack(settings: Settings) -> dict[str, bool]:
    """Stop what :func:`start_stack` started, by PID; for each service, whether it ran."""
    stopped = {name: stop_service(settings, name) for name in reversed(services(settings))}
    stopped["keycloak"] = stop_login_server(settings)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    result = []
    for name in services(settings):
        pid = service_pid(settings, name)
        url = health_url(settings, name)
        if url is None:  # a pipeline worker: alive is all status shows (its --check starts a Python each time)
            result.append(ServiceStatus(name, pid, pid is not None, pid is not None, "pipeline worker"))
            continue
        code, body = http_get(url) if pid else (0, b"")
        result.append(ServiceStatus(name, pid, pid is not None, code == 200, body.decode(errors="replace")[:200]))
    return result
