"""The ingest pipeline: articles -> chunks -> vectors -> store, incremental and crash-safe.

Per batch of articles: chunk (pure), skip what the registry already holds with the same
fingerprint, store byte-identical stories once (every outlet kept in `sources`), embed the rest,
upsert their chunks under deterministic ids, delete chunks an update left over, and only then
write the registry records. A run killed anywhere and run again ends with the chunks of a clean run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from index.article import Article, Chunk, ReadFailure, embed_text
from index.chunk import chunk_article
from index.embed import Embedder, TokenCounter
from index.store import Store

log = logging.getLogger(__name__)

# Articles handled per store round-trip: large enough to batch the model well, small enough that
# a killed run loses little work and progress moves.
ARTICLE_BATCH = 64


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int
    overlap_sentences: int
    max_model_tokens: int
    model: str

    def key(self) -> str:
        return f"{self.model}|{self.max_model_tokens}|{self.chunk_tokens}|{self.overlap_sentences}"


@dataclass
class IngestReport:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    chunks: int = 0  # chunks embedded and written in this run
    seconds: float = 0.0
    failures: list[ReadFailure] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def articles(self) -> int:
        return self.new + self.updated + self.unchanged + self.duplicates

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 1),
            "failures": [str(failure) for failure in self.failures],
        }


@dataclass(frozen=True)
class Progress:
    """Reported after every batch; `failure` is set when an item could not be read."""

    articles_done: int
    chunks_written: int
    failure: ReadFailure | None = None


ProgressCallback = Callable[[Progress], None]


def fingerprint(article: Article, config: ChunkingConfig) -> str:
    """Changes when anything that ends up in the store would change."""
    parts = [
        article.content_hash,
        article.title,
        article.source,
        article.url,
        article.author,
        article.published_at.isoformat() if article.published_at else "",
        config.key(),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def chunk_metadata(article: Article, chunk: Chunk, n_chunks: int, sources: list[str]) -> dict:
    meta: dict[str, Any] = {
        "article_id": article.id,
        "title": article.title,
        "source": article.source,
        "url": article.url,
        "author": article.author,
        "published_at": article.published_at.isoformat() if article.published_at else "",
        "position": chunk.position,
        "chunk_start": chunk.start,
        "chunk_end": chunk.end,
        "n_chunks": n_chunks,
        "content_hash": article.content_hash,
        "context": chunk.header,  # kept so `newsbot reindex` can re-embed without the source
    }
    if article.published_at is not None:
        meta["published_ts"] = int(article.published_at.timestamp())
    if sources:
        meta["sources"] = sources
    return meta


def registry_record(
    article: Article, fp: str, n_chunks: int, duplicate_of: str = ""
) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "content_hash": article.content_hash,
        "n_chunks": n_chunks,
        "duplicate_of": duplicate_of,
        "title": article.title,
        "source": article.source,
        "url": article.url,
        "published_at": article.published_at.isoformat() if article.published_at else "",
        "origin": article.origin,
    }


def rehomed_copies(
    demoted: dict[str, str],
    copies: dict[str, list[dict[str, Any]]],
    rewritten: Collection[str],
) -> dict[str, dict[str, Any]]:
    """Registry records for the copies of stories that became copies themselves (`demoted`: old
    primary -> new primary; `copies`: as `Store.duplicates_of` gives them), pointed at the story
    now stored, so its outlets list them and its later updates keep them. Articles in
    `rewritten` get records of their own in this batch and are left alone."""
    records: dict[str, dict[str, Any]] = {}
    for old_primary, new_primary in demoted.items():
        for copy in copies.get(old_primary, []):
            copy_id = str(copy["article_id"])
            if copy_id not in rewritten:
                record = {key: value for key, value in copy.items() if key != "article_id"}
                records[copy_id] = {**record, "duplicate_of": new_primary}
    return records


def _batched(items: Iterable[Article | ReadFailure], size: int) -> Iterator[list]:
    batch: list[Article | ReadFailure] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Ingestor:
    """Writes articles into a store with one embedder; reusable across runs."""

    def __init__(
        self, store: Store, embedder: Embedder, counter: TokenCounter, config: ChunkingConfig
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.counter = counter
        self.config = config
        # Called with the chunk ids written or deleted, so an in-memory index can follow.
        self.listeners: list[Callable[[list[str], list[str]], None]] = []

    def chunk(self, article: Article) -> list[Chunk]:
        return chunk_article(
            article,
            count_tokens=self.counter,
            max_model_tokens=self.config.max_model_tokens,
            chunk_tokens=self.config.chunk_tokens,
            overlap_sentences=self.config.overlap_sentences,
        )

    def run(
        self,
        items: Iterable[Article | ReadFailure],
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        report = IngestReport()
        started = time.perf_counter()
        done = 0
        self.store.check_identity(self.embedder.identity)
        for batch in _batched(items, ARTICLE_BATCH):
            articles: dict[str, Article] = {}
            for item in batch:
                if isinstance(item, ReadFailure):
                    report.failures.append(item)
                    if progress:
                        progress(Progress(done, report.chunks, failure=item))
                elif not item.body.strip():
                    failure = ReadFailure(item.origin or item.id, "article has no text")
                    report.failures.append(failure)
                    if progress:
                        progress(Progress(done, report.chunks, failure=failure))
                else:
                    articles[item.id] = item  # a later copy of the same id wins
            self._write_batch(list(articles.values()), report)
            done += len(articles)
            report.seconds = time.perf_counter() - started
            if progress:
                progress(Progress(done, report.chunks))
        report.seconds = time.perf_counter() - started
        return report

    def _write_batch(self, articles: list[Article], report: IngestReport) -> None:
        if not articles:
            return
        stored = self.store.articles([a.id for a in articles])
        fingerprints = {a.id: fingerprint(a, self.config) for a in articles}
        changed = []
        for article in articles:
            if stored.get(article.id, {}).get("fingerprint") == fingerprints[article.id]:
                report.unchanged += 1
            else:
                changed.append(article)
        if not changed:
            return

        primaries_by_hash = self.store.articles_by_hash([a.content_hash for a in changed])
        to_embed: list[Article] = []
        duplicates: list[tuple[Article, str]] = []
        for article in changed:
            primary = primaries_by_hash.setdefault(article.content_hash, article.id)
            if primary == article.id:
                to_embed.append(article)
            else:
                duplicates.append((article, primary))

        chunks_by_article = {a.id: self.chunk(a) for a in to_embed}
        copies = self.store.duplicates_of([a.id for a in to_embed])
        ids, texts, embed_texts, metadatas = [], [], [], []
        for article in to_embed:
            chunks = chunks_by_article[article.id]
            sources = _unique([article.source, *(c["source"] for c in copies.get(article.id, []))])
            for chunk in chunks:
                ids.append(chunk.id)
                texts.append(chunk.text)
                embed_texts.append(chunk.embed_text)
                metadatas.append(chunk_metadata(article, chunk, len(chunks), sources))
        if ids:
            vectors = self.embedder.embed(embed_texts)
            self.store.upsert_chunks(ids, texts, vectors, metadatas)
        removed: list[str] = []
        # An update may leave fewer chunks; a story that became a copy of another keeps none.
        keep = {a.id: len(chunks_by_article[a.id]) for a in to_embed}
        keep.update({article.id: 0 for article, _ in duplicates})
        for article_id, kept in keep.items():
            previous = stored.get(article_id)
            before = 0 if previous is None or previous.get("duplicate_of") else previous["n_chunks"]
            if int(before) > kept:
                removed += [f"{article_id}#{i}" for i in range(kept, int(before))]
                self.store.delete_chunks_from(article_id, kept)
        # A stored story that became a copy of another hands its own copies on to that one.
        demoted = {a.id: p for a, p in duplicates if stored.get(a.id, {}).get("duplicate_of") == ""}
        moved = rehomed_copies(
            demoted, self.store.duplicates_of(list(demoted)), {a.id for a in changed}
        )
        outlets = [(a.source, p) for a, p in duplicates]
        outlets += [(r["source"], r["duplicate_of"]) for r in moved.values()]
        self._add_sources(outlets, to_embed)

        records = {a.id: registry_record(a, fingerprints[a.id], keep[a.id]) for a in to_embed}
        for article, primary in duplicates:
            records[article.id] = registry_record(article, fingerprints[article.id], 0, primary)
        records.update(moved)
        self.store.put_articles(records)
        self.store.written()

        for article in changed:
            if article.id in stored:
                report.updated += 1
            elif records[article.id]["duplicate_of"]:
                report.duplicates += 1
            else:
                report.new += 1
        report.chunks += len(ids)
        for listener in self.listeners:
            listener(ids, removed)

    def reindex(self, progress: ProgressCallback | None = None, page: int = 512) -> int:
        """Re-embed every stored chunk with this ingestor's embedder, in place.

        Sources are not re-read: the text the model sees is rebuilt from the stored chunk text
        and the context header stored beside it. The collection is marked while this runs, so
        a store left half-way is refused until a rerun finishes the job.
        """
        self.store.set_identity(None, reindexing=True)
        done = 0
        ids: list[str] = []
        texts: list[str] = []
        for chunk in self.store.iter_chunks():
            ids.append(chunk.id)
            texts.append(embed_text(str(chunk.metadata.get("context", "")), chunk.text))
            if len(ids) >= page:
                self.store.update_vectors(ids, self.embedder.embed(texts))
                done += len(ids)
                ids, texts = [], []
                if progress:
                    progress(Progress(done, done))
        if ids:
            self.store.update_vectors(ids, self.embedder.embed(texts))
            done += len(ids)
        self.store.set_identity(self.embedder.identity, reindexing=False)
        self.store.written()
        if progress:
            progress(Progress(done, done))
        return done

    def _add_sources(
        self,
        outlets: list[tuple[str, str]],
        just_written: list[Article],
    ) -> None:
        """Record each copy's outlet (outlet, primary id) on its primary's chunks (written
        earlier or in this batch)."""
        if not outlets:
            return
        written = {a.id: a for a in just_written}
        by_primary: dict[str, list[str]] = {}
        for outlet, primary in outlets:
            by_primary.setdefault(primary, []).append(outlet)
        for primary, new_sources in by_primary.items():
            chunks = self.store.get_chunks([f"{primary}#0"])
            current = chunks[0].metadata.get("sources", []) if chunks else []
            if primary in written and not current:
                current = [written[primary].source]
            merged = _unique([*current, *new_sources])
            if merged != current:
                self.store.update_chunk_metadata(primary, {"sources": merged})


def _unique(values: Iterable[str]) -> list[str]:
    return [value for value in dict.fromkeys(v for v in values if v)]
