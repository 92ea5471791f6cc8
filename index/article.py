"""Data that crosses the boundaries of the ingesting side: articles, read failures, chunks."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


def stable_id(prefix: str, *parts: str) -> str:
    """A short deterministic id, e.g. stable_id("url", "https://...") -> "url-3f2a..."."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{prefix}-{digest}"


@dataclass(frozen=True)
class Article:
    """One news article. `published_at` is timezone-aware, or None when the source gives no date."""

    id: str
    title: str
    body: str
    source: str = ""
    url: str = ""
    author: str = ""
    published_at: datetime | None = None
    origin: str = ""  # where it was read from (path, path:line, URL), for messages

    def __post_init__(self) -> None:
        if self.published_at is not None and self.published_at.tzinfo is None:
            raise ValueError(f"{self.origin or self.id}: published_at must be timezone-aware")

    @property
    def content_hash(self) -> str:
        """Hash of the body alone: byte-identical stories from several outlets share it."""
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["published_at"] = self.published_at.isoformat() if self.published_at else None
        return data


@dataclass(frozen=True)
class ReadFailure:
    """An item that could not be read; the run goes on with the others."""

    location: str  # path or URL
    message: str
    line: int | None = None  # 1-based line of a JSON Lines file

    def __str__(self) -> str:
        where = f"{self.location}:{self.line}" if self.line is not None else self.location
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the store holds it; the lexical index analyses its text and metadata."""

    id: str
    text: str
    metadata: dict[str, Any]
    vector: Any = None  # the stored embedding, when asked for (iter_chunks/get_chunks vectors=True)


@dataclass(frozen=True)
class Chunk:
    """A span of an article's body: `article.body[start:end] == text`; the model reads `header`
    before it (chunk.context_header: title and source, none on the first chunk)."""

    id: str
    article_id: str
    position: int
    start: int
    end: int
    text: str
    header: str = ""

    @property
    def embed_text(self) -> str:
        return embed_text(self.header, self.text)


def embed_text(header: str, text: str) -> str:
    """What the embedding model sees for a chunk."""
    return f"{header}\n{text}" if header else text
