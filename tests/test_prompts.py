"""Prompt tensors and their conversions: boxes from a mask, filled boxes, patient mm to voxels."""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.core.prompts import (
    PromptError,
    SliceBox,
    SlicePoint,
    boxes_from_mask,
    boxes_from_tensor,
    boxes_to_tensor,
    mask_from_boxes,
    points_from_tensor,
    points_to_tensor,
)
from oncoflow.core.volume import Volume


def test_boxes_from_mask_pick_the_largest_and_end_slices() -> None:
    mask = np.zeros((6, 20, 20), np.uint8)
    mask[1, 5:7, 5:7] = 1
    mask[2, 4:10, 3:12] = 1  # the largest cross-section
    mask[3, 6:8, 6:8] = 1
    boxes = boxes_from_mask(mask, margin_px=1)
    assert boxes[0] == SliceBox(2, 3.0, 2.0, 10.0, 12.0)
    assert [b.slice_index for b in boxes] == [2, 1, 3]
    assert boxes_from_mask(np.zeros((2, 4, 4), np.uint8)) == []


def test_mask_from_boxes_interpolates_between_prompted_slices() -> None:
    mask = mask_from_boxes([SliceBox(0, 0, 0, 2, 2), SliceBox(4, 0, 0, 6, 6)], (5, 8, 8))
    assert mask[0].sum() == 9 and mask[4].sum() == 49
    assert mask[2].sum() == 25  # halfway: rows and columns 0..4
    assert mask_from_boxes([], (2, 3, 3)).sum() == 0


def test_tensors_round_trip_and_are_validated() -> None:
    boxes = [SliceBox(1, 2.0, 3.0, 4.0, 5.0)]
    points = [SlicePoint(0, 1.5, 2.5, False)]
    assert boxes_from_tensor(boxes_to_tensor(boxes), (3, 10, 10)) == boxes
    assert points_from_tensor(points_to_tensor(points), (3, 10, 10)) == points
    with pytest.raises(PromptError, match="not a slice index"):
        boxes_from_tensor(np.array([[7, 0, 0, 1, 1]], np.float32), (3, 10, 10))
    with pytest.raises(PromptError, match="min <= max"):
        boxes_from_tensor(np.array([[0, 5, 0, 1, 1]], np.float32), (3, 10, 10))
    with pytest.raises(PromptError, match="outside"):
        points_from_tensor(np.array([[0, 50, 0, 1]], np.float32), (3, 10, 10))
    with pytest.raises(PromptError, match="shape"):
        points_from_tensor(np.zeros((2, 3)), (3, 10, 10))


def test_voxel_index_inverts_the_patient_geometry() -> None:
    volume = Volume(np.zeros((4, 5, 6), np.float32), (3.0, 2.0, 1.5), (10.0, -20.0, 30.0),
                    (1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))  # coronal slices
    point = volume.affine_lps() @ np.array([2.0, 3.0, 4.0, 1.0])
    assert volume.voxel_index(tuple(point[:3])) == pytest.approx((2.0, 3.0, 4.0))
