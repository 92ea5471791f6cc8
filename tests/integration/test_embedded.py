"""An embedded store through Chroma's engine without the chromadb package (index/embedded.py):
the same files as chromadb.PersistentClient's, either way, and no chromadb import in a process
that asks or ingests."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, python_child
from tests.integration.test_crash_safety import write_jsonl
from tests.integration.test_ingest import make_articles

pytestmark = pytest.mark.slow

QUESTIONS = (
    "What did Qatar's prime minister do at the press conference?",
    "What did Qatar say about Hamas's response?",
    "Who spoke about the ceasefire?",
)
# newsbot as it was before index/embedded.py: its embedded client chromadb's PersistentClient.
OLD_NEWSBOT = """
import sys
import chromadb
import index.store
from bot import Bot

def persistent_client(settings):
    settings.store_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(settings.store_dir),
        settings=chromadb.Settings(anonymized_telemetry=False, allow_reset=True),
    )

index.store.make_client = persistent_client
report = Bot.open(data_dir=sys.argv[1]).ingest([sys.argv[2]])
assert report.new and not report.failed, report
"""
# The console script's commands on an embedded store in one new process, then which of the
# chromadb package's modules it imported.
PROBE = """
import sys
from bot.cli import main
data_dir, source, question = sys.argv[1:4]
commands = (["ingest", source], ["ask", question], ["stats"], ["repair"], ["reset", "--yes"])
for command in commands:
    sys.argv = ["newsbot", *command, "--data-dir", data_dir]
    try:
        main()
    except SystemExit as exit:
        assert not exit.code, (command, exit.code)
print("CHROMADB:", sorted(name for name in sys.modules if name.split(".")[0] == "chromadb"))
"""
# A long-running reader (a Slack bot): a question a line on stdin; whether it answered, and which
# of the chromadb package's modules it has imported, a line on stdout.
READER = """
import sys
from bot import Bot
from bot.retrieve import RetrievalConfig
bot = Bot.open(data_dir=sys.argv[1])
bot.retriever.config = RetrievalConfig(check_interval=0)  # sees other processes' commits at once
for question in sys.stdin:
    answer = bot.ask(question.strip())
    chromadb = sorted(name for name in sys.modules if name.split(".")[0] == "chromadb")
    print("ANSWERED:", bool(answer.citations), "CHROMADB:", chromadb, flush=True)
"""


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same articles ingested by newsbot before index/embedded.py ("old", in a process of
    its own) and by this one ("new")."""
    from bot import Bot

    folder = tmp_path_factory.mktemp("embedded")
    source = write_jsonl(folder / "news.jsonl", make_articles(12))
    old, new = folder / "old", folder / "new"
    subprocess.run([sys.executable, "-c", OLD_NEWSBOT, str(old), str(source)], check=True, cwd=REPO)
    bot = Bot.open(data_dir=new)
    bot.ingest([str(source)])
    bot.store.close()
    return {"old": old, "new": new, "source": source}


def test_a_store_chromadb_wrote_answers_as_one_this_newsbot_wrote(stores, make_bot) -> None:
    old, new = make_bot(data_dir=stores["old"]), make_bot(data_dir=stores["new"])
    for updated in (False, True):  # then written by this newsbot: new versions of two articles
        if updated:
            for bot in (old, new):
                assert bot.ingest(make_articles(2, seed=3)).updated == 2
        for question in QUESTIONS:
            from_old, from_new = old.ask(question), new.ask(question)
            assert from_new.citations
            assert (from_old.text, from_old.citations) == (from_new.text, from_new.citations)
        assert {**old.stats(), "store": ""} == {**new.stats(), "store": ""}
    old.store.close()
    new.store.close()


def test_a_store_this_newsbot_wrote_reads_in_chromadb_as_one_chromadb_wrote(stores) -> None:
    """Same collections, configurations, schemas, metadata, records and vectors, read through
    chromadb.PersistentClient; this process's engine closed first (one per folder)."""
    import chromadb

    from index.embedded import EmbeddedClient

    def read(folder: Path) -> dict:
        with chromadb.PersistentClient(
            path=str(folder / "chroma"), settings=chromadb.Settings(anonymized_telemetry=False)
        ) as client:
            found = {}
            for collection in client.list_collections():
                got = collection.get(include=["documents", "metadatas", "embeddings"])
                order = np.argsort(got["ids"])
                log = collection.name.endswith("-log")  # its entries' texts and tokens differ
                found[collection.name] = {
                    "count": collection.count(),
                    "configuration": collection.configuration_json,
                    "schema": json.dumps(collection._model.serialized_schema, sort_keys=True),
                    "metadata": collection.metadata,
                    "ids": [got["ids"][i] for i in order],
                    "documents": None if log else [got["documents"][i] for i in order],
                    "metadatas": [sorted(got["metadatas"][i]) for i in order]
                    if log
                    else [got["metadatas"][i] for i in order],
                    "vectors": np.asarray(got["embeddings"])[order],
                }
        ours = EmbeddedClient(folder / "chroma")  # and as this newsbot reads them
        try:
            for collection in ours.list_collections():
                read_back = found[collection.name]
                assert collection.configuration_json == read_back["configuration"]
                assert collection.metadata == read_back["metadata"]
                assert collection.count() == read_back["count"]
        finally:
            ours.close()
        return found

    new_store, old_store = read(stores["new"]), read(stores["old"])
    assert sorted(new_store) == sorted(old_store) == ["news", "news-log"]
    for name, new in new_store.items():
        old = old_store[name]
        assert new.pop("count") == old.pop("count") > 0
        assert np.allclose(new.pop("vectors"), old.pop("vectors"), atol=1e-5)
        assert new == old, name


def test_a_process_that_ingests_asks_repairs_and_resets_never_imports_chromadb(
    stores, tmp_path
) -> None:
    """Importing chromadb would cost each such process 0.5-1 s and ~60 MB (docs/benchmarks.md)."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), str(stores["source"]), QUESTIONS[0]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "al Thani" in result.stdout  # it answered
    assert "CHROMADB: []" in result.stdout


def test_a_reader_follows_a_reset_and_ingest_elsewhere_without_importing_chromadb(
    stores, make_bot, tmp_path
) -> None:
    """A reset elsewhere deletes the log the reader opened: it looks the log up by name
    (docs/store.md), as asking the deleted one raises an error whose class imports chromadb."""
    data_dir = tmp_path / "data"
    shutil.copytree(stores["new"], data_dir)
    reader = python_child(READER, str(data_dir))
    try:
        assert reader.stdin and reader.stdout
        reader.stdin.write(QUESTIONS[0] + "\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "ANSWERED: True CHROMADB: []\n"
        elsewhere = make_bot(data_dir=data_dir)
        elsewhere.reset()
        elsewhere.ingest([str(stores["source"])])
        elsewhere.store.close()
        out, err = reader.communicate(QUESTIONS[0] + "\n", timeout=120)
    finally:
        reader.kill()
    assert out == "ANSWERED: True CHROMADB: []\n", err[-3000:]


def test_a_closed_store_holds_none_of_chromas_files(make_bot, tmp_path) -> None:
    """What a reload (other processes' commits) and a repair (moving an index aside) rely on:
    closing drops the engine, which closes its files, even while an error Chroma raised is
    still held (a retry and a repair run inside the `except` that caught one)."""
    bot = make_bot()
    bot.ingest(make_articles(3))
    assert bot.ask(QUESTIONS[0]).citations
    with pytest.raises(Exception) as caught:  # a vector of the wrong dimension
        bot.store.nearest([1.0, 0.0], 1)

    def open_files() -> list[str]:
        found = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own, closed since
                found.append(os.readlink(f"/proc/self/fd/{fd}"))
        return [link for link in found if link.startswith(str(tmp_path / "data" / "chroma"))]

    assert any("chroma.sqlite3" not in name for name in open_files())  # the vector indexes
    bot.store.close()
    assert all("chroma.sqlite3" in name for name in open_files())
    # The engine's database connections close in the background, soon after.
    deadline = time.monotonic() + 10
    while open_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not open_files()
    del caught
    assert bot.ask(QUESTIONS[0]).citations  # opened again


def test_an_id_written_twice_in_one_call_is_refused(tmp_path) -> None:
    """As chromadb refused it: the engine alone would keep the last of the two rows."""
    from index.embedded import EmbeddedClient

    collection = EmbeddedClient(tmp_path).get_or_create_collection("news")
    vectors = np.eye(2, 3, dtype=np.float32)
    with pytest.raises(ValueError, match="an id given twice"):
        collection.upsert(ids=["a#0", "a#0"], embeddings=vectors, documents=["x", "y"])
    assert collection.count() == 0


def test_a_moved_data_dir_keeps_its_lexical_index(make_bot, tmp_path, monkeypatch) -> None:
    """The lexical index belongs to the data_dir it lies in, not to the path that named it: a
    relative and an absolute path, or the folder moved, find the same index (no rebuild from
    the store, minutes at a million chunks, and no second copy left behind)."""
    bot = make_bot()
    bot.ingest(make_articles(3))
    bot.store.close()
    (index,) = [path for path in (tmp_path / "data" / "lexical").iterdir() if path.is_dir()]
    locks = sorted(path.name for path in (tmp_path / "data" / "locks").iterdir())
    moved = tmp_path / "moved"
    (tmp_path / "data").rename(moved)
    monkeypatch.chdir(tmp_path)
    for data_dir in (moved, Path("moved")):
        assert make_bot(data_dir=data_dir).ask(QUESTIONS[0]).citations
    assert [path.name for path in (moved / "lexical").iterdir() if path.is_dir()] == [index.name]
    # and the same locks: ingests through either path take turns
    assert sorted(path.name for path in (moved / "locks").iterdir()) == locks


def test_a_lexical_index_kept_under_the_stores_path_is_taken_over(
    make_bot, tmp_path, caplog
) -> None:
    """Until 2026-12 the index was named by the store's path: an upgrade renames it, rather
    than building it again from the store."""
    from index.store import _lexical_folder, lexical_folder

    data_dir = tmp_path / "data"
    bot = make_bot()
    bot.ingest(make_articles(3))
    bot.store.close()
    folder = lexical_folder(data_dir, None, "news")
    old = _lexical_folder(data_dir, f"{data_dir / 'chroma'}|news", "news")
    folder.rename(old)
    with caplog.at_level(logging.INFO, logger="index.store"):
        assert make_bot().ask(QUESTIONS[0]).citations
    assert folder.is_dir() and not old.exists()
    assert "building the lexical index" not in caplog.text
