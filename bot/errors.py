"""The few exceptions newsbot raises. Every message says what went wrong, where, and what to do.

The base class and the errors of reading, storing and embedding are defined in index/errors.py
(index/ never imports bot/) and re-exported here.
"""

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
