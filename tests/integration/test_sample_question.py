"""The seed question end to end: real embedding model, real Chroma, the sample article."""

from __future__ import annotations

import pytest

from bot import Answer
from index.read import read_text
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE

pytestmark = pytest.mark.slow


def sample_body() -> str:
    return read_text(SAMPLE_ARTICLE.read_text(encoding="utf-8"), str(SAMPLE_ARTICLE)).body


def test_qatar_question_is_answered_with_al_thanis_statement(sample_bot) -> None:
    answer = sample_bot.ask(QATAR_QUESTION)

    assert not answer.refused
    assert answer.standalone_question == QATAR_QUESTION
    statement = next(
        c for c in answer.citations if "in general we can say that it was positive" in c.quote
    )
    assert statement.date == "2024-02-07"
    assert f"[{statement.n}]" in answer.text
    # Who said it: "said al Thani", and the sentence that says he is Qatar's prime minister.
    assert "al Thani" in answer.text
    assert any("Qatari Prime Minister" in c.quote for c in answer.citations)
    assert answer.timings["total"] > 0


def test_citations_are_verbatim_slices_of_the_article_file(sample_bot) -> None:
    body = sample_body()
    answer = sample_bot.ask(QATAR_QUESTION)
    assert answer.citations
    for citation in answer.citations:
        assert body[citation.start : citation.end] == citation.quote
        assert citation.quote in answer.text
        assert citation.title and citation.passage
        assert citation.quote in citation.passage


def test_unrelated_question_is_refused_with_the_closest_passages(sample_bot) -> None:
    answer = sample_bot.ask("Who won the 2023 World Series?")

    assert answer.refused
    assert answer.text.startswith("The articles don't say.")
    assert answer.citations
    body = sample_body()
    for citation in answer.citations:
        assert body[citation.start : citation.end] == citation.quote
    assert "Closest evidence:" in answer.to_markdown()


def test_stream_yields_text_then_the_answer(sample_bot) -> None:
    items = list(sample_bot.stream(QATAR_QUESTION))
    *pieces, answer = items
    assert isinstance(answer, Answer)
    assert pieces and all(isinstance(piece, str) for piece in pieces)
    assert "".join(pieces) == answer.text


def test_answer_renders_as_markdown_and_dict(sample_bot) -> None:
    answer = sample_bot.ask(QATAR_QUESTION)
    markdown = answer.to_markdown()
    assert "Sources:" in markdown and "2024-02-07" in markdown
    data = answer.to_dict()
    assert data["refused"] is False
    assert data["citations"][0]["published_at"].startswith("2024-02-07")
