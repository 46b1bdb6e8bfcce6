"""nnU-Net v2 as an expert: ``nnUNetPredictor`` on a trained model folder.

The folder is nnU-Net's own export (``dataset.json``, ``plans.json``,
``fold_N/checkpoint_final.pth``), so a BraTS-trained folder drops in unchanged;
its tumour labels (e.g. BraTS 1, 2, 3) are merged into one binary tumour mask
through ``tumour_labels``. The predictor resamples to the plans' spacing and back,
so the mask comes out on the input grid.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .base import Expert, ExpertNotReady, ExpertOutput

REQUIRED_FILES = ("dataset.json", "plans.json")


class NnUNetExpert(Expert):
    """One object owns the model folder, the predictor and its settings."""

    def __init__(
        self,
        model_folder: Path,
        name: str = "nnunet",
        fold: int = 0,
        checkpoint: str = "checkpoint_final.pth",
        use_mirroring: bool = False,
        tumour_labels: Sequence[int] | None = None,
        torch_threads: int = 2,
    ) -> None:
        self.model_folder = Path(model_folder)
        self.name = name
        self.fold = fold
        self.checkpoint = checkpoint
        self.use_mirroring = use_mirroring
        self.tumour_labels = tuple(tumour_labels) if tumour_labels else None
        self.torch_threads = torch_threads
        self.version = "unloaded"
        self.n_channels = 1
        self._predictor = None

    def _missing(self) -> str | None:
        if not self.model_folder.is_dir():
            return f"nnU-Net model folder {self.model_folder} does not exist"
        for name in (*REQUIRED_FILES, f"fold_{self.fold}/{self.checkpoint}"):
            if not (self.model_folder / name).is_file():
                return f"nnU-Net model folder {self.model_folder} has no {name}"
        return None

    def load(self) -> None:
        missing = self._missing()
        if missing:
            self.not_ready_reason = missing
            return
        try:
            import torch
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            torch.set_num_threads(self.torch_threads)
            predictor = nnUNetPredictor(
                tile_step_size=0.5,
                use_gaussian=True,
                use_mirroring=self.use_mirroring,
                perform_everything_on_device=False,
                device=torch.device("cpu"),
                verbose=False,
                verbose_preprocessing=False,
                allow_tqdm=False,
            )
            predictor.initialize_from_trained_model_folder(
                str(self.model_folder), use_folds=(self.fold,), checkpoint_name=self.checkpoint
            )
        except Exception as exc:  # a broken folder must leave the expert not ready, with the reason
            self.not_ready_reason = f"nnU-Net failed to load {self.model_folder}: {type(exc).__name__}: {exc}"
            return
        dataset = json.loads((self.model_folder / "dataset.json").read_text())
        self.n_channels = len(dataset.get("channel_names", dataset.get("modality", {"0": "MRI"})))
        checkpoint_file = self.model_folder / f"fold_{self.fold}" / self.checkpoint
        digest = hashlib.sha256(checkpoint_file.read_bytes()).hexdigest()[:12]
        self.version = f"fold{self.fold}-{digest}"  # names the exact weights, short enough for DICOM LO
        self._predictor = predictor
        self.not_ready_reason = None

    def predict(
        self, image: npt.NDArray[np.float32], spacing_mm: tuple[float, float, float], with_probability: bool = False
    ) -> ExpertOutput:
        if self._predictor is None:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")
        if self.n_channels != 1:
            raise ValueError(f"model {self.name} expects {self.n_channels} input channels; OncoFlow sends 1")
        started = time.perf_counter()
        result = self._predictor.predict_single_npy_array(
            np.ascontiguousarray(image, dtype=np.float32)[None],
            {"spacing": [float(s) for s in spacing_mm]},
            None,
            None,
            with_probability,
        )
        labels, probabilities = result if with_probability else (result, None)
        labels = np.asarray(labels)
        mask = np.isin(labels, self.tumour_labels) if self.tumour_labels else labels > 0
        probability = None
        if probabilities is not None:
            probability = (1.0 - np.asarray(probabilities)[0]).astype(np.float32)  # 1 - P(background)
        return ExpertOutput(mask.astype(np.uint8), probability, time.perf_counter() - started)
