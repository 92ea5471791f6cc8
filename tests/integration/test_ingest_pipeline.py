"""The overlapped ingest pipeline ends where one-batch-at-a-time ingest ends, and fails cleanly."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import numpy
import pytest

import index.ingest
from bot.errors import EmbeddingError, StoreError
from index.article import Article, ReadFailure
from index.embed import TokenEmbedder
from tests.integration.test_ingest import SENTENCES, make_articles

pytestmark = pytest.mark.slow


def store_state(bot) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every chunk (text and metadata) and every registry record."""
    chunks = {chunk.id: (chunk.text, chunk.metadata) for chunk in bot.store.iter_chunks()}
    article_ids = [str(meta["article_id"]) for _, meta in chunks.values()]
    article_ids += [f"story-{n}" for n in range(40)] + ["ap-1", "kan-1", "rt-1", "x"]
    return chunks, bot.store.lexical.articles(article_ids)


def story_items() -> list[Article | ReadFailure]:
    """Updates, syndicated copies and a correction read from a copy first, spread over batches."""
    story = Article(id="ap-1", title="Ceasefire talks", body=" ".join(SENTENCES[:4]), source="AP")
    copy = dataclasses.replace(story, id="kan-1", source="Kan", url="https://kan.example/1")
    third = dataclasses.replace(story, id="rt-1", source="Reuters")
    corrected = story.body + " Talks resume in Cairo on Monday."
    long = Article(id="x", title="Long", body=" ".join(SENTENCES * 2), source="Kan")
    short = dataclasses.replace(long, body="Talks collapsed on Thursday. Both sides left Cairo.")
    filler = make_articles(12)
    return [
        story,
        long,
        filler[0],
        copy,
        ReadFailure("feed.xml", "not a feed"),
        filler[1],
        third,
        filler[2],
        filler[3],
        short,  # the same id as `long`, fewer chunks: none of long's may stay
        dataclasses.replace(copy, body=corrected),  # the copy now holds the story
        dataclasses.replace(story, body=corrected),  # and the old primary is its copy
        *filler[4:8],
        dataclasses.replace(filler[1], body=filler[1].body + " Updated later."),
        *filler[8:],
    ]


def test_a_run_ends_as_its_batches_ingested_one_at_a_time(make_bot, tmp_path, monkeypatch):
    items = story_items()
    monkeypatch.setattr(index.ingest, "ARTICLE_BATCH", 2)
    one_at_a_time = make_bot(data_dir=tmp_path / "serial", chunk_tokens=40)
    for start in range(0, len(items), 2):
        one_at_a_time.ingestor.run(items[start : start + 2])

    bot = make_bot(data_dir=tmp_path / "overlapped", chunk_tokens=40)
    write = bot.store.upsert_chunks

    def slow_write(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)  # so the reader plans batches while earlier ones are still unwritten
        write(*args, **kwargs)

    monkeypatch.setattr(bot.store, "upsert_chunks", slow_write)
    events: list[index.ingest.Progress] = []
    report = bot.ingestor.run(items, progress=events.append)

    assert store_state(bot) == store_state(one_at_a_time)
    assert [str(failure) for failure in report.failures] == ["feed.xml: not a feed"]
    assert report.articles == len(items) - 1
    assert (report.updated, report.duplicates) == (4, 2)  # x, kan-1, ap-1, story-1; kan-1, rt-1
    done = [event.articles_done for event in events if event.failure is None]
    assert done == sorted(done) and done[-1] == report.articles
    assert [str(e.failure) for e in events if e.failure] == ["feed.xml: not a feed"]


class FailingEmbedder:
    """The real embedder, failing from its `fail_at`-th call on."""

    def __init__(self, embedder: Any, fail_at: int) -> None:
        self._embedder = embedder
        self.identity = embedder.identity
        self.max_tokens = embedder.max_tokens
        self.calls = 0
        self.fail_at = fail_at

    def embed(self, texts: Any) -> Any:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise EmbeddingError("the model failed (test)")
        return self._embedder.embed(texts)


def test_a_failing_model_stops_the_run_and_a_rerun_finishes_it(make_bot, monkeypatch) -> None:
    monkeypatch.setattr(index.ingest, "ARTICLE_BATCH", 4)
    monkeypatch.setattr(index.ingest, "EMBED_WINDOW", 1)  # one batch per model call
    articles = make_articles(40)
    bot = make_bot()
    threads_before = threading.active_count()
    bot.ingestor.embedder = FailingEmbedder(bot.embedder, fail_at=3)
    with pytest.raises(EmbeddingError, match="the model failed"):
        bot.ingest(articles)
    assert threading.active_count() == threads_before  # no stage left running
    # The batches embedded before the failure were written whole; nothing else was.
    assert bot.stats()["articles"] == 8
    assert {c.metadata["article_id"] for c in bot.store.iter_chunks()} == {
        f"story-{n}" for n in range(8)
    }

    bot.ingestor.embedder = bot.embedder
    report = bot.ingest(articles)
    assert (report.new, report.unchanged) == (32, 8)
    assert bot.stats()["articles"] == 40


def test_a_failing_store_write_is_the_error_the_run_raises(make_bot, monkeypatch) -> None:
    monkeypatch.setattr(index.ingest, "ARTICLE_BATCH", 4)
    bot = make_bot()
    commit = bot.store.commit
    calls = []

    def failing_commit(records: dict[str, Any], *args: Any, **kwargs: Any) -> int:
        calls.append(len(records))
        if len(calls) == 2:
            raise StoreError("disk full (test)")
        return commit(records, *args, **kwargs)

    monkeypatch.setattr(bot.store, "commit", failing_commit)
    threads_before = threading.active_count()
    with pytest.raises(StoreError, match="disk full"):
        bot.ingest(make_articles(40))
    assert threading.active_count() == threads_before
    assert bot.stats()["articles"] == 4  # the first batch; the second's chunks have no record


def test_a_reader_that_fails_part_way_keeps_what_came_before(make_bot, monkeypatch) -> None:
    monkeypatch.setattr(index.ingest, "ARTICLE_BATCH", 4)
    bot = make_bot()
    articles = make_articles(10)

    def items():
        yield from articles
        raise RuntimeError("the feed went away (test)")

    with pytest.raises(RuntimeError, match="the feed went away"):
        bot.ingestor.run(items())
    assert bot.stats()["articles"] == 8  # whole batches before the failure, as before


def test_a_store_chunked_with_another_header_is_re_embedded(make_bot, monkeypatch) -> None:
    bot = make_bot()
    articles = make_articles(5)
    monkeypatch.setattr(index.ingest, "HEADER_FORMAT", 1)  # as an older newsbot wrote it
    assert bot.ingest(articles).new == 5
    monkeypatch.undo()
    report = bot.ingest(articles)
    assert (report.updated, report.unchanged) == (5, 0)
    assert bot.ingest(articles).unchanged == 5


class WatchedEmbedder:
    """The real embedder (texts only, no word pieces), calling `before(call number)` first."""

    def __init__(self, embedder: Any, before: Any) -> None:
        self._embedder = embedder
        self.identity = embedder.identity
        self.max_tokens = embedder.max_tokens
        self.before = before
        self.calls = 0

    def embed(self, texts: Any) -> Any:
        self.calls += 1
        self.before(self.calls)
        return self._embedder.embed(texts)


def test_the_last_window_is_written_while_its_last_batch_is_embedded(make_bot, monkeypatch):
    monkeypatch.setattr(index.ingest, "ARTICLE_BATCH", 4)
    monkeypatch.setattr(index.ingest, "EMBED_WINDOW", 10_000)  # one window after the first
    articles = make_articles(12)
    bot = make_bot()
    read, started = threading.Event(), threading.Event()
    done: list[int] = []
    seen: dict[int, list[int]] = {}

    def items():
        yield from articles[:4]
        # Batch 2 only once the model has batch 1 alone: a busy machine could otherwise let the
        # reader queue batches 1-3 before the model's first look, and the model take them at once.
        assert started.wait(10)
        yield from articles[4:]
        read.set()

    def before(call: int) -> None:
        if call == 1:  # the model starts on batch 1; the reader queues batches 2, 3 and its end
            started.set()
            assert read.wait(10)
            # Until the reader has queued them all (a sleep here raced its planning of batch 3).
            for reader in threading.enumerate():
                if reader.name == "newsbot-ingest-plan":
                    reader.join(10)
                    assert not reader.is_alive()
        if call == 3:  # batch 3 alone: the writer gets batch 2 meanwhile
            deadline = time.monotonic() + 10
            while 8 not in done and time.monotonic() < deadline:
                time.sleep(0.01)
        seen[call] = list(done)

    bot.ingestor.embedder = WatchedEmbedder(bot.embedder, before)
    report = bot.ingestor.run(items(), progress=lambda event: done.append(event.articles_done))
    assert report.new == 12 and bot.stats()["articles"] == 12
    assert seen[3] == [4, 8]  # batches 1 and 2 written before the model had batch 3's vectors


def test_an_embedder_that_cannot_tokenize_embeds_texts(make_bot) -> None:
    bot = make_bot()
    model = bot.embedder
    # embed_tokens without tokenize: the reader has no word pieces to give it, so texts it is
    bot.ingestor.embedder = WatchedEmbedder(model, lambda call: None)
    bot.ingestor.embedder.embed_tokens = model.embed_tokens  # type: ignore[attr-defined]
    bot.ingest(make_articles(3))
    chunks = list(bot.store.iter_chunks(vectors=True))
    texts = [f"{chunk.metadata['context']}\n{chunk.text}" for chunk in chunks]
    stored = numpy.array([chunk.vector for chunk in chunks])
    assert len(chunks) >= 3 and bot.ingestor.embedder.calls == 1
    assert numpy.min(numpy.sum(stored * model.embed(texts), axis=1)) > 0.9999


def test_chunks_tokenized_by_the_reader_get_their_own_vectors(make_bot) -> None:
    bot = make_bot(chunk_tokens=60)
    assert isinstance(bot.embedder, TokenEmbedder)  # the default (ONNX) embedder takes word pieces
    articles = make_articles(30, sentences=9)  # chunks of many lengths, sorted by the model
    bot.ingest(articles)
    chunks = list(bot.store.iter_chunks(vectors=True))
    assert len(chunks) > 30
    texts = [f"{chunk.metadata['context']}\n{chunk.text}" for chunk in chunks]
    expected = bot.embedder.embed(texts)
    stored = numpy.array([chunk.vector for chunk in chunks])
    assert numpy.min(numpy.sum(stored * expected, axis=1)) > 0.9999
