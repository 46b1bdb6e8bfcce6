"""Multi-frame MR objects for the tests, made without OncoFlow's code: a hand-built Enhanced MR (pydicom alone)
with any number of stacks, and a Legacy Converted Enhanced MR made by highdicom from a classic series.

Each stack is given as a :class:`~oncoflow.core.volume.Volume` (voxels, spacing_mm, origin, directions): the
tests check what OncoFlow builds against these, never against OncoFlow's own builder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass(frozen=True)
class StackSpec:
    """One stack of a hand-built object: its volume, StackID and the RescaleSlope of its frames."""

    stack_id: str
    volume: object  # oncoflow.core.volume.Volume
    rescale_slope: float = 1.0


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _seq(**values: object) -> DicomSequence:
    return DicomSequence([_item(**values)])


def enhanced_mr(stacks: Sequence[StackSpec], study_uid: str | None = None, description: str = "T1 post-contrast",
                shuffle_seed: int | None = 5, patient_id: str = "ENH-001",
                extra_dimension: tuple[int, str] | None = None) -> Dataset:
    """An Enhanced MR Image Storage object (Part-10 ready) holding ``stacks``, frames shuffled.

    Shared functional groups hold the first stack's PixelMeasuresSequence; every frame has its own
    PlanePositionSequence, PlaneOrientationSequence, PixelValueTransformationSequence and FrameContentSequence,
    and a stack whose pixel spacing differs from the first gets a per-frame PixelMeasuresSequence (which wins).
    ``extra_dimension`` (copies, label) repeats each frame ``copies`` times with a third dimension index (a 4-D
    object, e.g. ``(2, "Temporal Position Index")``).
    """
    first = stacks[0].volume
    rows, columns = first.shape[1], first.shape[2]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.SeriesDescription, ds.SeriesNumber = "MR", "Test", description, 5
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = patient_id, "Enhanced^Test", "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "090000", "ENH", "1"
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20260101", "090000", "20260101090000"
    ds.InstanceNumber, ds.ImageType = 1, ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ContrastBolusAgent = "Gadobutrol"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, columns, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    organization = generate_uid()
    ds.DimensionOrganizationSequence = _seq(DimensionOrganizationUID=organization)
    dimensions = [
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="In-Stack Position Number"),
    ]
    if extra_dimension:
        dimensions.append(_item(DimensionOrganizationUID=organization, DimensionIndexPointer=0x00209128,
                                FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel=extra_dimension[1]))
    ds.DimensionIndexSequence = DicomSequence(dimensions)
    spacing0 = [float(first.spacing_mm[1]), float(first.spacing_mm[2])]
    ds.SharedFunctionalGroupsSequence = DicomSequence([_item(
        PixelMeasuresSequence=_seq(PixelSpacing=spacing0, SliceThickness=float(first.spacing_mm[0])),
        MRTimingAndRelatedParametersSequence=_seq(RepetitionTime=2300.0, FlipAngle=9.0, EchoTrainLength=1,
                                                  RFEchoTrainLength=1, GradientEchoTrainLength=1),
    )])
    frames = []
    copies = extra_dimension[0] if extra_dimension else 1
    for stack_index, spec in enumerate(stacks, start=1):
        volume = spec.volume
        origin = np.asarray(volume.origin_mm)
        normal = np.asarray(volume.slice_direction) * volume.spacing_mm[0]
        orientation = [*map(float, volume.row_direction), *map(float, volume.column_direction)]
        for index in range(volume.shape[0]):
            stored = np.round(volume.voxels[index] / spec.rescale_slope).astype(np.uint16)
            for copy in range(1, copies + 1):
                groups = _item(
                    PlanePositionSequence=_seq(ImagePositionPatient=[float(v) for v in origin + index * normal]),
                    PlaneOrientationSequence=_seq(ImageOrientationPatient=orientation),
                    PixelValueTransformationSequence=_seq(RescaleSlope=spec.rescale_slope, RescaleIntercept=0.0,
                                                          RescaleType="US"),
                    FrameContentSequence=_seq(StackID=spec.stack_id, InStackPositionNumber=index + 1,
                                              DimensionIndexValues=[stack_index, index + 1, copy][:2 + bool(
                                                  extra_dimension)]),
                )
                spacing = [float(volume.spacing_mm[1]), float(volume.spacing_mm[2])]
                if spacing != spacing0:
                    groups.PixelMeasuresSequence = _seq(PixelSpacing=spacing,
                                                        SliceThickness=float(volume.spacing_mm[0]))
                frames.append((groups, stored))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(frames)
    ds.NumberOfFrames = len(frames)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence([groups for groups, _ in frames])
    ds.PixelData = np.stack([stored for _, stored in frames]).astype("<u2").tobytes()
    return ds


def legacy_converted(classic: Sequence[Dataset]) -> Dataset:
    """highdicom's Legacy Converted Enhanced MR Image of a classic MR series (one stack, StackID "1")."""
    converted = hd.legacy.LegacyConvertedEnhancedMRImage(
        list(classic), series_instance_uid=generate_uid(), series_number=int(classic[0].SeriesNumber) + 100,
        sop_instance_uid=generate_uid(), instance_number=1)
    converted.file_meta = FileMetaDataset()
    converted.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    converted.file_meta.MediaStorageSOPClassUID = converted.SOPClassUID
    converted.file_meta.MediaStorageSOPInstanceUID = converted.SOPInstanceUID
    converted.SeriesDescription = classic[0].SeriesDescription
    return converted
