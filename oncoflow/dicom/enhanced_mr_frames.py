"""The frames of a multi-frame MR object (Enhanced MR, Legacy Converted Enhanced MR), grouped into stacks.

Each frame's geometry and rescale come from its functional groups, the per-frame group
(PerFrameFunctionalGroupsSequence, 5200,9230) winning over the shared one
(SharedFunctionalGroupsSequence, 5200,9229):

* PlanePositionSequence (0020,9113) / ImagePositionPatient (0020,0032), mm (LPS)
* PlaneOrientationSequence (0020,9116) / ImageOrientationPatient (0020,0037), direction cosines
* PixelMeasuresSequence (0028,9110) / PixelSpacing (0028,0030) and SliceThickness (0018,0050), mm
* PixelValueTransformationSequence (0028,9145) / RescaleSlope (0028,1053), RescaleIntercept (0028,1052)
* FrameContentSequence (0020,9111) / StackID (0020,9056), InStackPositionNumber (0020,9057),
  DimensionIndexValues (0020,9157), read with the DimensionIndexSequence (0020,9222)

A stack is the frames of one StackID; an object without StackID is split by orientation. Each frame is
described by a small header-only :class:`FrameView` (the classic single-frame attributes), so that
:mod:`oncoflow.dicom.volume_builder` sorts, spaces and checks the slices of a stack exactly as it does a classic
series, before any pixel data is decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

ENHANCED_MR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}
ORIENTATION_DECIMALS = 3  # direction cosines rounded so, to group frames by orientation

# the top-level attributes a frame view does not carry over from its object (it carries all the others: patient,
# study, series, frame of reference, equipment, ...): the frames, their functional groups and the pixel data
_FRAME_ONLY_KEYWORDS = frozenset({
    "NumberOfFrames", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PixelData",
    "FloatPixelData", "DoubleFloatPixelData", "DimensionIndexSequence", "DimensionOrganizationSequence",
})


class MultiFrameError(ValueError):
    """The multi-frame object cannot be read as 3-D stacks; the message names the problem."""


class FrameView(Dataset):
    """One frame of a multi-frame object, with the classic single-frame attributes (no pixel data).

    ``source`` is the multi-frame object, ``frame_number`` the frame's 1-based number in it (as in
    ReferencedFrameNumber, 0008,1160) and ``stack_id`` its stack.
    """

    source: Dataset
    frame_number: int
    stack_id: str

    def __init__(self, source: Dataset, frame_number: int, stack_id: str) -> None:
        super().__init__()
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "frame_number", frame_number)
        object.__setattr__(self, "stack_id", stack_id)


def is_multiframe(ds: Dataset) -> bool:
    """True for an object with several frames or functional groups (NumberOfFrames 0028,0008)."""
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _group_item(ds: Dataset, per_frame: Dataset | None, sequence: str) -> Dataset | None:
    """The item of functional group ``sequence`` for one frame: its per-frame one, else the shared one."""
    for groups in (per_frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        items = groups.get(sequence) if groups is not None else None
        if items:
            return items[0]
    return None


def _numbers(item: Dataset | None, keyword: str, length: int) -> list[float] | None:
    value = None if item is None else item.get(keyword)
    if value is None or len(value) != length:
        return None
    return [float(v) for v in value]


def _dimension_names(ds: Dataset) -> list[str]:
    """The name of each dimension index (DimensionDescriptionLabel, else the index pointer's keyword)."""
    names = []
    for item in ds.get("DimensionIndexSequence", []):
        pointer = item.get("DimensionIndexPointer")
        label = str(item.get("DimensionDescriptionLabel", "") or "")
        names.append(label or (keyword_for_tag(pointer) if pointer is not None else "") or str(pointer))
    return names


def frame_views(ds: Dataset) -> list[FrameView]:
    """A header-only view of every frame of ``ds``, in frame order.

    Raises:
        MultiFrameError: no PerFrameFunctionalGroupsSequence, or a frame without a plane position, a plane
            orientation or pixel measures.
    """
    n_frames = int(ds.get("NumberOfFrames", 0) or 0)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) != n_frames:
        raise MultiFrameError(
            f"multi-frame object with {n_frames} frames and "
            f"{0 if per_frame is None else len(per_frame)} items of PerFrameFunctionalGroupsSequence: "
            "its frames' geometry cannot be read"
        )
    views = []
    for number, groups in enumerate(per_frame, start=1):
        content = _group_item(ds, groups, "FrameContentSequence")
        stack_id = str(content.get("StackID", "") or "") if content is not None else ""
        view = FrameView(ds, number, stack_id)
        if getattr(ds, "file_meta", None) is not None:
            view.file_meta = ds.file_meta  # the transfer syntax, for the decoder checks
        for element in ds:
            if element.keyword not in _FRAME_ONLY_KEYWORDS:
                view.add(element)
        position = _numbers(_group_item(ds, groups, "PlanePositionSequence"), "ImagePositionPatient", 3)
        if position is None:
            raise MultiFrameError(f"frame {number} has no plane position (PlanePositionSequence / "
                                  "ImagePositionPatient): its place in the volume is unknown")
        orientation = _numbers(_group_item(ds, groups, "PlaneOrientationSequence"), "ImageOrientationPatient", 6)
        if orientation is None:
            raise MultiFrameError(f"frame {number} has no plane orientation (PlaneOrientationSequence / "
                                  "ImageOrientationPatient)")
        measures = _group_item(ds, groups, "PixelMeasuresSequence")
        spacing = _numbers(measures, "PixelSpacing", 2)
        if spacing is None:
            raise MultiFrameError(f"frame {number} has no pixel spacing (PixelMeasuresSequence / PixelSpacing)")
        view.ImagePositionPatient = position
        view.ImageOrientationPatient = orientation
        view.PixelSpacing = spacing
        if measures is not None and measures.get("SliceThickness") is not None:
            view.SliceThickness = measures.SliceThickness
        rescale = _group_item(ds, groups, "PixelValueTransformationSequence")
        view.RescaleSlope = float((rescale.get("RescaleSlope") if rescale else None) or ds.get("RescaleSlope", 1.0))
        view.RescaleIntercept = float(
            (rescale.get("RescaleIntercept") if rescale else None) or ds.get("RescaleIntercept", 0.0) or 0.0)
        if content is not None and content.get("InStackPositionNumber") is not None:
            view.InStackPositionNumber = int(content.InStackPositionNumber)
        if content is not None and content.get("DimensionIndexValues") is not None:
            values = content.DimensionIndexValues
            view.DimensionIndexValues = list(values) if isinstance(values, Sequence) else [values]
        views.append(view)
    return views


def _orientation_key(view: FrameView) -> tuple[float, ...]:
    return tuple(np.round(np.asarray(view.ImageOrientationPatient, dtype=float), ORIENTATION_DECIMALS).tolist())


def _position_key(view: FrameView) -> tuple[float, ...]:
    return tuple(np.round(np.asarray(view.ImagePositionPatient, dtype=float), 2).tolist())


def _check_one_frame_per_position(source: Dataset, stack_id: str, views: list[FrameView]) -> None:
    """Refuse a stack holding several frames at one position: a 4-D object (temporal positions, echoes, ...)."""
    by_position: dict[tuple[float, ...], list[FrameView]] = {}
    for view in views:
        by_position.setdefault(_position_key(view), []).append(view)
    shared = [frames for frames in by_position.values() if len(frames) > 1]
    if not shared:
        return
    names = _dimension_names(source)
    varying = []
    for index, name in enumerate(names):
        values = {tuple(v.get("DimensionIndexValues", []))[index:index + 1] for v in shared[0]}
        if len(values) > 1:
            varying.append(name)
    dimension = f" along {', '.join(varying)}" if varying else ""
    raise MultiFrameError(
        f"4-D multi-frame object: stack {stack_id or '(no StackID)'} has {len(views)} frames at "
        f"{len(by_position)} positions, {len(shared[0])} frames at one position{dimension} "
        "(temporal positions, echoes or other dimensions); one 3-D stack is needed"
    )


def stacks(ds: Dataset) -> dict[str, list[FrameView]]:
    """The object's frames grouped into stacks: by StackID, else (no StackID) by orientation.

    Stacks without StackID are named for their plane (``axial``, ``coronal``, ``sagittal``; ``axial-2`` for a
    second axial orientation); an object of one orientation without StackID has the one stack ``""``.

    Raises:
        MultiFrameError: unreadable frame geometry, mixed orientations within one StackID, or several frames at
            one position of a stack (a 4-D object).
    """
    views = frame_views(ds)
    grouped: dict[str, list[FrameView]] = {}
    if all(v.stack_id for v in views):
        for view in views:
            grouped.setdefault(view.stack_id, []).append(view)
        for stack_id, members in grouped.items():
            orientations = {_orientation_key(v) for v in members}
            if len(orientations) > 1:
                raise MultiFrameError(
                    f"mixed orientations within stack {stack_id}: {len(orientations)} different "
                    "ImageOrientationPatient among its frames"
                )
    else:
        by_orientation: dict[tuple[float, ...], list[FrameView]] = {}
        for view in views:
            by_orientation.setdefault(_orientation_key(view), []).append(view)
        names = [_plane_name(orientation) for orientation in by_orientation]
        for (_, members), plane in sorted(zip(by_orientation.items(), names, strict=True),
                                                    key=lambda pair: (pair[1], pair[0][0])):
            name = "" if len(by_orientation) == 1 else plane if names.count(plane) == 1 else \
                f"{plane}-{sum(1 for other in grouped if other.startswith(plane)) + 1}"
            for view in members:
                object.__setattr__(view, "stack_id", name)
            grouped[name] = members
    for stack_id, members in grouped.items():
        _check_one_frame_per_position(ds, stack_id, members)
    return dict(sorted(grouped.items(), key=lambda item: (len(item[0]), item[0])))  # "2" before "10"


def _plane_name(orientation: tuple[float, ...]) -> str:
    """The plane a stack's slices lie in, from the largest component of their normal (LPS): ``axial`` (z),
    ``coronal`` (y) or ``sagittal`` (x)."""
    normal = np.cross(orientation[:3], orientation[3:])
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def frame_pixels(view: FrameView) -> np.ndarray:
    """The stored values of one frame (no rescale), decoded alone from its object's PixelData."""
    from pydicom.pixels import pixel_array

    return pixel_array(view.source, index=view.frame_number - 1)


def shared_attribute(ds: Dataset, keyword: str) -> object | None:
    """The value of ``keyword`` at the top level of ``ds``, else in the first item of any of its shared functional
    groups (e.g. RepetitionTime in MRTimingAndRelatedParametersSequence, 0018,9112), else ``None``."""
    if keyword in ds:
        return ds[keyword].value
    for groups in ds.get("SharedFunctionalGroupsSequence", [])[:1]:
        for element in groups:
            if element.VR == "SQ" and len(element.value) > 0 and keyword in element.value[0]:
                return element.value[0][keyword].value
    return None
