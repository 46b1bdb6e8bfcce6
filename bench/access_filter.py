"""``make bench`` (login part): what the request filter costs per HTTP request, as a ratio in one run.

The same small phantom study (PatientID PAT-A, assigned to radiologist.dev) is served by a stack with
login off and then by one with login on (its own Keycloak). Each route below is fetched ``REQUESTS``
times in a row over one keep-alive connection; with login on every request carries radiologist.dev's
bearer token, so each one is judged by the filter (token from the cache after the first, patient from the
resolver's cache, the audit's read record at most once per 5 minutes). Reported: median milliseconds per
request per mode and route, the ratio on / off, and the first request with a new token (JWKS download and
RSA verification). Writes ``bench/results/access-filter-<UTC>.json`` and ``access-filter-latest.json``.
"""

from __future__ import annotations

import http.client
import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pyotp
from bench_results import write_result
from pydicom.uid import generate_uid
from turnaround import bench_stack

REQUESTS = 200
PATIENT_ID = "PAT-A"
USER = "radiologist.dev"
_CODES_SENT: dict[str, str] = {}


def token(settings: Any, username: str) -> str:
    """A token of a development user: its password and the TOTP code of its secret (both from ``make up``)."""
    login = json.loads((settings.home / "keycloak" / "dev-users.json").read_text())["users"][username]
    generator = pyotp.TOTP(login["totp_secret"])
    if generator.now() == _CODES_SENT.get(username):  # Keycloak refuses a code twice: wait for the next one
        time.sleep(generator.interval - time.time() % generator.interval + 0.5)
    _CODES_SENT[username] = code = generator.now()
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "oncoflow-cli", "username": username,
                                   "password": login["password"], "totp": code}).encode()
    with urllib.request.urlopen(settings.auth.token_url, form) as answer:
        return str(json.loads(answer.read())["access_token"])


def timed_gets(connection: http.client.HTTPConnection, path: str, headers: dict[str, str],
               count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status}")
    return times


def measure(base: Path, study_dir: Path, study_uid: str, auth: bool) -> dict[str, Any]:
    import subprocess

    with bench_stack(base / ("home-on" if auth else "home-off"), "nnunet_demo", auth=auth) as settings:
        subprocess.run(["storescu", "-aec", settings.aet, "+sd", "+r", "-nh", "127.0.0.1", str(settings.dicom_port),
                        str(study_dir)], check=True, capture_output=True)
        headers = {"Authorization": f"Bearer {token(settings, USER)}"} if auth else {}
        connection = http.client.HTTPConnection("127.0.0.1", settings.http_port, timeout=60)
        deadline = time.monotonic() + 300
        while True:  # the job done (with login on, the status route itself is judged by the filter)
            connection.request("GET", f"/oncoflow/studies/{study_uid}", headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status == 200 and json.loads(body)["state"] in ("done", "failed"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"job of {study_uid} not done: {response.status} {body[:200]!r}")
            time.sleep(0.2)
        result: dict[str, Any] = {"routes": {}}
        if auth:  # a new token: the filter validates it (signature, claims) before its cache can answer
            fresh = {"Authorization": f"Bearer {token(settings, USER)}"}
            result["first_request_new_token_ms"] = 1000 * timed_gets(
                connection, f"/oncoflow/studies/{study_uid}", fresh, 1)[0]
        for name, path in ROUTES.items():
            times = timed_gets(connection, path.format(uid=study_uid), headers, REQUESTS)
            result["routes"][name] = {"median_ms": 1000 * statistics.median(times),
                                      "p90_ms": 1000 * statistics.quantiles(times, n=10)[-1]}
        connection.close()
        return result


ROUTES = {
    "job status (OncoFlow route)": "/oncoflow/studies/{uid}",
    "WADO-RS study metadata (DICOMweb plugin)": "/dicom-web/studies/{uid}/metadata",
    "QIDO studies through the proxy": "/oncoflow/dicom-web/studies?StudyInstanceUID={uid}",
}


def main() -> int:
    from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, write_datasets
    from oncoflow.phantoms.tumour_phantom import make_phantom

    base = Path(tempfile.mkdtemp(prefix="oncoflow-bench-access-"))
    study_uid = str(generate_uid())
    study = StudyInfo(patient_id=PATIENT_ID, patient_name="Bench^Access", study_instance_uid=study_uid,
                      study_date="20260101", study_description="access filter bench")
    write_datasets(series_datasets(make_phantom(7070, shape=(40, 64, 64)).volume, study,
                                   SeriesInfo(str(generate_uid()))), base / "study")
    off = measure(base, base / "study", study_uid, auth=False)
    on = measure(base, base / "study", study_uid, auth=True)
    result = {
        "what": "HTTP request time with the login filter on / off, same study, same routes, one run",
        "requests_per_route": REQUESTS,
        "user": USER,
        "login_off": off,
        "login_on": on,
        "ratio_on_over_off": {name: on["routes"][name]["median_ms"] / off["routes"][name]["median_ms"]
                              for name in ROUTES},
    }
    print(write_result("access-filter", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
