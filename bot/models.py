"""The objects every front door receives: Answer and its Citations. Frozen; `to_dict()` for JSON."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, TypedDict

# since/until in the Python API: a datetime (naive = UTC), a date or an ISO string.
DateLike = datetime | date | str | None
# How an answer's text cites: "[n]" after the claim, written by bot/answer.py and bot/llm.py;
# the CLI, the eval and follow-ups find the markers with this.
CITATION_MARKER = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Citation:
    """One numbered source: `quote` is verbatim `article.body[start:end]` of the cited article."""

    n: int
    article_id: str
    title: str
    source: str
    url: str
    published_at: datetime | None
    quote: str
    start: int
    end: int
    score: float
    passage: str = ""  # the whole retrieved chunk the quote came from, for "show sources"
    sources: tuple[str, ...] = ()  # every outlet that ran this story (syndication)

    @property
    def outlets(self) -> str:
        """Every outlet that ran the quoted story, for display."""
        return ", ".join(self.sources) or self.source or "source not given"

    @property
    def date(self) -> str:
        return self.published_at.date().isoformat() if self.published_at else "undated"

    def to_dict(self) -> dict[str, Any]:
        published_at = self.published_at.isoformat() if self.published_at else None
        return asdict(self) | {"published_at": published_at, "sources": list(self.sources)}

    def to_markdown(self) -> str:
        """A list item: `n. [title](url) (outlet, date)` and the quote as a blockquote in it."""
        title = f"[{self.title}]({self.url})" if self.url else self.title
        return f"{self.n}. {title} ({self.outlets}, {self.date})\n\n   > {self.quote}"


@dataclass(frozen=True)
class Answer:
    """The bot's reply. When `refused`, `text` says the articles don't answer and `citations` hold
    the closest evidence found instead."""

    question: str
    standalone_question: str
    text: str
    citations: tuple[Citation, ...]
    refused: bool
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (+ LLM tokens)
    filters: dict[str, Any] = field(default_factory=dict)  # what was understood from the question
    answerer: str = "extractive"  # or "llm:<provider:model>" when a language model wrote it
    # Why the configured language model's answer was not used (this one is extractive).
    fallback_reason: str | None = None

    @property
    def note(self) -> str:
        """One line for the front doors when the language model did not answer, else ""."""
        reason = self.fallback_reason
        return f"Quoted from the articles, without the language model: {reason}." if reason else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"citations": [citation.to_dict() for citation in self.citations]}

    def to_markdown(self) -> str:
        blocks = [self.text] + ([f"_{self.note}_"] if self.note else [])
        if self.citations:
            blocks.append("**Closest evidence:**" if self.refused else "**Sources:**")
            blocks += [citation.to_markdown() for citation in self.citations]
        return "\n\n".join(blocks) + "\n"


@dataclass(frozen=True)
class Turn:
    """One exchange of a conversation, as the front doors keep it."""

    question: str
    answer: str
    standalone_question: str = ""


class StoreStats(TypedDict):
    """What `Bot.stats()` reports about the store (`newsbot stats --json` prints it)."""

    store: str  # the folder or server URL
    collection: str
    articles: int
    chunks: int
    embedding: dict[str, str | int] | None  # the model, dimension, backend, precision stored
