"""Sign the clinical PDF report: a PAdES baseline signature (CMS, SHA-256) appended as an incremental update.

The signature is written by endesive (``endesive.pdf.cms``) and is invisible (the report prints its
own signature block). What :func:`sign_pdf` produces:

* the original bytes unchanged, followed by one incremental update holding the signature field,
  its widget (page 1, zero-size) and the signature dictionary: ``/Filter /Adobe.PPKLite``,
  ``/SubFilter /ETSI.CAdES.detached``, ``/M`` (the signing time), ``/Name``, ``/Reason``,
  ``/Location``, ``/Contact``, and a ``/ByteRange`` covering the whole file except the
  ``/Contents`` hex string;
* ``/Contents``: a detached CMS SignedData, SHA-256, RSA PKCS#1 v1.5, whose signed attributes are
  content-type, message-digest and signing-certificate-v2 (no signing-time attribute, as PAdES
  requires); the signer's certificate and its chain are embedded;
* the catalog declares the ESIC developer extension (PAdES on PDF 1.7) and ``/Version /1.7`` when
  the document is older, as pyHanko does, and ``/AcroForm /SigFlags 3``.

:class:`_PadesSignedData` adapts endesive 3.0.1 (its CMS content already meets PAdES B-B):

* endesive writes ``/adbe.pkcs7.detached`` for signatures (``ETSI.CAdES.detached`` only for
  document timestamps): ``_make_signature`` sets the PAdES sub filter, ``_makepdf`` adds ESIC;
* endesive's ``_write`` passes pypdf an argument that pypdf 5+ removed; ``_write`` is rewritten;
* importing ``endesive.pdf`` fails on OpenSSL >= 3.0.10 (see :func:`_endesive_pdf_cms`).

Verify with :func:`oncoflow.report.signed_pdf_check.check_signed_pdf` (pyHanko) or poppler's ``pdfsig``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import io
import struct
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from pypdf import PdfReader
from pypdf import generic as po
from pypdf.errors import PdfReadError

from oncoflow.report.signing_certificates import Signer

SUB_FILTER = "ETSI.CAdES.detached"
DIGEST_ALGORITHM = "sha256"
SIGNATURE_FIELD = "OncoFlowSignature"
SIG_FLAGS = 3  # SignaturesExist | AppendOnly


def _endesive_pdf_cms() -> ModuleType:
    """``endesive.pdf.cms``, loaded even where the ``endesive.pdf`` package cannot be imported.

    ``endesive/pdf/__init__.py`` also imports endesive's verifier, hence certvalidator and oscrypto;
    oscrypto 1.3.0 cannot parse OpenSSL >= 3.0.10 version strings and raises LibraryNotFoundError.
    Signing needs none of that: ``cms.py`` only imports pypdf, asn1crypto, cryptography and
    ``endesive.signer``, so it is then loaded from its file under a private module name.
    """
    try:
        return importlib.import_module("endesive.pdf.cms")
    except Exception:  # oscrypto.errors.LibraryNotFoundError, raised by the package's __init__
        pass
    endesive_spec = importlib.util.find_spec("endesive")
    if endesive_spec is None or endesive_spec.origin is None:  # pragma: no cover - endesive is a dependency
        raise ImportError("endesive is not installed")
    path = Path(endesive_spec.origin).parent / "pdf" / "cms.py"
    spec = importlib.util.spec_from_file_location("oncoflow.report._endesive_pdf_cms", path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cms = _endesive_pdf_cms()


class _PadesSignedData(_cms.SignedData):  # type: ignore[misc, name-defined]
    """endesive's signature writer, with ``/SubFilter /ETSI.CAdES.detached`` and the ESIC extension."""

    def _make_signature(self, Contents: Any = None, Type: Any = None, SubFilter: Any = None) -> Any:
        if Type == "/Sig":
            SubFilter = po.NameObject("/" + SUB_FILTER)
        return super()._make_signature(Contents=Contents, Type=Type, SubFilter=SubFilter)

    def _write(self, stream: BinaryIO, prev: Any, startdata: int) -> None:
        """Append the update's objects, cross-reference section and trailer (as endesive's ``_write``).

        Rewritten because endesive 3.0.1 calls ``trailer.write_to_stream(stream, None)``, an argument
        that pypdf 5+ no longer takes. Like endesive, the update uses a cross-reference stream when the
        previous revision does and a classic table otherwise. Encrypted PDFs are refused earlier.
        """
        stream.write(b"\r\n")
        offsets: dict[int, int] = {}
        for number, obj in enumerate(self._objects, start=1):
            if obj is not None:
                offsets[number] = startdata + stream.tell()
                stream.write(b"%d 0 obj\n" % number)
                obj.write_to_stream(stream)
                stream.write(b"\nendobj\n")
        trailer_entries: dict[str, Any] = {"/Root": self.x_root, "/Prev": po.NumberObject(prev._startxref),
                                           "/ID": self._ID}
        if self.x_info:
            trailer_entries["/Info"] = self.x_info
        if _cms._prev_uses_xref_stream(prev):
            xref_location = self._write_xref_stream(stream, startdata, offsets, trailer_entries)
        else:
            xref_location = startdata + stream.tell()
            stream.write(b"xref\n")
            for first, numbers in _runs(sorted([0, *offsets])):
                stream.write(b"%d %d\n" % (first, len(numbers)))
                for number in numbers:
                    entry = (0, 65535, b"f") if number == 0 else (offsets[number], 0, b"n")
                    stream.write(b"%010d %05d %s \n" % entry)
            trailer = po.DictionaryObject({po.NameObject(k): v for k, v in trailer_entries.items()})
            trailer[po.NameObject("/Size")] = po.NumberObject(len(self._objects) + 1)
            stream.write(b"trailer\n")
            trailer.write_to_stream(stream)
        stream.write(b"\nstartxref\n%d\n%%%%EOF\n" % xref_location)

    def _write_xref_stream(self, stream: BinaryIO, startdata: int, offsets: dict[int, int],
                           trailer_entries: dict[str, Any]) -> int:
        """Write a /Type /XRef stream (fields 1, 8, 0 bytes) that also lists itself; returns its offset."""
        xref = po.StreamObject()
        number = len(self._objects) + 1
        location = startdata + stream.tell()
        offsets = {**offsets, number: location}
        index, rows = po.ArrayObject(), [b"\x00" + struct.pack(">q", 0)]
        for first, numbers in _runs(sorted(offsets)):
            index.extend([po.NumberObject(first), po.NumberObject(len(numbers))])
            rows.extend(b"\x01" + struct.pack(">q", offsets[n]) for n in numbers)
        index[0:0] = [po.NumberObject(0), po.NumberObject(1)]
        xref.set_data(b"".join(rows))
        xref.update({po.NameObject(k): v for k, v in trailer_entries.items()})
        xref.update({po.NameObject("/Type"): po.NameObject("/XRef"),
                     po.NameObject("/Size"): po.NumberObject(number + 1),
                     po.NameObject("/W"): po.ArrayObject([po.NumberObject(1), po.NumberObject(8), po.NumberObject(0)]),
                     po.NameObject("/Index"): index})
        encoded = xref.flate_encode()
        stream.write(b"%d 0 obj\n" % number)
        encoded.write_to_stream(stream)
        stream.write(b"\nendobj")
        return location

    def _makepdf(self, prev: Any, *args: Any, **kwargs: Any) -> None:
        super()._makepdf(prev, *args, **kwargs)
        self._declare_pades_extension(prev)

    def _declare_pades_extension(self, prev: Any) -> None:
        """Declare PAdES in the new catalog: ``/Version /1.7`` if older, and the ESIC extension (level 1)."""
        catalog = self._objects[prev.trailer.raw_get("/Root").idnum - 1]
        if max(_version(prev.pdf_header.removeprefix("%PDF-")), _version(catalog.get("/Version", "/1.0"))) < (1, 7):
            catalog[po.NameObject("/Version")] = po.NameObject("/1.7")
        esic = po.DictionaryObject({po.NameObject("/BaseVersion"): po.NameObject("/1.7"),
                                    po.NameObject("/ExtensionLevel"): po.NumberObject(1)})
        raw = catalog.raw_get("/Extensions") if "/Extensions" in catalog else None
        if raw is None:
            catalog[po.NameObject("/Extensions")] = po.DictionaryObject({po.NameObject("/ESIC"): esic})
            return
        extensions = raw.get_object()
        if "/ESIC" in extensions:
            return
        extensions[po.NameObject("/ESIC")] = esic
        if isinstance(raw, po.IndirectObject):  # rewrite the extensions dictionary in this update
            self._objects[raw.idnum - 1] = extensions


def _version(text: str) -> tuple[int, ...]:
    """A PDF version ("1.4", or the name "/1.4") as a comparable tuple; (0,) when unreadable."""
    try:
        return tuple(int(part) for part in str(text).strip().lstrip("/").split("."))
    except ValueError:
        return (0,)


def _runs(numbers: list[int]) -> list[tuple[int, list[int]]]:
    """Consecutive runs of sorted object numbers, as (first number, numbers) for cross-reference subsections."""
    runs: list[tuple[int, list[int]]] = []
    for number in numbers:
        if runs and runs[-1][1][-1] == number - 1:
            runs[-1][1].append(number)
        else:
            runs.append((number, [number]))
    return runs


def pdf_date(moment: dt.datetime) -> str:
    """A timezone-aware datetime as a PDF date string in UTC, e.g. ``D:20250131143000+00'00'``."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("signing_time must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("D:%Y%m%d%H%M%S+00'00'")


def sign_pdf(pdf: bytes, signer: Signer, *, reason: str, location: str, signing_time: dt.datetime,
             contact: str = "") -> bytes:
    """The PDF with an incremental-update PAdES signature (CMS, SHA-256, ``/ETSI.CAdES.detached``).

    The signature covers the whole original document; the output is ``pdf`` followed by the update.
    ``signing_time`` must be timezone-aware; it is the signature dictionary's ``/M``. Raises
    ValueError when ``pdf`` is not a readable, unencrypted PDF or ``signing_time`` is naive.
    """
    if not pdf.lstrip(b"\x00\t\n\f\r ").startswith(b"%PDF-"):
        raise ValueError("not a PDF (no %PDF- header)")
    try:
        encrypted = PdfReader(io.BytesIO(pdf)).is_encrypted
    except PdfReadError as error:
        raise ValueError(f"not a readable PDF: {error}") from error
    if encrypted:
        raise ValueError("an encrypted PDF cannot be signed here")
    details = {"reason": reason, "location": location, "contact": contact}
    udct: dict[str, Any] = {
        "sigflags": SIG_FLAGS,
        "sigpage": 0,
        "sigfield": SIGNATURE_FIELD,
        "auto_sigfield": True,  # a PDF that already has OncoFlowSignature gets OncoFlowSignature_1
        "signingdate": pdf_date(signing_time),
        "application": "OncoFlow",
        "name": signer.subject_name,
        **{key: value for key, value in details.items() if value},
    }
    update = _PadesSignedData().sign(pdf, udct, signer.private_key, signer.certificate, list(signer.chain),
                                     DIGEST_ALGORITHM, None)
    return pdf + update
