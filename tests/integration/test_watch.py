"""`newsbot watch` and `newsbot slack --watch` as the processes people run: the real model, an
embedded Chroma store, a local feed server (tests/test_watch.py) that changes its feed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot import Bot
from tests.conftest import free_port, stop, wait_until_listening
from tests.fake_slack import SECRET, TOKEN, event_body
from tests.integration.test_slack_http import send
from tests.test_watch import FERRY, HARBOUR, LIBRARY, FeedServer, rss

pytestmark = pytest.mark.slow


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer(rss(HARBOUR, FERRY))
    yield server
    server.close()


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSBOT_", "SLACK_"))},
        "NEWSBOT_CONFIG": "/nonexistent/newsbot-test-config.toml",
        "NEWSBOT_DATA_DIR": str(data_dir),
        "NEWSBOT_ALLOW_PRIVATE_URLS": "true",
        "NEWSBOT_FETCH_FULL_ARTICLES": "false",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def wait_for_line(log: Path, process: subprocess.Popen, found: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if found(text):
            return text
        if process.poll() is not None:
            raise AssertionError(f"the process exited: {text[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"not seen in time: {log.read_text()[-3000:]}")


def test_newsbot_watch_ingests_new_entries_round_after_round_and_stops_on_sigterm(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    data = tmp_path / "data"
    log_path = tmp_path / "watch.log"
    command = [sys.executable, "-m", "bot.cli", "watch", feed_server.url, "--every", "1s"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=environment(data), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_line(log_path, process, lambda text: "round 1: 2 new" in text)
            wait_for_line(log_path, process, lambda text: "not modified" in text)
            feed_server.change(rss(HARBOUR, FERRY, LIBRARY))
            wait_for_line(log_path, process, lambda text: "1 new, 0 updated, 0 failed" in text)
            feed_server.down = True
            output = wait_for_line(log_path, process, lambda text: "feed down:" in text)
            assert f"feed down: {feed_server.url}: cannot fetch {feed_server.url}: HTTP 503" in (
                output
            )
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    assert "stopped after" in output and "Traceback" not in output

    bot = Bot.open(data_dir=data)
    assert bot.stats()["articles"] == 3
    # The article the third round brought is found (whether the answerer then answers from a
    # one-sentence article or shows it as the closest evidence is not this test's business).
    answer = bot.ask("How late does the city library stay open?")
    assert answer.citations[0].title == "Library extends hours"


def test_newsbot_slack_watch_answers_from_what_the_feeds_bring(
    tmp_path: Path, feed_server: FeedServer, fake_slack
) -> None:
    feeds = tmp_path / "feeds.txt"
    feeds.write_text(f"# the coast\n{feed_server.url}\n", encoding="utf-8")
    port = free_port()
    env = environment(
        tmp_path / "data",
        NEWSBOT_SLACK_API_URL=fake_slack.api_url,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
    )
    command = [sys.executable, "-m", "bot.cli", "slack", "--http", "--port", str(port)]
    command += ["--watch", str(feeds), "--every", "1h"]
    log_path = tmp_path / "slack.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_listening(process, port, log_path, seconds=120)
            wait_for_line(log_path, process, lambda text: "round 1: 2 new" in text)
            body = event_body("<@UBOT> When does the ferry to the islands run again?")
            assert send(port, body)[0] == 200
            [reply] = fake_slack.wait_for(
                lambda: fake_slack.answers("C0GENERAL", body["event"]["ts"])
            )
            text = str(reply["blocks"])
            assert "Ferry runs again" in text and "Not found in the articles" not in text
        finally:
            stop(process, signal.SIGINT, seconds=30)
    assert process.returncode == 0, log_path.read_text()[-3000:]
