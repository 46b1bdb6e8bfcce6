"""Build a :class:`~oncoflow.core.volume.Volume` from the instances of one MR series.

Every check that can fail is done from the headers first, so that a hostile or
oversized series is refused before any pixel data is decoded. Failures raise
:class:`InputError` with a message meant for the radiologist or PACS admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from oncoflow.core.volume import Volume
from oncoflow.dicom.enhanced_mr_frames import (
    ENHANCED_MR_SOP_CLASSES,
    FrameView,
    MultiFrameError,
    frame_pixels,
    is_multiframe,
    stacks,
)

MIN_SLICES = 3
ORIENTATION_TOLERANCE = 1e-3  # cosine units
SPACING_RELATIVE_TOLERANCE = 0.05  # 5 % of the median slice spacing
PIXEL_SPACING_TOLERANCE_MM = 1e-3


class InputError(ValueError):
    """The study cannot be processed as it is; the message says why."""


@dataclass(frozen=True)
class SortedSeries:
    """The instances of a series sorted along the slice normal, with the geometry they define."""

    datasets: list[Dataset]
    volume: Volume


def _vector(ds: Dataset, keyword: str, length: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != length:
        raise InputError(f"instance {ds.get('SOPInstanceUID', '?')} lacks a valid {keyword}")
    return np.asarray([float(v) for v in value], dtype=np.float64)


def check_headers(datasets: Sequence[Dataset], max_voxels: int) -> None:
    """Refuse series that are not a grayscale MR 3-D stack of bounded size (single-frame images, or the
    :class:`FrameView` of one stack of a multi-frame object).

    Raises:
        InputError: non-MR modality, too few slices, RGB, multi-frame, no image size, mixed sizes or an
            oversized volume (rows x columns x slices > ``max_voxels``).
    """
    if not datasets:
        raise InputError("the series has no instances")
    modalities = sorted({str(ds.get("Modality", "")) for ds in datasets})
    if modalities != ["MR"]:
        raise InputError(f"the series is not MR (Modality {', '.join(modalities) or 'missing'})")
    if len(datasets) < MIN_SLICES:
        raise InputError(
            f"a single slice is not a 3-D volume: the series has {len(datasets)} image(s), "
            f"at least {MIN_SLICES} are needed"
        )
    for ds in datasets:
        samples = int(ds.get("SamplesPerPixel", 1))
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if samples != 1 or not photometric.startswith("MONOCHROME"):
            raise InputError(
                f"RGB or colour image (SamplesPerPixel {samples}, PhotometricInterpretation {photometric}); "
                "a grayscale MR series is needed"
            )
        if is_multiframe(ds):
            raise InputError(
                f"multi-frame instance with {ds.get('NumberOfFrames', '?')} frames among {len(datasets)} instances: "
                "a series is either one multi-frame object or single-frame images"
            )
    missing = sorted({k for ds in datasets for k in ("Rows", "Columns") if k not in ds})
    if missing:
        raise InputError(f"instances without {', '.join(missing)}: not an image series")
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(sizes) > 1:
        raise InputError(f"mixed image sizes in one series: {sorted(sizes)}")
    rows, cols = sizes.pop()
    n_voxels = rows * cols * len(datasets)
    if n_voxels > max_voxels:
        raise InputError(
            f"volume of {rows}x{cols}x{len(datasets)} = {n_voxels} voxels exceeds the limit of "
            f"{max_voxels} (ONCOFLOW_MAX_VOXELS)"
        )


def sort_slices(datasets: Sequence[Dataset]) -> tuple[list[Dataset], float, np.ndarray]:
    """Sort slices along the normal of their common orientation.

    Returns:
        The sorted datasets, the slice spacing in mm and the unit slice direction (LPS).

    Raises:
        InputError: differing orientations or pixel spacings, several images at one
            position (a 4-D series), missing slices or uneven spacing.
    """
    orientations = [_vector(ds, "ImageOrientationPatient", 6) for ds in datasets]
    reference = orientations[0]
    if any(np.abs(o - reference).max() > ORIENTATION_TOLERANCE for o in orientations):
        raise InputError("the images of the series have different ImageOrientationPatient")
    pixel_spacings = [_vector(ds, "PixelSpacing", 2) for ds in datasets]
    if any(np.abs(p - pixel_spacings[0]).max() > PIXEL_SPACING_TOLERANCE_MM for p in pixel_spacings):
        raise InputError("the images of the series have different PixelSpacing")

    row_dir, col_dir = reference[:3], reference[3:]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    positions = np.array([_vector(ds, "ImagePositionPatient", 3) @ normal for ds in datasets])
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    ordered = [datasets[i] for i in order]

    gaps_mm = np.diff(positions)
    if np.any(gaps_mm < 1e-3):
        n_unique = len(np.unique(np.round(positions, 3)))
        raise InputError(
            f"4-D series: {len(datasets)} images at {n_unique} slice positions "
            "(several images share a position, e.g. temporal phases or echoes)"
        )
    spacing_mm = float(np.median(gaps_mm))
    deviation = np.abs(gaps_mm - spacing_mm) / spacing_mm
    worst = int(np.argmax(deviation))
    if deviation[worst] > SPACING_RELATIVE_TOLERANCE:
        ratio = gaps_mm[worst] / spacing_mm
        at = f"between slice positions {positions[worst]:.2f} mm and {positions[worst + 1]:.2f} mm"
        if abs(ratio - round(ratio)) < SPACING_RELATIVE_TOLERANCE and round(ratio) >= 2:
            raise InputError(
                f"missing slice(s): a gap of {gaps_mm[worst]:.2f} mm {at}, "
                f"where the slice spacing is {spacing_mm:.2f} mm ({int(round(ratio)) - 1} slice(s) missing)"
            )
        raise InputError(
            f"inconsistent slice spacing: {gaps_mm[worst]:.2f} mm {at}, median spacing {spacing_mm:.2f} mm"
        )
    return ordered, spacing_mm, normal


def check_decodable(datasets: Sequence[Dataset]) -> None:
    """Refuse pixel data in a transfer syntax (0002,0010) that no installed pydicom decoder plug-in reads.

    Checked from the file meta information alone, before any pixel data is decoded. The plug-ins OncoFlow
    installs (requirements.lock): pydicom itself (uncompressed, deflated, RLE Lossless), pyjpegls (JPEG-LS),
    python-gdcm (JPEG baseline, extended, lossless processes 14 and 14 SV1; pylibjpeg-libjpeg is GPL-3.0) and
    pylibjpeg with pylibjpeg-openjpeg (JPEG 2000). pydicom 3.0 has none for JPEG 2000 Part 2 multi-component, JPIP,
    MPEG-2/4, HEVC or the retired JPEG processes.

    Raises:
        InputError: naming the transfer syntax, e.g. "pixel data in JPIP Referenced (1.2.840.10008.1.2.4.94)
            cannot be decoded here".
    """
    syntaxes = {str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) for ds in datasets}
    for uid in sorted(syntaxes - {""}):  # without file meta information, the decoder is left to say
        syntax = UID(uid)
        missing = _missing_decoder(syntax)
        if missing is not None:
            named = f"{syntax.name} ({uid})" if syntax.name != uid else f"transfer syntax {uid}"
            raise InputError(f"pixel data in {named} cannot be decoded here{missing}")


def _missing_decoder(syntax: UID) -> str | None:
    """None when an installed plug-in decodes ``syntax``; else what is missing ("" when pydicom has no decoder
    for it at all, as for a transfer syntax newer than pydicom)."""
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError):
        return ""
    if decoder.is_available:
        return None
    return f" (it needs {' or '.join(decoder.missing_dependencies)})"


def _slice_pixels(ds: Dataset) -> np.ndarray:
    try:
        pixels = frame_pixels(ds) if isinstance(ds, FrameView) else ds.pixel_array
    except Exception as exc:  # pydicom raises several types for broken pixel data
        raise InputError(f"corrupt pixel data in instance {ds.get('SOPInstanceUID', '?')}: {exc}") from exc
    if pixels.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(
            f"corrupt pixel data in instance {ds.get('SOPInstanceUID', '?')}: "
            f"decoded shape {pixels.shape}, header says {ds.Rows}x{ds.Columns}"
        )
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def multiframe_stack(datasets: Sequence[Dataset], stack_id: str | None = None) -> list[FrameView]:
    """The frames of stack ``stack_id`` of a series sent as one multi-frame MR object (``None``: its only stack).

    Raises:
        InputError: several objects, a SOP class other than (Legacy Converted) Enhanced MR, frames whose geometry
            cannot be read (see :func:`oncoflow.dicom.enhanced_mr_frames.stacks`) or an unknown stack.
    """
    if len(datasets) != 1:
        raise InputError(f"{len(datasets)} multi-frame objects in one series: one object per series is read")
    source = datasets[0]
    sop_class = str(source.get("SOPClassUID", ""))
    if sop_class not in ENHANCED_MR_SOP_CLASSES:
        raise InputError(f"multi-frame object of SOP class {sop_class or 'missing'}: only "
                         f"{' and '.join(ENHANCED_MR_SOP_CLASSES.values())} are read")
    try:
        found = stacks(source)
    except MultiFrameError as exc:
        raise InputError(str(exc)) from exc
    if stack_id is None and len(found) > 1:
        raise InputError(f"the multi-frame object holds {len(found)} stacks ({', '.join(found)}); none was chosen")
    chosen = next(iter(found.values())) if stack_id is None else found.get(stack_id)
    if chosen is None:
        raise InputError(f"the multi-frame object has no stack {stack_id} (stacks: {', '.join(found)})")
    return chosen


def build_volume(datasets: Sequence[Dataset], max_voxels: int, stack_id: str | None = None) -> SortedSeries:
    """Check, sort and stack a series into a float32 :class:`Volume` (rescale applied).

    A series sent as one multi-frame object (Enhanced MR, Legacy Converted Enhanced MR) is built from the frames
    of its stack ``stack_id``: :attr:`SortedSeries.datasets` then holds one :class:`FrameView` per slice.
    """
    check_decodable(datasets)  # from the objects' file meta information, a multi-frame object's too
    if len(datasets) >= 1 and is_multiframe(datasets[0]):
        datasets = multiframe_stack(datasets, stack_id)
    check_headers(datasets, max_voxels)
    ordered, slice_spacing_mm, normal = sort_slices(datasets)
    first = ordered[0]
    iop = _vector(first, "ImageOrientationPatient", 6)
    row_spacing_mm, col_spacing_mm = (float(v) for v in first.PixelSpacing)
    voxels = np.empty((len(ordered), int(first.Rows), int(first.Columns)), dtype=np.float32)
    for index, ds in enumerate(ordered):
        voxels[index] = _slice_pixels(ds)
    origin = _vector(first, "ImagePositionPatient", 3)
    volume = Volume(
        voxels=voxels,
        spacing_mm=(slice_spacing_mm, row_spacing_mm, col_spacing_mm),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        row_direction=(float(iop[0]), float(iop[1]), float(iop[2])),
        column_direction=(float(iop[3]), float(iop[4]), float(iop[5])),
        slice_direction=(float(normal[0]), float(normal[1]), float(normal[2])),
    )
    return SortedSeries(datasets=ordered, volume=volume)


def read_instance(raw: bytes) -> Dataset:
    """Parse one DICOM Part-10 file, refusing garbage with :class:`InputError`."""
    from io import BytesIO

    try:
        return pydicom.dcmread(BytesIO(raw))
    except Exception as exc:
        raise InputError(f"unreadable DICOM instance: {exc}") from exc
