"""The retriever's index snapshot with the real model and real Chroma: a new Bot loads it instead
of building, finds the same passages, never answers from a stale one, and shrugs off a broken one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.core import index_snapshot_path, store_lock
from bot.retrieve import Retriever
from tests.conftest import EVAL, QATAR_QUESTION, SAMPLES

pytestmark = pytest.mark.slow

CORPUS = EVAL / "multihop_corpus.jsonl"
QUESTIONS = [
    QATAR_QUESTION,
    "What did The Age report about Taylor Swift?",
    "What happened in the week of 2023-10-09?",
    "Which outlets covered the hostages?",
]
ZANZIBAR = {
    "id": "zanzibar-ferry",
    "title": "Ferry to Zanzibar delayed",
    "body": "The ferry to Zanzibar was delayed by storms on Tuesday. Passengers waited in the "
    "harbour for nine hours before the crossing was called off.",
    "source": "Coast Daily",
    "published_at": "2024-03-05T08:00:00+00:00",
    "url": "https://example.com/zanzibar",
}


def corpus_file(tmp_path: Path, count: int = 40) -> Path:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:count]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def zanzibar_file(tmp_path: Path) -> Path:
    path = tmp_path / "zanzibar.jsonl"
    path.write_text(json.dumps(ZANZIBAR) + "\n", encoding="utf-8")
    return path


def passages(retriever: Retriever, question: str) -> list[tuple[str, str, float | None]]:
    found = retriever.search(retriever.understand(question), 6)
    return [(p.chunk_id, p.text, p.lexical_score) for p in found]


def assert_next_bot_loads_the_snapshot(make_bot) -> None:
    """A new bot (as a new process would) takes its index from the snapshot, building nothing."""
    bot = make_bot()
    bot.retriever.lexical_index()
    assert (bot.retriever.snapshot_loads, bot.retriever.builds) == (1, 0)


@pytest.fixture
def filled(make_bot, tmp_path: Path):
    bot = make_bot()
    report = bot.ingest([str(SAMPLES), str(corpus_file(tmp_path))])
    assert report.failed == 0
    return bot


def test_ingest_writes_the_snapshot_and_a_new_bot_loads_it_with_the_same_results(
    filled, make_bot
) -> None:
    assert index_snapshot_path(filled.settings).is_file()
    # The first ingest filled an empty index as it wrote, instead of building it afterwards.
    assert (filled.retriever.snapshot_loads, filled.retriever.builds) == (0, 0)
    bot = make_bot()  # a new process would do the same
    index = bot.retriever.lexical_index()
    assert (bot.retriever.snapshot_loads, bot.retriever.builds) == (1, 0)
    assert len(index) == bot.store.count()

    fresh = Retriever(bot.store, bot.embedder)  # no snapshot: built from the store
    for question in QUESTIONS:
        assert passages(bot.retriever, question) == passages(fresh, question), question
    assert fresh.builds == 1
    assert (
        bot.ask(QATAR_QUESTION).to_dict()["citations"]
        == filled.ask(QATAR_QUESTION).to_dict()["citations"]
    )


def test_a_write_that_bypassed_the_snapshot_is_seen_by_the_next_bot(
    filled, make_bot, tmp_path: Path
) -> None:
    """Another writer (here a bare Ingestor, as an older newsbot would) leaves the snapshot
    behind the store: the next Bot notices, builds from the store and answers from it."""
    writer = make_bot()
    writer.ingestor.run(iter(writer._read([str(zanzibar_file(tmp_path))])))

    bot = make_bot()
    answer = bot.ask("Why was the ferry to Zanzibar delayed?")
    assert not answer.refused
    assert answer.citations[0].article_id == "zanzibar-ferry"
    assert (bot.retriever.snapshot_loads, bot.retriever.builds) == (0, 1)
    assert_next_bot_loads_the_snapshot(make_bot)  # ... and wrote a snapshot the next one uses


def test_a_reset_and_refill_to_the_same_generation_is_not_mistaken_for_the_old_store(
    filled, make_bot, tmp_path: Path
) -> None:
    before = filled.store.version
    other = make_bot()
    other.store.reset()  # a new collection: its generation starts again from 0
    other.ingestor.run(iter(other._read([str(zanzibar_file(tmp_path))])))
    while other.store.version[1] < before[1]:
        other.store.written()
    assert other.store.version[1] == before[1] and other.store.version[0] != before[0]

    bot = make_bot()
    assert len(bot.retriever.lexical_index()) == bot.store.count()
    assert bot.retriever.snapshot_loads == 0
    answer = bot.ask(QATAR_QUESTION)
    assert all(c.article_id == "zanzibar-ferry" for c in answer.citations)


def test_a_writer_that_died_half_way_leaves_no_snapshot_trusted(filled, make_bot) -> None:
    """A writer killed between its chunk writes and the generation bump leaves a store that
    holds new text under the old generation and chunk count: no snapshot may stand for it."""
    writer = make_bot()
    chunk = writer.store.get_chunks([next(iter(writer.store.iter_chunks())).id], vectors=True)[0]
    rewritten = chunk.text + " Zanzibar harbour reopened."
    writer.store.writing()
    writer.store.upsert_chunks([chunk.id], [rewritten], chunk.vector[None, :], [chunk.metadata])
    # ... and the writer dies here.

    for _ in range(2):  # the first rebuild must not have saved a snapshot of the half-write
        bot = make_bot()
        found = passages(bot.retriever, "When was Zanzibar harbour reopened?")
        assert (chunk.id, rewritten) in [(i, text) for i, text, lexical in found if lexical]
        assert (bot.retriever.snapshot_loads, bot.retriever.builds) == (0, 1)

    writer.store.written()  # the next completed batch settles the store
    make_bot().retriever.lexical_index()
    assert_next_bot_loads_the_snapshot(make_bot)


def test_a_bot_answers_from_the_snapshot_without_opening_chroma_until_the_store_changes(
    filled, make_bot, tmp_path: Path
) -> None:
    """The version file beside Chroma's files says which store state the snapshot is of, so a
    question needs no Chroma client. A write marks the file first: new readers ask Chroma, a
    reader that holds an index keeps answering from it, and both see the writer's articles once
    it finishes and publishes the new version."""
    version_file = filled.store.version_file
    recorded = json.loads(version_file.read_text())
    assert (recorded["collection_id"], recorded["generation"]) == filled.store.version[:2]
    assert recorded["chunks"] == filled.store.count(chroma=True)

    reader = make_bot()
    reader.retriever.config = dataclasses.replace(reader.retriever.config, check_interval=0.0)
    answer = reader.ask(QATAR_QUESTION)
    assert "in general we can say that it was positive" in answer.text
    assert answer.citations[0].quote in SAMPLES.joinpath(
        "2024-02-07-ceasefire-talks.txt"
    ).read_text(encoding="utf-8")
    assert reader.store._client is None  # answered without opening Chroma

    writer = make_bot()
    cited = answer.citations[0]
    chunk = next(c for c in writer.store.iter_chunks(vectors=True) if cited.quote in c.text)
    with store_lock(writer.settings):  # a write begins, its writer holding the ingest lock
        writer.store.writing()
        writer.store.upsert_chunks(
            [chunk.id], ["Nobody said anything."], chunk.vector[None, :], [chunk.metadata]
        )
        assert writer.store.write_under_way()
        assert make_bot().store.version.settled is False  # a new reader asks Chroma
        again = reader.ask(QATAR_QUESTION)  # the reader keeps the store as it was: no half-write
        assert again.citations[0].quote == cited.quote
        assert (reader.retriever.rebuilds, reader.store._client) == (1, None)

    writer.ingest([str(zanzibar_file(tmp_path))])  # a whole ingest publishes the new version
    assert json.loads(version_file.read_text())["generation"] > recorded["generation"]
    fresh = make_bot()
    assert fresh.ask("Why was the ferry to Zanzibar delayed?").citations[0].article_id == (
        "zanzibar-ferry"
    )
    assert (fresh.retriever.snapshot_loads, fresh.store._client) == (1, None)
    # The reader from before loads the published snapshot on its next question.
    assert reader.ask("Why was the ferry to Zanzibar delayed?").citations[0].article_id == (
        "zanzibar-ferry"
    )
    assert (reader.retriever.snapshot_loads, reader.store._client) == (2, None)


HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_reader_stops_waiting_for_a_writer_that_was_killed(filled, make_bot) -> None:
    """A writer killed half-way leaves the "writing" mark, but the kernel releases its ingest
    lock: a reader that holds an index stops keeping it and answers from what the store holds."""
    from index.lock import store_lock_path

    reader = make_bot()
    reader.retriever.config = dataclasses.replace(reader.retriever.config, check_interval=0.0)
    question = "When was Zanzibar harbour reopened?"
    passages(reader.retriever, question)  # the reader holds an index

    lock = store_lock_path(filled.settings)
    writer_process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer_process.stdout is not None
        assert writer_process.stdout.readline().strip() == "locked"
        writer = make_bot()  # writes as that process would
        chunk = next(iter(writer.store.iter_chunks(vectors=True)))
        rewritten = chunk.text + " Zanzibar harbour reopened."
        writer.store.writing()
        writer.store.upsert_chunks([chunk.id], [rewritten], chunk.vector[None, :], [chunk.metadata])
        assert reader.store.write_under_way()
        assert (chunk.id, rewritten) not in [
            (i, t) for i, t, _ in passages(reader.retriever, question)
        ]
    finally:
        writer_process.kill()
        writer_process.wait(timeout=30)

    assert not reader.store.write_under_way()  # the mark stays, its writer is gone
    found = passages(reader.retriever, question)
    assert (chunk.id, rewritten) in [(i, t) for i, t, lexical in found if lexical]
    assert reader.retriever.rebuilds == 2


def test_a_chroma_server_store_has_no_version_file(chroma_server: str, make_bot) -> None:
    bot = make_bot(chroma_url=chroma_server, collection="no-version-file")
    bot.ingest([str(SAMPLES)])
    assert bot.store.version_file is None
    assert not list(bot.settings.store_dir.glob("newsbot-*.json"))
    assert not bot.ask(QATAR_QUESTION).refused


def test_a_corrupt_snapshot_is_rebuilt_without_error(filled, make_bot) -> None:
    path = index_snapshot_path(filled.settings)
    expected = filled.ask(QATAR_QUESTION).to_dict()["citations"]
    for content in (b"", path.read_bytes()[:1000], b"PK\x03\x04" + os.urandom(4000)):
        path.write_bytes(content)
        bot = make_bot()
        assert bot.ask(QATAR_QUESTION).to_dict()["citations"] == expected
        assert (bot.retriever.snapshot_loads, bot.retriever.builds) == (0, 1)
    assert_next_bot_loads_the_snapshot(make_bot)  # the rebuilt snapshot is whole again


def test_reindex_and_reset_leave_a_snapshot_of_what_the_store_holds(filled, make_bot) -> None:
    assert filled.reindex() == filled.store.count()
    assert_next_bot_loads_the_snapshot(make_bot)

    filled.reset()
    bot = make_bot()
    assert len(bot.retriever.lexical_index()) == 0
    assert bot.retriever.snapshot_loads == 1
    assert bot.ask(QATAR_QUESTION).refused


# Runs the console entry point as `newsbot ...` would, then reports on stderr what it imported.
PROBE = """
import sys
from bot.cli import main
sys.argv = ["newsbot", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = [m for m in ("torch", "sentence_transformers", "chromadb") if m in sys.modules]
print("PROBE", code, ",".join(heavy) or "-", file=sys.stderr)
"""


def newsbot(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    environment["NEWSBOT_CONFIG"] = os.environ["NEWSBOT_CONFIG"]
    return subprocess.run(
        [sys.executable, "-c", PROBE, "--debug", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def test_newsbot_ask_in_new_processes_uses_the_snapshot_sees_new_articles_no_torch_or_chroma(
    filled, tmp_path: Path
) -> None:
    data_dir = filled.settings.data_dir
    asked = newsbot("ask", QATAR_QUESTION, "--json", "--data-dir", data_dir)
    assert "PROBE 0 -" in asked.stderr, asked.stderr[-3000:]
    assert "index snapshot loaded" in asked.stderr
    assert "lexical index built" not in asked.stderr
    assert "in general we can say that it was positive" in json.loads(asked.stdout)["text"]

    ingested = newsbot("ingest", zanzibar_file(tmp_path), "--data-dir", data_dir)
    assert "PROBE 0" in ingested.stderr, ingested.stderr[-3000:]
    asked = newsbot(
        "ask", "Why was the ferry to Zanzibar delayed?", "--json", "--data-dir", data_dir
    )
    assert "PROBE 0 -" in asked.stderr, asked.stderr[-3000:]
    assert "index snapshot loaded" in asked.stderr
    citations = json.loads(asked.stdout)["citations"]
    assert citations[0]["article_id"] == "zanzibar-ferry"


def test_an_ingest_stopped_by_ctrl_c_publishes_what_it_wrote(
    make_bot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C mid-ingest: the whole batches already written are recorded for readers at once
    (not at the next ingest), and running the command again adds the rest without duplicates."""
    monkeypatch.setattr("index.ingest.EMBED_WINDOW", 64)  # several model calls for 100 articles
    bot = make_bot()
    embed_tokens = bot.ingestor.embedder.embed_tokens
    calls = []

    def interrupted(rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return embed_tokens(rows)

    monkeypatch.setattr(bot.ingestor.embedder, "embed_tokens", interrupted)
    corpus = corpus_file(tmp_path, count=100)
    with pytest.raises(KeyboardInterrupt):
        bot.ingest([str(corpus)])
    stored = bot.store.count()
    assert 0 < stored < 100
    assert not bot.store.write_under_way()

    reader = make_bot()  # a new process asking: the snapshot, no Chroma
    assert len(reader.retriever.lexical_index()) == stored
    assert (reader.retriever.snapshot_loads, reader.store._client) == (1, None)

    monkeypatch.undo()
    report = make_bot().ingest([str(corpus)])
    assert report.unchanged > 0 and report.failed == 0 and report.updated == 0
    assert report.unchanged + report.new + report.duplicates == 100
    assert make_bot().store.count() == stored + report.chunks  # nothing lost or stored twice
