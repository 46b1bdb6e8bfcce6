"""Encode a binary mask as a DICOM Segmentation (highdicom).

The SEG references its source series (ReferencedSeriesSequence, per-frame source
image references), carries one segment (:class:`SegmentKind`: the tumour, SCT 108369006
"Neoplasm" under the category SCT 49755003 "Morphologically Abnormal Structure"; or the
brain, SCT 12738006 "Brain" under SCT 91723000 "Anatomical Structure"), and names the
algorithm in the AlgorithmIdentificationSequence. Empty frames are kept
(``omit_empty_frames=False``), which OHIF needs to display the SEG.

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

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from oncoflow import __version__
from oncoflow.dicom.derived_object import MANUFACTURER, content_digest, derived_uid

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
    SegmentedPropertyTypeCodeSequence (0062,000F)."""

    label: str
    category: Code
    property_type: Code


TUMOUR = SegmentKind("Tumour", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)
BRAIN = SegmentKind("Brain", codes.SCT.AnatomicalStructure, codes.SCT.Brain)


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
    algorithm_type: hd.seg.SegmentAlgorithmTypeValues = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
    display_rgb: tuple[int, int, int] = ENSEMBLE_RGB,
) -> Dataset:
    """Build the SEG for ``mask`` (shape ``(slices, rows, columns)``, in the order of ``source_datasets``).

    ``role`` keys the UIDs; ``series_description`` (LO, cut to 64 characters) defaults to
    "OncoFlow SEG <algorithm name>".
    """
    if mask.shape[0] != len(source_datasets):
        raise ValueError(f"mask has {mask.shape[0]} frames for {len(source_datasets)} source images")
    binary = (mask > 0).astype(np.uint8)
    description = (series_description or f"OncoFlow SEG {algorithm.name}")[:64]
    content = content_digest(
        np.packbits(binary).tobytes(), repr(binary.shape), algorithm.name, algorithm.version,
        repr(sorted((algorithm.parameters or {}).items())), description, repr(segment), algorithm_type.value,
        repr(display_rgb), str(series_number), __version__, *(str(ds.SOPInstanceUID) for ds in source_datasets))
    description_item = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment.label,
        segmented_property_category=segment.category,
        segmented_property_type=segment.property_type,
        algorithm_type=algorithm_type,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm.name[:64],
            family=codes.cid7162.ArtificialIntelligence,
            version=algorithm.version[:64],  # AlgorithmVersion is LO
            parameters=algorithm.parameters or None,
        ),
        display_color=hd.color.CIELabColor.from_rgb(*display_rgb),
    )
    seg = hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=binary,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description_item],
        series_instance_uid=derived_uid("seg-series", fingerprint, role, content),
        series_number=series_number,
        sop_instance_uid=derived_uid("seg-instance", fingerprint, role, content),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="OncoFlow tumour segmentation",
        software_versions=f"oncoflow {__version__} / {algorithm.name} {algorithm.version}"[:64],
        device_serial_number="oncoflow-0001",
        content_description=f"{segment.label} segmentation by {algorithm.name}"[:64],
        content_label=segment.label.upper().replace(" ", "_")[:16],
        series_description=description,
        omit_empty_frames=False,
    )
    return seg


def read_segmentation_mask(seg: Dataset, source_sop_instance_uids: Sequence[str]) -> npt.NDArray[np.uint8]:
    """Read segment 1 back as a ``(slices, rows, columns)`` mask in the order of the given source UIDs."""
    parsed = hd.seg.Segmentation.from_dataset(seg)
    pixels = parsed.get_pixels_by_source_instance(
        source_sop_instance_uids=list(source_sop_instance_uids),
        segment_numbers=[1],
        combine_segments=True,
    )
    return np.asarray(pixels, dtype=np.uint8)
