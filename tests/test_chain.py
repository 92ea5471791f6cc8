"""The Bot's LangChain faces: `as_retriever()` passes LangChain's own standard retriever tests,
and `as_chain()` is a Runnable that answers as `Bot.ask` does, traced by LangChain callbacks.
Over the sample article with the hashing embedder (tests/fake_embedder.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_tests.integration_tests import RetrieversIntegrationTests

from bot import Answer, NewsbotError, Turn
from bot.chain import NewsRetriever
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE

ARTICLE_TEXT = SAMPLE_ARTICLE.read_text(encoding="utf-8")


class TestNewsRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _bot(self, fake_bot) -> None:
        self.bot = fake_bot

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return NewsRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"search": self.bot.search, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return QATAR_QUESTION


def test_documents_are_verbatim_article_text_with_their_article(fake_bot) -> None:
    retriever = fake_bot.as_retriever(k=2)
    documents = retriever.invoke(QATAR_QUESTION)
    assert len(documents) == 2 and all(isinstance(d, Document) for d in documents)
    for document in documents:
        assert document.page_content in ARTICLE_TEXT
        assert document.metadata["title"].startswith("Ceasefire talks")
        assert document.metadata["chunk_end"] - document.metadata["chunk_start"] == len(
            document.page_content
        )
    assert len(retriever.invoke(QATAR_QUESTION, k=3)) == 3


def test_the_retrievers_dates_filter_what_it_finds(fake_bot) -> None:
    assert fake_bot.as_retriever(since="2024-02-07", until="2024-02-07").invoke(QATAR_QUESTION)
    assert fake_bot.as_retriever(since="2024-03-01").invoke(QATAR_QUESTION) == []
    assert fake_bot.as_retriever().invoke(QATAR_QUESTION, until="2024-01-31") == []
    with pytest.raises(NewsbotError, match="'last week' is not a date"):
        fake_bot.as_retriever(since="last week")


def test_the_chain_answers_as_ask_does(fake_bot) -> None:
    chain = fake_bot.as_chain()
    expected = fake_bot.ask(QATAR_QUESTION)

    answer = chain.invoke(QATAR_QUESTION)
    assert isinstance(answer, Answer) and answer.citations
    assert (answer.text, answer.citations) == (expected.text, expected.citations)
    assert chain.invoke({"question": QATAR_QUESTION, "until": "2024-01-31"}).refused

    *pieces, last = list(chain.stream(QATAR_QUESTION))
    assert isinstance(last, Answer) and last.text == expected.text
    assert all(isinstance(piece, str) for piece in pieces)

    batch = chain.batch([QATAR_QUESTION, {"question": QATAR_QUESTION, "since": "2024-03-01"}])
    assert [a.refused for a in batch] == [False, True]
    assert asyncio.run(chain.ainvoke(QATAR_QUESTION)).text == expected.text


def test_the_chain_takes_the_conversation_so_far(fake_bot) -> None:
    history = [Turn(question=QATAR_QUESTION, answer="Qatar said it was positive [1].")]
    answer = fake_bot.as_chain().invoke({"question": "What about Blinken?", "history": history})
    assert answer.question == "What about Blinken?"
    assert answer.standalone_question != answer.question  # rewritten with the history


def test_tracers_see_the_chains_runs_and_failures(fake_bot) -> None:
    tracer = RunCollectorCallbackHandler()
    chain = fake_bot.as_chain()
    answer = chain.invoke(QATAR_QUESTION, config={"callbacks": [tracer], "run_name": "news"})
    list(chain.stream(QATAR_QUESTION, config={"callbacks": [tracer]}))
    with pytest.raises(NewsbotError, match="the question is empty"):
        chain.invoke("  ", config={"callbacks": [tracer]})

    first, streamed, failed = tracer.traced_runs
    assert (first.name, first.run_type) == ("news", "chain")
    assert first.inputs == {"input": QATAR_QUESTION}
    assert first.outputs == {"output": answer} and first.error is None
    assert isinstance(streamed.outputs["output"], Answer)
    assert "the question is empty" in (failed.error or "")


def test_a_chat_model_answering_inside_the_chain_is_its_child_run(fake_bot) -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from bot import Bot

    model = GenericFakeChatModel(messages=iter([AIMessage(content="Qatar was upbeat [1].")]))
    bot = Bot(fake_bot.settings, fake_bot.store, fake_bot.embedder, chat_model=model)
    tracer = RunCollectorCallbackHandler()

    answer = bot.as_chain().invoke(QATAR_QUESTION, config={"callbacks": [tracer]})

    [run] = tracer.traced_runs
    assert run.outputs == {"output": answer}
    assert [child.run_type for child in run.child_runs] == ["retriever", "llm"]


def test_the_chains_retrieval_is_a_retriever_run_under_the_chains_run(fake_bot) -> None:
    tracer = RunCollectorCallbackHandler()
    chain = fake_bot.as_chain()
    answer = chain.invoke(QATAR_QUESTION, config={"callbacks": [tracer]})
    *_, streamed = chain.stream(QATAR_QUESTION, config={"callbacks": [tracer]})

    for run, result in zip(tracer.traced_runs, (answer, streamed), strict=True):
        [retrieval] = run.child_runs
        assert (retrieval.run_type, retrieval.name) == ("retriever", "NewsRetriever")
        assert retrieval.parent_run_id == run.id and retrieval.trace_id == run.trace_id
        assert retrieval.inputs == {"query": result.standalone_question}
        documents = retrieval.outputs["documents"]
        assert documents and all(d.page_content in ARTICLE_TEXT for d in documents)
        # The Answer cites the passages this run found.
        cited = {(c.start, c.end) for c in result.citations}
        found = [(d.metadata["chunk_start"], d.metadata["chunk_end"]) for d in documents]
        assert all(any(s <= start and end <= e for s, e in found) for start, end in cited)
