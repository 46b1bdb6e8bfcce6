"""Fetch, start and stop a real Keycloak server for OncoFlow's ``oncoflow`` realm.

The distribution comes from Maven Central (``org.keycloak:keycloak-quarkus-dist``) through ``mvn``, which
verifies the artifact against the ``.sha1`` file published next to it (Maven's default checksum policy
is *warn*, so :func:`ensure_keycloak` passes ``--strict-checksums`` to make a mismatch fatal, and compares
the tarball with the ``.sha1`` that Maven stored in ``~/.m2`` once more itself). It is unpacked into the
shared cache as ``<cache>/keycloak-<version>/`` and *built once there* (``kc.sh build --db=dev-file
--health-enabled=true``), so every start is ``kc.sh start --optimized``: no re-augmentation, and nothing
under the cache is written at run time.

Each OncoFlow home gets its own thin Keycloak home, ``<home>/keycloak/``: a copy of ``bin/kc.sh`` and
``conf/``, symlinks to the cache's ``lib/``, ``themes/`` and ``providers/``, and a real ``data/`` directory
(H2 database, transaction logs, ``import/``). ``kc.sh`` derives ``kc.home.dir`` from its own location, so
Keycloak's data of one stack never touches another's, while the 150 MB of jars are shared.

Command line::

    python -m oncoflow.services.keycloak_server fetch [--cache DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oncoflow.core.config import REPO_ROOT
from oncoflow.security.keycloak_admin import (
    ADMIN_USERNAME,
    REALM,
    TOTP_DIGITS,
    TOTP_PERIOD_S,
    AdminClient,
    KeycloakError,
)
from oncoflow.services.shared_cache import cache_lock, default_cache_dir

KEYCLOAK_VERSION = "26.4.7"
ARTIFACT = "org.keycloak:keycloak-quarkus-dist"
REALM_FILE = REPO_ROOT / "keycloak" / "oncoflow-realm.json"
MARKER_NAME = ".oncoflow-keycloak.json"
# Build-time options baked into the cached distribution; every start uses ``--optimized``.
BUILD_OPTIONS = ("--db=dev-file", "--health-enabled=true")
HEAP_OPTS = "-Xms256m -Xmx1g"
DEV_USERS_FILE = "dev-users.json"

# Development users, one per role; created through the admin REST API with random passwords.
DEVELOPMENT_USERS: dict[str, dict[str, Any]] = {
    "admin.dev": {"roles": ["admin"], "assigned_patients": []},
    "radiologist.dev": {"roles": ["radiologist"], "assigned_patients": ["ONCO-LONG-00001", "PAT-A"]},
    "doctor.dev": {"roles": ["doctor"], "assigned_patients": ["ONCO-LONG-00001"]},
    "clinician.dev": {"roles": ["clinician"], "assigned_patients": ["PAT-A"]},
}


def distribution_dir(cache_dir: Path | None = None, version: str = KEYCLOAK_VERSION) -> Path:
    """Where the built distribution of ``version`` lives in the cache (present or not)."""
    return (cache_dir or default_cache_dir()) / f"keycloak-{version}"


def _marker_payload(version: str) -> dict[str, Any]:
    return {"artifact": f"{ARTIFACT}:{version}:tar.gz", "version": version, "build_options": list(BUILD_OPTIONS)}


def is_ready(root: Path, version: str = KEYCLOAK_VERSION) -> bool:
    """True when ``root`` holds a distribution unpacked and built by the current recipe."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and {k: marker.get(k) for k in _marker_payload(version)} == _marker_payload(
        version)


def _maven_fetch(version: str, scratch: Path) -> Path:
    """Resolve the tar.gz through Maven (checksums strict) and return the file in the local repository."""
    coordinates = f"{ARTIFACT}:{version}:tar.gz"
    result = subprocess.run(
        ["mvn", "-q", "-B", "--strict-checksums", "dependency:copy", f"-Dartifact={coordinates}",
         f"-DoutputDirectory={scratch}", "-Dmdep.useBaseVersion=true"],
        capture_output=True, text=True, timeout=1800, cwd=scratch,
    )
    if result.returncode != 0:
        raise KeycloakError(f"mvn could not fetch {coordinates}: {(result.stdout + result.stderr)[-2000:]}")
    tarball = scratch / f"keycloak-quarkus-dist-{version}.tar.gz"
    if not tarball.is_file():
        raise KeycloakError(f"mvn reported success but {tarball.name} is missing")
    _check_sha1(tarball, version)
    return tarball


def _check_sha1(tarball: Path, version: str) -> None:
    """Compare ``tarball`` with the ``.sha1`` Maven downloaded from Central into the local repository."""
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL") or "~/.m2/repository").expanduser()
    sha1_file = repo / "org/keycloak/keycloak-quarkus-dist" / version / f"keycloak-quarkus-dist-{version}.tar.gz.sha1"
    try:
        expected = sha1_file.read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return  # Maven already verified it (--strict-checksums); the .sha1 is not always kept locally
    digest = hashlib.sha1(usedforsecurity=False)
    with tarball.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise KeycloakError(f"{tarball.name}: SHA-1 {digest.hexdigest()} differs from Maven Central's {expected}")


def _unpack(tarball: Path, destination: Path, version: str) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["tar", "-xzf", str(tarball), "-C", str(destination), "--no-same-owner",
                             "--no-same-permissions"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise KeycloakError(f"could not unpack {tarball.name}: {result.stderr[-1000:]}")
    root = destination / f"keycloak-{version}"
    if not (root / "bin" / "kc.sh").is_file():
        raise KeycloakError(f"{tarball.name} does not hold keycloak-{version}/bin/kc.sh")
    return root


def _build(root: Path) -> None:
    """Run Keycloak's augmentation once, so starts can use ``--optimized`` and never write under ``lib/``."""
    result = subprocess.run([str(root / "bin" / "kc.sh"), "build", *BUILD_OPTIONS], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "JAVA_OPTS_KC_HEAP": HEAP_OPTS})
    if result.returncode != 0:
        raise KeycloakError(f"kc.sh build failed: {(result.stdout + result.stderr)[-2000:]}")


def ensure_keycloak(cache_dir: Path | None = None, version: str = KEYCLOAK_VERSION) -> Path:
    """The built Keycloak distribution in the cache; fetched, verified, unpacked and built first when missing.

    Idempotent and quick (one marker read) when present; concurrent callers serialise on a lock file, and the
    tree appears atomically (a rename) with its marker inside.
    """
    cache_dir = cache_dir or default_cache_dir()
    target = distribution_dir(cache_dir, version)
    if is_ready(target, version):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache_dir / ".keycloak-fetch.lock"):
        if is_ready(target, version):
            return target
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".keycloak-fetch-") as scratch_name:
            scratch = Path(scratch_name)
            tarball = _maven_fetch(version, scratch)
            root = _unpack(tarball, scratch / "tree", version)
            _build(root)
            shutil.rmtree(root / "data", ignore_errors=True)  # the build leaves no state that homes need
            (root / MARKER_NAME).write_text(json.dumps(_marker_payload(version), indent=2) + "\n")
            if target.exists():
                old = target.with_name(f".{target.name}.old-{os.getpid()}")
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            root.rename(target)
    return target


def keycloak_home(home: Path) -> Path:
    """The per-stack Keycloak home under an OncoFlow home."""
    return home / "keycloak"


def admin_password_file(home: Path) -> Path:
    """The bootstrap admin's password of the home's Keycloak (mode 0600)."""
    return keycloak_home(home) / "admin-password"


def pid_file(home: Path) -> Path:
    """Where :func:`start_keycloak` records the PID of the home's Keycloak."""
    return home / "run" / "keycloak.pid"


def prepare_home(distribution: Path, home: Path, realm_file: Path = REALM_FILE) -> Path:
    """Lay out ``<home>/keycloak/`` (see the module docstring) and put ``realm_file`` into its ``data/import/``."""
    kc_home = keycloak_home(home)
    (kc_home / "bin").mkdir(parents=True, exist_ok=True)
    (kc_home / "data" / "import").mkdir(parents=True, exist_ok=True)
    shutil.copy2(distribution / "bin" / "kc.sh", kc_home / "bin" / "kc.sh")
    if not (kc_home / "conf").is_dir():
        shutil.copytree(distribution / "conf", kc_home / "conf")
    for name in ("lib", "themes", "providers"):
        link = kc_home / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == (distribution / name).resolve():
                continue
            link.unlink()
        link.symlink_to(distribution / name)
    shutil.copy2(realm_file, kc_home / "data" / "import" / f"{REALM}-realm.json")
    return kc_home


@dataclass
class KeycloakProcess:
    """A Keycloak started by :func:`start_keycloak`; ``pid`` is ``kc.sh``, the leader of its own process group."""

    home: Path
    pid: int
    http_port: int
    management_port: int
    admin_password: str
    log_file: Path
    pid_file: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/realms/{REALM}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _alive(self.pid)

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Poll the realm's discovery document until it answers 200; returns the seconds waited."""
        return wait_realm_ready(self.issuer, self.running, timeout_s, self.log_file)

    def rss_bytes(self) -> int:
        """Resident memory of ``kc.sh`` and its Java child together (0 when gone)."""
        total = 0
        for pid in _process_group(self.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return total

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``timeout_s``; removes the PID file."""
        stop_pid(self.pid, timeout_s)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()


def wait_realm_ready(issuer: str, running: Callable[[], bool], timeout_s: float, log_file: Path) -> float:
    """Poll ``issuer``'s discovery document until it answers 200 (while ``running()``); the seconds waited."""
    started = time.monotonic()
    url = f"{issuer}/.well-known/openid-configuration"
    while True:
        if not running():
            raise KeycloakError(f"Keycloak exited during start-up; see {log_file}")
        with contextlib.suppress(OSError, urllib.error.URLError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise KeycloakError(f"Keycloak did not answer {url} within {timeout_s:.0f} s; see {log_file}")
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _process_group(pgid: int) -> list[int]:
    """Live (non-zombie) members of the process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie (not yet reaped) has ended
                    members.append(int(entry.name))
    return members


def _is_keycloak(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "kc.sh" in cmdline or "keycloak" in cmdline


def stop_pid(pid: int, timeout_s: float = 20.0) -> None:
    """Stop the Keycloak process group led by ``pid`` (only when it still is Keycloak)."""
    if not _alive(pid) or not _is_keycloak(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _process_group(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_home(home: Path, timeout_s: float = 20.0) -> bool:
    """Stop the Keycloak this home started and remove its PID file; True if it ran."""
    pid = running_pid(home)
    if pid is not None:
        stop_pid(pid, timeout_s)
    pid_file(home).unlink(missing_ok=True)
    return pid is not None


def running_pid(home: Path) -> int | None:
    """The PID of the Keycloak this home started, when it still runs."""
    try:
        pid = int(pid_file(home).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_keycloak(pid) else None


def start_keycloak(home: Path, http_port: int, realm_file: Path = REALM_FILE, admin_password: str | None = None,
                   management_port: int | None = None, cache_dir: Path | None = None) -> KeycloakProcess:
    """Start Keycloak for the OncoFlow home ``home`` on 127.0.0.1:``http_port`` (does not wait: see ``wait_ready``).

    The realm file is imported at start (``--import-realm``; an existing realm is kept as it is). The bootstrap
    admin of the ``master`` realm is ``admin`` with ``admin_password`` (random when omitted; written to
    ``<home>/keycloak/admin-password`` with mode 0600, and only honoured by Keycloak on the first start of a
    home). Logs go to ``<home>/log/keycloak.log``, the PID to ``<home>/run/keycloak.pid``.
    """
    distribution = ensure_keycloak(cache_dir)
    kc_home = prepare_home(distribution, home, realm_file)
    password_file = admin_password_file(home)
    if admin_password is None:
        admin_password = password_file.read_text().strip() if password_file.is_file() else secrets.token_urlsafe(18)
    _write_private(password_file, admin_password + "\n")
    management_port = management_port or _free_port()
    log_dir, run_dir = home / "log", home / "run"
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file, pid_path = log_dir / "keycloak.log", pid_file(home)
    base_url = f"http://127.0.0.1:{http_port}"
    env = {**os.environ, "KC_BOOTSTRAP_ADMIN_USERNAME": ADMIN_USERNAME, "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
           "JAVA_OPTS_KC_HEAP": HEAP_OPTS}
    command = [str(kc_home / "bin" / "kc.sh"), "start", "--optimized", "--import-realm", "--cache=local",
               "--http-enabled=true", "--http-host=127.0.0.1", f"--http-port={http_port}", f"--hostname={base_url}",
               f"--http-management-port={management_port}"]
    with log_file.open("ab") as log:
        popen = subprocess.Popen(command, cwd=kc_home, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    pid_path.write_text(f"{popen.pid}\n")
    return KeycloakProcess(home=home, pid=popen.pid, http_port=http_port, management_port=management_port,
                           admin_password=admin_password, log_file=log_file, pid_file=pid_path, popen=popen)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class DevelopmentLogin:
    """A development user's password and TOTP secret (base32, for an authenticator app or pyotp)."""

    password: str
    totp_secret: str

    def otpauth_uri(self, username: str) -> str:
        """The ``otpauth://`` URI an authenticator app reads (as a QR code or pasted)."""
        return (f"otpauth://totp/OncoFlow:{urllib.parse.quote(username)}?secret={self.totp_secret}"
                f"&issuer=OncoFlow&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_PERIOD_S}")


def create_development_users(base_url: str, admin_password: str, home: Path,
                             users: Mapping[str, Mapping[str, Any]] | None = None,
                             admin: AdminClient | None = None) -> dict[str, DevelopmentLogin]:
    """Create the development users (one per role) with random passwords and TOTP secrets.

    The logins, with the generated secret of the ``oncoflow-worker`` client, are written to
    ``<home>/keycloak/dev-users.json`` (mode 0600). When that file already lists a user, its password and TOTP
    secret are reused (and re-applied), so repeated calls are stable across restarts.
    """
    users = DEVELOPMENT_USERS if users is None else users
    path = keycloak_home(home) / DEV_USERS_FILE
    try:
        previous = json.loads(path.read_text()).get("users", {})
    except (OSError, ValueError, AttributeError):
        previous = {}
    admin = admin or AdminClient.bootstrap_admin(base_url, admin_password)
    logins: dict[str, DevelopmentLogin] = {}
    for username, spec in users.items():
        known = previous.get(username, {})
        login = DevelopmentLogin(known.get("password") or secrets.token_urlsafe(15),
                                 known.get("totp_secret") or base64.b32encode(secrets.token_bytes(20)).decode())
        user_id = admin.ensure_user(username, login.password, spec["roles"], spec.get("assigned_patients", []))
        admin.set_totp(user_id, login.totp_secret, "OncoFlow development")
        logins[username] = login
    document = {
        "note": "DEVELOPMENT ONLY: generated by oncoflow.services.keycloak_server.create_development_users",
        "issuer": f"{base_url.rstrip('/')}/realms/{REALM}",
        "users": {name: {"password": logins[name].password, "totp_secret": logins[name].totp_secret,
                         "otpauth": logins[name].otpauth_uri(name), "roles": list(users[name]["roles"]),
                         "assigned_patients": list(users[name].get("assigned_patients", []))} for name in users},
        "clients": {"oncoflow-worker": {"secret": admin.client_secret("oncoflow-worker")}},
    }
    _write_private(path, json.dumps(document, indent=2) + "\n")
    return logins


ASSIGNMENTS_CLIENT = "oncoflow-assignments"  # the plugin changes patient assignments with it
PIPELINE_CLIENT = "oncoflow-pipeline"  # pipeline workers reach Orthanc's API with its tokens


def set_up_stack_realm(base_url: str, admin_password: str, home: Path, viewer_origins: Sequence[str],
                       client_secret_paths: Mapping[str, Path]) -> dict[str, DevelopmentLogin]:
    """Everything one OncoFlow stack needs from its embedded Keycloak; returns the development logins.

    Creates the development users (:func:`create_development_users`), lets the viewer client redirect to
    this stack's Orthanc origins, and writes the secret of each service account in ``client_secret_paths``
    (client ID -> file; Keycloak generated them at import) as ``{"client_id", "secret"}``, mode 0600.
    """
    admin = AdminClient.bootstrap_admin(base_url, admin_password)
    logins = create_development_users(base_url, admin_password, home, admin=admin)
    admin.set_redirect_origins("ohif", viewer_origins)
    for client_id, path in client_secret_paths.items():
        _write_private(path, json.dumps({"client_id": client_id, "secret": admin.client_secret(client_id)}) + "\n")
    return logins


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oncoflow.services.keycloak_server",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help=f"fetch, verify, unpack and build Keycloak {KEYCLOAK_VERSION} in the cache")
    fetch.add_argument("--cache", type=Path, default=None,
                       help="cache directory (default $ONCOFLOW_CACHE or ~/.cache/oncoflow)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        root = ensure_keycloak(args.cache)
    except (KeycloakError, OSError, subprocess.SubprocessError) as exc:
        print(f"Keycloak not fetched: {exc}", file=sys.stderr)
        return 1
    print(f"Keycloak {KEYCLOAK_VERSION}: {root} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
