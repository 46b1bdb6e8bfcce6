"""Speed and accuracy of affine registration on a 1 mm brain (JSON, also in bench/results/registration-latest.json).

Colin27 (``ch2bet``, 181x217x181 at 1 mm) is the baseline; the follow-up is the same brain moved by a
known affine (6 degrees about L-R and S-I, 3 % scale, 8.2 mm shift) with a 30 % bias ramp. Both are
prepared (orientation, 1 mm grid, N4, z-score), then registered by each method. Reported per method:
registration seconds (``RegistrationResult.seconds``; the first ``import itk`` is timed apart),
NCC before/after, and the target registration error (median / max mm) at 20 brain landmarks.

Run: ``PYTHONPATH=.:registration python bench/registration_speed.py``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "registration")]

from oncoflow_registration import (  # noqa: E402
    brain_landmarks_mm,
    prepare_for_registration,
    register_affine,
    target_registration_error_mm,
)
from oncoflow_registration.affine_registration import elastix_available  # noqa: E402

COLIN27 = Path("/usr/share/mricron/templates/ch2bet.nii.gz")


def moved_copy(image: sitk.Image) -> tuple[sitk.Image, sitk.AffineTransform]:
    center = image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()])
    true = sitk.AffineTransform(3)
    true.SetCenter(center)
    true.Rotate(1, 2, np.deg2rad(6.0))
    true.Rotate(0, 1, np.deg2rad(-6.0))
    true.Scale(1.03)
    true.Translate((6.0, -4.0, 4.0))
    moved = sitk.Resample(image, image, true.GetInverse(), sitk.sitkLinear, 0.0)
    ramp = np.linspace(0.85, 1.15, image.GetSize()[0], dtype=np.float32)[None, None, :]
    array = sitk.GetArrayFromImage(moved) * ramp
    biased = sitk.GetImageFromArray(array.astype(np.float32))
    biased.CopyInformation(moved)
    return biased, true


def main() -> dict[str, Any]:
    baseline = sitk.Cast(sitk.ReadImage(str(COLIN27)), sitk.sitkFloat32)
    follow_up, true = moved_copy(baseline)
    start = time.perf_counter()
    fixed = prepare_for_registration(baseline)
    prepare_seconds = time.perf_counter() - start
    moving = prepare_for_registration(follow_up)
    landmarks = brain_landmarks_mm(fixed)
    report: dict[str, Any] = {
        "image": f"Colin27 ch2bet {baseline.GetSize()} at {baseline.GetSpacing()[0]} mm",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "prepare_seconds": round(prepare_seconds, 2),
        "methods": {},
    }
    start = time.perf_counter()
    available, reason = elastix_available()
    report["import_itk_seconds"] = round(time.perf_counter() - start, 2) if available else None
    for method in ("sitk", "elastix"):
        if method == "elastix" and not available:
            report["methods"][method] = {"skipped": reason}
            continue
        result = register_affine(fixed, moving, method=method)
        tre = target_registration_error_mm(result.transform, true, landmarks)
        report["methods"][method] = {
            "method": result.method,
            "seconds": round(result.seconds, 2),
            "ncc_before": round(result.ncc_before, 4),
            "ncc_after": round(result.ncc_after, 4),
            "tre_median_mm": round(float(np.median(tre)), 3),
            "tre_max_mm": round(float(tre.max()), 3),
            "landmarks": len(landmarks),
        }
    return report


if __name__ == "__main__":
    text = json.dumps(main(), indent=2)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "registration-latest.json").write_text(text + "\n")
    print(text)
