"""Nothing lost, nothing duplicated: a killed ingest rerun, and concurrent ingests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_ingest import make_articles, snapshot

pytestmark = pytest.mark.slow

NEWSBOT = shutil.which("newsbot", path=str(Path(sys.executable).parent)) or "newsbot"
ARTICLES = 200


def write_jsonl(path: Path, articles) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for article in articles:
            handle.write(json.dumps(article.to_dict()) + "\n")
    return path


def committed_batches(data_dir: Path) -> int:
    """Batches committed (entries in the store's log), read by a second client as another
    process would."""
    import chromadb

    # chromadb's own client, an engine of its own beside any this process's Stores hold (they
    # are closed here: only the subprocess under test has the folder open). Closed after the
    # read, so that it holds no files or indexes of the folder.
    with chromadb.PersistentClient(
        path=str(data_dir / "chroma"),
        settings=chromadb.Settings(anonymized_telemetry=False, allow_reset=True),
    ) as client:
        try:
            return client.get_collection("news-log").count()
        except Exception:
            return 0


def ingest_command(source: Path, data_dir: Path) -> list[str]:
    return [NEWSBOT, "ingest", str(source), "--data-dir", str(data_dir)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(
        tmp_path_factory.mktemp("corpus") / "news.jsonl", make_articles(ARTICLES, sentences=2)
    )


@pytest.fixture(scope="module")
def clean_run(corpus, tmp_path_factory) -> dict:
    from bot import Bot

    bot = Bot.open(data_dir=tmp_path_factory.mktemp("clean"))
    report = bot.ingest([str(corpus)])
    assert report.new == ARTICLES and report.failed == 0
    return snapshot(bot)


def test_ingest_killed_part_way_and_rerun_equals_a_clean_run(corpus, clean_run, tmp_path, make_bot):
    data_dir = tmp_path / "killed"
    # chromadb imported before the ingest starts: its first import takes long enough on a quiet
    # machine for a 200-article ingest to finish before the first look at the log.
    import chromadb  # noqa: F401

    process = subprocess.Popen(
        ingest_command(corpus, data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline and process.poll() is None:
            done = committed_batches(data_dir)
            if done >= 1:
                break
            time.sleep(0.02)
        assert process.poll() is None, "ingest finished before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    stats = [NEWSBOT, "stats", "--json", "--data-dir", str(data_dir)]
    # Readers see the batches committed before the kill, whole, and nothing of the others.
    assert 0 < json.loads(subprocess.check_output(stats))["articles"] < ARTICLES
    asked = subprocess.run(
        [NEWSBOT, "ask", "What happened?", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 0, asked.stderr

    rerun = subprocess.run(ingest_command(corpus, data_dir), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    bot = make_bot(data_dir=data_dir)
    assert snapshot(bot) == clean_run  # none missing, none duplicated, none stale
    assert bot.stats()["articles"] == ARTICLES


def test_concurrent_ingests_of_one_store_are_serialised(corpus, clean_run, tmp_path, make_bot):
    data_dir = tmp_path / "concurrent"
    processes = [
        subprocess.Popen(
            ingest_command(corpus, data_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    assert snapshot(make_bot(data_dir=data_dir)) == clean_run
