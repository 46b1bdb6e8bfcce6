"""Stable patient pseudonyms for documents that leave the PACS (the PDF report).

``OF-XXXX-XXXX`` is an HMAC-SHA256 of the PatientID under a secret key kept in
``$ONCOFLOW_HOME/secrets/pseudonym.key`` (created on first use, mode 0600): the same
patient always gets the same pseudonym on one installation, and without the key it
cannot be computed from a guessed PatientID.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path


def pseudonym_key(path: Path) -> bytes:
    """The installation's pseudonym key at ``path``; created (32 random bytes, 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise ValueError(f"the pseudonym key {path} is shorter than 16 bytes")
    return key


def patient_pseudonym(patient_id: str, key: bytes) -> str:
    """``OF-XXXX-XXXX`` (RFC 4648 base32, 40 bits) for ``patient_id``."""
    digest = hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).digest()
    code = base64.b32encode(digest[:5]).decode("ascii")
    return f"OF-{code[:4]}-{code[4:8]}"
