"""Ingest with the real model and real Chroma: incremental, idempotent, syndication-aware."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import pytest

from bot.errors import StoreError
from index.article import Article

pytestmark = pytest.mark.slow

SENTENCES = [
    "Egypt and Qatar are in intensive contact to reach a new ceasefire.",
    "Hamas delivered its response to an outline drawn up in Paris.",
    "The Israeli Prime Minister's Office said the details are being evaluated.",
    "Qatari Prime Minister Mohammed al Thani was upbeat during a press conference.",
    "U.S. Secretary of State Antony Blinken is on another visit to the region.",
    "An agreement is possible and, in fact, essential, said the head of US diplomacy.",
    "The central bank held interest rates steady for a third meeting.",
    "Shares in chipmakers rose after strong quarterly results.",
    "The striker scored twice in the second half to win the cup final.",
    "Heavy rain caused flooding across the coastal region overnight.",
]


def make_articles(count: int, seed: int = 7, sentences: int = 4) -> list[Article]:
    rng = random.Random(seed)
    articles = []
    for number in range(count):
        body = " ".join(rng.choice(SENTENCES) for _ in range(sentences)) + f" Story {number}."
        articles.append(
            Article(
                id=f"story-{number}",
                title=f"Story number {number}",
                body=body,
                source=rng.choice(["Reuters", "AP", "Kan"]),
                url=f"https://news.example/{number}",
                published_at=datetime(2024, 2, 1 + number % 28, tzinfo=UTC),
            )
        )
    return articles


def snapshot(bot) -> dict[str, tuple[str, int, int]]:
    """Every stored chunk: id -> (text, start, end)."""
    return {
        chunk.id: (chunk.text, chunk.metadata["chunk_start"], chunk.metadata["chunk_end"])
        for chunk in bot.store.iter_chunks()
    }


def test_reingest_is_incremental_and_idempotent(make_bot) -> None:
    bot = make_bot()
    articles = make_articles(20)
    first = bot.ingest(articles)
    assert (first.new, first.unchanged, first.failed) == (20, 0, 0)
    assert first.chunks == bot.stats()["chunks"] > 0
    before = snapshot(bot)

    again = bot.ingest(articles)
    assert (again.new, again.updated, again.unchanged, again.chunks) == (0, 0, 20, 0)
    assert snapshot(bot) == before


def test_an_updated_article_replaces_its_chunks_with_none_left_stale(make_bot) -> None:
    bot = make_bot(chunk_tokens=40)
    long = Article(id="a", title="Talks", body=" ".join(SENTENCES), source="Kan")
    bot.ingest([long])
    assert bot.stats()["chunks"] > 2

    short = dataclasses.replace(long, body="Talks collapsed on Thursday. Both sides left Cairo.")
    report = bot.ingest([short])
    assert report.updated == 1
    stored = snapshot(bot)
    assert list(stored) == ["a#0"]
    assert stored["a#0"][0] == short.body
    assert bot.stats()["articles"] == 1


def test_syndicated_copies_are_stored_once_with_every_source(make_bot) -> None:
    bot = make_bot()
    story = Article(id="ap-1", title="Ceasefire talks", body=" ".join(SENTENCES[:4]), source="AP")
    copy = dataclasses.replace(story, id="kan-1", source="Kan", url="https://kan.example/1")
    report = bot.ingest([story, copy])
    assert (report.new, report.duplicates) == (1, 1)
    chunks = list(bot.store.iter_chunks())
    assert {c.metadata["article_id"] for c in chunks} == {"ap-1"}
    assert all(c.metadata["sources"] == ["AP", "Kan"] for c in chunks)

    # A third outlet in a later run is added, and re-running changes nothing.
    third = dataclasses.replace(story, id="rt-1", source="Reuters")
    assert bot.ingest([third]).duplicates == 1
    assert bot.ingest([story, copy, third]).unchanged == 3
    assert next(iter(bot.store.iter_chunks())).metadata["sources"] == ["AP", "Kan", "Reuters"]
    answer = bot.ask("Who is in intensive contact to reach a new ceasefire?")
    assert answer.citations and answer.citations[0].sources == ("AP", "Kan", "Reuters")


def test_copies_without_an_outlet_in_one_run_are_stored_once(make_bot) -> None:
    """Two exports holding the same sourceless story: the run used to fail, writing an empty
    outlet list to Chroma ("Expected metadata list value for key 'sources' to be non-empty")."""
    bot = make_bot()
    story = Article(id="a-1", title="Talks", body=" ".join(SENTENCES[:2]))
    report = bot.ingest([story, dataclasses.replace(story, id="b-1")])
    assert (report.new, report.duplicates, report.failed) == (1, 1, 0)
    [chunk] = bot.store.iter_chunks()
    assert "sources" not in chunk.metadata


def test_a_corrected_story_keeps_every_outlet_when_a_copy_is_read_first(make_bot) -> None:
    """Every outlet republishes a correction and a copy is read before the stored story: the copy
    becomes the stored one, the old primary a copy of it, and no outlet is lost, then or later."""
    bot = make_bot()
    story = Article(id="ap-1", title="Ceasefire talks", body=" ".join(SENTENCES[:4]), source="AP")
    copy = dataclasses.replace(story, id="kan-1", source="Kan", url="https://kan.example/1")
    third = dataclasses.replace(story, id="rt-1", source="Reuters")
    bot.ingest([story, copy, third])

    corrected = story.body + " Talks resume in Cairo on Monday."
    report = bot.ingest(
        [dataclasses.replace(copy, body=corrected), dataclasses.replace(story, body=corrected)]
    )
    assert report.updated == 2
    [chunk] = bot.store.iter_chunks()
    assert chunk.metadata["article_id"] == "kan-1"
    assert sorted(chunk.metadata["sources"]) == ["AP", "Kan", "Reuters"]

    # The copies left behind now belong to the stored story: its next update keeps them.
    again = dataclasses.replace(copy, body=corrected + " Both delegations confirmed it.")
    assert bot.ingest([again]).updated == 1
    [chunk] = bot.store.iter_chunks()
    assert sorted(chunk.metadata["sources"]) == ["AP", "Kan", "Reuters"]


def test_dates_are_stored_for_range_filters(make_bot) -> None:
    bot = make_bot()
    dated = Article(
        id="d", title="Dated", body=SENTENCES[0], published_at=datetime(2024, 2, 7, 12, tzinfo=UTC)
    )
    undated = Article(id="u", title="Undated", body=SENTENCES[1])
    bot.ingest([dated, undated])
    meta = {c.metadata["article_id"]: c.metadata for c in bot.store.iter_chunks()}
    assert meta["d"]["published_at"] == "2024-02-07T12:00:00+00:00"
    assert meta["d"]["published_ts"] == int(datetime(2024, 2, 7, 12, tzinfo=UTC).timestamp())
    assert meta["u"]["published_at"] == "" and "published_ts" not in meta["u"]


def test_a_store_built_with_another_precision_is_refused_until_reindexed(make_bot) -> None:
    bot = make_bot()
    bot.ingest(make_articles(3))
    bot.store.set_identity(
        dataclasses.replace(bot.embedder.identity, precision="int8"), reindexing=False
    )
    with pytest.raises(StoreError, match="int8.*fp32") as caught:
        make_bot().ask("What did Qatar say?")  # when the model loads
    assert "newsbot reindex" in (caught.value.hint or "")

    stale = make_bot(check_identity=False)
    assert stale.reindex() == stale.stats()["chunks"]
    fresh = make_bot()  # opens cleanly now
    assert fresh.stats()["embedding"]["embedding_precision"] == "fp32"
    assert fresh.ask("What did Qatar's prime minister do at the press conference?").citations


def test_a_store_without_its_recorded_identity_answers_and_is_not_given_one(make_bot) -> None:
    """A store whose vectors' model was never recorded (an earlier newsbot's) answers as before;
    its identity is recorded only while it is empty, as its vectors' model is unknown."""
    bot = make_bot()
    bot.ingest(make_articles(3))
    bot.store.client.get_collection("news").modify(metadata={"reindexing": False})
    assert bot.stats()["embedding"] is None

    older = make_bot()
    assert older.ask("What did Qatar's prime minister do at the press conference?").citations
    assert older.stats()["embedding"] is None

    empty = make_bot(collection="fresh")
    empty.warm()
    assert empty.stats()["embedding"]["embedding_precision"] == "fp32"


def test_a_store_reset_elsewhere_is_given_its_model_at_its_next_ingest(make_bot) -> None:
    """Another host (or a user deleting Chroma's collections) empties the store while this host's
    lexical index still holds the old chunks: the new store still records its model, and an
    ingest with another precision is refused."""
    bot = make_bot()
    bot.ingest(make_articles(3))
    for name in ("news", "news-log"):
        bot.store.client.delete_collection(name)

    again = make_bot()  # e.g. a Slack bot: warmed (its model checked) before it ingests
    again.warm()
    again.ingest(make_articles(2, seed=9))
    assert again.stats()["embedding"]["embedding_precision"] == "fp32"
    with pytest.raises(StoreError, match=r"holds all-MiniLM-L6-v2 \(fp32"):
        make_bot(embedding_precision="int8").ingest(make_articles(1, seed=10))


def test_an_interrupted_reindex_is_refused(make_bot) -> None:
    bot = make_bot()
    bot.ingest(make_articles(2))
    bot.store.set_identity(None, reindexing=True)
    with pytest.raises(StoreError, match="re-embedded when that run stopped") as caught:
        make_bot().ask("What did Qatar say?")
    assert "newsbot reindex" in (caught.value.hint or "")


def test_chroma_server_store_behaves_like_the_embedded_one(make_bot, chroma_server) -> None:
    bot = make_bot(chroma_url=chroma_server, collection="server-test")
    articles = make_articles(5)
    assert bot.ingest(articles).new == 5
    assert bot.ingest(articles).unchanged == 5
    assert bot.stats()["store"] == chroma_server
    answer = bot.ask("What did Qatar's prime minister do at the press conference?")
    assert not answer.refused
    assert any("al Thani" in c.quote for c in answer.citations)


def test_an_unreachable_chroma_server_is_a_clear_error(make_bot) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError) as caught:
        make_bot(chroma_url=url, store_retries=1).stats()
    assert url in str(caught.value)
    assert "chroma run" in (caught.value.hint or "")


def test_askers_waiting_on_a_server_that_went_down_share_one_round_of_retries(
    make_bot, tmp_path, caplog
) -> None:
    """A Slack bot's askers when its Chroma server dies: the first retries and fails; those
    that waited meanwhile get its error, instead of one more round of retries each in turn."""
    import threading

    from tests.conftest import running_chroma

    with running_chroma(tmp_path / "chroma") as (url, _):
        bot = make_bot(chroma_url=url, store_retries=3)
        bot.ingest(make_articles(2))
    start, failures = threading.Barrier(6), []

    def ask() -> None:
        start.wait()
        try:
            bot.store.refresh()  # what every question does first
        except StoreError as exc:
            failures.append(exc)

    askers = [threading.Thread(target=ask) for _ in range(6)]
    with caplog.at_level("WARNING", logger="index.store"):
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join()
    assert len(failures) == 6 and all("cannot reach" in str(exc) for exc in failures)
    assert caplog.text.count("unreachable, retrying") == 3  # one asker's three retries


def test_a_store_of_an_earlier_version_moves_its_registry_into_the_log(make_bot) -> None:
    """Earlier versions kept the registry in a `<name>-articles` collection and had no log or
    lexical index: the first process to open such a store moves the registry into the log."""
    import shutil

    bot = make_bot()
    articles = make_articles(5)
    bot.ingest(articles)
    records = bot.store.lexical.articles([article.id for article in articles])
    client = bot.store.client
    client.delete_collection("news-log")
    old = client.get_or_create_collection("news-articles", embedding_function=None)
    old.upsert(ids=list(records), embeddings=[[1.0]] * 5, metadatas=list(records.values()))
    shutil.rmtree(bot.store.lexical.path)

    upgraded = make_bot()
    answer = upgraded.ask("What did Qatar's prime minister do at the press conference?")
    assert not answer.refused
    assert upgraded.stats()["articles"] == 5
    assert "news-articles" not in {c.name for c in upgraded.store.client.list_collections()}
    assert upgraded.ingest(articles).unchanged == 5  # nothing embedded again


def test_the_log_is_saved_by_chroma_at_every_commit_in_new_and_older_stores(make_bot) -> None:
    """Chroma replays in every new process what it has not saved of a collection (each log
    entry's text, for the log): the log's index is saved at every write, and a store made before
    that is set so by its next ingest."""

    def saves_every(bot) -> int:
        log = bot.store.client.get_collection("news-log")
        return int(log.configuration_json["hnsw"]["sync_threshold"])

    bot = make_bot()
    bot.ingest(make_articles(2))
    assert saves_every(bot) == 1
    log = bot.store.client.get_collection("news-log")
    log.modify(configuration={"hnsw": {"sync_threshold": 1000}})  # as earlier versions made it

    older = make_bot()
    assert saves_every(older) == 1000
    older.ingest(make_articles(3, seed=8))
    assert saves_every(make_bot()) == 1
