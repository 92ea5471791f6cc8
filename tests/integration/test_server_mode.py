"""Several hosts sharing one Chroma server (a real `chroma run`): each keeps its own lexical index
and catches up from the server's log; their ingests take turns through a lease in the server.
A "host" here is a data folder of its own (its own lexical index and file locks), so nothing
local can make two of them take turns: only the server can."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.retrieve import RetrievalConfig
from index.lock import ChromaLease
from tests.conftest import python_child
from tests.integration.test_ingest import make_articles, snapshot

pytestmark = pytest.mark.slow

NEWSBOT = shutil.which("newsbot", path=str(Path(sys.executable).parent)) or "newsbot"
# A question on a daemon thread (as Slack's workers ask) whose scope's vectors are read from a
# server that stopped answering just then (SIGSTOP: a hung host; chromadb's client waits without
# a time-out), and a main thread that returns (as `newsbot slack` does after its shutdown grace).
HUNG_ASK = """
import os, signal, sys, threading
from bot import Bot
from bot.retrieve import RetrievalConfig
from index.store import Store
data_dir, url, collection, server = sys.argv[1:5]
bot = Bot.open(data_dir=data_dir, chroma_url=url, collection=collection)
bot.retriever.config = RetrievalConfig(nearest_limit=0)  # every scope ranked among its own
stopped, on = threading.Event(), Store._on
def stop_before_the_scope_read(self, collection, method, /, **arguments):
    if arguments.get("include") == ["embeddings"]:
        os.kill(int(server), signal.SIGSTOP)
        stopped.set()
    return on(self, collection, method, **arguments)
Store._on = stop_before_the_scope_read
question = "What did Reuters report on 2024-02-08 about the ceasefire?"
threading.Thread(target=bot.ask, args=(question,), daemon=True).start()
assert stopped.wait(60), "no scope read"
"""


def fresh_collection() -> str:
    return f"hosts-{uuid.uuid4().hex[:8]}"


def test_a_host_sees_what_another_host_ingested_without_a_restart(
    make_bot, chroma_server: str, tmp_path: Path
) -> None:
    collection = fresh_collection()
    first = make_bot(data_dir=tmp_path / "host-a", chroma_url=chroma_server, collection=collection)
    second = make_bot(data_dir=tmp_path / "host-b", chroma_url=chroma_server, collection=collection)
    second.retriever.config = type(second.retriever.config)(check_interval=0.0)
    assert first.ingest(make_articles(6)).new == 6

    # host B never ingested: it builds its lexical index from the server's log ...
    answer = second.ask("What did Qatar's prime minister do at the press conference?")
    assert not answer.refused
    assert second.stats()["articles"] == 6
    assert second.store.lexical.path != first.store.lexical.path

    # ... and follows later ingests by host A, applying only the new entries.
    assert first.ingest(make_articles(8)).new == 2
    found = second.retriever.search(second.retriever.understand("Story number 7"), 6)
    assert "story-7" in {passage.article_id for passage in found}
    assert second.stats()["articles"] == 8

    # A reset on host A is seen by host B: its index is rebuilt from the new, empty log.
    first.reset()
    assert second.stats()["articles"] == 0
    assert second.retriever.search(second.retriever.understand("Story number 7"), 6) == []


def test_a_server_ranks_a_scope_among_its_own_chunks_as_an_embedded_store_does(
    make_bot, chroma_server: str, tmp_path: Path
) -> None:
    # A server's scope vectors are read while the question is embedded (Store.ranking), an
    # embedded store's after: the same passages, the same scores (a server's HNSW distances come
    # as JSON's shortest float32 text, an embedded store's as the float32 itself).
    articles = make_articles(12)
    found = []
    for overrides in ({"chroma_url": chroma_server, "collection": fresh_collection()}, {}):
        bot = make_bot(data_dir=tmp_path / str(len(found)), **overrides)
        bot.ingest(articles)
        bot.retriever.config = RetrievalConfig(nearest_limit=0)  # every scope among its own
        passages = bot.search("What did Reuters report on 2024-02-08 about the ceasefire?")
        found.append([(passage.chunk_id, passage.dense_score) for passage in passages])
    assert [chunk_id for chunk_id, _ in found[0]] == [chunk_id for chunk_id, _ in found[1]]
    assert [score for _, score in found[0]] == pytest.approx([s for _, s in found[1]], abs=1e-6)
    assert found[0][0][0] == "story-7#0"  # Reuters' report that day


def test_a_question_waiting_on_a_hung_server_does_not_keep_the_process_from_exiting(
    make_bot, chroma_process: tuple[str, subprocess.Popen], tmp_path: Path
) -> None:
    # docs/slack.md: after a stop, answers under way get their grace, then newsbot exits.
    url, server = chroma_process
    collection = fresh_collection()
    make_bot(data_dir=tmp_path / "host-a", chroma_url=url, collection=collection).ingest(
        make_articles(12)
    )
    asker = python_child(HUNG_ASK, str(tmp_path / "host-b"), url, collection, str(server.pid))
    try:
        _, err = asker.communicate(timeout=60)  # a hang check, not a speed figure
    except subprocess.TimeoutExpired:
        asker.kill()
        _, err = asker.communicate()
        pytest.fail(f"did not exit within 60 s: {err[-3000:]}")
    finally:
        server.send_signal(signal.SIGCONT)
    assert asker.returncode == 0, err[-3000:]


def test_ingests_from_two_hosts_into_one_server_take_turns(
    make_bot, chroma_server: str, tmp_path: Path
) -> None:
    articles = make_articles(120, sentences=2)
    corpus = tmp_path / "news.jsonl"
    corpus.write_text("".join(json.dumps(a.to_dict()) + "\n" for a in articles), encoding="utf-8")
    clean = make_bot(data_dir=tmp_path / "clean")
    clean.ingest([str(corpus)])

    collection = fresh_collection()
    processes = [
        subprocess.Popen(
            [
                NEWSBOT,
                "ingest",
                str(corpus),
                "--data-dir",
                str(tmp_path / f"host-{n}"),
                "--chroma-url",
                chroma_server,
                "--collection",
                collection,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    outputs = [process.communicate(timeout=900) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    reports = [stdout for stdout, _ in outputs]
    # One ran first and stored everything; the other, after it, found everything unchanged.
    assert sorted("120 new" in report for report in reports) == [False, True], reports
    bot = make_bot(data_dir=tmp_path / "host-c", chroma_url=chroma_server, collection=collection)
    assert snapshot(bot) == snapshot(clean)  # none missing, none duplicated
    assert bot.stats()["articles"] == 120


def lease_collection(chroma_server: str):
    import chromadb

    url = chroma_server.rsplit(":", 1)
    client = chromadb.HttpClient(host="127.0.0.1", port=int(url[1]))
    return client.get_or_create_collection(f"{fresh_collection()}-lease", embedding_function=None)


def test_a_lease_is_exclusive_and_an_expired_one_is_taken_over(chroma_server: str) -> None:
    leases = lease_collection(chroma_server)
    holder = ChromaLease(leases, seconds=2.0)
    holder.acquire()
    waiting = ChromaLease(leases, seconds=2.0)
    assert waiting._try() is not None  # held by the other one
    holder.check()

    # The holder dies: it stops renewing, and nothing deletes its record.
    holder._stop.set()
    started = time.monotonic()
    waiting.acquire()
    assert time.monotonic() - started < 30
    waiting.check()
    with pytest.raises(Exception, match="taken over"):
        holder.check()  # a holder that lost its lease knows it before it commits
    waiting.release()
    assert ChromaLease(leases)._try() is None  # released: free for the next one


def test_a_writer_that_lost_its_turn_cannot_commit(
    make_bot, chroma_server: str, tmp_path: Path
) -> None:
    collection = fresh_collection()
    bot = make_bot(data_dir=tmp_path / "host-a", chroma_url=chroma_server, collection=collection)
    with bot.store.turn():
        lease = bot.store._lease
        lease._collection.delete(ids=["ingest"])  # as if it expired and another host took it
        with pytest.raises(StoreError, match="lost its turn"):
            bot.store.commit({"x": {"content_hash": "h"}})
    assert bot.stats()["articles"] == 0
