"""``oncoflow up | down | status | push DIR | verify-report PDF | audit verify``: the stack from the command line."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from oncoflow.core.config import ConfigError, Settings, load_settings
from oncoflow.services.keycloak_server import DevelopmentLogin
from oncoflow.services.orthanc_config import missing_orthanc_parts
from oncoflow.services.stack import (
    StackError,
    ensure_report_signer,
    http_get,
    start_stack,
    status,
    stop_stack,
    wait_model_settled,
)


def cmd_up(settings: Settings, timeout_s: float) -> int:
    missing = missing_orthanc_parts(settings)
    if missing:
        print(f"missing Orthanc parts: {', '.join(missing)} (run `make up`, which installs them)", file=sys.stderr)
        return 1
    if ensure_report_signer(settings):
        print(f"Created a development CA and report-signing certificate in {settings.signing_dir} "
              "(for testing only: set ONCOFLOW_SIGNING_KEY/_CERT/_CHAIN to the site's own)")
    if settings.auth is None:
        print("WARNING: LOGIN IS OFF (ONCOFLOW_AUTH=off). Anyone who reaches port "
              f"{settings.http_port} reads every patient's images, results and reports. Development only.",
              file=sys.stderr)
    try:
        logins = start_stack(settings, timeout_s)
    except StackError as exc:
        print(f"oncoflow up failed: {exc}", file=sys.stderr)
        return 1
    experts = {name: wait_model_settled(settings, name, timeout_s) for name in settings.panel}
    print(f"OncoFlow is up (home {settings.home})")
    print(f"  Orthanc        {settings.orthanc_url}/  (DICOM AET {settings.aet} on port {settings.dicom_port})")
    print(f"  DICOMweb       {settings.orthanc_url}/dicom-web/")
    print(f"  Viewer (OHIF)  {settings.orthanc_url}/ohif/  "
          "(OncoFlow review: /ohif/oncoflow-review?StudyInstanceUIDs=<follow-up>,<baseline>)")
    print(f"  Job status     {settings.orthanc_url}/oncoflow/studies/<StudyInstanceUID>")
    if settings.database_url is not None:
        consumers = ["Orthanc"] if settings.job_consumer else []
        consumers += [f"{settings.pipeline_workers} pipeline worker(s)"] if settings.pipeline_workers else []
        print(f"  Job queue      PostgreSQL {settings.database_url.rsplit('@', 1)[-1]}, run by "
              f"{' and '.join(consumers) or 'consumers elsewhere'} (lease {settings.job_lease_s:.0f} s)")
    print(f"  Worker (KServe v2) {settings.worker_http_url}/v2  panel (fusion {settings.fusion}):")
    for name, (state, reason) in experts.items():
        print(f"    {name:22} {'ready' if state == 'READY' else f'NOT ready ({state}): {reason}'}")
    print(f"  Push a study   storescu -aec {settings.aet} localhost {settings.dicom_port} +sd +r <dir>")
    peers = [f"{p.aet}@{p.host} ({'+'.join(p.rights)})" for p in settings.dicom_peers]
    print(f"  DICOM peers    {', '.join(peers) or 'none'} (ONCOFLOW_STORE_PEERS, ONCOFLOW_QUERY_PEERS; every other "
          "AE title or IP address is refused, and audited)")
    bearer = "-H 'Authorization: Bearer <access token>' " if settings.auth else ""
    print(f"  Notes upload   curl {bearer}--data-binary @note.pdf -H 'Content-Type: application/pdf' -H "
          f"'Content-Disposition: attachment; filename=\"note.pdf\"' "
          f"{settings.orthanc_url}/oncoflow/patients/<PatientID>/documents")
    print(f"  Reports        {settings.orthanc_url}/oncoflow/reports/<SOPInstanceUID>.pdf, signed by "
          f"{settings.signing_paths[1]}")
    _print_login(settings, logins)
    return 0


def _print_login(settings: Settings, logins: dict[str, DevelopmentLogin]) -> None:
    if settings.auth is None:
        print("  Login          OFF (ONCOFLOW_AUTH=off): every route is open. Development only.")
        return
    print(f"  Login          Keycloak realm {settings.auth.issuer} (every HTTP request needs a token for "
          f"audience {settings.auth.audience}; the viewer logs in itself)")
    if settings.auth.otp_roles:
        print(f"  Two factors    a TOTP code (authenticator app) for {', '.join(sorted(settings.auth.otp_roles))}; "
              "password grant: add -d totp=<code>")
    if logins:
        from oncoflow.services.keycloak_server import (
            DEV_USERS_FILE,
            DEVELOPMENT_USERS,
            admin_password_file,
            keycloak_home,
        )

        print(f"  Development users (DEVELOPMENT ONLY; also in {keycloak_home(settings.home) / DEV_USERS_FILE}):")
        for username, login in logins.items():
            spec = DEVELOPMENT_USERS.get(username, {})
            patients = ", ".join(spec.get("assigned_patients", [])) or "every patient"
            print(f"    {username:16} {login.password:22} TOTP {login.totp_secret}  roles "
                  f"{', '.join(spec.get('roles', []))}; patients: {patients}")
        print("    (add a TOTP secret to an authenticator app, or read its otpauth:// URI in the file above)")
        print(f"  Keycloak admin console {settings.auth.keycloak_url}/admin/ (user admin, password in "
              f"{admin_password_file(settings.home)})")


def cmd_verify_report(settings: Settings, path: Path, trust: Path | None) -> int:
    """Check a report's signature against the trust root (default: the configured chain's root)."""
    from cryptography import x509

    from oncoflow.report.signed_pdf_check import check_signed_pdf

    trust_path = trust or settings.signing_paths[2]
    roots = x509.load_pem_x509_certificates(trust_path.read_bytes())
    check = check_signed_pdf(path.read_bytes(), roots)
    print(f"{path}: {'signature OK' if check.ok else 'signature NOT OK'}")
    print(f"  signer {check.signer_subject}, signed {check.signing_time}, {check.sub_filter}")
    print(f"  intact={check.intact} valid={check.valid} trusted={check.trusted} (trust root {trust_path}) "
          f"covers whole file={check.covers_whole_file}")
    for problem in check.problems:
        print(f"  problem: {problem}")
    return 0 if check.ok else 1


def cmd_down(settings: Settings) -> int:
    for name, ran in stop_stack(settings).items():
        print(f"{name}: {'stopped' if ran else 'was not running'}")
    return 0


def cmd_status(settings: Settings) -> int:
    services = status(settings)
    for s in services:
        print(f"{s.name:8} pid={s.pid or '-':<8} running={s.running} healthy={s.healthy} {s.detail}")
    if settings.auth is None:
        print("keycloak login OFF (ONCOFLOW_AUTH=off)")
        return 0 if all(s.healthy for s in services) else 1
    from oncoflow.services.keycloak_server import running_pid

    pid = running_pid(settings.home) if settings.auth.keycloak_port else None
    issuer_ok = http_get(f"{settings.auth.issuer}/.well-known/openid-configuration")[0] == 200
    print(f"keycloak pid={pid or '-':<8} realm {settings.auth.issuer} answering={issuer_ok}")
    return 0 if all(s.healthy for s in services) and issuer_ok else 1


def cmd_push(settings: Settings, directory: Path) -> int:
    storescu = shutil.which("storescu")
    if storescu is None:
        print("storescu (dcmtk) is not installed", file=sys.stderr)
        return 1
    argv = [storescu, "-aet", "ONCOFLOWCLI", "-aec", settings.aet, "+sd", "+r", "-nh",
            "127.0.0.1", str(settings.dicom_port), str(directory)]
    return subprocess.call(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oncoflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Orthanc and the worker, wait for their health checks")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    sub.add_parser("down", help="stop what `up` started, by PID")
    sub.add_parser("status", help="show the services and their health")
    push = sub.add_parser("push", help="C-STORE every DICOM file under DIR to the stack")
    push.add_argument("directory", type=Path)
    audit = sub.add_parser("audit", help="the audit log: verify its hash chain (exit 1 if broken) or export it")
    audit.add_argument("action", choices=("verify", "export"))
    audit.add_argument("-o", "--output", type=Path, help="export: write JSON lines to this file (default stdout)")
    verify = sub.add_parser("verify-report", help="check a report PDF's signature (exit 1 if not OK)")
    verify.add_argument("pdf", type=Path)
    verify.add_argument("--trust", type=Path, help="PEM trust roots (default: the configured signing chain)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "up":
        return cmd_up(settings, args.timeout)
    if args.command == "down":
        return cmd_down(settings)
    if args.command == "status":
        return cmd_status(settings)
    if args.command == "audit":
        from oncoflow.security.audit_log import main as audit_main

        output = ["-o", str(args.output)] if args.output and args.action == "export" else []
        return audit_main([args.action, str(settings.audit_db_path), *output])
    if args.command == "verify-report":
        return cmd_verify_report(settings, args.pdf, args.trust)
    return cmd_push(settings, args.directory)


if __name__ == "__main__":
    sys.exit(main())
