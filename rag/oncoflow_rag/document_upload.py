"""Validate an uploaded clinical note (PDF or plain text) and extract its text.

:func:`read_upload` either returns an :class:`UploadedDocument` or raises :class:`DocumentRejected`, whose
``status`` is the HTTP status to answer and whose ``message`` is one sentence for the user. It never writes
anything: a rejected upload leaves no trace. Checks, in order: size (413), filename (400), extension and
declared content type (415), file signature (415), then content: encrypted, unparsable, too many pages,
undecodable, too much text, or no text at all (422).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
from dataclasses import dataclass

logger = logging.getLogger(__name__)

PDF_MEDIA_TYPE = "application/pdf"
TEXT_MEDIA_TYPE = "text/plain"
MAX_FILENAME_BYTES = 255  # UTF-8 bytes, the usual file-system limit for one name
MAX_PDF_PAGES = 500
MAX_TEXT_CHARS = 1_000_000  # extracted text, in characters (about 300 dense pages)

_MEDIA_TYPE_BY_EXTENSION = {".pdf": PDF_MEDIA_TYPE, ".txt": TEXT_MEDIA_TYPE}
# Declared content types accepted for each media type (parameters such as charset are ignored).
_ACCEPTED_CONTENT_TYPES = {
    PDF_MEDIA_TYPE: frozenset({PDF_MEDIA_TYPE, "application/x-pdf", "application/octet-stream"}),
    TEXT_MEDIA_TYPE: frozenset({TEXT_MEDIA_TYPE, "application/octet-stream"}),
}
_PDF_SIGNATURE = b"%PDF-"
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format (bidi), surrogate, unassigned
_BAD_FILENAME = ("Filenames must be plain names such as 'pathology.pdf': no folders, drive letters or control "
                 f"characters, at most {MAX_FILENAME_BYTES} bytes.")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class DocumentRejected(Exception):
    """An upload that is refused; nothing was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # HTTP status: 400 bad request, 413 too large, 415 unsupported type, 422 unreadable
        self.message = message  # one sentence for the user


@dataclass(frozen=True)
class UploadedDocument:
    """An accepted upload: its extracted text and what identifies the file."""

    filename: str  # the plain name as given (NFC, surrounding spaces removed)
    media_type: str  # "application/pdf" | "text/plain"
    text: str  # extracted text, whitespace normalised (see normalise_text)
    pages: int  # PDF pages; 1 for a text file
    sha256: str  # hex digest of the uploaded bytes
    size_bytes: int


def read_upload(filename: str, data: bytes, content_type: str | None, max_bytes: int) -> UploadedDocument:
    """Check an upload and extract its text, or raise :class:`DocumentRejected`.

    ``content_type`` is the part's declared type (``None`` or empty when the client gave none);
    ``max_bytes`` is the size limit in bytes. Only :class:`DocumentRejected` is raised for bad input.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DocumentRejected(413, f"The file is {_size(len(data))}; the limit is {_size(max_bytes)}.")
    name = _plain_filename(filename)
    media_type = _media_type(name, content_type)
    if not data:
        raise DocumentRejected(422, "The file is empty: there is no text to store.")
    if media_type == PDF_MEDIA_TYPE:
        text, pages = _pdf_text(data)
    else:
        text, pages = _plain_text(data), 1
    text = normalise_text(text)
    if len(text) > MAX_TEXT_CHARS:
        raise DocumentRejected(422, f"The document holds more than {MAX_TEXT_CHARS:,} characters of text; "
                                    "split it into smaller files.")
    if not text:
        raise DocumentRejected(422, "The document contains no text (a scanned PDF without a text layer has "
                                    "none); upload a PDF with selectable text or a text file.")
    return UploadedDocument(name, media_type, text, pages, hashlib.sha256(data).hexdigest(), len(data))


def normalise_text(text: str) -> str:
    """NFKC (folds ligatures such as "ﬁ"), LF line ends, no control characters, single spaces, at most one
    blank line in a row, no spaces at line ends, stripped."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _plain_filename(filename: str) -> str:
    """The name itself if it is a plain file name, else 400."""
    if not isinstance(filename, str):
        raise DocumentRejected(400, _BAD_FILENAME)
    name = unicodedata.normalize("NFC", filename).strip(" ")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates
        raise DocumentRejected(400, _BAD_FILENAME) from None
    if (not name or size > MAX_FILENAME_BYTES or name in (".", "..") or any(ch in name for ch in "/\\:")
            or any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in name)):
        raise DocumentRejected(400, _BAD_FILENAME)
    return name


def _media_type(name: str, content_type: str | None) -> str:
    """The media type given by the extension, checked against the declared content type (415 on mismatch)."""
    extension = name[name.rfind("."):].lower() if "." in name.lstrip(".") else ""
    media_type = _MEDIA_TYPE_BY_EXTENSION.get(extension)
    if media_type is None:
        raise DocumentRejected(415, "Only PDF (.pdf) and plain-text (.txt) files are accepted.")
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared not in _ACCEPTED_CONTENT_TYPES[media_type]:
        raise DocumentRejected(415, f"The declared content type '{declared[:100]}' does not match a "
                                    f"{extension} file (expected {media_type}).")
    return media_type


def _pdf_text(data: bytes) -> tuple[str, int]:
    """(text of all pages, page count) of a PDF; 415 if it is not one, 422 if it cannot be read."""
    if not data.startswith(_PDF_SIGNATURE):
        raise DocumentRejected(415, "The file is named .pdf but is not a PDF (it does not start with %PDF-).")
    from pypdf import PdfReader  # imported here: the plug-in starts faster

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise DocumentRejected(422, "The PDF is encrypted; encrypted PDFs are not accepted.")
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            raise DocumentRejected(422, f"The PDF has {pages} pages; at most {MAX_PDF_PAGES} are accepted.")
        texts: list[str] = []
        total = 0
        for page in reader.pages:
            page_text = page.extract_text() or ""
            total += len(page_text)
            if total > 2 * MAX_TEXT_CHARS:  # before normalisation, which only shrinks it: stop early
                raise DocumentRejected(422, f"The document holds more than {MAX_TEXT_CHARS:,} characters of "
                                            "text; split it into smaller files.")
            texts.append(page_text)
    except DocumentRejected:
        raise
    except Exception as exc:  # pypdf raises many types on malformed files
        logger.info("unreadable PDF upload: %s: %s", type(exc).__name__, exc)
        raise DocumentRejected(422, "The PDF cannot be read (it is damaged or not a valid PDF).") from None
    if pages == 0:
        raise DocumentRejected(422, "The PDF has no pages.")
    return "\n\n".join(texts), pages


def _plain_text(data: bytes) -> str:
    """The UTF-8 text of a .txt upload (a byte-order mark is allowed); 415 for a PDF, 422 if not text."""
    if data.startswith(_PDF_SIGNATURE):
        raise DocumentRejected(415, "The file is named .txt but is a PDF; name it .pdf.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DocumentRejected(422, "The text file is not valid UTF-8; save it as UTF-8 and upload it again.") \
            from None
    if "\x00" in text:
        raise DocumentRejected(422, "The file named .txt contains binary data, not text.")
    return text


def _size(size_bytes: int) -> str:
    """A byte count for people: "512 bytes", "3.2 MiB"."""
    if size_bytes < 1024:
        return f"{size_bytes} bytes"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.1f} KiB"
    return f"{size_bytes / (1024 * 1024):.1f} MiB"
