"""Triton's model repository layout: ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/``.

``config.pbtxt`` is protobuf text format. This module reads the subset OncoFlow's
models use (name, backend, max_batch_size, input/output tensors, string
parameters) without a protobuf dependency, so the same files serve a real Triton.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,;])|([^\s{}\[\]:,;"#]+))')


class ModelConfigError(ValueError):
    """A ``config.pbtxt`` that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # KServe name: "FP32", "UINT8", ...
    dims: tuple[int, ...]  # -1 for a variable dimension


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, str] = field(default_factory=dict)
    directory: Path = Path()
    version: str = "1"

    @property
    def version_dir(self) -> Path:
        return self.directory / self.version


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip():
                raise ModelConfigError(f"unexpected text at offset {position}: {text[position:position + 20]!r}")
            break
        position = match.end()
        if match.group(1):
            continue
        tokens.append(match.group(2) or match.group(3) or match.group(4))
    return tokens


def _value(token: str) -> Any:
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    return token  # enums (TYPE_FP32), booleans


def _parse_message(tokens: list[str], position: int, closing: str | None) -> tuple[dict[str, list[Any]], int]:
    """Fields of one message; every field maps to the list of its values (repeated or not)."""
    fields: dict[str, list[Any]] = {}
    while position < len(tokens):
        token = tokens[position]
        if token == closing:
            return fields, position + 1
        if token in ",;":  # optional field separators
            position += 1
            continue
        if token in "{}[]:":
            raise ModelConfigError(f"unexpected {token!r}")
        name, position = token, position + 1
        if position < len(tokens) and tokens[position] == ":":
            position += 1
        if position >= len(tokens):
            raise ModelConfigError(f"field {name} has no value")
        if tokens[position] == "{":
            value, position = _parse_message(tokens, position + 1, "}")
            fields.setdefault(name, []).append(value)
        elif tokens[position] == "[":
            position += 1
            while tokens[position] != "]":
                if tokens[position] == "{":
                    value, position = _parse_message(tokens, position + 1, "}")
                else:
                    value, position = _value(tokens[position]), position + 1
                fields.setdefault(name, []).append(value)
                if tokens[position] == ",":
                    position += 1
            position += 1
        else:
            fields.setdefault(name, []).append(_value(tokens[position]))
            position += 1
    if closing is not None:
        raise ModelConfigError(f"missing {closing!r}")
    return fields, position


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    """Parse protobuf text into nested dicts of lists."""
    try:
        fields, _ = _parse_message(_tokens(text), 0, None)
    except IndexError as exc:
        raise ModelConfigError("unexpected end of file") from exc
    return fields


def _one(fields: dict[str, list[Any]], name: str, default: Any = None) -> Any:
    values = fields.get(name)
    return values[-1] if values else default


def _tensor(fields: dict[str, list[Any]], where: str) -> TensorSpec:
    name, datatype = _one(fields, "name"), str(_one(fields, "data_type", ""))
    if not name or not datatype.startswith("TYPE_"):
        raise ModelConfigError(f"{where}: a tensor needs name and data_type TYPE_*")
    kserve = {"TYPE_BOOL": "BOOL", "TYPE_STRING": "BYTES"}.get(datatype, datatype.removeprefix("TYPE_"))
    return TensorSpec(str(name), kserve, tuple(int(d) for d in fields.get("dims", [])))


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read ``model_dir/config.pbtxt`` and pick the highest numeric version directory."""
    path = model_dir / "config.pbtxt"
    try:
        fields = parse_pbtxt(path.read_text())
    except OSError as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    except ModelConfigError as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    name = str(_one(fields, "name", model_dir.name))
    if name != model_dir.name:
        raise ModelConfigError(f"{path}: name {name!r} differs from the directory {model_dir.name!r}")
    parameters = {}
    for entry in fields.get("parameters", []):
        key, value = _one(entry, "key"), _one(entry, "value", {})
        parameters[str(key)] = str(_one(value, "string_value", ""))
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    return ModelConfig(
        name=name,
        backend=str(_one(fields, "backend", _one(fields, "platform", ""))),
        max_batch_size=int(_one(fields, "max_batch_size", 0)),
        inputs=tuple(_tensor(t, f"{path} input") for t in fields.get("input", [])),
        outputs=tuple(_tensor(t, f"{path} output") for t in fields.get("output", [])),
        parameters=parameters,
        directory=model_dir,
        version=str(versions[0]) if versions else "1",
    )


def scan_repository(repository: Path) -> tuple[list[ModelConfig], dict[str, str]]:
    """All models of a repository, and the errors of those whose configuration is unreadable."""
    configs, errors = [], {}
    for model_dir in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").exists()):
        try:
            configs.append(load_model_config(model_dir))
        except ModelConfigError as exc:
            errors[model_dir.name] = str(exc)
    return configs, errors
