"""Readers: files, folders, globs, text/markdown, HTML, JSON/JSONL, feed files. No network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.errors import ReadError
from index.article import Article, ReadFailure, stable_id
from index.read import iter_articles, read_text
from tests.conftest import EVAL

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "articles" / "2024-02-07-ceasefire-talks.txt"
MULTIHOP = EVAL / "multihop_corpus.jsonl"


def read_all(settings, *sources: object) -> list[Article | ReadFailure]:
    return list(iter_articles([str(source) for source in sources], settings))


def articles_of(items: list[Article | ReadFailure]) -> list[Article]:
    return [item for item in items if isinstance(item, Article)]


def failures_of(items: list[Article | ReadFailure]) -> list[ReadFailure]:
    return [item for item in items if isinstance(item, ReadFailure)]


def only_article(settings, path: Path) -> Article:
    items = read_all(settings, path)
    assert len(items) == 1 and isinstance(items[0], Article), items
    return items[0]


# -- the sample article ------------------------------------------------------------------------


def test_sample_article_date_line_becomes_published_at_not_body(settings):
    article = only_article(settings, SAMPLE)
    assert article.published_at == datetime(2024, 2, 7, tzinfo=UTC)
    assert article.published_at.tzinfo is not None
    assert article.body.startswith("A source in Netanyahu's executive")
    assert "date 2024-02-07" not in article.body
    assert article.title == "Ceasefire talks"
    assert article.id == stable_id("file", str(SAMPLE.resolve()))
    # The body is the file's text exactly, minus the header.
    raw = SAMPLE.read_text(encoding="utf-8")
    assert article.body in raw
    assert article.body.endswith(raw.strip()[-40:])


def test_date_line_alone_then_title_then_body(settings, tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(
        "date 2024-03-01\nHarbour reopens after storm\n\nThe harbour reopened on Friday.\n",
        encoding="utf-8",
    )
    article = only_article(settings, path)
    assert article.published_at == datetime(2024, 3, 1, tzinfo=UTC)
    assert article.title == "Harbour reopens after storm"
    assert article.body == "The harbour reopened on Friday."


def test_header_lines_fill_the_fields(settings, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(
        "Title: Council approves budget\n"
        "Source: City Gazette\n"
        "Author: Ana Ruiz\n"
        "URL: https://gazette.example/budget\n"
        "Date: 2024-05-02T09:30:00+02:00\n"
        "\n"
        "The council approved the budget by seven votes to two.\n",
        encoding="utf-8",
    )
    article = only_article(settings, path)
    assert article.title == "Council approves budget"
    assert article.source == "City Gazette"
    assert article.author == "Ana Ruiz"
    assert article.url == "https://gazette.example/budget"
    assert article.id == stable_id("url", "https://gazette.example/budget")
    assert article.published_at == datetime(2024, 5, 2, 7, 30, tzinfo=UTC)
    assert article.body == "The council approved the budget by seven votes to two."


def test_markdown_heading_is_the_title(settings, tmp_path):
    path = tmp_path / "2023-12-24-holiday.md"
    path.write_text(
        "# Snow expected on Christmas Eve\n\nForecasters expect **heavy snow** tonight.\n\n"
        "## Travel\n\nRoads may close.\n",
        encoding="utf-8",
    )
    article = only_article(settings, path)
    assert article.title == "Snow expected on Christmas Eve"
    assert article.body.startswith("Forecasters expect **heavy snow** tonight.")
    assert "## Travel" in article.body
    assert article.published_at == datetime(2023, 12, 24, tzinfo=UTC)  # from the file name


def test_markdown_front_matter(settings, tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        '---\ntitle: "Rates held at 5%"\nsource: Money Weekly\ndate: 2024-01-31\n'
        "tags: [economy]\n---\n\n# Rates held at 5%\n\nThe central bank held rates.\n",
        encoding="utf-8",
    )
    article = only_article(settings, path)
    assert article.title == "Rates held at 5%"
    assert article.source == "Money Weekly"
    assert article.published_at == datetime(2024, 1, 31, tzinfo=UTC)
    assert article.body == "The central bank held rates."


def test_first_line_with_final_punctuation_is_body_not_title(settings, tmp_path):
    path = tmp_path / "2024-02-10_river-levels.txt"
    path.write_text("Rivers rose overnight.\n\nMore rain is due.\n", encoding="utf-8")
    article = only_article(settings, path)
    assert article.title == "River levels"
    assert article.body == "Rivers rose overnight.\n\nMore rain is due."
    assert article.published_at == datetime(2024, 2, 10, tzinfo=UTC)


def test_no_date_anywhere_stays_none(settings, tmp_path):
    path = tmp_path / "undated.txt"
    path.write_text("Nothing says when this happened.\n", encoding="utf-8")
    article = only_article(settings, path)
    assert article.published_at is None


def test_crlf_line_endings_normalised_and_body_otherwise_exact(settings, tmp_path):
    path = tmp_path / "crlf.txt"
    body = "First  paragraph,  with   odd spacing.\n\n\tIndented second.\n\nThird."
    path.write_bytes(("date 2024-02-07\r\n" + body.replace("\n", "\r\n") + "\r\n").encode())
    article = only_article(settings, path)
    assert article.body == body


def test_read_text_public_function():
    article = read_text("date 2024-02-07 Qatar said the response was positive.", "x.txt")
    assert article.body == "Qatar said the response was positive."
    assert article.published_at == datetime(2024, 2, 7, tzinfo=UTC)
    with pytest.raises(ReadError, match="x.txt"):
        read_text("date 2024-02-07\n\n", "x.txt")


# -- encodings, empty, binary, size ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "before"),
    [
        ("Café owner’s “big” résumé — naïve.", "cp1252", ""),
        ("Zürich talks resumed.", "utf-8", "\ufeffdate 2024-02-07 "),  # a BOM, then a date line
        ("Αθήνα: talks resumed.", "utf-16", ""),
        ("Переговоры о прекращении огня продолжаются в Каире, сообщили источники.", "cp1251", ""),
    ],
)
def test_encodings_are_detected_and_decode_to_the_right_characters(
    settings, tmp_path, text, encoding, before
):
    path = tmp_path / "story.txt"
    path.write_bytes((before + text).encode(encoding))
    assert only_article(settings, path).body == text


def test_empty_and_whitespace_files_fail_alone(settings, tmp_path):
    (tmp_path / "a-empty.txt").write_bytes(b"")
    (tmp_path / "b-blank.md").write_bytes(b"  \n\n\t\n")
    (tmp_path / "c-good.txt").write_text("Still read.", encoding="utf-8")
    items = read_all(settings, tmp_path)
    failures = failures_of(items)
    assert [Path(f.location).name for f in failures] == ["a-empty.txt", "b-blank.md"]
    assert all("empty" in f.message for f in failures)
    assert [a.body for a in articles_of(items)] == ["Still read."]


def test_binary_files_fail_with_a_clear_message(settings, tmp_path):
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "nul.json").write_bytes(b'{"body": "x\x00y"}')
    items = read_all(settings, tmp_path / "image.txt", tmp_path / "nul.json")
    assert [type(item) for item in items] == [ReadFailure, ReadFailure]
    assert all("binary" in item.message for item in failures_of(items))


def test_file_over_the_size_cap_names_the_setting(settings, tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 100, encoding="utf-8")
    small = settings.model_copy(update={"max_file_bytes": 100})
    [failure] = read_all(small, path)
    assert isinstance(failure, ReadFailure)
    assert "500 bytes" in failure.message and "NEWSBOT_MAX_FILE_BYTES" in failure.message
    assert isinstance(read_all(settings, path)[0], Article)


def test_missing_path_and_bad_scheme_are_failures_not_exceptions(settings, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Read me.", encoding="utf-8")
    items = read_all(settings, tmp_path / "missing.txt", "ftp://example.com/a.txt", good)
    assert isinstance(items[0], ReadFailure) and "no such file" in items[0].message
    assert isinstance(items[1], ReadFailure) and "http" in items[1].message
    assert isinstance(items[2], Article)


# -- folders and globs -------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("A text.", encoding="utf-8")
    (root / "b" / "c.md").write_text("C text.", encoding="utf-8")
    (root / "b" / "deep" / "d.json").write_text(json.dumps({"body": "D text."}), encoding="utf-8")
    (root / "b" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    (root / ".hidden" / "e.txt").write_text("Hidden.", encoding="utf-8")


def test_folders_are_read_recursively_in_sorted_order(settings, tmp_path):
    make_tree(tmp_path)
    items = read_all(settings, tmp_path)
    assert [a.body for a in articles_of(items)] == ["A text.", "C text.", "D text."]
    assert not failures_of(items)  # the .jpg and the hidden folder are skipped


def test_globs_and_duplicates(settings, tmp_path):
    make_tree(tmp_path)
    items = read_all(settings, tmp_path / "**" / "*.md", tmp_path / "*.txt", tmp_path)
    bodies = [a.body for a in articles_of(items)]
    assert bodies == ["C text.", "A text.", "D text."]  # a file reached twice is read once
    [failure] = read_all(settings, tmp_path / "*.nothing")
    assert "no files match" in failure.message


# -- HTML --------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Qatar says Hamas response is positive | The Gulf Times</title>
  <link rel="canonical" href="https://gulf-times.example/news/qatar-hamas-response">
  <meta property="og:site_name" content="The Gulf Times">
  <meta name="author" content="Layla Haddad">
  <meta property="article:published_time" content="2024-02-07T14:20:00+03:00">
</head>
<body>
  <header><nav>
    <a href="/">Home</a> | <a href="/world">World</a> | <a href="/sport">Sport</a>
  </nav></header>
  <main>
    <article>
      <h1>Qatar says Hamas response is positive</h1>
      <p class="byline">By Layla Haddad</p>
      <p>Qatar's prime minister said on Wednesday that Hamas had given a generally positive
      response to a proposal for a ceasefire and hostage release in Gaza.</p>
      <p>Speaking at a news conference in Doha, he said the response included some comments,
      but that it was positive overall, and that mediators were studying it closely.</p>
      <p>Egyptian officials said talks would continue in Cairo later in the week, with
      delegations from several countries expected to attend the meetings.</p>
      <p>Israel's government said it was reviewing the response through its intelligence
      agency, and declined to comment further on the details of the negotiations.</p>
    </article>
  </main>
  <aside><h3>Most read</h3><ul><li><a href="/x">Weather warning issued</a></li></ul></aside>
  <footer><p>Copyright 2024 The Gulf Times. All rights reserved.</p></footer>
  <script>var tracking = "should never appear in the text";</script>
</body>
</html>
"""


def test_html_page_main_text_and_metadata(settings, tmp_path):
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    article = only_article(settings, path)
    assert article.title.startswith("Qatar says Hamas response is positive")
    assert "generally positive" in article.body
    assert "mediators were studying it closely" in article.body
    assert "tracking" not in article.body and "Copyright" not in article.body
    assert "Most read" not in article.body
    assert not article.body.startswith("Qatar says Hamas")  # the <h1> is the title
    assert article.url == "https://gulf-times.example/news/qatar-hamas-response"
    assert article.id == stable_id("url", article.url)
    assert article.source == "The Gulf Times"
    assert article.author == "Layla Haddad"
    assert article.published_at is not None and article.published_at.date().isoformat() == (
        "2024-02-07"
    )


def test_html_without_text_is_a_failure(settings, tmp_path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><title>x</title></head><body></body></html>", encoding="utf-8")
    [failure] = read_all(settings, path)
    assert isinstance(failure, ReadFailure) and "no article text" in failure.message


# -- JSON and JSON Lines -----------------------------------------------------------------------


def test_jsonl_bad_lines_are_reported_with_their_line_numbers(settings, tmp_path):
    path = tmp_path / "feed.jsonl"
    lines = [
        json.dumps({"id": "a1", "title": "One", "body": "First.", "date": "2024-01-01"}),
        '{"id": "a2", "title": "Two", "body": "unterminated',
        "",
        json.dumps(["not", "an", "object"]),
        json.dumps({"title": "No body"}),
        json.dumps({"headline": "Five", "text": "Fifth.", "link": "https://x.example/5"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = read_all(settings, path)
    assert [(f.line, f.location) for f in failures_of(items)] == [
        (2, str(path)),
        (4, str(path)),
        (5, str(path)),
    ]
    assert "not valid JSON" in failures_of(items)[0].message
    assert f"{path}:2:" in str(failures_of(items)[0])
    first, fifth = articles_of(items)
    assert (first.id, first.title, first.published_at) == (
        "a1",
        "One",
        datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert fifth.id == stable_id("url", "https://x.example/5")
    assert fifth.origin == f"{path}:6"


def test_jsonl_line_without_id_or_url_gets_a_path_and_line_id(settings, tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"content": "Only text."}) + "\n", encoding="utf-8")
    article = only_article(settings, path)
    assert article.id == stable_id("file", f"{path.resolve()}#1")
    assert article.title == "Only text."


def test_json_list_and_object_forms(settings, tmp_path):
    (tmp_path / "list.json").write_text(
        json.dumps(
            [
                {"title": "L1", "article": "List one.", "publishedAt": "2024-02-01T10:00:00Z"},
                "junk",
                {"title": "L2", "content": ["Para one.", "Para two."], "outlet": {"name": "Wire"}},
            ]
        ),
        encoding="utf-8",
    )
    (tmp_path / "object.json").write_text(
        json.dumps(
            {
                "id": 7,
                "headline": "Object",
                "body": "The object.",
                "byline": ["Ann", {"name": "Bo"}],
                "pubDate": "Wed, 07 Feb 2024 12:00:00 +0100",
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "wrapped.json").write_text(
        json.dumps({"status": "ok", "articles": [{"title": "W", "text": "Wrapped."}]}),
        encoding="utf-8",
    )
    items = read_all(settings, tmp_path)
    [junk] = failures_of(items)
    assert "item 1" in junk.message and junk.location.endswith("list.json")
    l1, l2, obj, wrapped = articles_of(items)
    assert l1.published_at == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert l2.body == "Para one.\n\nPara two." and l2.source == "Wire"
    assert l2.published_at is None
    assert (obj.id, obj.title, obj.author) == ("7", "Object", "Ann, Bo")
    assert obj.published_at == datetime(2024, 2, 7, 11, tzinfo=UTC)
    assert wrapped.body == "Wrapped."


def test_invalid_json_file_names_the_line(settings, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "title": "x",\n  "body": oops\n}', encoding="utf-8")
    [failure] = read_all(settings, path)
    assert isinstance(failure, ReadFailure) and failure.line == 3
    assert "not valid JSON" in failure.message


def test_json_lines_in_a_json_file_are_still_read(settings, tmp_path):
    path = tmp_path / "lines.json"
    path.write_text('{"body": "One."}\n{"body": "Two."}\n', encoding="utf-8")
    assert [a.body for a in articles_of(read_all(settings, path))] == ["One.", "Two."]


# -- exports larger than the file limit: streamed -------------------------------------------


def test_a_jsonl_file_has_no_size_limit_and_its_bad_lines_are_named(settings, tmp_path):
    path = tmp_path / "archive.jsonl"
    lines = [json.dumps({"id": f"a{n}", "body": f"Story {n}."}) for n in range(1, 51)]
    lines[6] = '{"id": "a7", "body": "cut off'
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))
    tiny = settings.model_copy(update={"max_file_bytes": 100})
    items = read_all(tiny, path)
    assert [(f.location, f.line) for f in failures_of(items)] == [(str(path), 7)]
    assert [a.id for a in articles_of(items)] == [f"a{n}" for n in range(1, 51) if n != 7]


def test_json_documents_over_the_limit_are_read_item_by_item(settings, tmp_path):
    tiny = settings.model_copy(update={"max_file_bytes": 10})
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"title": "L0", "body": "Zero."}, "junk", {"text": "Two."}]))
    [zero, junk, two] = read_all(tiny, listed)
    assert isinstance(junk, ReadFailure) and "item 1: expected an object" in junk.message
    assert (zero.title, two.body, two.origin) == ("L0", "Two.", f"{listed}[2]")
    nested = tmp_path / "nested.json"
    nested.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(
            {"status": "ok", "response": {"tags": [1, 2], "results": [{"body": "Deep.", "id": 4}]}}
        ).encode()
    )
    [deep] = read_all(tiny, nested)
    assert (deep.body, deep.id) == ("Deep.", "4")
    lines = tmp_path / "lines.json"
    lines.write_text('{"body": "One."}\n{"body": "Two."}\n', encoding="utf-8")
    assert [a.body for a in articles_of(read_all(tiny, lines))] == ["One.", "Two."]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"body": "Fine."}, {"body": "Also fine."}, {"body": oops}]')
    [fine, also, failure] = read_all(tiny, broken)
    assert (fine.body, also.body) == ("Fine.", "Also fine.")
    assert isinstance(failure, ReadFailure)
    assert failure.message.startswith("not valid JSON after item 1: ")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"name": "not news", "versions": [3]}), encoding="utf-8")
    [nothing] = read_all(tiny, config)
    assert isinstance(nothing, ReadFailure) and "no articles found" in nothing.message


@pytest.mark.slow  # writes and reads a large file
def test_reading_a_large_export_takes_memory_of_a_record_not_of_the_file(settings, tmp_path):
    """30 MB exports, over the default 20 MB file limit: read whole, each would take over 60 MB
    (its bytes and its text) before the first article; streamed, a few MB."""
    import tracemalloc

    body = " ".join(f"Paragraph {n} of the harbour story, told at length." for n in range(60))
    records = [{"id": f"s{n}", "title": f"Story {n}", "body": body} for n in range(10_000)]
    jsonl = tmp_path / "archive.jsonl"
    jsonl.write_text("\n".join(json.dumps(record) for record in records), encoding="utf-8")
    array = tmp_path / "archive.json"
    array.write_text(json.dumps({"articles": records}), encoding="utf-8")
    del records
    for path in (jsonl, array):
        assert path.stat().st_size > 30_000_000
        tracemalloc.start()
        try:
            count = sum(isinstance(item, Article) for item in iter_articles([str(path)], settings))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert count == 10_000, path
        assert peak < 10_000_000, (path, peak)


def test_json_object_without_articles_is_a_failure(settings, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"name": "not news", "version": 3}), encoding="utf-8")
    [failure] = read_all(settings, path)
    assert isinstance(failure, ReadFailure) and "no articles found" in failure.message


def test_multihop_corpus_reads_completely(settings):
    items = read_all(settings, MULTIHOP)
    articles = articles_of(items)
    assert len(articles) == 326 and not failures_of(items)
    assert len({a.id for a in articles}) == 326
    assert all(a.id.startswith("mh-") for a in articles)
    assert all(a.source and a.url and a.body for a in articles)
    assert all(a.published_at is not None and a.published_at.tzinfo for a in articles)
    first = json.loads(MULTIHOP.read_text(encoding="utf-8").split("\n", 1)[0])
    assert articles[0].body == first["body"] and articles[0].source == first["source"]


# -- feed files --------------------------------------------------------------------------------

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>Harbour Daily</title>
  <link>https://harbour.example/</link>
  <description>News from the harbour</description>
  <item>
    <title>Ferry service resumes</title>
    <link>https://harbour.example/ferry</link>
    <guid>https://harbour.example/ferry</guid>
    <pubDate>Tue, 06 Feb 2024 08:15:00 +0000</pubDate>
    <dc:creator>Sam Lee</dc:creator>
    <description>Short teaser.</description>
    <content:encoded><![CDATA[<p>{long}</p>
      <p>Second paragraph of the ferry story.</p>]]></content:encoded>
  </item>
  <item>
    <title>Fish market moves</title>
    <description>&lt;p&gt;The fish market moves to &lt;b&gt;Pier 4&lt;/b&gt;.&lt;/p&gt;
    </description>
    <guid isPermaLink="false">fish-42</guid>
  </item>
  <item>
    <title>Nothing here</title>
  </item>
</channel>
</rss>
""".replace("{long}", "The ferry service resumed on Tuesday after repairs. " * 15)

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Science Notes</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2024-02-07T18:30:02Z</updated>
  <entry>
    <title>Comet visible this week</title>
    <link href="https://science.example/comet"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <published>2024-02-07T18:30:02+01:00</published>
    <author><name>Dr. Ada Park</name></author>
    <summary>A comet is visible to the naked eye this week, astronomers said.</summary>
  </entry>
</feed>
"""


def test_rss_file_entries_become_articles(settings, tmp_path):
    path = tmp_path / "harbour.rss"
    path.write_text(RSS, encoding="utf-8")
    items = read_all(settings, path)
    ferry, fish = articles_of(items)
    [nothing] = failures_of(items)
    assert "entry 3" in nothing.message
    assert ferry.title == "Ferry service resumes" and ferry.source == "Harbour Daily"
    assert ferry.url == "https://harbour.example/ferry"
    assert ferry.id == stable_id("url", ferry.url)
    assert ferry.author == "Sam Lee"
    assert ferry.published_at == datetime(2024, 2, 6, 8, 15, tzinfo=UTC)
    assert ferry.body.startswith("The ferry service resumed on Tuesday")
    assert ferry.body.endswith("Second paragraph of the ferry story.")
    assert "<p>" not in ferry.body
    # An entry with no link keeps a stable id of its own and its summary as text.
    assert fish.body == "The fish market moves to Pier 4."
    assert fish.url == "" and fish.id.startswith("file-") and fish.published_at is None


def test_atom_file_entries_become_articles(settings, tmp_path):
    path = tmp_path / "science.atom"
    path.write_text(ATOM, encoding="utf-8")
    # Without fetching, a summary-only entry keeps its summary.
    offline = settings.model_copy(update={"fetch_full_articles": False})
    [comet] = read_all(offline, path)
    assert isinstance(comet, Article)
    assert comet.title == "Comet visible this week" and comet.source == "Science Notes"
    assert comet.author == "Dr. Ada Park"
    assert comet.published_at == datetime(2024, 2, 7, 17, 30, 2, tzinfo=UTC)
    assert comet.body == "A comet is visible to the naked eye this week, astronomers said."


def test_feed_is_sniffed_in_an_xml_file_and_non_feed_xml_fails(settings, tmp_path):
    (tmp_path / "a.xml").write_text(ATOM, encoding="utf-8")
    (tmp_path / "b.xml").write_text("<?xml version='1.0'?><config><a>1</a></config>", "utf-8")
    offline = settings.model_copy(update={"fetch_full_articles": False})
    items = read_all(offline, tmp_path)
    assert isinstance(items[0], Article)
    assert isinstance(items[1], ReadFailure) and "feed" in items[1].message


def test_summary_only_entry_whose_page_is_refused_keeps_its_summary(settings, tmp_path, caplog):
    path = tmp_path / "science.atom"
    # A link to this machine: refused by default, before any connection is made.
    path.write_text(ATOM.replace("https://science.example/comet", "http://127.0.0.1:9/comet"))
    with caplog.at_level("WARNING", logger="index.read"):
        [comet] = read_all(settings, path)
    assert isinstance(comet, Article)
    assert comet.body == "A comet is visible to the naked eye this week, astronomers said."
    assert comet.url == "http://127.0.0.1:9/comet"
    assert "NEWSBOT_ALLOW_PRIVATE_URLS" in caplog.text


def test_only_absolute_web_links_become_urls(settings, tmp_path):
    path = tmp_path / "links.jsonl"
    lines = [
        {"body": "Script link.", "url": "javascript:alert(1)"},
        {"body": "Relative link.", "link": "/news/1"},
        {"body": "Web link.", "url": "https://news.example/1"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    script, relative, web = articles_of(read_all(settings, path))
    assert script.url == "" and script.id == stable_id("file", f"{path.resolve()}#1")
    assert relative.url == "" and relative.id == stable_id("file", f"{path.resolve()}#2")
    assert web.url == "https://news.example/1"
