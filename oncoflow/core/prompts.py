"""Prompts for promptable experts (SAM2) and their conversions, shared by the plugin and the worker.

All coordinates are voxel indices of the ``(slice, row, column)`` volume the prompt
belongs to: a box spans rows ``row_min..row_max`` and columns ``col_min..col_max``
(inclusive pixel centres) on one slice. Click points given by a user in patient
coordinates (LPS, mm) are turned into voxel prompts with :meth:`Volume.voxel_index`
before they reach here.

On the wire (KServe v2) boxes are ``BOXES`` FP32 ``(N, 5)``: ``slice, row_min,
col_min, row_max, col_max``; points are ``POINTS`` FP32 ``(N, 4)``: ``slice, row,
column, label`` with label 1 for "tumour here" and 0 for "not tumour".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BOXES = "BOXES"
POINTS = "POINTS"


@dataclass(frozen=True)
class SliceBox:
    """A box on one slice, in voxel indices (inclusive)."""

    slice_index: int
    row_min: float
    col_min: float
    row_max: float
    col_max: float


@dataclass(frozen=True)
class SlicePoint:
    """A click on one slice, in voxel indices; ``positive`` is False for a background click."""

    slice_index: int
    row: float
    col: float
    positive: bool = True


class PromptError(ValueError):
    """A prompt tensor or prompt that does not fit the volume."""


def boxes_to_tensor(boxes: Iterable[SliceBox]) -> npt.NDArray[np.float32]:
    rows = [(b.slice_index, b.row_min, b.col_min, b.row_max, b.col_max) for b in boxes]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def points_to_tensor(points: Iterable[SlicePoint]) -> npt.NDArray[np.float32]:
    rows = [(p.slice_index, p.row, p.col, 1.0 if p.positive else 0.0) for p in points]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def _check_slice(index: float, n_slices: int, what: str) -> int:
    if not np.isfinite(index) or int(index) != index or not 0 <= index < n_slices:
        raise PromptError(f"{what} slice {index} is not a slice index of a {n_slices}-slice volume")
    return int(index)


def boxes_from_tensor(array: np.ndarray, shape: Sequence[int]) -> list[SliceBox]:
    """Validated boxes from an ``(N, 5)`` tensor for a volume of ``shape``; raises :class:`PromptError`."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 5:
        raise PromptError(f"{BOXES} must have shape (N, 5), got {list(array.shape)}")
    boxes = []
    for s, r0, c0, r1, c1 in array:
        index = _check_slice(s, shape[0], "box")
        if not (np.all(np.isfinite([r0, c0, r1, c1])) and r0 <= r1 and c0 <= c1):
            raise PromptError(f"box ({r0}, {c0})-({r1}, {c1}) on slice {index} is not a box (min <= max)")
        r0, r1 = float(np.clip(r0, 0, shape[1] - 1)), float(np.clip(r1, 0, shape[1] - 1))
        c0, c1 = float(np.clip(c0, 0, shape[2] - 1)), float(np.clip(c1, 0, shape[2] - 1))
        boxes.append(SliceBox(index, r0, c0, r1, c1))
    return boxes


def points_from_tensor(array: np.ndarray, shape: Sequence[int]) -> list[SlicePoint]:
    """Validated points from an ``(N, 4)`` tensor for a volume of ``shape``; raises :class:`PromptError`."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise PromptError(f"{POINTS} must have shape (N, 4), got {list(array.shape)}")
    points = []
    for s, r, c, label in array:
        index = _check_slice(s, shape[0], "point")
        if not (0 <= r <= shape[1] - 1 and 0 <= c <= shape[2] - 1):
            raise PromptError(f"point ({r}, {c}) on slice {index} lies outside the {shape[1]}x{shape[2]} slice")
        if label not in (0.0, 1.0):
            raise PromptError(f"point label {label} must be 1 (tumour) or 0 (background)")
        points.append(SlicePoint(index, float(r), float(c), label == 1.0))
    return points


def boxes_from_mask(mask: npt.NDArray[np.integer], max_boxes: int = 3, margin_px: int = 2) -> list[SliceBox]:
    """Box prompts that describe ``mask``: one per chosen slice, the largest cross-section first.

    Slices are the one with the largest tumour area, then the first and last slices the
    tumour touches (when different), up to ``max_boxes``; each box is the slice's
    bounding box grown by ``margin_px``. An empty mask gives no box.
    """
    areas = mask.reshape(mask.shape[0], -1).astype(bool).sum(axis=1)
    occupied = np.flatnonzero(areas)
    if occupied.size == 0:
        return []
    chosen: list[int] = []
    for index in (int(np.argmax(areas)), int(occupied[0]), int(occupied[-1])):
        if index not in chosen:
            chosen.append(index)
    boxes = []
    for index in chosen[:max_boxes]:
        rows, cols = np.nonzero(mask[index])
        boxes.append(
            SliceBox(
                index,
                float(max(rows.min() - margin_px, 0)),
                float(max(cols.min() - margin_px, 0)),
                float(min(rows.max() + margin_px, mask.shape[1] - 1)),
                float(min(cols.max() + margin_px, mask.shape[2] - 1)),
            )
        )
    return boxes


def mask_from_boxes(boxes: Sequence[SliceBox], shape: Sequence[int]) -> npt.NDArray[np.uint8]:
    """The filled-box mask: each box filled on its slice, boxes on slices in between interpolated.

    Used when no SAM2 model can turn a localiser's boxes into a tumour outline. Boxes
    on consecutive prompted slices (sorted) are linearly interpolated across the gap,
    so a localiser that answered on every k-th slice still yields a solid volume.
    """
    mask = np.zeros(tuple(shape), np.uint8)
    by_slice: dict[int, SliceBox] = {}
    for box in boxes:  # several boxes on one slice: keep their union's extent
        old = by_slice.get(box.slice_index)
        by_slice[box.slice_index] = box if old is None else SliceBox(
            box.slice_index, min(old.row_min, box.row_min), min(old.col_min, box.col_min),
            max(old.row_max, box.row_max), max(old.col_max, box.col_max),
        )
    ordered = sorted(by_slice.values(), key=lambda b: b.slice_index)

    def fill(index: int, r0: float, c0: float, r1: float, c1: float) -> None:
        mask[index, int(round(r0)): int(round(r1)) + 1, int(round(c0)): int(round(c1)) + 1] = 1

    for box in ordered:
        fill(box.slice_index, box.row_min, box.col_min, box.row_max, box.col_max)
    for a, b in zip(ordered, ordered[1:], strict=False):
        gap = b.slice_index - a.slice_index
        for step in range(1, gap):
            t = step / gap
            fill(
                a.slice_index + step,
                a.row_min + t * (b.row_min - a.row_min),
                a.col_min + t * (b.col_min - a.col_min),
                a.row_max + t * (b.row_max - a.row_max),
                a.col_max + t * (b.col_max - a.col_max),
            )
    return mask
