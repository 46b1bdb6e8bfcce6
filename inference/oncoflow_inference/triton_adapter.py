"""Triton Python-backend adapter: a real Triton server serves OncoFlow's experts with their own code.

Each model's ``<version>/model.py`` in the repository only re-exports
:class:`TritonPythonModel` from here, so the worker and Triton share one
implementation: the expert is built from the same ``config.pbtxt`` parameters
(:func:`~oncoflow_inference.expert_registry.expert_from_parameters`, weights
overridden by ``ONCOFLOW_MODEL_WEIGHTS``) and answers through the same
``Expert.infer``. Triton's Python stub must see the OncoFlow environment (e.g.
``PYTHONPATH`` or an ``EXECUTION_ENV_PATH`` holding oncoflow, torch and nnunetv2).
Only a Triton server can import this module (``triton_python_backend_utils``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from oncoflow.core.config import parse_model_weights
from oncoflow.core.prompts import PromptError

from .binary_tensors import TensorError
from .expert_registry import expert_from_parameters
from .experts.base import Expert, ExpertInputError


class TritonPythonModel:
    expert: Expert | None

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_names = [t["name"] for t in config.get("input", [])]
        self.output_names = {t["name"] for t in config.get("output", [])}
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        errors: list[str] = []
        weights = parse_model_weights(os.environ, errors).get(config["name"])
        if errors:
            raise pb_utils.TritonModelException("; ".join(errors))
        self.expert = expert_from_parameters(
            config["name"], parameters, Path(args["model_repository"]) / args["model_version"],
            int(os.environ.get("ONCOFLOW_TORCH_THREADS", "2")), weights,
        )
        self.expert.load()
        if not self.expert.ready:
            raise pb_utils.TritonModelException(self.expert.not_ready_reason)

    def execute(self, requests: list[Any]) -> list[Any]:
        assert self.expert is not None
        responses = []
        for request in requests:
            try:
                inputs = {}
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    if tensor is not None:
                        inputs[name] = tensor.as_numpy()
                wanted = set(request.requested_output_names()) or self.output_names
                result = self.expert.infer(inputs, wanted)
            except (TensorError, PromptError, ExpertInputError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(name, array) for name, array in result.outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.expert = None
