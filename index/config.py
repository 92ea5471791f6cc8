"""What index/ needs to know from the settings, as protocols.

index/ never imports bot/ (../shared/STYLE.md), so it cannot name `bot.settings.Settings`. Each
protocol lists the values one part of index/ reads; bot's `Settings` has them under the same names
and is passed as it is, and a test or another program can pass any object with those attributes
(a dataclass, a `types.SimpleNamespace`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol


class FetchConfig(Protocol):
    """Limits on fetching one URL (index/fetch.py)."""

    fetch_timeout: float
    max_redirects: int
    max_download_bytes: int
    allow_private_urls: bool


class ReadConfig(FetchConfig, Protocol):
    """Reading files, pages and feeds (index/read.py)."""

    max_file_bytes: int
    fetch_full_articles: bool


class EmbeddingConfig(Protocol):
    """Which embedding model runs, and how (index/embed.py)."""

    embedding_model: str
    embedding_backend: Literal["onnx", "torch"]
    embedding_precision: Literal["fp32", "int8"]
    batch_size: int
    model_cache_dir: Path


class StoreConfig(Protocol):
    """Where the store is (index/store.py, index/lock.py)."""

    data_dir: Path
    chroma_url: str | None
    collection: str
    store_retries: int

    @property
    def store_dir(self) -> Path: ...
