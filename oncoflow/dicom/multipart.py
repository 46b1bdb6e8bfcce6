"""``multipart/related`` bodies of DICOMweb (PS3.18 section 8.7.1, RFC 2387): split a STOW-RS request into its parts
and build one again.

Boundaries are taken from the Content-Type (quoted or not). A part is its header block, an empty line and its
bytes, up to the CRLF before the next delimiter; the preamble before the first delimiter (OHIF 3.13 sends a lone
CRLF) and anything after the closing delimiter are ignored.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^;,\s]{1,200}))', re.IGNORECASE)
_TYPE = re.compile(r'type="?([^";,\s]+)"?', re.IGNORECASE)


class MultipartError(ValueError):
    """The body is not a ``multipart/related`` message this module can split (the reason says why)."""


@dataclass(frozen=True)
class Part:
    content_type: str  # e.g. application/dicom
    data: bytes


def boundary_of(content_type: str) -> str:
    """The boundary of a ``multipart/related`` Content-Type header; :class:`MultipartError` when there is none."""
    if not content_type.lower().startswith("multipart/related"):
        raise MultipartError(f"Content-Type {content_type[:80]!r} is not multipart/related")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MultipartError("the Content-Type names no boundary")
    return match.group(1) or match.group(2)


def root_type(content_type: str) -> str | None:
    """The ``type`` parameter of the Content-Type (``application/dicom`` for a STOW-RS of DICOM files)."""
    match = _TYPE.search(content_type)
    return match.group(1).lower() if match else None


def split(body: bytes, content_type: str, max_parts: int = 10_000) -> list[Part]:
    """The parts of ``body``, in order."""
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("the body holds no boundary delimiter")
    parts: list[Part] = []
    position = start + len(delimiter)
    while not body.startswith(b"--", position):  # the closing delimiter ends with "--"
        if len(parts) >= max_parts:
            raise MultipartError(f"more than {max_parts} parts")
        header_end = body.find(b"\r\n\r\n", position)
        if header_end < 0:
            raise MultipartError("a part has no end of headers")
        headers = body[position:header_end].decode("latin-1").split("\r\n")
        end = body.find(b"\r\n" + delimiter, header_end + 4)
        if end < 0:
            raise MultipartError("a part has no closing delimiter")
        content_type_header = next((h.split(":", 1)[1].strip() for h in headers if h.lower().startswith(
            "content-type:")), "application/octet-stream")
        parts.append(Part(content_type_header, body[header_end + 4:end]))
        position = end + 2 + len(delimiter)
    return parts


def build(parts: list[Part], boundary: str | None = None) -> tuple[bytes, str]:
    """A ``multipart/related; type="application/dicom"`` body of ``parts`` and its Content-Type header."""
    boundary = boundary or f"oncoflow-{secrets.token_hex(16)}"
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + f"\r\nContent-Type: {part.content_type}\r\n\r\n".encode() + part.data + b"\r\n"
                    for part in parts) + delimiter + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
