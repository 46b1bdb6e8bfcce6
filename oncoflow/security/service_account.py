"""Access tokens of a Keycloak service account, for a pipeline worker calling Orthanc's API with login on.

The ``client_credentials`` grant of the ``oncoflow-pipeline`` client, whose secret is a JSON file
``{"client_id": ..., "secret": ...}`` (mode 0600; ``make up`` writes it for the embedded Keycloak, a site
puts it in ``ONCOFLOW_HOME/secrets/keycloak-pipeline.json``). A token is reused until
:data:`RENEW_BEFORE_EXPIRY_S` before it expires.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from oncoflow.pacs.orthanc_http import OrthancUnavailable

RENEW_BEFORE_EXPIRY_S = 30.0


class ServiceAccountError(RuntimeError):
    """The secret file is missing or unreadable: a configuration error, said at start-up."""


class TokenUnavailable(OrthancUnavailable):
    """Keycloak gave no token now (down, or refusing): transient, the job is retried."""


class ServiceAccountToken:
    """``token()``: a valid access token of the service account in ``secret_path``, from ``token_url``."""

    def __init__(self, token_url: str, secret_path: Path, timeout_s: float = 10.0) -> None:
        try:
            secret = json.loads(secret_path.read_text())
            self.client_id, self._secret = str(secret["client_id"]), str(secret["secret"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceAccountError(f"no service account secret in {secret_path}: {exc}") from exc
        self.token_url = token_url
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token = ""
        self._valid_until = 0.0  # time.monotonic()

    def token(self) -> str:
        with self._lock:
            if time.monotonic() >= self._valid_until:
                self._token, lifetime_s = self._fetch()
                self._valid_until = time.monotonic() + max(0.0, lifetime_s - RENEW_BEFORE_EXPIRY_S)
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": self.client_id,
                                       "client_secret": self._secret}).encode()
        try:
            with urllib.request.urlopen(self.token_url, form, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
            return str(answer["access_token"]), float(answer.get("expires_in", 60))
        except urllib.error.HTTPError as exc:
            raise TokenUnavailable("POST", self.token_url, exc.code, exc.read().decode(errors="replace")) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise TokenUnavailable("POST", self.token_url, 0, str(exc)) from exc
