"""Bot: the one place where reading, indexing, retrieval and answering are wired together.

Every front door (CLI, Slack, Python) calls Bot.ask/stream and renders the same Answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from threading import Lock
from typing import TYPE_CHECKING, Any, cast

from bot.errors import NewsbotError
from bot.models import Answer, DateLike, StoreStats, Turn
from bot.settings import Settings, load_settings
from index.article import Article, ReadFailure
from index.dates import to_datetime

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from bot.chain import AnswerChain, NewsRetriever
    from bot.llm import Answerer
    from bot.retrieve import Passage, Retrieve, Retriever
    from index.embed import Embedder
    from index.ingest import Ingestor, IngestReport, Progress
    from index.store import Store

log = logging.getLogger(__name__)


def as_datetime(
    value: DateLike, *, end_of_day: bool = False, name: str = "date"
) -> datetime | None:
    """`index.dates.to_datetime`, its error named for the argument (`since`, `until`)."""
    try:
        return to_datetime(value, end_of_day=end_of_day)
    except ValueError:
        raise NewsbotError(f"{name} {value!r} is not a date", hint="use YYYY-MM-DD") from None


def as_window(since: DateLike, until: DateLike) -> tuple[datetime | None, datetime | None]:
    """`since` and `until` as datetimes; a bare `until` day counts whole (it is inclusive)."""
    return as_datetime(since, name="since"), as_datetime(until, end_of_day=True, name="until")


def open_store(settings: Settings) -> Store:
    """The store the settings name (index/store.py), with the analyser its lexical index uses.
    Opens nothing yet; needs no model."""
    from index.store import Store
    from index.text import terms

    return Store.open(settings, terms)


class Bot:
    """Question answering over the articles in one store (used as bot/__init__.py shows)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder | None = None,
        *,
        chat_model: BaseChatModel | None = None,
        check_identity: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._check_identity = check_identity
        self._chat_model = chat_model
        self._loading = Lock()

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded on first use: stats and reset never need it."""
        with self._loading:
            if self._embedder is None:
                from index.embed import load_embedder

                embedder = load_embedder(self.settings)
                if self._check_identity:
                    self.store.check_identity(embedder.identity)
                self._embedder = embedder
            return self._embedder

    @cached_property
    def answerer(self) -> Answerer:
        """Extractive unless settings.llm names a chat model or one was passed in."""
        from bot.llm import Answerer

        return Answerer(self.settings, self._chat_model, embedder=self.embedder)

    @cached_property
    def retriever(self) -> Retriever:
        from bot.retrieve import Retriever

        return Retriever(self.store, self.embedder)

    @cached_property
    def ingestor(self) -> Ingestor:
        """The Ingestor, made on first use: a process that only asks needs no token counter."""
        from index.embed import TokenCounter
        from index.ingest import ChunkingConfig, Ingestor

        config = ChunkingConfig(
            chunk_tokens=self.settings.chunk_tokens,
            overlap_sentences=self.settings.chunk_overlap,
            max_model_tokens=self.embedder.max_tokens,
            model=self.settings.embedding_model,
        )
        counter = TokenCounter(self.settings.embedding_model)
        return Ingestor(self.store, self.embedder, counter, config)

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        *,
        check_identity: bool = True,
        chat_model: BaseChatModel | None = None,
        **overrides: object,
    ) -> Bot:
        """The bot over the store the settings name (created when missing). Opening reads no
        model and no Chroma: the embedding model loads when a question or an ingest needs it.

        `check_identity=False` opens a store built with another embedding model or precision;
        only `reindex()` should be called on it then. `chat_model` (any LangChain chat model)
        answers instead of the extractive answerer or the model settings.llm names.
        """
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = load_settings(**{**settings.model_dump(), **overrides})
        store = open_store(settings)
        return cls(settings, store, chat_model=chat_model, check_identity=check_identity)

    def ingest(
        self,
        sources: Iterable[str | Article] | str,
        *,
        progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Read, chunk, embed and store articles from paths, folders, globs, URLs or feeds.

        Returns an IngestReport (new / updated / unchanged / duplicates / failures / chunks).
        """
        from index.errors import DamagedIndexError

        listed = [sources] if isinstance(sources, str) else list(sources)
        with self.store.turn():
            try:
                self.store.refresh()  # the registry the run plans against holds every commit
                return self.ingestor.run(self._read(listed), progress=progress)
            except DamagedIndexError:
                # Chroma fails the first read or write of that collection, before this run
                # commits anything: the run, crash-safe, starts again on the repaired store.
                log.warning("%s: repairing the store before ingesting", self.store.where)
                self.repair()
                self.store.refresh()
                return self.ingestor.run(self._read(listed), progress=progress)

    def repair(
        self,
        *,
        progress: Callable[[str, int], None] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> dict[str, int]:
        """Rebuild the vector index of each of the store's collections that a process stopped
        in Chroma's save left damaged, or whose rebuild was cut short (docs/store.md). The model
        loads only if the chunks' index is damaged. `progress(collection, records)` follows it;
        `on_wait` is called if it waits for a running ingest. Returns the records written
        again, by collection (empty: nothing damaged)."""
        from index.embed import load_embedder
        from index.repair import repair

        def ingestor() -> Ingestor:
            if self._embedder is None:  # not checked: a repair may write every vector again
                self._embedder = load_embedder(self.settings)
            return self.ingestor

        with self.store.turn(on_wait):
            return repair(self.store, ingestor, progress)

    def reindex(self, *, progress: Callable[[Progress], None] | None = None) -> int:
        """Re-embed every stored chunk with the configured model, backend and precision.

        Use it after changing NEWSBOT_EMBEDDING_PRECISION or the model; the articles' sources
        are not read again. Returns the number of chunks re-embedded.
        """
        with self.store.turn():
            self.store.refresh()  # else a stale index is re-embedded and saved over the newer one
            done = int(self.ingestor.reindex(progress=progress))
            self.store.commit({})  # other processes reload the re-embedded index
            return done

    def _read(self, sources: Sequence[str | Article]) -> Iterator[Article | ReadFailure]:
        paths = [source for source in sources if isinstance(source, str)]
        yield from (source for source in sources if isinstance(source, Article))
        if paths:
            from index.read import iter_articles

            yield from iter_articles(paths, self.settings)

    def warm(self, *, index: bool = True, require_articles: bool = False) -> None:
        """Load what the first question would otherwise wait for (and fail now if it cannot):
        the embedding model, Chroma (its first read loads its vector index), the prompts and,
        with `index`, the lexical index caught up with the store's log; with `require_articles`,
        an empty store is the error, without waiting for the model. The model's session and
        Chroma's first read load on two threads; what holds the GIL (the answering side's imports)
        runs on this one beside the first read, once the model is ready (`newsbot ask`: 0.15 s
        less at 100k, docs/benchmarks.md "Scale", 2026-12-07 06:00)."""
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        from index.embed import import_backend, load_embedder

        def answering() -> None:
            _ = self.answerer, self.retriever  # checks the model's identity, reads the prompts
            self.embedder.embed([""])  # what an embedder loads on first use (its tokenizer)

        loading = self._embedder is None
        if loading:
            import_backend(self.settings)
        pool = ThreadPoolExecutor(2, thread_name_prefix="newsbot-warm")
        try:
            # With the index, this process asks: each question on two intra-op threads
            # (OnnxEmbedder `questions`; its own ingests ~6% slower, docs/benchmarks.md "Ingest").
            model = pool.submit(
                lambda: load_embedder(self.settings, questions=index) if loading else None
            )
            holds_chunks = pool.submit(self.store.holds_chunks)  # opens Chroma, loads its index
        finally:
            pool.shutdown(wait=False)  # what was submitted runs on; an error waits for none of it
        # The model is usually ready first; if it is still loading (a first run exports it), an
        # empty store is told before it.
        loads: list[Future[Any]] = [model, holds_chunks]
        wait(loads, return_when=FIRST_COMPLETED)
        ready = model.done() and model.exception() is None
        if ready:
            answering()
        if not holds_chunks.result() and require_articles:
            raise NewsbotError(
                "nothing indexed yet: run `newsbot ingest PATH`",
                hint=f"the store {self.store.where} (collection {self.store.name}) holds no "
                "articles; e.g. newsbot ingest samples/articles",
            )
        model.result()  # the model's error, if any, is raised here
        if not ready:
            answering()
        if index:
            self.store.refresh()

    def stats(self) -> StoreStats:
        """What the store holds (no model needed)."""
        return cast(StoreStats, self.store.stats())

    def reset(self, *, on_wait: Callable[[], None] | None = None) -> None:
        """Delete every article and chunk of this store, after any ingest that is writing to it
        (`on_wait` is called first when one is). Needs no model."""
        with self.store.turn(on_wait):
            self.store.reset()

    def search(
        self, question: str, *, k: int | None = None, since: DateLike = None, until: DateLike = None
    ) -> list[Passage]:
        """The passages retrieval finds for a question (best first), without answering."""
        since, until = as_window(since, until)
        query = self.retriever.understand(question.strip(), since=since, until=until)
        return list(self.retriever.search(query, k or self.settings.k))

    def as_retriever(
        self, *, k: int | None = None, since: DateLike = None, until: DateLike = None
    ) -> NewsRetriever:
        """A LangChain BaseRetriever over this bot: `invoke(question, k=...)` -> Documents."""
        from bot.chain import NewsRetriever

        since, until = as_window(since, until)
        return NewsRetriever(search=self.search, k=k or self.settings.k, since=since, until=until)

    def as_chain(self) -> AnswerChain:
        """A LangChain Runnable: a question, or {"question", "history", "since", "until"} ->
        Answer, with invoke, stream, batch, ainvoke and LangChain callbacks."""
        from bot.chain import AnswerChain

        return AnswerChain(self)

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        k: int | None = None,
        retrieve: Retrieve | None = None,
    ) -> Answer:
        """Answer from the stored articles, citing each claim; refuse when they don't say."""
        *_, answer = self.stream(
            question, history=history, since=since, until=until, k=k, retrieve=retrieve
        )
        assert isinstance(answer, Answer)  # the stream's last item; before it, str pieces
        return answer

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] | None = None,
        since: DateLike = None,
        until: DateLike = None,
        k: int | None = None,
        retrieve: Retrieve | None = None,
    ) -> Generator[str | Answer, None, None]:
        """Yield the answer text as it is produced (str pieces), then the final Answer.

        A follow-up is first rewritten into a standalone question from `history`; with a chat
        model the pieces are its tokens (citations already checked), otherwise one piece.
        `retrieve(query, k)` finds the passages instead of `self.retriever.search` (the LangChain
        chain passes one that runs as a retriever run, which its tracers see).
        """
        from bot.llm import Reply

        question = question.strip()
        if not question:
            raise NewsbotError("the question is empty", hint="ask something about the articles")
        since, until = as_window(since, until)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        standalone = self.answerer.standalone(question, history)
        if history:
            timings["condense"] = time.perf_counter() - started
        mark = time.perf_counter()
        query = self.retriever.understand(standalone, since=since, until=until)
        passages = (retrieve or self.retriever.search)(query, k or self.settings.k)
        timings["retrieve"] = time.perf_counter() - mark
        mark = time.perf_counter()
        reply: Reply | None = None
        for item in self.answerer.stream(standalone, passages, query=query):
            if isinstance(item, Reply):
                reply = item
            else:
                yield item
        assert reply is not None
        draft = reply.draft
        timings["answer"] = time.perf_counter() - mark
        timings.update(reply.timings)
        timings["total"] = time.perf_counter() - started
        yield Answer(
            question=question,
            standalone_question=standalone,
            text=draft.text,
            citations=draft.citations,
            refused=draft.refused,
            timings=timings,
            filters=dict(query.filters),
            answerer=reply.answerer,
            fallback_reason=reply.fallback_reason,
        )
