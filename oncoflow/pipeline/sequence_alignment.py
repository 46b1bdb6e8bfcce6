"""Co-registration of a study's sequences onto its reference series (T1c, else T1, else FLAIR), as BraTS prepares
its cases: every channel an expert takes lies on the reference's voxel grid.

For each other sequence:

* **same grid**: the same FrameOfReferenceUID (0020,0052), the same shape and the same voxel-to-patient matrix
  (within 0.01 mm): taken as it is;
* otherwise **registered**, rigid (6 degrees of freedom), with elastix (``ONCOFLOW_REGISTRATION``; SimpleITK when
  elastix is missing) on both volumes prepared at 2 mm (:func:`oncoflow_registration.prepare_for_registration`,
  without N4: mutual information does not mind a smooth bias, and N4 cost 28 s of a 32 s registration here),
  started from the scanner's positions when the frame of reference is shared (one session: only patient motion
  to undo) and from the centres of gravity when it is not; then resampled onto the reference grid (linear).

Quality: the normalised cross-correlation of the intensities (``ncc``; across contrasts it may be low or negative,
T2 against T1) and of the gradient magnitudes (``edge_ncc``: edges line up whatever the contrast). A sequence whose
``edge_ncc`` stays below :data:`MIN_EDGE_NCC` after registration, or whose registration fails, is left out with
the reason; the experts that need it are then skipped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from oncoflow.core.config import Settings
from oncoflow.core.volume import Volume
from oncoflow.dicom.volume_builder import SortedSeries

GEOMETRY_TOLERANCE_MM = 0.01
REGISTRATION_SPACING_MM = 2.0
MIN_EDGE_NCC = 0.25  # measured on evaluation phantoms: T1, T2, FLAIR registered to T1c 0.65-0.87; noise 0.10


@dataclass(frozen=True)
class Alignment:
    """The sequences on the reference grid (the reference included), how each got there, and what was left out."""

    reference: str
    volumes: dict[str, Volume]
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"reference": self.reference, "sequences": self.report, "left_out": self.left_out}


def _frame_of_reference(series: SortedSeries) -> str:
    return str(getattr(series.datasets[0], "FrameOfReferenceUID", "") or "")


def same_grid(a: Volume, b: Volume) -> bool:
    return a.shape == b.shape and bool(np.allclose(a.affine_lps(), b.affine_lps(), atol=GEOMETRY_TOLERANCE_MM))


def _edge_ncc(fixed: Any, moving: Any, transform: Any) -> float:
    """NCC of the gradient magnitudes of ``fixed`` and ``moving`` (prepared images) through ``transform``."""
    import SimpleITK as sitk
    from oncoflow_registration import head_mask, normalized_cross_correlation

    return normalized_cross_correlation(sitk.GradientMagnitude(fixed), sitk.GradientMagnitude(moving), transform,
                                        head_mask(fixed))


class SequenceAlignment:
    """Brings a study's sequences onto its reference grid."""

    def __init__(self, settings: Settings) -> None:
        self.method = settings.registration_method

    def align(self, reference_kind: str, reference: SortedSeries, others: Mapping[str, SortedSeries]) -> Alignment:
        """``others`` (kind -> series) on ``reference``'s grid; never raises for one sequence: it is left out."""
        volumes = {reference_kind: reference.volume}
        report: dict[str, dict[str, Any]] = {reference_kind: {"how": "reference"}}
        left_out: dict[str, str] = {}
        reference_frame = _frame_of_reference(reference)
        prepared: list[Any] = []  # the reference prepared once, when a first sequence needs registering
        for kind, series in others.items():
            shared_frame = bool(reference_frame) and _frame_of_reference(series) == reference_frame
            if shared_frame and same_grid(series.volume, reference.volume):
                volumes[kind] = series.volume
                report[kind] = {"how": "same grid"}
                continue
            started = time.perf_counter()
            try:
                volume, measured = self._register(reference.volume, series.volume, shared_frame, prepared)
            except (RuntimeError, ValueError) as exc:  # ITK's errors, e.g. no overlap
                left_out[kind] = f"{kind} did not register to the {reference_kind}: {str(exc).strip()[-200:]}"
                continue
            measured["seconds"] = round(time.perf_counter() - started, 3)
            report[kind] = measured
            if measured["edge_ncc"] < MIN_EDGE_NCC:
                left_out[kind] = (f"{kind} did not register to the {reference_kind}: edge correlation "
                                  f"{measured['edge_ncc']:.2f} < {MIN_EDGE_NCC} after {measured['how']}")
                continue
            volumes[kind] = volume
        return Alignment(reference_kind, volumes, report, left_out)

    def _register(self, fixed_volume: Volume, moving_volume: Volume, shared_frame: bool,
                  prepared: list[Any]) -> tuple[Volume, dict[str, Any]]:
        from oncoflow_registration import prepare_for_registration, register_affine, resample_to

        if not prepared:
            prepared.append(prepare_for_registration(fixed_volume, spacing_mm=REGISTRATION_SPACING_MM,
                                                     bias_correction=False))
        fixed = prepared[0]
        moving = prepare_for_registration(moving_volume, spacing_mm=REGISTRATION_SPACING_MM, bias_correction=False)
        result = register_affine(fixed, moving, self.method,  # type: ignore[arg-type]
                                 rigid_only=True, centre_initialisation=not shared_frame)
        edge = _edge_ncc(fixed, moving, result.transform)
        voxels = resample_to(fixed_volume, moving_volume, result.transform, is_mask=False)
        start = "scanner positions" if shared_frame else "centres of gravity (another frame of reference)"
        measured = {
            "how": f"registered, rigid, {result.method}, from the {start}",
            "ncc": round(result.ncc_after, 4), "ncc_before": round(result.ncc_before, 4), "edge_ncc": round(edge, 4),
        }
        return replace(fixed_volume, voxels=np.asarray(voxels, np.float32)), measured
