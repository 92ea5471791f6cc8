"""newsbot: answers questions about news articles, citing the sentences it answers from.

>>> from bot import Bot
>>> bot = Bot.open()
>>> bot.ingest(["samples/articles"])
>>> print(bot.ask("What did Qatar say about Hamas's response?").to_markdown())
"""

from bot.core import Bot
from bot.errors import (
    AnswerError,
    EmbeddingError,
    NewsbotError,
    ReadError,
    SettingsError,
    StoreError,
)
from bot.models import Answer, Citation, Turn
from bot.settings import Settings, load_settings

__all__ = [
    "Answer",
    "AnswerError",
    "Bot",
    "Citation",
    "EmbeddingError",
    "NewsbotError",
    "ReadError",
    "Settings",
    "SettingsError",
    "StoreError",
    "Turn",
    "load_settings",
]
__version__ = "0.1.0"
