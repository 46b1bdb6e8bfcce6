"""A corpus of hostile DICOM files, made at test time from one valid phantom MR slice.

Each :class:`HostileCase` is named and tagged with its kind: ``truncated``, ``bad-vr``,
``huge-length``, ``structure`` (deep nesting, many elements, unsorted tags), ``polyglot``
(an executable, script, archive or document header in the 128-byte preamble,
CVE-2019-11687), ``wrong-magic`` and ``garbage`` (empty, random bytes). Every case that
still carries a dataset has its own SOPInstanceUID (derived from the case name), so the
tests can tell which cases Orthanc stored. Nothing binary is committed: :func:`write_corpus`
writes the files into a directory of the test's choosing.

Examples
--------
>>> clean = clean_slice(unique_study("hostile"))
>>> cases = hostile_cases(clean)
>>> paths = write_corpus(cases, tmp_path / "corpus")
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets, study_instance_uid

from .conftest import axial_volume

DEEP_NESTING_LEVELS = 10_000
MANY_ELEMENTS = 50_000
_PIXEL_DATA_OW = b"\xe0\x7f\x10\x00OW\x00\x00"  # (7FE0,0010) OW, explicit VR little endian


@dataclass(frozen=True)
class HostileCase:
    """One hostile file.

    Attributes
    ----------
    name: str
        Unique, file-name safe (e.g. ``polyglot-mz``).
    kind: str
        ``truncated``, ``bad-vr``, ``huge-length``, ``structure``, ``polyglot``, ``wrong-magic``, ``garbage``
        or ``clean``.
    data: bytes
        The file's bytes.
    sop_instance_uid: Union[str, None]
        The SOPInstanceUID the file carries, ``None`` when it carries no dataset.
    guard_reason: Union[str, None]
        A part of the reason :func:`oncoflow.security.upload_guard.refusal_reason` must give, ``None``
        when the guard must let the file through (Orthanc's parser is then its judge).
    """

    name: str
    kind: str
    data: bytes
    sop_instance_uid: str | None
    guard_reason: str | None


def clean_slice(study: StudyInfo, size: int = 32) -> Dataset:
    """A valid single-slice MR Image (explicit VR little endian) of a phantom ``study``."""
    voxels = np.random.default_rng(7).uniform(50, 900, (1, size, size)).astype(np.float32)
    series = SeriesInfo(series_instance_uid=generate_uid(entropy_srcs=[study_instance_uid(study), "hostile"]),
                        series_description="hostile corpus")
    return series_datasets(axial_volume(voxels), study, series)[0]


def _encode(dataset: Dataset, sop_instance_uid: str) -> bytes:
    dataset = dataset.copy()
    dataset.file_meta = dataset.file_meta.copy()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _element(group: int, element: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """One explicit VR little endian element, written raw (``length`` overrides the true one)."""
    size = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
        return struct.pack("<HH2sHI", group, element, vr, 0, size) + value
    return struct.pack("<HH2sH", group, element, vr, size & 0xFFFF) + value


def _before_pixels(data: bytes, inserted: bytes) -> bytes:
    at = data.index(_PIXEL_DATA_OW)
    return data[:at] + inserted + data[at:]


def _replace_element(data: bytes, tag: bytes, new_element: bytes) -> bytes:
    """Replace the explicit-VR element whose 4 tag bytes are ``tag`` (short-length VR) by ``new_element``."""
    at = data.index(tag, 132)
    (length,) = struct.unpack_from("<H", data, at + 6)
    return data[:at] + new_element + data[at + 8 + length:]


def _deep_sequence(levels: int) -> bytes:
    opening = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000,
                                                                                        0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opening * levels + closing * levels


def _many_items(count: int) -> bytes:
    item_value = _element(0x0040, 0xA043, b"SQ", b"", length=0)  # an empty ConceptNameCodeSequence: 12 bytes
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(item_value)) + item_value
    body = item * count
    return struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(body)) + body


def _preamble(data: bytes, header: bytes) -> bytes:
    return header + data[len(header):]


def hostile_cases(clean: Dataset) -> list[HostileCase]:
    """The corpus, made from ``clean`` (see :func:`clean_slice`); the first case is the clean file itself."""
    study_uid = str(clean.StudyInstanceUID)
    cases: list[HostileCase] = []

    def add(name: str, kind: str, make: Callable[[bytes], bytes] | bytes, guard_reason: str | None = None,
            carries_dataset: bool = True) -> None:
        uid = generate_uid(entropy_srcs=[study_uid, name])
        data = make(_encode(clean, uid)) if callable(make) else make
        cases.append(HostileCase(name, kind, data, uid if carries_dataset else None, guard_reason))

    valid = _encode(clean, "1.2.3")
    meta_end = 144 + struct.unpack_from("<I", valid, 140)[0]  # (0002,0000) group length value at 140
    name_at = valid.index(b"\x10\x00\x10\x00PN")
    pixels_at = valid.index(_PIXEL_DATA_OW) + 12
    pixel_length = len(valid) - pixels_at

    add("clean", "clean", lambda d: d)
    # truncated (offsets are those of the clean file: the UID lengths of the cases are the same)
    add("truncated-in-preamble", "truncated", lambda d: d[:64], "shorter than preamble", carries_dataset=False)
    add("truncated-after-dicm", "truncated", lambda d: d[:132], None, carries_dataset=False)
    add("truncated-in-meta", "truncated", lambda d: d[:150], None, carries_dataset=False)
    add("truncated-in-header", "truncated", lambda d: d[:meta_end + 6])
    add("truncated-mid-element", "truncated", lambda d: d[:name_at + 11])
    add("truncated-mid-pixels", "truncated", lambda d: d[:pixels_at + pixel_length // 2])
    add("truncated-last-byte", "truncated", lambda d: d[:-1])
    # bad VRs
    add("bad-vr-ul-for-pn", "bad-vr", lambda d: _replace_element(
        d, b"\x10\x00\x10\x00PN", _element(0x0010, 0x0010, b"UL", struct.pack("<I", 0xDEADBEEF))))
    add("bad-vr-invalid-bytes", "bad-vr", lambda d: _replace_element(
        d, b"\x08\x00\x30\x10LO", _element(0x0008, 0x1030, b"\x00\x01", b"HOSTILE ")))
    add("bad-vr-lowercase", "bad-vr", lambda d: _replace_element(
        d, b"\x08\x00\x30\x10LO", _element(0x0008, 0x1030, b"lo", b"HOSTILE ")))
    add("bad-vr-odd-length-us", "bad-vr", lambda d: _before_pixels(
        d, _element(0x0028, 0x0106, b"US", b"\x01\x02\x03")))
    # huge lengths
    add("huge-length-ob", "huge-length", lambda d: _before_pixels(
        d, _element(0x0009, 0x0010, b"OB", b"\x00" * 16, length=0xFFFFFFF0)))
    add("huge-length-string", "huge-length", lambda d: _replace_element(
        d, b"\x08\x00\x30\x10LO", struct.pack("<HH2sH", 0x0008, 0x1030, b"LO", 0xFFFF) + b"X" * 8))
    add("huge-length-pixel-data", "huge-length",
        lambda d: d[:d.index(_PIXEL_DATA_OW)] + _PIXEL_DATA_OW + struct.pack("<I", 0x7FFFFFF0) + d[-pixel_length:])
    add("unclosed-sequence", "huge-length", lambda d: _before_pixels(
        d, struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
        + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)))
    add("huge-meta-group-length", "huge-length", lambda d: d[:140] + struct.pack("<I", 0xFFFFFFF0) + d[144:])
    # structure
    add(f"deep-nesting-{DEEP_NESTING_LEVELS}", "structure", lambda d: _before_pixels(
        d, _deep_sequence(DEEP_NESTING_LEVELS)), "nested deeper")
    add("deep-nesting-48", "structure", lambda d: _before_pixels(d, _deep_sequence(48)), "nested deeper")
    add("nesting-8-allowed", "structure", lambda d: _before_pixels(d, _deep_sequence(8)))
    add(f"many-items-{MANY_ELEMENTS}", "structure", lambda d: _before_pixels(d, _many_items(MANY_ELEMENTS)))
    add("unsorted-tags", "structure", lambda d: _before_pixels(
        d, _element(0x0008, 0x0070, b"LO", b"HOSTILE ")))  # (0008,0070) after (0028,xxxx)
    add("trailing-garbage", "structure", lambda d: d + np.random.default_rng(1).bytes(4096))
    # preamble polyglots
    add("polyglot-mz", "polyglot", lambda d: _preamble(d, b"MZ\x90\x00\x03\x00\x00\x00"), "MZ")
    add("polyglot-elf", "polyglot", lambda d: _preamble(d, b"\x7fELF\x02\x01\x01\x00"), "ELF")
    add("polyglot-zip", "polyglot", lambda d: _preamble(d, b"PK\x03\x04\x14\x00\x00\x00"), "ZIP")
    add("polyglot-shell", "polyglot", lambda d: _preamble(d, b"#!/bin/sh\necho hostile\nexit 0\n"), "shebang")
    add("polyglot-pdf", "polyglot", lambda d: _preamble(d, b"%PDF-1.4\n"), "PDF")
    add("polyglot-html", "polyglot", lambda d: _preamble(d, b"\n <HTML><script>alert(1)</script>"), "markup")
    add("polyglot-macho", "polyglot", lambda d: _preamble(d, b"\xcf\xfa\xed\xfe"), "Mach-O")
    add("preamble-tiff-allowed", "polyglot", lambda d: _preamble(d, b"II*\x00\x08\x00\x00\x00"), None)
    # wrong magic
    add("wrong-magic-dicn", "wrong-magic", lambda d: d[:128] + b"DICN" + d[132:], "no DICM prefix")
    add("no-preamble-raw-dataset", "wrong-magic", lambda d: d[meta_end:], "no DICM prefix")
    add("polyglot-mz-no-dicm", "wrong-magic", lambda d: b"MZ" + d[2:128] + b"XXXX" + d[132:], "no DICM prefix")
    # garbage
    add("empty", "garbage", b"", "shorter than preamble", carries_dataset=False)
    add("random-bytes", "garbage", np.random.default_rng(0).bytes(4096), "no DICM prefix", carries_dataset=False)
    add("random-after-dicm", "garbage", bytes(128) + b"DICM" + np.random.default_rng(2).bytes(4096), None,
        carries_dataset=False)
    return cases


def write_corpus(cases: list[HostileCase], directory: Path) -> dict[str, Path]:
    """Write each case to ``directory/<name>.dcm``; returns the paths by case name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        path = directory / f"{case.name}.dcm"
        path.write_bytes(case.data)
        paths[case.name] = path
    return paths
