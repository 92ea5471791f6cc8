"""The Bot as LangChain sees it (README, "In LangChain"): `bot.as_retriever()`, a BaseRetriever
of cited passages, and `bot.as_chain()`, a Runnable that answers as `newsbot ask` does. Tracers
see the chain's run and, as its children, the retrieval (a NewsRetriever run) and the chat model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

from langchain_core.callbacks import CallbackManagerForChainRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig

from bot.errors import NewsbotError
from bot.models import Answer, DateLike, Turn
from bot.retrieve import Passage, Retrieve  # at run time: pydantic checks the retriever's fields

if TYPE_CHECKING:
    from bot.retrieve import Query, Retriever


class Question(TypedDict):
    """What the chain takes besides a bare question string."""

    question: str
    history: NotRequired[Sequence[Turn]]
    since: NotRequired[DateLike]
    until: NotRequired[DateLike]


ChainInput = str | Question


class Answering(Protocol):
    """What the chain asks of a Bot (not Bot itself: bot/core.py imports this module); its
    calls pass the chain's input as keywords, so only the results are typed."""

    @property
    def retriever(self) -> Retriever: ...

    @property
    def ask(self) -> Callable[..., Answer]: ...

    @property
    def stream(self) -> Callable[..., Iterator[str | Answer]]: ...


class NewsRetriever(BaseRetriever):
    """newsbot's hybrid retrieval as LangChain Documents (`search` is `Bot.search`):
    `page_content` is verbatim article text, `metadata` its article, offsets and scores."""

    search: Callable[..., list[Passage]]
    k: int = 6
    since: datetime | None = None
    until: datetime | None = None

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        since: DateLike = None,
        until: DateLike = None,
    ) -> list[Document]:
        passages = self.search(
            query,
            k=k or self.k,
            since=self.since if since is None else since,
            until=self.until if until is None else until,
        )
        return [document(passage) for passage in passages]


def document(passage: Passage) -> Document:
    scores = {"score": passage.score, "dense_score": passage.dense_score, "part": passage.part}
    return Document(passage.text, id=passage.chunk_id, metadata=passage.metadata | scores)


class AnswerChain(Runnable[ChainInput, str | Answer]):
    """`Bot.ask` as a Runnable: invoke, batch and ainvoke return the Answer; stream yields text
    pieces (as `Bot.stream` does), then the Answer: hence the output type `str | Answer`."""

    def __init__(self, bot: Answering) -> None:
        self.bot = bot

    def invoke(self, input: ChainInput, config: RunnableConfig | None = None, **_: Any) -> Answer:
        answer = self._call_with_config(self._answer, input, config, run_type="chain")
        assert isinstance(answer, Answer)  # only stream yields str pieces
        return answer

    def stream(
        self, input: ChainInput, config: RunnableConfig | None = None, **_: Any
    ) -> Iterator[str | Answer]:
        yield from self._transform_stream_with_config(
            iter([input]), self._pieces, config, run_type="chain"
        )

    # LangChain calls these two with the chain's run and the config for its children.
    def _answer(
        self, input: ChainInput, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> str | Answer:
        return self.bot.ask(**_arguments(input), retrieve=self._retrieval(config))

    def _pieces(
        self,
        inputs: Iterator[ChainInput],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[str | Answer]:
        for input in inputs:
            yield from self.bot.stream(**_arguments(input), retrieve=self._retrieval(config))

    def _retrieval(self, config: RunnableConfig) -> Retrieve:
        """The bot's retrieval run as a NewsRetriever under the chain's run (`config` holds its
        child callbacks): tracers see the question as understood and the Documents found."""

        def retrieve(query: Query, k: int) -> list[Passage]:
            found: list[Passage] = []

            def search(_question: str, **_: Any) -> list[Passage]:
                found.extend(self.bot.retriever.search(query, k))
                return found

            NewsRetriever(search=search, k=k).invoke(query.text, config)
            return found

        return retrieve


def _arguments(input: ChainInput) -> dict[str, Any]:
    if isinstance(input, str):
        return {"question": input}
    if not isinstance(input, dict) or not isinstance(input.get("question"), str):
        raise NewsbotError(
            f"the chain's input is {type(input).__name__}, not a question",
            hint='pass a string, or {"question": ..., "history": [...], "since": ..., '
            '"until": ...}',
        )
    return {key: input.get(key) for key in ("question", "history", "since", "until")}
