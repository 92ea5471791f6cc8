"""Retrieval: dense (Chroma) search with date filters, as a LangChain BaseRetriever.

`Retriever.search()` is the typed entry point the core uses; `as_langchain()` wraps it for chains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from index.embed import Embedder
    from index.store import Store

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: verbatim text of an article body at [chunk_start, chunk_end)."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused rank score: higher is better
    dense_score: float | None = None  # cosine similarity, when dense search found it
    lexical_score: float | None = None

    @property
    def article_id(self) -> str:
        return str(self.metadata.get("article_id", ""))

    @property
    def start(self) -> int:
        return int(self.metadata.get("chunk_start", 0))

    @property
    def published_at(self) -> datetime | None:
        value = self.metadata.get("published_at")
        return datetime.fromisoformat(value) if value else None


@dataclass
class Query:
    """A question as retrieval sees it, with what was understood from it."""

    text: str
    since: datetime | None = None
    until: datetime | None = None
    filters: dict[str, Any] = field(default_factory=dict)


def date_filter(since: datetime | None, until: datetime | None) -> dict[str, Any] | None:
    """A Chroma `where` on the integer `published_ts`; `until` is inclusive."""
    clauses: list[dict[str, Any]] = []
    if since is not None:
        clauses.append({"published_ts": {"$gte": int(since.timestamp())}})
    if until is not None:
        clauses.append({"published_ts": {"$lte": int(until.timestamp())}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, *, mode: Mode = "hybrid") -> None:
        self.store = store
        self.embedder = embedder
        self.mode = mode

    def understand(
        self, question: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> Query:
        """The question as a Query: its text plus the filters it implies."""
        return Query(question, since=since, until=until)

    def search(self, query: Query, k: int) -> list[Passage]:
        vector = self.embedder.embed([query.text])[0]
        hits = self.store.query(vector.tolist(), k, where=date_filter(query.since, query.until))
        return [
            Passage(hit.id, hit.text, hit.metadata, score=hit.score, dense_score=hit.score)
            for hit in hits
        ]

    def on_store_change(self, written: list[str], removed: list[str]) -> None:
        """Called after ingest writes or deletes chunks (keeps in-memory indexes in step)."""

    def as_langchain(self, k: int) -> Any:
        """This retriever as a LangChain BaseRetriever returning Documents."""
        from langchain_core.callbacks import CallbackManagerForRetrieverRun
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever

        retriever = self

        class NewsRetriever(BaseRetriever):
            def _get_relevant_documents(
                self, query: str, *, run_manager: CallbackManagerForRetrieverRun
            ) -> list[Document]:
                return [
                    Document(page_content=p.text, metadata={**p.metadata, "score": p.score})
                    for p in retriever.search(Query(query), k)
                ]

        return NewsRetriever()
