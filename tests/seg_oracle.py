"""An oracle for DICOM-SEG objects read back from the PACS, sharing no code with OncoFlow's writer or reader.

Frames are decoded by pydicom alone (BINARY segmentations: one bit per pixel, unpacked by pydicom) and put
back in source order through each frame's Derivation Image Sequence > Source Image Sequence >
ReferencedSOPInstanceUID (PS3.3 C.7.6.16.2.6); overlaps are plain numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset


def segment_mask(seg: Dataset, source_sop_instance_uids: Sequence[str],
                 segment_number: int = 1) -> npt.NDArray[np.uint8]:
    """Segment ``segment_number`` of ``seg`` as a ``(slices, rows, columns)`` mask in the order of the sources."""
    assert seg.SegmentationType == "BINARY", seg.SegmentationType
    frames = np.asarray(seg.pixel_array, np.uint8).reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    index = {uid: i for i, uid in enumerate(source_sop_instance_uids)}
    mask = np.zeros((len(index), int(seg.Rows), int(seg.Columns)), np.uint8)
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        # the segment of the frame: per frame, or shared by every frame (a SEG of one segment)
        identification = item if "SegmentIdentificationSequence" in item else shared
        if int(identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != segment_number:
            continue
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        mask[index[str(source)]] |= frame
    return mask


def dice(a: npt.NDArray[np.integer], b: npt.NDArray[np.integer]) -> float:
    """2|A and B| / (|A| + |B|); 1.0 for two empty masks."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def mean_pairwise_dice(masks: Sequence[npt.NDArray[np.integer]]) -> float:
    """The panel's agreement as the README defines it: the mean Dice over every pair of experts."""
    pairs = list(combinations(masks, 2))
    return sum(dice(a, b) for a, b in pairs) / len(pairs)


def majority(masks: Sequence[npt.NDArray[np.integer]]) -> npt.NDArray[np.uint8]:
    """Voxels marked by more than half of the masks."""
    votes = np.sum([m > 0 for m in masks], axis=0)
    return (votes * 2 > len(masks)).astype(np.uint8)
