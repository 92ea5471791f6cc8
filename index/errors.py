"""The errors index/ raises (here, as index/ never imports bot/; bot/errors.py re-exports them).
Every message says what went wrong, where, and what to do."""

from __future__ import annotations


class NewsbotError(Exception):
    """Base class: anything newsbot raises on purpose. The CLI shows it as one red line."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ReadError(NewsbotError):
    """An article could not be read (file, URL, feed, JSON line)."""


class StoreError(NewsbotError):
    """The vector store is unreachable, or holds vectors of another embedding model."""


class DamagedIndexError(StoreError):
    """Chroma cannot load a collection's vector index (a process was stopped while Chroma saved
    it): `newsbot repair`, or the next ingest, rebuilds it (index/repair.py)."""

    searched = False  # found by a search reaching a row never written, not when Chroma loaded it


class EmbeddingError(NewsbotError):
    """The embedding model could not be loaded or exported."""
