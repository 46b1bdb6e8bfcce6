"""Unit tests of the upload guard (:mod:`oncoflow.security.upload_guard`) on the hostile corpus."""

from __future__ import annotations

from typing import Any

import pytest

from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.security.upload_guard import (
    MAX_SEQUENCE_DEPTH,
    StoredInstanceGuard,
    UploadGuard,
    refusal_reason,
    sequence_depth,
)

from .conftest import unique_study
from .hostile_dicom_corpus import HostileCase, _before_pixels, _deep_sequence, _encode, clean_slice, hostile_cases

CASES = hostile_cases(clean_slice(unique_study("guard-unit")))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_verdicts(case: HostileCase) -> None:
    reason = refusal_reason(case.data)
    if case.guard_reason is None:
        assert reason is None, reason
    else:
        assert reason is not None and case.guard_reason in reason, reason
        assert reason.isascii() and reason.isprintable() and len(reason) <= 200


def test_every_polyglot_but_tiff_is_refused() -> None:
    polyglots = [c for c in CASES if c.kind == "polyglot"]
    assert len(polyglots) >= 6
    for case in polyglots:
        assert (refusal_reason(case.data) is None) == (case.name == "preamble-tiff-allowed"), case.name


def test_depth_limit_is_exact() -> None:
    clean = clean_slice(unique_study("guard-depth"))
    for levels in (1, MAX_SEQUENCE_DEPTH - 1, MAX_SEQUENCE_DEPTH, MAX_SEQUENCE_DEPTH + 1, 47):
        data = _before_pixels(_encode(clean, "1.2.3"), _deep_sequence(levels))
        assert sequence_depth(data) == min(levels, MAX_SEQUENCE_DEPTH + 1)
        assert (refusal_reason(data) is None) == (levels <= MAX_SEQUENCE_DEPTH)


class _FakeOrthanc:
    """Orthanc's REST API as the guard sees it: instance files and their Origin metadata."""

    def __init__(self, instances: dict[str, tuple[str, bytes]]) -> None:
        self.instances = dict(instances)  # id -> (Origin metadata, file)
        self.routes: dict[str, Any] = {}
        self.deleted: list[str] = []

    def RegisterRestCallback(self, uri: str, callback: Any) -> None:  # noqa: N802 (Orthanc's name)
        self.routes[uri] = callback

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802
        _, instance_id, what = uri.split("/", 3)[1:]
        origin, data = self.instances[instance_id]
        return origin.encode() if what == "metadata/Origin" else data

    def RestApiDelete(self, uri: str) -> None:  # noqa: N802
        instance_id = uri.rsplit("/", 1)[1]
        del self.instances[instance_id]
        self.deleted.append(instance_id)


class _FakeAudit:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def record(self, action: str, resource_uid: str | None, outcome: str, detail: str | None = None,
               actor: str = "anonymous", role: str = "anonymous") -> None:
        self.records.append((action, resource_uid, outcome, detail, actor, role))


def _case(name: str) -> bytes:
    return next(c for c in CASES if c.name == name).data


def test_stored_instance_guard_deletes_and_audits_what_it_refuses() -> None:
    orthanc = _FakeOrthanc({"clean": ("DicomProtocol", _case("clean")), "mz": ("WebDav", _case("polyglot-mz")),
                            "own": ("Plugins", _case("polyglot-mz")), "empty": ("DicomProtocol", b"")})
    audit = _FakeAudit()
    guard = StoredInstanceGuard(OrthancRest(orthanc), UploadGuard(audit))  # type: ignore[arg-type]
    assert guard("clean") is None
    assert "MZ" in (guard("mz") or "")
    assert guard("own") is None  # the plugin's own stores (and REST uploads its route checked) are not re-read
    assert guard("empty") is not None
    assert guard("gone") is None  # deleted meanwhile
    assert orthanc.deleted == ["mz", "empty"] and set(orthanc.instances) == {"clean", "own"}
    assert [(r[0], r[2], r[4], r[5]) for r in audit.records] == [
        ("dicom.store.refused", "refused", "webdav", "modality"),
        ("dicom.store.refused", "refused", "dicom", "modality")]


def test_guard_fails_closed_and_survives_a_broken_audit() -> None:
    class BrokenAudit(_FakeAudit):
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("audit down")

    orthanc = _FakeOrthanc({"mz": ("RestApi", b"MZ" + bytes(126) + b"DICM"), "odd": ("Martian", b"")})
    guard = StoredInstanceGuard(OrthancRest(orthanc), UploadGuard(BrokenAudit()))  # type: ignore[arg-type]
    assert guard("mz") is not None
    assert StoredInstanceGuard(OrthancRest(orthanc), UploadGuard(None))("odd") is not None  # unknown origin, no audit
    assert orthanc.deleted == ["mz", "odd"]
