"""Embedding models: one process-wide instance per (model, backend, precision). `torch`
(sentence-transformers) and `onnx` (index/onnx_backend.py, no torch) give the same vectors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from index.config import EmbeddingConfig
from index.errors import EmbeddingError
from index.model import EmbeddingIdentity, load_tokenizer, model_max_tokens, resolve_model_path

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class Embedder(Protocol):
    identity: EmbeddingIdentity
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


@runtime_checkable
class TokenEmbedder(Embedder, Protocol):
    """One that also embeds word pieces (OnnxEmbedder): an ingest's reader tokenizes for it."""

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]: ...

    def embed_tokens(self, rows: Sequence[Sequence[int]]) -> np.ndarray: ...


@lru_cache(maxsize=4)
def _counting_tokenizer(model: str) -> Any:
    return load_tokenizer(resolve_model_path(model))


class TokenCounter:
    """Word pieces as the model sees them, less [CLS]/[SEP]; never cut: an overlong chunk shows."""

    def __init__(self, model: str) -> None:
        self._tokenizer = _counting_tokenizer(model)

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


class TorchEmbedder:
    """sentence-transformers on torch: the reference implementation."""

    def __init__(self, model: str, batch_size: int) -> None:
        path = resolve_model_path(model)
        try:
            from sentence_transformers import SentenceTransformer

            self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise EmbeddingError(f"cannot load embedding model from {path}: {exc}") from exc
        self.max_tokens = int(self._model.max_seq_length or model_max_tokens(path))
        self.batch_size = batch_size
        dimension = int(self._model.get_embedding_dimension() or 0)
        self.identity = EmbeddingIdentity(model, dimension, "torch", "fp32")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.identity.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_embedders: dict[tuple[str, str, str, int], Embedder] = {}
_embedders_lock = threading.Lock()


def import_backend(settings: EmbeddingConfig) -> None:
    """Import what `load_embedder(settings)` runs on before loading it on another thread (Bot.warm):
    two threads importing numpy at once found it "partially initialized". Not the tokenizer
    (OnnxEmbedder._tokenizer); torch's backend loads whole (transformers imports as it builds)."""
    if settings.embedding_backend == "torch":
        load_embedder(settings)
    else:
        import onnxruntime  # noqa: F401

        import index.onnx_backend  # noqa: F401


def load_embedder(settings: EmbeddingConfig, *, questions: bool = False) -> Embedder:
    """The process's embedder for these settings, loaded once (a later call gets it, whatever it
    was loaded for); `questions` (Bot.warm with its index): ONNX for one row at a time."""
    key = (
        settings.embedding_model,
        settings.embedding_backend,
        settings.embedding_precision,
        settings.batch_size,
    )
    with _embedders_lock:
        if key not in _embedders:
            log.info("loading embedding model %s (%s, %s)", *key[:3])
            if settings.embedding_backend == "torch":
                if settings.embedding_precision != "fp32":
                    raise EmbeddingError(
                        "the torch backend runs in fp32 only",
                        hint="set NEWSBOT_EMBEDDING_PRECISION=fp32 "
                        "or NEWSBOT_EMBEDDING_BACKEND=onnx",
                    )
                _embedders[key] = TorchEmbedder(settings.embedding_model, settings.batch_size)
            else:
                from index.onnx_backend import OnnxEmbedder

                _embedders[key] = OnnxEmbedder(
                    settings.embedding_model,
                    settings.embedding_precision,
                    settings.batch_size,
                    cache_dir=settings.model_cache_dir,
                    questions=questions,
                )
        return _embedders[key]
