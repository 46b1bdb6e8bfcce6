"""Triton Python-backend adapter: serves this model with OncoFlow's own NnUNetExpert.

Only a real Triton server imports this file (``triton_python_backend_utils`` exists
there alone); OncoFlow's worker builds the same expert from config.pbtxt directly.
Triton's Python stub must see the OncoFlow environment (``PYTHONPATH``).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from oncoflow_inference.experts.nnunet_expert import NnUNetExpert


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"] / parameters.get("model_folder", "nnunet")
        labels = [int(v) for v in parameters.get("tumour_labels", "").split(",") if v.strip()]
        self.expert = NnUNetExpert(
            folder,
            name=config["name"],
            fold=int(parameters.get("fold", "0")),
            use_mirroring=parameters.get("use_mirroring", "false") == "true",
            tumour_labels=labels or None,
        )
        self.expert.load()
        if not self.expert.ready:
            raise pb_utils.TritonModelException(self.expert.not_ready_reason)

    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            spacing = pb_utils.get_input_tensor_by_name(request, "SPACING_MM").as_numpy()
            wanted = set(request.requested_output_names())
            output = self.expert.predict(image, tuple(float(s) for s in spacing), "PROBABILITY" in wanted)
            tensors = [pb_utils.Tensor("MASK", output.mask)]
            if output.probability is not None:
                tensors.append(pb_utils.Tensor("PROBABILITY", output.probability.astype(np.float16)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
