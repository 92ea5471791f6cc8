"""An LLM answerer behind the front doors: the CLI and Slack, with the real provider clients
talking to the fake servers of tests/fake_llm.py (real model, real Chroma)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.models import Answer
from bot.slack_messages import answer_blocks
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE, free_port
from tests.fake_llm import MODEL, FakeLLM, Script

runner = CliRunner()


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


def test_slack_and_markdown_show_the_fallback_note_under_the_answer() -> None:
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
    # The Python API's Markdown says it too.
    assert answer.to_markdown().startswith(
        "It was positive [1].\n\n_Quoted from the articles, without the language model: "
    )
    assert "language model" not in plain.to_markdown()


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


# -- streaming through the real client -------------------------------------------------------------


def llm_bot(sample_bot, provider: str, server: FakeLLM, **overrides):
    """The sample store's Bot, answering with `provider` at the fake server."""
    from bot import Bot
    from bot.settings import load_settings

    settings = load_settings(
        **{
            **sample_bot.settings.model_dump(),
            "llm": f"{provider}:{MODEL}",
            "llm_base_url": server.url_for(provider),
            **overrides,
        }
    )
    return Bot(settings, sample_bot.store, sample_bot.embedder)


def cited_reply(bot) -> str:
    passages = bot.retriever.search(bot.retriever.understand(QATAR_QUESTION), bot.settings.k)
    m = next(i for i, p in enumerate(passages, 1) if "was upbeat" in p.text)
    n = next(i for i, p in enumerate(passages, 1) if "in general we can say that it" in p.text)
    return (
        f"Qatar's prime minister was upbeat [{m}]. He called Hamas's reply broadly positive, "
        f"though he would not go into details [{n}]."
    )


ANSWER = (
    "Qatar's prime minister was upbeat [1]. He called Hamas's reply broadly positive, though he "
    "would not go into details [2]."
)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "ollama"])
def test_bot_streams_the_servers_tokens_and_records_model_time_and_tokens(
    provider, sample_bot, server
) -> None:
    bot = llm_bot(sample_bot, provider, server)
    server.script(Script(cited_reply(bot)))
    items = list(bot.stream(QATAR_QUESTION))
    pieces, answer = items[:-1], items[-1]
    assert isinstance(answer, Answer)
    assert answer.answerer == f"llm:{provider}:{MODEL}" and answer.fallback_reason is None
    assert len(pieces) >= 10 and "".join(pieces) == answer.text == ANSWER
    assert "in general we can say that it was positive" in answer.citations[1].quote
    assert answer.timings["input_tokens"] == 812 and answer.timings["output_tokens"] == 41
    assert 0 < answer.timings["model"] <= answer.timings["answer"] <= answer.timings["total"]


@pytest.mark.slow
def test_ask_prints_the_streamed_answer_once_then_its_sources(sample_bot, server) -> None:
    bot = llm_bot(sample_bot, "openai", server)
    server.script(Script(cited_reply(bot)))
    env = {"NEWSBOT_LLM": f"openai:{MODEL}", "NEWSBOT_LLM_BASE_URL": server.openai_url}
    data_dir = str(sample_bot.settings.data_dir)
    result = runner.invoke(app, ["ask", QATAR_QUESTION, "--data-dir", data_dir], env=env)
    assert result.exit_code == 0, result.output
    text, sources = result.stdout.split("\nSources:\n")
    assert text.strip() == ANSWER  # streamed, and not printed a second time
    assert "language model" not in text
    assert sources.startswith("[1] ") and "[2] " in sources
    assert server.requests[0].body["stream"] is True


@pytest.mark.slow
def test_chat_streams_the_servers_answer_once(sample_bot, server) -> None:
    from io import StringIO

    from rich.console import Console

    from bot.cli import ChatSession

    bot = llm_bot(sample_bot, "ollama", server)
    server.script(Script(cited_reply(bot)))
    screen = StringIO()
    session = ChatSession(bot, Console(file=screen, width=400))
    assert session.streaming
    assert session.handle(QATAR_QUESTION)
    out = screen.getvalue()
    assert out.count("broadly positive") == 1
    assert out.index(ANSWER) < out.index("Sources:")


@pytest.mark.slow
def test_chat_shows_the_fallback_answer_and_why(sample_bot, server) -> None:
    from io import StringIO

    from rich.console import Console

    from bot.cli import ChatSession

    bot = llm_bot(sample_bot, "openai", server)
    reply = cited_reply(bot)
    server.script(Script(reply + " More words here that never arrive.", break_after=20))
    screen = StringIO()
    session = ChatSession(bot, Console(file=screen, width=400))
    assert session.handle(QATAR_QUESTION)
    out = " ".join(screen.getvalue().split())
    assert session.last is not None and session.last.answerer == "extractive"
    cut, rest = out.split(" [cut off] ")
    assert cut.startswith("Qatar's prime minister was upbeat [1].")
    assert rest.startswith(session.last.text)  # the extractive answer in full, then its note
    assert f"without the language model: the reply from {server.openai_url} broke off" in rest


@pytest.mark.slow
def test_slack_updates_the_placeholder_as_the_server_streams(
    sample_bot, server, fake_slack, slack_config
) -> None:
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.slack import WorkerPool, register
    from tests.fake_slack import SECRET, TOKEN, event_body, signed_headers

    bot = llm_bot(sample_bot, "openai", server)
    server.script(Script(cited_reply(bot), piece_delay=0.05))  # about two seconds of writing
    pool = WorkerPool(1, 5)
    app = App(
        client=WebClient(token=TOKEN, base_url=fake_slack.api_url),
        signing_secret=SECRET,
        process_before_response=True,
    )
    register(app, bot, slack_config(), executor=pool, update_interval=0.2)
    from slack_bolt import BoltRequest

    raw = json.dumps(event_body(f"<@UBOT> {QATAR_QUESTION}"))
    app.dispatch(BoltRequest(body=raw, headers=signed_headers(raw, SECRET)))
    assert pool.wait_idle(timeout=120)
    pool.shutdown()

    updates = [call.params for call in fake_slack.calls_to("chat.update")]
    *partials, final = updates
    assert partials, "the placeholder was never updated while the model wrote"
    for partial in partials:
        assert partial["text"].endswith(" …") and "blocks" not in partial
        assert ANSWER.startswith(partial["text"][: -len(" …")].rstrip())
    assert final["blocks"][0]["text"]["text"] == ANSWER
    assert all("language model" not in json.dumps(block) for block in final["blocks"])


@pytest.mark.slow
def test_eval_runs_against_a_model_server(server, tmp_path) -> None:
    from tests.conftest import EVAL

    env = {"NEWSBOT_LLM": f"ollama:{MODEL}", "NEWSBOT_LLM_BASE_URL": server.ollama_url}
    server.script(Script("Whatever the question, this reply cites nothing."))
    report = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["eval", str(EVAL / "rgb_dev.jsonl"), "--limit", "1", "--json-out", str(report)],
        env={**env, "NEWSBOT_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["answerer"] == f"ollama:{MODEL}"
    assert server.requests and all(r.path == "/api/chat" for r in server.requests)
    # Every question the model was asked fell back, and the report says so and why.
    assert written["fallbacks"] == {"the model's reply cited no passage": len(server.requests)}
    assert "Answered extractively instead" in result.stdout
