"""The `newsbot` command line, run in-process with typer's CliRunner (real model, real Chroma)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import QATAR_QUESTION, REPO, SAMPLE_ARTICLE, SAMPLES

runner = CliRunner()

COMMANDS = [
    ["ingest"],
    ["ask"],
    ["chat"],
    ["stats"],
    ["reset"],
    ["reindex"],
    ["model", "export"],
    ["slack"],
    ["watch"],
    ["eval"],
]

HARBOUR = {
    "title": "Harbour reopens",
    "body": "The northern harbour reopened on Monday after a week of storms. "
    "Fishing boats returned before dawn and the ferry to the islands runs again.",
    "published_at": "2024-03-04",
    "source": "Coast Daily",
    "url": "https://example.com/harbour",
}
LIBRARY = {
    "title": "Library extends hours",
    "body": "The city library will stay open until ten in the evening from April. "
    "The council approved the extra budget on Tuesday.",
    "date": "2024-03-05",
    "source": "Town Crier",
}


def newsbot(*args: str | Path, input: str | None = None, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(arg) for arg in args], input=input, env=env)


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with the sample articles ingested through the CLI (read-only, please)."""
    data = tmp_path_factory.mktemp("cli-samples")
    result = newsbot("ingest", SAMPLES, "--data-dir", data)
    assert result.exit_code == 0, result.output
    return data


# -- no model needed -----------------------------------------------------------------------------
@pytest.mark.slow  # a Python process per case
@pytest.mark.parametrize("args", [["--help"], ["ask", "--help"]])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        f"sys.argv = ['newsbot', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ['torch', 'sentence_transformers', 'chromadb', 'langchain', 'langchain_core']\n"
        "print('HEAVY:', [name for name in heavy if name in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: newsbot" in result.stdout
    assert "HEAVY: []" in result.stdout


def test_every_command_has_help_with_an_example() -> None:
    for command in COMMANDS:
        result = newsbot(*command, "--help")
        assert result.exit_code == 0, (command, result.output)
        assert re.search(r"Examples:\n +(newsbot|NEWSBOT_)", result.output), command
    assert "newsbot 0.1.0" in newsbot("--version").output


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert newsbot("ingest").exit_code == 2  # no path
    result = newsbot("ask", "--since", "last week", "Who?", "--data-dir", tmp_path)
    assert result.exit_code == 2
    assert "not a date like 2024-02-07" in result.output
    assert newsbot("ask", "--since", "2024-03-01", "--until", "2024-02-01", "x").exit_code == 2
    assert newsbot("model", "export", "--precision", "int4").exit_code == 2
    assert newsbot("frobnicate").exit_code == 2


def test_a_bad_setting_is_one_red_line_and_debug_adds_the_traceback(tmp_path: Path) -> None:
    env = {"NEWSBOT_BATCH_SIZE": "0"}
    result = newsbot("stats", "--data-dir", tmp_path, env=env)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: bad setting: batch_size (NEWSBOT_BATCH_SIZE)")
    assert len(lines) == 2  # the error, then its hint
    assert "check the environment" in lines[1]
    assert "Traceback" not in result.output

    debug = newsbot("--debug", "stats", "--data-dir", tmp_path, env=env)
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "error: bad setting" in debug.stderr


def test_asking_an_empty_store_says_how_to_fill_it(tmp_path: Path) -> None:
    for args in (["ask", QATAR_QUESTION], ["chat"]):
        result = newsbot(*args, "--data-dir", tmp_path, input="Hello?\n")
        assert result.exit_code == 1
        assert "error: nothing indexed yet: run `newsbot ingest PATH`" in result.stderr
        assert "Sources" not in result.output

    # Told before the model is waited for: an empty store is the error even when it can't load.
    env = {"NEWSBOT_EMBEDDING_MODEL": "no-such-model"}
    result = newsbot("ask", QATAR_QUESTION, "--data-dir", tmp_path, env=env)
    assert result.stderr.startswith("error: nothing indexed yet"), result.stderr


def test_slack_without_a_token_says_which_one(tmp_path: Path) -> None:
    result = newsbot("slack", "--socket", "--data-dir", tmp_path)  # conftest unsets SLACK_*
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the Slack bot token is not set")


@pytest.mark.slow
def test_newsbot_slack_loads_the_model_and_the_index_once_before_it_connects(
    tmp_path: Path, fake_slack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.slack
    from bot.core import Bot
    from tests.fake_slack import APP_TOKEN, SECRET, TOKEN

    warmed: list[dict[str, Any]] = []
    warm, connect = Bot.warm, "apps.connections.open"

    def counted(self: Bot, **options: Any) -> None:
        warmed.append({**options, "connected": len(fake_slack.calls_to(connect))})
        warm(self, **options)

    @contextmanager
    def stopped_at_once() -> Iterator[threading.Event]:  # as if Ctrl-C came once connected
        stop = threading.Event()
        stop.set()
        yield stop

    monkeypatch.setattr(Bot, "warm", counted)
    monkeypatch.setattr(bot.slack, "stop_signals", stopped_at_once)
    env = {
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "NEWSBOT_SLACK_API_URL": fake_slack.api_url,
    }
    result = newsbot("slack", "--socket", "--data-dir", tmp_path, env=env)
    assert result.exit_code == 0, result.output
    assert fake_slack.calls_to(connect)
    # One warm, with the lexical index, before Slack can send a question.
    (options,) = warmed
    assert options["index"] and options["connected"] == 0


# -- with the model ------------------------------------------------------------------------------
@pytest.mark.slow
def test_ingesting_the_samples_again_reports_them_unchanged(samples_dir: Path) -> None:
    result = newsbot("ingest", SAMPLES, "--data-dir", samples_dir)
    assert result.exit_code == 0, result.output
    assert "1 article: 0 new, 0 updated, 1 unchanged, 0 duplicates, 0 failed" in result.stdout
    assert "0 chunks written" in result.stdout
    assert "failed:" not in result.output

    stats = json.loads(newsbot("stats", "--json", "--data-dir", samples_dir).stdout)
    assert stats["articles"] == 1 and stats["chunks"] > 1
    assert stats["embedding"]["embedding_model"] == "all-MiniLM-L6-v2"
    table = newsbot("stats", "--data-dir", samples_dir).stdout
    assert "all-MiniLM-L6-v2 (384 dimensions" in table and str(samples_dir) in table


@pytest.mark.slow
def test_a_broken_json_line_is_listed_and_the_rest_is_ingested(tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "data.jsonl",
        [
            json.dumps(HARBOUR),
            '{"title": "broken", "body": "no closing brace"',
            json.dumps(LIBRARY),
        ],
    )
    result = newsbot("ingest", data, "--data-dir", tmp_path / "store")
    assert result.exit_code == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert failures == [f"failed: {data}:2: not valid JSON: Expecting ',' delimiter (column 47)"]
    assert "2 articles: 2 new, 0 updated, 0 unchanged, 0 duplicates, 1 failed" in result.stdout
    assert "1 item failed (listed above); everything else was ingested." in result.stdout

    again = newsbot("ingest", "--json", data, "--data-dir", tmp_path / "store")
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert (report["new"], report["unchanged"], report["failed"], report["chunks"]) == (0, 2, 1, 0)
    assert report["failures"][0].startswith(f"{data}:2: not valid JSON")

    stats = json.loads(newsbot("stats", "--json", "--data-dir", tmp_path / "store").stdout)
    assert (stats["articles"], stats["chunks"]) == (2, 2)


@pytest.mark.slow
def test_ask_json_cites_sentences_of_the_article(samples_dir: Path) -> None:
    result = newsbot("ask", "--json", QATAR_QUESTION, "--data-dir", samples_dir)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["question"] == QATAR_QUESTION
    assert not answer["refused"]
    assert answer["citations"]
    article = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    for citation in answer["citations"]:
        assert citation["quote"] in article
        assert f"[{citation['n']}]" in answer["text"]
        assert citation["published_at"].startswith("2024-02-07")


@pytest.mark.slow
def test_ask_prints_the_answer_then_numbered_sources(samples_dir: Path) -> None:
    result = newsbot("ask", QATAR_QUESTION, "--data-dir", samples_dir)
    assert result.exit_code == 0, result.output
    answer, sources = result.stdout.split("\nSources:\n")
    assert "[1]" in answer
    assert sources.startswith("[1] ")
    assert "2024-02-07" in sources and "“" in sources


@pytest.mark.slow
def test_date_filters_bound_the_articles_searched(samples_dir: Path) -> None:
    def ask(*options: str) -> dict:
        result = newsbot("ask", "--json", *options, QATAR_QUESTION, "--data-dir", samples_dir)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    # The sample is dated 2024-02-07: --until that day includes it (the whole day counts).
    assert ask("--since", "2024-02-07", "--until", "2024-02-07", "-k", "2")["citations"]
    later = ask("--since", "2024-02-08")
    assert later["refused"] and not later["citations"]


@pytest.mark.slow
def test_ask_answers_each_line_of_stdin(samples_dir: Path) -> None:
    questions = f"{QATAR_QUESTION}\n\nWho did Blinken meet?\n"
    result = newsbot("ask", "--json", "--data-dir", samples_dir, input=questions)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["question"] for a in answers] == [QATAR_QUESTION, "Who did Blinken meet?"]
    assert all(answer["citations"] for answer in answers)

    plain = newsbot("ask", "--data-dir", samples_dir, input=questions)
    assert plain.exit_code == 0
    assert f"> {QATAR_QUESTION}" in plain.stdout and "> Who did Blinken meet?" in plain.stdout


@pytest.mark.slow
def test_chat_driven_by_a_script(samples_dir: Path) -> None:
    script = f"{QATAR_QUESTION}\n/sources\n/reset\n/sources\n/nope\n/quit\nnever asked\n"
    result = newsbot("chat", "--data-dir", samples_dir, input=script)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.count("Sources:") == 1
    # /sources shows whole passages: more than the quoted sentences.
    assert "Kan reported" in out or "We approached the proposal" in out
    assert "No sources yet" in out  # after /reset
    assert "unknown command /nope" in out
    assert "never asked" not in out


@pytest.mark.slow
def test_stats_reindex_and_reset(tmp_path: Path) -> None:
    store = ["--data-dir", str(tmp_path / "store")]
    data = write_jsonl(tmp_path / "data.jsonl", [json.dumps(HARBOUR), json.dumps(LIBRARY)])
    assert newsbot("ingest", data, *store).exit_code == 0

    reindexed = newsbot("reindex", *store)
    assert reindexed.exit_code == 0, reindexed.output
    assert "Re-embedded 2 chunks with all-MiniLM-L6-v2 (onnx, fp32)" in reindexed.stdout

    declined = newsbot("reset", *store, input="n\n")
    assert declined.exit_code == 1
    assert "Delete 2 articles and 2 chunks" in declined.stdout
    assert "Nothing deleted." in declined.stdout
    assert json.loads(newsbot("stats", "--json", *store).stdout)["articles"] == 2

    assert newsbot("reset", "--yes", *store).exit_code == 0
    stats = json.loads(newsbot("stats", "--json", *store).stdout)
    assert (stats["articles"], stats["chunks"]) == (0, 0)
    assert "nothing indexed yet" in newsbot("ask", "Harbour?", *store).stderr


@pytest.mark.slow
def test_reset_waits_for_a_running_ingest_and_never_loads_the_model(tmp_path: Path) -> None:
    """`newsbot stats` and `newsbot reset` open only the store: no model, onnxruntime or torch
    (1-8 s each). Reset still takes its turn after an ingest that holds the store's lock."""
    from bot.core import open_store
    from bot.settings import load_settings

    store = ["--data-dir", str(tmp_path / "store")]
    data = write_jsonl(tmp_path / "data.jsonl", [json.dumps(HARBOUR), json.dumps(LIBRARY)])
    assert newsbot("ingest", data, *store).exit_code == 0
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        f"for command in (['stats'], ['reset', '--yes'], ['stats', '--json']):\n"
        f"    sys.argv = ['newsbot', *command, *{store!r}]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, (command, exit.code)\n"
        "heavy = ['torch', 'sentence_transformers', 'transformers', 'onnxruntime', 'tokenizers']\n"
        "print('HEAVY:', [name for name in heavy if name in sys.modules])\n"
    )
    settings = load_settings(data_dir=tmp_path / "store")
    with open_store(settings).turn():  # an ingest is writing
        process = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        # A reset that waits without saying so would wait here forever: stop it after 2 minutes.
        watchdog = threading.Timer(120, process.kill)
        watchdog.start()
        seen = []
        for line in process.stderr:  # until it says it waits (or exits without saying so)
            seen.append(line)
            if "Waiting for a running ingest on this store to finish" in line:
                break
        else:
            pytest.fail(f"reset did not say it waits for the lock: {''.join(seen)[-2000:]}")
        assert open_store(settings).stats()["articles"] == 2  # nothing deleted while it waits
    out, err = process.communicate(timeout=120)
    watchdog.cancel()
    assert process.returncode == 0, err
    assert "Deleted 2 articles" in out
    assert json.loads(out[out.index("{") : out.rindex("}") + 1])["articles"] == 0
    assert "HEAVY: []" in out


@pytest.mark.slow
def test_model_export_prints_the_onnx_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NEWSBOT_MODEL_CACHE_DIR", str(tmp_path / "models"))
    result = newsbot("model", "export", "--precision", "fp32", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path.suffix == ".onnx" and path.is_file()
    assert path.is_relative_to(tmp_path / "models")


@pytest.mark.slow
def test_chat_streams_a_chat_models_answer_once_then_its_sources(samples_dir: Path) -> None:
    from io import StringIO

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from rich.console import Console

    from bot import Bot
    from bot.cli import ChatSession

    probe = Bot.open(data_dir=samples_dir)
    passages = probe.retriever.search(probe.retriever.understand(QATAR_QUESTION), probe.settings.k)
    n = next(i for i, p in enumerate(passages, 1) if "in general we can say that it was" in p.text)
    reply = f"Qatar's prime minister said Hamas's comments were positive overall [{n}]."
    # GenericFakeChatModel streams its reply word by word, as a provider would.
    model = GenericFakeChatModel(messages=iter([AIMessage(content=reply)]))
    screen = StringIO()
    session = ChatSession(Bot.open(data_dir=samples_dir, chat_model=model), Console(file=screen))
    assert session.streaming

    assert session.handle(QATAR_QUESTION)
    out = screen.getvalue()
    text = "Qatar's prime minister said Hamas's comments were positive overall [1]."
    assert out.count("positive overall") == 1  # streamed, not printed again
    assert out.index(text) < out.index("Sources:")
    assert out.split("Sources:")[1].startswith("\n[1] ")
    assert (
        session.last is not None and session.last.citations[0].quote in SAMPLE_ARTICLE.read_text()
    )
    assert session.history[-1].answer == text
