"""A SEG stored into a study by someone other than the pipeline (OHIF's segmentation tools, a refinement): its
segments, what it references, which of its segments is the tumour, and its mask on the study's input images.

Such a SEG may differ from OncoFlow's own in ways a viewer allows: empty frames left out (a source image no frame
references is empty), no SpatialLocationsPreserved in its derivation items, segments named freely ("Segment 1").
Reading it therefore never assumes OncoFlow's writer; it only requires that its frames reference the source
images they were drawn on (per-frame Derivation Image Sequence > Source Image Sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage

from oncoflow.core.tumour_compartments import Region
from oncoflow.dicom.enhanced_mr_frames import FrameView
from oncoflow.dicom.seg_writer import BRAIN, region_segment_numbers


class StoredSegError(ValueError):
    """The SEG cannot be used as a tumour segmentation of the study's input (the message says why)."""


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a SEG: its number, label and SegmentedPropertyType (scheme, value, meaning)."""

    number: int
    label: str
    property_type: tuple[str, str, str]

    def describe(self) -> str:
        return f"{self.number} '{self.label}' ({self.property_type[2] or self.property_type[1]})"


def is_segmentation(dataset: Dataset) -> bool:
    return str(dataset.get("SOPClassUID", "")) == SegmentationStorage


def segments_of(seg: Dataset) -> list[SegmentInfo]:
    found = []
    for item in seg.get("SegmentSequence", []):
        code = item.SegmentedPropertyTypeCodeSequence[0] if "SegmentedPropertyTypeCodeSequence" in item else None
        found.append(SegmentInfo(
            int(item.SegmentNumber), str(item.get("SegmentLabel", "")),
            ("", "", "") if code is None else (str(code.CodingSchemeDesignator), str(code.CodeValue),
                                               str(code.get("CodeMeaning", "")))))
    return found


def _is_brain(segment: SegmentInfo) -> bool:
    return segment.property_type[:2] == (BRAIN.property_type.scheme_designator, BRAIN.property_type.value)


def referenced_instances(seg: Dataset) -> set[str]:
    """The SOP Instance UIDs its frames were derived from (per-frame and shared functional groups)."""
    uids: set[str] = set()
    groups = [*seg.get("PerFrameFunctionalGroupsSequence", []), *seg.get("SharedFunctionalGroupsSequence", [])]
    for group in groups:
        for derivation in group.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                uids.add(str(source.ReferencedSOPInstanceUID))
    return uids


def referenced_series(seg: Dataset) -> set[str]:
    """The SeriesInstanceUIDs of its ReferencedSeriesSequence (0008,1115)."""
    return {str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])
            if "SeriesInstanceUID" in item}


def tumour_segments(seg: Dataset, region: Region, requested: Sequence[int] | None = None) -> list[int]:
    """The segments that are the tumour: ``requested`` when given (each must exist and not be the brain); else the
    segments that make up ``region`` by their codes and labels (OncoFlow's own SEGs, refined ones included); else
    the one segment that is not the brain. :class:`StoredSegError` when none, or several and none named."""
    segments = segments_of(seg)
    if not segments:
        raise StoredSegError("the SEG has no segment")
    by_number = {s.number: s for s in segments}
    if requested:
        missing = sorted(set(requested) - set(by_number))
        if missing:
            raise StoredSegError(f"the SEG has no segment {missing}; its segments: "
                                 + ", ".join(s.describe() for s in segments))
        brain = [n for n in requested if _is_brain(by_number[n])]
        if brain:
            raise StoredSegError(f"segment {brain} is the brain, not a tumour")
        return sorted(set(requested))
    by_region = region_segment_numbers(seg, region)
    if by_region:
        return by_region
    candidates = [s for s in segments if not _is_brain(s)]
    if len(candidates) == 1:
        return [candidates[0].number]
    if not candidates:
        raise StoredSegError("the SEG holds only the brain, no tumour segment")
    raise StoredSegError(
        f"the SEG has {len(candidates)} segments ({', '.join(s.describe() for s in candidates)}) and none is the "
        f"tumour region {region} by its code and label: name the tumour's segments in \"segment_numbers\"")


def mask_on_sources(seg: Dataset, source_datasets: Sequence[Dataset],
                    segment_numbers: Sequence[int]) -> npt.NDArray[np.uint8]:
    """The union of ``segment_numbers`` as a ``(slices, rows, columns)`` 0/1 mask in the order of
    ``source_datasets`` (classic images, or the frames of one multi-frame object); a source image that no frame
    references is empty. :class:`StoredSegError` when the SEG references none of the sources or does not fit."""
    if not source_datasets:
        raise StoredSegError("no source images")
    referenced = referenced_instances(seg)
    sources = {str(ds.SOPInstanceUID) for ds in source_datasets}
    if not referenced & sources:
        raise StoredSegError("its frames reference none of the input series' images")
    try:
        parsed = hd.seg.Segmentation.from_dataset(seg)
        if isinstance(source_datasets[0], FrameView):
            pixels = parsed.get_pixels_by_source_frame(
                source_sop_instance_uid=str(source_datasets[0].SOPInstanceUID),
                source_frame_numbers=[ds.frame_number for ds in source_datasets],  # type: ignore[attr-defined]
                segment_numbers=list(segment_numbers), combine_segments=True, relabel=True,
                ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
        else:
            pixels = parsed.get_pixels_by_source_instance(
                source_sop_instance_uids=[str(ds.SOPInstanceUID) for ds in source_datasets],
                segment_numbers=list(segment_numbers), combine_segments=True, relabel=True,
                ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError, AttributeError) as exc:
        raise StoredSegError(f"its frames cannot be placed on the input series: {exc}") from exc
    mask = (np.asarray(pixels) > 0).astype(np.uint8)
    expected = (len(source_datasets), int(source_datasets[0].Rows), int(source_datasets[0].Columns))
    if mask.shape != expected:
        raise StoredSegError(f"its frames are {mask.shape[1:]} pixels, the input's images {expected[1:]}")
    return mask
