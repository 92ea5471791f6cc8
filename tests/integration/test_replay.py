"""What a new process replays of an embedded store: Chroma applies the chunks written since it
last saved their vector index in every process that opens it, so writers keep that backlog
under `vector_save_every` (index/store.py, docs/store.md "Chroma's replay")."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_ingest import make_articles

pytestmark = pytest.mark.slow

NEWSBOT = shutil.which("newsbot", path=str(Path(sys.executable).parent)) or "newsbot"
STRACE = shutil.which("strace")
SENTENCES = [
    "The harbour council approved the budget after a long debate on Tuesday.",
    "Fishermen asked for a timetable for the repairs to the northern breakwater.",
    "The mayor said the work would start in spring and end before the summer.",
]


def vector_segment(db: sqlite3.Connection, collection: str) -> tuple[str, str]:
    """(segment id, collection id) of the collection's vector index in Chroma's own tables."""
    return db.execute(
        "SELECT s.id, s.collection FROM segments s JOIN collections c ON c.id = s.collection"
        " WHERE c.name = ? AND s.scope = 'VECTOR'",
        (collection,),
    ).fetchone()


def chroma_db(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'chroma' / 'chroma.sqlite3'}?mode=ro", uri=True)


def unsaved(data_dir: Path, collection: str = "news") -> int:
    """Records of the collection Chroma has not saved into its vector index: what every new
    process replays (Chroma's queue after the segment's saved mark)."""
    db = chroma_db(data_dir)
    try:
        segment, collection_id = vector_segment(db, collection)
        saved = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,))
        mark = (saved.fetchone() or (0,))[0]
        return int(
            db.execute(
                "SELECT count(*) FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ?",
                (f"%{collection_id}", mark),
            ).fetchone()[0]
        )
    finally:
        db.close()


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


@pytest.mark.skipif(STRACE is None, reason="needs strace to stop a writer inside Chroma's save")
def test_a_writer_killed_as_chroma_starts_saving_leaves_a_store_the_rerun_completes(
    tmp_path, make_bot
) -> None:
    """SIGKILL as the ingest's write makes Chroma start saving the chunks' index (its records
    queued and applied in memory, nothing of the save written): the store opens, answers, and
    the rerun ends clean. Later in the save, Chroma 1.5.9 leaves an index it cannot open
    (docs/store.md, "Chroma's replay")."""
    data_dir = tmp_path / "data"
    newsbot("ingest", str(article(tmp_path, 0, sentences=3)), data_dir=data_dir, save_every=1)
    db = chroma_db(data_dir)
    segment = vector_segment(db, "news")[0]
    db.close()
    header = data_dir / "chroma" / segment / "header.bin"  # the save's first write
    assert header.is_file()
    more = [str(article(tmp_path, number, sentences=3)) for number in range(1, 4)]
    env = {**os.environ, "NEWSBOT_VECTOR_SAVE_EVERY": "1"}
    killed = subprocess.run(
        [STRACE, "-f", "-qq", "-o", os.devnull, "-P", str(header), "-e", "trace=write"]
        + ["-e", "inject=write:signal=SIGKILL:when=1"]
        + [NEWSBOT, "ingest", *more, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode != 0, "the ingest was not stopped in its save"
    assert unsaved(data_dir) > 0
    newsbot("ask", "What did the council approve?", data_dir=data_dir)
    newsbot("ingest", *more, data_dir=data_dir, save_every=1)
    assert unsaved(data_dir) == 0
    bot = make_bot(data_dir=data_dir)
    assert bot.stats()["articles"] == 4
    stored = list(bot.store.iter_chunks(vectors=True))
    assert len(stored) == bot.stats()["chunks"]
    for chunk in stored:  # every chunk's vector is in the index, once
        assert bot.store.nearest(chunk.vector, 1)[0][0] == chunk.id
