"""The few Keycloak admin REST calls OncoFlow makes, and the token grants they start from.

Used by the stack to set the ``oncoflow`` realm up (bootstrap admin of the ``master`` realm) and by the
assignments route to change a user's patients (the ``oncoflow-assignments`` service account, with only
``realm-management`` user roles).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REALM = "oncoflow"
ADMIN_USERNAME = "admin"
TOTP_DIGITS = 6  # the realm's otpPolicyDigits (keycloak/oncoflow-realm.json)
TOTP_PERIOD_S = 30  # its otpPolicyPeriod


class KeycloakError(RuntimeError):
    """Keycloak could not be fetched, started or configured; the message points at the log when there is one."""


def _request(method: str, url: str, token: str | None = None, json_body: Any = None,
             form: Mapping[str, str] | None = None) -> tuple[int, Any, Mapping[str, str]]:
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, body, response_headers = exc.code, exc.read(), exc.headers
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode(errors="replace")
    return status, parsed, response_headers


def _access_token(token_url: str, form: Mapping[str, str]) -> str:
    status, body, _ = _request("POST", token_url, form=form)
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise KeycloakError(f"Keycloak login of {form.get('client_id')} failed ({status}): {body}")
    return str(body["access_token"])


class AdminClient:
    """The few Keycloak admin REST calls OncoFlow needs, with an admin access token.

    Two ways in: the bootstrap admin of the ``master`` realm (:meth:`bootstrap_admin`: what ``make up`` uses
    to set the realm up) and a realm service account with only ``realm-management`` user roles
    (:meth:`service_account`: what the Orthanc plugin uses to change patient assignments).
    """

    def __init__(self, base_url: str, token: str, realm: str = REALM,
                 grant: tuple[str, Mapping[str, str]] | None = None) -> None:
        """``grant`` (token URL, form) logs in again when Keycloak answers 401: admin tokens live about a minute
        (the master realm's default), and a client kept longer must not fail on its next call."""
        self.base_url, self.realm = base_url.rstrip("/"), realm
        self.token = token
        self._grant = grant

    @classmethod
    def _logged_in(cls, base_url: str, token_url: str, form: Mapping[str, str], realm: str) -> AdminClient:
        return cls(base_url, _access_token(token_url, form), realm, (token_url, dict(form)))

    @classmethod
    def bootstrap_admin(cls, base_url: str, admin_password: str, realm: str = REALM) -> AdminClient:
        return cls._logged_in(base_url, f"{base_url.rstrip('/')}/realms/master/protocol/openid-connect/token", {
            "grant_type": "password", "client_id": "admin-cli", "username": ADMIN_USERNAME,
            "password": admin_password}, realm)

    @classmethod
    def service_account(cls, base_url: str, client_id: str, secret: str, realm: str = REALM) -> AdminClient:
        return cls._logged_in(base_url, f"{base_url.rstrip('/')}/realms/{realm}/protocol/openid-connect/token", {
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}, realm)

    @classmethod
    def from_secret_file(cls, base_url: str, realm: str, secret_path: Path) -> AdminClient:
        """The realm service account whose ``{"client_id", "secret"}`` JSON is at ``secret_path`` (the plug-in's
        ``oncoflow-assignments``: it manages users' assignments and reads the realm's login events)."""
        try:
            secret = json.loads(secret_path.read_text())
        except (OSError, ValueError) as exc:
            raise KeycloakError(f"no service-account secret at {secret_path} ({exc})") from exc
        return cls.service_account(base_url, secret["client_id"], secret["secret"], realm)

    def call(self, method: str, path: str, json_body: Any = None, expect: Sequence[int] = (200, 201, 204)) -> Any:
        url = f"{self.base_url}/admin/realms/{self.realm}{path}"
        status, body, headers = _request(method, url, self.token, json_body=json_body)
        if status == 401 and self._grant is not None:  # the token expired: log in again, once
            self.token = _access_token(*self._grant)
            status, body, headers = _request(method, url, self.token, json_body=json_body)
        if status not in expect:
            raise KeycloakError(f"{method} {path}: {status} {body}")
        if status == 201 and body is None:
            return headers.get("Location", "").rsplit("/", 1)[-1]
        return body

    def client_uuid(self, client_id: str) -> str:
        found = self.call("GET", f"/clients?clientId={urllib.parse.quote(client_id)}")
        if not found:
            raise KeycloakError(f"no client {client_id!r} in realm {self.realm}")
        return found[0]["id"]

    def client_secret(self, client_id: str) -> str:
        return self.call("GET", f"/clients/{self.client_uuid(client_id)}/client-secret")["value"]

    def user_id(self, username: str) -> str | None:
        found = self.call("GET", f"/users?exact=true&username={urllib.parse.quote(username)}")
        return found[0]["id"] if found else None

    def ensure_user(self, username: str, password: str, roles: Sequence[str], assigned_patients: Sequence[str]) -> str:
        """Create or update ``username`` (enabled, profile complete), set its password and realm roles."""
        first, _, last = username.partition(".")
        representation = {"username": username, "enabled": True, "emailVerified": True,
                          "email": f"{username}@oncoflow.invalid", "firstName": first.capitalize(),
                          "lastName": (last or "user").capitalize(), "requiredActions": [],
                          "attributes": {"assigned_patients": list(assigned_patients)}}
        user_id = self.user_id(username)
        if user_id is None:
            user_id = self.call("POST", "/users", representation)
        else:
            self.call("PUT", f"/users/{user_id}", representation)
        self.call("PUT", f"/users/{user_id}/reset-password",
                  {"type": "password", "value": password, "temporary": False})
        wanted = [self.call("GET", f"/roles/{urllib.parse.quote(role)}") for role in roles]
        self.call("POST", f"/users/{user_id}/role-mappings/realm", wanted)
        return user_id

    def set_totp(self, user_id: str, secret_base32: str, label: str) -> None:
        """Give the user exactly one OTP credential: TOTP with this base32 secret and the realm's policy (HmacSHA1,
        6 digits, 30 s). Any earlier OTP credential is removed first, so calling it again is harmless."""
        for credential in self.call("GET", f"/users/{user_id}/credentials"):
            if credential.get("type") == "otp":
                self.call("DELETE", f"/users/{user_id}/credentials/{credential['id']}")
        user = self.call("GET", f"/users/{user_id}")
        user["credentials"] = [{
            "type": "otp", "userLabel": label,
            "secretData": json.dumps({"value": secret_base32}),
            "credentialData": json.dumps({"subType": "totp", "digits": TOTP_DIGITS, "counter": 0,
                                          "period": TOTP_PERIOD_S, "algorithm": "HmacSHA1",
                                          "secretEncoding": "BASE32"}),
        }]
        self.call("PUT", f"/users/{user_id}", user)

    def set_assigned_patients(self, username: str, patient_ids: Sequence[str]) -> list[str] | None:
        """Replace the user's ``assigned_patients``; returns the previous list, or ``None`` for an unknown user.

        The whole representation is read and written back: Keycloak's user profile validates the full user
        on update. The change reaches the user's tokens at their next refresh (at most the token lifespan).
        """
        user_id = self.user_id(username)
        if user_id is None:
            return None
        user = self.call("GET", f"/users/{user_id}")
        attributes = dict(user.get("attributes") or {})
        previous = list(attributes.get("assigned_patients", []))
        attributes["assigned_patients"] = list(patient_ids)
        user["attributes"] = attributes
        self.call("PUT", f"/users/{user_id}", user)
        return previous

    def login_errors(self, max_events: int = 500) -> list[dict[str, Any]]:
        """The realm's most recent ``LOGIN_ERROR`` events, newest first (``time`` in ms; needs ``view-events``)."""
        return list(self.call("GET", f"/events?type=LOGIN_ERROR&first=0&max={max_events}"))

    def set_redirect_origins(self, client_id: str, origins: Sequence[str], path: str = "/ohif/") -> None:
        """Let ``client_id`` (the viewer) redirect to ``<origin><path>*`` and call Keycloak from those origins."""
        uuid = self.client_uuid(client_id)
        client = self.call("GET", f"/clients/{uuid}")
        client["redirectUris"] = [f"{origin}{path}*" for origin in origins]
        client["webOrigins"] = ["+"]
        attributes = dict(client.get("attributes") or {})
        attributes["post.logout.redirect.uris"] = "##".join(client["redirectUris"])
        client["attributes"] = attributes
        self.call("PUT", f"/clients/{uuid}", client)
