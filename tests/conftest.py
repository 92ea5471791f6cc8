"""Shared fixtures: the real embedding model (loaded once), real Chroma (embedded and server)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.fake_slack import FakeSlack

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never read the developer's own config file.
os.environ["NEWSBOT_CONFIG"] = "/nonexistent/newsbot-test-config.toml"

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "articles"
SAMPLE_ARTICLE = SAMPLES / "2024-02-07-ceasefire-talks.txt"
# A copy of ../shared/eval kept in the repo: a newcomer's machine has no ../shared.
EVAL = REPO / "samples" / "eval"
QATAR_QUESTION = "What did Qatar say about Hamas's response?"


@pytest.fixture(autouse=True)
def _clean_newsbot_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no NEWSBOT_* setting and no Slack token of the developer's (newsbot reads
    Slack's own SLACK_BOT_TOKEN, SLACK_APP_TOKEN and SLACK_SIGNING_SECRET too)."""
    for name in list(os.environ):
        if name.startswith(("NEWSBOT_", "SLACK_")) and name != "NEWSBOT_CONFIG":
            monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path: Path):
    from bot.settings import load_settings

    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def make_bot(tmp_path: Path):
    """Open a Bot on a fresh embedded store; the embedding model is shared by the session."""
    from bot import Bot

    def factory(**overrides):
        overrides.setdefault("data_dir", tmp_path / "data")
        return Bot.open(**overrides)

    return factory


@pytest.fixture(scope="session")
def fake_bot(tmp_path_factory: pytest.TempPathFactory):
    """A Bot over the sample articles whose embedder hashes words (tests/fake_embedder.py): for
    tests of plumbing that need answers, not good ones. Read-only use, please."""
    from bot import Bot
    from bot.core import open_store
    from bot.settings import load_settings
    from tests.fake_embedder import HashingEmbedder

    settings = load_settings(data_dir=tmp_path_factory.mktemp("fake-bot"))
    bot = Bot(settings, open_store(settings), HashingEmbedder())
    report = bot.ingest([str(SAMPLES)])
    assert report.failed == 0, report.failures
    return bot


@pytest.fixture(scope="session")
def sample_bot(tmp_path_factory: pytest.TempPathFactory):
    """A Bot with the bundled sample articles ingested (read-only use, please)."""
    from bot import Bot

    bot = Bot.open(data_dir=tmp_path_factory.mktemp("sample-bot"))
    report = bot.ingest([str(SAMPLES)])
    assert report.failed == 0, report.failures
    return bot


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A fake Slack Web API on 127.0.0.1 (tests/fake_slack.py), stopped after the test."""
    from tests.fake_slack import FakeSlack

    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def slack_config(tmp_path: Path, fake_slack: FakeSlack):
    """make(**overrides) -> Settings of a Slack app with the test credentials that talks to
    `fake_slack`."""
    from bot.settings import load_settings
    from tests.fake_slack import APP_TOKEN, SECRET, TOKEN

    def make(**overrides: Any):
        return load_settings(
            data_dir=tmp_path / "data",
            slack_bot_token=TOKEN,
            slack_app_token=APP_TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=fake_slack.api_url,
            **overrides,
        )

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    process: subprocess.Popen, port: int, log: Path, seconds: float = 60
) -> None:
    """Wait until a server process accepts connections on 127.0.0.1:port; fail with the end
    of its log when it exits first or does not listen within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                output = log.read_text()[-3000:]
                raise AssertionError(
                    f"nothing on port {port} after {seconds} s: {output}"
                ) from None
            time.sleep(0.2)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 10) -> None:
    """Ask a process to stop with `sig`; kill it if it is still running after `seconds`."""
    process.send_signal(sig)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def chroma_server(chroma_process: tuple[str, subprocess.Popen]) -> str:
    """A real `chroma run` server's URL (`chroma_process`)."""
    return chroma_process[0]


@pytest.fixture(scope="session")
def chroma_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `chroma run` server for the session (`running_chroma`)."""
    with running_chroma(tmp_path_factory.mktemp("chroma-server")) as running:
        yield running


@contextmanager
def running_chroma(path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `chroma run` server on 127.0.0.1 over `path`; yields its URL and process, and
    stops it afterwards."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma command (from the chromadb package) is not installed"
    port = free_port()
    path.mkdir(parents=True, exist_ok=True)
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_listening(process, port, path / "server.log")
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)
        log.close()


def python_child(code: str, *args: str) -> subprocess.Popen:
    """A Python process running `code` with `args` in the repo, offline, its text I/O piped."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
