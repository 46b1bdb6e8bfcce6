"""SAM2 as an expert: a promptable segmenter that turns box or point prompts into a 3-D mask.

SAM2 (Segment Anything 2, the ``sam2`` package) is built from one of its Hydra
configs (e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``) and a checkpoint
(``torch.save({"model": state_dict})``, as released by Meta) with
``build_sam2_video_predictor`` on the CPU, strictly: a checkpoint that does not fit
the config leaves the expert not ready with the load error.

The volume is treated as a video whose frames are the axial slices. Only a slab
is tracked: the prompted slices, widened evenly on both sides to ``max_slices``
frames (clipped to the volume); SAM2 is run on the slab and its mask is pasted
back into a full-size mask of zeros, so nothing outside the slab is ever tumour.
Each slab frame is the slice normalised to 0-1 by the whole volume's 1st-99th
percentile, replicated to 3 channels, resized to the model's ``image_size`` and
normalised with SAM2's ImageNet mean and standard deviation; frames are made on
demand from memory (no JPEG files). Boxes and points are added on their slices
(several boxes on one slice are merged into their bounding box, since SAM2 takes
one box per frame and object), then SAM2's video predictor propagates forward
and backward from the first prompted slice; logits > 0 at the original
``(row, column)`` resolution are tumour.

Tensors (KServe v2): inputs ``IMAGE`` FP32 ``(slice, row, column)``,
``SPACING_MM`` FP32 ``(3,)`` (slice, row, column spacing in millimetres; SAM2
works in pixels and does not use it), and at least one of ``BOXES`` FP32
``(N, 5)`` (``slice, row_min, col_min, row_max, col_max``) and ``POINTS`` FP32
``(N, 4)`` (``slice, row, column, label``; label 1 = tumour, 0 = background), in
voxel indices, see :mod:`oncoflow.core.prompts`; output ``MASK`` UINT8 on the
``IMAGE`` grid (1 = tumour). SAM2 gives no calibrated probability, and without
prompts it gives nothing: it never makes up a mask. SAM2 wants ``x`` = column and
``y`` = row; the conversion happens here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oncoflow.core.prompts import BOXES, POINTS, SliceBox, SlicePoint, boxes_from_tensor, points_from_tensor

from ..binary_tensors import TensorError, datatype_of
from ..segmentation_tensors import IMAGE, MASK, SPACING_MM, segmentation_inputs
from .base import Expert, ExpertInputError, ExpertNotReady, ExpertOutput, ExpertResult, file_sha256

log = logging.getLogger("oncoflow.worker.sam2")

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
DEFAULT_CHECKPOINT = "sam2.1_hiera_tiny.pt"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SAM2's frame normalisation (sam2.utils.misc.load_video_frames)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE_MULTIPLE = 32  # Hiera's windows tile the stride-4 feature map in 8s, and the deepest stride is 32
MIN_IMAGE_SIZE = 64
OBJECT_ID = 1  # one object: the tumour
INPUTS = (IMAGE, SPACING_MM, BOXES, POINTS)


@dataclass(frozen=True)
class _FramePrompt:
    """The prompts of one slab frame in SAM2's pixel coordinates (``x`` = column, ``y`` = row)."""

    box_xyxy: tuple[float, float, float, float] | None
    points_xy: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]  # 1 positive, 0 negative, one per point


def slab_range(prompted_slices: Sequence[int], n_slices: int, max_slices: int) -> tuple[int, int]:
    """The first and last slice (inclusive) of the slab SAM2 tracks.

    The prompted slices widened evenly on both sides to ``max_slices`` slices, shifted
    to stay inside ``0..n_slices - 1``. Raises :class:`ExpertInputError` when the prompts
    themselves span more than ``max_slices`` slices.
    """
    first, last = min(prompted_slices), max(prompted_slices)
    span = last - first + 1
    if span > max_slices:
        raise ExpertInputError(
            f"SAM2 prompts span slices {first}..{last} ({span} slices), more than the {max_slices} "
            "slices this model tracks per request (max_slices)"
        )
    width = min(max_slices, n_slices)
    start = first - (width - span) // 2
    start = max(0, min(start, n_slices - width))
    return start, start + width - 1


def normalise_volume(image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``image`` mapped to 0-1 by its 1st and 99th percentile (clipped); a flat image becomes zeros."""
    low, high = (float(v) for v in np.percentile(image, (1.0, 99.0)))
    if not high > low:
        return np.zeros(image.shape, np.float32)
    return np.clip((image.astype(np.float32) - low) / (high - low), 0.0, 1.0).astype(np.float32)


class _SlabFrames:
    """The frames of SAM2's ``inference_state["images"]``, made on demand from 0-1 slices.

    SAM2 only calls ``len()`` and ``frames[i]`` (then ``.to(device).float().unsqueeze(0)``);
    making frames lazily keeps a 48-slice slab at 1024 px from holding 600 MB of frames.
    Frame ``i`` is slice ``i`` replicated to 3 channels, resized (bilinear, antialiased)
    to ``image_size`` square and normalised with the ImageNet mean and std.
    """

    def __init__(self, slices_01: npt.NDArray[np.float32], image_size: int) -> None:
        import torch

        self._slices = torch.from_numpy(np.ascontiguousarray(slices_01, dtype=np.float32))
        self._size = image_size
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return int(self._slices.shape[0])

    def __getitem__(self, index: int) -> Any:
        import torch.nn.functional as F  # noqa: N812

        one = self._slices[index][None, None]  # (1, 1, row, column)
        resized = F.interpolate(one, size=(self._size, self._size), mode="bilinear", align_corners=False,
                                antialias=True)[0]
        return (resized.expand(3, -1, -1) - self._mean) / self._std


def _inference_state(frames: _SlabFrames, height_px: int, width_px: int) -> dict[str, Any]:
    """SAM2's video inference state for in-memory frames, as ``SAM2VideoPredictor.init_state`` builds it.

    ``init_state`` (sam2 1.1.0) only reads frames from a JPEG folder or an MP4 file; this is
    the same dictionary without the file loading and without its warm-up of frame 0's
    features (the prompted frames are encoded first anyway). ``video_height``/``video_width``
    are the slice's rows/columns, so SAM2 returns masks and takes prompts at the original
    resolution. tests/test_sam2_expert.py checks the keys against ``init_state``'s.
    """
    import torch

    cpu = torch.device("cpu")
    return {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": height_px,
        "video_width": width_px,
        "device": cpu,
        "storage_device": cpu,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def _frame_prompts(
    boxes: Sequence[SliceBox], points: Sequence[SlicePoint], first_slice: int
) -> dict[int, _FramePrompt]:
    """Prompts by slab frame; several boxes on one slice become their bounding box."""
    frames: dict[int, _FramePrompt] = {}
    for index in sorted({b.slice_index for b in boxes} | {p.slice_index for p in points}):
        on_slice = [b for b in boxes if b.slice_index == index]
        box = None
        if on_slice:
            box = (
                min(b.col_min for b in on_slice), min(b.row_min for b in on_slice),
                max(b.col_max for b in on_slice), max(b.row_max for b in on_slice),
            )
        clicks = [p for p in points if p.slice_index == index]
        frames[index - first_slice] = _FramePrompt(
            box, tuple((p.col, p.row) for p in clicks), tuple(1 if p.positive else 0 for p in clicks)
        )
    return frames


class Sam2Expert(Expert):
    """One object owns the SAM2 video predictor, its frame preprocessing and its settings.

    ``config_name`` is a ``sam2`` Hydra config (e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``)
    and ``checkpoint`` its weights file. ``max_slices`` bounds the frames tracked per
    request (the CPU cost is about linear in it). ``image_size``, when given, replaces the
    config's frame size (1024 px) through the Hydra override ``++model.image_size``:
    smaller frames make each frame several times cheaper on a CPU, but the released
    weights were trained at 1024 px, so masks get coarser; it must be a multiple of 32.
    ``torch_threads`` bounds the CPU threads torch uses.
    """

    kind = "SAM2"

    def __init__(
        self,
        config_name: str,
        checkpoint: Path | str,
        name: str = "sam2",
        max_slices: int = 48,
        image_size: int | None = None,
        torch_threads: int = 2,
    ) -> None:
        if max_slices < 1:
            raise ValueError(f"max_slices must be at least 1, got {max_slices}")
        if image_size is not None and (image_size < MIN_IMAGE_SIZE or image_size % IMAGE_SIZE_MULTIPLE):
            raise ValueError(
                f"image_size must be a multiple of {IMAGE_SIZE_MULTIPLE} of at least {MIN_IMAGE_SIZE}, got {image_size}"
            )
        self.config_name = config_name
        self.checkpoint = Path(checkpoint)
        self.name = name
        self.max_slices = max_slices
        self.image_size = image_size
        self.torch_threads = torch_threads
        self.version = "unloaded"
        self.not_ready_reason = "not loaded yet"
        self._predictor: Any = None
        self._lock = threading.Lock()  # one propagation at a time per predictor

    @property
    def weights_location(self) -> Path:
        return self.checkpoint

    def _missing(self) -> str | None:
        return None if self.checkpoint.is_file() else f"SAM2 checkpoint {self.checkpoint} does not exist"

    def _unload(self) -> None:
        self._predictor = None

    def _load(self) -> None:
        import torch
        from sam2.build_sam import build_sam2_video_predictor

        torch.set_num_threads(self.torch_threads)
        overrides = [] if self.image_size is None else [f"++model.image_size={self.image_size}"]
        predictor = build_sam2_video_predictor(
            self.config_name, str(self.checkpoint), device="cpu", hydra_overrides_extra=overrides
        )
        if predictor.fill_hole_area > 0 and not _has_sam2_extension():
            # SAM2 fills small mask holes with its CUDA extension; without it, it warns on every frame and skips
            predictor.fill_hole_area = 0
        stem = Path(self.config_name).stem
        size = "" if self.image_size is None else f"-{self.image_size}px"
        self.version = f"{stem}-{file_sha256(self.checkpoint)[:12]}{size}"[:64]  # the exact weights; fits DICOM LO
        self._predictor = predictor
        self.not_ready_reason = None
        log.info("SAM2 %s loaded from %s (%s), %d px frames, up to %d slices", self.name, self.checkpoint,
                 self.version, predictor.image_size, self.max_slices)

    def segment(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        boxes: Sequence[SliceBox] = (),
        points: Sequence[SlicePoint] = (),
    ) -> ExpertOutput:
        """The 3-D tumour mask of a ``(slice, row, column)`` volume from box and/or point prompts.

        Prompts are in voxel indices of ``image``. Raises :class:`ExpertNotReady` when not
        loaded and :class:`ExpertInputError` without prompts, for prompts off the volume or
        spanning more than ``max_slices`` slices.
        """
        predictor = self._predictor
        if predictor is None:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")
        if image.ndim != 3 or min(image.shape) < 1:
            raise ExpertInputError(f"expected a 3-D (slice, row, column) image, got shape {list(image.shape)}")
        if not boxes and not points:
            raise ExpertInputError("SAM2 needs box or point prompts")
        n_slices, rows, cols = (int(n) for n in image.shape)
        for prompt in (*boxes, *points):
            if not 0 <= prompt.slice_index < n_slices:
                raise ExpertInputError(
                    f"prompt slice {prompt.slice_index} is not a slice of the {n_slices}-slice volume"
                )
        prompted = sorted({b.slice_index for b in boxes} | {p.slice_index for p in points})
        first, last = slab_range(prompted, n_slices, self.max_slices)
        started = time.perf_counter()
        slab_01 = normalise_volume(image)[first:last + 1]
        frame_prompts = _frame_prompts(boxes, points, first)
        slab_mask = np.zeros((last - first + 1, rows, cols), np.uint8)
        with self._lock:
            import torch

            torch.set_num_threads(self.torch_threads)
            with torch.inference_mode():
                state = _inference_state(_SlabFrames(slab_01, predictor.image_size), rows, cols)
                for frame, prompt in frame_prompts.items():
                    predictor.add_new_points_or_box(
                        state, frame_idx=frame, obj_id=OBJECT_ID,
                        points=[list(p) for p in prompt.points_xy] if prompt.points_xy else None,
                        labels=list(prompt.labels) if prompt.points_xy else None,
                        box=list(prompt.box_xyxy) if prompt.box_xyxy is not None else None,
                    )
                start = min(frame_prompts)
                for reverse in (False, True):
                    for frame, _, logits in predictor.propagate_in_video(state, start_frame_idx=start,
                                                                         reverse=reverse):
                        slab_mask[frame] = (logits[0, 0] > 0).numpy()
        mask = np.zeros(image.shape, np.uint8)
        mask[first:last + 1] = slab_mask
        runtime_s = time.perf_counter() - started
        log.info("SAM2 %s: %d boxes, %d points on %d slices, tracked slices %d..%d in %.1f s", self.name,
                 len(boxes), len(points), len(prompted), first, last, runtime_s)
        return ExpertOutput(mask, None, runtime_s)

    def predict(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        with_probability: bool = False,
    ) -> ExpertOutput:
        """Never a mask without prompts: raises :class:`ExpertNotReady` when not loaded, else
        :class:`ExpertInputError` (use :meth:`segment` or ``infer`` with ``BOXES``/``POINTS``)."""
        self._require_ready()
        raise ExpertInputError("SAM2 is promptable: send BOXES or POINTS")

    def infer(
        self, inputs: Mapping[str, np.ndarray], wanted: Collection[str], max_voxels: int | None = None
    ) -> ExpertResult:
        """``IMAGE``, ``SPACING_MM`` and ``BOXES`` and/or ``POINTS`` in; ``MASK`` UINT8 out.

        Raises :class:`~oncoflow_inference.binary_tensors.TensorError` for bad tensors,
        :class:`oncoflow.core.prompts.PromptError` for prompts that do not fit the volume,
        :class:`ExpertInputError` without prompts and :class:`ExpertNotReady` when not loaded.
        """
        self._require_ready()
        unknown = sorted(set(inputs) - set(INPUTS))
        if unknown:
            raise TensorError(f"unexpected inputs {unknown}; SAM2 takes {list(INPUTS)}")
        image, spacing_mm = segmentation_inputs(inputs, max_voxels)
        for key in (BOXES, POINTS):
            if key in inputs and datatype_of(inputs[key]) != "FP32":
                raise TensorError(f"input {key} must be FP32, got {datatype_of(inputs[key])}")
        boxes = boxes_from_tensor(inputs[BOXES], image.shape) if BOXES in inputs else []
        points = points_from_tensor(inputs[POINTS], image.shape) if POINTS in inputs else []
        output = self.segment(image, spacing_mm, boxes, points)
        return ExpertResult({MASK: output.mask}, output.runtime_s)


def _has_sam2_extension() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def _optional_int(parameters: Mapping[str, str], key: str) -> int | None:
    raw = parameters.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"SAM2 parameter {key} must be an integer, got {raw!r}") from None


def sam2_expert_from_parameters(
    name: str,
    parameters: Mapping[str, str],
    version_dir: Path,
    torch_threads: int = 2,
    checkpoint: Path | None = None,
) -> Sam2Expert:
    """An (unloaded) :class:`Sam2Expert` from a model repository entry's string parameters.

    ``config`` is a ``sam2`` Hydra config name (default ``configs/sam2.1/sam2.1_hiera_t.yaml``);
    ``checkpoint`` (default ``sam2.1_hiera_tiny.pt``) is relative to ``version_dir`` unless
    absolute, and the ``checkpoint`` argument (the hospital's configuration) overrides it;
    ``max_slices`` (default 48) is a positive integer; ``image_size`` (default: the
    config's) a multiple of 32 of at least 64. Raises :class:`ValueError` for a bad value.
    """
    config_name = str(parameters.get("config") or DEFAULT_CONFIG).strip()
    if not config_name.endswith(".yaml"):
        raise ValueError(f"SAM2 parameter config must name a sam2 .yaml config, got {config_name!r}")
    if checkpoint is None:
        raw = str(parameters.get("checkpoint") or DEFAULT_CHECKPOINT).strip()
        if not raw:
            raise ValueError("SAM2 parameter checkpoint must name a file")
        checkpoint = Path(raw) if Path(raw).is_absolute() else Path(version_dir) / raw
    max_slices = _optional_int(parameters, "max_slices")
    if max_slices is not None and max_slices < 1:
        raise ValueError(f"SAM2 parameter max_slices must be a positive integer, got {max_slices}")
    image_size = _optional_int(parameters, "image_size")
    if image_size is not None and (image_size < MIN_IMAGE_SIZE or image_size % IMAGE_SIZE_MULTIPLE):
        raise ValueError(
            f"SAM2 parameter image_size must be a multiple of {IMAGE_SIZE_MULTIPLE} of at least {MIN_IMAGE_SIZE}, "
            f"got {image_size}"
        )
    return Sam2Expert(
        config_name,
        checkpoint,
        name=name,
        max_slices=max_slices if max_slices is not None else 48,
        image_size=image_size,
        torch_threads=torch_threads,
    )
