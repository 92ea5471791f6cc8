"""The ingest pipeline: articles -> chunks -> vectors -> store, incremental and crash-safe.

Chunks are written first, registry records last, so a killed run rerun ends as a clean run would;
reading, embedding and writing overlap. Why: docs/ingesting.md, "The ingest pipeline".
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from index.article import Article, Chunk, ReadFailure, StoredChunk, embed_text
from index.chunk import HEADER_FORMAT, chunk_article
from index.embed import Embedder, TokenCounter, TokenEmbedder
from index.store import Store

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

# Articles per store round-trip: few enough that a killed run loses little and progress moves.
ARTICLE_BATCH = 64
# Chunks the model is given at once: ready batches are pooled, so that it sorts chunks of many
# articles by length and pads little (one 64-article batch at a time cost 15% more model time).
EMBED_WINDOW = 256
# Batches waiting between the stages: enough to fill a window, few enough to bound memory.
QUEUE_DEPTH = 4


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int
    overlap_sentences: int
    max_model_tokens: int
    model: str

    def key(self) -> str:
        return (
            f"{self.model}|{self.max_model_tokens}|{self.chunk_tokens}|{self.overlap_sentences}"
            f"|header{HEADER_FORMAT}"
        )


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
        counts = ("new", "updated", "unchanged", "duplicates", "failed", "chunks")
        return {
            **{name: getattr(self, name) for name in counts},
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


def chunk_metadata(
    article: Article, chunk: Chunk, n_chunks: int, sources: list[str], fp: str = ""
) -> dict:
    meta: dict[str, Any] = {
        "article_id": article.id,
        "fingerprint": fp,  # a reader shows a chunk only if the registry has this fingerprint
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


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclass
class _Batch:
    """One batch of articles, planned against the store: what to embed, write and record."""

    failures: list[ReadFailure] = field(default_factory=list)
    articles: int = 0  # readable articles, one per id
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    metadatas: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[list[int]] | None = None  # the chunks' embed texts as word-piece ids, if early
    vectors: Any = None
    leftovers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (kept, before)
    outlets: list[tuple[str, str]] = field(default_factory=list)  # (outlet, primary id)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: frozenset[tuple[str, str]] = frozenset()  # what committing it changes in the store


@dataclass
class _End:
    """The last item on a queue; `error` is what stopped the reading, if anything did."""

    error: BaseException | None = None


class _Stopped(Exception):
    """The run is being abandoned: the stage that sees this stops where it is."""


def _keys(
    articles: Iterable[Article],
    stored: Iterable[dict[str, Any]] = (),
    records: dict[str, dict[str, Any]] | None = None,
) -> frozenset[tuple[str, str]]:
    """The article ids and content hashes whose store entries depend on these articles, their
    records before (`stored`) and after (`records`) a batch."""
    keys = set()
    for article in articles:
        keys |= {("id", article.id), ("hash", article.content_hash)}
    for article_id, record in [*(("", r) for r in stored), *(records or {}).items()]:
        if article_id:
            keys.add(("id", article_id))
        keys.add(("hash", str(record.get("content_hash", ""))))
        if record.get("duplicate_of"):
            keys.add(("id", str(record["duplicate_of"])))
    return frozenset(keys)


def _chunks(window: list[_Batch | _End]) -> int:
    return sum(len(item.chunks) for item in window if isinstance(item, _Batch))


def _groups(batches: list[_Batch], last: bool) -> list[list[_Batch]]:
    """The model calls for one window: all at once (sorted by length), but the run's last batch
    alone, so that the writer writes the others meanwhile rather than with the model idle."""
    if last and len(batches) > 1:
        return [batches[:-1], batches[-1:]]
    return [batches]


class _Pipeline:
    """Three stages on bounded queues (reading and planning, embedding, writing in order); a
    batch touching what an earlier one has not yet written waits for it (docs/ingesting.md)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.read_all = threading.Event()  # every batch has been put on the queue
        self.error: BaseException | None = None  # the writer's
        self._held: dict[int, frozenset[tuple[str, str]]] = {}
        self._released = threading.Condition()

    def hold(self, batch: _Batch) -> None:
        with self._released:
            self._held[id(batch)] = batch.keys

    def release(self, batch: _Batch) -> None:
        with self._released:
            self._held.pop(id(batch), None)
            self._released.notify_all()

    def wait_for(self, keys: frozenset[tuple[str, str]]) -> None:
        """Return once no batch still to be written touches any of `keys`."""
        with self._released:
            while any(keys & held for held in self._held.values()):
                self._check()
                self._released.wait(0.1)

    def _check(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def put(self, channel: queue.Queue[Any], item: Any) -> None:
        while True:
            self._check()
            with contextlib.suppress(queue.Full):
                channel.put(item, timeout=0.1)
                return

    def get(self, channel: queue.Queue[Any]) -> Any:
        while True:
            self._check()
            with contextlib.suppress(queue.Empty):
                return channel.get(timeout=0.1)

    def fail(self, error: BaseException) -> None:  # the writer's: everything stops
        self.error = error
        self.stop.set()

    def join(self, writer: threading.Thread) -> None:
        while writer.is_alive():
            writer.join(0.1)
        if self.error is not None:
            raise self.error

    def abort(
        self, error: BaseException, writer: threading.Thread, embedded: queue.Queue[Any]
    ) -> None:
        """The embedding side failed: stop reading, let the writer finish what it was given."""
        self.stop.set()
        log.debug("ingest stopping: %r", error)
        while writer.is_alive():
            with contextlib.suppress(queue.Full):
                embedded.put(_End(), timeout=0.1)
                break
        while writer.is_alive():
            writer.join(0.1)


class Ingestor:
    """Writes articles into a store with one embedder; reusable across runs."""

    def __init__(
        self, store: Store, embedder: Embedder, counter: TokenCounter, config: ChunkingConfig
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.counter = counter
        self.config = config
        # The reading and writing threads take turns with the store.
        self._store_lock = threading.RLock()

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
        """Ingest `items` in three overlapping stages (see _Pipeline); `progress` is called from
        the writing thread, in batch order."""
        report = IngestReport()
        started = time.perf_counter()
        self.store.check_identity(self.embedder.identity)
        pipeline = _Pipeline()
        planned: queue.Queue[_Batch | _End] = queue.Queue(QUEUE_DEPTH)
        embedded: queue.Queue[_Batch | _End] = queue.Queue(QUEUE_DEPTH)
        producer = threading.Thread(
            target=self._produce, args=(iter(items), planned, pipeline), daemon=True
        )
        writer = threading.Thread(
            target=self._consume, args=(embedded, pipeline, report, progress, started), daemon=True
        )
        producer.name, writer.name = "newsbot-ingest-plan", "newsbot-ingest-write"
        producer.start()
        writer.start()
        try:
            end: _End | None = None
            while end is None:
                window = [pipeline.get(planned)]
                # More batches if they are ready, so the model sorts a larger pool by length.
                while not isinstance(window[-1], _End) and _chunks(window) < EMBED_WINDOW:
                    try:
                        window.append(planned.get_nowait())
                    except queue.Empty:
                        break
                batches = [item for item in window if isinstance(item, _Batch)]
                end = window[-1] if isinstance(window[-1], _End) else None
                last = end is not None or (pipeline.read_all.is_set() and planned.empty())
                for group in _groups(batches, last):
                    self._embed(group)
                    for batch in group:
                        pipeline.put(embedded, batch)
            pipeline.put(embedded, _End())
            pipeline.join(writer)
            if end.error is not None:
                raise end.error
        except BaseException as exc:
            # Whatever was embedded is still written, so a rerun has less to redo.
            pipeline.abort(exc, writer, embedded)
            if isinstance(exc, _Stopped) and pipeline.error is not None:
                raise pipeline.error from None
            raise
        finally:
            pipeline.stop.set()
            producer.join(timeout=1.0)
        report.seconds = time.perf_counter() - started
        return report

    def _embed(self, batches: list[_Batch]) -> None:
        """Embed the batches' chunks in one model call (from their word pieces if tokenized)."""
        if not any(batch.chunks for batch in batches):
            return
        if isinstance(self.embedder, TokenEmbedder):  # then _produce gave every batch its tokens
            vectors = self.embedder.embed_tokens([row for b in batches for row in b.tokens or []])
        else:
            vectors = self.embedder.embed([c.embed_text for b in batches for c in b.chunks])
        offset = 0
        for batch in batches:
            batch.vectors = vectors[offset : offset + len(batch.chunks)]
            offset += len(batch.chunks)

    # -- stage 1: read, plan against the store, chunk ------------------------------------------
    def _produce(
        self,
        items: Iterator[Article | ReadFailure],
        planned: queue.Queue[_Batch | _End],
        pipeline: _Pipeline,
    ) -> None:
        end = _End()
        try:
            for group in _batched(items, ARTICLE_BATCH):
                batch = _Batch()
                articles: dict[str, Article] = {}
                for item in group:
                    if isinstance(item, ReadFailure):
                        batch.failures.append(item)
                    elif not item.body.strip():
                        batch.failures.append(
                            ReadFailure(item.origin or item.id, "article has no text")
                        )
                    else:
                        articles[item.id] = item  # a later copy of the same id wins
                # What an earlier batch still being written changes, this one must read after.
                pipeline.wait_for(_keys(articles.values()))
                self._plan(batch, list(articles.values()))
                # Tokenized here, so that the model's thread only runs the model.
                if batch.chunks and isinstance(self.embedder, TokenEmbedder):
                    batch.tokens = self.embedder.tokenize([c.embed_text for c in batch.chunks])
                pipeline.hold(batch)
                pipeline.put(planned, batch)
        except _Stopped:
            return
        except BaseException as exc:
            end.error = exc
        pipeline.read_all.set()
        with contextlib.suppress(_Stopped):
            pipeline.put(planned, end)

    def _plan(self, batch: _Batch, articles: list[Article]) -> None:
        batch.articles = len(articles)
        fingerprints = {a.id: fingerprint(a, self.config) for a in articles}
        lexical = self.store.lexical
        with self._store_lock:
            stored = lexical.articles(list(fingerprints))
            changed = [
                a for a in articles if stored.get(a.id, {}).get("fingerprint") != fingerprints[a.id]
            ]
            batch.unchanged = len(articles) - len(changed)
            if not changed:
                return
            primaries_by_hash = lexical.articles_by_hash([a.content_hash for a in changed])
            to_embed: list[Article] = []
            duplicates: list[tuple[Article, str]] = []
            for article in changed:
                primary = primaries_by_hash.setdefault(article.content_hash, article.id)
                if primary == article.id:
                    to_embed.append(article)
                else:
                    duplicates.append((article, primary))
            # A stored story that became a copy of another hands its own copies on to that one.
            demoted = {
                a.id: p for a, p in duplicates if stored.get(a.id, {}).get("duplicate_of") == ""
            }
            copies = lexical.duplicates_of([a.id for a in to_embed])
            moved = rehomed_copies(
                demoted, lexical.duplicates_of(list(demoted)), {a.id for a in changed}
            )

        chunks_by_article = {a.id: self.chunk(a) for a in to_embed}
        for article in to_embed:
            chunks = chunks_by_article[article.id]
            sources = _unique([article.source, *(c["source"] for c in copies.get(article.id, []))])
            fp = fingerprints[article.id]
            batch.chunks += chunks
            batch.metadatas += [
                chunk_metadata(article, c, len(chunks), sources, fp) for c in chunks
            ]
        # An update may leave fewer chunks; a story that became a copy of another keeps none.
        keep = {a.id: len(chunks_by_article[a.id]) for a in to_embed}
        keep.update({article.id: 0 for article, _ in duplicates})
        for article_id, kept in keep.items():
            previous = stored.get(article_id)
            before = 0 if previous is None or previous.get("duplicate_of") else previous["n_chunks"]
            if int(before) > kept:
                batch.leftovers[article_id] = (kept, int(before))
        batch.outlets = [(a.source, p) for a, p in duplicates]
        batch.outlets += [(r["source"], r["duplicate_of"]) for r in moved.values()]
        records = {a.id: registry_record(a, fingerprints[a.id], keep[a.id]) for a in to_embed}
        for article, primary in duplicates:
            records[article.id] = registry_record(article, fingerprints[article.id], 0, primary)
        records.update(moved)
        batch.records = records
        for article in changed:
            if article.id in stored:
                batch.updated += 1
            elif records[article.id]["duplicate_of"]:
                batch.duplicates += 1
            else:
                batch.new += 1
        batch.keys = _keys(articles, stored.values(), records)

    # -- stage 3: write, in batch order --------------------------------------------------------
    def _consume(
        self,
        embedded: queue.Queue[_Batch | _End],
        pipeline: _Pipeline,
        report: IngestReport,
        progress: ProgressCallback | None,
        started: float,
    ) -> None:
        done = 0
        try:
            while not isinstance(batch := embedded.get(), _End):
                for failure in batch.failures:
                    report.failures.append(failure)
                    if progress:
                        progress(Progress(done, report.chunks, failure=failure))
                if batch.records:
                    self._commit(batch)
                pipeline.release(batch)
                report.new += batch.new
                report.updated += batch.updated
                report.unchanged += batch.unchanged
                report.duplicates += batch.duplicates
                report.chunks += len(batch.chunks)
                done += batch.articles
                report.seconds = time.perf_counter() - started
                if progress:
                    progress(Progress(done, report.chunks))
        except BaseException as exc:
            pipeline.fail(exc)

    def _commit(self, batch: _Batch) -> None:
        """Chunks first, then leftovers and outlets, then the log entry and the lexical index
        with the registry records (index/store.py): the crash-safe order."""
        with self._store_lock:
            if batch.chunks:
                ids, texts = [c.id for c in batch.chunks], [c.text for c in batch.chunks]
                self.store.upsert_chunks(ids, texts, batch.vectors, batch.metadatas)
            removed = []
            for article_id, (kept, before) in batch.leftovers.items():
                removed += [f"{article_id}#{position}" for position in range(kept, before)]
                self.store.delete_chunks_from(article_id, kept)
            # Chunks whose outlets changed are read back from Chroma; the others are at hand.
            changed = set(self._add_sources(batch.outlets))
            written = [
                StoredChunk(chunk.id, chunk.text, metadata)
                for chunk, metadata in zip(batch.chunks, batch.metadatas, strict=True)
                if chunk.id not in changed
            ]
            self.store.commit(batch.records, written, changed=sorted(changed), removed=removed)

    def reindex(self, progress: ProgressCallback | None = None, page: int = 512) -> int:
        """Re-embed every stored chunk in place, from its stored text and context header.

        The collection is marked meanwhile: a store left half-way is refused until a rerun ends.
        """
        self.store.set_identity(None, reindexing=True)
        done = 0
        for chunks in _batched(self.store.iter_chunks(), page):
            self.store.update_vectors([chunk.id for chunk in chunks], self.embed_stored(chunks))
            done += len(chunks)
            if progress:
                progress(Progress(done, done))
        self.store.set_identity(self.embedder.identity, reindexing=False)
        if progress:
            progress(Progress(done, done))
        return done

    def embed_stored(self, chunks: Sequence[StoredChunk]) -> np.ndarray:
        """The vectors of stored chunks, from their texts and context headers."""
        return self.embedder.embed(
            [embed_text(str(chunk.metadata.get("context", "")), chunk.text) for chunk in chunks]
        )

    def _add_sources(self, outlets: list[tuple[str, str]]) -> list[str]:
        """Record each copy's outlet (outlet, primary id) on its primary's chunks (written
        earlier or in this batch); returns the ids of the chunks changed."""
        changed: list[str] = []
        by_primary: dict[str, list[str]] = {}
        for outlet, primary in outlets:
            by_primary.setdefault(primary, []).append(outlet)
        for primary, new_sources in by_primary.items():
            chunks = self.store.get_chunks([f"{primary}#0"])
            current = chunks[0].metadata.get("sources", []) if chunks else []
            merged = _unique([*current, *new_sources])
            if merged != current:
                changed += self.store.update_chunk_metadata(primary, {"sources": merged})
        return changed


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))
