"""The seed question still finds its answer among many articles that share its words."""

from __future__ import annotations

import pytest

from tests.conftest import EVAL, QATAR_QUESTION, SAMPLES

pytestmark = pytest.mark.slow

# 326 real news excerpts (Sept-Dec 2023), many about Israel and Hamas.
CORPUS = EVAL / "multihop_corpus.jsonl"


def test_the_qatar_answer_survives_a_crowd_of_related_articles(make_bot) -> None:
    bot = make_bot()
    report = bot.ingest([str(SAMPLES), str(CORPUS)])
    assert report.failed == 0 and report.new == 327
    answer = bot.ask(QATAR_QUESTION)
    assert not answer.refused, answer.text
    assert "in general we can say that it was positive" in answer.text
    assert any(
        c.published_at and c.published_at.date().isoformat() == "2024-02-07"
        for c in answer.citations
    )
