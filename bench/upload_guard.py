"""``make bench`` (upload guard): what :func:`oncoflow.security.upload_guard.refusal_reason` costs per instance.

Every received instance passes the guard, so its cost is a per-instance tax on ingest. Measured on a
256 x 256 MR slice as a modality sends it (all-zero preamble), the same slice behind an ``MZ`` preamble
(refused at the first bytes), and an SR-like file with 40 nested sequences (walked, then refused), each
called ``CALLS`` times; the median of ``ROUNDS`` rounds is reported in microseconds per call, with each
case's ratio to the clean slice. Writes ``bench/results/upload-guard-<UTC>.json`` and
``upload-guard-latest.json``.
"""

from __future__ import annotations

import io
import statistics
import time

import numpy as np
from bench_results import write_result
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from oncoflow.core.volume import Volume
from oncoflow.phantoms.phantom_dicom import SeriesInfo, StudyInfo, series_datasets
from oncoflow.security.upload_guard import refusal_reason

CALLS = 2000
ROUNDS = 5


def part10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def clean_slice() -> bytes:
    voxels = np.random.default_rng(0).normal(100, 10, (1, 256, 256)).astype(np.float32)
    volume = Volume(voxels, (1.0, 1.0, 1.0), (-128.0, -128.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    (first,) = series_datasets(volume, StudyInfo(patient_id="BENCH-GUARD", study_instance_uid=generate_uid()),
                               SeriesInfo(generate_uid()))
    return part10(first)


def nested(depth: int) -> bytes:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.33", generate_uid()
    inner = dataset
    for _ in range(depth):
        item = Dataset()
        item.ValueType = "CONTAINER"
        inner.ContentSequence = Sequence([item])
        inner = item
    return part10(dataset)


def per_call_us(data: bytes) -> float:
    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            refusal_reason(data)
        rounds.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(rounds)


def main() -> int:
    clean = clean_slice()
    cases = {"clean 256x256 slice": clean, "MZ polyglot preamble": b"MZ" + clean[2:], "40 nested sequences": nested(40)}
    assert refusal_reason(clean) is None and refusal_reason(cases["MZ polyglot preamble"]) is not None
    assert refusal_reason(cases["40 nested sequences"]) is not None
    timings = {name: round(per_call_us(data), 3) for name, data in cases.items()}
    base = timings["clean 256x256 slice"]
    result = {"calls_per_round": CALLS, "rounds": ROUNDS,
              "cases": {name: {"bytes": len(cases[name]), "us_per_call": us, "ratio_to_clean": round(us / base, 3)}
                        for name, us in timings.items()}}
    print(write_result("upload-guard", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
