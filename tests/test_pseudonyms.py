"""Patient pseudonyms: stable per installation key, different across keys, key file private."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from oncoflow.security.pseudonyms import patient_pseudonym, pseudonym_key


def test_pseudonyms_are_stable_keyed_and_the_key_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pseudonym.key"
    key = pseudonym_key(path)
    assert pseudonym_key(path) == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = patient_pseudonym("PAT-0001", key)
    assert re.fullmatch(r"OF-[A-Z2-7]{4}-[A-Z2-7]{4}", first)
    assert patient_pseudonym("PAT-0001", key) == first
    assert patient_pseudonym("PAT-0002", key) != first
    assert patient_pseudonym("PAT-0001", pseudonym_key(tmp_path / "other.key")) != first
    assert "PAT" not in first
