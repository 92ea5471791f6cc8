"""Hostile input: whatever the bytes, every reader yields Articles or ReadFailures, never raises."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.errors import ReadError
from index.article import Article, ReadFailure
from index.dates import parse_date
from index.read import iter_articles, read_text

# Hundreds of generated inputs: thorough, not quick, so in the slow set (tests/test_read.py holds
# the readers' example tests, which the fast set runs).
pytestmark = pytest.mark.slow

# The settings fixture is immutable and every example writes to its own temporary folder,
# so sharing the function-scoped fixture across examples is safe.
PROPERTY = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = hypothesis_settings(PROPERTY, max_examples=15)

SUFFIXES = [".txt", ".md", ".html", ".json", ".jsonl", ".xml", ".rss", ".atom", ".htm"]
# Text without control characters or lone surrogates (those make a file "binary" on purpose).
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=300)


def read_one_file(settings, name: str, data: bytes) -> list[Article | ReadFailure]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        items = list(iter_articles([str(path)], settings))
    check_items(items)
    return items


def check_items(items: list[Article | ReadFailure]) -> None:
    for item in items:
        assert isinstance(item, Article | ReadFailure), item
        if isinstance(item, Article):
            assert item.id and isinstance(item.title, str)
            assert item.body and item.body == item.body.strip()
            assert "\r" not in item.body
            assert item.published_at is None or item.published_at.tzinfo is not None
        else:
            assert item.location and item.message


def normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@PROPERTY
@given(data=st.binary(max_size=3000), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_never_raise(settings, data, suffix):
    offline = settings.model_copy(update={"fetch_full_articles": False})
    items = read_one_file(offline, f"random{suffix}", data)
    if suffix in (".txt", ".md", ".html", ".htm"):
        assert len(items) == 1  # one file, one result


@PROPERTY
@given(
    segments=st.lists(
        st.tuples(TEXT, st.sampled_from(["utf-8", "cp1252", "latin-1", "utf-16", "cp1251"])),
        min_size=1,
        max_size=4,
    ),
    suffix=st.sampled_from([".txt", ".md"]),
)
def test_mixed_encodings_give_an_article_or_a_clear_failure(settings, segments, suffix):
    data = b"".join(text.encode(encoding, errors="replace") for text, encoding in segments)
    [item] = read_one_file(settings, f"mixed{suffix}", data)
    if isinstance(item, ReadFailure):
        assert any(word in item.message for word in ("empty", "binary", "no article text"))


@PROPERTY
@given(text=TEXT)
def test_utf8_text_body_is_an_exact_span_of_the_text(settings, text):
    [item] = read_one_file(settings, "2024-01-02-story.txt", text.encode("utf-8"))
    if isinstance(item, Article):
        assert item.body in normalised(text).lstrip("\ufeff")
    else:
        assert "empty" in item.message or "no article text" in item.message


@FEW
@given(
    word=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=12),
    repeat=st.integers(min_value=1_000, max_value=60_000),
    suffix=st.sampled_from([".txt", ".md", ".html", ".jsonl"]),
)
def test_huge_single_lines(settings, word, repeat, suffix):
    line = " ".join([word] * repeat)
    if suffix == ".jsonl":
        data = json.dumps({"title": "Huge", "body": line}).encode("utf-8")
    elif suffix == ".html":
        data = f"<html><body><article><p>{line}</p></article></body></html>".encode()
    else:
        data = line.encode("utf-8")
    [item] = read_one_file(settings, f"huge{suffix}", data)
    if suffix in (".txt", ".md", ".jsonl") and isinstance(item, Article):
        assert len(item.body) >= len(line.strip()) // 2


@FEW
@given(
    depth=st.integers(min_value=1, max_value=6_000),
    tags=st.lists(st.sampled_from(["div", "span", "p", "section", "b", "li", "table", "a"])),
    close=st.booleans(),
    words=TEXT,
)
def test_deeply_nested_html(settings, depth, tags, close, words):
    tags = tags or ["div"]
    opening = "".join(f"<{tags[level % len(tags)]}>" for level in range(depth))
    closing = "".join(f"</{tags[level % len(tags)]}>" for level in reversed(range(depth)))
    html = f"<html><body>{opening}{words} and some more words here.{closing if close else ''}"
    [item] = read_one_file(settings, "deep.html", html.encode("utf-8"))
    assert isinstance(item, Article | ReadFailure)


FEED_LINKS = st.sampled_from(
    [
        "",
        "http://127.0.0.1:9/story",  # refused by default: never contacted
        "http://10.0.0.1/story",  # refused by default: never contacted
        "not a url",
        "javascript:alert(1)",
        "/relative/story",
    ]
)
FEED_DATES = st.one_of(
    st.sampled_from(
        [
            "",
            "Tue, 06 Feb 2024 08:15:00 +0000",
            "2024-02-06T08:15:00Z",
            "Feb 31 2024",
            "99999",
            "yesterday",
            "Tue, 06 Feb 2024 25:99:00 +9999",
        ]
    ),
    TEXT,
)


@st.composite
def feed_items(draw: st.DrawFn) -> str:
    def escape(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = []
    if draw(st.booleans()):
        parts.append(f"<title>{escape(draw(TEXT))}</title>")
    link = draw(FEED_LINKS)
    if link:
        parts.append(f"<link>{escape(link)}</link>")
    date = draw(FEED_DATES)
    if date:
        parts.append(f"<pubDate>{escape(date)}</pubDate>")
    if draw(st.booleans()):
        parts.append(f"<description>{escape(draw(TEXT))}</description>")
    if draw(st.booleans()):
        parts.append(f"<content:encoded><![CDATA[{draw(TEXT).replace(']]>', '')}]]>")
        if draw(st.booleans()):
            parts.append("</content:encoded>")  # else left broken
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["<broken", "</item></item>", "&bogus;", "<b><i>"])))
    return "<item>" + "".join(parts) + "</item>"


@PROPERTY
@given(items=st.lists(feed_items(), max_size=6), atom=st.booleans())
def test_feeds_with_broken_entries(settings, items, atom):
    body = "".join(items)
    if atom:
        body = body.replace("<item>", "<entry>").replace("</item>", "</entry>")
        xml = f'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>{body}</feed>'
    else:
        xml = (
            '<?xml version="1.0"?><rss version="2.0" '
            'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
            f"<channel><title>T</title>{body}</channel></rss>"
        )
    quick = settings.model_copy(update={"fetch_timeout": 2.0})
    read_one_file(quick, "feed.atom" if atom else "feed.rss", xml.encode("utf-8"))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["id", "title", "body", "text", "content", "date", "url", "source", "author", "x"]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=12,
)
GARBAGE_LINES = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=80
)


@PROPERTY
@given(
    lines=st.lists(
        st.one_of(JSON_VALUES.map(json.dumps), GARBAGE_LINES, st.just("")),
        min_size=1,
        max_size=12,
    )
)
def test_random_jsonl_gives_one_result_per_line(settings, lines):
    items = read_one_file(settings, "random.jsonl", "\n".join(lines).encode("utf-8"))
    filled = [number for number, line in enumerate(lines, start=1) if line.strip()]
    if not filled:
        assert len(items) == 1 and "empty" in items[0].message
        return
    assert len(items) == len(filled)
    for number, item in zip(filled, items, strict=True):
        if isinstance(item, ReadFailure):
            assert item.line == number
        else:
            assert item.origin.endswith(f":{number}")


@PROPERTY
@given(text=st.text(max_size=400))
def test_read_text_returns_an_article_or_raises_read_error(text):
    try:
        article = read_text(text, "some/where/2024-02-07-note.md")
    except ReadError as exc:
        assert "some/where/2024-02-07-note.md" in str(exc)
    else:
        assert article.body in normalised(text).lstrip("\ufeff")


@PROPERTY
@given(
    value=st.one_of(
        TEXT,
        st.integers(),
        st.floats(),
        st.datetimes(),
        st.none(),
        st.from_regex(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?)?"),
    )
)
def test_parse_date_is_aware_or_none(value):
    parsed = parse_date(value)
    assert parsed is None or (isinstance(parsed, datetime) and parsed.tzinfo is not None)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_hostile_file_in_a_folder_is_accounted_for(settings, tmp_path, suffix):
    samples = [b"", b"\x00\x01\x02", b"\xff\xfe\xfd", b"<", b"{", b"<rss><channel><item>"]
    names = [f"{number}{suffix}" for number in range(len(samples))]
    for name, data in zip(names, samples, strict=True):
        (tmp_path / name).write_bytes(data)
    items = list(iter_articles([str(tmp_path)], settings))
    check_items(items)
    where = [item.location if isinstance(item, ReadFailure) else item.origin for item in items]
    for name in names:
        assert any(f"/{name}" in place for place in where), (name, items)
