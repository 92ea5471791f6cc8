"""The lexical index and article registry (index/lexical.py) on a real tantivy index: BM25
ranking, replacing and removing chunks, scoped searches, the registry, and readers in other
processes seeing commits."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from bot.retrieve import Scope
from index.lexical import TERMS_ONE_BY_ONE, LexicalIndex
from index.store import StoredChunk
from index.text import terms


def chunk(
    chunk_id: str, text: str, *, source: str = "Wire", day: str = "2023-11-24", sources=()
) -> StoredChunk:
    published = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    return StoredChunk(
        id=chunk_id,
        text=text,
        metadata={
            "article_id": chunk_id.split("#")[0],
            "title": "",
            "source": source,
            "sources": list(sources),
            "published_at": published.isoformat(),
            "published_ts": int(published.timestamp()),
        },
    )


@pytest.fixture
def index(tmp_path: Path) -> LexicalIndex:
    return LexicalIndex(tmp_path / "lexical", terms)


def ids(hits) -> list[str]:
    return [chunk_id for chunk_id, _, _ in hits]


def test_bm25_ranks_by_rare_terms_and_follows_removals(index: LexicalIndex) -> None:
    with index.writer() as writer:
        writer.put_chunks(
            [
                chunk("a#0", "Qatar said talks on the ceasefire were positive."),
                chunk("b#0", "The ceasefire talks stalled on Tuesday."),
                chunk("c#0", "A football match ended in a draw."),
            ]
        )
    hits = index.search(terms("What did the Qatari mediators say about the ceasefire?"), 10)
    assert ids(hits) == ["a#0", "b#0"]
    assert hits[0][1] == "a"  # the article id comes with the hit

    with index.writer() as writer:
        writer.remove_chunks(["a#0"])
    assert ids(index.search(terms("Qatari ceasefire"), 10)) == ["b#0"]
    assert index.chunk_count() == 2

    with index.writer() as writer:  # re-adding a chunk id replaces its text
        writer.put_chunks([chunk("b#0", "A new draw in football.")])
    assert index.search(terms("ceasefire"), 10) == []
    assert index.chunk_count() == 2


def test_a_write_that_fails_commits_nothing(index: LexicalIndex) -> None:
    with pytest.raises(RuntimeError), index.writer() as writer:
        writer.put_chunks([chunk("a#0", "Qatar said talks were positive.")])
        writer.put_articles({"a": {"fingerprint": "f", "content_hash": "h", "n_chunks": 1}})
        raise RuntimeError("killed half-way")
    assert index.search(terms("Qatar"), 10) == []
    assert index.articles(["a"]) == {}


def test_searches_filter_by_outlet_local_day_and_time(index: LexicalIndex) -> None:
    with index.writer() as writer:
        writer.put_chunks(
            [
                chunk("verge#0", "Power banks on sale", source="The Verge", day="2023-11-24"),
                chunk("wired#0", "Power banks on sale", source="Wired", day="2023-11-25"),
                chunk("age#0", "Power banks on sale", source="The Age", day="2023-11-25"),
                chunk("copy#0", "Power banks on sale", source="AP", sources=["AP", "Kan"]),
            ]
        )
    words = terms("power banks")

    def found(scope: Scope) -> set[str]:
        return set(ids(index.search(words, 10, scope.lexical_filter())))

    assert found(Scope(sources=("Wired",))) == {"wired#0"}
    assert found(Scope(sources=("Kan",))) == {"copy#0"}  # a syndicated copy's outlet counts
    assert found(Scope(first=date(2023, 11, 25), last=date(2023, 11, 25))) == {"wired#0", "age#0"}
    assert found(Scope(sources=("The Verge",), first=date(2023, 11, 25))) == set()
    noon = datetime.fromisoformat("2023-11-25T12:00:00+00:00")
    assert found(Scope(since=noon)) == {"wired#0", "age#0"}
    assert found(Scope(until=noon.replace(day=24))) == {"verge#0", "copy#0"}
    # The chunks a scope admits (of given ids): how many, which; dense search keeps those.
    day = Scope(first=date(2023, 11, 25), last=date(2023, 11, 25)).lexical_filter()
    assert index.chunk_count(day) == 2
    assert sorted(index.chunk_ids(day)) == ["age#0", "wired#0"]
    assert index.chunk_ids(day, among=["verge#0", "age#0", "gone#0"]) == ["age#0"]
    assert index.chunk_ids(Scope(sources=("Nobody",)).lexical_filter()) == []
    assert sorted(index.sources()) == ["AP", "Kan", "The Age", "The Verge", "Wired"]
    assert index.day_range() == (date(2023, 11, 24), date(2023, 11, 25))


def test_a_scope_admits_the_same_chunks_however_many_ids_are_checked(index: LexicalIndex) -> None:
    # Up to TERMS_ONE_BY_ONE values are looked up a term each, more as one set (the ~900 nearest
    # chunks checked against an outlet): the same chunks in the same order either way.
    outlets = ["Wired", "The Age", "AP"]
    with index.writer() as writer:
        writer.put_chunks(
            [
                chunk(f"a{n}#0", "Power banks", source=outlets[n % 3], day=f"2023-11-{20 + n % 5}")
                for n in range(60)
            ]
        )
    known = [f"a{n}#0" for n in range(60)]
    admitted = [c for n, c in enumerate(known) if n % 3 < 2 and n % 5 in (1, 2)]
    scope = Scope(sources=("Wired", "The Age"), first=date(2023, 11, 21), last=date(2023, 11, 22))
    where = scope.lexical_filter()
    gone = [f"gone{n}#0" for n in range(TERMS_ONE_BY_ONE + 1)]
    few = index.chunk_ids(where, among=known)
    assert sorted(few) == sorted(admitted)
    assert index.chunk_ids(where, among=[*gone, *known]) == few
    assert index.chunk_ids(where) == few
    assert index.chunk_count(where) == len(admitted)


def test_the_registry_answers_by_id_hash_and_primary(index: LexicalIndex) -> None:
    records = {
        "story": {"fingerprint": "f1", "content_hash": "h", "n_chunks": 2, "duplicate_of": ""},
        "copy": {"fingerprint": "f2", "content_hash": "h", "n_chunks": 0, "duplicate_of": "story"},
    }
    with index.writer() as writer:
        writer.put_articles(records)
    assert index.articles(["story", "missing"]) == {"story": records["story"]}
    assert index.articles_by_hash(["h", "other"]) == {"h": "story"}
    assert index.duplicates_of(["story"]) == {"story": [{**records["copy"], "article_id": "copy"}]}
    assert index.article_count() == 2
    assert index.chunk_count() == 0  # registry records are not chunks to search

    with index.writer() as writer:
        writer.set_state("log-1", 7)
        writer.put_articles({"story": {**records["story"], "fingerprint": "f3"}})
    assert index.articles(["story"])["story"]["fingerprint"] == "f3"
    assert index.article_count() == 2
    assert index.state() == ("log-1", 7)


@pytest.mark.slow  # a second Python process
def test_a_reader_in_another_process_sees_a_commit_after_reload(
    index: LexicalIndex, tmp_path: Path
) -> None:
    with index.writer() as writer:
        writer.put_chunks([chunk("a#0", "Nothing about ferries here.")])
    assert index.search(terms("Zanzibar"), 5) == []  # this reader has opened the index
    writer_code = (
        "import sys; from pathlib import Path; from index.text import terms; "
        "from index.lexical import LexicalIndex; from tests.test_lexical import chunk\n"
        "index = LexicalIndex(Path(sys.argv[1]), terms)\n"
        "with index.writer() as writer:\n"
        "    writer.put_chunks([chunk('z#0', 'The ferry to Zanzibar was delayed.')])\n"
    )
    subprocess.run([sys.executable, "-c", writer_code, str(index.path)], check=True)
    index.reload()
    assert ids(index.search(terms("Zanzibar"), 5)) == ["z#0"]


def test_tied_scores_rank_by_chunk_id_whatever_the_order_of_writing(tmp_path: Path) -> None:
    # Equal BM25 scores came back in the order of tantivy's segments and documents, so two
    # builds of one store (or one store before and after a merge) ranked ties differently.
    texts = {f"{name}#0": "The ceasefire talks stalled." for name in "cbeadf"}
    orders = [sorted(texts), sorted(texts, reverse=True), list(texts)]
    results = []
    for number, order in enumerate(orders):
        index = LexicalIndex(tmp_path / f"lexical-{number}", terms)
        for chunk_id in order:  # one commit, hence one segment, a chunk
            with index.writer() as writer:
                writer.put_chunks([chunk(chunk_id, texts[chunk_id])])
        results.append([ids(index.search(terms("ceasefire"), n)) for n in (2, 4, 10)])
    assert results[0] == results[1] == results[2]
    assert results[0] == [["a#0", "b#0"], ["a#0", "b#0", "c#0", "d#0"], sorted(texts)]
