"""The few exceptions newsbot raises; NewsbotError and those of index/ come from index/errors.py."""

from __future__ import annotations

from index.errors import EmbeddingError, NewsbotError, ReadError, StoreError

__all__ = [
    "AnswerError",
    "EmbeddingError",
    "NewsbotError",
    "ReadError",
    "SettingsError",
    "StoreError",
]


class SettingsError(NewsbotError):
    """A setting has a value newsbot cannot use (env var, TOML file or argument)."""


class AnswerError(NewsbotError):
    """The answerer (e.g. an LLM provider) failed."""
