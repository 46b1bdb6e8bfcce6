"""What every expert is: a model that is ready (or says why not) and turns a volume into a tumour mask."""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..segmentation_tensors import MASK, PROBABILITY, segmentation_inputs

log = logging.getLogger("oncoflow.worker")

MAX_REASON_CHARS = 600  # a strict-loading error may list every key; keep the not-ready reason readable


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes: identifies the exact weights an expert loaded."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExpertOutput:
    """One prediction, on the input's voxel grid."""

    mask: npt.NDArray[np.uint8]  # (slice, row, column); 1 = tumour, 0 = not
    probability: npt.NDArray[np.float32] | None  # tumour probability in [0, 1], same shape; None unless asked
    runtime_s: float  # seconds spent in the model call (preprocessing, network, resampling back)


@dataclass(frozen=True)
class ExpertResult:
    """The output tensors of one KServe v2 ``infer`` call, by name, and the model time."""

    outputs: dict[str, np.ndarray]
    runtime_s: float


class ExpertNotReady(RuntimeError):
    """Raised by :meth:`Expert.predict` on an expert that is not loaded; an expert never makes up a mask."""


class ExpertInputError(ValueError):
    """The volume cannot be segmented by this expert (e.g. it needs more input channels); a client error."""


class Expert(ABC):
    """A segmentation model.

    ``load`` never raises: a failure leaves the expert not ready, with the reason in
    ``not_ready_reason``; subclasses say what is missing (``_missing``), how to load
    (``_load``) and what to drop (``_unload``). ``predict`` takes a ``(slice, row, column)`` float32 volume
    and its voxel spacing ``(slice, row, column)`` in millimetres.
    """

    kind: str = "expert"  # the model family, for messages: "nnU-Net", "SAM2", "MedGemma"
    multi_channel: bool = False  # takes IMAGE (channel, slice, row, column) too
    name: str
    version: str  # identifies the exact weights once loaded
    not_ready_reason: str | None = "not loaded yet"

    @property
    def ready(self) -> bool:
        return self.not_ready_reason is None

    def declared_parameters(self) -> dict[str, str]:
        """What the loaded model says of itself, served with its configuration's parameters
        (``GET /v2/models/{m}/config``, as Triton's Python backend ``auto_complete_config`` may add them):
        e.g. an nnU-Net's ``input_channels`` read from its ``dataset.json``. Empty before loading."""
        return {}

    def _require_ready(self) -> None:
        """Raise :class:`ExpertNotReady`, with the reason, unless the model is loaded."""
        if not self.ready:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")

    @property
    @abstractmethod
    def weights_location(self) -> Path:
        """Where the weights are read from (a folder or a file), for messages."""

    @abstractmethod
    def _missing(self) -> str | None:
        """Why the weights cannot be loaded before trying (a missing file), or ``None``."""

    @abstractmethod
    def _load(self) -> None:
        """Load the weights; raise on any failure. Sets ``version`` and clears ``not_ready_reason``."""

    @abstractmethod
    def _unload(self) -> None:
        """Drop whatever a (partial) load left behind."""

    def load(self) -> None:
        """Load the model. Never raises: a failure leaves the expert not ready with the reason."""
        self._unload()
        try:
            missing = self._missing()
        except OSError as exc:
            missing = f"{self.weights_location} cannot be read: {type(exc).__name__}: {exc}"
        if missing:
            self.not_ready_reason = missing
            return
        try:
            self._load()
        except Exception as exc:  # broken weights must leave the expert not ready, with the reason
            log.exception("expert %s failed to load %s", self.name, self.weights_location)
            self._unload()
            reason = f"{self.kind} failed to load {self.weights_location}: {type(exc).__name__}: {exc}"
            self.not_ready_reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."

    @abstractmethod
    def predict(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        with_probability: bool = False,
    ) -> ExpertOutput:
        """Segment ``image``; raises :class:`ExpertNotReady` or :class:`ExpertInputError`."""

    def infer(
        self, inputs: Mapping[str, np.ndarray], wanted: Collection[str], max_voxels: int | None = None
    ) -> ExpertResult:
        """One KServe v2 call. The default serves a segmentation model: ``IMAGE`` and
        ``SPACING_MM`` in, ``MASK`` (and ``PROBABILITY`` when wanted) out.

        Experts with other tensors (prompts in, boxes or text out) override this. Raises
        :class:`~oncoflow_inference.binary_tensors.TensorError` or
        :class:`oncoflow.core.prompts.PromptError` for a bad request, and the errors of ``predict``.
        """
        image, spacing_mm = segmentation_inputs(inputs, max_voxels, self.multi_channel)
        output = self.predict(image, spacing_mm, with_probability=PROBABILITY in wanted)
        produced: dict[str, np.ndarray] = {MASK: output.mask}
        if output.probability is not None:
            produced[PROBABILITY] = output.probability.astype(np.float16)
        return ExpertResult(produced, output.runtime_s)
