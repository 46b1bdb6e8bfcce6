"""Build the experts named by a Triton model repository.

A model served by the Python backend (``backend: "python"``) names its OncoFlow
expert in ``config.pbtxt`` parameters, ``expert`` being one of:

* ``"nnunet"`` (:mod:`.experts.nnunet_expert`): ``model_folder``, nnU-Net's
  trained-model folder, relative to the version directory (default ``"nnunet"``) or
  absolute; ``fold`` (default ``"0"``, or ``"all"``), ``checkpoint`` (default
  ``"checkpoint_final.pth"``), ``use_mirroring`` (default false); ``tumour_labels``,
  comma-separated label values that make up the tumour (default: every non-zero label);
  ``input_channels``, the sequences of the model's channels in order (``"t1c"``; default: read
  from ``dataset.json``);
* ``"sam2"`` (:mod:`.experts.sam2_expert`): ``config``, ``checkpoint``, ``max_slices``;
* ``"medgemma"`` (:mod:`.experts.medgemma_expert`): ``model_dir``, ``max_queries``;
* ``"deepbet"`` (:mod:`.experts.brain_extraction_expert`): brain extraction, not a panel expert:
  ``model_dir`` (default: the networks in the installed deepbet wheel), ``threshold``.

``Settings.model_weights`` (``ONCOFLOW_MODEL_WEIGHTS="model=path,..."``) replaces a
model's weights location (nnU-Net folder, SAM2 checkpoint, MedGemma directory), so a
hospital's BraTS model or SAM2 checkpoint is a setting, not a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from oncoflow.core.config import Settings

from .experts.base import Expert
from .experts.nnunet_expert import NnUNetExpert
from .model_repository import ModelConfig, scan_repository

EXPERTS = ("nnunet", "sam2", "medgemma", "deepbet")


class ExpertConfigError(ValueError):
    """The parameters of a model do not describe an expert OncoFlow can build."""


@dataclass
class ServedModel:
    """A model of the repository, with its expert (``None`` when it cannot be built, see ``error``)."""

    name: str
    config: ModelConfig | None
    expert: Expert | None
    error: str | None = None

    @property
    def version(self) -> str:
        return self.config.version if self.config is not None else ""

    @property
    def ready(self) -> bool:
        return self.expert is not None and self.expert.ready

    @property
    def reason(self) -> str | None:
        """Why the model is not ready (``None`` when it is)."""
        if self.expert is None:
            return self.error
        return self.expert.not_ready_reason


def _boolean(parameters: Mapping[str, str], key: str, default: bool) -> bool:
    raw = parameters.get(key, str(default)).strip().lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ExpertConfigError(f"parameter {key}={raw!r} must be true or false")
    return raw in ("true", "1", "yes")


def nnunet_expert_from_parameters(
    name: str,
    parameters: Mapping[str, str],
    version_dir: Path,
    torch_threads: int = 2,
    model_folder: Path | None = None,
) -> NnUNetExpert:
    """An (unloaded) :class:`NnUNetExpert` from ``config.pbtxt`` parameters; also used by Triton's model.py.

    ``model_folder``, when given, overrides the ``model_folder`` parameter.
    """
    fold = parameters.get("fold", "0").strip()
    if fold != "all" and not fold.isdigit():
        raise ExpertConfigError(f"parameter fold={fold!r} must be a fold number or 'all'")
    try:
        labels = [int(v) for v in parameters.get("tumour_labels", "").split(",") if v.strip()]
    except ValueError as exc:
        raise ExpertConfigError(
            f"parameter tumour_labels={parameters['tumour_labels']!r} must be comma-separated integers"
        ) from exc
    if any(v <= 0 for v in labels):
        raise ExpertConfigError(f"parameter tumour_labels={labels} must be positive label values")
    return NnUNetExpert(
        model_folder if model_folder is not None else version_dir / parameters.get("model_folder", "nnunet"),
        name=name,
        fold=int(fold) if fold.isdigit() else fold,
        checkpoint=parameters.get("checkpoint", "checkpoint_final.pth"),
        use_mirroring=_boolean(parameters, "use_mirroring", False),
        tumour_labels=labels or None,
        torch_threads=torch_threads,
        input_channels=[c.strip() for c in parameters.get("input_channels", "").split(",") if c.strip()] or None,
    )


def expert_from_parameters(
    name: str, parameters: Mapping[str, str], version_dir: Path, torch_threads: int, weights: Path | None = None
) -> Expert:
    """The (unloaded) expert that ``config.pbtxt`` parameters describe; also used by Triton's model.py.

    ``weights`` replaces the parameters' weights location. Raises :class:`ExpertConfigError`.
    """
    kind = parameters.get("expert", "")
    if kind not in EXPERTS:
        raise ExpertConfigError(f"model {name}: parameter expert={kind!r} is not one of {list(EXPERTS)}")
    try:
        if kind == "sam2":
            from .experts.sam2_expert import sam2_expert_from_parameters

            return sam2_expert_from_parameters(name, parameters, version_dir, torch_threads, weights)
        if kind == "medgemma":
            from .experts.medgemma_expert import medgemma_expert_from_parameters

            return medgemma_expert_from_parameters(name, parameters, version_dir, torch_threads, weights)
        if kind == "deepbet":
            from .experts.brain_extraction_expert import brain_extraction_expert_from_parameters

            return brain_extraction_expert_from_parameters(name, parameters, version_dir, torch_threads, weights)
        return nnunet_expert_from_parameters(name, parameters, version_dir, torch_threads, weights)
    except ExpertConfigError:
        raise
    except ValueError as exc:
        raise ExpertConfigError(f"model {name}: {exc}") from exc


def build_expert(config: ModelConfig, settings: Settings) -> Expert:
    """The expert ``config`` names; raises :class:`ExpertConfigError` when it names none OncoFlow knows."""
    if config.backend != "python":
        raise ExpertConfigError(f"model {config.name}: backend {config.backend!r} is not served here (only python)")
    return expert_from_parameters(
        config.name, config.parameters, config.version_dir, settings.torch_threads,
        settings.model_weights.get(config.name),
    )


def build_models(settings: Settings) -> dict[str, ServedModel]:
    """Every model of the repository, unloaded; unusable ones are kept, not ready, with the reason."""
    configs, errors = scan_repository(settings.model_repository)
    models: dict[str, ServedModel] = {}
    for config in configs:
        try:
            models[config.name] = ServedModel(config.name, config, build_expert(config, settings))
        except ExpertConfigError as exc:
            models[config.name] = ServedModel(config.name, config, None, str(exc))
    for name, error in errors.items():
        models[name] = ServedModel(name, None, None, error)
    return dict(sorted(models.items()))
