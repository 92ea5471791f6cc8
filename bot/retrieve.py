"""Retrieval (docs/retrieval.md): dense (Chroma) and lexical (BM25, index/lexical.py) search over
the same chunks, fused by reciprocal rank, within the outlets, dates and parts a question names
(bot/understand.py): candidates (`Retriever.search`), fusion and selection (`fuse`, `select`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bot.understand import Part, understand_question
from index.lexical import LexicalFilter
from index.text import query_terms, terms

if TYPE_CHECKING:
    from index.embed import Embedder
    from index.store import Ranking, Store

Mode = Literal["hybrid", "dense", "lexical"]


@dataclass(frozen=True)
class RetrievalConfig:
    """Knobs of retrieval; defaults tuned on ../shared/eval with bench/retrieval_eval.py."""

    rrf_k: int = 60  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    pool: int = 30  # candidates each backend returns per probe (at least 3 * k)
    near_weight: float = 1.0  # weight of the "published near a date the question names" vote
    latest_margin: float = 0.1  # "latest": cosine this close to the best counts as a tie
    part_weight: float = 1.0  # weight of each part's list against the whole question's
    part_rounds: int = 1  # turns each part gets before the fused list fills the rest
    coverage_weight: float = 0.5  # prefer articles covering question words not yet covered
    duplicate_overlap: float = 0.9  # word-set overlap (Jaccard) above which chunks are one
    first_article_chunks: int = 3  # chunks the best article may give a one-part question
    dated_part_votes: int = 1  # articles of a part pinned to publication days that vote in fusion
    check_interval: float = 1.0  # seconds between checks for other processes' ingests
    # A scope's dense search (Retriever._plan): docs/retrieval.md, "A scope's dense search".
    scope_margin: float = 1.5
    nearest_limit: int = 1500


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
    def outlets(self) -> frozenset[str]:
        """Its outlet and those of the syndicated copies collapsed into it."""
        return frozenset([self.source, *(self.metadata.get("sources") or ())])

    @property
    def published_at(self) -> datetime | None:
        value = self.metadata.get("published_at")
        return datetime.fromisoformat(value) if value else None


@dataclass
class Query:
    """A question as retrieval sees it: `since`/`until` are the caller's hard limits; `sources`,
    `first`/`last` (publication days) from the question rank matching articles first, `near_*`
    only boost; each of `parts` (a question about several reports) is retrieved on its own."""

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
    # (the text, its vector to come), started by Retriever.understand on another thread so that
    # understanding the question runs beside it; used by Retriever.search for that text only.
    embedding: tuple[str, Future[np.ndarray]] | None = field(
        default=None, repr=False, compare=False
    )


# What finds a question's passages: Retriever.search, or a caller's own (the LangChain chain runs
# it as a retriever run its tracers see).
Retrieve = Callable[[Query, int], list[Passage]]


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

    def lexical_filter(self) -> LexicalFilter:
        """The same scope, exactly, for the lexical index."""
        return LexicalFilter(
            sources=self.sources,
            first_day=self.first.toordinal() if self.first else None,
            last_day=self.last.toordinal() if self.last else None,
            since_ts=math.ceil(self.since.timestamp()) if self.since else None,
            until_ts=math.floor(self.until.timestamp()) if self.until else None,
        )

    def narrowed(self, sources: Sequence[str], first: date | None, last: date | None) -> Scope:
        """This scope further limited to outlets and days (intersecting day ranges)."""
        first = max(filter(None, (self.first, first)), default=None)
        last = min(filter(None, (self.last, last)), default=None)
        new_sources = tuple(sources) or self.sources
        if sources and self.sources:
            new_sources = tuple(s for s in sources if s in self.sources) or tuple(sources)
        return replace(self, sources=new_sources, first=first, last=last)


@dataclass
class Candidate:
    """A chunk some probe found, with what the stores said about it."""

    chunk_id: str
    article_id: str = ""
    text: str | None = None
    metadata: dict[str, Any] | None = None
    dense_score: float | None = None  # cosine similarity to the question
    lexical_score: float | None = None  # best BM25 score in any probe
    visible: bool | None = None  # its article is registered in this version (None: not checked)

    @cached_property
    def words(self) -> frozenset[str]:
        """Index terms of the chunk with its title and outlet (as the lexical index has them)."""
        meta = self.metadata or {}
        heading = f"{meta.get('title', '')} {meta.get('source', '')}"
        return frozenset([*terms(heading), *terms(self.text or "")])

    @cached_property
    def normal_text(self) -> str:
        """The text up to case, spacing and punctuation (syndicated copies of one story)."""
        return " ".join(re.findall(r"[^\W_]+", (self.text or "").lower()))

    @property
    def published_ts(self) -> float:
        value = (self.metadata or {}).get("published_ts")
        return float(value) if value is not None else float("-inf")


def _raise(candidate: Candidate, name: str, score: float) -> None:
    current = getattr(candidate, name)
    if current is None or score > current:
        setattr(candidate, name, score)


def _cosine(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return float(a @ b / ((float(np.linalg.norm(a)) * float(np.linalg.norm(b))) or 1.0))


# -- fusion and selection (pure) ---------------------------------------------------------------
def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / (len(a | b) or 1)


@dataclass
class Ranked:
    """One ranked list of candidates (a probe, or the global list), best first."""

    ids: list[str]
    scores: dict[str, float]
    part: int | None = None
    votes: int | None = None  # how many of the first ids count when lists are fused (None: all)
    # Ids after `ids` not yet read (a voting list is read only as far as its votes): `select`
    # reads them, through its `more`, if it walks there.
    unread: list[str] = field(default_factory=list)


def fuse(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int) -> Ranked:
    """Reciprocal rank fusion of ranked id lists: score(id) = sum of weight / (k + rank), rank
    counted from 1; equal scores by id."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return Ranked(sorted(scores, key=lambda item: (-scores[item], item)), scores)


def interleave(lists: Sequence[Ranked]) -> list[str]:
    """One list from several: each id at its best rank in any of them (ties: ids more lists
    found first, then the earlier list's), counting each list's first `votes` ids only."""
    best: dict[str, tuple[int, int, int]] = {}  # id -> (rank, -lists found in, first list)
    for number, ranked in enumerate(lists):
        ids = ranked.ids if ranked.votes is None else ranked.ids[: ranked.votes]
        for rank, chunk_id in enumerate(ids):
            best_rank, found_in, first = best.get(chunk_id, (rank, 0, number))
            best[chunk_id] = (min(rank, best_rank), found_in - 1, first)
    return sorted(best, key=best.__getitem__)


def pinned_first(pinned: Ranked, rest: Ranked) -> Ranked:
    """The chunks the question's own outlet/dates admit first, then the others."""
    ids = list(pinned.ids) + [chunk_id for chunk_id in rest.ids if chunk_id not in pinned.scores]
    top = max(rest.scores.values(), default=0.0)
    return Ranked(ids, rest.scores | {c: top + pinned.scores[c] for c in pinned.ids})


def by_recency(
    ranked: Ranked, candidates: dict[str, Candidate], config: RetrievalConfig, dense: bool
) -> Ranked:
    """For "the latest": chunks as relevant as the best (cosine within `latest_margin`)
    count as tied and come newest first; the others keep their order after them."""

    def published(chunk_id: str) -> float:
        return candidates[chunk_id].published_ts

    def relevance(chunk_id: str) -> float:
        score = candidates[chunk_id].dense_score
        return score if score is not None else float("-inf")

    if not dense or not ranked.ids:
        newest = sorted(ranked.ids, key=published, reverse=True)
        return fuse([ranked.ids, newest], [1.0, 1.0], config.rrf_k)
    top = ranked.ids[: config.pool]
    best = max(relevance(chunk_id) for chunk_id in top)
    tied = [c for c in top if relevance(c) >= best - config.latest_margin]
    tied.sort(key=published, reverse=True)
    rest = [chunk_id for chunk_id in ranked.ids if chunk_id not in set(tied)]
    scores = dict(ranked.scores)
    ceiling = max(scores.values(), default=0.0)
    for place, chunk_id in enumerate(tied):
        scores[chunk_id] = ceiling + (len(tied) - place) * 1e-6
    return Ranked(tied + rest, scores)


Chosen = tuple[str, float, int | None, tuple[str, ...]]  # chunk id, score, part, duplicates


def select(
    parts: list[Ranked],
    whole: Ranked,
    k: int,
    candidates: dict[str, Candidate],
    config: RetrievalConfig,
    question_terms: dict[str, float] | None = None,
    more: Callable[[Ranked, str | None], Ranked] | None = None,
) -> list[Chosen]:
    """Take turns between the parts and the whole question, one chunk per article first,
    collapsing near-identical chunks. Returns (chunk id, score, part, duplicate articles).
    `more(part, through)`: the part's list with its `unread` ids read (those that may be shown),
    through the given one or all (None)."""
    kept: list[Candidate] = []
    duplicates: dict[str, list[str]] = {}
    merged_into: dict[str, str] = {}

    def representative(chunk_id: str) -> str:
        """The chosen chunk this one duplicates, or itself."""
        if chunk_id in merged_into:
            return merged_into[chunk_id]
        candidate = candidates[chunk_id]
        for other in kept:
            if (
                other.normal_text == candidate.normal_text
                or jaccard(other.words, candidate.words) >= config.duplicate_overlap
            ):
                merged_into[chunk_id] = other.chunk_id
                if candidate.article_id != other.article_id:
                    duplicates.setdefault(other.chunk_id, []).append(candidate.article_id)
                return other.chunk_id
        return chunk_id

    parts = list(parts)

    def read(number: int, through: str | None = None) -> Ranked:
        if parts[number].unread and more is not None:
            parts[number] = more(parts[number], through)
        return parts[number]

    def best_part(chunk_id: str) -> int | None:
        """The part whose list ranks the chunk best (the first of equals)."""
        best: tuple[float, int | None] = (math.inf, None)
        for number, ranked in enumerate(parts):
            if chunk_id in ranked.unread:  # its rank counts the chunks before it that may be shown
                ranked = read(number, chunk_id)
            if ranked.part is not None and chunk_id in ranked.ids:
                best = min(best, (ranked.ids.index(chunk_id), ranked.part), key=lambda b: b[0])
        return best[1]

    merged = whole
    if parts:
        # The parts vote as one list, each chunk at its best rank in any part: two parts about
        # one outlet ("TechCrunch's first article ..., its second ...") must not vote twice for
        # its articles and crowd out the other parts' and the whole question's.
        merged = fuse([interleave(parts), whole.ids], [config.part_weight, 1.0], config.rrf_k)

    chosen: list[tuple[str, float, int | None]] = []
    taken_chunks: set[str] = set()
    per_article: dict[str, int] = {}  # chunks taken, in order of the articles' first chunk
    first_article_slots = config.first_article_chunks if not parts else 1

    def take(ranked: Ranked, distinct: bool, part: int | None = None) -> bool:
        for chunk_id in ranked.ids:
            if chunk_id in taken_chunks or representative(chunk_id) != chunk_id:
                continue
            article = candidates[chunk_id].article_id
            # A long article's best chunk may not hold the sentence that answers: the best
            # article may give more chunks while they outrank the next article's best.
            best_article = next(iter(per_article), article)
            slots = first_article_slots if article == best_article else 1
            if distinct and per_article.get(article, 0) >= slots:
                continue
            per_article[article] = per_article.get(article, 0) + 1
            kept.append(candidates[chunk_id])
            taken_chunks.add(chunk_id)
            if part is None:
                part = best_part(chunk_id)
            chosen.append((chunk_id, merged.scores.get(chunk_id, 0.0), part))
            return True
        return False

    # Every part gets its best article first; then the best of all lists fused.
    for _ in range(config.part_rounds):
        for number, ranked in enumerate(parts):
            if len(chosen) < k and not take(ranked, True, ranked.part) and ranked.unread:
                take(read(number), True, ranked.part)  # its best article is further down
    if config.coverage_weight > 0 and question_terms and len(chosen) < k:
        merged = by_coverage(merged, chosen, k, question_terms, candidates, config)
    for distinct in (True, False):
        while len(chosen) < k and take(merged, distinct):
            pass
    return [
        (chunk_id, score, part, tuple(dict.fromkeys(duplicates.get(chunk_id, ()))))
        for chunk_id, score, part in chosen
    ]


def by_coverage(
    merged: Ranked,
    chosen: Sequence[tuple[str, float, int | None]],
    k: int,
    question_terms: dict[str, float],
    candidates: dict[str, Candidate],
    config: RetrievalConfig,
) -> Ranked:
    """Greedily reordered: each next article covers question words the ones taken do not (a
    multi-hop question chains one fact per report; five reports of one fact answer part of it)."""
    total = sum(question_terms.values()) or 1.0
    covered: set[str] = set()
    for chunk_id, _, _ in chosen:
        covered |= candidates[chunk_id].words & question_terms.keys()
    pool = list(merged.ids[: max(3 * k, 30)])
    top = max((merged.scores[c] for c in pool), default=1.0) or 1.0
    found = {chunk_id: candidates[chunk_id].words & question_terms.keys() for chunk_id in pool}
    order: list[str] = []
    remaining = list(pool)
    while remaining:
        gains = [sum(question_terms[t] for t in found[c] - covered) / total for c in remaining]
        values = [
            merged.scores[chunk_id] / top + config.coverage_weight * gain
            for chunk_id, gain in zip(remaining, gains, strict=True)
        ]
        if not any(gains):  # nothing left to cover: the rest by score, as the greedy would take it
            order += [remaining[i] for i in sorted(range(len(values)), key=lambda i: -values[i])]
            break
        best = values.index(max(values))  # the first of equals, as before
        order.append(remaining.pop(best))
        covered |= found[order[-1]]
    order += merged.ids[len(pool) :]
    return Ranked(order, merged.scores)


class Retriever:
    """Hybrid retrieval over one store. Thread-safe: Slack answers from a worker pool."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        *,
        mode: Mode = "hybrid",
        config: RetrievalConfig | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.mode = mode
        self.config = config or RetrievalConfig()
        self._embedding = ThreadPoolExecutor(thread_name_prefix="newsbot-question")

    def refresh(self) -> None:
        """See other processes' ingests (at most one check per `check_interval`)."""
        self.store.refresh(self.config.check_interval)

    def understand(
        self,
        question: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        today: date | None = None,
    ) -> Query:
        """The question as a Query: its text plus the outlets, dates and parts it names."""
        embedding = self._embed(question)
        self.refresh()
        understood = understand_question(
            question,
            self.store.lexical.sources(),
            today=today or date.today(),
            known_range=self.store.lexical.day_range(),
        )
        lexical_text = question
        for start, end in sorted(((m.start, m.end) for m in understood.dates), reverse=True):
            lexical_text = lexical_text[:start] + " " + lexical_text[end:]
        query = Query(
            text=question,
            since=since,
            until=until,
            latest=understood.latest,
            parts=list(understood.parts),
            lexical_text=lexical_text,
            embedding=(question, embedding) if embedding else None,
        )
        filters = query.filters
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
            near = {"since": understood.near_first, "until": understood.near_last}
            if any(near.values()):
                filters["near"] = {key: day.isoformat() for key, day in near.items() if day}
        if since is not None:
            filters["since"] = max(filters.get("since", ""), since.isoformat())  # the later
        if until is not None:
            filters["until"] = min(filters.get("until", until.isoformat()), until.isoformat())
        if understood.latest:
            filters["latest"] = True
        if understood.parts:
            filters["parts"] = [part.to_dict() for part in understood.parts]
        return query

    def search(self, query: Query, k: int) -> list[Passage]:
        """The k best passages for the query, every part represented, one per article first."""
        if k <= 0:
            return []
        self.refresh()
        config = self.config
        pool = max(config.pool, 3 * k)
        base = Scope(since=query.since, until=query.until)
        candidates: dict[str, Candidate] = {}
        lexical_text = query.lexical_text if query.lexical_text is not None else query.text
        # The whole question's probes (its outlets/days first: the narrower scope reads more
        # nearest chunks, which the whole question then takes its own from), then each part's.
        pinned = bool(query.sources or query.first or query.last)
        narrow = None
        if pinned:
            narrow = base.narrowed(query.sources, query.first, query.last)
        elif query.near_first or query.near_last:
            narrow = base.narrowed((), query.near_first, query.near_last)
        # One embedding per question, its parts' too (docs/retrieval.md, "One vector"), made on
        # another thread while the lexical index answers what needs no vector.
        dense = self.mode != "lexical"
        started = query.embedding  # for the text understood; a caller may have changed it
        embedding = started[1] if started and started[0] == query.text else self._embed(query.text)
        Probe = tuple[Scope, list[str], tuple[int, "Ranking | None"]]

        def prepare(text: str, scope: Scope) -> Probe:
            """A probe's dense plan (`_plan`: first, as it may start a read) and BM25 hits (into
            `candidates`): no vector."""
            plan = self._plan(scope, pool) if dense else (0, None)
            found = []
            if self.mode != "dense":
                found = self.store.lexical.search(query_terms(text), pool, scope.lexical_filter())
            for chunk_id, article_id, score in found:
                candidate = candidates.setdefault(chunk_id, Candidate(chunk_id))
                candidate.article_id = article_id
                _raise(candidate, "lexical_score", score)
            return scope, [chunk_id for chunk_id, _, _ in found], plan

        wholes = [prepare(lexical_text, scope) for scope in (narrow, base) if scope is not None]
        relaxed: dict[int, str] = {}  # part number -> its name, for the answer's note

        def relax(number: int, part: Part) -> Scope:
            """A date off by a day or two must not lose the report: keep the outlet only."""
            relaxed[number] = part.label or f"part {number + 1}"
            return base.narrowed(part.sources, None, None)

        own: list[Probe] = []
        for number, part in enumerate(query.parts):
            scope = base.narrowed(part.sources, part.first, part.last)
            if (part.first or part.last) and not self.store.lexical.chunk_count(
                scope.lexical_filter()
            ):
                scope = relax(number, part)  # its days hold nothing
            own.append(prepare(part.text, scope))
        vector = None if embedding is None else embedding.result()[0]
        # As many nearest as the most any probe plans for, asked once (cost: docs/retrieval.md).
        most = max((wanted for *_, (wanted, among) in [*wholes, *own] if among is None), default=0)
        asked, found = 0, []

        def nearest(n: int) -> list[tuple[str, float]]:
            """The store's n nearest chunks: one Chroma query, again only if a probe needs more."""
            nonlocal asked, found
            if n > asked and vector is not None:
                asked = max(n, most)
                found = self.store.nearest(vector.tolist(), asked)
            return found[:n]

        def probe(prepared: Probe) -> Ranked:
            """The probe's dense hits (as `_plan` says) and its lexical ones, fused."""
            scope, lexical, (wanted, among) = prepared
            hits: list[tuple[str, float]] = []
            if vector is not None and among is not None:
                hits = among(vector.tolist(), pool)
            elif vector is not None:
                hits = nearest(wanted)
                if hits and not scope.empty:  # the hits the scope admits
                    ids = [chunk_id for chunk_id, _ in hits]
                    inside = set(self.store.lexical.chunk_ids(scope.lexical_filter(), among=ids))
                    hits = [hit for hit in hits if hit[0] in inside][:pool]
            for chunk_id, score in hits:
                _raise(candidates.setdefault(chunk_id, Candidate(chunk_id)), "dense_score", score)
            weights = [config.dense_weight, config.lexical_weight]
            return fuse([[c for c, _ in hits], lexical], weights, config.rrf_k)

        first = probe(wholes[0])
        if narrow is None:
            whole = first
        elif pinned:
            whole = pinned_first(first, probe(wholes[1]))
        else:
            whole = fuse([probe(wholes[1]).ids, first.ids], [1.0, config.near_weight], config.rrf_k)
        parts: list[Ranked] = []
        for number, (part, prepared) in enumerate(zip(query.parts, own, strict=True)):
            ranked, scope = probe(prepared), prepared[0]
            if not ranked.ids and (scope.first or scope.last):
                # Its days hold chunks, but none that the part's words or vector found.
                ranked = probe(prepare(part.text, relax(number, part)))
            elif scope.first is not None and scope.last is not None:
                # "The Verge's report on 2023-11-24": after its best article, the list holds
                # whatever else the outlet published those days, which says nothing about the
                # question; those must not crowd out the whole question's list.
                ranked.votes = config.dated_part_votes
            ranked.part = number
            parts.append(ranked)
        if relaxed:
            query.filters["relaxed"] = [relaxed[number] for number in sorted(relaxed)]
        whole, *parts = self._read([whole, *parts], pool, candidates, vector)
        if query.latest:
            whole = by_recency(whole, candidates, config, dense=vector is not None)

        def more(part: Ranked, through: str | None) -> Ranked:
            """A part's list read on, through the chunk `through` (None: as far as the others)."""
            stop = len(part.unread) if through is None else part.unread.index(through) + 1
            longer = replace(part, ids=part.ids + part.unread[:stop], unread=[], votes=None)
            (read,) = self._read([longer], pool, candidates, vector)
            rest = part.unread[stop:] if len(read.ids) < pool else []
            return replace(read, votes=part.votes, unread=rest)

        question_terms = self.store.lexical.term_weights(query_terms(lexical_text))
        chosen = select(parts, whole, k, candidates, config, question_terms, more)
        return [self._passage(item, candidates) for item in chosen]

    def _embed(self, text: str) -> Future[np.ndarray] | None:
        if self.mode == "lexical":
            return None
        return self._embedding.submit(self.embedder.embed, [text])

    def _plan(self, scope: Scope, pool: int) -> tuple[int, Ranking | None]:
        """How a probe searches its scope densely (no vector needed): (n, None): its chunks among
        the store's n nearest; (0, ranking): among its own chunks, a server's vectors read beside
        the question's embedding (`Store.ranking`; why: docs/retrieval.md)."""
        if scope.empty:
            return pool, None
        lexical, where = self.store.lexical, scope.lexical_filter()
        admitted = lexical.chunk_count(where)
        if not admitted:
            return 0, None
        total = lexical.chunk_count()
        wanted = math.ceil(self.config.scope_margin * pool * total / admitted)
        if wanted > self.config.nearest_limit:
            return 0, self.store.ranking(lexical.chunk_ids(where))
        return min(wanted, total), None

    def _read(
        self, lists: list[Ranked], size: int, candidates: dict[str, Candidate], vector: Any
    ) -> list[Ranked]:
        """The first `size` chunks of each list that may be shown, read (one Chroma read a round
        for all lists): those whose article the registry holds, in the version the chunk was
        written for. A list that votes with its first `votes` chunks only (a dated part) is read
        that far, the rest left `unread` for `select` to read if it walks there. Only these are
        read: each costs 0.1-0.3 ms at 100k."""

        def first(ranked: Ranked) -> int:
            return size if ranked.votes is None else min(ranked.votes, size)

        def done(ranked: Ranked) -> Ranked:
            n = first(ranked)
            return replace(ranked, ids=ranked.ids[:n], unread=ranked.ids[n:] if n < size else [])

        while True:
            ids = dict.fromkeys(c for ranked in lists for c in ranked.ids[: first(ranked)])
            unread = [c for c in ids if candidates[c].visible is None]
            if not unread:
                return [done(ranked) for ranked in lists]
            for chunk in self.store.get_chunks(unread, vectors=vector is not None):
                candidate = candidates[chunk.id]
                candidate.text, candidate.metadata = chunk.text, chunk.metadata
                candidate.article_id = str(chunk.metadata.get("article_id", ""))
                if chunk.vector is not None and candidate.dense_score is None:
                    candidate.dense_score = _cosine(chunk.vector, vector)
            read = [candidates[c] for c in unread if candidates[c].metadata is not None]
            registered = self.store.lexical.articles([c.article_id for c in read])
            for chunk_id in unread:  # not read: gone from Chroma
                candidate = candidates[chunk_id]
                record = registered.get(candidate.article_id)
                written_for = (candidate.metadata or {}).get("fingerprint", "")
                candidate.visible = (
                    candidate.metadata is not None
                    and record is not None
                    and written_for in ("", record.get("fingerprint"))
                )
            lists = [
                replace(ranked, ids=[c for c in ranked.ids if candidates[c].visible is not False])
                for ranked in lists
            ]

    def _passage(self, item: Chosen, candidates: dict[str, Candidate]) -> Passage:
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
