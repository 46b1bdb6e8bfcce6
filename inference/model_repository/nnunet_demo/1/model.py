"""Triton Python-backend adapter: serves this model with OncoFlow's own NnUNetExpert.

Only a real Triton server imports this file (``triton_python_backend_utils`` exists
there alone); OncoFlow's worker builds the same expert from config.pbtxt itself.
Triton's Python stub must see the OncoFlow environment (e.g. ``PYTHONPATH`` or an
``EXECUTION_ENV_PATH`` holding oncoflow, torch and nnunetv2).
"""

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from oncoflow_inference.binary_tensors import TensorError
from oncoflow_inference.expert_registry import nnunet_expert_from_parameters
from oncoflow_inference.experts.base import ExpertInputError
from oncoflow_inference.segmentation_tensors import MASK, PROBABILITY, segmentation_inputs


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        override = os.environ.get("ONCOFLOW_NNUNET_MODEL_DIR")
        self.expert = nnunet_expert_from_parameters(
            config["name"], parameters, version_dir,
            torch_threads=int(os.environ.get("ONCOFLOW_TORCH_THREADS", "2")),
            model_folder=Path(override) if override else None,
        )
        self.expert.load()
        if not self.expert.ready:
            raise pb_utils.TritonModelException(self.expert.not_ready_reason)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                inputs = {name: pb_utils.get_input_tensor_by_name(request, name) for name in ("IMAGE", "SPACING_MM")}
                image, spacing_mm = segmentation_inputs(
                    {name: tensor.as_numpy() for name, tensor in inputs.items() if tensor is not None}
                )
                wanted = set(request.requested_output_names())
                output = self.expert.predict(image, spacing_mm, with_probability=PROBABILITY in wanted)
            except (TensorError, ExpertInputError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(MASK, output.mask)]
            if output.probability is not None:
                tensors.append(pb_utils.Tensor(PROBABILITY, output.probability.astype(np.float16)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self):
        self.expert = None
