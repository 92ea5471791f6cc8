"""What a new process replays of an embedded store: Chroma applies the chunks written since it
last saved their vector index in every process that opens it, so writers keep that backlog
under `vector_save_every` (index/store.py, docs/store.md "Chroma's replay")."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.scale import unsaved_records
from index.store import saved_rows, vector_segment
from tests.integration.test_ingest import make_articles

pytestmark = pytest.mark.slow

NEWSBOT = shutil.which("newsbot", path=str(Path(sys.executable).parent)) or "newsbot"
STRACE = shutil.which("strace")
SENTENCES = [
    "The harbour council approved the budget after a long debate on Tuesday.",
    "Fishermen asked for a timetable for the repairs to the northern breakwater.",
    "The mayor said the work would start in spring and end before the summer.",
]


def unsaved(data_dir: Path) -> int:
    """Records Chroma has not saved into the chunks' vector index: what every new process
    replays (the benchmark's count, bench/scale.py)."""
    return unsaved_records(data_dir / "chroma")


def newsbot(*args: str, data_dir: Path, save_every: int | None = None) -> None:
    env = dict(os.environ)
    if save_every is not None:
        env["NEWSBOT_VECTOR_SAVE_EVERY"] = str(save_every)
    done = subprocess.run(
        [NEWSBOT, *args, "--data-dir", str(data_dir)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def article(folder: Path, number: int, sentences: int = 1) -> Path:
    body = " ".join(SENTENCES[(number + i) % len(SENTENCES)] for i in range(sentences))
    path = folder / f"harbour-{number}.txt"
    path.write_text(f"title: Harbour news {number}\n\n{body} Item {number}.\n", encoding="utf-8")
    return path


def test_one_article_ingests_keep_what_a_new_process_replays_under_the_bound(tmp_path) -> None:
    """Cron-like ingests, one small article per process: before, nothing saved the chunks'
    index (each process wrote fewer than Chroma's 1000), so every new process replayed all of
    them. A store made so is switched by its next writer (which loaded the index with the old
    threshold: the process after it saves); readers never save."""
    data_dir, bound = tmp_path / "data", 3
    newsbot("ingest", str(article(tmp_path, 0, sentences=40)), data_dir=data_dir, save_every=1000)
    behind = unsaved(data_dir)
    assert behind >= bound  # a store as earlier versions left it
    newsbot("ask", "What did the council approve?", data_dir=data_dir, save_every=bound)
    assert unsaved(data_dir) == behind  # a reader replays, and saves nothing
    seen = []
    for number in range(1, 7):
        newsbot("ingest", str(article(tmp_path, number)), data_dir=data_dir, save_every=bound)
        seen.append(unsaved(data_dir))
    assert seen[0] == behind + 1
    assert max(seen[1:]) < bound, seen
    assert sorted(set(seen[1:])) != [0], seen  # not saved at every commit either
    newsbot("ask", "What did the council approve?", data_dir=data_dir, save_every=bound)
    assert unsaved(data_dir) == seen[-1]


def test_a_bulk_ingest_leaves_less_than_the_bound_to_replay(make_bot) -> None:
    bot = make_bot(vector_save_every=50)
    report = bot.ingest(make_articles(80))
    assert report.chunks >= 80
    assert unsaved(bot.settings.data_dir) < 50


# Chroma 1.5.9 saves an index in place, writing these files in this order.
INDEX_FILES = ["header.bin", "data_level0.bin", "length.bin", "link_lists.bin"]
INDEX_FILES += ["index_metadata.pickle"]  # its id map (truncated, then written)
needs_strace = pytest.mark.skipif(STRACE is None, reason="needs strace to stop a writer in a save")


def killed_in_save(
    data_dir: Path, collection: str, name: str, *command: str, when: int = 1
) -> None:
    """Run `newsbot *command` and SIGKILL it at its `when`th write to file `name` of the
    collection's vector index (strace), i.e. inside Chroma's save of that index."""
    db = sqlite3.connect(data_dir / "chroma" / "chroma.sqlite3")
    segment = vector_segment(db, collection)[0]
    db.close()
    target = data_dir / "chroma" / segment / name
    assert target.is_file()
    env = {**os.environ, "NEWSBOT_VECTOR_SAVE_EVERY": "1"}
    killed = subprocess.run(
        [STRACE, "-f", "-qq", "-o", os.devnull, "-P", str(target), "-e", "trace=write"]
        + ["-e", f"inject=write:signal=SIGKILL:when={when}"]
        + [NEWSBOT, *command, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode != 0, f"newsbot {command[0]} was not stopped in the save"


def assert_whole(bot, articles: int) -> None:
    """Every article recorded, every chunk in the vector index once, with its text's vector."""
    assert bot.stats()["articles"] == articles
    stored = list(bot.store.iter_chunks(vectors=True))
    assert len(stored) == bot.stats()["chunks"]
    for chunk in stored:
        assert bot.store.nearest(chunk.vector, 1)[0][0] == chunk.id
    vectors = np.asarray([chunk.vector for chunk in stored])
    expected = bot.ingestor.embed_stored(stored)
    assert np.einsum("ij,ij->i", vectors, expected).min() > 0.999


@pytest.fixture(scope="module")
def one_article_store(tmp_path_factory) -> tuple[Path, list[str]]:
    """A store holding one article, saved at every write, and three more articles to ingest."""
    folder = tmp_path_factory.mktemp("saved")
    newsbot("ingest", str(article(folder, 0, 3)), data_dir=folder / "data", save_every=1)
    return folder / "data", [str(article(folder, number, 3)) for number in range(1, 4)]


@needs_strace
@pytest.mark.parametrize("collection", ["news", "news-log"])
@pytest.mark.parametrize("name", INDEX_FILES)
def test_an_ingest_killed_in_any_of_chromas_saves_and_rerun_equals_a_clean_run(
    one_article_store, tmp_path, make_bot, collection, name
) -> None:
    """SIGKILL as the ingest's write makes Chroma save the chunks' index, or the log's, at each
    file of the save. Killed before the index's sizes are written (header, vectors), Chroma
    opens the store as it was; later, it cannot load that index any more: every read of the
    collection fails. A reader says so in one line naming the collection and the repair; the
    rerun ingest rebuilds the index and ends clean (docs/store.md, "A damaged vector index")."""
    data_dir = tmp_path / "data"
    shutil.copytree(one_article_store[0], data_dir)
    more = one_article_store[1]
    killed_in_save(data_dir, collection, name, "ingest", *more)
    asked = subprocess.run(
        [NEWSBOT, "ask", "What did the council approve?", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    if asked.returncode:
        lines = asked.stderr.strip().splitlines()
        assert lines[0].startswith(f"error: the vector index of collection '{collection}' at ")
        assert "damaged" in lines[0] and "newsbot repair" in lines[1], asked.stderr
    newsbot("ingest", *more, data_dir=data_dir, save_every=1)
    assert unsaved(data_dir) == 0
    assert_whole(make_bot(data_dir=data_dir), articles=4)
    assert_whole(make_bot(data_dir=data_dir), articles=4)  # and as a new process reads it


@needs_strace
def test_newsbot_repair_rebuilds_a_damaged_index_and_finishes_one_cut_short(
    one_article_store, tmp_path, make_bot
) -> None:
    from index.repair import rebuild

    data_dir = tmp_path / "data"
    shutil.copytree(one_article_store[0], data_dir)
    killed_in_save(data_dir, "news", "link_lists.bin", "ingest", *one_article_store[1])
    newsbot("repair", data_dir=data_dir)
    bot = make_bot(data_dir=data_dir)
    # The killed ingest's chunks were written, its batch not committed: they wait for the rerun.
    assert bot.stats()["articles"] == 1 and bot.stats()["chunks"] == 4
    assert_whole(bot, articles=1)
    assert bot.ask("What did the council approve?").citations

    def stop(name, done):
        raise KeyboardInterrupt  # a rebuild stopped after it wrote its first page

    with pytest.raises(KeyboardInterrupt), bot.store.turn():
        rebuild(bot.store, "news", bot.ingestor.embed_stored, stop)
    bot.store.close()
    asked = subprocess.run(
        [NEWSBOT, "ask", "What did the council approve?", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 1
    assert "was being rebuilt" in asked.stderr and "newsbot repair" in asked.stderr
    done = subprocess.run(
        [NEWSBOT, "repair", "--data-dir", str(data_dir)], capture_output=True, text=True
    )
    assert "Rebuilt the vector index of news (4 records)" in done.stdout, done.stderr
    assert_whole(make_bot(data_dir=data_dir), articles=1)


@needs_strace
@pytest.mark.parametrize("repair_first", [True, False])
def test_an_index_killed_between_its_rows_writes_is_rebuilt_before_a_rerun_ingest_writes(
    one_article_store, tmp_path, make_bot, repair_first
) -> None:
    """Killed after the first of the rows Chroma writes into `data_level0.bin`, the header
    counts rows never written: Chroma loads that index, and searches reaching them fail
    ("Error finding id") in every process. `newsbot repair`, and the rerun ingest before
    Chroma loads the index, find those rows and rebuild it; the rerun ingest then ends clean.
    Before, the rerun ingest wrote onto it, and the save after grew `link_lists.bin` without
    bound (to a 1 GB file size limit in a manual run; 7 and 13 GB filled the disk once): the
    limit below stops such a run instead of the disk."""
    data_dir, more = tmp_path / "data", one_article_store[1]
    shutil.copytree(one_article_store[0], data_dir)
    killed_in_save(data_dir, "news", "data_level0.bin", "ingest", *more, when=2)
    if repair_first:
        done = subprocess.run(
            [NEWSBOT, "repair", "--data-dir", str(data_dir)], capture_output=True, text=True
        )
        assert "Rebuilt the vector index of news (4 records)" in done.stdout, done.stderr
    limit = (2**28, 2**28)  # a file past 256 MB stops the ingest (SIGXFSZ), not the disk
    rerun = subprocess.run(
        [NEWSBOT, "ingest", *more, "--data-dir", str(data_dir)],
        env={**os.environ, "NEWSBOT_VECTOR_SAVE_EVERY": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit),
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    asked = subprocess.run(
        [NEWSBOT, "ask", "What did the council approve?", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 0 and "budget" in asked.stdout, asked.stderr
    bot = make_bot(data_dir=data_dir)
    assert_whole(bot, articles=4)
    for vector in np.random.default_rng(7).normal(size=(40, 384)):
        assert len(bot.store.nearest(vector / np.linalg.norm(vector), 4)) == 4


@needs_strace
def test_a_repair_keeps_no_vector_of_a_re_embed_cut_short(
    one_article_store, tmp_path, make_bot, caplog
) -> None:
    """Vectors read back from a damaged index are kept only if they are the configured model's:
    a store whose re-embed was cut short holds vectors of two models, so every chunk is
    embedded again."""
    data_dir = tmp_path / "data"
    shutil.copytree(one_article_store[0], data_dir)
    killed_in_save(data_dir, "news", "link_lists.bin", "ingest", *one_article_store[1])
    bot = make_bot(data_dir=data_dir)
    bot.store.set_identity(None, reindexing=True)
    with caplog.at_level(logging.INFO, logger="index.repair"):
        assert bot.repair() == {"news": 4}
    assert not [record for record in caplog.records if "read back" in record.getMessage()]
    bot.store.check_identity(bot.embedder.identity)  # the re-embed's mark is cleared
    assert_whole(bot, articles=1)


def test_a_repair_with_nothing_damaged_loads_no_model(
    one_article_store, tmp_path, make_bot, monkeypatch
):
    """`newsbot repair` with nothing to do pays no model load (seconds on a first run)."""
    data_dir = tmp_path / "data"
    shutil.copytree(one_article_store[0], data_dir)
    bot = make_bot(data_dir=data_dir)

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("repair loaded the embedding model")

    monkeypatch.setattr("index.embed.load_embedder", no_model)
    assert bot.repair() == {}


def damage_a_row(data_dir: Path) -> None:
    """Zero the label of the chunks' index's last saved row, as a save cut short between its
    rows' writes leaves one (Chroma never gives label 0)."""
    db = sqlite3.connect(data_dir / "chroma" / "chroma.sqlite3")
    index = data_dir / "chroma" / vector_segment(db, "news")[0]
    db.close()
    last = saved_rows(index, last_only=True)
    assert last is not None
    label = last.data.offset + last.vector.stop  # the label follows the vector
    del last  # unmapped before the write
    with (index / "data_level0.bin").open("r+b") as rows:
        rows.seek(label)
        rows.write(bytes(8))


def test_a_damaged_store_is_repaired_with_vectors_read_back_and_embedded_again(
    one_article_store, tmp_path, make_bot
) -> None:
    """A repair that reads most vectors back and embeds the others writes both (Chroma refused
    the mixed page before); `newsbot reset` empties a damaged store too."""
    for command, articles in ((["repair"], 1), (["reset", "--yes"], 0)):
        data_dir = tmp_path / command[0] / "data"
        shutil.copytree(one_article_store[0], data_dir)
        damage_a_row(data_dir)
        done = subprocess.run(
            [NEWSBOT, *command, "--data-dir", str(data_dir)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        bot = make_bot(data_dir=data_dir)
        if articles:
            assert_whole(bot, articles=articles)
        assert (bot.stats()["articles"], bot.stats()["chunks"]) == (
            articles,
            articles,
        )  # one chunk each
