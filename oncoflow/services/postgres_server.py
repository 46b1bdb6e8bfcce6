"""A private PostgreSQL cluster (Debian's server binaries) for one host's scale-out, the tests and the benches.

OncoFlow's job queue and Orthanc's index can live in any PostgreSQL (``ONCOFLOW_DATABASE_URL``); this module
starts one of its own when there is none, as ``make up`` starts Orthanc: ``initdb`` once under a folder,
``pg_ctl start`` on a loopback port, stop by ``pg_ctl`` (``fast`` for a clean stop, ``immediate`` to drop
it the way a crash does). Authentication is SCRAM-SHA-256 with a random password kept beside the cluster
(mode 0600); only 127.0.0.1 is listened on.

PostgreSQL refuses to run as root: run as root (as CI does), the cluster belongs to the ``postgres`` user of
Debian's package, and its folder must be reachable by that user (not under a 0700 directory such as pytest's
``/tmp/pytest-of-root``).
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"  # Debian's postgresql-common creates it
DATABASE_USER = "oncoflow"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why and where its log is."""


def server_bin_dir() -> Path:
    """The newest installed server's ``bin`` (``/usr/lib/postgresql/<major>/bin``)."""
    versions = sorted((p for p in DEBIAN_POSTGRES_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise PostgresError("no PostgreSQL server under /usr/lib/postgresql: install Debian's `postgresql`")
    return versions[-1]


@dataclass(frozen=True)
class PostgresCluster:
    """A cluster in ``root`` (``pgdata/``, ``password``, ``postgres.log``) listening on ``127.0.0.1:port``."""

    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def url(self, database: str = "oncoflow") -> str:
        """``postgresql://oncoflow:<password>@127.0.0.1:<port>/<database>`` (libpq URI)."""
        password = urllib.parse.quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{DATABASE_USER}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (``postmaster.pid``'s first line), else ``None``."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


def _as_service_user() -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--"] if os.geteuid() == 0 else []


def _run(cluster: PostgresCluster, argv: list[str], what: str, timeout_s: float = 120) -> None:
    result = subprocess.run([*_as_service_user(), *argv], capture_output=True, text=True, timeout=timeout_s,
                            cwd="/")
    if result.returncode != 0:
        raise PostgresError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout)[-800:]}"
                            f" (log: {cluster.log_file})")


def _give_to_service_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    closed = [str(p) for p in path.parents if p.stat().st_mode & 0o001 == 0]
    if closed:
        raise PostgresError(f"the PostgreSQL cluster {path} must be reachable by the {SERVICE_USER} user, "
                            f"but {closed[0]} is closed to others (mode 0700?): choose another folder")
    user = pwd.getpwnam(SERVICE_USER)
    for directory, _, files in os.walk(path):
        os.chown(directory, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid)


def initialise(cluster: PostgresCluster) -> bool:
    """``initdb`` the cluster unless it exists; True when it was created."""
    if (cluster.data_dir / "PG_VERSION").exists():
        return False
    cluster.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _give_to_service_user(cluster.root)  # fails early, before any file, when the folder is unreachable
    cluster.password_file.write_text(secrets.token_urlsafe(24) + "\n")
    cluster.password_file.chmod(0o600)
    _give_to_service_user(cluster.root)
    _run(cluster, [str(server_bin_dir() / "initdb"), "-D", str(cluster.data_dir), "-U", DATABASE_USER,
                   f"--pwfile={cluster.password_file}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
         "initdb")
    return True


def start(cluster: PostgresCluster, timeout_s: float = 60) -> int:
    """Start the cluster (creating it first if needed) and wait until it accepts connections; its PID."""
    initialise(cluster)
    if cluster.pid is None:
        options = (f"-p {cluster.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={cluster.root}"
                   " -c max_connections=200 -c shared_buffers=64MB")
        _give_to_service_user(cluster.root)  # the log file, after a root-run stop / start
        _run(cluster, [str(server_bin_dir() / "pg_ctl"), "-D", str(cluster.data_dir), "-l", str(cluster.log_file),
                       "-w", "-t", str(int(timeout_s)), "-o", options, "start"], "pg_ctl start", timeout_s + 10)
    pid = cluster.pid
    if pid is None:
        raise PostgresError(f"PostgreSQL did not stay up; see {cluster.log_file}")
    return pid


def stop(cluster: PostgresCluster, mode: str = "fast", timeout_s: float = 60) -> bool:
    """Stop the cluster: ``fast`` (clean) or ``immediate`` (as a crash; recovery at next start). True if it ran."""
    if cluster.pid is None:
        return False
    _run(cluster, [str(server_bin_dir() / "pg_ctl"), "-D", str(cluster.data_dir), "-m", mode, "-w",
                   "-t", str(int(timeout_s)), "stop"], "pg_ctl stop", timeout_s + 10)
    return True


def ensure_database(cluster: PostgresCluster, name: str, timeout_s: float = 30) -> str:
    """Create database ``name`` unless it exists; returns its URL."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(cluster.url("postgres"), autocommit=True, connect_timeout=5) as db:
                if db.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone() is None:
                    db.execute(f'CREATE DATABASE "{name}"')
            return cluster.url(name)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def remove(cluster: PostgresCluster) -> None:
    """Stop the cluster and delete its folder (tests)."""
    stop(cluster, "immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A private PostgreSQL cluster for OncoFlow")
    parser.add_argument("action", choices=("start", "stop", "url"))
    parser.add_argument("--root", type=Path, required=True, help="the cluster's folder")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--database", default="oncoflow")
    args = parser.parse_args(argv)
    cluster = PostgresCluster(args.root.resolve(), args.port)
    if args.action == "start":
        start(cluster)
        print(ensure_database(cluster, args.database))
    elif args.action == "stop":
        print("stopped" if stop(cluster) else "not running")
    else:
        print(cluster.url(args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
