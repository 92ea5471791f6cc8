"""The chunker: whole sentences, verbatim offsets, within the model's window."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.machinery import ModuleSpec
from pathlib import Path

import blingfire
import pytest

import index.chunk as chunk_module
from index.article import Article
from index.chunk import (
    CountTokens,
    _sentence_offsets,
    chunk_article,
    context_header,
    split_sentences,
)
from index.embed import TokenCounter
from tests.conftest import SAMPLE_ARTICLE


@pytest.fixture(scope="module")
def count_tokens() -> TokenCounter:
    return TokenCounter("all-MiniLM-L6-v2")


def chunks_of(article: Article, count_tokens: CountTokens, *, overlap: int = 1):
    return chunk_article(
        article,
        count_tokens=count_tokens,
        max_model_tokens=256,
        chunk_tokens=200,
        overlap_sentences=overlap,
    )


def sample_article() -> Article:
    body = (
        SAMPLE_ARTICLE.read_text(encoding="utf-8").strip().removeprefix("date 2024-02-07").strip()
    )
    return Article(
        id="sample",
        title="Ceasefire talks",
        body=body,
        source="Prensa Latina",
        published_at=datetime(2024, 2, 7, tzinfo=UTC),
    )


def test_abbreviations_do_not_split_sentences() -> None:
    text = (
        "Qatari Prime Minister Mohammed al Thani spoke with U.S. Secretary of State Antony "
        "Blinken. Dr. Smith arrived at 3 p.m. on Jan. 5. The talks began."
    )
    sentences = [text[s.start : s.end] for s in split_sentences(text)]
    assert sentences == [
        "Qatari Prime Minister Mohammed al Thani spoke with U.S. Secretary of State Antony "
        "Blinken.",
        "Dr. Smith arrived at 3 p.m. on Jan. 5.",
        "The talks began.",
    ]


def test_sentences_before_and_after_titles_split_right() -> None:
    text = '"We approached it in a positive spirit," the group said. Mr. Blinken agreed.'
    assert [text[s.start : s.end] for s in split_sentences(text)] == [
        '"We approached it in a positive spirit," the group said.',
        "Mr. Blinken agreed.",
    ]


def test_line_breaks_end_sentences_and_offsets_are_verbatim() -> None:
    text = "Headline without a full stop\n\nThe body starts here. It continues “quoted.”\n"
    spans = split_sentences(text)
    assert [text[s.start : s.end] for s in spans] == [
        "Headline without a full stop",
        "The body starts here.",
        "It continues “quoted.”",
    ]


def test_offsets_are_verbatim_in_text_with_quotes_accents_and_emoji() -> None:
    text = (
        "“We’re ready,” said Zoë Müller. The café 🙂 opened in São Paulo! Prices in 東京 rose "
        "5%. Family: 👨\u200d👩\u200d👧 e\u0301te."
    )
    assert [text[s.start : s.end] for s in split_sentences(text)] == [
        "“We’re ready,” said Zoë Müller.",
        "The café 🙂 opened in São Paulo!",
        "Prices in 東京 rose 5%.",
        "Family: 👨\u200d👩\u200d👧 e\u0301te.",
    ]


NON_ASCII_LINES = [
    "“We’re ready,” said Zoë Müller. The café 🙂 opened in São Paulo!",
    "Prices in 東京 rose 5%. Москва said no. 👍🏽 Fine.",
    "It ended.\u200d Then\u200d came «more» — and\u00a0more… Really?",
    "\u200d",  # blingfire reports an offset inside the character: its own wrapper maps it
    "\u200b\r",
]


def test_sentence_offsets_are_blingfires_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C call with offsets mapped by decoding gives the spans of blingfire's wrapper, and
    the wrapper is asked only when an offset falls inside a character."""
    wrapper = blingfire.text_to_sentences_and_offsets
    expected = {line: wrapper(line)[1] for line in NON_ASCII_LINES}
    asked: list[str] = []

    def counted(piece: str) -> tuple[str, list[tuple[int, int]]]:
        asked.append(piece)
        return wrapper(piece)

    monkeypatch.setattr(blingfire, "text_to_sentences_and_offsets", counted)
    assert {line: _sentence_offsets(line) for line in NON_ASCII_LINES} == expected
    assert asked == ["\u200d", "\u200b\r"]
    text = "Done.\n\u200d"
    assert [text[s.start : s.end] for s in split_sentences(text)] == ["Done.", "\u200d"]


def test_blingfire_library_found_by_its_wrapper_when_not_where_expected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A blingfire release that keeps its library elsewhere still splits sentences: the
    wrapper, which knows where its library is, is asked for it."""
    spec = ModuleSpec("blingfire", None, origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(chunk_module, "find_spec", lambda name: spec)
    library = chunk_module._blingfire()
    assert library is blingfire.blingfire
    assert hasattr(library, "TextToSentencesWithOffsets")


def test_chunks_are_verbatim_spans_within_the_model_window(count_tokens: TokenCounter) -> None:
    article = sample_article()
    chunks = chunks_of(article, count_tokens, overlap=1)
    assert len(chunks) > 1
    for position, chunk in enumerate(chunks):
        assert chunk.position == position
        assert article.body[chunk.start : chunk.end] == chunk.text
        assert count_tokens(chunk.embed_text) + 2 <= 256
    # The lede is read as it stands; later chunks carry the title and outlet as context.
    assert chunks[0].embed_text == chunks[0].text
    for chunk in chunks[1:]:
        assert chunk.embed_text == "Ceasefire talks (Prensa Latina)\n" + chunk.text
    # Every sentence of the article lies whole inside some chunk, so any quote is citable.
    for span in split_sentences(article.body):
        assert any(c.start <= span.start and span.end <= c.end for c in chunks)
    # Neighbours share a sentence of overlap.
    assert chunks[1].start < chunks[0].end


def test_a_huge_sentence_is_cut_at_words_not_silently_truncated(count_tokens) -> None:
    body = "word " * 3000 + "end."
    article = Article(id="long", title="Long", body=body.strip())
    chunks = chunks_of(article, count_tokens, overlap=1)
    assert len(chunks) >= 15
    assert all(count_tokens(c.embed_text) + 2 <= 256 for c in chunks)
    covered = "".join(c.text + " " for c in chunks).split()
    assert covered == body.split()


def test_long_titles_are_shortened_to_leave_room_for_text(count_tokens) -> None:
    body = " ".join(f"Sentence number {n} of a long story." for n in range(60))
    article = Article(id="t", title="Very long headline " * 60, body=body)
    chunks = chunks_of(article, count_tokens, overlap=0)
    assert len(chunks) > 1 and chunks[0].header == ""
    for chunk in chunks[1:]:
        assert chunk.header.startswith("Very long headline")
        assert count_tokens(chunk.header) <= 64
        assert count_tokens(chunk.embed_text) + 2 <= 256


def test_the_header_is_counted_once_an_article(count_tokens) -> None:
    """Ingest counts the word pieces of every text it chunks: the header's once, not again."""
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return int(count_tokens(text))

    for title in ("Ceasefire talks", "Very long headline " * 60):
        article = Article(id="h", title=title, body=sample_article().body, source="Wire")
        chunks = chunks_of(article, counting)
        header = chunks[1].header
        assert header.startswith(title.split()[0])
        assert counted.count(header) == 1
        counted.clear()


def test_header_names_title_and_source() -> None:
    header = context_header(sample_article())
    assert header == "Ceasefire talks (Prensa Latina)"
    assert context_header(Article(id="x", title="", body="b", source="AP")) == "AP"
    assert context_header(Article(id="x", title="", body="b")) == ""


def test_empty_body_gives_no_chunks(count_tokens) -> None:
    article = Article(id="e", title="Empty", body="   \n ")
    assert chunks_of(article, count_tokens, overlap=1) == []
