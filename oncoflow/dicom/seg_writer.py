"""Encode a mask or a label map as a DICOM Segmentation (highdicom), and read its segments back.

The SEG references its source series (ReferencedSeriesSequence, per-frame source
image references), carries one segment per :class:`SegmentKind` given (label value
*i* of the map is segment *i*), and names the algorithm in the
AlgorithmIdentificationSequence. Empty frames are kept (``omit_empty_frames=False``),
which OHIF needs to display the SEG.

Segments (category SCT 49755003 "Morphologically Abnormal Structure" for the tumour, CID 7168):

* the compartments: enhancing tumour (NCIt C113842 "Enhancing Lesion"), necrosis (SCT 6574001),
  oedema (SCT 79654002 "Edema"), non-enhancing tumour (NCIt C81175, where a model gives it);
* a region given as one mask: "Tumour core", "Whole tumour" (SCT 108369006 "Neoplasm"), "Enhancing
  tumour" (NCIt C113842);
* the brain (SCT 12738006 "Brain" under SCT 91723000 "Anatomical Structure").

UIDs are derived from the input fingerprint, the SEG's role ("ensemble", an expert's
name, "refined-N") and a digest of its content (the mask's bits, the algorithm's name,
version and parameters, which for an expert include its weights' hash, and the series'
labels), so that writing the same result twice yields the same SOP Instance UID and
Orthanc stores it exactly once, while a different result never reuses a UID.

Series numbers: the ensemble SEG is 9001, the experts' SEGs 9002 onwards (panel
order), the brain mask 9050, refined SEGs 9100 + their version; each series description
names its origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from oncoflow import __version__
from oncoflow.core.tumour_compartments import REGION_COMPARTMENTS, Compartment, Region
from oncoflow.dicom.derived_object import MANUFACTURER, SPECIFIC_CHARACTER_SET, content_digest, derived_uid
from oncoflow.dicom.enhanced_mr_frames import FrameView

ENSEMBLE_SERIES_NUMBER = 9001
EXPERT_SERIES_NUMBER = 9002  # + the expert's index in the panel
BRAIN_SERIES_NUMBER = 9050  # the brain mask the tumour was segmented in
REFINED_SERIES_NUMBER = 9100  # + the refinement's version
REFINED_DESCRIPTION_PREFIX = "OncoFlow SEG refined"
# RecommendedDisplayCIELabValue (0062,000D), given here as sRGB: viewers (OHIF) draw each SEG in its colour
ENSEMBLE_RGB = (230, 30, 30)  # red: the result the report and SR are about
EXPERT_RGB = ((40, 120, 230), (40, 180, 80), (160, 60, 200), (230, 140, 20), (20, 180, 180))  # by panel index
REFINED_RGB = (240, 220, 20)  # yellow: edited by a radiologist's clicks
BRAIN_RGB = (120, 120, 230)  # pale blue: the brain, for checking the extraction


@dataclass(frozen=True)
class SegmentKind:
    """What a segment is: SegmentLabel (0062,0005), SegmentedPropertyCategoryCodeSequence (0062,0003) and
    SegmentedPropertyTypeCodeSequence (0062,000F); the tumour compartment or region it holds, if any."""

    label: str
    category: Code
    property_type: Code
    rgb: tuple[int, int, int] | None = None  # its own display colour (compartments); None: the SEG's colour
    compartment: Compartment | None = None
    region: Region | None = None  # a region given as one mask


_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
ENHANCING_LESION = Code("C113842", "NCIt", "Enhancing Lesion")
NON_ENHANCING_LESION = Code("C81175", "NCIt", "Non-Enhancing Lesion")
TUMOUR = SegmentKind("Tumour core", _ABNORMAL, codes.SCT.Neoplasm, region="TC")
WHOLE_TUMOUR = SegmentKind("Whole tumour", _ABNORMAL, codes.SCT.Neoplasm, region="WT")
ENHANCING_TUMOUR = SegmentKind("Enhancing tumour", _ABNORMAL, ENHANCING_LESION, region="ET")
REGION_SEGMENTS: dict[Region, SegmentKind] = {"TC": TUMOUR, "WT": WHOLE_TUMOUR, "ET": ENHANCING_TUMOUR}
COMPARTMENT_SEGMENTS: dict[Compartment, SegmentKind] = {
    Compartment.ENHANCING: SegmentKind("Enhancing tumour", _ABNORMAL, ENHANCING_LESION, (230, 30, 30),
                                       Compartment.ENHANCING),
    Compartment.NECROSIS: SegmentKind("Necrosis", _ABNORMAL, Code("6574001", "SCT", "Necrosis"), (240, 200, 40),
                                      Compartment.NECROSIS),
    Compartment.OEDEMA: SegmentKind("Oedema", _ABNORMAL, Code("79654002", "SCT", "Edema"), (40, 160, 230),
                                    Compartment.OEDEMA),
    Compartment.NON_ENHANCING: SegmentKind("Non-enhancing tumour", _ABNORMAL, NON_ENHANCING_LESION, (230, 120, 200),
                                           Compartment.NON_ENHANCING),
}
COMPARTMENT_ORDER = (Compartment.ENHANCING, Compartment.NECROSIS, Compartment.OEDEMA, Compartment.NON_ENHANCING)
BRAIN = SegmentKind("Brain", codes.SCT.AnatomicalStructure, codes.SCT.Brain)


def compartment_segments(compartments: Sequence[Compartment] | set[Compartment] | frozenset[Compartment],
                         labels: npt.NDArray[np.uint8]) -> tuple[list[SegmentKind], npt.NDArray[np.uint8]]:
    """The segments of a compartment map (enhancing, necrosis, oedema, non-enhancing, those given) and the map
    renumbered to segment numbers 1..n in that order."""
    kinds, renumbered = [], np.zeros(labels.shape, np.uint8)
    for compartment in COMPARTMENT_ORDER:
        if compartment in compartments:
            kinds.append(COMPARTMENT_SEGMENTS[compartment])
            renumbered[labels == compartment] = len(kinds)
    return kinds, renumbered


@dataclass(frozen=True)
class AlgorithmInfo:
    """Who produced the mask: goes to AlgorithmName (0066,0036) and AlgorithmVersion (0066,0031)."""

    name: str
    version: str
    parameters: dict[str, str] | None = None  # AlgorithmParameters (0066,0032), e.g. experts run and skipped


def write_segmentation(
    source_datasets: Sequence[Dataset],
    mask: npt.NDArray[np.uint8],
    algorithm: AlgorithmInfo,
    fingerprint: str,
    *,
    role: str = "ensemble",
    series_number: int = ENSEMBLE_SERIES_NUMBER,
    series_description: str | None = None,
    segment: SegmentKind = TUMOUR,
    segments: Sequence[SegmentKind] | None = None,
    algorithm_type: hd.seg.SegmentAlgorithmTypeValues = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
    display_rgb: tuple[int, int, int] = ENSEMBLE_RGB,
) -> Dataset:
    """Build the SEG for ``mask`` (shape ``(slices, rows, columns)``, in the order of ``source_datasets``).

    ``mask`` is binary (one segment, ``segment``) or, with ``segments``, a label map whose value *i* is the
    ``i``-th of ``segments`` (0 nothing). ``role`` keys the UIDs; ``series_description`` (LO, cut to 64
    characters) defaults to "OncoFlow SEG <algorithm name>".
    """
    if mask.shape[0] != len(source_datasets):
        raise ValueError(f"mask has {mask.shape[0]} frames for {len(source_datasets)} source images")
    kinds = list(segments) if segments else [segment]
    labels = mask.astype(np.uint8) if segments else (mask > 0).astype(np.uint8)
    if int(labels.max(initial=0)) > len(kinds):
        raise ValueError(f"the label map holds value {int(labels.max())} for {len(kinds)} segments")
    description = (series_description or f"OncoFlow SEG {algorithm.name}")[:64]
    content = content_digest(
        labels.tobytes() if segments else np.packbits(labels).tobytes(), repr(labels.shape), algorithm.name,
        algorithm.version, repr(sorted((algorithm.parameters or {}).items())), description, repr(kinds),
        algorithm_type.value, repr(display_rgb), str(series_number), __version__,
        *(str(ds.SOPInstanceUID) for ds in source_datasets))
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=algorithm.version[:64],  # AlgorithmVersion is LO
        parameters=algorithm.parameters or None,
    )
    description_items = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=kind.label,
            segmented_property_category=kind.category,
            segmented_property_type=kind.property_type,
            algorithm_type=algorithm_type,
            algorithm_identification=identification,
            display_color=hd.color.CIELabColor.from_rgb(*(kind.rgb if len(kinds) > 1 and kind.rgb else display_rgb)),
        )
        for number, kind in enumerate(kinds, start=1)
    ]
    label = kinds[0].label if len(kinds) == 1 else "Tumour compartments"
    seg = hd.seg.Segmentation(
        **_source_geometry(source_datasets),
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=description_items,
        series_instance_uid=derived_uid("seg-series", fingerprint, role, content),
        series_number=series_number,
        sop_instance_uid=derived_uid("seg-instance", fingerprint, role, content),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="OncoFlow tumour segmentation",
        software_versions=f"oncoflow {__version__} / {algorithm.name} {algorithm.version}"[:64],
        device_serial_number="oncoflow-0001",
        content_description=f"{label} segmentation by {algorithm.name}"[:64],
        content_label=label.upper().replace(" ", "_").replace("-", "_")[:16],
        series_description=description,
        omit_empty_frames=False,
        specific_character_set=SPECIFIC_CHARACTER_SET,  # the source's PatientName in any script
    )
    return seg


def _source_geometry(source_datasets: Sequence[Dataset]) -> dict[str, Any]:
    """highdicom's source arguments: the images of a classic series, or the one multi-frame object whose frames
    (:class:`~oncoflow.dicom.enhanced_mr_frames.FrameView`) are the slices, given with the slices' plane positions,
    orientation and pixel measures (the object may hold other stacks; highdicom matches the frames by position and
    references them by ReferencedFrameNumber, 0008,1160)."""
    if not isinstance(source_datasets[0], FrameView):
        return {"source_images": list(source_datasets)}
    first = source_datasets[0]
    patient = hd.CoordinateSystemNames.PATIENT
    orientation = hd.PlaneOrientationSequence(patient, [float(v) for v in first.ImageOrientationPatient])
    measures = hd.PixelMeasuresSequence([float(v) for v in first.PixelSpacing],
                                        float(first.get("SliceThickness") or 1.0))
    # highdicom reads the source's orientation and pixel measures from its shared functional groups; an object
    # whose stacks differ in them keeps them per frame, so highdicom is given a new top-level dataset (the
    # object itself unchanged) whose shared groups hold the stack's
    source = Dataset()
    for element in first.source:
        source.add(element)
    shared = Dataset()
    for element in first.source.SharedFunctionalGroupsSequence[0]:
        shared.add(element)
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = orientation, measures
    source.SharedFunctionalGroupsSequence = [shared]
    return {
        "source_images": [source],
        "plane_orientation": orientation,
        "pixel_measures": measures,
        "plane_positions": [hd.PlanePositionSequence(patient, [float(v) for v in ds.ImagePositionPatient])
                            for ds in source_datasets],
    }


def read_source_mask(seg: Dataset, source_datasets: Sequence[Dataset],
                     segment_numbers: Sequence[int] = (1,)) -> npt.NDArray[np.uint8]:
    """The union of ``segment_numbers`` as a ``(slices, rows, columns)`` 0/1 mask in the order of
    ``source_datasets``: classic images (by SOP Instance UID) or the frames of one multi-frame object (by
    frame number)."""
    if not isinstance(source_datasets[0], FrameView):
        return read_segmentation_mask(seg, [str(ds.SOPInstanceUID) for ds in source_datasets], segment_numbers)
    pixels = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_frame(
        source_sop_instance_uid=str(source_datasets[0].SOPInstanceUID),
        source_frame_numbers=[ds.frame_number for ds in source_datasets],  # type: ignore[attr-defined]
        segment_numbers=list(segment_numbers),
        combine_segments=True,
        relabel=True,
    )
    return (np.asarray(pixels) > 0).astype(np.uint8)


def read_segmentation_mask(seg: Dataset, source_sop_instance_uids: Sequence[str],
                           segment_numbers: Sequence[int] = (1,)) -> npt.NDArray[np.uint8]:
    """Read the union of ``segment_numbers`` back as a ``(slices, rows, columns)`` 0/1 mask in the order of the
    given source UIDs."""
    parsed = hd.seg.Segmentation.from_dataset(seg)
    pixels = parsed.get_pixels_by_source_instance(
        source_sop_instance_uids=list(source_sop_instance_uids),
        segment_numbers=list(segment_numbers),
        combine_segments=True,
        relabel=True,
    )
    return (np.asarray(pixels) > 0).astype(np.uint8)


def _code_of(item: Dataset) -> tuple[str, str]:
    code = item.SegmentedPropertyTypeCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def region_segment_numbers(seg: Dataset, region: Region) -> list[int]:
    """The segments of ``seg`` that make up ``region``: its compartments' segments (by SegmentedPropertyType and
    SegmentLabel), or the one segment given as that region. Empty when the SEG cannot say (e.g. only a tumour
    core and the whole tumour is asked)."""
    by_compartment = {(k.property_type.scheme_designator, k.property_type.value, k.label): c
                      for c, k in COMPARTMENT_SEGMENTS.items()}
    by_region = {(k.property_type.scheme_designator, k.property_type.value, k.label): r
                 for r, k in REGION_SEGMENTS.items()}
    found_compartments: dict[int, Compartment] = {}
    for item in seg.SegmentSequence:
        key = (*_code_of(item), str(item.SegmentLabel))
        if by_region.get(key) == region:
            return [int(item.SegmentNumber)]
        if key in by_compartment:
            found_compartments[int(item.SegmentNumber)] = by_compartment[key]
    wanted = set(REGION_COMPARTMENTS[region]) - {Compartment.NON_ENHANCING}
    if not wanted <= set(found_compartments.values()):
        return []
    return sorted(n for n, c in found_compartments.items() if c in REGION_COMPARTMENTS[region])
