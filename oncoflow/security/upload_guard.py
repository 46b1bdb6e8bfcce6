"""A guard on every DICOM instance Orthanc receives: parseable-but-hostile files are discarded and audited.

Orthanc already rejects what DCMTK cannot parse. What it keeps, it keeps *verbatim* when it
comes through the REST API (``POST /instances``): the 128-byte preamble of a DICOM Part-10
file is free-form, so a file can be a valid DICOM instance and at the same time a Windows or
Linux executable, a shell script, a ZIP archive or an HTML page (CVE-2019-11687, "DICOM
polyglots"). Such a file would later be served back unchanged by ``/instances/{id}/file`` and
by WADO. Over C-STORE no preamble travels: Orthanc writes its own, all zero, so the same
files arrive neutralised there (the guard still checks them, as it checks the plugin's own
SEG, SR and PDF uploads).

:func:`refusal_reason` looks at the first 132 bytes, then at the nesting of sequences (about 1 us for a
small slice, 20 us for a 256 x 256 one; only a file with more than 32 item tags is walked):

* fewer than 132 bytes, or no ``DICM`` prefix at byte 128: not a DICOM Part-10 file (a raw,
  meta-less dataset is refused too: its first bytes are not under our control);
* an all-zero preamble (what every conforming writer and Orthanc itself write): accepted;
* a preamble that starts with an executable, script, archive or document signature:
  refused, the reason naming the signature (``MZ`` PE/DOS, ``\\x7fELF``, Mach-O, Java
  class / Mach-O fat, ``#!`` shebang, ``PK\\x03\\x04`` ZIP/JAR/DOCX, ``%PDF``, gzip, 7-Zip,
  RAR, bzip2, xz, zstd, WebAssembly, Windows LNK, OLE2 compound file);
* a preamble that carries HTML, SVG, PHP or script markup anywhere (a browser that sniffs
  the content would render it): refused;
* any other non-zero preamble is accepted: PS3.10 section 7.5 allows application-specific
  preambles, notably the TIFF dual-personality file (``II*\\x00`` / ``MM\\x00*``);
* sequences nested deeper than :data:`MAX_SEQUENCE_DEPTH` (32) levels: refused. Orthanc 1.10.1
  *segfaults* on a REST upload nested 48 levels deep (DCMTK recursion in an HTTP thread); the
  ``POST /instances`` route checks before that parse, so the guard keeps Orthanc up (and pydicom, which the
  pipeline uses, raises RecursionError from about 200 levels).

Not covered (documented, not silently assumed): a ZIP archive appended after the dataset or
hidden in an OB element (ZIP readers look at the end of the file), and malicious content in
element values; both would need a parse of the whole file.

:class:`UploadGuard` judges a file and audits each refusal. Orthanc's plug-in uses it in two places
(``oncoflow_plugin.upload_routes``):

* ``POST /instances`` is taken over by a plugin route: a REST upload is checked *before* Orthanc parses
  it (the 48-level segfault above), refused with 400, and otherwise handed to Orthanc's own route;
* every other instance (C-STORE, STOW-RS, WebDAV, Lua) is checked right after Orthanc stored it, from the
  ``NEW_INSTANCE`` change (:class:`StoredInstanceGuard`), and deleted when refused. Over C-STORE no
  preamble travels, so only the nesting check can fire there.

Why not Orthanc's received-instance callback (``RegisterReceivedInstanceCallback``), which would discard
before storing? It deadlocked Orthanc (measured, Orthanc 1.10.1 + orthanc-python 4.0): a C-STORE thread
inside that callback waits for Python's GIL while holding Orthanc's lock on received-instance callbacks,
and a plugin thread that holds the GIL stores a SEG with ``orthanc.RestApiPost("/instances")``, which
needs that lock. With a modality pushing while OncoFlow stores its results, Orthanc stopped answering
(storescu: "Peer aborted Association", the log silent for 60 s). No Orthanc thread now waits for the
GIL while it holds a store lock. The price: a refused C-STORE instance exists for the milliseconds
between its storage and its deletion (the C-STORE SCU is told Success either way).

Examples
--------
>>> refusal_reason(b"\\x00" * 128 + b"DICM" + meta_and_dataset) is None
True
>>> refusal_reason(b"MZ" + b"\\x00" * 126 + b"DICM" + meta_and_dataset)
'preamble polyglot: MZ (Windows PE/DOS executable) header'
"""

from __future__ import annotations

import logging
import struct

from oncoflow.pacs.orthanc_rest import OrthancRest
from oncoflow.security.access_audit import AccessAudit

log = logging.getLogger("oncoflow.upload_guard")

PREAMBLE_LENGTH = 128
DICM_PREFIX = b"DICM"
_ZERO_PREAMBLE = bytes(PREAMBLE_LENGTH)

PREAMBLE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "MZ (Windows PE/DOS executable)"),
    (b"\x7fELF", "ELF (Linux executable)"),
    (b"\xfe\xed\xfa\xce", "Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O fat binary / Java class"),
    (b"#!", "shebang (script)"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"PK\x07\x08", "ZIP archive"),
    (b"%PDF", "PDF document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x28\xb5\x2f\xfd", "zstd archive"),
    (b"\x00asm", "WebAssembly module"),
    (b"L\x00\x00\x00\x01\x14\x02\x00", "Windows shortcut (LNK)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2 compound file (MS Office)"),
)
"""Signatures refused at the start of a preamble: (magic bytes, name given in the reason)."""

PREAMBLE_MARKUP: tuple[bytes, ...] = (b"<html", b"<script", b"<svg", b"<?php", b"<!doctype", b"<iframe", b"<body",
                                      b"<?xml", b"javascript:")
"""Markup refused anywhere in a preamble (compared in lower case)."""

GUARD_ERROR_REASON = "upload guard error (refused, fail closed)"

MAX_SEQUENCE_DEPTH = 32
"""Deepest sequence nesting accepted. Orthanc 1.10.1 segfaults (stack overflow in libdcmdata, in an
HTTP worker thread) on a REST upload nested 48 levels deep or more (40 passed); the route checks
before that parse, so refusing there keeps Orthanc up. Real SR trees stay under about 10 levels."""

_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
_WALKED_SYNTAX_PREFIX = "1.2.840.10008.1.2."  # explicit VR little endian and the compressed syntaxes


def _transfer_syntax(dicom: bytes) -> str | None:
    """The (0002,0010) value of the meta header (explicit VR little endian, at most a few hundred bytes)."""
    at = dicom.find(b"\x02\x00\x10\x00UI", 132, 132 + 1024)
    if at < 0:
        return None
    (length,) = struct.unpack_from("<H", dicom, at + 6)
    return dicom[at + 8:at + 8 + length].rstrip(b"\x00 ").decode("ascii", "replace")


def sequence_depth(dicom: bytes, limit: int = MAX_SEQUENCE_DEPTH) -> int:
    """The deepest sequence nesting of a Part-10 file, counted up to ``limit + 1`` (then the walk stops).

    A flat walk of element headers (no recursion, values skipped) in explicit or implicit VR little
    endian; an element is entered as a sequence when its VR is SQ, its length undefined, or its value
    starts with an item tag (implicit VR and UN hide the SQ). Big endian and deflated files give 0.
    """
    syntax = _transfer_syntax(dicom)
    if syntax is None or syntax == "1.2.840.10008.1.2.2" or syntax == "1.2.840.10008.1.2.1.99":
        return 0
    explicit = syntax != _IMPLICIT_LITTLE
    size = len(dicom)
    open_ends: list[int] = []  # end offset of each open sequence or item (-1: undefined length)
    sequences: list[bool] = []  # whether each open container is a sequence (not an item)
    depth = deepest = 0
    position = 132
    while position + 8 <= size:
        while open_ends and 0 <= open_ends[-1] <= position:
            open_ends.pop()
            depth -= sequences.pop()
        group, element, length = struct.unpack_from("<HHI", dicom, position)
        if group == 0xFFFE:
            position += 8
            if element == 0xE000:
                open_ends.append(-1 if length == _UNDEFINED else position + length)
                sequences.append(False)
            elif open_ends and open_ends[-1] == -1:  # a delimitation item closes an undefined-length container
                open_ends.pop()
                depth -= sequences.pop()
            continue
        meta = group == 0x0002
        if explicit or meta:
            vr = dicom[position + 4:position + 6]
            if vr in _LONG_VRS:
                if position + 12 > size:
                    break
                (length,) = struct.unpack_from("<I", dicom, position + 8)
                position += 12
            else:
                (length,) = struct.unpack_from("<H", dicom, position + 6)
                position += 8
        else:
            vr = b""
            position += 8
        if group == 0x7FE0 and length == _UNDEFINED:  # encapsulated pixel data: fragments, not datasets
            end = dicom.find(b"\xfe\xff\xdd\xe0", position)
            position = size if end < 0 else end + 8
            continue
        if vr == b"SQ" or length == _UNDEFINED or dicom[position:position + 4] == _ITEM:
            open_ends.append(-1 if length == _UNDEFINED else position + length)
            sequences.append(True)
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
            continue
        position += length
    return deepest


def refusal_reason(dicom: bytes) -> str | None:
    """Why an uploaded file must not be stored, or ``None`` to accept it.

    Parameters
    ----------
    dicom: bytes
        The file as received (a DICOM Part-10 file: preamble, ``DICM``, meta header, dataset).

    Returns
    -------
    Union[str, None]
        ``None`` to accept; else a short reason, printable ASCII, without PHI and without any
        of the file's bytes (fit for the audit log's ``detail``).
    """
    if len(dicom) < PREAMBLE_LENGTH + len(DICM_PREFIX):
        return "not a DICOM Part-10 file (shorter than preamble and DICM prefix)"
    if dicom[PREAMBLE_LENGTH:PREAMBLE_LENGTH + 4] != DICM_PREFIX:
        return "not a DICOM Part-10 file (no DICM prefix at byte 128)"
    dicom = bytes(dicom)
    return _preamble_reason(dicom[:PREAMBLE_LENGTH]) or _structure_reason(dicom)


def _preamble_reason(preamble: bytes) -> str | None:
    if preamble == _ZERO_PREAMBLE:
        return None
    for magic, name in PREAMBLE_SIGNATURES:
        if preamble.startswith(magic):
            return f"preamble polyglot: {name} header"
    lowered = preamble.lower()
    if any(markup in lowered for markup in PREAMBLE_MARKUP):
        return "preamble polyglot: HTML/script markup"
    return None


def _structure_reason(dicom: bytes) -> str | None:
    # each nesting level needs one item tag: few item tags (every plain image) cannot nest deeply
    if dicom.count(_ITEM) <= MAX_SEQUENCE_DEPTH:
        return None
    if sequence_depth(dicom) > MAX_SEQUENCE_DEPTH:
        return f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels"
    return None


ORIGIN_METADATA_ACTORS: dict[str, str] = {"DicomProtocol": "dicom", "RestApi": "rest", "Plugins": "plugin",
                                          "Lua": "lua", "WebDav": "webdav", "Unknown": "unknown"}
"""The audit actor for each value of Orthanc's ``Origin`` metadata of an instance."""


class UploadGuard:
    """Judges received files; each refusal is logged and audited.

    ``audit``: where each refusal is recorded as ``dicom.store.refused`` (actor ``dicom``, ``rest``,
    ``webdav``, ... from the instance's origin, role ``modality``, outcome ``refused``, the reason as
    detail); ``None`` to only log.
    """

    def __init__(self, audit: AccessAudit | None) -> None:
        self.audit = audit

    def refuse(self, dicom: bytes, actor: str) -> str | None:
        """The reason to refuse ``dicom`` (logged and audited as coming from ``actor``), or ``None`` to accept it."""
        try:
            reason = refusal_reason(dicom)
        except Exception:  # noqa: BLE001 (fail closed)
            log.exception("upload guard failed on a received instance")
            reason = GUARD_ERROR_REASON
        if reason is None:
            return None
        size = len(dicom) if isinstance(dicom, bytes | bytearray | memoryview) else -1
        log.warning("upload refused (%s, %d bytes): %s", actor, size, reason)
        self.record_refusal(reason, actor)
        return reason

    def record_refusal(self, reason: str, actor: str, sop_instance_uid: str | None = None) -> None:
        """Audit a refused file (``dicom.store.refused``, role ``modality``); auditing never decides the refusal."""
        if self.audit is None:
            return
        try:
            self.audit.record("dicom.store.refused", sop_instance_uid, "refused", reason, actor=actor, role="modality")
        except Exception:  # noqa: BLE001 (auditing never decides whether a hostile file is kept)
            log.exception("audit of a refused upload failed")


class StoredInstanceGuard:
    """Checks an instance Orthanc has just stored (``NEW_INSTANCE``) and deletes it when refused.

    Instances the plugin stored itself (``Origin`` metadata ``Plugins``: OncoFlow's SEG, SR and PDF, and
    REST uploads that passed the ``POST /instances`` route) are not read again.
    """

    def __init__(self, rest: OrthancRest, guard: UploadGuard) -> None:
        self.rest = rest
        self.guard = guard

    def __call__(self, instance_id: str) -> str | None:
        """The reason the instance was deleted, or ``None`` when it stays (or is already gone)."""
        try:
            origin = self.rest.get_bytes(f"/instances/{instance_id}/metadata/Origin").decode()
            if origin == "Plugins":
                return None
            dicom = self.rest.get_bytes(f"/instances/{instance_id}/file")
        except Exception:  # noqa: BLE001 (deleted meanwhile: nothing to guard)
            return None
        reason = self.guard.refuse(dicom, ORIGIN_METADATA_ACTORS.get(origin, "unknown"))
        if reason is not None:
            try:
                self.rest.delete(f"/instances/{instance_id}")
            except Exception:  # noqa: BLE001
                log.exception("refused instance %s could not be deleted", instance_id)
        return reason
