"""The follow-up -> baseline transform as a DICOM Spatial Registration object (PS3.3 A.39, C.20.2).

The object lives in the follow-up study (series 9020, "OncoFlow REG follow-up to baseline").
Its own Frame of Reference is the baseline's: the "registered" coordinate system. The
Registration Sequence has two items, each naming a source frame of reference and the
matrix that takes its patient coordinates (LPS mm) into the registered one:

1. the baseline series' frame of reference, identity (RIGID);
2. the follow-up series' frame of reference, the 4x4 affine found by registration
   (AFFINE: 12 degrees of freedom), i.e. ``x_baseline = M @ [x_follow_up, 1]``.

Every source image is referenced (Common Instance Reference module), so a viewer or a
script can reproduce the comparison from the PACS alone. UIDs derive from the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import SpatialRegistrationStorage

from oncoflow import __version__
from oncoflow.dicom.derived_object import (
    MANUFACTURER,
    content_digest,
    copy_patient_and_study,
    derived_uid,
    instance_references,
    new_instance,
)

REG_SERIES_NUMBER = 9020
REG_SERIES_DESCRIPTION = "OncoFlow REG follow-up to baseline"


def _matrix_item(matrix: npt.NDArray[np.float64], kind: str) -> Dataset:
    item = Dataset()
    item.FrameOfReferenceTransformationMatrixType = kind
    item.FrameOfReferenceTransformationMatrix = [f"{v:.10g}"[:16] for v in matrix.reshape(-1)]
    return item


def _registration_item(images: Sequence[Dataset], matrix: npt.NDArray[np.float64], kind: str, comment: str) -> Dataset:
    item = Dataset()
    item.FrameOfReferenceUID = images[0].FrameOfReferenceUID
    item.ReferencedImageSequence = instance_references(images)
    matrix_registration = Dataset()
    matrix_registration.FrameOfReferenceTransformationComment = comment[:64]  # LO
    matrix_registration.RegistrationTypeCodeSequence = DicomSequence([])
    matrix_registration.MatrixSequence = DicomSequence([_matrix_item(matrix, kind)])
    item.MatrixRegistrationSequence = DicomSequence([matrix_registration])
    return item


def _series_reference(images: Sequence[Dataset]) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = images[0].SeriesInstanceUID
    series.ReferencedInstanceSequence = instance_references(images)
    return series


def write_spatial_registration(
    baseline_images: Sequence[Dataset],
    follow_up_images: Sequence[Dataset],
    follow_up_to_baseline_lps: npt.NDArray[np.float64],
    method: str,
    fingerprint: str,
) -> Dataset:
    """The Spatial Registration object for one comparison, in the follow-up's study."""
    if follow_up_to_baseline_lps.shape != (4, 4):
        raise ValueError(f"the transform must be 4x4, got {follow_up_to_baseline_lps.shape}")
    first = follow_up_images[0]
    now = datetime.now()
    content = content_digest(np.asarray(follow_up_to_baseline_lps, np.float64).tobytes(), method, __version__,
                             *(str(ds.SOPInstanceUID) for ds in (*baseline_images, *follow_up_images)))
    ds = new_instance(SpatialRegistrationStorage, derived_uid("reg-instance", fingerprint, content))
    copy_patient_and_study(first, ds)
    ds.Modality = "REG"
    ds.SeriesInstanceUID = derived_uid("reg-series", fingerprint, content)
    ds.SeriesNumber = REG_SERIES_NUMBER
    ds.SeriesDescription = REG_SERIES_DESCRIPTION
    ds.Laterality = ""  # General Series, type 2C: the brain is not a paired structure
    ds.FrameOfReferenceUID = baseline_images[0].FrameOfReferenceUID  # the registered coordinate system
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = f"oncoflow {__version__}"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.ContentLabel = "REG_TO_BASELINE"  # CS, at most 16 characters
    ds.ContentDescription = f"Follow-up to baseline, affine, {method}"[:64]
    ds.ContentCreatorName = ""
    ds.RegistrationSequence = DicomSequence([
        _registration_item(baseline_images, np.eye(4), "RIGID", "baseline: identity"),
        _registration_item(follow_up_images, follow_up_to_baseline_lps, "AFFINE",
                           f"follow-up to baseline, {method}, rigid+affine (12 DOF)"),
    ])
    ds.ReferencedSeriesSequence = DicomSequence([_series_reference(follow_up_images)])
    other_study = Dataset()
    other_study.StudyInstanceUID = baseline_images[0].StudyInstanceUID
    other_study.ReferencedSeriesSequence = DicomSequence([_series_reference(baseline_images)])
    ds.StudiesContainingOtherReferencedInstancesSequence = DicomSequence([other_study])
    return ds


def read_spatial_registration(ds: Dataset) -> npt.NDArray[np.float64]:
    """The follow-up -> baseline matrix of an object written by :func:`write_spatial_registration`."""
    matrix = ds.RegistrationSequence[1].MatrixRegistrationSequence[0].MatrixSequence[0]
    return np.asarray([float(v) for v in matrix.FrameOfReferenceTransformationMatrix], np.float64).reshape(4, 4)
