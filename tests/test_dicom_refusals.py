"""Orthanc's refusal lines, as Orthanc 1.10.1 wrote them on this machine, become one audit record each.

The lines below were copied from Orthanc 1.10.1's log (default verbosity) while dcmtk's tools were refused by a
store-only peer's entry, a wrong host, an unknown AE title, a wrong called AE title and a plain association on a
TLS port. The follower is then run on a real file that grows, is truncated (``copytruncate``) and grows again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from oncoflow.security.dicom_refusals import DicomRefusal, DicomRefusalAudit, RefusalParser

ORTHANC_1_10_1_LINES = """\
I1207 06:55:56.998761 CommandDispatcher.cpp:490] Association Received from AET STORESCU on IP 127.0.0.1
W1207 06:55:57.035530 main.cpp:340] DICOM authorization rejected for AET STORESCU on IP 127.0.0.1: The DICOM command \
Find is not allowed for this modality according to configuration option "DicomModalities"
W1207 06:55:57.035561 CommandDispatcher.cpp:828] Rejected Find request from remote DICOM modality with AET \
"STORESCU" and hostname "127.0.0.1"
W1207 06:55:57.139469 main.cpp:340] DICOM authorization rejected for AET STORESCU on IP 127.0.0.1: The DICOM command \
Get is not allowed for this modality according to configuration option "DicomModalities"
W1207 06:55:57.139499 CommandDispatcher.cpp:828] Rejected Get request from remote DICOM modality with AET \
"STORESCU" and hostname "127.0.0.1"
W1207 06:40:54.544753 OrthancConfiguration.cpp:770] Modality "NOBODY" is not listed in the "DicomModalities" \
configuration option
W1207 06:40:54.544755 CommandDispatcher.cpp:617] Rejected association for remote AET NOBODY on IP 127.0.0.1
W1207 06:40:54.658222 OrthancConfiguration.cpp:781] Forbidding access from AET "WRONGHOST" given its hostname \
(127.0.0.1) does not match the "DicomModalities" configuration option (127.0.0.2 was expected)
W1207 06:40:54.658227 CommandDispatcher.cpp:617] Rejected association for remote AET WRONGHOST on IP 127.0.0.1
W1207 06:40:54.732917 CommandDispatcher.cpp:602] Rejected association, because of a bad called AET in the request \
(BADCALLED)
E1207 06:53:33.487165 CommandDispatcher.cpp:284] Receiving Association failed: TLS error: wrong version number
W1207 06:55:57.515531 main.cpp:404] DICOM authorization rejected  for AET NOBODY on IP 127.0.0.1: This AET is not \
listed in configuration option "DicomModalities"
W1207 06:55:57.515556 CommandDispatcher.cpp:828] Rejected Store request from remote DICOM modality with AET \
"NOBODY" and hostname "127.0.0.1"
W1207 06:55:57.651573 main.cpp:415] DICOM authorization rejected for AET WRONGHOST on IP 127.0.0.1: Its IP address \
should be 127.0.0.2 according to configuration option "DicomModalities"
W1207 06:55:57.651602 CommandDispatcher.cpp:828] Rejected Store request from remote DICOM modality with AET \
"WRONGHOST" and hostname "127.0.0.1"
I1207 06:55:58.000001 ServerContext.cpp:641] Already stored
"""

EXPECTED = [
    DicomRefusal("STORESCU", "127.0.0.1", "Find", "Find not allowed for this peer"),
    DicomRefusal("STORESCU", "127.0.0.1", "Get", "Get not allowed for this peer"),
    DicomRefusal("NOBODY", "127.0.0.1", "association", "unknown AE title"),
    DicomRefusal("WRONGHOST", "127.0.0.1", "association", "calls from another host than configured (127.0.0.2)"),
    DicomRefusal("", "", "association", "called AE title 'BADCALLED' is not OncoFlow's"),
    DicomRefusal("", "", "association", "TLS handshake failed: wrong version number"),
    DicomRefusal("NOBODY", "127.0.0.1", "Store", "unknown AE title"),
    DicomRefusal("WRONGHOST", "127.0.0.1", "Store", "calls from another host than configured (127.0.0.2)"),
]


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, action: str, resource_uid: str | None, outcome: str, detail: str | None = None,
               actor: str | None = None, role: str | None = None) -> None:
        self.records.append({"action": action, "resource": resource_uid, "outcome": outcome, "detail": detail,
                             "actor": actor, "role": role})


def test_each_refusal_line_gives_one_refusal_with_its_reason() -> None:
    parser = RefusalParser()
    found = [r for line in ORTHANC_1_10_1_LINES.splitlines() if (r := parser.feed(line)) is not None]
    assert found == EXPECTED


def test_actor_and_detail_are_audit_safe() -> None:
    assert DicomRefusal("STORE SCU", "10.0.0.9", "Find", "x").actor() == "STORE SCU"
    assert DicomRefusal("", "", "association", "x").actor() == "unknown-aet"
    assert DicomRefusal("BAD\\AET", "1.2.3.4", "Find", "x").actor() == "unknown-aet"
    detail = DicomRefusal("A", "127.0.0.1", "association", "called AE title 'É\x07' is not OncoFlow's").detail()
    assert detail.isascii() and detail.isprintable() and len(detail) <= 200


def _wait(audit: FakeAudit, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(audit.records) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_follower_reads_new_lines_only_and_survives_truncation(tmp_path: Path) -> None:
    log = tmp_path / "orthanc-server.log"
    log.write_text(ORTHANC_1_10_1_LINES)  # refusals before OncoFlow started: not its to audit again
    audit = FakeAudit()
    follower = DicomRefusalAudit(log, audit, poll_s=0.02)  # type: ignore[arg-type]
    follower.start()
    try:
        time.sleep(0.3)
        lines = ORTHANC_1_10_1_LINES.splitlines(keepends=True)
        with log.open("a") as out:
            out.write(lines[1])
            out.write(lines[2][:40])  # Orthanc in the middle of a line
            out.flush()
            time.sleep(0.2)
            out.write(lines[2][40:])
        _wait(audit, 1)
        log.write_text("")  # rotated by copytruncate
        time.sleep(0.2)
        with log.open("a") as out:
            out.writelines(lines[7:9])
        _wait(audit, 2)
        time.sleep(0.3)
    finally:
        follower.stop()
    assert [(r["action"], r["actor"], r["role"], r["outcome"], r["detail"]) for r in audit.records] == [
        ("dicom.refused", "STORESCU", "modality", "refused", "Find from 127.0.0.1: Find not allowed for this peer"),
        ("dicom.refused", "WRONGHOST", "modality", "refused",
         "association from 127.0.0.1: calls from another host than configured (127.0.0.2)"),
    ]
