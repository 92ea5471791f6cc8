"""The index snapshot on its own: a saved and loaded LexicalIndex answers exactly like the one
that was saved, keeps working as ingests change it, and a damaged file is refused, not used."""

from __future__ import annotations

import json
import threading
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from bot import lexical_cache
from bot.lexical_cache import StoreState
from bot.retrieve import LexicalIndex, Scope, query_terms, terms
from index.store import StoredChunk

STATE = StoreState("collection-1", 7, 0)
WORDS = (
    "qatar hamas ceasefire talks hostages egypt cairo doha ferry storm harbour library council "
    "budget election minister response positive framework agreement pangolin sanctuary"
).split()
OUTLETS = ["Wire A", "Wire B", "Coast Daily", "Town Crier"]
QUESTIONS = [
    "What did Qatar say about Hamas's response?",
    "ceasefire talks in Cairo",
    "harbour ferry storm",
    "council budget",
    "pangolin",
    "nothing matches this",
]


def chunks(count: int, seed: int = 3) -> list[StoredChunk]:
    rng = np.random.default_rng(seed)
    made = []
    for number in range(count):
        article = f"article-{number // 3}"
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 40))))
        if number % 4 == 0:  # multi-byte characters: the texts are stored as UTF-8 bytes
            text += " Zürich said “positive” — ✓"
        vector = rng.normal(size=16).astype(np.float32)
        source = OUTLETS[number % len(OUTLETS)]
        metadata = {
            "article_id": article,
            "title": f"Title {number % 7}",
            "source": source,
            "published_at": f"2024-02-{1 + number % 20:02d}T10:00:00+01:00",
            "published_ts": 1706778000 + 86400 * (number % 20),
        }
        if number % 5 == 0:
            metadata["sources"] = [source, OUTLETS[(number + 1) % len(OUTLETS)]]
        made.append(StoredChunk(f"{article}#{number % 3}", text, metadata, vector=vector))
    return made


def build(items: list[StoredChunk]) -> LexicalIndex:
    index = LexicalIndex()
    for chunk in items:
        index.add(chunk)
    return index


def state_of(index: LexicalIndex) -> StoreState:
    return StoreState(STATE.collection_id, STATE.generation, len(index))


def round_trip(index: LexicalIndex, path: Path) -> LexicalIndex:
    assert lexical_cache.save(index, state_of(index), path)
    loaded = lexical_cache.load(path, state_of(index), k1=index.k1, b=index.b)
    assert loaded is not None
    return loaded


def answers(index: LexicalIndex) -> list[object]:
    """Everything retrieval reads from the index, for a set of questions and scopes."""
    rng = np.random.default_rng(11)
    scopes = [
        Scope(),
        Scope(sources=("Wire B",)),
        Scope(sources=("Coast Daily", "Town Crier"), first=date(2024, 2, 3)),
        Scope(first=date(2024, 2, 5), last=date(2024, 2, 9)),
    ]
    seen: list[object] = [len(index), sorted(index.sources()), index.day_range()]
    for question in QUESTIONS:
        words = query_terms(question)
        seen.append(index.term_weights(words))
        vector = rng.normal(size=16).astype(np.float32)
        for scope in scopes:
            allowed = index.mask(scope)
            seen.append(None if allowed is None else allowed.tolist())
            seen.append(index.search(words, 10, allowed))
            seen.append(index.covers_vectors(allowed))
            seen.append(index.dense_search(vector, 10, allowed))
    for chunk_id in [*sorted(index._slot_of)[:20], "article-0#0", "no-such-chunk"]:
        seen.append((index.info(chunk_id), index.article_of(chunk_id)))
        seen.append(index.document(chunk_id))  # the text and metadata a passage shows
        seen.append(index.similarity(chunk_id, np.ones(16, dtype=np.float32)))
    return seen


def test_a_loaded_snapshot_answers_exactly_like_the_index_it_was_saved_from(
    tmp_path: Path,
) -> None:
    items = chunks(90)
    index = build(items)
    loaded = round_trip(index, tmp_path / "index.npz")
    assert answers(loaded) == answers(index)
    assert [loaded.document(chunk.id) for chunk in items[-3:]] == [
        (chunk.text, chunk.metadata) for chunk in items[-3:]
    ]


def test_removed_chunks_stay_removed_and_the_loaded_index_follows_later_ingests(
    tmp_path: Path,
) -> None:
    items = chunks(90)
    index = build(items)
    for chunk in items[:10]:
        index.remove(chunk.id)
    loaded = round_trip(index, tmp_path / "index.npz")
    assert answers(loaded) == answers(index)

    # The same ingest applied to both: replace some chunks, remove some, add new ones.
    changes = chunks(30, seed=5)
    for target in (index, loaded):
        for chunk in changes[:10]:
            target.add(chunk)
        for chunk in items[40:50]:
            target.remove(chunk.id)
        target.add(StoredChunk("new#0", "pangolin sanctuary in Doha", {"source": "Wire Z"}))
    assert "Wire Z" in loaded.sources()
    assert loaded.search(terms("pangolin sanctuary doha"), 1)[0][0] == "new#0"
    assert answers(loaded) == answers(index)


def test_a_snapshot_grows_past_many_removals(tmp_path: Path) -> None:
    """Enough removals compact the index; a loaded one compacts the same way."""
    items = chunks(1500)
    index = build(items)
    loaded = round_trip(index, tmp_path / "index.npz")
    for target in (index, loaded):
        for chunk in items[:1200]:
            target.remove(chunk.id)
    assert len(loaded._chunk_ids) == len(index._chunk_ids) < 1500  # compacted
    assert answers(loaded) == answers(index)


def test_a_snapshot_of_another_store_state_or_tuning_is_not_used(tmp_path: Path) -> None:
    index = build(chunks(30))
    path = tmp_path / "index.npz"
    assert lexical_cache.save(index, state_of(index), path)
    for other in (
        StoreState("collection-2", STATE.generation, len(index)),  # reset and refilled
        StoreState(STATE.collection_id, STATE.generation + 1, len(index)),  # written since
        StoreState(STATE.collection_id, STATE.generation, len(index) + 1),
    ):
        assert lexical_cache.load(path, other, k1=index.k1, b=index.b) is None
    assert lexical_cache.load(path, state_of(index), k1=1.5, b=index.b) is None
    assert lexical_cache.load(tmp_path / "missing.npz", state_of(index), k1=1.2, b=0.75) is None


def damaged_copies(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    garbled = bytearray(data)
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        garbled[offset] ^= 0x5A
    return {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "garbled": bytes(garbled),
        "not a zip": b"\x93NUMPY" + data[6:200],
    }


def test_a_damaged_snapshot_is_refused(tmp_path: Path) -> None:
    index = build(chunks(60))
    path = tmp_path / "index.npz"
    assert lexical_cache.save(index, state_of(index), path)
    for name, content in damaged_copies(path).items():
        broken = tmp_path / f"{name.replace(' ', '-')}.npz"
        broken.write_bytes(content)
        assert lexical_cache.load(broken, state_of(index), k1=1.2, b=0.75) is None, name


def test_a_well_formed_snapshot_with_impossible_contents_is_refused(tmp_path: Path) -> None:
    """Valid zip, valid arrays, wrong numbers: refused before a search could index past an end."""
    index = build(chunks(60))
    path = tmp_path / "index.npz"
    assert lexical_cache.save(index, state_of(index), path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}

    def tampered(name: str, value: np.ndarray) -> Path:
        target = tmp_path / f"tampered-{name}.npz"
        np.savez(target, **{**arrays, name: value})
        return target

    slots = arrays["post_slots"].copy()
    slots[3] = 10_000
    offsets = arrays["doc_offsets"].copy()
    offsets[-1] += 1
    meta = json.loads(arrays["meta"].tobytes())
    meta["chunk_ids"] = meta["chunk_ids"][:-1]
    for target in (
        tampered("post_slots", slots),
        tampered("doc_offsets", offsets),
        tampered("vectors", arrays["vectors"][:-1]),
        tampered("meta", np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)),
    ):
        assert lexical_cache.load(target, state_of(index), k1=1.2, b=0.75) is None, target.name


def test_a_snapshot_holds_no_pickles(tmp_path: Path) -> None:
    index = build(chunks(20))
    path = tmp_path / "index.npz"
    assert lexical_cache.save(index, state_of(index), path)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            header = archive.read(name)[:128]
            assert b"'descr': '|O'" not in header and b"'descr': 'O'" not in header, name


def test_an_index_with_fields_the_format_does_not_know_is_not_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = build(chunks(10))
    index.new_column = [1, 2, 3]  # type: ignore[attr-defined]
    assert not lexical_cache.save(index, state_of(index), tmp_path / "index.npz")
    assert not (tmp_path / "index.npz").exists()
    assert "new_column" in caplog.text


def test_writers_racing_never_leave_a_reader_half_a_snapshot(tmp_path: Path) -> None:
    index = build(chunks(200))
    path = tmp_path / "index.npz"
    assert lexical_cache.save(index, state_of(index), path)
    expected = answers(index)
    failures: list[object] = []

    def write() -> None:
        for _ in range(15):
            if not lexical_cache.save(index, state_of(index), path):
                failures.append("save failed")

    def read() -> None:
        for _ in range(15):
            loaded = lexical_cache.load(path, state_of(index), k1=1.2, b=0.75)
            if loaded is None or answers(loaded) != expected:
                failures.append("bad read")

    threads = [threading.Thread(target=job) for job in (write, write, read, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporary files left
