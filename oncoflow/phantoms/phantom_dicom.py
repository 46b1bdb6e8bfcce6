"""Write a :class:`~oncoflow.core.volume.Volume` as a single-frame MR Image Storage series.

Used by the tests, the benchmark and the demo to push phantom studies exactly as a
scanner would: one file per slice, MR Image (1.2.840.10008.5.1.4.1.1.4), 12-bit
stored values (RescaleSlope/Intercept only when asked for: the standard MR IOD
has no Modality LUT, and dciodvfy warns about it), full Image Plane geometry
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness).
UIDs derive from ``series_instance_uid`` and the slice index, so writing the same
phantom twice gives the same instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from oncoflow.core.volume import Volume

MAX_STORED_VALUE = 4095
_SOP_CLASS = {"MR": MRImageStorage, "CT": CTImageStorage}


@dataclass(frozen=True)
class StudyInfo:
    """Patient and study attributes shared by every series of a phantom study."""

    patient_id: str = "ONCO-PHANTOM-001"
    patient_name: str = "Phantom^Brain"
    patient_birth_date: str = "19700101"
    patient_sex: str = "O"
    study_instance_uid: str = ""
    study_date: str = "20260101"
    study_time: str = "090000"
    study_id: str = "1"
    accession_number: str = "ACC0001"
    study_description: str = "MRI BRAIN WITH AND WITHOUT CONTRAST"
    # SpecificCharacterSet (0008,0005) the series is written in: it must encode patient_name (e.g. "ISO_IR 138"
    # Hebrew, "ISO_IR 127" Arabic, "ISO_IR 144" Cyrillic, "GB18030", "ISO_IR 192" UTF-8)
    specific_character_set: str = "ISO_IR 100"


@dataclass(frozen=True)
class SeriesInfo:
    series_instance_uid: str
    series_number: int = 3
    series_description: str = "T1 MPRAGE post-contrast"
    contrast_agent: str | None = "Gadobutrol"
    repetition_time_ms: float = 2300.0
    echo_time_ms: float = 2.3
    modality: str = "MR"
    frame_of_reference_uid: str | None = None  # default: one of the series' own; a study's sequences share one
    scanning_sequence: str = "GR"
    inversion_time_ms: float | None = None
    acquisition: str = "3D"  # MRAcquisitionType


# Each sequence of a brain-tumour protocol as a scanner labels it (SeriesDescription, the acquisition's TR, TE, TI,
# ScanningSequence, contrast agent, series number): what series selection reads.
SEQUENCE_SERIES: dict[str, dict[str, object]] = {
    "t1": {"series_number": 2, "series_description": "T1 SE AX", "contrast_agent": None,
           "repetition_time_ms": 500.0, "echo_time_ms": 10.0, "scanning_sequence": "SE", "acquisition": "2D"},
    "t2": {"series_number": 4, "series_description": "T2 TSE AX", "contrast_agent": None,
           "repetition_time_ms": 4000.0, "echo_time_ms": 100.0, "scanning_sequence": "SE", "acquisition": "2D"},
    "flair": {"series_number": 5, "series_description": "T2 FLAIR AX", "contrast_agent": None,
              "repetition_time_ms": 9000.0, "echo_time_ms": 90.0, "inversion_time_ms": 2500.0,
              "scanning_sequence": "SE\\IR", "acquisition": "2D"},
    "t1c": {"series_number": 7, "series_description": "T1 MPRAGE post-contrast", "contrast_agent": "Gadobutrol",
            "repetition_time_ms": 2300.0, "echo_time_ms": 2.3, "scanning_sequence": "GR", "acquisition": "3D"},
}


def sequence_series_info(kind: str, series_instance_uid: str, frame_of_reference_uid: str | None = None,
                         **changes: object) -> SeriesInfo:
    """The :class:`SeriesInfo` of sequence ``kind`` (``t1``, ``t1c``, ``t2``, ``flair``) of a study."""
    values = {**SEQUENCE_SERIES[kind], **changes}
    return SeriesInfo(series_instance_uid, frame_of_reference_uid=frame_of_reference_uid, **values)  # type: ignore[arg-type]


def study_instance_uid(study: StudyInfo) -> str:
    """The study's StudyInstanceUID: the one given, else derived from PatientID and AccessionNumber."""
    return study.study_instance_uid or generate_uid(entropy_srcs=[study.patient_id, study.accession_number])


def series_datasets(
    volume: Volume, study: StudyInfo, series: SeriesInfo, rescale_slope: float | None = None
) -> list[Dataset]:
    """One dataset per slice, in slice order.

    Stored values are ``round(voxel)`` clipped to 12 bits, or ``round(voxel / rescale_slope)``
    with RescaleSlope (0028,1053) written when ``rescale_slope`` is given.
    """
    slope = rescale_slope or 1.0
    frame_of_reference = series.frame_of_reference_uid or generate_uid(entropy_srcs=[series.series_instance_uid, "for"])
    study_uid = study_instance_uid(study)
    datasets = []
    for index in range(volume.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[series.series_instance_uid, str(index)])
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = _SOP_CLASS[series.modality]
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SpecificCharacterSet = study.specific_character_set
        ds.SOPClassUID = _SOP_CLASS[series.modality]
        ds.SOPInstanceUID = sop_uid
        # Patient / study
        ds.PatientName = study.patient_name
        ds.PatientID = study.patient_id
        ds.PatientBirthDate = study.patient_birth_date
        ds.PatientSex = study.patient_sex
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.study_time
        ds.StudyID = study.study_id
        ds.AccessionNumber = study.accession_number
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = study.study_description
        # Series / equipment / frame of reference
        ds.Modality = series.modality
        ds.SeriesInstanceUID = series.series_instance_uid
        ds.SeriesNumber = series.series_number
        ds.SeriesDescription = series.series_description
        ds.ProtocolName = series.series_description
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "HEAD"
        ds.Manufacturer = "OncoFlow Phantom"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        # MR image
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.InstanceNumber = index + 1
        ds.ScanningSequence = series.scanning_sequence.split("\\") if "\\" in series.scanning_sequence \
            else series.scanning_sequence
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = series.acquisition
        ds.RepetitionTime = series.repetition_time_ms
        ds.EchoTime = series.echo_time_ms
        if series.inversion_time_ms is not None:
            ds.InversionTime = series.inversion_time_ms
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = 3.0
        if series.contrast_agent:
            ds.ContrastBolusAgent = series.contrast_agent
        # Image plane
        ds.ImagePositionPatient = [round(v, 4) for v in volume.slice_position_mm(index)]
        ds.ImageOrientationPatient = [round(v, 6) for v in volume.image_orientation_patient()]
        ds.PixelSpacing = [round(volume.spacing_mm[1], 4), round(volume.spacing_mm[2], 4)]
        ds.SliceThickness = round(volume.spacing_mm[0], 4)
        ds.SpacingBetweenSlices = round(volume.spacing_mm[0], 4)
        ds.SliceLocation = round(float(np.dot(volume.slice_position_mm(index), volume.slice_direction)), 4)
        # Pixels
        stored = np.clip(np.rint(volume.voxels[index] / slope), 0, MAX_STORED_VALUE).astype(np.uint16)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if rescale_slope is not None:
            ds.RescaleIntercept = 0
            ds.RescaleSlope = f"{slope:.8g}"
            ds.RescaleType = "US"
        ds.PixelData = stored.tobytes()
        datasets.append(ds)
    return datasets


def write_datasets(datasets: Sequence[Dataset], directory: Path) -> list[Path]:
    """Save each dataset as a Part-10 file ``<directory>/<InstanceNumber>.dcm``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{int(ds.get('InstanceNumber', len(paths) + 1)):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
