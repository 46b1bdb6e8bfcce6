"""Triton Python backend entry point: OncoFlow's shared adapter serves this model (see config.pbtxt)."""

from oncoflow_inference.triton_adapter import TritonPythonModel

__all__ = ["TritonPythonModel"]
