"""Bad input pushed by C-STORE: a failed job with a clear reason, and Orthanc and the worker unharmed.

Each case is its own study. After every failure the test checks that both services
still answer and that what was stored before (the study itself) is still there.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from oncoflow.phantoms.phantom_dicom import write_datasets
from oncoflow.services.stack import http_get

from .conftest import Stack, axial_volume, unique_study, write_series
from .non_brain_phantoms import knee_voxels

pytestmark = pytest.mark.e2e


def _volume(n_slices: int = 12, size: int = 32) -> np.ndarray:
    return np.random.default_rng(n_slices).uniform(50, 900, (n_slices, size, size)).astype(np.float32)


def _drop_middle(series: list[Dataset]) -> list[Dataset]:
    return series[:5] + series[6:]


def _shift_second_half(series: list[Dataset]) -> list[Dataset]:
    for ds in series[6:]:
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 1.1]
    return series


def _corrupt_pixels(series: list[Dataset]) -> list[Dataset]:
    series[3].PixelData = series[3].PixelData[: len(series[3].PixelData) // 3]
    return series


def _rgb(series: list[Dataset]) -> list[Dataset]:
    for ds in series:
        pixels = np.frombuffer(ds.PixelData, np.uint16).reshape(ds.Rows, ds.Columns)
        ds.PixelData = np.repeat((pixels >> 4).astype(np.uint8)[..., None], 3, axis=2).tobytes()
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    return series


def _two_phases(series: list[Dataset]) -> list[Dataset]:
    second = []
    for ds in series:
        copy = deepcopy(ds)
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy.InstanceNumber = ds.InstanceNumber + 100
        copy.TemporalPositionIdentifier = 2
        second.append(copy)
    return series + second


Case = tuple[str, Callable[[list[Dataset]], list[Dataset]], dict, np.ndarray, str]
CASES: list[Case] = [
    ("non-mr", lambda s: s, {"modality": "CT"}, _volume(), "no MR series (modalities found: CT)"),
    ("single-slice", lambda s: s[:1], {}, _volume(), "single slice"),
    ("uneven-spacing", _shift_second_half, {}, _volume(), "inconsistent slice spacing"),
    ("missing-slice", _drop_middle, {}, _volume(), "missing slice(s)"),
    ("corrupt-pixels", _corrupt_pixels, {}, _volume(), "corrupt pixel data"),
    ("four-d", _two_phases, {}, _volume(), "4-D series"),
    ("rgb", _rgb, {}, _volume(), "RGB or colour image"),
    ("too-large", lambda s: s, {}, _volume(n_slices=220, size=64), "exceeds the limit"),
    # an MR of a knee: deepbet still draws a "brain" in it, the brain-mask check refuses it
    ("non-brain-mr", lambda s: s, {"series_description": "T1 SE knee sag"}, knee_voxels(), "not a human brain MR"),
]


@pytest.mark.parametrize(("name", "damage", "series", "voxels", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(
    stack: Stack, tmp_path: Path, name: str, damage: Callable, series: dict, voxels: np.ndarray, reason: str
) -> None:
    study = unique_study(name)
    datasets = damage(write_series(tmp_path / "clean", axial_volume(voxels), study, **series))
    write_datasets(datasets, tmp_path / name)
    stack.push(tmp_path / name)
    job = stack.wait_job(study.study_instance_uid)
    assert job["state"] == "failed", job
    assert reason in job["error"], job["error"]
    assert stack.seg_series(study.study_instance_uid) == []
    _, stored = stack.get(f"/studies/{stack.study_id(study.study_instance_uid)}/instances")
    assert len(stored) == len(datasets)  # nothing already stored was lost
    assert http_get(f"{stack.settings.orthanc_url}/oncoflow/health")[0] == 200
    assert http_get(f"{stack.settings.worker_http_url}/v2/health/live")[0] == 200
