"""Retrieval: dense (Chroma, cosine) and lexical (BM25) search over the same chunks, fused by
reciprocal rank fusion, with the outlets, dates and parts a question names.

`Retriever.understand()` turns a question into a `Query` (what was understood is in
`Query.filters`, which the user sees); `Retriever.search()` returns the passages; `as_langchain()`
wraps both as a LangChain BaseRetriever.

How a search runs: the whole question is searched densely in Chroma (the caller's since/until
pushed down as a `where` on `published_ts`) and lexically with BM25, fused by reciprocal rank
fusion. Outlets and publication days the question names rank their articles first; dates of
events only boost. A question about several reports has parts (bot/understand.py), each searched
within its own outlet/days; every part gets its best article first, then the parts (as one list,
each chunk at its best rank in any part) fused with the whole question's list fill the remaining
places, preferring articles that cover question words not yet covered. One chunk per
article comes before any second one, and near-identical chunks are collapsed into one passage.

The in-memory index (BM25 postings, dates, outlets and each chunk's vector) is loaded on first
use from its snapshot on disk (bot/lexical_cache.py) when that matches the store, else built from
the store (and the snapshot written); it follows this process's ingests through
`on_store_change`, and is reloaded only when `Store.version` shows that another process wrote
(checked at most once a second). Dense
search within an outlet or day scope runs exactly over its vectors: Chroma's metadata filters cost
20-70 ms at 10k chunks, a masked matrix product well under 1 ms.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bot import lexical_cache
from bot.lexical_cache import StoreState
from bot.understand import Part, understand_question

if TYPE_CHECKING:
    from pathlib import Path

    from index.embed import Embedder
    from index.store import Store, StoredChunk, StoreVersion

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class RetrievalConfig:
    """Knobs of retrieval; defaults tuned on ../shared/eval with bench/retrieval_eval.py."""

    rrf_k: int = 60  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    pool: int = 30  # candidates each backend returns per probe (at least 3 * k)
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    near_weight: float = 1.0  # weight of the "published near a date the question names" vote
    latest_margin: float = 0.1  # "latest": cosine this close to the best counts as a tie
    part_weight: float = 1.0  # weight of each part's list against the whole question's
    part_rounds: int = 1  # turns each part gets before the fused list fills the rest
    coverage_weight: float = 0.5  # prefer articles covering question words not yet covered
    duplicate_overlap: float = 0.9  # word-set overlap (Jaccard) above which chunks are one
    first_article_chunks: int = 3  # chunks the best article may give a one-part question
    dated_part_votes: int = 1  # articles of a part pinned to publication days that vote in fusion
    check_interval: float = 1.0  # seconds between checks of the store's generation


# A day named in a question is a day where the article was published; Chroma filters on UTC
# seconds, so the window is widened by the largest UTC offsets and the day checked exactly after.
_EARLIEST_OFFSET = timedelta(hours=14)
_LATEST_OFFSET = timedelta(hours=12)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: verbatim text of an article body at [chunk_start, chunk_end)."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused rank score (reciprocal rank fusion): higher is better
    dense_score: float | None = None  # cosine similarity to the question (or to its part)
    lexical_score: float | None = None  # BM25 score, when the lexical index found it
    part: int | None = None  # index into Query.parts of the part this passage answers
    duplicates: tuple[str, ...] = ()  # article ids of near-identical chunks collapsed into this

    @property
    def article_id(self) -> str:
        return str(self.metadata.get("article_id", ""))

    @property
    def start(self) -> int:
        return int(self.metadata.get("chunk_start", 0))

    @property
    def end(self) -> int:
        return int(self.metadata.get("chunk_end", self.start + len(self.text)))

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def published_at(self) -> datetime | None:
        value = self.metadata.get("published_at")
        return datetime.fromisoformat(value) if value else None


@dataclass
class Query:
    """A question as retrieval sees it, with what was understood from it.

    `since`/`until` are the caller's hard limits. `sources`, `first`/`last` (publication days)
    come from the question and rank matching articles first; `near_first`/`near_last` only boost.
    A question about several reports has `parts`, each retrieved on its own.
    """

    text: str
    since: datetime | None = None
    until: datetime | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    first: date | None = None
    last: date | None = None
    near_first: date | None = None
    near_last: date | None = None
    parts: list[Part] = field(default_factory=list)
    latest: bool = False
    lexical_text: str | None = None  # the question without its dates, for BM25


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


# -- text analysis -----------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also s t""".split()
)
# Words questions use about reports rather than about their content.
QUESTION_WORDS = frozenset(
    """article articles report reports reported reporting according suggest suggests suggested
    mention mentions mentioned indicate indicates indicated discuss discusses discussed piece
    story stories news source sources published publish outlet coverage covered""".split()
)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light stemmer: plurals, -ing/-ed/-ation, a final -e, and -i/-ian name forms, so that
    Qatar/Qatari, negotiation/negotiations/negotiating and Egypt/Egyptian meet."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ation") and len(word) >= 8:
        word = word[:-5] + "ate"
    elif word.endswith("ing") and len(word) >= 7:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 6:
        word = _undouble(word[:-2])
    elif word.endswith("ian") and len(word) >= 8:
        word = word[:-3]
    elif word.endswith("i") and len(word) >= 5 and word[-2] not in "aeiou":
        word = word[:-1]
    if word.endswith("e") and len(word) >= 5:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouslz":
        return word[:-1]
    return word


def _words(text: str) -> Iterable[str]:
    text = text.lower()
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    for match in _TOKEN.finditer(text):
        word = match.group()
        if word.endswith(("'s", "’s")):
            word = word[:-2]
        yield word.replace("'", "").replace("’", "")


def terms(text: str) -> list[str]:
    """Index terms of a text: lower-cased, possessive 's dropped, stop words out, stemmed."""
    return [stem(word) for word in _words(text) if word and word not in STOPWORDS]


_QUESTION_STEMS = frozenset(stem(word) for word in QUESTION_WORDS)


def query_terms(text: str) -> list[str]:
    """Terms of a question, without the words questions use about reports."""
    return [term for term in terms(text) if term not in _QUESTION_STEMS]


def _text_hash(text: str) -> int:
    normal = " ".join(_words(text))
    return int.from_bytes(hashlib.blake2b(normal.encode(), digest_size=8).digest(), "little") >> 1


# -- the lexical index -------------------------------------------------------------------------


def _local_day(metadata: dict[str, Any]) -> int:
    """Proleptic ordinal of the day the article was published, in its own time zone (-1: none)."""
    value = metadata.get("published_at")
    if not value:
        return -1
    try:
        return datetime.fromisoformat(str(value)).date().toordinal()
    except ValueError:
        return -1


class _Growable:
    """A numpy array that grows by doubling along its first axis (slot-indexed columns)."""

    def __init__(self, dtype: Any, fill: Any, width: int | None = None) -> None:
        self.fill = fill
        self.data = np.full((1024,) if width is None else (1024, width), fill, dtype=dtype)

    def set(self, slot: int, value: Any) -> None:
        if slot >= len(self.data):
            self.resize(max(slot + 1, 2 * len(self.data)), len(self.data))
        self.data[slot] = value

    def resize(self, capacity: int, keep: int) -> None:
        bigger = np.full((capacity, *self.data.shape[1:]), self.fill, dtype=self.data.dtype)
        bigger[:keep] = self.data[:keep]
        self.data = bigger


@dataclass(frozen=True)
class Scope:
    """Which chunks a probe may return: outlets, publication days (local), UTC time bounds."""

    sources: tuple[str, ...] = ()
    first: date | None = None
    last: date | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return not (self.sources or self.first or self.last or self.since or self.until)

    def where(self) -> dict[str, Any] | None:
        """Chroma `where`: outlets, and a UTC window a little wider than the days."""
        clauses: list[dict[str, Any]] = []
        if self.sources:
            names = list(self.sources)
            clauses.append(
                {
                    "$or": [
                        {"source": {"$in": names}},
                        *({"sources": {"$contains": name}} for name in names),
                    ]
                }
            )
        low, high = self._bounds()
        if low is not None:
            clauses.append({"published_ts": {"$gte": math.floor(low)}})
        if high is not None:
            clauses.append({"published_ts": {"$lte": math.ceil(high)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def _bounds(self) -> tuple[float | None, float | None]:
        lows: list[float] = []
        highs: list[float] = []
        if self.since is not None:
            lows.append(self.since.timestamp())
        if self.until is not None:
            highs.append(self.until.timestamp())
        if self.first is not None:
            start = datetime.combine(self.first, datetime.min.time(), UTC)
            lows.append((start - _EARLIEST_OFFSET).timestamp())
        if self.last is not None:
            end = datetime.combine(self.last + timedelta(days=1), datetime.min.time(), UTC)
            highs.append((end + _LATEST_OFFSET).timestamp())
        return (max(lows) if lows else None, min(highs) if highs else None)

    def admits(self, metadata: dict[str, Any]) -> bool:
        """The exact check, on a chunk's metadata."""
        if self.sources:
            outlets = {str(metadata.get("source", "")), *(metadata.get("sources") or ())}
            if not outlets & set(self.sources):
                return False
        if self.first is not None or self.last is not None:
            day = _local_day(metadata)
            if day < 0:
                return False
            if self.first is not None and day < self.first.toordinal():
                return False
            if self.last is not None and day > self.last.toordinal():
                return False
        if self.since is not None or self.until is not None:
            ts = metadata.get("published_ts")
            if ts is None:
                return False
            if self.since is not None and ts < self.since.timestamp():
                return False
            if self.until is not None and ts > self.until.timestamp():
                return False
        return True

    def with_days(self, first: date | None, last: date | None) -> Scope:
        return replace(self, first=first, last=last)

    def narrowed(self, sources: Sequence[str], first: date | None, last: date | None) -> Scope:
        """This scope further limited to outlets and days (intersecting day ranges)."""
        new_first = max(d for d in (self.first, first) if d) if (self.first or first) else None
        new_last = min(d for d in (self.last, last) if d) if (self.last or last) else None
        new_sources = tuple(sources) or self.sources
        if sources and self.sources:
            new_sources = tuple(s for s in sources if s in self.sources) or tuple(sources)
        return replace(self, sources=new_sources, first=new_first, last=new_last)


class LexicalIndex:
    """BM25 over title + source + chunk text, kept in memory, updated chunk by chunk.

    Postings are compact int arrays per term; removed chunks leave dead slots that are skipped and
    compacted away once they outnumber the live ones.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._slot_of: dict[str, int] = {}
        self._chunk_ids: list[str | None] = []
        self._article_ids: list[str] = []
        # term ids, counts (lists, or bot/lexical_cache.RaggedPairs when loaded from a snapshot)
        self._doc_terms: MutableSequence[tuple[array, array] | None] = []
        # (text, metadata) per slot (or lexical_cache.RaggedDocuments), for the passages shown
        self._documents: MutableSequence[tuple[str, dict[str, Any]] | None] = []
        self._text_hash: list[int] = []
        self._vocab: dict[str, int] = {}
        self._df: list[int] = []
        self._postings: MutableSequence[tuple[array, array]] = []  # term id -> (slots, counts)
        self._length = _Growable(np.float32, 0.0)
        self._ts = _Growable(np.float64, np.nan)
        self._day = _Growable(np.int32, -1)
        self._source = _Growable(np.int32, -1)
        self._live = _Growable(np.bool_, False)
        self._has_vector = _Growable(np.bool_, False)
        self._vectors: _Growable | None = None  # unit vectors, for dense search within a scope
        self._extra_sources: dict[int, tuple[int, ...]] = {}
        self._source_code: dict[str, int] = {}
        self._source_names: list[str] = []
        self._source_chunks: Counter[int] = Counter()
        self._total_length = 0.0
        self.live = 0

    def __len__(self) -> int:
        return self.live

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self._slot_of

    # -- writing -----------------------------------------------------------------------------
    def add(self, chunk: StoredChunk) -> None:
        """Index a chunk (replacing an earlier version with the same id)."""
        if chunk.id in self._slot_of:
            self.remove(chunk.id)
        meta = chunk.metadata
        words = terms(" ".join((str(meta.get("title", "")), str(meta.get("source", "")))))
        words += terms(chunk.text)
        counts = Counter(words)
        slot = len(self._chunk_ids)
        term_ids = array("i")
        term_counts = array("i")
        for term, count in counts.items():
            term_id = self._vocab.get(term)
            if term_id is None:
                term_id = self._vocab[term] = len(self._df)
                self._df.append(0)
                self._postings.append((array("i"), array("i")))
            self._df[term_id] += 1
            slots, tfs = self._postings[term_id]
            slots.append(slot)
            tfs.append(count)
            term_ids.append(term_id)
            term_counts.append(count)
        self._slot_of[chunk.id] = slot
        self._chunk_ids.append(chunk.id)
        self._article_ids.append(str(meta.get("article_id", "")))
        self._doc_terms.append((term_ids, term_counts))
        self._documents.append((chunk.text, meta))
        self._text_hash.append(_text_hash(chunk.text))
        self._length.set(slot, float(len(words)))
        ts = meta.get("published_ts")
        self._ts.set(slot, float(ts) if ts is not None else np.nan)
        self._day.set(slot, _local_day(meta))
        source = str(meta.get("source", ""))
        code = self._code(source)
        self._source.set(slot, code)
        extra = tuple(self._code(str(s)) for s in (meta.get("sources") or ()) if s != source)
        if extra:
            self._extra_sources[slot] = extra
        for c in {code, *extra}:
            self._source_chunks[c] += 1
        self._live.set(slot, True)
        self._has_vector.set(slot, False)
        if chunk.vector is not None:
            vector = np.asarray(chunk.vector, dtype=np.float32)
            norm = float(np.linalg.norm(vector))
            if self._vectors is None:
                self._vectors = _Growable(np.float32, 0.0, width=len(vector))
            if norm > 0 and len(vector) == self._vectors.data.shape[1]:
                self._vectors.set(slot, vector / norm)
                self._has_vector.set(slot, True)
        self._total_length += len(words)
        self.live += 1

    def _code(self, source: str) -> int:
        code = self._source_code.get(source)
        if code is None:
            code = self._source_code[source] = len(self._source_names)
            self._source_names.append(source)
        return code

    def remove(self, chunk_id: str) -> None:
        slot = self._slot_of.pop(chunk_id, None)
        if slot is None:
            return
        doc = self._doc_terms[slot]
        if doc is not None:
            for term_id in doc[0]:
                self._df[term_id] -= 1
        self._doc_terms[slot] = None
        self._documents[slot] = None
        self._chunk_ids[slot] = None
        self._live.data[slot] = False
        self._total_length -= float(self._length.data[slot])
        codes = {int(self._source.data[slot]), *self._extra_sources.pop(slot, ())}
        for c in codes:
            self._source_chunks[c] -= 1
        self.live -= 1
        dead = len(self._chunk_ids) - self.live
        if dead > 1000 and dead > self.live:
            self._compact()

    def _compact(self) -> None:
        """Drop dead slots: renumber the live chunks and rebuild the postings from their terms."""
        keep = [slot for slot, chunk_id in enumerate(self._chunk_ids) if chunk_id is not None]
        postings = [(array("i"), array("i")) for _ in self._df]
        columns = [self._length, self._ts, self._day, self._source, self._live, self._has_vector]
        if self._vectors is not None:
            columns.append(self._vectors)
        for column in columns:  # a column written only for some slots may be shorter
            if len(column.data) < len(self._chunk_ids):
                column.resize(len(self._chunk_ids), len(column.data))
        new_columns = [c.data[keep].copy() for c in columns]
        extra = {}
        for new_slot, slot in enumerate(keep):
            doc = self._doc_terms[slot]
            assert doc is not None
            for term_id, count in zip(doc[0], doc[1], strict=True):
                postings[term_id][0].append(new_slot)
                postings[term_id][1].append(count)
            if slot in self._extra_sources:
                extra[new_slot] = self._extra_sources[slot]
        self._postings = postings
        self._chunk_ids = [self._chunk_ids[slot] for slot in keep]
        self._article_ids = [self._article_ids[slot] for slot in keep]
        self._doc_terms = [self._doc_terms[slot] for slot in keep]
        self._documents = [self._documents[slot] for slot in keep]
        self._text_hash = [self._text_hash[slot] for slot in keep]
        self._slot_of = {
            chunk_id: slot for slot, chunk_id in enumerate(self._chunk_ids) if chunk_id
        }
        for column, data in zip(columns, new_columns, strict=True):
            column.data = data
            column.resize(max(1024, 2 * len(data)), len(data))
        self._extra_sources = extra

    # -- reading -----------------------------------------------------------------------------
    def sources(self) -> list[str]:
        """Outlets that have chunks in the index."""
        return [self._source_names[c] for c, n in self._source_chunks.items() if n > 0 and c >= 0]

    def day_range(self) -> tuple[date, date] | None:
        n = len(self._chunk_ids)
        days = self._day.data[:n][self._live.data[:n] & (self._day.data[:n] >= 0)]
        if not len(days):
            return None
        return date.fromordinal(int(days.min())), date.fromordinal(int(days.max()))

    def mask(self, scope: Scope) -> np.ndarray | None:
        """Which slots the scope admits (None: all live slots)."""
        if scope.empty:
            return None
        n = len(self._chunk_ids)
        allowed = self._live.data[:n].copy()
        if scope.sources:
            codes = [self._source_code[s] for s in scope.sources if s in self._source_code]
            by_source = np.isin(self._source.data[:n], codes)
            for slot, extra in self._extra_sources.items():
                if any(c in codes for c in extra):
                    by_source[slot] = True
            allowed &= by_source
        if scope.first is not None:
            allowed &= self._day.data[:n] >= scope.first.toordinal()
        if scope.last is not None:
            allowed &= (self._day.data[:n] >= 0) & (self._day.data[:n] <= scope.last.toordinal())
        if scope.since is not None or scope.until is not None:
            ts = self._ts.data[:n]
            with np.errstate(invalid="ignore"):
                if scope.since is not None:
                    allowed &= ts >= scope.since.timestamp()
                if scope.until is not None:
                    allowed &= ts <= scope.until.timestamp()
        return allowed

    def search(
        self, words: Sequence[str], n: int, allowed: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """The n best (chunk id, BM25 score) for the query terms among the allowed slots."""
        size = len(self._chunk_ids)
        if not self.live or not words or n <= 0:
            return []
        scores = np.zeros(size, dtype=np.float32)
        average = max(self._total_length / self.live, 1.0)
        lengths = self._length.data[:size]
        hit = False
        for term, query_count in Counter(words).items():
            term_id = self._vocab.get(term)
            if term_id is None or self._df[term_id] <= 0:
                continue
            df = self._df[term_id]
            idf = math.log(1.0 + (self.live - df + 0.5) / (df + 0.5))
            slots = np.frombuffer(self._postings[term_id][0], dtype=np.int32)
            tfs = np.frombuffer(self._postings[term_id][1], dtype=np.int32).astype(np.float32)
            norm = self.k1 * (1.0 - self.b + self.b * lengths[slots] / average)
            scores[slots] += query_count * idf * tfs * (self.k1 + 1.0) / (tfs + norm)
            hit = True
        if not hit:
            return []
        live = self._live.data[:size]
        scores[~(live if allowed is None else allowed)] = 0.0
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > n:
            candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(str(self._chunk_ids[slot]), float(scores[slot])) for slot in order]

    def covers_vectors(self, allowed: np.ndarray | None) -> bool:
        """Every allowed live chunk has its vector here (so dense search can run in memory)."""
        n = len(self._chunk_ids)
        mask = self._live.data[:n] if allowed is None else allowed
        return self._vectors is not None and not bool((mask & ~self._has_vector.data[:n]).any())

    def dense_search(
        self, vector: np.ndarray, n: int, allowed: np.ndarray | None = None
    ) -> list[tuple[str, float]]:
        """Exact cosine search among the allowed chunks: (chunk id, similarity), best first."""
        size = len(self._chunk_ids)
        if self._vectors is None or n <= 0:
            return []
        mask = self._live.data[:size] if allowed is None else allowed
        slots = np.flatnonzero(mask & self._has_vector.data[:size])
        if not len(slots):
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / (float(np.linalg.norm(query)) or 1.0)
        if 4 * len(slots) < size:  # a narrow scope: copy out its few rows
            scores = self._vectors.data[slots] @ query
        else:  # most of the store: one pass over all rows beats copying them
            scores = (self._vectors.data[:size] @ query)[slots]
        if len(slots) > n:
            best = np.argpartition(-scores, n - 1)[:n]
            slots, scores = slots[best], scores[best]
        order = np.argsort(-scores, kind="stable")
        return [(str(self._chunk_ids[slots[i]]), float(scores[i])) for i in order]

    def similarity(self, chunk_id: str, vector: np.ndarray) -> float | None:
        """Cosine similarity of a chunk's stored vector to `vector` (None: no vector here)."""
        slot = self._slot_of.get(chunk_id)
        if slot is None or self._vectors is None or not self._has_vector.data[slot]:
            return None
        query = np.asarray(vector, dtype=np.float32)
        return float(self._vectors.data[slot] @ query / (float(np.linalg.norm(query)) or 1.0))

    def term_weights(self, words: Sequence[str]) -> dict[int, float]:
        """term id -> idf, for the words the index knows."""
        weights: dict[int, float] = {}
        for word in words:
            term_id = self._vocab.get(word)
            if term_id is not None and self._df[term_id] > 0:
                df = self._df[term_id]
                weights[term_id] = math.log(1.0 + (self.live - df + 0.5) / (df + 0.5))
        return weights

    def document(self, chunk_id: str) -> tuple[str, dict[str, Any]] | None:
        """The chunk's text and metadata, as stored."""
        slot = self._slot_of.get(chunk_id)
        return None if slot is None else self._documents[slot]

    def article_of(self, chunk_id: str) -> str | None:
        slot = self._slot_of.get(chunk_id)
        return None if slot is None else self._article_ids[slot]

    def info(self, chunk_id: str) -> tuple[str, int, float, frozenset[int]] | None:
        """(article id, text hash, published_ts, term ids) of an indexed chunk."""
        slot = self._slot_of.get(chunk_id)
        if slot is None:
            return None
        doc = self._doc_terms[slot]
        return (
            self._article_ids[slot],
            self._text_hash[slot],
            float(self._ts.data[slot]),
            frozenset(doc[0]) if doc is not None else frozenset(),
        )


# -- fusion (pure) -----------------------------------------------------------------------------


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: int = 60
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum of weight / (k + rank), rank counted from 1."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass
class _Candidate:
    chunk_id: str
    article_id: str = ""
    text: str | None = None
    metadata: dict[str, Any] | None = None
    dense_score: float | None = None
    lexical_score: float | None = None


@dataclass
class _Ranked:
    """One ranked list of candidates (a probe, or the global list), best first."""

    ids: list[str]
    scores: dict[str, float]
    part: int | None = None
    votes: int | None = None  # how many of the first ids count when lists are fused (None: all)


# -- the retriever -----------------------------------------------------------------------------


class Retriever:
    """Hybrid retrieval over one store. Thread-safe: Slack answers from a worker pool."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        mode: Mode = "hybrid",
        config: RetrievalConfig | None = None,
        snapshot: Path | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.config = config or RetrievalConfig()
        self.snapshot = snapshot  # where the index is saved between processes (None: nowhere)
        self._lock = threading.RLock()
        self._index: LexicalIndex | None = None
        self._version: StoreVersion | None = None  # the store version the index reflects
        self._saved: StoreState | None = None  # the state the snapshot file holds, if known
        self._stale = False
        self._checked_at = 0.0
        self.builds = 0  # times the whole index was built from the store
        self.snapshot_loads = 0  # times it was loaded from the snapshot instead

    @property
    def rebuilds(self) -> int:
        """Times the whole index was replaced: built, or loaded from the snapshot."""
        return self.builds + self.snapshot_loads

    # -- the lexical index, kept in step with the store ----------------------------------------
    def lexical_index(self, *, keep_while_writing: bool = True) -> LexicalIndex:
        """The lexical index: loaded or built on first use, reloaded when another process wrote.

        While another process is writing (the store's version file says so), an index already
        held is kept: questions are answered from the store as it was, at full speed, instead of
        rebuilding at every batch, and the writer's published snapshot is loaded once it ends.
        """
        with self._lock:
            now = time.monotonic()
            if (
                self._index is not None
                and not self._stale
                and now - self._checked_at < self.config.check_interval
            ):
                return self._index
            if (
                keep_while_writing
                and self._index is not None
                and not self._stale
                and self.store.write_under_way()
            ):
                self._checked_at = now
                return self._index
            version = self.store.version
            self._checked_at = now
            stale = self._index is None or self._stale or version != self._version
            if stale and not self._load_snapshot(version):
                self._rebuild(version)
            assert self._index is not None
            return self._index

    def _state(self, version: StoreVersion) -> StoreState:
        return StoreState(version.collection_id, version.generation, self.store.count())

    def _load_snapshot(self, version: StoreVersion) -> bool:
        if self.snapshot is None or not version.settled:
            return False
        state = self._state(version)
        index = lexical_cache.load(
            self.snapshot, state, k1=self.config.bm25_k1, b=self.config.bm25_b
        )
        if index is None:
            return False
        self._replace(index, version)
        self._saved = state
        self.snapshot_loads += 1
        return True

    def _rebuild(self, version: StoreVersion) -> None:
        started = time.perf_counter()
        index = LexicalIndex(self.config.bm25_k1, self.config.bm25_b)
        for chunk in self.store.iter_chunks(vectors=True):
            index.add(chunk)
        self._replace(index, version)
        self.builds += 1
        log.info(
            "lexical index built: %d chunks in %.2fs", len(index), time.perf_counter() - started
        )
        self._save()

    def _replace(self, index: LexicalIndex, version: StoreVersion) -> None:
        self._index = index
        self._version = version
        self._stale = False

    def _save(self) -> None:
        """Write the snapshot if the index is exactly what the store holds now."""
        if self.snapshot is None or self._index is None or self._stale:
            return
        version = self.store.version
        state = self._state(version)
        if not version.settled or version != self._version or state.chunks != len(self._index):
            log.info("index snapshot not written: the store changed while it was read")
            return
        if state != self._saved and lexical_cache.save(self._index, state, self.snapshot):
            self._saved = state

    def persist(self) -> None:
        """Bring the index up to date and write its snapshot (after ingest, reindex, reset), so
        that the next process to ask loads it instead of building it."""
        if self.snapshot is None:
            return
        with self._lock:
            self._checked_at = 0.0
            self.lexical_index(keep_while_writing=False)
            self._save()

    def preload(self) -> None:
        """Load the snapshot if it matches the store (or start an empty index for an empty
        store), so that an ingest can update the index in place (then `persist`) instead of
        building it all again afterwards."""
        with self._lock:
            if self._index is None and self.snapshot is not None:
                version = self.store.version
                if not self._load_snapshot(version) and version.settled and not self.store.count():
                    self._replace(LexicalIndex(self.config.bm25_k1, self.config.bm25_b), version)

    def forget(self) -> None:
        """The store changed in a way `on_store_change` cannot follow (every vector re-embedded):
        the next use builds the index again."""
        with self._lock:
            self._stale = True

    def on_store_change(self, written: list[str], removed: list[str]) -> None:
        """Called after ingest writes or deletes chunks: apply them to the in-memory index.

        Each ingest batch bumps the store's generation once; a jump by more than one means
        another process wrote too (or the store was reset), so the next search rebuilds.
        """
        with self._lock:
            if self._index is None:
                return  # built from the store on first use, which will include these
            version = self.store.version
            for chunk_id in removed:
                self._index.remove(chunk_id)
            if written:
                for chunk in self.store.get_chunks(written, vectors=True):
                    self._index.add(chunk)
            if self._version is not None and version == (
                self._version.collection_id,
                self._version.generation + 1,
                True,
            ):
                self._version = version
            else:
                self._stale = True
            self._checked_at = time.monotonic()

    # -- understanding -------------------------------------------------------------------------
    def understand(
        self,
        question: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        today: date | None = None,
    ) -> Query:
        """The question as a Query: its text plus the outlets, dates and parts it names."""
        index = self.lexical_index()
        with self._lock:
            sources = index.sources()
            known = index.day_range()
        understood = understand_question(
            question, sources, today=today or date.today(), known_range=known
        )
        dated = sorted((m.start, m.end) for m in understood.dates)
        lexical_text = question
        for start, end in reversed(dated):
            lexical_text = lexical_text[:start] + " " + lexical_text[end:]
        query = Query(
            text=question,
            since=since,
            until=until,
            latest=understood.latest,
            parts=list(understood.parts),
            lexical_text=lexical_text,
        )
        filters: dict[str, Any] = {}
        if understood.sources:
            filters["sources"] = list(understood.sources)
        if not understood.parts:
            query.sources = understood.sources
            query.first, query.last = understood.first, understood.last
            query.near_first, query.near_last = understood.near_first, understood.near_last
            if understood.first is not None:
                filters["since"] = understood.first.isoformat()
            if understood.last is not None:
                filters["until"] = understood.last.isoformat()
            if understood.near_first or understood.near_last:
                filters["near"] = {
                    key: value.isoformat()
                    for key, value in (
                        ("since", understood.near_first),
                        ("until", understood.near_last),
                    )
                    if value is not None
                }
        if since is not None:
            filters["since"] = _later_iso(filters.get("since"), since)
        if until is not None:
            filters["until"] = _earlier_iso(filters.get("until"), until)
        if understood.latest:
            filters["latest"] = True
        if understood.parts:
            filters["parts"] = [part.to_dict() for part in understood.parts]
        query.filters = filters
        return query

    # -- searching -----------------------------------------------------------------------------
    def search(self, query: Query, k: int) -> list[Passage]:
        """The k passages that best answer the query, every part represented, one chunk per
        article first."""
        if k <= 0:
            return []
        index = self.lexical_index()
        config = self.config
        pool = max(config.pool, 3 * k)
        base = Scope(since=query.since, until=query.until)
        # One embedding per question: a part searches densely with the question's vector within
        # its own outlet/days, and lexically with its own clause. Embedding each clause as well
        # costs 15-30 ms a part and found no more evidence on ../shared/eval.
        question_vector = self._embed([query.text]).get(query.text)
        candidates: dict[str, _Candidate] = {}
        lexical_text = query.lexical_text if query.lexical_text is not None else query.text

        def probe(text: str, lexical: str, vector: np.ndarray | None, scope: Scope) -> _Ranked:
            return self._probe(text, lexical, vector, scope, pool, candidates, index)

        whole = probe(query.text, lexical_text, question_vector, base)
        if query.sources or query.first or query.last:
            pinned = base.narrowed(query.sources, query.first, query.last)
            whole = _pinned_first(probe(query.text, lexical_text, question_vector, pinned), whole)
        elif query.near_first or query.near_last:
            near = base.narrowed((), query.near_first, query.near_last)
            boost = probe(query.text, lexical_text, question_vector, near)
            whole = _fuse([whole, boost], [1.0, config.near_weight], config.rrf_k)
        if query.latest:
            whole = self._by_recency(whole, candidates, index, question_vector)

        parts: list[_Ranked] = []
        relaxed: list[str] = []
        for number, part in enumerate(query.parts):
            scope = base.narrowed(part.sources, part.first, part.last)
            ranked = probe(part.text, part.text, question_vector, scope)
            if not ranked.ids and (part.first or part.last):
                # A date off by a day or two must not lose the report: keep the outlet only.
                relaxed.append(part.label or f"part {number + 1}")
                ranked = probe(
                    part.text,
                    part.text,
                    question_vector,
                    base.narrowed(part.sources, None, None),
                )
            elif part.first is not None and part.last is not None:
                # "The Verge's report on 2023-11-24": after its best article, the list holds
                # whatever else the outlet published those days, which says nothing about the
                # question; those must not crowd out the whole question's list.
                ranked.votes = config.dated_part_votes
            ranked.part = number
            parts.append(ranked)
        if relaxed:
            query.filters["relaxed"] = relaxed

        with self._lock:
            question_terms = index.term_weights(query_terms(lexical_text))
        chosen = self._select(parts, whole, k, candidates, index, question_terms)
        self._complete(chosen, candidates, question_vector, index)
        return [self._passage(item, candidates) for item in chosen]

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self.mode == "lexical":
            return {}
        unique = list(dict.fromkeys(texts))
        matrix = self.embedder.embed(unique)
        return {text: matrix[row] for row, text in enumerate(unique)}

    def _probe(
        self,
        text: str,
        lexical_text: str,
        vector: np.ndarray | None,
        scope: Scope,
        pool: int,
        candidates: dict[str, _Candidate],
        index: LexicalIndex,
    ) -> _Ranked:
        """Dense and lexical search within a scope, fused.

        Dense search runs exactly, in memory, over the vectors the index holds: at 10k chunks
        a few milliseconds, faster than Chroma's HNSW with metadata filters, and no client is
        needed. Chroma answers only for chunks the index holds no vector for.
        """
        rankings: list[list[str]] = []
        weights: list[float] = []
        dense = self.mode != "lexical" and vector is not None
        dense_hits: list[tuple[str, float]] | None = None
        lexical_hits: list[tuple[str, float]] = []
        with self._lock:
            allowed = index.mask(scope)
            if dense and index.covers_vectors(allowed):
                assert vector is not None
                dense_hits = index.dense_search(vector, pool, allowed)
            if self.mode != "dense":
                lexical_hits = index.search(query_terms(lexical_text), pool, allowed)
            articles = {
                chunk_id: index.article_of(chunk_id)
                for chunk_id, _ in [*(dense_hits or []), *lexical_hits]
            }
        if dense:
            assert vector is not None
            dense_ids = []
            if dense_hits is None:
                for hit in self.store.query(vector.tolist(), pool, where=scope.where()):
                    if not scope.admits(hit.metadata):
                        continue
                    candidate = candidates.setdefault(hit.id, _Candidate(hit.id))
                    candidate.text, candidate.metadata = hit.text, hit.metadata
                    candidate.article_id = str(hit.metadata.get("article_id", ""))
                    _raise(candidate, "dense_score", hit.score)
                    dense_ids.append(hit.id)
            else:
                dense_ids = _record(dense_hits, "dense_score", candidates, articles)
            rankings.append(dense_ids)
            weights.append(self.config.dense_weight)
        if self.mode != "dense":
            rankings.append(_record(lexical_hits, "lexical_score", candidates, articles))
            weights.append(self.config.lexical_weight)
        return _fuse_ids(rankings, weights, self.config.rrf_k)

    def _by_recency(
        self,
        ranked: _Ranked,
        candidates: dict[str, _Candidate],
        index: LexicalIndex,
        vector: np.ndarray | None,
    ) -> _Ranked:
        """For "the latest": chunks as relevant as the best (cosine within `latest_margin`)
        count as tied and come newest first; the others keep their order after them."""

        def published(chunk_id: str) -> float:
            meta = candidates[chunk_id].metadata
            if meta and meta.get("published_ts") is not None:
                return float(meta["published_ts"])
            with self._lock:
                info = index.info(chunk_id)
            return info[2] if info and not math.isnan(info[2]) else float("-inf")

        def relevance(chunk_id: str) -> float:
            score = candidates[chunk_id].dense_score
            if score is None and vector is not None:
                with self._lock:
                    score = index.similarity(chunk_id, vector)
            return score if score is not None else float("-inf")

        if vector is None or not ranked.ids:
            newest = sorted(ranked.ids, key=published, reverse=True)
            return _fuse([ranked, _Ranked(newest, {})], [1.0, 1.0], self.config.rrf_k)
        top = ranked.ids[: self.config.pool]
        best = max(relevance(chunk_id) for chunk_id in top)
        tied = [c for c in top if relevance(c) >= best - self.config.latest_margin]
        tied.sort(key=published, reverse=True)
        rest = [chunk_id for chunk_id in ranked.ids if chunk_id not in set(tied)]
        scores = dict(ranked.scores)
        ceiling = max(scores.values(), default=0.0)
        for place, chunk_id in enumerate(tied):
            scores[chunk_id] = ceiling + (len(tied) - place) * 1e-6
        return _Ranked(tied + rest, scores)

    def _select(
        self,
        parts: list[_Ranked],
        whole: _Ranked,
        k: int,
        candidates: dict[str, _Candidate],
        index: LexicalIndex,
        question_terms: dict[int, float] | None = None,
    ) -> list[tuple[str, float, int | None, tuple[str, ...]]]:
        """Take turns between the parts and the whole question, one chunk per article first,
        collapsing near-identical chunks. Returns (chunk id, score, part, duplicate articles)."""
        infos = _Infos(index, self._lock)
        kept: list[tuple[str, frozenset[int], int]] = []  # chunk id, words, text hash
        duplicates: dict[str, list[str]] = {}
        merged_into: dict[str, str] = {}

        def representative(chunk_id: str) -> str:
            """The chosen chunk this one duplicates, or itself."""
            if chunk_id in merged_into:
                return merged_into[chunk_id]
            info = infos.get(chunk_id)
            if info is None:
                return chunk_id
            for other, words, text_hash in kept:
                if text_hash == info[1] or jaccard(words, info[3]) >= self.config.duplicate_overlap:
                    merged_into[chunk_id] = other
                    article = info[0]
                    if article != _article(other, candidates, infos):
                        duplicates.setdefault(other, []).append(article)
                    return other
            return chunk_id

        best_part: dict[str, tuple[int, int]] = {}  # chunk id -> (rank, part)
        for ranked in parts:
            for rank, chunk_id in enumerate(ranked.ids):
                if ranked.part is not None and (
                    chunk_id not in best_part or rank < best_part[chunk_id][0]
                ):
                    best_part[chunk_id] = (rank, ranked.part)
        merged = whole
        if parts:
            # The parts vote as one list, each chunk at its best rank in any part: two parts
            # about the same outlet ("TechCrunch's first article ..., its second ...") must not
            # vote twice for that outlet's articles and crowd out the other parts' and the whole
            # question's.
            merged = _fuse(
                [_interleave(parts), whole], [self.config.part_weight, 1.0], self.config.rrf_k
            )

        chosen: list[tuple[str, float, int | None]] = []
        taken_chunks: set[str] = set()
        per_article: dict[str, int] = {}  # chunks taken, in order of the articles' first chunk
        first_article_slots = self.config.first_article_chunks if not parts else 1

        def take(ranked: _Ranked, distinct: bool, part: int | None = None) -> bool:
            for chunk_id in ranked.ids:
                if chunk_id in taken_chunks or representative(chunk_id) != chunk_id:
                    continue
                article = _article(chunk_id, candidates, infos)
                # A long article's best chunk may not hold the sentence that answers: the best
                # article may give more chunks while they outrank the next article's best.
                best_article = next(iter(per_article), article)
                slots = first_article_slots if article == best_article else 1
                if distinct and per_article.get(article, 0) >= slots:
                    continue
                per_article[article] = per_article.get(article, 0) + 1
                info = infos.get(chunk_id)
                if info is not None:
                    kept.append((chunk_id, info[3], info[1]))
                taken_chunks.add(chunk_id)
                if part is None and chunk_id in best_part:
                    part = best_part[chunk_id][1]
                chosen.append((chunk_id, merged.scores.get(chunk_id, 0.0), part))
                return True
            return False

        # Every part gets its best article first; then the best of all lists fused.
        for _ in range(self.config.part_rounds):
            for ranked in parts:
                if len(chosen) < k:
                    take(ranked, True, ranked.part)
        if self.config.coverage_weight > 0 and question_terms and len(chosen) < k:
            merged = self._by_coverage(merged, chosen, k, question_terms, infos)
        for distinct in (True, False):
            while len(chosen) < k and take(merged, distinct):
                pass
        return [
            (chunk_id, score, part, tuple(dict.fromkeys(duplicates.get(chunk_id, ()))))
            for chunk_id, score, part in chosen
        ]

    def _by_coverage(
        self,
        merged: _Ranked,
        chosen: Sequence[tuple[str, float, int | None]],
        k: int,
        question_terms: dict[int, float],
        infos: _Infos,
    ) -> _Ranked:
        """Reorder the fused list greedily so that each next article also covers words of the
        question the articles already taken do not: a multi-hop question chains one fact per
        report, and five reports of the same fact answer only part of it."""
        total = sum(question_terms.values()) or 1.0
        covered: set[int] = set()
        for chunk_id, _, _ in chosen:
            info = infos.get(chunk_id)
            if info is not None:
                covered |= info[3] & question_terms.keys()
        pool = [chunk_id for chunk_id in merged.ids[: max(3 * k, 30)]]
        top = max((merged.scores[c] for c in pool), default=1.0) or 1.0
        order: list[str] = []
        remaining = list(pool)
        while remaining:
            best, best_value = remaining[0], -1.0
            for chunk_id in remaining:
                info = infos.get(chunk_id)
                words = (info[3] & question_terms.keys()) if info is not None else frozenset()
                gain = sum(question_terms[t] for t in words - covered) / total
                value = merged.scores[chunk_id] / top + self.config.coverage_weight * gain
                if value > best_value:
                    best, best_value = chunk_id, value
            order.append(best)
            remaining.remove(best)
            info = infos.get(best)
            if info is not None:
                covered |= info[3] & question_terms.keys()
        order += merged.ids[len(pool) :]
        return _Ranked(order, merged.scores)

    def _complete(
        self,
        chosen: list[tuple[str, float, int | None, tuple[str, ...]]],
        candidates: dict[str, _Candidate],
        vector: np.ndarray | None,
        index: LexicalIndex,
    ) -> None:
        """Text and metadata of the chosen chunks (held by the index; the store is asked only
        for any it lacks); a dense score for those only lexical search found, so that every
        passage can be compared with the question."""
        missing = []
        with self._lock:
            for cid, _, _, _ in chosen:
                candidate = candidates[cid]
                if candidate.metadata is None:
                    document = index.document(cid)
                    if document is None:
                        missing.append(cid)
                    else:
                        candidate.text, candidate.metadata = document[0], dict(document[1])
        if missing:
            for chunk in self.store.get_chunks(missing):
                candidate = candidates[chunk.id]
                candidate.text, candidate.metadata = chunk.text, chunk.metadata
        unscored = [
            candidates[cid] for cid, _, _, _ in chosen if candidates[cid].dense_score is None
        ]
        if unscored and vector is not None and self.mode != "lexical":
            with self._lock:
                for candidate in unscored:
                    candidate.dense_score = index.similarity(candidate.chunk_id, vector)

    def _passage(
        self,
        item: tuple[str, float, int | None, tuple[str, ...]],
        candidates: dict[str, _Candidate],
    ) -> Passage:
        chunk_id, score, part, duplicates = item
        candidate = candidates[chunk_id]
        return Passage(
            chunk_id=chunk_id,
            text=candidate.text or "",
            metadata=dict(candidate.metadata or {}),
            score=score,
            dense_score=candidate.dense_score,
            lexical_score=candidate.lexical_score,
            part=part,
            duplicates=duplicates,
        )

    # -- LangChain -----------------------------------------------------------------------------
    def as_langchain(self, k: int) -> Any:
        """This retriever as a LangChain BaseRetriever returning Documents."""
        return _langchain_class()(newsbot_retriever=self, k=k)


class _Infos:
    """index.info() of chunks, looked up when first needed and remembered for one search."""

    def __init__(self, index: LexicalIndex, lock: threading.RLock) -> None:
        self._index = index
        self._lock = lock
        self._known: dict[str, tuple[str, int, float, frozenset[int]] | None] = {}

    def get(self, chunk_id: str) -> tuple[str, int, float, frozenset[int]] | None:
        if chunk_id not in self._known:
            with self._lock:
                self._known[chunk_id] = self._index.info(chunk_id)
        return self._known[chunk_id]


def _raise(candidate: _Candidate, name: str, score: float) -> None:
    """Keep the best score a candidate got from any probe."""
    current = getattr(candidate, name)
    if current is None or score > current:
        setattr(candidate, name, score)


def _article(chunk_id: str, candidates: dict[str, _Candidate], infos: _Infos) -> str:
    candidate = candidates.get(chunk_id)
    if candidate is not None and candidate.article_id:
        return candidate.article_id
    info = infos.get(chunk_id)
    return info[0] if info else chunk_id.rsplit("#", 1)[0]


def _record(
    hits: list[tuple[str, float]],
    field: str,
    candidates: dict[str, _Candidate],
    articles: dict[str, str | None],
) -> list[str]:
    """Note each in-memory hit's score on its candidate; the hits' ids, best first."""
    for chunk_id, score in hits:
        candidate = candidates.setdefault(chunk_id, _Candidate(chunk_id))
        candidate.article_id = articles.get(chunk_id) or candidate.article_id
        _raise(candidate, field, score)
    return [chunk_id for chunk_id, _ in hits]


def _fuse_ids(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int) -> _Ranked:
    fused = reciprocal_rank_fusion(rankings, weights, k)
    return _Ranked([chunk_id for chunk_id, _ in fused], dict(fused))


def _fuse(lists: Sequence[_Ranked], weights: Sequence[float], k: int) -> _Ranked:
    fused = _fuse_ids([ranked.ids for ranked in lists], weights, k)
    return fused


def _interleave(lists: Sequence[_Ranked]) -> _Ranked:
    """One list from several: each id at its best rank in any of them (ties: ids more lists
    found first, then the earlier list's), counting each list's first `votes` ids only."""
    best: dict[str, tuple[int, int, int]] = {}  # id -> (rank, -lists found in, first list)
    for number, ranked in enumerate(lists):
        ids = ranked.ids if ranked.votes is None else ranked.ids[: ranked.votes]
        for rank, chunk_id in enumerate(ids):
            known = best.get(chunk_id)
            if known is None:
                best[chunk_id] = (rank, -1, number)
            else:
                best[chunk_id] = (min(rank, known[0]), known[1] - 1, known[2])
    ids = sorted(best, key=best.__getitem__)
    return _Ranked(ids, {chunk_id: 1.0 / (1 + place) for place, chunk_id in enumerate(ids)})


def _pinned_first(pinned: _Ranked, rest: _Ranked) -> _Ranked:
    """The chunks the question's own outlet/dates admit first, then the others."""
    ids = list(pinned.ids) + [chunk_id for chunk_id in rest.ids if chunk_id not in pinned.scores]
    scores = dict(rest.scores)
    top = max(rest.scores.values(), default=0.0)
    for chunk_id in pinned.ids:
        scores[chunk_id] = top + pinned.scores[chunk_id]
    return _Ranked(ids, scores)


def _later_iso(current: str | None, moment: datetime) -> str:
    value = moment.isoformat()
    if current is None:
        return value
    return max(current, value)


def _earlier_iso(current: str | None, moment: datetime) -> str:
    value = moment.isoformat()
    if current is None:
        return value
    return min(current, value)


@lru_cache(maxsize=1)
def _langchain_class() -> type:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class NewsRetriever(BaseRetriever):
        """newsbot's hybrid retrieval (outlets, dates, parts understood) as LangChain Documents."""

        newsbot_retriever: Any
        k: int = 6

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            retriever: Retriever = self.newsbot_retriever
            passages = retriever.search(retriever.understand(query), self.k)
            return [
                Document(
                    page_content=p.text,
                    id=p.chunk_id,
                    metadata={
                        **p.metadata,
                        "score": p.score,
                        "dense_score": p.dense_score,
                        "part": p.part,
                    },
                )
                for p in passages
            ]

    return NewsRetriever
