"""An LLM answerer behind the front doors: the CLI and Slack, with the real provider clients
talking to the fake servers of tests/fake_llm.py (real model, real Chroma)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.models import Answer
from bot.slack import answer_blocks
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE, free_port
from tests.fake_llm import MODEL, FakeLLM

runner = CliRunner()


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def test_slack_shows_the_fallback_note_under_the_answer() -> None:
    answer = Answer(
        question="q",
        standalone_question="q",
        text="It was positive [1].",
        citations=(),
        refused=False,
        answerer="extractive",
        fallback_reason="cannot connect to http://127.0.0.1:9/v1",
    )
    blocks = answer_blocks(answer)
    assert blocks[1] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": "_Quoted from the articles, without the language model: cannot connect "
                "to http://127.0.0.1:9/v1._",
            }
        ],
    }
    plain = Answer("q", "q", "It was positive [1].", (), False)
    assert all("language model" not in json.dumps(block) for block in answer_blocks(plain))


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_ask_with_nothing_listening_answers_and_says_why(provider, sample_bot) -> None:
    url = f"http://127.0.0.1:{free_port()}" + ("/v1" if provider == "openai" else "")
    env = {"NEWSBOT_LLM": f"{provider}:{MODEL}", "NEWSBOT_LLM_BASE_URL": url}
    data_dir = str(sample_bot.settings.data_dir)
    result = runner.invoke(app, ["ask", QATAR_QUESTION, "--data-dir", data_dir], env=env)
    assert result.exit_code == 0, result.output
    text, sources = result.stdout.split("\nSources:\n")
    assert "[1]" in text
    assert f"without the language model: cannot connect to {url}." in " ".join(text.split())
    assert "2024-02-07" in sources

    result = runner.invoke(app, ["ask", "--json", QATAR_QUESTION, "--data-dir", data_dir], env=env)
    answer = json.loads(result.stdout)
    assert answer["answerer"] == "extractive"
    assert answer["fallback_reason"] == f"cannot connect to {url}"
    assert all(c["quote"] in SAMPLE_ARTICLE.read_text() for c in answer["citations"])
