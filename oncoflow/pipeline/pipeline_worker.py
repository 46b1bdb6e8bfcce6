"""A pipeline worker: a process that consumes the shared job queue and runs the study pipeline outside Orthanc.

``python -m oncoflow.pipeline.pipeline_worker`` with ``ONCOFLOW_DATABASE_URL`` (the PostgreSQL queue),
``ONCOFLOW_ORTHANC_URL`` (Orthanc's REST API) and ``ONCOFLOW_WORKER_URL`` (the inference server). Run as many
as the inference servers can feed, on as many hosts; each claims one job at a time with a lease
(``ONCOFLOW_JOB_LEASE_S``). SIGTERM or SIGINT: the current job finishes, then the worker exits. SIGKILL, a
crash or a lost host: the job's lease expires and another worker takes it; its outputs are written again
under the same UIDs (SEGs from the input fingerprint, one SR / REG / report per study replaced), so a
redelivered job never duplicates a result.

``--check`` (a container health check): exit 0 when the queue and Orthanc answer, 1 with the reason.

With login on (``ONCOFLOW_AUTH=on``) every request to Orthanc carries a token of the ``oncoflow-pipeline``
service account (role ``pipeline``: read any patient, store and replace the derived objects), from the
secret in ``ONCOFLOW_HOME/secrets/keycloak-pipeline.json`` (:mod:`oncoflow.security.service_account`).

The worker's ``ONCOFLOW_HOME`` holds what the report stage reads besides Orthanc: the clinical notes store
(``rag/``), the pseudonym key and signing material (``secrets/``, ``signing/``) and the audit log; on several
hosts that folder is shared with Orthanc's (a network volume), as on one host it is the same folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from oncoflow.core.config import ConfigError, Settings, load_settings
from oncoflow.pacs.orthanc_http import HttpOrthanc, OrthancHttpError
from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.pipeline.pipeline_assembly import assemble_pipeline, consumer_name
from oncoflow.pipeline.sql_database import DatabaseUnavailable
from oncoflow.security.service_account import ServiceAccountError, ServiceAccountToken

log = logging.getLogger("oncoflow.pipeline_worker")


def orthanc_client(settings: Settings, timeout_s: float) -> HttpOrthanc:
    """Orthanc's API over HTTP, with the pipeline service account's tokens when login is on
    (raises :class:`oncoflow.security.service_account.ServiceAccountError` when its secret is missing)."""
    if settings.auth is None:
        return HttpOrthanc(settings.orthanc_url, timeout_s)
    account = ServiceAccountToken(settings.auth.token_url, settings.pipeline_client_path)
    return HttpOrthanc(settings.orthanc_url, timeout_s, account.token)


def check(settings: Settings) -> str | None:
    """``None`` when the queue and Orthanc answer, else the reason."""
    from oncoflow.pipeline.job_store import JobStore

    try:
        store = JobStore(settings.database_url or "")
        try:
            store.counts()
        finally:
            store.close()
    except (DatabaseUnavailable, OSError) as exc:
        return f"job queue: {exc}"
    try:
        orthanc_client(settings, timeout_s=5).RestApiGet("/oncoflow/panel")  # needs a valid token with login on
    except (OrthancHttpError, ServiceAccountError) as exc:
        return f"Orthanc: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 0 when the queue and Orthanc answer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.database_url is None:
        print("a pipeline worker needs ONCOFLOW_DATABASE_URL: the SQLite queue belongs to one Orthanc",
              file=sys.stderr)
        return 2
    if args.check:
        problem = check(settings)
        print(problem or "ok")
        return 0 if problem is None else 1

    try:
        orthanc = orthanc_client(settings, settings.worker_timeout_s)
    except ServiceAccountError as exc:
        print(f"{exc} (login is on: a pipeline worker needs the oncoflow-pipeline service account's secret)",
              file=sys.stderr)
        return 2
    parts = assemble_pipeline(settings, OrthancRest(orthanc))
    name = consumer_name("worker", os.getpid())
    runner = parts.job_runner(name, consume=True, catch_up=False)  # Orthanc's plugin reads its /changes

    def stop(signum: int, frame: object) -> None:
        log.info("signal %d: finishing the current job, then stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("pipeline worker %s: queue %s, Orthanc %s, inference %s, lease %.0f s", name,
             settings.database_url.rsplit("@", 1)[-1], settings.orthanc_url, settings.worker_url, settings.job_lease_s)
    if parts.routing is not None:
        parts.routing.start()
    try:
        runner.run_forever()
    finally:
        parts.close()
    log.info("pipeline worker %s stopped", name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
