"""Triton's model repository layout: ``<repo>/<model>/config.pbtxt`` and ``<repo>/<model>/<version>/``.

``config.pbtxt`` is protobuf text format. This module reads the subset OncoFlow's
models use, by hand (no protobuf dependency), so the very same files serve a real
Triton server:

* scalars ``name``, ``backend`` (or ``platform``), ``max_batch_size``;
* ``input [ {name, data_type: TYPE_FP32, dims: [ -1, -1, -1 ]} ]`` and ``output [...]``
  (also repeated ``input { ... }`` blocks);
* ``parameters [ { key: "k" value: { string_value: "v" } } ]``, or repeated
  ``parameters { key: ... value: {...} }`` blocks.

Other fields (``instance_group``, ``version_policy``, ...) are parsed and ignored.
``#`` starts a comment; ``,`` and ``;`` between fields are optional. Errors name the
file, line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .binary_tensors import DATATYPES

_TOKEN = re.compile(
    r"""(?P<space>\s+)|(?P<comment>\#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    r"""|(?P<punct>[{}\[\]:,;<>])|(?P<word>[A-Za-z0-9_.+\-]+)"""
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v", "?": "?"}
_INTEGER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|\d+)")


class ModelConfigError(ValueError):
    """A ``config.pbtxt`` (or model directory) that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as ``config.pbtxt`` declares it."""

    name: str
    datatype: str  # KServe name: "FP32", "UINT8", "BYTES", ...
    dims: tuple[int, ...]  # -1 for a variable dimension (batch dimension excluded)
    optional: bool = False  # Triton's ``optional: true``: a request may leave the input out


@dataclass(frozen=True)
class ModelConfig:
    """A model of the repository: its configuration and the version it is served at."""

    name: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, str] = field(default_factory=dict)
    directory: Path = Path()  # <repo>/<model>
    version: str = "1"  # the highest numeric version directory

    @property
    def version_dir(self) -> Path:
        """``<repo>/<model>/<version>``: where the model's files are."""
        return self.directory / self.version


@dataclass(frozen=True)
class _Token:
    text: str
    kind: str  # string | punct | word
    line: int
    column: int

    def where(self) -> str:
        return f"line {self.line}, column {self.column}"


def _unquote(token: str) -> str:
    """Decode a quoted protobuf text string (C-style escapes, UTF-8 text)."""
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        code = body[i + 1]
        if code in _ESCAPES:
            out += _ESCAPES[code].encode()
            i += 2
        elif code in "xX":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if not digits:
                raise ModelConfigError(f"bad \\x escape in {token}")
            out.append(int(digits.group(), 16))
            i += 2 + len(digits.group())
        elif code in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            i += 1 + len(digits.group())
        else:
            raise ModelConfigError(f"unknown escape \\{code} in {token}")
    return out.decode("utf-8", "replace")


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line, line_start = 0, 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ModelConfigError(
                f"line {line}, column {position - line_start + 1}: unexpected character {text[position]!r}"
            )
        kind = match.lastgroup or ""
        if kind in ("string", "punct", "word"):
            tokens.append(_Token(match.group(), kind, line, position - line_start + 1))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = match.start() + match.group().rfind("\n") + 1
        position = match.end()
    return tokens


def _scalar(token: _Token) -> Any:
    if token.kind == "string":
        return _unquote(token.text)
    if _INTEGER.fullmatch(token.text):
        return int(token.text, 16 if "x" in token.text.lower() else 10)
    try:
        return float(token.text)
    except ValueError:
        return token.text  # an enum (TYPE_FP32, KIND_CPU) or a boolean (true/false)


class _Parser:
    """Recursive descent over the tokens; a message is ``dict[field, list[value]]``."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _next(self, expecting: str) -> _Token:
        token = self._peek()
        if token is None:
            raise ModelConfigError(f"unexpected end of file, expecting {expecting}")
        self.position += 1
        return token

    def message(self, opening: _Token | None = None) -> dict[str, list[Any]]:
        """Fields up to the token closing ``opening`` (``{`` or ``<``), or to the end of the file."""
        closing = None if opening is None else {"{": "}", "<": ">"}[opening.text]
        fields: dict[str, list[Any]] = {}
        while True:
            token = self._peek()
            if token is None:
                if opening is not None:
                    raise ModelConfigError(
                        f"unexpected end of file: {opening.text!r} at {opening.where()} is never closed"
                    )
                return fields
            self.position += 1
            if closing is not None and token.text == closing and token.kind == "punct":
                return fields
            if token.kind == "punct" and token.text in ",;":
                continue
            if token.kind != "word" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token.text):
                raise ModelConfigError(f"{token.where()}: expected a field name, found {token.text!r}")
            values = fields.setdefault(token.text, [])
            after = self._peek()
            has_colon = after is not None and after.text == ":" and after.kind == "punct"
            if has_colon:
                self.position += 1
            self._values(token, values, has_colon)

    def _values(self, name: _Token, values: list[Any], has_colon: bool) -> None:
        token = self._next(f"a value for {name.text}")
        if token.kind == "punct" and token.text in "{<":
            values.append(self.message(token))
        elif token.kind == "punct" and token.text == "[":
            if self._peek() is not None and self._peek().text == "]":  # type: ignore[union-attr]
                self.position += 1
                return
            while True:
                item = self._next(f"a list item for {name.text}")
                if item.kind == "punct" and item.text in "{<":
                    values.append(self.message(item))
                elif item.kind == "punct":
                    raise ModelConfigError(f"{item.where()}: unexpected {item.text!r} in the list {name.text}")
                else:
                    values.append(_scalar(item))
                separator = self._next(f"',' or ']' in the list {name.text}")
                if separator.text == "]":
                    return
                if separator.text != ",":
                    raise ModelConfigError(
                        f"{separator.where()}: expected ',' or ']' in the list {name.text}, found {separator.text!r}"
                    )
        elif token.kind == "punct":
            raise ModelConfigError(f"{token.where()}: expected a value for {name.text}, found {token.text!r}")
        elif not has_colon:
            raise ModelConfigError(f"{token.where()}: expected ':' between {name.text} and its value")
        else:
            values.append(_scalar(token))


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    """Parse protobuf text into nested dicts; every field maps to the list of its values."""
    return _Parser(_tokens(text)).message()


def _one(fields: dict[str, list[Any]], name: str, default: Any = None) -> Any:
    values = fields.get(name)
    return values[-1] if values else default


def _messages(fields: dict[str, list[Any]], name: str) -> list[dict[str, list[Any]]]:
    values = fields.get(name, [])
    for value in values:
        if not isinstance(value, dict):
            raise ModelConfigError(f"{name} must be a message {{ ... }}, got {value!r}")
    return values


def _string(fields: dict[str, list[Any]], name: str, default: str = "") -> str:
    value = _one(fields, name, default)
    if isinstance(value, dict):
        raise ModelConfigError(f"{name} must be a scalar, got a message")
    return str(value)


def _tensor(fields: dict[str, list[Any]], kind: str) -> TensorSpec:
    name, type_name = _string(fields, "name"), _string(fields, "data_type")
    if not name:
        raise ModelConfigError(f"an {kind} has no name")
    if not type_name.startswith("TYPE_"):
        raise ModelConfigError(f"{kind} {name}: data_type must be TYPE_*, got {type_name!r}")
    datatype = {"TYPE_STRING": "BYTES"}.get(type_name, type_name.removeprefix("TYPE_"))
    if datatype not in DATATYPES:
        raise ModelConfigError(f"{kind} {name}: unsupported data_type {type_name}")
    dims = fields.get("dims", [])
    if any(type(d) is not int or d < -1 or d == 0 for d in dims):
        raise ModelConfigError(f"{kind} {name}: dims must be positive integers or -1, got {dims}")
    optional = _one(fields, "optional", "false")
    if str(optional).lower() not in ("true", "false"):
        raise ModelConfigError(f"{kind} {name}: optional must be true or false, got {optional!r}")
    return TensorSpec(name, datatype, tuple(dims), str(optional).lower() == "true")


def _parameters(fields: dict[str, list[Any]]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for entry in _messages(fields, "parameters"):
        key = _string(entry, "key")
        if not key:
            raise ModelConfigError("a parameters entry has no key")
        values = _messages(entry, "value")
        if not values or "string_value" not in values[-1]:
            raise ModelConfigError(f"parameter {key!r} needs value: {{ string_value: \"...\" }}")
        parameters[key] = _string(values[-1], "string_value")
    return parameters


def version_directories(model_dir: Path) -> list[int]:
    """The numeric version directories of a model, highest first."""
    return sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read ``model_dir/config.pbtxt``; the served version is the highest numeric subdirectory.

    Raises :class:`ModelConfigError` (naming the file) for unreadable or malformed
    configurations, a ``name`` other than the directory's, or no version directory.
    """
    path = model_dir / "config.pbtxt"
    try:
        fields = parse_pbtxt(path.read_text(encoding="utf-8"))
        name = _string(fields, "name", model_dir.name)
        if name != model_dir.name:
            raise ModelConfigError(f"name {name!r} differs from the model directory {model_dir.name!r}")
        max_batch_size = _one(fields, "max_batch_size", 0)
        if type(max_batch_size) is not int or max_batch_size < 0:
            raise ModelConfigError(f"max_batch_size must be a non-negative integer, got {max_batch_size!r}")
        config = ModelConfig(
            name=name,
            backend=_string(fields, "backend", _string(fields, "platform")),
            max_batch_size=max_batch_size,
            inputs=tuple(_tensor(t, "input") for t in _messages(fields, "input")),
            outputs=tuple(_tensor(t, "output") for t in _messages(fields, "output")),
            parameters=_parameters(fields),
            directory=model_dir,
        )
    except (OSError, UnicodeDecodeError, ModelConfigError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    versions = version_directories(model_dir)
    if not versions:
        raise ModelConfigError(f"{model_dir} has no numeric version directory (e.g. {model_dir / '1'})")
    return replace(config, version=str(versions[0]))


def scan_repository(repository: Path) -> tuple[list[ModelConfig], dict[str, str]]:
    """Every model directory of ``repository`` (those holding ``config.pbtxt``), in name order.

    Returns the readable configurations and, per model name, the error of each unusable one.
    """
    configs: list[ModelConfig] = []
    errors: dict[str, str] = {}
    for model_dir in sorted(p for p in repository.iterdir() if (p / "config.pbtxt").is_file()):
        try:
            configs.append(load_model_config(model_dir))
        except ModelConfigError as exc:
            errors[model_dir.name] = str(exc)
    return configs, errors
