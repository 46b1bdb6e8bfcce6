"""The inference worker's HTTP API: KServe v2 (Triton's), so a Triton server can stand in for it.

Routes: ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``,
``GET /v2/models/{m}[/versions/{v}]``, ``GET /v2/models/{m}[/versions/{v}]/ready``,
``POST /v2/models/{m}[/versions/{v}]/infer`` (JSON or binary tensors) and
``POST /v2/repository/index`` (Triton's repository extension: state and reason per model).

Segmentation models take ``IMAGE`` FP32 ``(slice, row, column)`` and ``SPACING_MM``
FP32 ``(3,)``, and return ``MASK`` UINT8 and, when asked for, ``PROBABILITY`` FP16.
Inference runs on a bounded pool (one model call at a time by default, on 2 cores),
so health routes keep answering during a long inference.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from oncoflow import __version__
from oncoflow.config import Settings

from .binary_tensors import HEADER_LENGTH, TensorError, decode_request, encode_response
from .expert_registry import ServedModel, build_models

log = logging.getLogger("oncoflow.worker")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: str  # READY | LOADING | UNAVAILABLE
    reason: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validated_inputs(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[float, float, float]]:
    image, spacing = inputs.get("IMAGE"), inputs.get("SPACING_MM")
    if image is None or spacing is None:
        raise TensorError(f"inputs IMAGE and SPACING_MM are required, got {sorted(inputs)}")
    if image.ndim != 3 or min(image.shape) < 1:
        raise TensorError(f"IMAGE must be 3-D (slice, row, column), got shape {list(image.shape)}")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TensorError(f"SPACING_MM must be 3 positive numbers, got {spacing.tolist()}")
    if not np.all(np.isfinite(image)):
        raise TensorError("IMAGE holds NaN or infinite values")
    return image.astype(np.float32, copy=False), (float(spacing[0]), float(spacing[1]), float(spacing[2]))


def create_app(settings: Settings) -> FastAPI:
    """The worker application; experts start loading in the background at start-up."""
    models: dict[str, ServedModel] = build_models(settings)
    loading: set[str] = {name for name, m in models.items() if m.expert is not None}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oncoflow-infer")

    def load_all() -> None:
        for name, model in models.items():
            if model.expert is not None:
                model.expert.load()
                log.warning("model %s: %s", name, "READY" if model.ready else f"UNAVAILABLE: {model.reason}")
            loading.discard(name)

    app = FastAPI(title="OncoFlow inference worker (KServe v2)", version=__version__)

    @app.on_event("startup")
    def start_loading() -> None:
        threading.Thread(target=load_all, name="oncoflow-load", daemon=True).start()

    def lookup(name: str, version: str | None) -> ServedModel | JSONResponse:
        model = models.get(name)
        if model is None:
            return _error(404, f"Request for unknown model: '{name}' is not found")
        if version not in (None, "", model.config.version):
            return _error(404, f"Request for unknown model: '{name}' version {version} is not found")
        return model

    @app.get("/v2", response_model=ServerMetadata)
    def server_metadata() -> ServerMetadata:
        return ServerMetadata(name="oncoflow-worker", version=__version__,
                              extensions=["binary_tensor_data", "model_repository"])

    @app.get("/v2/health/live")
    def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    def ready() -> Response:
        return Response(status_code=200)

    @app.get("/v2/models/{name}", response_model=ModelMetadata)
    @app.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata)
    def model_metadata(name: str, version: str | None = None) -> ModelMetadata | JSONResponse:
        model = lookup(name, version)
        if isinstance(model, JSONResponse):
            return model
        config = model.config
        return ModelMetadata(
            name=config.name,
            versions=[config.version],
            platform=config.backend or "python",
            inputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.dims)) for t in config.inputs],
            outputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.dims)) for t in config.outputs],
        )

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    def model_ready(name: str, version: str | None = None) -> Response:
        model = lookup(name, version)
        if isinstance(model, JSONResponse):
            return model
        if model.ready:
            return Response(status_code=200)
        state = "loading" if name in loading else "unavailable"
        return _error(400, f"model '{name}' is not ready ({state}): {model.reason}")

    @app.post("/v2/repository/index", response_model=list[RepositoryEntry])
    def repository_index() -> list[RepositoryEntry]:
        return [
            RepositoryEntry(
                name=name,
                version=m.config.version,
                state="READY" if m.ready else "LOADING" if name in loading else "UNAVAILABLE",
                reason="" if m.ready else str(m.reason or ""),
            )
            for name, m in sorted(models.items())
        ]

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        model = lookup(name, version)
        if isinstance(model, JSONResponse):
            return model
        if not model.ready or model.expert is None:
            return _error(503, f"model '{name}' is not ready: {model.reason}")
        body = await request.body()
        try:
            header_length = request.headers.get(HEADER_LENGTH)
            decoded = decode_request(body, int(header_length) if header_length else None)
            image, spacing_mm = _validated_inputs(decoded.inputs)
        except (TensorError, ValueError) as exc:
            return _error(400, str(exc))
        wanted = decoded.requested_outputs or {"MASK": False}
        unknown = set(wanted) - {"MASK", "PROBABILITY"}
        if unknown:
            return _error(400, f"unknown outputs {sorted(unknown)}; this model gives MASK and PROBABILITY")
        expert = model.expert
        started = time.perf_counter()
        try:
            output = await asyncio.get_running_loop().run_in_executor(
                pool, lambda: expert.predict(image, spacing_mm, with_probability="PROBABILITY" in wanted)
            )
        except ValueError as exc:
            return _error(400, str(exc))
        outputs: dict[str, np.ndarray] = {"MASK": output.mask}
        if output.probability is not None:
            outputs["PROBABILITY"] = output.probability.astype(np.float16)
        payload, json_length = encode_response(
            name,
            model.config.version,
            {k: v for k, v in outputs.items() if k in wanted},
            wanted,
            decoded.request_id,
            {
                "inference_s": round(output.runtime_s, 4),
                "queue_and_inference_s": round(time.perf_counter() - started, 4),
                "model_version": f"{model.config.version}/{expert.version}",
            },
        )
        headers = {HEADER_LENGTH: str(json_length)} if json_length is not None else {}
        media = "application/octet-stream" if json_length is not None else "application/json"
        return Response(content=payload, media_type=media, headers=headers)

    return app

