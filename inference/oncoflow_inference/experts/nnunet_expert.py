"""nnU-Net v2 as an expert: ``nnUNetPredictor`` on a trained model folder, on the CPU.

The folder is nnU-Net's own export (``dataset.json``, ``plans.json``,
``fold_N/checkpoint_final.pth``), so a BraTS-trained folder drops in unchanged.
Its input channels come from ``dataset.json`` ``channel_names`` (BraTS's ``T1``, ``T1ce``,
``T2``, ``Flair`` and the other usual names, :mod:`oncoflow.core.mr_channels`), or from the
``input_channels`` parameter when the names are not sequences (``"MRI"``); a model of several
channels takes ``IMAGE`` as ``(channel, slice, row, column)`` in that order.
Its output becomes OncoFlow's compartment map (:mod:`oncoflow.core.tumour_compartments`: 1 oedema,
2 necrosis, 3 enhancing tumour, 4 non-enhancing tumour) when every label of ``dataset.json`` names a
compartment (``edema``, ``NCR``, ``enhancing tumor`` ...) or, for a region-based model such as BraTS's
Dataset137, every region names a BraTS region (``whole tumor``, ``tumor core``, ``enhancing tumor``:
the value ``regions_class_order`` gives each region's innermost voxels becomes oedema, necrosis or
enhancing tumour). The model then declares ``output_labels`` (``"1:oedema,2:necrosis,3:enhancing"``).
Otherwise, or when ``tumour_labels`` is set, its labels merge into one binary mask of the region
``tumour_region`` (default ``TC``, the tumour core). nnU-Net's
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

from oncoflow.core.mr_channels import Channel, parse_channels
from oncoflow.core.tumour_compartments import (
    REGIONS,
    Compartment,
    Region,
    compartment_of_label,
    format_output_labels,
    region_of_name,
)

from .base import Expert, ExpertInputError, ExpertNotReady, ExpertOutput, file_sha256

log = logging.getLogger("oncoflow.worker.nnunet")
_REGION_MEMBERS = {"ET": {Compartment.ENHANCING}, "TC": {Compartment.ENHANCING, Compartment.NECROSIS},
                   "WT": set(Compartment)}

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
        input_channels: Sequence[str] | None = None,
        tumour_region: Region = "TC",
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
        self.configured_channels = tuple(input_channels) if input_channels else None
        self.channel_names: tuple[str, ...] = ()  # as dataset.json names them
        self.channels: tuple[Channel, ...] = ()  # OncoFlow's names, in the model's order
        self._predictor: Any = None
        self.tumour_region: Region = tumour_region  # what a binary mask is
        self.compartments: dict[int, Compartment] = {}  # nnU-Net label value -> compartment (compartment models)
        self._tumour_channels: tuple[int, ...] = ()  # probability channels that make up "tumour"
        self._channel_values: tuple[int, ...] = ()  # the nnU-Net label value of each probability channel
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
        named = self.configured_channels or self.channel_names
        known, unknown = parse_channels(named)
        if unknown or len(known) != len(self.channel_names):
            where = "parameter input_channels" if self.configured_channels else "dataset.json channel_names"
            self.not_ready_reason = (
                f"nnU-Net model {self.model_folder} has {len(self.channel_names)} input channels "
                f"({', '.join(self.channel_names)}); {where} {list(named)} does not name them as T1, T1c, T2 "
                f"and FLAIR{f' (unknown: {unknown})' if unknown else ''}: set input_channels in config.pbtxt"
            )
            return
        self.channels = tuple(known)

        labels = predictor.label_manager
        if labels.has_regions:  # channel i is region i; voxels inside it get regions_class_order[i]
            produced = [int(v) for v in labels.regions_class_order]
        else:  # channel i is label all_labels[i]
            produced = [int(v) for v in labels.all_labels]
        foreground = [v for v in produced if v != 0 and v != labels.ignore_label]
        self._regions = labels.has_regions
        self._channel_values = tuple(produced)
        self.compartments = {} if self.tumour_labels else self._read_compartments(dataset, produced)
        wanted = list(self.tumour_labels or foreground)
        unknown = sorted(set(wanted) - set(foreground))
        if unknown:
            self.not_ready_reason = (
                f"tumour_labels {unknown} are not labels of nnU-Net model {self.model_folder} "
                f"(it predicts {foreground})"
            )
            return
        self._tumour_channels = tuple(i for i, v in enumerate(produced) if v in wanted)
        self.tumour_labels = tuple(wanted)
        self.version = f"fold{self.fold}-{file_sha256(self.checkpoint_path)[:12]}"  # the exact weights; fits DICOM LO
        self._predictor = predictor
        self.not_ready_reason = None
        log.info("nnU-Net %s loaded from %s (%s), channels %s, output %s", self.name, self.model_folder,
                 self.version, list(self.channel_names), self.declared_parameters().get("output_labels"))

    @staticmethod
    def _read_compartments(dataset: dict[str, Any], produced: Sequence[int]) -> dict[int, Compartment]:
        """nnU-Net label value -> compartment, when the model's label (or region) names say it; else empty."""
        names = {name: value for name, value in dataset.get("labels", {}).items()
                 if value not in (0, [0]) and name != "ignore"}
        foreground = [v for v in produced if v != 0]
        if all(isinstance(v, list | tuple) for v in names.values()):  # region-based: the order of the regions
            region_names = list(names)
            regions = [region_of_name(n) for n in region_names]
            if None in regions and len(region_names) == 3:  # unnamed: nested regions, the largest outermost
                by_size = sorted(region_names, key=lambda n: -len(names[n]))
                regions = [("WT", "TC", "ET")[by_size.index(n)] for n in region_names]
            if None in regions or len(regions) != len(foreground):
                return {}
            inner = {"WT": Compartment.OEDEMA, "TC": Compartment.NECROSIS, "ET": Compartment.ENHANCING}
            return {value: inner[region] for value, region in zip(foreground, regions, strict=True)
                    if region is not None}
        mapping = {int(v): compartment_of_label(n) for n, v in names.items() if not isinstance(v, list)}
        if not mapping or None in mapping.values():
            return {}
        return {v: c for v, c in mapping.items() if c is not None}

    multi_channel = True

    def declared_parameters(self) -> dict[str, str]:
        declared = {"input_channels": ",".join(self.channels)} if self.channels else {}
        if self._predictor is not None:
            declared["output_labels"] = (format_output_labels({int(c): c for c in self.compartments.values()})
                                         if self.compartments else self.tumour_region)
        return declared

    def predict(
        self,
        image: npt.NDArray[np.float32],
        spacing_mm: tuple[float, float, float],
        with_probability: bool = False,
    ) -> ExpertOutput:
        """Segment a ``(slice, row, column)`` volume, or ``(channel, slice, row, column)`` co-registered volumes
        in the order of :attr:`channels`, with spacing ``(slice, row, column)`` mm."""
        predictor = self._predictor
        if predictor is None:
            raise ExpertNotReady(self.not_ready_reason or "not loaded")
        stacked = image[None] if image.ndim == 3 else image
        if stacked.ndim != 4 or stacked.shape[0] != len(self.channels):
            raise ExpertInputError(
                f"model {self.name} takes {len(self.channels)} channels ({', '.join(self.channels)}) as "
                f"IMAGE (channel, slice, row, column), got shape {list(image.shape)}"
            )
        started = time.perf_counter()
        with self._lock:
            result = predictor.predict_single_npy_array(
                np.ascontiguousarray(stacked, dtype=np.float32),
                {"spacing": [float(s) for s in spacing_mm]},
                None,
                None,
                with_probability,
            )
        segmentation, probabilities = result if with_probability else (result, None)
        segmentation = np.asarray(segmentation)
        if self.compartments:
            lookup = np.zeros(max(max(self._channel_values), max(self.compartments)) + 1, np.uint8)
            for value, compartment in self.compartments.items():
                lookup[value] = compartment
            mask = lookup[segmentation]
        else:
            mask = np.isin(segmentation, self.tumour_labels).astype(np.uint8)
        probability = None
        if probabilities is not None:
            probability = self._probability(np.asarray(probabilities))
        return ExpertOutput(mask, probability, time.perf_counter() - started)

    def _probability(self, probabilities: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """A binary model: P(tumour) ``(slice, row, column)``. A compartment model: ``(3, slice, row, column)``,
        P(ET), P(TC), P(WT) (sigmoid regions as they are; softmax labels summed over the region's labels)."""
        if not self.compartments:
            tumour = probabilities[list(self._tumour_channels)]
            # softmax over labels: P(any tumour label) is their sum; sigmoid regions: the likeliest region
            combined = tumour.max(axis=0) if self._regions else tumour.sum(axis=0)
            return np.clip(combined, 0.0, 1.0).astype(np.float32)
        by_region = []
        for region in REGIONS:
            members = {c for c in self.compartments.values() if c in _REGION_MEMBERS[region]}
            channels = [i for i, v in enumerate(self._channel_values) if self.compartments.get(v) in members]
            if self._regions:  # the region's own sigmoid channel is the one whose inner label is its innermost
                inner = {"ET": Compartment.ENHANCING, "TC": Compartment.NECROSIS, "WT": Compartment.OEDEMA}[region]
                channels = [i for i, v in enumerate(self._channel_values) if self.compartments.get(v) == inner]
                combined = probabilities[channels].max(axis=0) if channels else np.zeros(probabilities.shape[1:])
            else:
                combined = probabilities[channels].sum(axis=0) if channels else np.zeros(probabilities.shape[1:])
            by_region.append(np.clip(combined, 0.0, 1.0))
        return np.stack(by_region).astype(np.float32)
