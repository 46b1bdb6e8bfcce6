"""Check the signature of a signed OncoFlow PDF report, independently of the code that signed it.

:func:`check_signed_pdf` validates with pyHanko (not endesive, which signs), offline: the trust
roots are given, nothing is fetched and revocation checking is soft-fail (no revocation data is
an accepted "unknown"). It answers, for the document's latest signature:

* ``signed``: the PDF holds a signature (``/Type /Sig``);
* ``intact``: the bytes the ``/ByteRange`` covers hash to the digest the signature signed;
* ``valid``: the CMS signature value verifies with the signer's certificate (over the signed
  attributes, which hold the document digest: it can be True while ``intact`` is False);
* ``trusted``: that certificate chains to one of ``trust_roots``, is within its validity period
  now, and has the nonRepudiation key usage (pyHanko's default for document signatures);
* ``covers_whole_file``: the byte range spans the whole file, so nothing (not even a legitimate
  incremental update) was added after signing.

With several signatures, every one must be intact, valid and trusted; the other fields describe
the latest. The check never raises for a bad, tampered, unsigned or unreadable PDF: ``ok`` is then
False and ``problems`` says why. Note that a signature without a trusted timestamp (this one:
PAdES B-B) stops being ``trusted`` once the signer's certificate expires. Call it from synchronous
code: pyHanko runs its own asyncio event loop. pyHanko logs what it finds (a failed difference
analysis, a disallowed algorithm) through the ``pyhanko`` loggers.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking a PDF's signature; ``problems`` explains every False."""

    signed: bool
    intact: bool
    valid: bool
    trusted: bool
    covers_whole_file: bool
    signer_subject: str | None  # the signer certificate's common name
    signing_time: datetime | None  # as the signer claims it (/M), not a trusted timestamp
    sub_filter: str | None  # e.g. "ETSI.CAdES.detached" (without the PDF name's slash)
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Signed, intact, valid, trusted and covering the whole file."""
        return self.signed and self.intact and self.valid and self.trusted and self.covers_whole_file


def check_signed_pdf(pdf: bytes, trust_roots: Sequence[x509.Certificate]) -> SignatureCheck:
    """Validate the signature(s) of ``pdf`` against ``trust_roots``, offline; never raises for a bad PDF."""
    try:
        reader = PdfFileReader(io.BytesIO(pdf))
        signatures: list[EmbeddedPdfSignature] = list(reader.embedded_regular_signatures)
    except Exception as error:  # pyHanko raises many kinds of errors on malformed input
        return _unsigned(f"the PDF or its signature cannot be read: {_describe(error)}")
    if not signatures:
        return _unsigned("the PDF is not signed")

    roots = [asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)) for root in trust_roots]
    problems: list[str] = []
    all_intact = all_valid = all_trusted = True
    latest: PdfSignatureStatus | None = None
    for number, signature in enumerate(signatures, start=1):
        label = "" if len(signatures) == 1 else f"signature {number} ({signature.field_name}): "
        context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")
        try:
            status = validate_pdf_signature(signature, context)
        except Exception as error:  # a malformed or unsupported signature
            _LOGGER.debug("signature validation failed", exc_info=True)
            problems.append(f"{label}the signature cannot be validated: {_describe(error)}")
            all_intact = all_valid = all_trusted = False
            latest = None
            continue
        problems.extend(label + problem for problem in _status_problems(status))
        all_intact &= status.intact
        all_valid &= status.valid
        all_trusted &= status.trusted
        latest = status

    last = signatures[-1]
    covers_whole_file = latest is not None and latest.coverage == SignatureCoverageLevel.ENTIRE_FILE
    if latest is not None and not covers_whole_file:
        problems.append(_coverage_problem(latest, _unsigned_bytes(last, len(pdf))))
    return SignatureCheck(
        signed=True,
        intact=all_intact,
        valid=all_valid,
        trusted=all_trusted,
        covers_whole_file=covers_whole_file,
        signer_subject=_common_name(latest.signing_cert) if latest is not None else _embedded_signer(last),
        signing_time=latest.signer_reported_dt if latest is not None else None,
        sub_filter=_sub_filter(last),
        problems=tuple(problems),
    )


def _unsigned(problem: str) -> SignatureCheck:
    return SignatureCheck(signed=False, intact=False, valid=False, trusted=False, covers_whole_file=False,
                          signer_subject=None, signing_time=None, sub_filter=None, problems=(problem,))


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _status_problems(status: PdfSignatureStatus) -> list[str]:
    if not status.intact:
        return ["the signed content was altered: its digest does not match the one the signature signed"]
    if not status.valid:
        return ["the signature value does not verify with the signer's certificate"]
    if status.trusted:
        return []
    indication = status.trust_problem_indic
    reason = f" ({indication.name})" if indication is not None else ""
    return [f"the signer's certificate is not trusted{reason}: it does not chain to a given trust root, "
            "is outside its validity period, or lacks the nonRepudiation key usage"]


def _coverage_problem(status: PdfSignatureStatus, unsigned_bytes: int) -> str:
    if status.coverage == SignatureCoverageLevel.ENTIRE_REVISION:
        level = status.modification_level
        if level is not None and level.name == "NONE":
            return f"{unsigned_bytes} bytes were added after the signed range; they change nothing, but are not signed"
        detail = f" (modification level: {level.name})" if level is not None else ""
        return (f"the document was changed after signing: an incremental update of {unsigned_bytes} bytes "
                f"follows the signed revision{detail}")
    if status.coverage == SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START:
        return f"{unsigned_bytes} bytes follow the signed range and are not a well-formed incremental update"
    return "the signature's byte range does not cover the document in the standard way"


def _unsigned_bytes(signature: EmbeddedPdfSignature, size: int) -> int:
    """How many bytes of the file follow the end of the signature's byte range."""
    try:
        _, _, start, length = (int(value) for value in signature.byte_range)
    except (TypeError, ValueError):
        return 0
    return max(size - (start + length), 0)


def _common_name(certificate: asn1_x509.Certificate) -> str:
    subject = certificate.subject.native
    return str(subject.get("common_name") or certificate.subject.human_friendly)


def _embedded_signer(signature: EmbeddedPdfSignature) -> str | None:
    try:
        return _common_name(signature.signer_cert)
    except Exception:  # no or an unparsable signer certificate
        return None


def _sub_filter(signature: EmbeddedPdfSignature) -> str | None:
    try:
        value = signature.sig_object.get("/SubFilter")
    except Exception:  # an unreadable signature dictionary
        return None
    return str(value).lstrip("/") if value is not None else None
