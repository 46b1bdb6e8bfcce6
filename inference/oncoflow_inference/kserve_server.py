"""The inference worker's HTTP API: KServe v2 (Triton's), so a Triton server can stand in for it.

Routes:

* ``GET /v2``: server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready``
  (200 once the server is up; readiness of models is per model);
* ``GET /v2/models/{m}[/versions/{v}]``: model metadata (tensors from config.pbtxt);
* ``GET /v2/models/{m}[/versions/{v}]/ready``: 200, or 400 ``{"error": reason}``;
* ``GET /v2/models/{m}[/versions/{v}]/config``: Triton's model configuration (JSON), its ``parameters``
  completed by the loaded expert (``Expert.declared_parameters``: e.g. an nnU-Net's ``input_channels``);
* ``POST /v2/models/{m}[/versions/{v}]/infer``: JSON or binary tensors (binary tensor
  data extension), request body optionally gzip/deflate ``Content-Encoding``;
* ``POST /v2/repository/index``: Triton's repository extension, state and reason per model.

Each expert defines its tensors (``Expert.infer``): segmentation models take ``IMAGE``
FP32 ``(slice, row, column)`` and ``SPACING_MM`` FP32 ``(3,)`` mm and return ``MASK``
UINT8 and, when requested, ``PROBABILITY`` FP16; SAM2 also takes optional ``BOXES`` and
``POINTS`` prompts; MedGemma returns ``BOXES`` and ``FINDINGS`` (BYTES).
Errors are ``{"error": "..."}``: 400 for a bad request, 404 for an unknown model or
version, 503 while a model cannot run (loading or unavailable), 500 for a model
failure. Experts load in a background thread (the server is live at once); model
calls run on a bounded thread pool, so health routes answer during a long inference.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from oncoflow import __version__
from oncoflow.core.config import Settings
from oncoflow.core.prompts import PromptError

from .binary_tensors import HEADER_LENGTH, InferRequest, TensorError, decode_request, encode_response
from .expert_registry import ServedModel, build_models
from .experts.base import ExpertInputError, ExpertNotReady
from .model_repository import ModelConfig, TensorSpec
from .segmentation_tensors import check_against_specs

log = logging.getLogger("oncoflow.worker")

SERVER_NAME = "oncoflow-worker"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str  # KServe v2 datatype
    shape: list[int]  # -1 for a variable dimension


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str  # why it is not READY; empty when it is


class ErrorResponse(BaseModel):
    error: str


class KServeError(Exception):
    """Answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_ERRORS: dict[int | str, dict[str, type[BaseModel]]] = {
    400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}
}


def _decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo a request ``Content-Encoding`` (gzip or deflate, as tritonclient may send)."""
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise TensorError(f"request body is not valid {encoding}: {exc}") from exc
    raise TensorError(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")


def _triton_tensor(spec: TensorSpec) -> dict[str, object]:
    data_type = "TYPE_STRING" if spec.datatype == "BYTES" else f"TYPE_{spec.datatype}"
    return {"name": spec.name, "data_type": data_type, "dims": list(spec.dims), "optional": spec.optional}


def triton_config_json(config: ModelConfig, declared: dict[str, str]) -> dict[str, object]:
    """``config.pbtxt`` as Triton's ``GET /v2/models/{m}/config`` gives it; ``declared`` parameters (the loaded
    model's own account of itself) complete the file's, which win where both name a key."""
    parameters = {**declared, **config.parameters}
    return {
        "name": config.name, "backend": config.backend, "max_batch_size": config.max_batch_size,
        "version_policy": {"latest": {"num_versions": 1}},
        "input": [_triton_tensor(t) for t in config.inputs],
        "output": [_triton_tensor(t) for t in config.outputs],
        "parameters": {key: {"string_value": value} for key, value in sorted(parameters.items())},
    }


def create_app(settings: Settings, max_concurrent_inferences: int | None = None) -> FastAPI:
    """The worker application for ``settings.model_repository``.

    ``max_concurrent_inferences`` bounds the model calls running at once (default:
    ``settings.panel_concurrency``; each call uses ``settings.torch_threads`` threads).
    """
    concurrency = max_concurrent_inferences or settings.panel_concurrency
    models: dict[str, ServedModel] = build_models(settings)
    loading: set[str] = {name for name, model in models.items() if model.expert is not None}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="oncoflow-infer")

    def load_all() -> None:
        for name, model in models.items():
            if model.expert is None:
                log.warning("model %s: UNAVAILABLE: %s", name, model.reason)
                continue
            started = time.perf_counter()
            model.expert.load()
            loading.discard(name)
            if model.ready:
                log.info("model %s: READY (version %s, %.1f s)", name, model.expert.version,
                         time.perf_counter() - started)
            else:
                log.warning("model %s: UNAVAILABLE: %s", name, model.reason)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=load_all, name="oncoflow-load", daemon=True).start()
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="OncoFlow inference worker (KServe v2)", version=__version__, lifespan=lifespan)

    @app.exception_handler(KServeError)
    async def kserve_error(_: Request, exc: KServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    def lookup(name: str, version: str | None) -> ServedModel:
        model = models.get(name)
        if model is None:
            raise KServeError(404, f"Request for unknown model: '{name}' is not found")
        if version not in (None, "", model.version):
            raise KServeError(404, f"Request for unknown model: '{name}' version {version} is not found")
        return model

    def state(model: ServedModel) -> Literal["READY", "LOADING", "UNAVAILABLE"]:
        if model.ready:
            return "READY"
        return "LOADING" if model.name in loading else "UNAVAILABLE"

    @app.get("/v2", response_model=ServerMetadata)
    def server_metadata() -> ServerMetadata:
        return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    @app.get("/v2/health/live")
    def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    def ready() -> Response:
        return Response(status_code=200)

    @app.get("/v2/models/{name}", response_model=ModelMetadata, responses=_ERRORS)
    @app.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_ERRORS)
    def model_metadata(name: str, version: str | None = None) -> ModelMetadata:
        model = lookup(name, version)
        if model.config is None:
            raise KServeError(400, f"model '{name}' is unavailable: {model.reason}")
        config = model.config
        return ModelMetadata(
            name=config.name,
            versions=[config.version],
            platform=config.backend,
            inputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.dims)) for t in config.inputs],
            outputs=[TensorMetadata(name=t.name, datatype=t.datatype, shape=list(t.dims)) for t in config.outputs],
        )

    @app.get("/v2/models/{name}/config", responses=_ERRORS)
    @app.get("/v2/models/{name}/versions/{version}/config", responses=_ERRORS)
    def model_config(name: str, version: str | None = None) -> dict[str, object]:
        model = lookup(name, version)
        if model.config is None:
            raise KServeError(400, f"model '{name}' is unavailable: {model.reason}")
        return triton_config_json(model.config, model.expert.declared_parameters() if model.ready and
                                  model.expert is not None else {})

    @app.get("/v2/models/{name}/ready", responses=_ERRORS)
    @app.get("/v2/models/{name}/versions/{version}/ready", responses=_ERRORS)
    def model_ready(name: str, version: str | None = None) -> Response:
        model = lookup(name, version)
        if model.ready:
            return Response(status_code=200)
        raise KServeError(400, f"model '{name}' is not ready ({state(model).lower()}): {model.reason}")

    @app.post("/v2/repository/index", response_model=list[RepositoryEntry])
    async def repository_index(request: Request) -> list[RepositoryEntry]:
        body = await request.body()
        only_ready = False
        if body.strip():
            try:
                only_ready = bool(json.loads(body).get("ready", False))
            except (ValueError, AttributeError) as exc:
                raise KServeError(400, f"repository index request must be a JSON object: {exc}") from exc
        return [
            RepositoryEntry(name=name, version=model.version, state=state(model), reason=model.reason or "")
            for name, model in models.items()
            if model.ready or not only_ready
        ]

    @app.post("/v2/models/{name}/infer", responses=_ERRORS)
    @app.post("/v2/models/{name}/versions/{version}/infer", responses=_ERRORS)
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        model = lookup(name, version)
        if not model.ready or model.expert is None or model.config is None:
            raise KServeError(503, f"model '{name}' is not ready ({state(model).lower()}): {model.reason}")
        config, expert = model.config, model.expert
        body = await request.body()
        raw_length = request.headers.get(HEADER_LENGTH)
        try:
            header_length = int(raw_length) if raw_length is not None else None
        except ValueError as exc:
            raise KServeError(400, f"{HEADER_LENGTH} {raw_length!r} is not an integer") from exc

        def decode() -> InferRequest:
            """Decode and validate off the event loop (a large volume takes a while to check)."""
            decoded = decode_request(_decompress(body, request.headers.get("Content-Encoding")), header_length)
            check_against_specs(decoded.inputs, config.inputs)
            return decoded

        try:
            decoded = await asyncio.to_thread(decode)
        except TensorError as exc:
            raise KServeError(400, str(exc)) from exc

        declared = [t.name for t in config.outputs]
        wanted = decoded.requested_outputs or {n: decoded.binary_data_output for n in declared}
        unknown = sorted(set(wanted) - set(declared))
        if unknown:
            raise KServeError(400, f"unknown outputs {unknown}; model '{name}' gives {declared}")

        started = time.perf_counter()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                pool, expert.infer, decoded.inputs, set(wanted), settings.max_voxels
            )
        except (TensorError, PromptError, ExpertInputError) as exc:
            raise KServeError(400, str(exc)) from exc
        except ExpertNotReady as exc:
            raise KServeError(503, f"model '{name}' is not ready: {exc}") from exc
        except Exception as exc:
            shapes = {k: list(v.shape) for k, v in decoded.inputs.items()}
            log.exception("model %s failed on inputs %s", name, shapes)
            raise KServeError(500, f"model '{name}' failed: {type(exc).__name__}: {exc}") from exc
        total_s = time.perf_counter() - started

        parameters = {
            "inference_s": round(result.runtime_s, 4),
            "queue_and_inference_s": round(total_s, 4),
            "model_version": f"{config.version}/{expert.version}",
        }
        payload, json_length = await asyncio.to_thread(
            encode_response, name, config.version, {n: result.outputs[n] for n in wanted if n in result.outputs},
            wanted, decoded.request_id, parameters,
        )
        log.info("model %s: %.2f s inference, %.2f s with queue", name, result.runtime_s, total_s)
        if json_length is None:
            return Response(content=payload, media_type="application/json")
        return Response(content=payload, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(json_length)})

    return app
