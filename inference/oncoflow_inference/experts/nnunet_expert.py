"""nnU-Net v2 as an expert: ``nnUNetPredictor`` on a trained model folder, on the CPU.

The folder is nnU-Net's own export (``dataset.json``, ``plans.json``,
``fold_N/checkpoint_final.pth``), so a BraTS-trained folder drops in unchanged.
Its tumour labels (e.g. BraTS 1, 2, 3, or the values of a region-based model's
``regions_class_order``) merge into one binary tumour mask through
``tumour_labels`` (default: every non-zero label the model predicts). nnU-Net's
own preprocessing (cropping, normalisation, resampling to the plans' spacing and
back) runs inside ``predict``, so the mask comes out on the input grid.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import Expert, ExpertInputError, ExpertNotReady, ExpertOutput, file_sha256

log = logging.getLogger("oncoflow.worker.nnunet")

REQUIRED_FILES = ("dataset.json", "plans.json")


class NnUNetExpert(Expert):
    """One object owns the model folder, the ``nnUNetPredictor`` and its settings.

    ``fold`` is a fold number or ``"all"``; ``checkpoint`` the file name inside
    ``fold_<fold>/``; ``use_mirroring`` enables test-time mirroring (up to 8x slower);
    ``torch_threads`` bounds the CPU threads torch uses.
    """

    kind = "nnU-Net"

    def __init__(
        self,
        model_folder: Path | str,
        name: str = "nnunet",
        fold: int | str = 0,
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
        self.tumour_labels = tuple(int(v) for v in tumour_labels) if tumour_labels else None
        self.torch_threads = torch_threads
        self.version = "unloaded"
        self.not_ready_reason = "not loaded yet"
        self.channel_names: tuple[str, ...] = ()
        self._predictor: Any = None
        self._tumour_channels: tuple[int, ...] = ()  # probability channels that make up "tumour"
        self._regions = False
        self._lock = threading.Lock()  # one prediction at a time per predictor

    @property
    def checkpoint_path(self) -> Path:
        return self.model_folder / f"fold_{self.fold}" / self.checkpoint

    def _missing(self) -> str | None:
        if not self.model_folder.is_dir():
            return f"nnU-Net model folder {self.model_folder} does not exist"
        for name in REQUIRED_FILES:
            if not (self.model_folder / name).is_file():
                return f"nnU-Net model folder {self.model_folder} has no {name}"
        if not self.checkpoint_path.is_file():
            return f"nnU-Net model folder {self.model_folder} has no fold_{self.fold}/{self.checkpoint}"
        return None

    @property
    def weights_location(self) -> Path:
        return self.model_folder

    def _unload(self) -> None:
        self._predictor = None

    def _load(self) -> None:
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
        if predictor.configuration_manager.previous_stage_name is not None:
            self.not_ready_reason = (
                f"nnU-Net model {self.model_folder} is a cascade stage (needs "
                f"{predictor.configuration_manager.previous_stage_name} first); serve a single-stage configuration"
            )
            return
        dataset = json.loads((self.model_folder / "dataset.json").read_text())
        channels = dataset.get("channel_names", dataset.get("modality", {}))
        self.channel_names = tuple(str(channels[k]) for k in sorted(channels, key=int))

        labels = predictor.label_manager
        if labels.has_regions:  # channel i is region i; voxels inside it get regions_class_order[i]
            produced = [int(v) for v in labels.regions_class_order]
        else:  # channel i is label all_labels[i]
            produced = [int(v) for v in labels.all_labels]
        foreground = [v for v in produced if v != 0 and v != labels.ignore_label]
        wanted = list(self.tumour_labels or foreground)
        unknown = sorted(set(wanted) - set(foreground))
        if unknown:
            self.not_ready_reason = (
                f"tumour_labels {unknown} are not labels of nnU-Net model {self.model_folder} "
                f"(it predicts {foreground})"
            )
            return
        self._regions = labels.has_regions
        self._tumour_channels = tuple(i for i, v in enumerate(produced) if v in wanted)
        self.tumour_labels = tuple(wanted)
        self.version = f"fold{self.fold}-{file_sha256(self.checkpoint_path)[:12]}"  # the exact weights; fits DICOM LO
        self._predictor = predictor
        self.not_ready_reason = None
        log.info("nnU-Net %s loaded from %s (%s), channels %s, tumour labels %s", self.name, self.model_folder,
                 self.version, list(self.channel_names), list(self.tumour_labels))

    def predict(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        with_probability: bool = False,
    ) -> ExpertOutput:
        """Segment a ``(slice, row, column)`` volume with spacing ``(slice, row, column)`` mm."""
        predictor = self._predictor
        if predictor is None:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")
        if image.ndim != 3:
            raise ExpertInputError(f"expected a 3-D (slice, row, column) image, got shape {list(image.shape)}")
        if len(self.channel_names) != 1:
            raise ExpertInputError(
                f"model {self.name} expects {len(self.channel_names)} input channels "
                f"({', '.join(self.channel_names)}); OncoFlow sends one series (1 channel)"
            )
        started = time.perf_counter()
        with self._lock:
            result = predictor.predict_single_npy_array(
                np.ascontiguousarray(image, dtype=np.float32)[None],
                {"spacing": [float(s) for s in spacing_mm]},
                None,
                None,
                with_probability,
            )
        segmentation, probabilities = result if with_probability else (result, None)
        mask = np.isin(np.asarray(segmentation), self.tumour_labels).astype(np.uint8)
        probability = None
        if probabilities is not None:
            tumour = np.asarray(probabilities)[list(self._tumour_channels)]
            # softmax over labels: P(any tumour label) is their sum; sigmoid regions: the likeliest region
            combined = tumour.max(axis=0) if self._regions else tumour.sum(axis=0)
            probability = np.clip(combined, 0.0, 1.0).astype(np.float32)
        return ExpertOutput(mask, probability, time.perf_counter() - started)
