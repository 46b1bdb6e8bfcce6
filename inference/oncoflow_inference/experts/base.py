"""What every expert is: a model that is ready (or says why not) and turns a volume into a mask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ExpertOutput:
    mask: npt.NDArray[np.uint8]  # (slice, row, column), 1 = tumour
    probability: npt.NDArray[np.float32] | None  # tumour probability, same shape, when computed
    runtime_s: float


class ExpertNotReady(RuntimeError):
    """Raised by :meth:`Expert.predict` on an expert that is not loaded; never a made-up mask."""


class Expert(ABC):
    """A segmentation model. ``load`` never raises: a failure leaves it not ready, with the reason."""

    name: str
    version: str
    not_ready_reason: str | None = "not loaded yet"

    @property
    def ready(self) -> bool:
        return self.not_ready_reason is None

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def predict(
        self, image: npt.NDArray[np.float32], spacing_mm: tuple[float, float, float], with_probability: bool = False
    ) -> ExpertOutput: ...
