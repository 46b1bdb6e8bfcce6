"""A real Keycloak with OncoFlow's realm: dev users and the worker get tokens, and TokenValidator judges them.

The module starts one Keycloak (fetched into the cache first when missing: minutes) on free ports in a temporary
OncoFlow home, creates the development users through the admin API, and stops it at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import stat
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from oncoflow.security import access_tokens as at
from oncoflow.security.access_tokens import TokenRejected, TokenValidator
from oncoflow.security.keycloak_admin import AdminClient, _request
from oncoflow.security.login_refusals import LoginRefusals
from oncoflow.services.keycloak_server import (
    DEVELOPMENT_USERS,
    DevelopmentLogin,
    KeycloakProcess,
    create_development_users,
    keycloak_home,
    start_keycloak,
)

from .conftest import TotpCodes, free_port

pytestmark = pytest.mark.e2e

CLI_CLIENT = "oncoflow-cli"
AUDIENCE = "orthanc"


@dataclass
class Realm:
    process: KeycloakProcess
    home: Path
    logins: dict[str, DevelopmentLogin]
    admin: AdminClient
    start_s: float
    codes: TotpCodes

    def token(self, username: str, client_id: str = CLI_CLIENT) -> str:
        return password_grant(self.process.token_url, client_id, username, self.logins[username].password,
                              self.codes.code(username))

    def fresh_admin(self) -> AdminClient:
        """The bootstrap admin again (its token lives one minute; the fixture's ``admin`` may have expired)."""
        return AdminClient.bootstrap_admin(self.process.base_url, self.process.admin_password)

    def grant(self, username: str, **form: str) -> tuple[int, Any]:
        """A password grant of ``oncoflow-cli`` with ``form`` added (``totp``, or another ``password``)."""
        return token_request(self.process.token_url, {"grant_type": "password", "client_id": CLI_CLIENT,
                                                      "username": username, "scope": "openid",
                                                      "password": self.logins[username].password, **form})

    def validator(self, **kwargs: Any) -> TokenValidator:
        return TokenValidator(self.process.issuer, AUDIENCE, self.process.jwks_url, **kwargs)


def token_request(url: str, form: dict[str, str]) -> tuple[int, Any]:
    status, body, _ = _request("POST", url, form=form)
    return status, body


def password_grant(token_url: str, client_id: str, username: str, password: str, totp: str) -> str:
    status, body = token_request(token_url, {"grant_type": "password", "client_id": client_id,
                                             "username": username, "password": password, "totp": totp,
                                             "scope": "openid"})
    assert status == 200, body
    return body["access_token"]


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    home = tmp_path_factory.mktemp("keycloak-home")
    started = time.monotonic()
    process = start_keycloak(home, free_port(), admin_password=secrets.token_urlsafe(16), management_port=free_port())
    try:
        process.wait_ready(timeout_s=180)
        start_s = time.monotonic() - started
        logins = create_development_users(process.base_url, process.admin_password, home)
        print(f"\nKeycloak ready in {start_s:.1f} s, RSS {process.rss_bytes() / 2**20:.0f} MiB")
        admin = AdminClient.bootstrap_admin(process.base_url, process.admin_password)
        yield Realm(process, home, logins, admin, start_s,
                    TotpCodes({name: login.totp_secret for name, login in logins.items()}))
    finally:
        process.stop()
    assert not process.running() and not process.pid_file.exists(), "stop() ended Keycloak and removed its PID file"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def sign(claims: dict[str, Any], kid: str, key: rsa.RSAPrivateKey | None = None) -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- server and realm ----------------------------------------------------------------------------------------


def test_server_runs_from_its_own_home(realm: Realm) -> None:
    kc_home = keycloak_home(realm.home)
    assert (kc_home / "data" / "h2").is_dir(), "the H2 database lives under the OncoFlow home"
    assert (kc_home / "lib").is_symlink() and not (kc_home / "data").is_symlink()
    assert realm.process.pid_file.read_text().strip() == str(realm.process.pid)
    assert realm.process.log_file.stat().st_size > 0
    status, body, _ = _request("GET", f"http://127.0.0.1:{realm.process.management_port}/health/ready")
    assert status == 200 and body["status"] == "UP"
    status, discovery, _ = _request("GET", f"{realm.process.issuer}/.well-known/openid-configuration")
    assert status == 200 and discovery["issuer"] == realm.process.issuer


def test_dev_users_file_is_private_and_complete(realm: Realm) -> None:
    path = keycloak_home(realm.home) / "dev-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert set(document["users"]) == set(DEVELOPMENT_USERS)
    assert document["clients"]["oncoflow-worker"]["secret"]
    # Repeated calls keep the passwords (stable across restarts of a home).
    again = create_development_users(realm.process.base_url, realm.process.admin_password, realm.home)
    assert again == realm.logins
    for name, login in realm.logins.items():  # what make up prints: the password and the TOTP secret
        assert document["users"][name]["password"] == login.password
        assert document["users"][name]["totp_secret"] == login.totp_secret and len(login.totp_secret) == 32
        assert document["users"][name]["otpauth"].startswith(f"otpauth://totp/OncoFlow:{name}?secret={login.totp_secret}")
    admin = realm.fresh_admin()
    otp = [c for c in admin.call("GET", f"/users/{admin.user_id('doctor.dev')}/credentials") if c["type"] == "otp"]
    assert len(otp) == 1, otp  # applied again, never twice


def test_orthanc_client_is_bearer_only_and_ohif_has_no_password_grant(realm: Realm) -> None:
    orthanc = realm.admin.call("GET", f"/clients/{realm.admin.client_uuid('orthanc')}")
    assert orthanc["bearerOnly"] is True and not orthanc["publicClient"]
    status, body = token_request(realm.process.token_url, {"grant_type": "password", "client_id": "ohif",
                                                           "username": "doctor.dev",
                                                           "password": realm.logins["doctor.dev"].password})
    assert status in (400, 401) and body["error"] == "unauthorized_client", body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _authorize(realm: Realm, redirect_uri: str, pkce: bool) -> tuple[int, str, str]:
    query = {"client_id": "ohif", "response_type": "code", "scope": "openid", "redirect_uri": redirect_uri}
    if pkce:
        verifier = secrets.token_urlsafe(48)
        query |= {"code_challenge": b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
    url = f"{realm.process.issuer}/protocol/openid-connect/auth?{urllib.parse.urlencode(query)}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode(), ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Location", "")


def test_ohif_code_flow_needs_pkce_and_a_loopback_ohif_redirect(realm: Realm) -> None:
    port = free_port()
    for host in ("127.0.0.1", "localhost"):  # any port on loopback (RFC 8252), path under /ohif/ only
        status, page, _ = _authorize(realm, f"http://{host}:{port}/ohif/callback", pkce=True)
        assert status == 200 and 'id="kc-form-login"' in page
    status, page, _ = _authorize(realm, f"http://127.0.0.1:{port}/elsewhere", pkce=True)
    assert status == 400 and "redirect_uri" in page
    status, _, location = _authorize(realm, f"http://127.0.0.1:{port}/ohif/callback", pkce=False)
    assert status == 302 and "error=invalid_request" in location and "code_challenge" in location


# --- valid tokens --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", sorted(DEVELOPMENT_USERS))
def test_each_dev_user_gets_an_accepted_token(realm: Realm, username: str) -> None:
    token = realm.token(username)
    accepted = realm.validator().validate(f"Bearer {token}")
    spec = DEVELOPMENT_USERS[username]
    assert accepted.username == username
    assert accepted.roles == frozenset(spec["roles"])
    assert accepted.has_role(spec["roles"][0]) and not accepted.has_role("worker")
    assert accepted.assigned_patients == frozenset(spec["assigned_patients"])
    assert accepted.client_id == CLI_CLIENT
    assert accepted.subject == realm.admin.user_id(username)
    assert abs(accepted.expires_at - time.time() - 300) < 30
    claims = claims_of(token)
    assert AUDIENCE in ([claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"])
    if spec["assigned_patients"]:  # the user profile kept the attribute and the mapper emits an array
        assert sorted(claims["assigned_patients"]) == sorted(spec["assigned_patients"])


def test_worker_service_account_gets_a_token_by_client_credentials(realm: Realm) -> None:
    secret = json.loads((keycloak_home(realm.home) / "dev-users.json").read_text())["clients"]["oncoflow-worker"]
    status, body = token_request(realm.process.token_url, {"grant_type": "client_credentials",
                                                           "client_id": "oncoflow-worker",
                                                           "client_secret": secret["secret"]})
    assert status == 200, body
    accepted = realm.validator().validate(f"Bearer {body['access_token']}")
    assert accepted.roles == {"worker"} and accepted.client_id == "oncoflow-worker"
    assert accepted.username == "service-account-oncoflow-worker" and not accepted.assigned_patients
    status, body = token_request(realm.process.token_url, {"grant_type": "client_credentials",
                                                           "client_id": "oncoflow-worker", "client_secret": "wrong"})
    assert status == 401, body


def test_validator_is_thread_safe_and_fetches_the_keys_once(realm: Realm) -> None:
    validator = realm.validator()
    tokens = {name: realm.token(name) for name in DEVELOPMENT_USERS}
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                for name, token in tokens.items():
                    assert validator.validate(f"Bearer {token}").username == name
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            failures.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_call_ms = (time.monotonic() - started) / (8 * 50 * len(tokens)) * 1000
    assert not failures, failures[0]
    assert validator.fetch_count == 1
    assert per_call_ms < 20, f"{per_call_ms:.2f} ms per validation"


# --- rejections ----------------------------------------------------------------------------------------------


def _reason(validator: TokenValidator, header: str | None) -> str:
    with pytest.raises(TokenRejected) as caught:
        validator.validate(header)
    return caught.value.reason


def _create_client(realm: Realm, client_id: str, audience: str, lifespan_s: int | None = None) -> None:
    """A public client whose access tokens name ``audience`` (as a custom audience, so it need not exist)."""
    mappers = [{"name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
                "config": {"included.custom.audience": audience, "access.token.claim": "true"}}]
    attributes = {"access.token.lifespan": str(lifespan_s)} if lifespan_s else {}
    if realm.admin.call("GET", f"/clients?clientId={client_id}"):
        return
    realm.admin.call("POST", "/clients", {"clientId": client_id, "publicClient": True, "standardFlowEnabled": False,
                                          "directAccessGrantsEnabled": True, "protocolMappers": mappers,
                                          "attributes": attributes})


def test_expired_token_is_rejected(realm: Realm) -> None:
    _create_client(realm, "test-short-lived", audience=AUDIENCE, lifespan_s=2)
    token = realm.token("doctor.dev", client_id="test-short-lived")
    validator = realm.validator(leeway_s=0)
    assert validator.validate(f"Bearer {token}").username == "doctor.dev"  # valid while fresh
    time.sleep(max(0.0, claims_of(token)["exp"] - time.time()) + 1.2)
    assert _reason(validator, f"Bearer {token}") == at.EXPIRED


def test_wrong_audience_is_rejected(realm: Realm) -> None:
    _create_client(realm, "test-other-audience", audience="billing-service")
    token = realm.token("radiologist.dev", client_id="test-other-audience")
    assert AUDIENCE not in claims_of(token)["aud"] and "billing-service" in claims_of(token)["aud"]
    assert _reason(realm.validator(), f"Bearer {token}") == at.WRONG_AUDIENCE
    # The same token passes for the audience it does name: the audience was the only fault. (Not "account":
    # whether Keycloak adds that one depends on the user's default roles.)
    other = TokenValidator(realm.process.issuer, "billing-service", realm.process.jwks_url)
    assert other.validate(f"Bearer {token}").username == "radiologist.dev"


def test_admin_client_logs_in_again_when_its_token_is_refused(realm: Realm) -> None:
    """Admin tokens live a minute: a client kept longer (the fixture's, the plug-in's) must log in again."""
    admin = realm.fresh_admin()
    refused = admin.token[:-8] + ("A" * 8 if not admin.token.endswith("A" * 8) else "B" * 8)  # signature broken
    status, _, _ = _request("GET", f"{realm.process.base_url}/admin/realms/oncoflow/users?max=1", refused)
    assert status == 401  # what Keycloak answers an expired token too
    admin.token = refused
    assert admin.user_id("doctor.dev")  # answered after a new login
    assert admin.token != refused


def test_wrong_issuer_is_rejected(realm: Realm) -> None:
    token = realm.token("clinician.dev")
    wrong = realm.process.issuer.replace("127.0.0.1", "localhost")
    validator = TokenValidator(wrong, AUDIENCE, realm.process.jwks_url)
    assert _reason(validator, f"Bearer {token}") == at.WRONG_ISSUER


def test_forged_token_with_keycloaks_kid_is_rejected(realm: Realm) -> None:
    real = realm.token("clinician.dev")
    kid = jwt.get_unverified_header(real)["kid"]
    claims = claims_of(real) | {"realm_access": {"roles": ["admin"]}, "assigned_patients": ["EVERYONE"]}
    validator = realm.validator()
    assert validator.validate(f"Bearer {real}").roles == {"clinician"}
    assert _reason(validator, f"Bearer {sign(claims, kid)}") == at.BAD_SIGNATURE
    # Tampering with the payload of a real token breaks its signature too.
    header, _, signature = real.split(".")
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    assert _reason(validator, f"Bearer {tampered}") == at.BAD_SIGNATURE


def test_unknown_kid_is_rejected_with_one_throttled_refresh(realm: Realm) -> None:
    claims = claims_of(realm.token("doctor.dev"))
    validator = realm.validator()
    validator.validate(f"Bearer {realm.token('doctor.dev')}")
    assert validator.fetch_count == 1
    # An unknown kid within min_refresh_interval_s of the last fetch does not refetch.
    assert _reason(validator, f"Bearer {sign(claims, 'not-a-keycloak-key')}") == at.UNKNOWN_KEY
    assert validator.fetch_count == 1
    eager = realm.validator(min_refresh_interval_s=0)
    assert _reason(eager, f"Bearer {sign(claims, 'not-a-keycloak-key')}") == at.UNKNOWN_KEY
    assert _reason(eager, f"Bearer {sign(claims, 'another-unknown-key')}") == at.UNKNOWN_KEY
    assert eager.fetch_count == 2  # once per unknown kid when not throttled


def test_malformed_headers_and_algorithms_are_rejected(realm: Realm) -> None:
    validator = realm.validator()
    token = realm.token("doctor.dev")
    kid = jwt.get_unverified_header(token)["kid"]
    assert _reason(validator, None) == at.MISSING
    assert _reason(validator, "") == at.MISSING
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer not-a-jwt", f"Token {token}", "Bearer a.b.c",
                   f"Bearer {token} extra"):
        assert _reason(validator, header) == at.MALFORMED, header
    payload = b64(json.dumps(claims_of(token)).encode())
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': kid}).encode())}.{payload}."
    assert _reason(validator, f"Bearer {unsigned}") == at.UNSUPPORTED_ALGORITHM
    hs_header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    mac = hmac.new(b"guessed", f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    assert _reason(validator, f"Bearer {hs_header}.{payload}.{b64(mac)}") == at.UNSUPPORTED_ALGORITHM
    assert validator.validate(f"bearer  {token}").username == "doctor.dev"  # scheme is case-insensitive


def test_id_token_is_not_an_access_token(realm: Realm) -> None:
    status, body = token_request(realm.process.token_url, {
        "grant_type": "password", "client_id": CLI_CLIENT, "username": "doctor.dev",
        "password": realm.logins["doctor.dev"].password, "totp": realm.codes.code("doctor.dev"),
        "scope": "openid"})
    assert status == 200, body
    id_token = body["id_token"]
    # The ID token's audience is the client itself; a validator for that audience still refuses its type.
    validator = TokenValidator(realm.process.issuer, CLI_CLIENT, realm.process.jwks_url)
    assert _reason(validator, f"Bearer {id_token}") == at.WRONG_TOKEN_TYPE
    assert _reason(realm.validator(), f"Bearer {id_token}") == at.WRONG_AUDIENCE



# --- two factors (TOTP) --------------------------------------------------------------------------------------

PRIVILEGED = ("admin.dev", "radiologist.dev", "doctor.dev")  # the roles Keycloak asks for a TOTP code


def _one_second_apart() -> None:
    time.sleep(1.2)  # the realm's brute-force guard locks a user after two failures within a second


def test_privileged_users_get_no_token_with_their_password_alone(realm: Realm) -> None:
    for username in PRIVILEGED:
        status, body = realm.grant(username)
        assert (status, body["error"]) == (401, "invalid_grant"), (username, body)
        _one_second_apart()


def test_a_right_code_gives_a_token_a_wrong_or_replayed_one_does_not(realm: Realm) -> None:
    code = realm.codes.code("radiologist.dev")
    status, body = realm.grant("radiologist.dev", totp=code)
    assert status == 200, body
    assert {"pwd", "otp"} <= set(claims_of(body["access_token"])["amr"])  # what Orthanc's filter checks
    assert realm.validator().validate(f"Bearer {body['access_token']}").authentication_methods >= {"otp"}
    _one_second_apart()
    status, body = realm.grant("radiologist.dev", totp=code)  # the same code again, in its window
    assert (status, body["error"]) == (401, "invalid_grant"), body
    _one_second_apart()
    wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
    status, body = realm.grant("radiologist.dev", totp=wrong)
    assert (status, body["error"]) == (401, "invalid_grant"), body


def test_the_second_factor_is_optional_for_clinicians_and_never_skipped_for_doctors(realm: Realm) -> None:
    """Users made here without a TOTP credential: a clinician logs in with the password alone (no ``otp`` in
    ``amr``); a doctor without one gets no token at all, by password grant (never an error that lets it pass)."""
    admin = realm.fresh_admin()
    for username, role in (("clinician.nootp", "clinician"), ("doctor.nootp", "doctor")):
        admin.ensure_user(username, "a-long-test-password-1", [role], [])
    status, body = token_request(realm.process.token_url, {
        "grant_type": "password", "client_id": CLI_CLIENT, "username": "clinician.nootp",
        "password": "a-long-test-password-1"})
    assert status == 200, body
    assert "otp" not in claims_of(body["access_token"]).get("amr", [])
    status, body = token_request(realm.process.token_url, {
        "grant_type": "password", "client_id": CLI_CLIENT, "username": "doctor.nootp",
        "password": "a-long-test-password-1"})
    assert status == 401 and "access_token" not in str(body), body


def test_refused_logins_reach_oncoflows_audit_log_once_each(realm: Realm, tmp_path: Path) -> None:
    """Keycloak's LOGIN_ERROR events, read by the plug-in's own service account (``view-events``), become one
    ``login.refused`` record each; a second pull adds none."""
    secret = tmp_path / "keycloak-assignments.json"
    secret.write_text(json.dumps({"client_id": "oncoflow-assignments",
                                  "secret": realm.fresh_admin().client_secret("oncoflow-assignments")}))
    status, _ = realm.grant("doctor.dev")  # no code: refused, as an event
    assert status == 401
    records: list[dict[str, Any]] = []

    class Audit:
        def record(self, action: str, resource: str | None, outcome: str, detail: str | None = None,
                   actor: str | None = None, role: str | None = None) -> None:
            records.append({"action": action, "outcome": outcome, "detail": detail, "actor": actor, "role": role})

    refusals = LoginRefusals(lambda: AdminClient.from_secret_file(realm.process.base_url, "oncoflow", secret),
                             Audit(), tmp_path / "state.json")  # type: ignore[arg-type]
    events = AdminClient.from_secret_file(realm.process.base_url, "oncoflow", secret).login_errors()
    assert any(e["details"].get("username") == "doctor.dev" and e["error"] == "invalid_user_credentials"
               for e in events), events
    assert refusals.pull() == len(events) == len(records) > 0
    assert refusals.pull() == 0
    mine = [r for r in records if r["actor"] == "doctor.dev"]
    assert mine and all(r["action"] == "login.refused" and r["role"] == "anonymous" for r in mine)
    assert all(r["detail"].startswith("oncoflow-cli password login: invalid_user_credentials (keycloak event ")
               for r in mine), mine
