"""What index/ needs to know from the settings, as protocols.

index/ never imports bot/ (docs: ../shared/STYLE.md), so it cannot name `bot.settings.Settings`.
Each protocol lists the read-only values one part of index/ uses; bot's `Settings` has them all
under the same names and is passed as it is, and a test or another program can pass any object
with those attributes (a dataclass, a `types.SimpleNamespace`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class FetchConfig(Protocol):
    """Limits on fetching one URL (index/fetch.py)."""

    @property
    def fetch_timeout(self) -> float: ...
    @property
    def max_redirects(self) -> int: ...
    @property
    def max_download_bytes(self) -> int: ...
    @property
    def allow_private_urls(self) -> bool: ...


class ReadConfig(FetchConfig, Protocol):
    """Reading files, pages and feeds (index/read.py)."""

    @property
    def max_file_bytes(self) -> int: ...
    @property
    def fetch_full_articles(self) -> bool: ...


class EmbeddingConfig(Protocol):
    """Which embedding model runs, and how (index/embed.py)."""

    @property
    def embedding_model(self) -> str: ...
    @property
    def embedding_backend(self) -> str: ...
    @property
    def embedding_precision(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def model_cache_dir(self) -> Path: ...


class StoreConfig(Protocol):
    """Where the store is (index/store.py, index/lock.py)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def store_dir(self) -> Path: ...
    @property
    def chroma_url(self) -> str | None: ...
    @property
    def collection(self) -> str: ...
    @property
    def store_retries(self) -> int: ...
