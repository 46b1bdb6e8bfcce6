"""Build the experts named by a Triton model repository.

A model directory served by the Python backend declares which OncoFlow expert it
is in ``config.pbtxt`` parameters: ``expert`` ("nnunet"), ``model_folder``
(relative to the version directory), ``fold``, ``use_mirroring``,
``tumour_labels`` (comma-separated). ``ONCOFLOW_NNUNET_MODEL_DIR`` replaces the
folder of the segmentation model, so a hospital's BraTS model is a config change.
"""

from __future__ import annotations

from dataclasses import dataclass

from oncoflow.config import Settings

from .experts.base import Expert
from .experts.nnunet_expert import NnUNetExpert
from .model_repository import ModelConfig, scan_repository


@dataclass
class ServedModel:
    config: ModelConfig
    expert: Expert | None  # None when the configuration names no known expert
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.expert is not None and self.expert.ready

    @property
    def reason(self) -> str | None:
        if self.expert is None:
            return self.error
        return self.expert.not_ready_reason


def _expert(config: ModelConfig, settings: Settings) -> Expert:
    kind = config.parameters.get("expert", "")
    if kind != "nnunet":
        raise ValueError(f"model {config.name}: unknown expert {kind!r} (parameters.expert)")
    folder = config.version_dir / config.parameters.get("model_folder", "nnunet")
    if settings.nnunet_model_dir is not None and config.name == settings.segmentation_model:
        folder = settings.nnunet_model_dir
    labels = [int(v) for v in config.parameters.get("tumour_labels", "").split(",") if v.strip()]
    return NnUNetExpert(
        folder,
        name=config.name,
        fold=int(config.parameters.get("fold", "0")),
        use_mirroring=config.parameters.get("use_mirroring", "false").lower() == "true",
        tumour_labels=labels or None,
        torch_threads=settings.torch_threads,
    )


def build_models(settings: Settings) -> dict[str, ServedModel]:
    """Every model of the repository; unreadable or unknown ones are kept, not ready, with the reason."""
    configs, errors = scan_repository(settings.model_repository)
    models: dict[str, ServedModel] = {}
    for config in configs:
        try:
            models[config.name] = ServedModel(config, _expert(config, settings))
        except ValueError as exc:
            models[config.name] = ServedModel(config, None, str(exc))
    for name, error in errors.items():
        models[name] = ServedModel(ModelConfig(name, "", 0, (), (), directory=settings.model_repository / name),
                                   None, error)
    return models
