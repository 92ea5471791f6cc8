"""What index/ reads from the settings, as protocols (index/ never imports bot.settings): bot's
`Settings` is passed as it is; a test may pass any object with these names."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol


class FetchConfig(Protocol):
    fetch_timeout: float
    max_redirects: int
    max_download_bytes: int
    allow_private_urls: bool


class ReadConfig(FetchConfig, Protocol):
    max_file_bytes: int
    fetch_full_articles: bool


class EmbeddingConfig(Protocol):
    embedding_model: str
    embedding_backend: Literal["onnx", "torch"]
    embedding_precision: Literal["fp32", "int8"]
    batch_size: int
    model_cache_dir: Path


class StoreConfig(Protocol):
    data_dir: Path
    chroma_url: str | None
    collection: str
    store_retries: int
    vector_save_every: int

    @property
    def store_dir(self) -> Path: ...
