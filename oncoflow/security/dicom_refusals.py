"""DICOM refusals, read from Orthanc's log: one audit record per refused association or command.

Orthanc 1.10.1 refuses a peer that is not configured, that calls from another IP address than its entry
(``DicomCheckModalityHost``), that names another called AE title, or that asks for a command its entry does not
allow (a store-only modality's C-FIND, C-MOVE or C-GET). It tells no plug-in (no callback, no change, no Lua
hook sees a refusal; measured), but logs each refusal at WARNING level, so OncoFlow follows Orthanc's log file
(``--logfile``) and records every refusal in the audit log (action ``dicom.refused``, role ``modality``, the
calling AE title as actor, the command, the caller's IP and the reason as detail).

Lines read (Orthanc 1.10.1; pinned by a test on real log lines, since a log is not a stable API)::

    W... main.cpp:340] DICOM authorization rejected for AET STORESCU on IP 127.0.0.1: The DICOM command Find is
        not allowed for this modality according to configuration option "DicomModalities"     (the reason)
    W... CommandDispatcher.cpp:828] Rejected Find request from remote DICOM modality with AET "STORESCU" and
        hostname "127.0.0.1"                                                                   (the record)
    W... OrthancConfiguration.cpp:781] Forbidding access from AET "X" given its hostname (127.0.0.1) does not
        match the "DicomModalities" configuration option (10.0.0.2 was expected)              (the reason)
    W... CommandDispatcher.cpp:617] Rejected association for remote AET X on IP 127.0.0.1      (the record)
    W... CommandDispatcher.cpp:602] Rejected association, because of a bad called AET in the request (Y)
    E... CommandDispatcher.cpp:284] Receiving Association failed: TLS error: wrong version number

The follower reads only new lines (it starts at the end of the file), survives truncation and rotation
(``copytruncate``: Orthanc never reopens its log), and never calls into Orthanc: reading a file cannot
deadlock the plug-in the way Orthanc's store hooks do in orthanc-python 4.0.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from oncoflow.security.access_audit import AccessAudit

log = logging.getLogger("oncoflow.dicom_refusals")

_PREFIX = r"^[IWE]\d{4} [\d:.]+ (?:\d+ )?[\w.]+:\d+\] "
_REQUEST = re.compile(_PREFIX + r'Rejected (?P<command>[\w-]+) request from remote DICOM modality with AET '
                                r'"(?P<aet>[^"]*)" and hostname "(?P<ip>[^"]*)"')
_ASSOCIATION = re.compile(_PREFIX + r"Rejected association for remote AET (?P<aet>\S*) on IP (?P<ip>\S+)")
_CALLED_AET = re.compile(_PREFIX + r"Rejected association, because of a bad called AET in the request "
                                   r"\((?P<called>.*)\)\s*$")
_TLS = re.compile(_PREFIX + r"Receiving Association failed: TLS error: (?P<error>.*?)\s*$")
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_PREFIX + r"DICOM authorization rejected for AET (?P<aet>\S*) on IP \S+: The DICOM command "
                          r"(?P<command>[\w-]+) is not allowed"), "{command} not allowed for this peer"),
    (re.compile(_PREFIX + r"DICOM authorization rejected +for AET (?P<aet>\S*) on IP \S+: This AET is not listed"),
     "unknown AE title"),
    (re.compile(_PREFIX + r"DICOM authorization rejected for AET (?P<aet>\S*) on IP \S+: Its IP address should "
                          r"be (?P<expected>\S+)"), "calls from another host than configured ({expected})"),
    (re.compile(_PREFIX + r'Modality "(?P<aet>[^"]*)" is not listed in the "DicomModalities"'), "unknown AE title"),
    (re.compile(_PREFIX + r'Forbidding access from AET "(?P<aet>[^"]*)" given its hostname \([^)]*\) does not '
                          r"match .*\((?P<expected>[^)]*) was expected\)"),
     "calls from another host than configured ({expected})"),
)
_AUDIT_SAFE = re.compile(r"[A-Za-z0-9._@:+-][A-Za-z0-9._@:+ -]{0,62}[A-Za-z0-9._@:+-]|[A-Za-z0-9._@:+-]")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class DicomRefusal:
    """One refused association or command: the caller's AE title and IP, what it asked, and why it was refused."""

    calling_aet: str  # "" when Orthanc's line does not name it (a bad called AE title, a failed TLS handshake)
    ip: str
    command: str  # "association", "Find", "Get", "Move", "Store", "Echo", ...
    reason: str

    def detail(self) -> str:
        """The audit record's detail: printable ASCII, at most 200 characters."""
        return _PRINTABLE.sub("?", f"{self.command} from {self.ip or 'unknown IP'}: {self.reason}")[:200]

    def actor(self) -> str:
        """The calling AE title when the audit log can hold it as an actor, else ``unknown-aet``."""
        return self.calling_aet if _AUDIT_SAFE.fullmatch(self.calling_aet) else "unknown-aet"


class RefusalParser:
    """Turns Orthanc's log lines into :class:`DicomRefusal` (one per refusal); keeps the reason line that comes
    just before each refusal line, by AE title."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def feed(self, line: str) -> DicomRefusal | None:
        for pattern, template in _REASONS:
            if match := pattern.match(line):
                self._reasons[match["aet"]] = template.format(**match.groupdict())
                return None
        if match := _REQUEST.match(line):
            reason = self._reasons.pop(match["aet"], f"{match['command']} refused")
            return DicomRefusal(match["aet"], match["ip"], match["command"], reason)
        if match := _ASSOCIATION.match(line):
            return DicomRefusal(match["aet"], match["ip"], "association",
                                self._reasons.pop(match["aet"], "association refused"))
        if match := _CALLED_AET.match(line):
            return DicomRefusal("", "", "association", f"called AE title {match['called'][:16]!r} is not OncoFlow's")
        if match := _TLS.match(line):
            return DicomRefusal("", "", "association", f"TLS handshake failed: {match['error'][:80]}")
        return None


class DicomRefusalAudit:
    """Follows Orthanc's log file in a daemon thread and audits every refusal it reads."""

    def __init__(self, log_path: Path, audit: AccessAudit, poll_s: float = 0.2) -> None:
        self.log_path = log_path
        self.audit = audit
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, refusal: DicomRefusal) -> None:
        self.audit.record("dicom.refused", None, "refused", refusal.detail(), actor=refusal.actor(), role="modality")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="oncoflow-dicom-refusals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        parser = RefusalParser()
        stream = None
        inode = None
        pending = b""
        try:
            while not self._stop.is_set():
                try:
                    status = os.stat(self.log_path)
                except FileNotFoundError:
                    self._stop.wait(1.0)
                    continue
                if stream is None or status.st_ino != inode or status.st_size < stream.tell():
                    first = stream is None
                    if stream is not None:
                        stream.close()
                    stream, inode, pending = open(self.log_path, "rb"), status.st_ino, b""  # noqa: SIM115
                    if first:
                        stream.seek(0, os.SEEK_END)  # refusals from now on; earlier ones were audited before
                chunk = stream.readline()
                if not chunk:
                    self._stop.wait(self.poll_s)
                    continue
                pending += chunk
                if not pending.endswith(b"\n"):
                    continue  # a line Orthanc is still writing
                line, pending = pending.decode("utf-8", "replace"), b""
                try:
                    refusal = parser.feed(line)
                    if refusal is not None:
                        self.record(refusal)
                except Exception:  # noqa: BLE001 (one bad line must not end the audit)
                    log.exception("DICOM refusal audit: line not recorded")
        finally:
            if stream is not None:
                stream.close()
