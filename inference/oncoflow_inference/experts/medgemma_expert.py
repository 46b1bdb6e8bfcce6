"""MedGemma as an expert: a vision-language model that localises tumours and writes one sentence.

MedGemma (``Gemma3ForConditionalGeneration``) is loaded with ``transformers`` from a
local folder (``config.json``, weights, processor and tokenizer files, as written
by ``save_pretrained`` or a Hugging Face snapshot), offline and in float32 on the
CPU. It claims no segmentation: in the panel it is a localiser and a writer. For
up to ``max_queries`` axial slices spread over the slices that contain the head
it is asked for tumour boxes (JSON ``box_2d`` = ``[ymin, xmin, ymax, xmax]``
normalised to 0-1000); each answer is parsed by
:func:`~oncoflow_inference.experts.box_answer_parser.parse_boxes` into boxes on
that slice, in voxel indices. One more question, on the slice with the largest
box (or the middle queried slice), gives a one-sentence finding.

Tensors (KServe v2): inputs ``IMAGE`` FP32 ``(slice, row, column)`` and
``SPACING_MM`` FP32 ``(3,)`` (slice, row, column spacing in millimetres); outputs
``BOXES`` FP32 ``(N, 5)`` (``slice, row_min, col_min, row_max, col_max``, see
:mod:`oncoflow.core.prompts`) and ``FINDINGS`` BYTES ``(1,)``, the UTF-8 sentence.
It never returns a mask: its boxes become one through SAM2 box prompts or
:func:`oncoflow.core.prompts.mask_from_boxes` elsewhere. Decoding is greedy, so the
same volume gives the same answers; the answers are a model's text, not a
measurement, and a random or wrong model gives wrong boxes just as fluently.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oncoflow.core.prompts import BOXES, SliceBox, boxes_to_tensor

from ..segmentation_tensors import segmentation_inputs
from .base import Expert, ExpertInputError, ExpertOutput, ExpertResult
from .box_answer_parser import first_sentence, parse_boxes

log = logging.getLogger("oncoflow.worker.medgemma")

FINDINGS = "FINDINGS"
DEFAULT_MODEL_DIR = "medgemma"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
FOREGROUND_FRACTION = 0.1  # a voxel is head, not air, above min + this fraction of the (min, 99th pct) range
MIN_HEAD_PIXEL_FRACTION = 0.01  # a slice shows head when at least this fraction of its pixels do

BOX_PROMPT = (
    "This is one axial slice of a brain MRI. Find every brain tumour on it. Answer only with JSON: "
    '[{"box_2d": [ymin, xmin, ymax, xmax], "label": "tumour"}] with coordinates normalised to 0-1000, '
    "one object per tumour, or [] if there is no tumour."
)
FINDINGS_PROMPT = (
    "This is one axial slice of a brain MRI. In one sentence, describe the most important finding "
    "(location, size, appearance of any tumour), or say that no tumour is seen."
)


@dataclass(frozen=True)
class Localisation:
    """What MedGemma said about one volume.

    ``boxes`` are in voxel indices of the input volume, each on one of ``queried_slices``;
    ``answers`` are the raw decoded answers, one per queried slice in that order, then the
    findings answer; ``runtime_s`` is the time spent in the model, in seconds.
    """

    boxes: tuple[SliceBox, ...]
    findings: str
    answers: tuple[str, ...]
    queried_slices: tuple[int, ...]
    runtime_s: float


def head_slices(image: npt.NDArray[np.floating]) -> list[int]:
    """Indices of the slices that show the head (non-background intensity); all slices when none stand out."""
    low = float(image.min())
    high = float(np.percentile(image, 99))
    if not high > low:
        return list(range(image.shape[0]))
    threshold = low + FOREGROUND_FRACTION * (high - low)
    fraction = (image > threshold).reshape(image.shape[0], -1).mean(axis=1)
    chosen = [int(i) for i in np.flatnonzero(fraction >= MIN_HEAD_PIXEL_FRACTION)]
    return chosen or list(range(image.shape[0]))


def spread(candidates: list[int], count: int) -> list[int]:
    """Up to ``count`` of ``candidates`` at the centres of ``count`` equal bins (one bin gives the middle)."""
    if count >= len(candidates):
        return list(candidates)
    positions = ((np.arange(count) + 0.5) * len(candidates) / count).astype(int)
    return sorted({candidates[int(p)] for p in positions})


def window_slice(pixels: npt.NDArray[np.floating], spacing_mm: tuple[float, float]) -> Any:
    """An RGB PIL image of one ``(row, column)`` slice windowed to its 1st-99th percentile.

    Rows and columns of unequal spacing (``(row, column)`` mm) are resized so the picture
    has the true aspect ratio; normalised box coordinates are unaffected by the resize.
    """
    from PIL import Image

    low, high = (float(v) for v in np.percentile(pixels, [1, 99]))
    if high > low:
        scaled = np.clip((pixels.astype(np.float64) - low) / (high - low), 0.0, 1.0) * 255.0
    else:
        scaled = np.zeros(pixels.shape)
    picture = Image.fromarray(np.round(scaled).astype(np.uint8)).convert("RGB")
    row_mm, col_mm = spacing_mm
    if abs(row_mm - col_mm) > 0.01 * max(row_mm, col_mm):
        height_px, width_px = pixels.shape
        if row_mm > col_mm:
            height_px = max(1, round(height_px * row_mm / col_mm))
        else:
            width_px = max(1, round(width_px * col_mm / row_mm))
        picture = picture.resize((width_px, height_px), Image.Resampling.BILINEAR)
    return picture


class MedGemmaExpert(Expert):
    """One object owns the model folder, the ``transformers`` processor and model, and the prompts.

    ``max_queries`` bounds the slices asked about (each is one generation);
    ``max_new_tokens`` bounds each answer; ``torch_threads`` bounds the CPU threads torch uses.
    """

    kind = "MedGemma"

    def __init__(
        self,
        model_dir: Path | str,
        name: str = "medgemma",
        max_queries: int = 8,
        max_new_tokens: int = 96,
        torch_threads: int = 2,
    ) -> None:
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model_dir = Path(model_dir)
        self.name = name
        self.max_queries = int(max_queries)
        self.max_new_tokens = int(max_new_tokens)
        self.torch_threads = int(torch_threads)
        self.version = "unloaded"
        self.not_ready_reason = "not loaded yet"
        self._processor: Any = None
        self._model: Any = None
        self._lock = threading.Lock()  # one generation at a time per model

    def _weight_files(self) -> list[Path]:
        return sorted(p for p in self.model_dir.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))

    def _missing(self) -> str | None:
        if not self.model_dir.is_dir():
            return f"MedGemma model folder {self.model_dir} does not exist"
        if not (self.model_dir / "config.json").is_file():
            return f"MedGemma model folder {self.model_dir} has no config.json"
        if not self._weight_files():
            return f"MedGemma model folder {self.model_dir} has no weights (*.safetensors or *.bin)"
        return None

    def _fingerprint(self) -> str:
        """A short hash of ``config.json`` and the weight files' names and sizes; identifies the weights."""
        digest = hashlib.sha256((self.model_dir / "config.json").read_bytes())
        for path in self._weight_files():
            digest.update(f"\0{path.name}\0{path.stat().st_size}".encode())
        return digest.hexdigest()[:16]

    @property
    def weights_location(self) -> Path:
        return self.model_dir

    def _unload(self) -> None:
        self._processor = self._model = None

    def _load(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub: the folder is all there is
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        torch.set_num_threads(self.torch_threads)
        processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True)
        if not hasattr(processor, "apply_chat_template") or getattr(processor, "chat_template", None) is None:
            raise ValueError(f"the processor in {self.model_dir} has no chat template")
        model = AutoModelForImageTextToText.from_pretrained(
            self.model_dir, local_files_only=True, dtype=torch.float32
        )
        model.to(torch.device("cpu")).eval()
        self.version = self._fingerprint()
        self._processor, self._model = processor, model
        self.not_ready_reason = None
        log.info("MedGemma %s loaded from %s (%s, %s)", self.name, self.model_dir, self.version,
                 type(model).__name__)

    def _ask(self, picture: Any, question: str) -> str:
        """One greedy answer to ``question`` about ``picture``; only the new tokens, decoded."""
        import torch

        processor, model = self._processor, self._model
        messages = [{"role": "user", "content": [{"type": "image", "image": picture},
                                                 {"type": "text", "text": question}]}]
        inputs = processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        inputs = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        with torch.inference_mode():
            generated = model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
        return str(processor.decode(generated[0, prompt_tokens:], skip_special_tokens=True))

    def localise(self, image: npt.NDArray[np.float32], spacing_mm: tuple[float, float, float]) -> Localisation:
        """Ask for tumour boxes on up to ``max_queries`` slices of a ``(slice, row, column)`` volume, then a finding.

        ``spacing_mm`` is ``(slice, row, column)`` in millimetres. Raises :class:`ExpertNotReady`
        when the model is not loaded and :class:`ExpertInputError` for a volume that is not 3-D.
        """
        self._require_ready()
        if image.ndim != 3 or min(image.shape) < 1:
            raise ExpertInputError(f"expected a 3-D (slice, row, column) image, got shape {list(image.shape)}")
        import torch

        rows, cols = int(image.shape[1]), int(image.shape[2])
        in_plane_mm = (float(spacing_mm[1]), float(spacing_mm[2]))
        queried = spread(head_slices(image), self.max_queries)
        boxes: list[SliceBox] = []
        answers: list[str] = []
        started = time.perf_counter()
        with self._lock:
            torch.set_num_threads(self.torch_threads)
            for index in queried:
                answer = self._ask(window_slice(image[index], in_plane_mm), BOX_PROMPT)
                answers.append(answer)
                boxes += [SliceBox(index, *box) for box in parse_boxes(answer, cols, rows)]
            if boxes:
                largest = max(boxes, key=lambda b: (b.row_max - b.row_min) * (b.col_max - b.col_min))
                findings_slice = largest.slice_index
            else:
                findings_slice = queried[len(queried) // 2]
            answer = self._ask(window_slice(image[findings_slice], in_plane_mm), FINDINGS_PROMPT)
            answers.append(answer)
        runtime_s = time.perf_counter() - started
        log.info("MedGemma %s: %d boxes on %d queried slices in %.1f s", self.name, len(boxes), len(queried),
                 runtime_s)
        return Localisation(tuple(boxes), first_sentence(answer), tuple(answers), tuple(queried), runtime_s)

    def predict(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        with_probability: bool = False,
    ) -> ExpertOutput:
        """Never a mask: raises :class:`ExpertNotReady` when not loaded, else :class:`ExpertInputError`."""
        self._require_ready()
        raise ExpertInputError("MedGemma localises; its boxes become a mask through SAM2 box prompts or box filling")

    def infer(
        self, inputs: Mapping[str, np.ndarray], wanted: Collection[str], max_voxels: int | None = None
    ) -> ExpertResult:
        """``IMAGE`` and ``SPACING_MM`` in; ``BOXES`` FP32 ``(N, 5)`` and ``FINDINGS`` BYTES ``(1,)`` out, as wanted.

        Raises :class:`~oncoflow_inference.binary_tensors.TensorError` for bad tensors and
        :class:`ExpertNotReady` when the model is not loaded.
        """
        self._require_ready()
        image, spacing_mm = segmentation_inputs(inputs, max_voxels)
        found = self.localise(image, spacing_mm)
        produced: dict[str, np.ndarray] = {}
        if BOXES in wanted:
            produced[BOXES] = boxes_to_tensor(found.boxes)
        if FINDINGS in wanted:
            produced[FINDINGS] = np.array([found.findings.encode("utf-8")], dtype=object)
        return ExpertResult(produced, found.runtime_s)


def _positive_int(parameters: Mapping[str, str], key: str, default: int) -> int:
    raw = parameters.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"MedGemma parameter {key} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"MedGemma parameter {key} must be a positive integer, got {raw!r}")
    return value


def medgemma_expert_from_parameters(
    name: str,
    parameters: Mapping[str, str],
    version_dir: Path,
    torch_threads: int = 2,
    model_dir: Path | None = None,
) -> MedGemmaExpert:
    """A :class:`MedGemmaExpert` from a model repository entry's string parameters.

    ``model_dir`` (default ``medgemma``) is relative to ``version_dir`` unless absolute;
    the ``model_dir`` argument (the hospital's configuration) overrides it. ``max_queries``
    and ``max_new_tokens`` are positive integers. Raises :class:`ValueError` for a bad value.
    """
    if model_dir is None:
        raw = str(parameters.get("model_dir") or DEFAULT_MODEL_DIR).strip()
        if not raw:
            raise ValueError("MedGemma parameter model_dir must name a folder")
        model_dir = Path(raw) if Path(raw).is_absolute() else Path(version_dir) / raw
    return MedGemmaExpert(
        model_dir,
        name=name,
        max_queries=_positive_int(parameters, "max_queries", 8),
        max_new_tokens=_positive_int(parameters, "max_new_tokens", 96),
        torch_threads=torch_threads,
    )
