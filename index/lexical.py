"""The lexical (BM25) index and the article registry: one tantivy index on local disk, derived
from Chroma (chunks and the store's log) and always rebuildable from it. Documents of kind
`chunk` (analysed terms, outlets, time, day; no text), `article` (registry records, committed
with their chunks) and `state` (the last log entry applied). Why tantivy, and how it is kept in
step: docs/store.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from index.article import StoredChunk

log = logging.getLogger(__name__)

Analyse = Callable[[str], list[str]]
# Memory the writer may buffer before it writes a segment (tantivy's floor is 15 MB a thread).
WRITER_HEAP = 32_000_000
# Outlets listed at most (a question names one of these to be recognised as naming an outlet).
MAX_OUTLETS = 10_000
# Figures kept per commit seen (the index's outlets, days and counts, and scopes' counts).
CACHED = 1000
# A scope of fewer days than this filters by its days as terms, a longer one by a range.
DAYS_AS_TERMS = 64
# Values (outlets, days, ids) up to this many are looked up one term query each, more by a term
# set query: the cheaper way for each count (docs/store.md, "Querying and writing tantivy").
TERMS_ONE_BY_ONE = 256


@dataclass(frozen=True)
class LexicalFilter:
    """Which chunks a search may return: outlets (any of), local publication days (proleptic
    ordinals, inclusive) and UTC seconds (inclusive)."""

    sources: tuple[str, ...] = ()
    first_day: int | None = None
    last_day: int | None = None
    since_ts: int | None = None
    until_ts: int | None = None


def _local_day(metadata: dict[str, Any]) -> int | None:
    """Proleptic ordinal of the day the article was published, in its own time zone."""
    try:
        return datetime.fromisoformat(str(metadata["published_at"])).date().toordinal()
    except (KeyError, ValueError):  # no date
        return None


def _any_of(schema: Any, field: str, values: Sequence[Any]) -> Any:
    """Documents holding any of the values in the field, each scoring 1 as in a term set query
    (the same documents, in the same order, whichever way they are looked up)."""
    import tantivy

    if len(values) > TERMS_ONE_BY_ONE:
        return tantivy.Query.term_set_query(schema, field, list(values))
    should = tantivy.Occur.Should
    terms = [(should, tantivy.Query.term_query(schema, field, value)) for value in values]
    return tantivy.Query.const_score_query(tantivy.Query.boolean_query(terms), 1.0)


def _all_of(queries: Iterable[Any]) -> Any:
    import tantivy

    return tantivy.Query.boolean_query([(tantivy.Occur.Must, query) for query in queries])


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", tokenizer_name="raw")  # kind:id, unique per document
    builder.add_text_field("kind", tokenizer_name="raw")
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("article", stored=True, tokenizer_name="raw")
    builder.add_text_field("terms", tokenizer_name="whitespace", index_option="freq")
    builder.add_text_field("source", fast=True, tokenizer_name="raw")
    builder.add_integer_field("published_ts", indexed=True, fast=True)
    builder.add_integer_field("day", indexed=True, fast=True)
    builder.add_text_field("content_hash", tokenizer_name="raw")
    builder.add_text_field("duplicate_of", tokenizer_name="raw")
    builder.add_text_field("record", stored=True, tokenizer_name="raw", index_option="basic")
    return builder.build()


class LexicalIndex:
    """BM25 search over chunks and the article registry, in a tantivy index at `path`. Reading
    needs no lock; `writer()` takes a file lock beside the index, so writers in every process
    take turns. `analyse` makes index terms (the same function must analyse questions)."""

    def __init__(self, path: Path, analyse: Analyse) -> None:
        self.path = path
        self._analyse = analyse
        self._index: Any = None
        self._opening = threading.Lock()
        self._cache: dict[str, Any] = {}  # per searcher generation: outlets, day range, counts
        self._cache_generation: Any = None

    @property
    def index(self) -> Any:
        if self._index is None:
            with self._opening:
                if self._index is None:
                    self._index = self._open()
        return self._index

    def _open(self) -> Any:
        import tantivy

        self.path.mkdir(parents=True, exist_ok=True)
        try:
            index = tantivy.Index(_schema(), path=str(self.path), reuse=True)
        except ValueError as exc:  # another schema (an older newsbot) or a damaged index
            log.warning(
                "lexical index %s unusable (%s); it is rebuilt from the store", self.path, exc
            )
            with self._locked():
                shutil.rmtree(self.path, ignore_errors=True)
                self.path.mkdir(parents=True, exist_ok=True)
                index = tantivy.Index(_schema(), path=str(self.path), reuse=False)
        # Other processes' commits are seen at `reload()` only, which the store's catch-up calls
        # after it marks Chroma for reload (docs/store.md, "A long-running reader").
        index.config_reader(reload_policy="Manual")
        return index

    def reload(self) -> None:
        """See the latest commit (of any process)."""
        self.index.reload()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            yield

    def search(
        self, terms: Sequence[str], n: int, where: LexicalFilter | None = None
    ) -> list[tuple[str, str, float]]:
        """The n best chunks for the terms (a term repeated counts again): (chunk id, article
        id, BM25 score), best first, equal scores by chunk id (tantivy orders them by segment
        and document, which vary from one build or merge of an index to the next)."""
        import tantivy

        if not terms or n <= 0:
            return []
        schema = self.index.schema
        should = tantivy.Occur.Should
        query = tantivy.Query.boolean_query(
            [(should, tantivy.Query.term_query(schema, "terms", term)) for term in terms]
        )
        filters = self._filters(where or LexicalFilter())
        if filters:
            query = _all_of([query, *(tantivy.Query.const_score_query(f, 0.0) for f in filters)])
        searcher = self.index.searcher()
        # Past the n-th hit until the score falls below it (every tie is in); 2n at first, since
        # each search scores every match again (1M chunks: 10 ms for a word in all; top 60 = 31).
        limit = 2 * n
        while True:
            found = searcher.search(query, limit, count=False).hits
            if len(found) < limit or found[-1][0] < found[n - 1][0]:
                break
            limit *= 2
        floor = found[n - 1][0] if len(found) > n else float("-inf")
        docs = [(searcher.doc(address), score) for score, address in found if score >= floor]
        hits = [(doc.get_first("id"), doc.get_first("article"), float(s)) for doc, s in docs]
        return sorted(hits, key=lambda hit: (-hit[2], hit[0]))[:n]

    def _chunks(self, where: LexicalFilter, among: Sequence[str] | None = None) -> Any:
        import tantivy

        schema = self.index.schema
        clauses = [tantivy.Query.term_query(schema, "kind", "chunk"), *self._filters(where)]
        if among is not None:
            clauses.append(_any_of(schema, "id", list(among)))
        return _all_of(clauses)

    def chunk_ids(self, where: LexicalFilter, among: Sequence[str] | None = None) -> list[str]:
        """Ids of the chunks the filter admits (of those `among`, when given)."""
        searcher = self.index.searcher()
        query = self._chunks(where, among)
        count = len(among) if among is not None else self.chunk_count(where)
        if not count:
            return []
        hits = searcher.search(query, count, count=False).hits
        return [searcher.doc(address).get_first("id") for _, address in hits]

    def _filters(self, where: LexicalFilter) -> list[Any]:
        import tantivy

        schema = self.index.schema
        filters = []
        if where.sources:
            filters.append(_any_of(schema, "source", list(where.sources)))
        first, last = where.first_day, where.last_day
        if first is not None and last is not None and last - first < DAYS_AS_TERMS:
            # A few days are looked up as terms (at 1M chunks 0.1 ms a day); a range query
            # walks the field's value of every document (17 ms at 1M, growing with the store).
            days = list(range(first, last + 1))
            filters.append(_any_of(schema, "day", days))
            first = last = None
        ranges = (("day", first, last), ("published_ts", where.since_ts, where.until_ts))
        for field, low, high in ranges:
            if low is not None or high is not None:
                low, high = -(2**62) if low is None else low, 2**62 if high is None else high
                integer = tantivy.FieldType.Integer
                filters.append(tantivy.Query.range_query(schema, field, integer, low, high))
        return filters

    def term_weights(self, terms: Iterable[str]) -> dict[str, float]:
        """term -> BM25 idf over the chunks, for the terms the index holds."""
        import math

        searcher = self.index.searcher()
        chunks = self.chunk_count()
        found = {term: searcher.doc_freq("terms", term) for term in dict.fromkeys(terms)}
        return {
            t: math.log(1.0 + (chunks - df + 0.5) / (df + 0.5)) for t, df in found.items() if df
        }

    def _cached(self, name: str, compute: Callable[[Any], Any]) -> Any:
        """A figure of the index (outlets, days, counts: they cost a pass over a fast field or
        postings), computed once per commit seen; at most CACHED values, whatever the index
        holds."""
        searcher = self.index.searcher()
        try:  # tantivy rewrites meta.json at every commit
            meta = (self.path / "meta.json").stat()
            generation: Any = (meta.st_mtime_ns, meta.st_size, searcher.num_docs)
        except OSError:
            generation = None
        if generation is None or generation != self._cache_generation or len(self._cache) > CACHED:
            self._cache, self._cache_generation = {}, generation
        cache = self._cache  # this generation's, even if another thread starts the next one
        if name not in cache:
            cache[name] = compute(searcher)
        return cache[name]

    def sources(self) -> list[str]:
        """Outlets that have chunks in the index."""
        import tantivy

        def compute(searcher: Any) -> list[str]:
            agg = {"outlets": {"terms": {"field": "source", "size": MAX_OUTLETS}}}
            result = searcher.aggregate(tantivy.Query.all_query(), agg)
            return [str(bucket["key"]) for bucket in result["outlets"]["buckets"]]

        return list(self._cached("sources", compute))

    def day_range(self) -> tuple[date, date] | None:
        """The first and last local publication days of the chunks."""
        import tantivy

        def compute(searcher: Any) -> tuple[date, date] | None:
            agg = {"low": {"min": {"field": "day"}}, "high": {"max": {"field": "day"}}}
            result = searcher.aggregate(tantivy.Query.all_query(), agg)
            low, high = result["low"]["value"], result["high"]["value"]
            if low is None or high is None:
                return None
            return date.fromordinal(int(low)), date.fromordinal(int(high))

        return self._cached("days", compute)  # type: ignore[no-any-return]

    def chunk_count(self, where: LexicalFilter | None = None) -> int:
        """Chunks in the index (that the filter admits), kept until the next commit as the
        index's own figures are (docs/store.md, "Querying and writing tantivy")."""

        def count(searcher: Any) -> int:
            return int(searcher.search(self._chunks(where or LexicalFilter()), 1).count)

        return int(self._cached(f"count:{where}", count))

    def article_count(self) -> int:
        import tantivy

        query = tantivy.Query.term_query(self.index.schema, "kind", "article")
        return int(self._cached("count:articles", lambda s: s.search(query, 1).count))

    def _records(self, field: str, values: Sequence[str], kind: str = "article") -> list[Any]:
        import tantivy

        values = list(dict.fromkeys(values))
        if not values:
            return []
        schema = self.index.schema
        query = _all_of(
            [tantivy.Query.term_query(schema, "kind", kind), _any_of(schema, field, values)]
        )
        searcher = self.index.searcher()
        # An id names one document of its kind: one search, without counting first.
        limit = len(values) if field == "id" else searcher.search(query, 1, count=True).count
        if not limit:
            return []
        hits = searcher.search(query, limit, count=False).hits
        return [searcher.doc(address) for _, address in hits]

    def articles(self, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Registry records of those articles that are completely stored."""
        return {
            doc.get_first("id"): json.loads(doc.get_first("record"))
            for doc in self._records("id", article_ids)
        }

    def articles_by_hash(self, content_hashes: Sequence[str]) -> dict[str, str]:
        """content hash -> id of the primary article stored with that body."""
        found = {}
        for doc in self._records("content_hash", content_hashes):
            record = json.loads(doc.get_first("record"))
            if not record.get("duplicate_of"):
                found[str(record["content_hash"])] = str(doc.get_first("id"))
        return found

    def duplicates_of(self, article_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """primary article id -> registry records of the stored copies of its story, each with
        the copy's own id under "article_id"."""
        found: dict[str, list[dict[str, Any]]] = {}
        for doc in self._records("duplicate_of", article_ids):
            record = {**json.loads(doc.get_first("record")), "article_id": doc.get_first("id")}
            found.setdefault(str(record["duplicate_of"]), []).append(record)
        return found

    def state(self) -> tuple[str, int]:
        """(log id, last entry applied) of the store log this index follows ("", 0: none)."""
        docs = self._records("id", ["state"], kind="state")
        if not docs:
            return "", 0
        state = json.loads(docs[0].get_first("record"))
        return str(state["log"]), int(state["seq"])

    @contextlib.contextmanager
    def writer(self) -> Iterator[_Writer]:
        """Exclusive writing: yields a _Writer; its changes are committed together at the end
        (and none of them if the block raises). Readers in every process see them after their
        next `reload()`; this process's reader is reloaded here."""
        with self._locked():
            self.reload()  # another process may have committed while this one waited
            writer = self.index.writer(WRITER_HEAP, 1)
            # What a writer killed inside its commit left would fail the next commit
            # (docs/store.md, "Querying and writing tantivy").
            writer.garbage_collect_files()
            try:
                yield _Writer(writer, self._analyse)
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()  # releases tantivy's own writer lock
            self.reload()


class _Writer:
    """Changes to the index, committed together (see LexicalIndex.writer)."""

    def __init__(self, writer: Any, analyse: Analyse) -> None:
        self._writer = writer
        self._analyse = analyse

    def _replacing(self, kind: str, doc_id: str) -> Any:
        """A new document of this kind and id; the one it replaces is deleted."""
        import tantivy

        key = f"{kind}:{doc_id}"
        self._writer.delete_documents_by_term("key", key)
        doc = tantivy.Document()
        doc.add_text("key", key)
        doc.add_text("kind", kind)
        doc.add_text("id", doc_id)
        return doc

    def put_chunks(self, chunks: Iterable[StoredChunk]) -> None:
        """Index chunks, replacing earlier versions with the same ids."""
        for chunk in chunks:
            meta = chunk.metadata
            doc = self._replacing("chunk", chunk.id)
            doc.add_text("article", str(meta.get("article_id", "")))
            heading = f"{meta.get('title', '')} {meta.get('source', '')}"
            doc.add_text("terms", " ".join([*self._analyse(heading), *self._analyse(chunk.text)]))
            for outlet in dict.fromkeys([meta.get("source"), *(meta.get("sources") or ())]):
                if outlet:
                    doc.add_text("source", str(outlet))
            if meta.get("published_ts") is not None:
                doc.add_integer("published_ts", int(meta["published_ts"]))
            if (day := _local_day(meta)) is not None:
                doc.add_integer("day", day)
            self._writer.add_document(doc)

    def remove_chunks(self, chunk_ids: Iterable[str]) -> None:
        for chunk_id in chunk_ids:
            self._writer.delete_documents_by_term("key", f"chunk:{chunk_id}")

    def put_articles(self, records: dict[str, dict[str, Any]]) -> None:
        """Write registry records (replacing earlier ones of the same articles)."""
        for article_id, record in records.items():
            doc = self._replacing("article", article_id)
            doc.add_text("content_hash", str(record.get("content_hash", "")))
            if record.get("duplicate_of"):
                doc.add_text("duplicate_of", str(record["duplicate_of"]))
            doc.add_text("record", json.dumps(record, sort_keys=True))
            self._writer.add_document(doc)

    def set_state(self, log_id: str, seq: int) -> None:
        doc = self._replacing("state", "state")
        doc.add_text("record", json.dumps({"log": log_id, "seq": seq}))
        self._writer.add_document(doc)

    def clear(self) -> None:
        """Delete every document (a reset store, or a log this index did not follow)."""
        self._writer.delete_all_documents()
