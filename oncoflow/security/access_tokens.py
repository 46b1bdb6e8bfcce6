"""Validate Keycloak access tokens for OncoFlow's HTTP filter: ``Authorization: Bearer <jwt>`` -> :class:`AccessToken`.

Checks, in order: the header's form; the JWT header (RS256 only, a ``kid`` required); the signature against the
realm's JWKS (cached; an unknown ``kid`` refreshes the set once, at most every ``min_refresh_interval_s``); then
``exp`` and ``iat`` (required), ``nbf`` (when present), the issuer and the audience (both explicit), and the
token type (Keycloak marks access tokens ``typ: Bearer``; ID and refresh tokens are refused).

Keycloak's access tokens carry no ``nbf``, so it is verified when present, not required.
A :class:`TokenValidator` is safe to share between threads: the only shared state is the key cache, under a lock,
and a request whose key is cached costs one RSA verification and no I/O.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from oncoflow.security.access_policy import ROLE_PERMISSIONS

ONCOFLOW_ROLES = frozenset(ROLE_PERMISSIONS)  # the roles the role table knows; others are ignored
ALGORITHMS = ("RS256",)

# TokenRejected reasons (stable strings: the filter may log them and map them to 401/503).
MISSING = "missing token"
MALFORMED = "malformed"
UNSUPPORTED_ALGORITHM = "unsupported algorithm"
UNKNOWN_KEY = "unknown key"
KEYS_UNAVAILABLE = "keys unavailable"
BAD_SIGNATURE = "bad signature"
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
WRONG_ISSUER = "wrong issuer"
WRONG_AUDIENCE = "wrong audience"
WRONG_TOKEN_TYPE = "wrong token type"


class TokenRejected(Exception):
    """The request's token is not acceptable; ``reason`` is one of the module's reason constants."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class AccessToken:
    """What OncoFlow needs from a validated access token."""

    subject: str  # Keycloak user id (sub)
    username: str  # preferred_username (service accounts: service-account-<client>)
    roles: frozenset[str]  # realm roles among ONCOFLOW_ROLES
    assigned_patients: frozenset[str]  # PatientIDs from the user attribute assigned_patients
    client_id: str | None  # azp: the client the token was issued to
    expires_at: int  # exp, seconds since the epoch
    authentication_methods: frozenset[str] = frozenset()  # amr (RFC 8176): "pwd", "otp", ... as Keycloak set them

    def has_role(self, role: str) -> bool:
        return role in self.roles


class TokenValidator:
    """Validates bearer tokens of one issuer for one audience (OncoFlow: the ``orthanc`` client)."""

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None, leeway_s: float = 30,
                 jwks_ttl_s: float = 300, min_refresh_interval_s: float = 10, timeout_s: float = 5) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url or f"{self.issuer}/protocol/openid-connect/certs"
        self.leeway_s = leeway_s
        self.jwks_ttl_s = jwks_ttl_s
        self.min_refresh_interval_s = min_refresh_interval_s
        # Our own cache below; the client only fetches and parses (its cache would double ours).
        self._client = PyJWKClient(self.jwks_url, cache_jwk_set=False, cache_keys=False, timeout=int(timeout_s))
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf
        self._lock = threading.Lock()
        self.fetch_count = 0  # JWKS downloads so far (for tests and metrics)

    def _refresh_locked(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetch_count += 1
        try:
            jwk_set = self._client.get_jwk_set(refresh=True)
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenRejected(KEYS_UNAVAILABLE, str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(KEYS_UNAVAILABLE, f"JWKS unusable: {exc}") from exc
        self._keys = {key.key_id: key for key in jwk_set.keys
                      if key.key_id and key.key_type == "RSA" and key.public_key_use in (None, "sig")
                      and (key.algorithm_name or "RS256") in ALGORITHMS}

    def _signing_key(self, kid: str) -> PyJWK:
        now = time.monotonic()
        key = self._keys.get(kid)
        if key is not None and now - self._fetched_at < self.jwks_ttl_s:
            return key
        with self._lock:
            key = self._keys.get(kid)
            stale = time.monotonic() - self._fetched_at >= self.jwks_ttl_s
            if key is not None and not stale:
                return key
            if stale or time.monotonic() - self._fetched_at >= self.min_refresh_interval_s:
                try:
                    self._refresh_locked()
                except TokenRejected:
                    if key is None:
                        raise
                    return key  # Keycloak unreachable: keep using a known key until it answers again
            key = self._keys.get(kid)
        if key is None:
            raise TokenRejected(UNKNOWN_KEY, f"kid {kid!r} is not in {self.jwks_url}")
        return key

    def validate(self, authorization_header: str | None) -> AccessToken:
        """``"Bearer <jwt>"`` -> :class:`AccessToken`, or raise :class:`TokenRejected`."""
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(MALFORMED, str(exc)) from exc
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected(UNSUPPORTED_ALGORITHM, f"alg {header.get('alg')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected(UNKNOWN_KEY, "no kid in the token header")
        key = self._signing_key(kid)
        try:
            claims = jwt.decode(token, key.key, algorithms=list(ALGORITHMS), audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_signature": True,
                                         "verify_exp": True, "verify_iat": True, "verify_nbf": True,
                                         "verify_iss": True, "verify_aud": True})
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected(BAD_SIGNATURE, str(exc)) from exc
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected(EXPIRED, str(exc)) from exc
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError) as exc:
            raise TokenRejected(NOT_YET_VALID, str(exc)) from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenRejected(WRONG_ISSUER, str(exc)) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected(WRONG_AUDIENCE, str(exc)) from exc
        except jwt.PyJWTError as exc:  # DecodeError, MissingRequiredClaimError, ...
            raise TokenRejected(MALFORMED, str(exc)) from exc
        return _access_token(claims)


def _bearer_token(authorization_header: str | None) -> str:
    if not authorization_header or not authorization_header.strip():
        raise TokenRejected(MISSING)
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or token.count(".") != 2:
        raise TokenRejected(MALFORMED, "expected 'Bearer <jwt>'")
    return token


def _strings(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


def _access_token(claims: dict[str, Any]) -> AccessToken:
    if claims.get("typ", "Bearer") != "Bearer":
        raise TokenRejected(WRONG_TOKEN_TYPE, f"typ {claims.get('typ')!r}")
    realm_access = claims.get("realm_access")
    roles = _strings(realm_access.get("roles")) if isinstance(realm_access, dict) else frozenset()
    subject, exp = claims.get("sub"), claims.get("exp")
    if not isinstance(subject, str) or not isinstance(exp, int | float):
        raise TokenRejected(MALFORMED, "sub or exp of the wrong type")
    username = claims.get("preferred_username")
    client_id = claims.get("azp")
    return AccessToken(subject=subject, username=username if isinstance(username, str) else subject,
                       roles=roles & ONCOFLOW_ROLES, assigned_patients=_strings(claims.get("assigned_patients")),
                       client_id=client_id if isinstance(client_id, str) else None, expires_at=int(exp),
                       authentication_methods=_strings(claims.get("amr")))
