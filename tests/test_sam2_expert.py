"""SAM2 expert: code-path tests with a random-weight checkpoint (tests/sam2_tiny.py).

The checkpoint has the released tiny model's keys and shapes but random weights, so
these tests prove loading (and its failures), prompting in SAM2's x = column / y = row
convention, slab selection, forward and backward propagation and pasting the slab
back into the full volume; they say nothing about segmentation accuracy. Frames are
shrunk to 64 px (``image_size``) to keep the file fast on a CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from oncoflow_inference.experts.base import ExpertInputError, ExpertNotReady
from oncoflow_inference.experts.sam2_expert import (
    Sam2Expert,
    _inference_state,
    _SlabFrames,
    sam2_expert_from_parameters,
    slab_range,
)
from oncoflow_inference.segmentation_tensors import IMAGE, MASK, SPACING_MM

from oncoflow.core.prompts import BOXES, POINTS, PromptError, SliceBox, SlicePoint, boxes_to_tensor, points_to_tensor

from .sam2_tiny import DEFAULT_CONFIG, build_random_sam2_checkpoint

IMAGE_SIZE_PX = 64
MAX_SLICES = 4
SPACING = (3.0, 1.0, 1.0)


def blob_volume(shape: tuple[int, int, int] = (10, 64, 64)) -> np.ndarray:
    """A dark volume with a bright ellipsoid around slice 5, row 32, column 32."""
    s, r, c = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    inside = ((s - 5) / 2.5) ** 2 + ((r - 32) / 8) ** 2 + ((c - 32) / 12) ** 2 <= 1
    rng = np.random.default_rng(0)
    return (100.0 + 5.0 * rng.standard_normal(shape) + 300.0 * inside).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_sam2_checkpoint(tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt")


@pytest.fixture(scope="module")
def expert(checkpoint: Path) -> Sam2Expert:
    model = Sam2Expert(DEFAULT_CONFIG, checkpoint, max_slices=MAX_SLICES, image_size=IMAGE_SIZE_PX)
    model.load()
    assert model.ready, model.not_ready_reason
    return model


class Recorder:
    """Wraps the expert's predictor to record the prompts SAM2 receives and the frames it yields."""

    def __init__(self, expert: Sam2Expert) -> None:
        self.predictor = expert._predictor
        self.prompts: list[dict[str, Any]] = []
        self.frames: dict[int, np.ndarray] = {}  # slab frame -> logits > 0, as yielded by SAM2
        self.num_frames: list[int] = []

    def add_new_points_or_box(self, state: dict[str, Any], **kwargs: Any) -> Any:
        self.prompts.append(kwargs)
        return type(self.predictor).add_new_points_or_box(self.predictor, state, **kwargs)

    def propagate_in_video(self, state: dict[str, Any], **kwargs: Any) -> Iterator[Any]:
        self.num_frames.append(state["num_frames"])
        for frame, ids, logits in type(self.predictor).propagate_in_video(self.predictor, state, **kwargs):
            self.frames[frame] = (logits[0, 0] > 0).numpy().copy()
            yield frame, ids, logits


@pytest.fixture
def recorder(expert: Sam2Expert) -> Iterator[Recorder]:
    record = Recorder(expert)
    predictor = expert._predictor
    predictor.add_new_points_or_box = record.add_new_points_or_box
    predictor.propagate_in_video = record.propagate_in_video
    try:
        yield record
    finally:
        del predictor.add_new_points_or_box, predictor.propagate_in_video


def assert_slab(mask: np.ndarray, record: Recorder, first: int, last: int) -> None:
    """SAM2 tracked exactly the slab, and the mask is its output pasted at the slab, zero elsewhere."""
    assert record.num_frames and set(record.num_frames) == {last - first + 1}
    assert sorted(record.frames) == list(range(last - first + 1))
    for frame, frame_mask in record.frames.items():
        np.testing.assert_array_equal(mask[first + frame], frame_mask.astype(np.uint8))
    outside = np.ones(mask.shape[0], bool)
    outside[first:last + 1] = False
    assert not mask[outside].any()
    assert mask[first:last + 1].any(), "random SAM2 weights gave an empty slab; the paste-back is untested"


def test_missing_checkpoint_is_not_ready(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sam2.1_hiera_tiny.pt"
    model = Sam2Expert(DEFAULT_CONFIG, missing)
    model.load()
    assert not model.ready
    assert str(missing) in (model.not_ready_reason or "")
    image = blob_volume()
    with pytest.raises(ExpertNotReady):
        model.segment(image, SPACING, [SliceBox(5, 20, 20, 40, 40)])
    with pytest.raises(ExpertNotReady):
        model.predict(image, SPACING)
    with pytest.raises(ExpertNotReady):
        model.infer({IMAGE: image, SPACING_MM: np.asarray(SPACING, np.float32)}, {MASK})


def test_checkpoint_with_wrong_keys_is_not_ready(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"x": torch.zeros(1)}}, wrong)
    model = Sam2Expert(DEFAULT_CONFIG, wrong, image_size=IMAGE_SIZE_PX)
    model.load()
    assert not model.ready
    reason = model.not_ready_reason or ""
    assert reason.startswith(f"SAM2 failed to load {wrong}")
    assert "RuntimeError" in reason and "Missing key(s)" in reason
    assert len(reason) <= 610


def test_unknown_config_is_not_ready(checkpoint: Path) -> None:
    model = Sam2Expert("configs/sam2.1/no_such_model.yaml", checkpoint)
    model.load()
    assert not model.ready
    assert "no_such_model" in (model.not_ready_reason or "")


def test_random_checkpoint_loads_with_version(expert: Sam2Expert, checkpoint: Path) -> None:
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    assert expert.version == f"sam2.1_hiera_t-{sha}-{IMAGE_SIZE_PX}px"
    assert len(expert.version) <= 64
    assert expert._predictor.image_size == IMAGE_SIZE_PX  # the Hydra override reached the model


def test_state_matches_sam2_init_state(expert: Sam2Expert, tmp_path: Path) -> None:
    """The in-memory inference state has the keys and frame layout of SAM2's own ``init_state``."""
    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(tmp_path / "0.jpg")
    reference = expert._predictor.init_state(str(tmp_path))
    frames = _SlabFrames(np.full((1, 40, 50), 0.5, np.float32), IMAGE_SIZE_PX)
    state = _inference_state(frames, 40, 50)
    assert set(state) == set(reference)
    assert (reference["video_height"], reference["video_width"]) == (state["video_height"], state["video_width"])
    assert tuple(frames[0].shape) == tuple(reference["images"][0].shape) == (3, IMAGE_SIZE_PX, IMAGE_SIZE_PX)
    np.testing.assert_allclose(frames[0].numpy(), reference["images"][0].numpy(), atol=0.02)


def test_box_segments_only_the_slab(expert: Sam2Expert, recorder: Recorder) -> None:
    image = blob_volume()
    output = expert.segment(image, SPACING, boxes=[SliceBox(5, 24.0, 18.0, 40.0, 46.0)])
    assert output.mask.shape == image.shape and output.mask.dtype == np.uint8
    assert set(np.unique(output.mask)) <= {0, 1}
    assert output.probability is None and output.runtime_s > 0
    first, last = slab_range([5], image.shape[0], MAX_SLICES)
    assert (first, last) == (4, 7)  # 4 frames around slice 5
    assert_slab(output.mask, recorder, first, last)
    assert output.mask[5].any()
    [prompt] = recorder.prompts
    assert prompt["frame_idx"] == 5 - first and prompt["obj_id"] == 1
    assert prompt["box"] == [18.0, 24.0, 46.0, 40.0]  # x = column, y = row
    assert prompt["points"] is None


def test_points_segment(expert: Sam2Expert, recorder: Recorder) -> None:
    image = blob_volume()
    clicks = [SlicePoint(4, 32.0, 30.0, True), SlicePoint(4, 5.0, 60.0, False)]
    output = expert.segment(image, SPACING, points=clicks)
    assert output.mask.shape == image.shape and output.mask.dtype == np.uint8
    first, last = slab_range([4], image.shape[0], MAX_SLICES)
    assert (first, last) == (3, 6)
    assert_slab(output.mask, recorder, first, last)
    [prompt] = recorder.prompts
    assert prompt["frame_idx"] == 1 and prompt["box"] is None
    assert prompt["points"] == [[30.0, 32.0], [60.0, 5.0]] and prompt["labels"] == [1, 0]


def test_infer_with_boxes_and_points(expert: Sam2Expert, recorder: Recorder) -> None:
    image = blob_volume()
    inputs = {
        IMAGE: image,
        SPACING_MM: np.asarray(SPACING, np.float32),
        BOXES: boxes_to_tensor([SliceBox(8, 10.0, 10.0, 30.0, 30.0), SliceBox(8, 20.0, 5.0, 40.0, 20.0)]),
        POINTS: points_to_tensor([SlicePoint(9, 20.0, 20.0, True)]),
    }
    result = expert.infer(inputs, {MASK})
    assert set(result.outputs) == {MASK}
    mask = result.outputs[MASK]
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert slab_range([8, 9], image.shape[0], MAX_SLICES) == (6, 9)  # shifted to end at the last slice
    assert_slab(mask, recorder, 6, 9)
    by_frame = {p["frame_idx"]: p for p in recorder.prompts}
    assert by_frame[2]["box"] == [5.0, 10.0, 30.0, 40.0]  # the two boxes on slice 8, merged
    assert by_frame[3]["points"] == [[20.0, 20.0]] and by_frame[3]["box"] is None


def test_infer_rejects_bad_prompts(expert: Sam2Expert) -> None:
    image = blob_volume()
    base = {IMAGE: image, SPACING_MM: np.asarray(SPACING, np.float32)}
    with pytest.raises(PromptError, match="slice 99"):
        expert.infer({**base, BOXES: boxes_to_tensor([SliceBox(99, 10.0, 10.0, 30.0, 30.0)])}, {MASK})
    with pytest.raises(PromptError, match="label"):
        expert.infer({**base, POINTS: np.asarray([[5, 10, 10, 2]], np.float32)}, {MASK})
    with pytest.raises(ExpertInputError, match="needs box or point prompts"):
        expert.infer(base, {MASK})
    too_far = [SliceBox(0, 1.0, 1.0, 5.0, 5.0), SliceBox(9, 1.0, 1.0, 5.0, 5.0)]
    with pytest.raises(ExpertInputError, match="max_slices"):
        expert.segment(image, SPACING, boxes=too_far)


def test_no_prompts_never_makes_a_mask(expert: Sam2Expert) -> None:
    image = blob_volume()
    with pytest.raises(ExpertInputError, match="SAM2 needs box or point prompts"):
        expert.segment(image, SPACING)
    with pytest.raises(ExpertInputError, match="send BOXES or POINTS"):
        expert.predict(image, SPACING)


def test_slab_range() -> None:
    assert slab_range([0], 100, 48) == (0, 47)
    assert slab_range([99], 100, 48) == (52, 99)
    assert slab_range([50], 100, 48) == (27, 74)
    assert slab_range([10, 20], 32, 16) == (8, 23)  # 11 prompted slices, 5 more: 2 before, 3 after
    assert slab_range([3], 5, 48) == (0, 4)  # the whole (short) volume


def test_expert_from_parameters(tmp_path: Path) -> None:
    default = sam2_expert_from_parameters("sam2", {}, tmp_path)
    assert default.config_name == DEFAULT_CONFIG
    assert default.checkpoint == tmp_path / "sam2.1_hiera_tiny.pt"
    assert (default.max_slices, default.image_size, default.name) == (48, None, "sam2")
    custom = sam2_expert_from_parameters(
        "sam2_small",
        {"config": "configs/sam2.1/sam2.1_hiera_s.yaml", "checkpoint": "/models/s.pt", "max_slices": "24",
         "image_size": "512"},
        tmp_path,
        torch_threads=3,
    )
    assert custom.checkpoint == Path("/models/s.pt") and custom.config_name.endswith("hiera_s.yaml")
    assert (custom.max_slices, custom.image_size, custom.torch_threads) == (24, 512, 3)
    hospital = sam2_expert_from_parameters("sam2", {"checkpoint": "x.pt"}, tmp_path, checkpoint=Path("/h/sam2.pt"))
    assert hospital.checkpoint == Path("/h/sam2.pt")
    for bad in ({"max_slices": "0"}, {"max_slices": "many"}, {"image_size": "100"}, {"image_size": "32"},
                {"config": "sam2.1_hiera_t"}):
        with pytest.raises(ValueError, match="SAM2 parameter"):
            sam2_expert_from_parameters("sam2", bad, tmp_path)
