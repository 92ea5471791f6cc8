"""Read news articles from files, folders, globs, feeds and URLs into `Article`s.

Conventions (dates, bodies, ids) and what each reader recognises: docs/ingesting.md, "Reading".
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from index.article import Article, ReadFailure, stable_id
from index.config import ReadConfig
from index.dates import parse_date
from index.errors import ReadError
from index.fetch import fetch

logger = logging.getLogger(__name__)

# The kind of content a file suffix, or a media type a server sends, names.
_SUFFIX_KINDS = {
    **dict.fromkeys((".txt", ".text", ".md", ".markdown"), "text"),
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    ".json": "json",
    **dict.fromkeys((".jsonl", ".ndjson"), "jsonl"),
    **dict.fromkeys((".xml", ".rss", ".atom"), "feed"),
}
_MEDIA_KINDS = {
    **dict.fromkeys(("text/html", "application/xhtml+xml"), "html"),
    **dict.fromkeys(("application/rss+xml", "application/atom+xml", "application/rdf+xml"), "feed"),
    "application/json": "json",
    **dict.fromkeys(
        ("application/x-ndjson", "application/jsonl", "application/x-jsonlines"), "jsonl"
    ),
    **dict.fromkeys(("text/plain", "text/markdown", "text/x-markdown"), "text"),
    **dict.fromkeys(("application/pdf", "application/zip", "application/gzip"), "binary"),
    **dict.fromkeys(("image", "audio", "video", "font"), "binary"),  # top-level types: all of them
}
READABLE_SUFFIXES = frozenset(_SUFFIX_KINDS)

# Shorter feed-entry text is a teaser (a sentence or two; full-text feeds carry far more): its
# linked page is fetched for the full article when settings.fetch_full_articles.
SUMMARY_MAX_CHARS = 600
# Linked pages of one feed fetched at once: enough to hide latency, few enough to be polite.
FEED_FETCH_WORKERS = 4
# Header lines (title:, date ...) are looked for only in the first few lines of a text file.
MAX_HEADER_LINES = 20
# A first line longer than this is a paragraph, not a title.
MAX_TITLE_CHARS = 150
# A title made up from the body is cut to about this many characters.
DERIVED_TITLE_CHARS = 80

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The first bytes of PDF, ZIP, PNG, GIF, JPEG, gzip, bzip2, xz, 7z and ELF files.
_BINARY_SIGNATURES = tuple(
    b"%PDF- PK\x03\x04 \x89PNG GIF8 \xff\xd8\xff \x1f\x8b BZh \xfd7zXZ 7z\xbc\xaf \x7fELF".split()
)
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
# Byte order marks and the codecs that read them (UTF-32's before UTF-16's: they share a prefix).
_BOMS = {
    b"\xef\xbb\xbf": "utf-8-sig",
    b"\xff\xfe\x00\x00": "utf-32",
    b"\x00\x00\xfe\xff": "utf-32",
    b"\xff\xfe": "utf-16",
    b"\xfe\xff": "utf-16",
}
_UTF16_32_BOMS = tuple(bom for bom, codec in _BOMS.items() if codec != "utf-8-sig")

# "date 2024-02-07", "date: 2024-02-07T10:00Z", possibly followed by body text on the same line.
_DATE_LINE = re.compile(
    r"[ \t]*date[ \t]*:?[ \t]+"
    r"(?P<date>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?)(?=\s|$)[ \t]*",
    re.IGNORECASE,
)
_HEADER_KEYS = {
    **dict.fromkeys(("title", "headline"), "title"),
    **dict.fromkeys(("source", "outlet", "publisher"), "source"),
    **dict.fromkeys(("url", "link", "canonical"), "url"),
    **dict.fromkeys(("author", "byline"), "author"),
    **dict.fromkeys(("date", "published", "published_at", "publishedat", "pubdate"), "date"),
}
_HEADER_LINE = re.compile(
    r"[ \t]*(?P<key>" + "|".join(_HEADER_KEYS) + r")[ \t]*:[ \t]*(?P<value>[^\n]*)",
    re.IGNORECASE,
)
_FRONT_MATTER = re.compile(r"[ \t]*---[ \t]*\n(?P<block>.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|$)", re.S)
_ATX_HEADING = re.compile(r"#{1,6}[ \t]+(?P<title>[^\n]+?)[ \t#]*$")
_SETEXT_UNDERLINE = re.compile(r"(?:=+|-{3,})[ \t]*$")
_FINAL_PUNCTUATION = ".!?,;:…"
_CLOSING_QUOTES = "\"'”’»)]"
_NAME_DATE = re.compile(r"^(?P<y>\d{4})[-_.]?(?P<m>\d{2})[-_.]?(?P<d>\d{2})(?!\d)")
_HTML_HINT = re.compile(
    r"<(?:p|div|br|span|a|strong|em|b|i|h[1-6]|ul|ol|li|img|figure|blockquote|article|section)"
    r"\b[^>]*>",
    re.IGNORECASE,
)
_FEED_ROOT = re.compile(rb"<(?:[a-z0-9_-]+:)?(?:rss|feed|rdf)[\s>]")


@dataclass(frozen=True)
class _Where:
    """Where content came from: a location for messages, and what ids are derived from."""

    location: str  # the path as given, or the URL
    id_key: str  # resolved path or URL
    url: str = ""  # the URL the content was served from, if any

    @property
    def name(self) -> str:
        """The file name (or last URL path segment), for titles and dates made up from it."""
        if self.url:
            return unquote(urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1])
        return Path(self.location).name

    def item_id(self, suffix: str = "") -> str:
        """The id of a part (`suffix`: line, index, entry) or, without, of the whole."""
        key = f"{self.id_key}#{suffix}" if suffix else self.id_key
        return stable_id("url" if self.url else "file", key)

    def article_id(self, url: str, suffix: str = "") -> str:
        """The id of an article at `url`, else of the part `suffix` (see item_id)."""
        return stable_id("url", url) if url else self.item_id(suffix)


def iter_articles(sources: Iterable[str], settings: ReadConfig) -> Iterator[Article | ReadFailure]:
    """Read every source and yield its articles, or a ReadFailure per item that failed.

    A source is a file, a folder (recursive; hidden and unknown files skipped), a glob (`**`
    allowed) or an http(s) URL. Paths are read in sorted order, a file reached twice once.
    """
    seen: set[Path] = set()
    for source in sources:
        # A bug or an odd source must not stop the other sources.
        yield from _guarded(_read_source(source, settings, seen), str(source).strip())


def _read_source(
    source: str, settings: ReadConfig, seen: set[Path]
) -> Iterator[Article | ReadFailure]:
    source = os.fspath(source).strip()
    if not source:
        raise ReadError("empty source name")
    if _URL_SCHEME.match(source):
        scheme = source.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ReadError(f"cannot read {scheme}: URLs; only http and https URLs")
        yield from _read_url(source, settings)
        return
    path = Path(source).expanduser()
    if path.exists():
        matches = [path]
    elif glob.has_magic(source):
        matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(source), recursive=True))]
        if not matches:
            yield ReadFailure(source, "no files match this pattern")
    else:
        raise ReadError("no such file or folder")
    for match in matches:
        files = _walk(match) if match.is_dir() else [match]
        if not files and match is path:
            kinds = ", ".join(sorted(READABLE_SUFFIXES))
            yield ReadFailure(source, f"no articles here: the folder holds no {kinds} files")
        for file in files:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield from _guarded(_read_file(file, resolved, settings), str(file))


def _walk(folder: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for file in [Path(dirpath) / name for name in filenames if not name.startswith(".")]:
            if file.suffix.lower() in READABLE_SUFFIXES:
                files.append(file)
            else:
                logger.debug("skipping %s: not a type newsbot reads", file)
    return sorted(files)


def _read_file(path: Path, resolved: Path, settings: ReadConfig) -> Iterator[Article | ReadFailure]:
    where = _Where(location=str(path), id_key=str(resolved))
    kind = _SUFFIX_KINDS.get(path.suffix.lower())
    if not path.is_file():
        raise ReadError("not a regular file")
    size = path.stat().st_size
    # Exports are streamed record by record, whatever their size; a JSON document within the
    # limit is read whole, which keeps line and column numbers in its error messages.
    if kind == "jsonl" or (kind == "json" and size > settings.max_file_bytes):
        yield from _stream_export(path, where, kind, settings)
    elif size > settings.max_file_bytes:
        raise ReadError(
            f"file is {size} bytes, over the limit of {settings.max_file_bytes} bytes; "
            "raise NEWSBOT_MAX_FILE_BYTES to read it"
        )
    else:
        yield from _read_content(path.read_bytes(), where, kind, settings)


def _read_url(url: str, settings: ReadConfig) -> Iterator[Article | ReadFailure]:
    fetched = fetch(url, settings)
    where = _Where(location=url, id_key=fetched.url, url=fetched.url)
    media = fetched.content_type
    kind = (
        _MEDIA_KINDS.get(media)
        or _MEDIA_KINDS.get(media.partition("/")[0])
        or ("json" if media.endswith("+json") else None)
    )
    if kind == "binary":
        raise ReadError(f"not an article: the server sent {media}")
    yield from _read_content(fetched.content, where, kind, settings, charset=fetched.encoding)


def _guarded(
    items: Iterator[Article | ReadFailure], location: str
) -> Iterator[Article | ReadFailure]:
    try:
        yield from items
    except Exception as exc:
        yield _failure(location, exc)


def _failure(location: str, exc: Exception, item: str = "") -> ReadFailure:
    """The ReadFailure of `location` (`item`: which part of it) for an exception a reader raised."""
    if isinstance(exc, ReadError):
        return ReadFailure(location, item + str(exc))
    logger.debug("reading %s failed", location, exc_info=exc)
    reason = exc.strerror or exc if isinstance(exc, OSError) else _describe(exc)
    return ReadFailure(location, f"{item}cannot read: {reason}")


def _sniff(data: bytes) -> str:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):
        return "feed" if _FEED_ROOT.search(head) else "html"
    if head[:1] in (b"{", b"["):
        return "json"
    return "text"


def _read_content(
    data: bytes, where: _Where, kind: str | None, settings: ReadConfig, charset: str | None = None
) -> Iterator[Article | ReadFailure]:
    _check_text(data, where)
    sniffed = _sniff(data)
    if kind is None or (kind == "html" and sniffed == "feed"):
        kind = sniffed  # servers often label feeds text/html
    if kind == "text":
        yield _article_from_text(decode_bytes(data, charset), where)
    elif kind == "html":
        yield _article_from_html(data, where)
    elif kind == "json":
        yield from _read_json(decode_bytes(data, charset), where)
    elif kind == "jsonl":
        yield from _read_json_lines(decode_bytes(data, charset).split("\n"), where)
    else:
        feed = _parse_feed(data, where)
        yield from feed_articles(feed, feed.entries, settings)


def _check_text(data: bytes, where: _Where) -> None:
    if not data.strip():
        raise ReadError("empty response" if where.url else "empty file")
    sample = data[:65536]
    control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    binary = data.startswith(_BINARY_SIGNATURES) or b"\x00" in data or control * 10 > len(sample)
    if binary and not data.startswith(_UTF16_32_BOMS):
        raise ReadError("binary file, not text (is this an article?)")


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Bytes to text: a BOM, else UTF-8, else the declared charset, else a detected non-Latin
    charset, else Windows-1252 (which Latin-1 backs up for its five undefined bytes)."""
    for bom, codec in _BOMS.items():
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    detected = _detect_non_latin(data)
    if detected is not None:
        return detected
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _detect_non_latin(data: bytes) -> str | None:
    """Text in a detected legacy non-Latin charset (Cyrillic, Greek, ...), else None: detectors
    often take Windows-1252 for its Central European sibling, so only non-Latin letters count."""
    try:
        from charset_normalizer import from_bytes

        text = data.decode(from_bytes(data[:200_000]).best().encoding)  # type: ignore[union-attr]
    except Exception:  # none detected, or not this charset after all
        return None
    letters = [char for char in text if ord(char) > 0x7F and char.isalpha()]
    if not letters:
        return None
    non_latin = sum(1 for char in letters if "LATIN" not in unicodedata.name(char, ""))
    return text if non_latin * 2 > len(letters) else None


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(text: str, origin: str) -> Article:
    """An Article from plain text or markdown (`origin`: its file name, for a title and date);
    raises ReadError when there is no text. What is recognised: docs/ingesting.md."""
    where = _Where(location=origin, id_key=origin)
    try:
        return _article_from_text(text, where)
    except ReadError as exc:
        raise ReadError(f"{origin}: {exc}") from None


def _article_from_text(text: str, where: _Where) -> Article:
    text = _normalise(text).lstrip("\ufeff")
    headers, position = _read_headers(text)
    title = headers.get("title", "").strip()
    rest = text[position:]
    heading, after_heading = _split_title(rest, require_heading=bool(title))
    if heading and not title:
        title, rest = heading, after_heading
    elif heading and heading.casefold() == title.casefold():
        rest = after_heading  # the same title twice: front matter and a heading
    body = rest.strip()
    if not body:
        raise ReadError("no article text after the header")
    article_url = _web_url(headers.get("url")) or where.url
    published_at = _published(headers.get("date") or None, where.location)
    if published_at is None and "date" not in headers:
        published_at = _date_from_name(where.name)
    return Article(
        id=where.article_id(article_url),
        title=title or _title_from_name(where.name) or _title_from_body(body),
        body=body,
        source=headers.get("source", "").strip(),
        url=article_url,
        author=headers.get("author", "").strip(),
        published_at=published_at,
        origin=where.location,
    )


def _read_headers(text: str) -> tuple[dict[str, str], int]:
    """Header values found at the top, and where the rest of the text starts."""
    headers: dict[str, str] = {}
    position = 0
    front = _FRONT_MATTER.match(text)
    if front:
        for line in front.group("block").split("\n"):
            key, sep, value = line.partition(":")
            canonical = _HEADER_KEYS.get(key.strip().lower())
            if sep and canonical and value.strip():
                headers.setdefault(canonical, value.strip().strip("\"'"))
        position = front.end()
    for _ in range(MAX_HEADER_LINES):
        line_end = text.find("\n", position)
        line_end = len(text) if line_end == -1 else line_end
        line = text[position:line_end]
        if not line.strip():
            if line_end >= len(text) or headers:  # a blank line ends a header block
                break
            position = line_end + 1
            continue
        date_line, header = _DATE_LINE.match(line), _HEADER_LINE.fullmatch(line)
        if date_line:
            headers["date"] = date_line.group("date")
            if date_line.end() < len(line):  # body text goes on on the same line
                position += date_line.end()
                break
        elif header and header.group("value").strip():
            canonical = _HEADER_KEYS[header.group("key").lower()]
            headers.setdefault(canonical, header.group("value").strip())
        else:
            break
        position = min(line_end + 1, len(text))
    return headers, position


def _split_title(text: str, *, require_heading: bool) -> tuple[str, str]:
    """(title, rest) when `text` opens with a title, else ("", text)."""
    stripped = text.lstrip()
    first, newline, after = stripped.partition("\n")
    first_line = first.strip()
    if not first_line or len(first_line) > 4 * MAX_TITLE_CHARS:
        return "", text
    heading = _ATX_HEADING.fullmatch(first_line)
    if heading:
        return heading.group("title").strip(), after
    second, _, after_second = after.partition("\n")
    if (
        len(first_line) <= MAX_TITLE_CHARS
        and _SETEXT_UNDERLINE.fullmatch(second.strip())
        and after_second.strip()
    ):
        return first_line, after_second
    if require_heading:
        return "", text
    if (
        newline
        and len(first_line) <= MAX_TITLE_CHARS
        and not second.strip()
        and after.strip()
        and first_line.rstrip(_CLOSING_QUOTES)[-1:] not in _FINAL_PUNCTUATION
    ):
        return first_line, after
    return "", text


def _date_from_name(name: str) -> datetime | None:
    match = _NAME_DATE.match(name)
    if not match:
        return None
    try:
        return datetime(int(match["y"]), int(match["m"]), int(match["d"]), tzinfo=UTC)
    except ValueError:
        return None


def _title_from_name(name: str) -> str:
    stem = Path(name).stem if Path(name).suffix.lower() in READABLE_SUFFIXES else name
    match = _NAME_DATE.match(stem)
    if match and _date_from_name(stem):
        stem = stem[match.end() :]
    words = re.sub(r"[-_\s]+", " ", stem).strip()
    return words[:1].upper() + words[1:]


def _title_from_body(body: str) -> str:
    first = body.strip().split("\n", 1)[0].strip()
    if len(first) <= DERIVED_TITLE_CHARS:
        return first
    cut = first[:DERIVED_TITLE_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


def _article_from_html(data: bytes | str, where: _Where) -> Article:
    import trafilatura

    document: Any = trafilatura.bare_extraction(
        data,
        url=where.url or None,
        with_metadata=True,
        include_comments=False,
        include_tables=True,
        deduplicate=False,
    )
    if document is None or not (document.text or "").strip():
        raise ReadError("no article text found in the page")
    title = (document.title or "").strip()
    body = _normalise(document.text).strip()
    # trafilatura often keeps the page's <h1> as the body's first line; it is the title.
    first, _, rest = body.partition("\n")
    if title and rest.strip() and first.strip().casefold() == title.casefold():
        body = rest.strip()
    url = (document.url or where.url or "").strip()
    title = title or _title_from_name(where.name) or _title_from_body(body)
    published_at = parse_date(document.date) if document.date else None
    if published_at is None and not where.url:
        published_at = _date_from_name(where.name)
    return Article(
        id=where.article_id(url),
        title=title,
        body=body,
        source=(document.sitename or document.hostname or "").strip(),
        url=url,
        author=(document.author or "").strip(),
        published_at=published_at,
        origin=where.location,
    )


def html_fragment_text(fragment: str) -> str:
    """The text of an HTML fragment (a feed summary, a JSON body), one paragraph a block."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return fragment.strip()
    blocks = ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr")
    for element in root.iter("script", "style"):
        element.drop_tree()
    for element in root.iter(*blocks):  # the HTML parser lower-cases tag names
        element.tail = "\n\n" + (element.tail or "")
    text = root.text_content()
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# A record's field names as `_key` spells them, each list in order of preference.
_ID_KEYS = ("id", "articleid")
_TITLE_KEYS = ("title", "headline")
_BODY_KEYS = tuple(
    "body text content article articlebody fulltext maintext articletext bodytext".split()
)
_SUMMARY_KEYS = ("summary", "description", "abstract", "lead")
_DATE_KEYS = tuple(
    "publishedat published date pubdate datepublished publicationdate publisheddate "
    "publishdate datetime createdat created timestamp time".split()
)
_URL_KEYS = ("url", "link", "canonicalurl", "weburl", "permalink", "href")
_SOURCE_KEYS = ("source", "outlet", "site", "publisher", "sitename", "sourcename", "publication")
_AUTHOR_KEYS = ("author", "byline", "authors", "creator", "writer")
_CONTAINER_KEYS = ("articles", "items", "entries", "results", "data", "docs", "stories", "news")


def _key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


def _read_json(text: str, where: _Where) -> Iterator[Article | ReadFailure]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON Lines in a .json file
            yield from _read_json_lines(text.split("\n"), where)
            return
        yield ReadFailure(where.location, _invalid_json(exc), exc.lineno)
        return
    records = _records_in(document)
    if records is None:
        yield ReadFailure(
            where.location,
            "no articles found: expected an object with a body/text/content field, "
            'a list of them, or {"articles": [...]}',
        )
        return
    if isinstance(document, dict) and records and records[0] is document:
        yield _guard_record(document, where, None, where.location)
        return
    for index, record in enumerate(records):
        yield _record_item(record, index, where)


def _record_item(record: Any, index: int, where: _Where) -> Article | ReadFailure:
    if not isinstance(record, dict):
        return ReadFailure(
            where.location, f"item {index}: expected an object, found {_json_type(record)}"
        )
    origin = f"{where.location}[{index}]"
    return _guard_record(record, where, str(index), origin, item=f"item {index}: ")


def _read_json_lines(lines: Iterable[str], where: _Where) -> Iterator[Article | ReadFailure]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except Exception as exc:  # not JSON, or e.g. nested too deep
            yield ReadFailure(where.location, _invalid_json(exc), number)
            continue
        if not isinstance(record, dict):
            yield ReadFailure(
                where.location, f"expected one object a line, found {_json_type(record)}", number
            )
            continue
        result = _guard_record(record, where, str(number), f"{where.location}:{number}")
        yield replace(result, line=number) if isinstance(result, ReadFailure) else result


def _invalid_json(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    return f"not valid JSON: {_describe(exc)}"


# Bytes looked at first, for the checks a whole file gets (empty, binary, BOM).
STREAM_HEAD_BYTES = 65536
# A first line this long is not one record of JSON Lines.
JSON_LINE_PROBE_BYTES = 1_000_000


def _stream_export(
    path: Path, where: _Where, kind: str | None, settings: ReadConfig
) -> Iterator[Article | ReadFailure]:
    """A JSON Lines file line by line, or a large JSON document item by item (ijson)."""
    with path.open("rb") as handle:
        head = handle.read(STREAM_HEAD_BYTES)
        if head.strip() or len(head) < STREAM_HEAD_BYTES:  # a blank head may go on with text
            _check_text(head, where)
        if head.startswith(_UTF16_32_BOMS):  # rare: such a file is decoded whole, as before
            if path.stat().st_size > settings.max_file_bytes:
                raise ReadError(
                    "a UTF-16 or UTF-32 export over NEWSBOT_MAX_FILE_BYTES; save it as UTF-8"
                )
            handle.seek(0)
            yield from _read_content(handle.read(), where, kind, settings)
            return
        start = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        handle.seek(start)
        if kind == "json" and (head[start:].lstrip()[:1] != b"{" or not _json_lines_ahead(handle)):
            yield from _stream_json_items(handle, start, where)
            return
        handle.seek(start)
        yield from _read_json_lines(_decoded_lines(handle), where)


def _json_lines_ahead(handle: Any) -> bool:
    """Whether the first line is a JSON object of its own (JSON Lines, even in a .json file)."""
    line = handle.readline(JSON_LINE_PROBE_BYTES)
    try:
        return isinstance(json.loads(line), dict) and bool(handle.read(STREAM_HEAD_BYTES).strip())
    except ValueError:
        return False


def _decoded_lines(handle: Any) -> Iterator[str]:
    for raw in handle:
        line = raw.removesuffix(b"\n")
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield decode_bytes(line)


def _stream_json_items(handle: Any, start: int, where: _Where) -> Iterator[Article | ReadFailure]:
    import ijson

    handle.seek(start)
    prefix = _records_prefix(handle)
    if prefix is None:
        yield ReadFailure(
            where.location,
            'no articles found: expected a list of articles, or {"articles": [...]}',
        )
        return
    handle.seek(start)
    index = -1
    try:
        for index, record in enumerate(ijson.items(handle, prefix, use_float=True)):
            yield _record_item(record, index, where)
    except ijson.JSONError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        after = f" after item {index}" if index >= 0 else ""
        yield ReadFailure(where.location, f"not valid JSON{after}: {reason}")


def _records_prefix(handle: Any) -> str | None:
    """Where a large JSON document keeps its articles, as an ijson prefix: its top-level list,
    or the first list under a container key ("articles", "results", ...) within a few levels."""
    import ijson

    try:
        for prefix, event, _value in ijson.parse(handle):
            if event != "start_array":
                continue
            if prefix == "":
                return "item"
            if prefix.count(".") < 3 and _key(prefix.rsplit(".", 1)[-1]) in _CONTAINER_KEYS:
                return f"{prefix}.item"
    except ijson.JSONError:
        return "item"  # let the reading report where the document breaks
    return None


def _guard_record(
    record: dict[str, Any], where: _Where, suffix: str | None, origin: str, item: str = ""
) -> Article | ReadFailure:
    try:
        return _article_from_record(record, where, suffix, origin)
    except Exception as exc:
        return _failure(where.location, exc, item)


def _records_in(document: Any, depth: int = 0) -> list[Any] | None:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict) or depth > 2:
        return None
    keys = {_key(str(name)) for name in document}
    if keys & set(_BODY_KEYS) and not any(
        isinstance(document.get(name), list | dict) and _key(str(name)) in _CONTAINER_KEYS
        for name in document
    ):
        return [document]
    containers = [value for name, value in document.items() if _key(str(name)) in _CONTAINER_KEYS]
    nested = [value for value in document.values() if isinstance(value, dict)]
    for value in containers + nested:  # nested: e.g. {"response": {"results": [...]}}
        found = _records_in(value, depth + 1)
        if found is not None:
            return found
    return None


def _article_from_record(
    record: dict[str, Any], where: _Where, suffix: str | None, origin: str
) -> Article:
    fields: dict[str, Any] = {}
    for name, value in record.items():
        fields.setdefault(_key(str(name)), value)

    def first(keys: tuple[str, ...]) -> Any:
        for key in keys:
            value = fields.get(key)
            if value not in (None, "", [], {}):
                return value
        return None

    body = _text_value(first(_BODY_KEYS)) or _text_value(first(_SUMMARY_KEYS))
    if body is None:
        raise ReadError(
            "no article text: expected a body, text, content or article field"
            if first(_BODY_KEYS) is None
            else "the article text is not a string"
        )
    body = _normalise(body).strip()
    if not body:
        raise ReadError("the article text is empty")
    url = _web_url(first(_URL_KEYS))
    raw_id = first(_ID_KEYS)
    if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id).strip():
        article_id = str(raw_id).strip()
    else:
        article_id = where.article_id(url, suffix or "")
    return Article(
        id=article_id,
        title=_plain(first(_TITLE_KEYS)) or _title_from_body(body),
        body=body,
        source=_name_value(first(_SOURCE_KEYS)),
        url=url,
        author=_name_value(first(_AUTHOR_KEYS)),
        published_at=_published(first(_DATE_KEYS), origin),
        origin=origin,
    )


def _published(value: Any, origin: str) -> datetime | None:
    """The date a source gives (None: none given), or None with a warning when unreadable."""
    published_at = parse_date(value)
    if value is not None and published_at is None:
        logger.warning("%s: cannot read the date %r; leaving it out", origin, value)
    return published_at


def _text_value(value: Any) -> str | None:
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        value = "\n\n".join(part.strip() for part in value)
    if isinstance(value, dict):
        value = value.get("text") or value.get("value") or value.get("content")
    if not isinstance(value, str):
        return None
    if _HTML_HINT.search(value[:2000]):
        return html_fragment_text(value)
    return value


def _web_url(value: Any) -> str:
    """An absolute http(s) URL, or "" (relative links and javascript: links are no URLs)."""
    url = _plain(value)
    parts = urlsplit(url)
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url
    if url:
        logger.debug("ignoring the link %r: not an absolute http(s) URL", url)
    return ""


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _name_value(value: Any) -> str:
    """A source or author given as a string, {"name": ...}, or a list of either."""
    if isinstance(value, dict):
        return _plain(value.get("name") or value.get("title") or value.get("id"))
    if isinstance(value, list):
        names = [_name_value(item) for item in value]
        return ", ".join(name for name in names if name)
    return _plain(value)


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


@dataclass(frozen=True)
class FeedEntry:
    """One entry of an RSS or Atom feed, before its linked page is read."""

    number: int
    title: str
    link: str
    guid: str
    author: str
    published_at: datetime | None
    text: str  # content when the feed carries it, else the summary (as plain text)
    has_content: bool

    @property
    def key(self) -> str:
        """What names the entry from one fetch of the feed to the next."""
        return self.guid or self.link or f"#{self.number}:{self.title}"

    @property
    def fingerprint(self) -> str:
        """Changes when the feed changes what it says about the entry."""
        when = self.published_at.isoformat() if self.published_at else ""
        parts = (self.title, self.link, self.author, when, self.text)
        return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Feed:
    """A feed document read into entries (a ReadFailure for an entry that could not be read)."""

    where: _Where
    title: str
    entries: list[FeedEntry | ReadFailure]


def read_feed(data: bytes, location: str, url: str = "") -> Feed:
    """The entries of a feed read from the file `location` or served from `url`; ReadError when
    `data` is no RSS or Atom feed. `feed_articles` of them reads as `iter_articles` would."""
    where = _Where(location, url or str(Path(location).resolve()), url)
    return _parse_feed(data, where)


def _parse_feed(data: bytes, where: _Where) -> Feed:
    import io

    import feedparser

    # Already known to be a feed; without a content type feedparser calls it not well-formed.
    headers = {"content-type": "application/xml"}
    if where.url:
        headers["content-location"] = where.url
    # A stream, never bytes or str: feedparser would open a string that names a file or URL.
    parsed = feedparser.parse(io.BytesIO(data), response_headers=headers)
    entries = list(parsed.get("entries") or [])
    if not entries:
        if parsed.get("bozo") and not parsed.get("version"):
            reason = _describe(parsed.get("bozo_exception") or ValueError("unreadable"))
            raise ReadError(f"not a valid RSS or Atom feed: {reason}")
        if not parsed.get("version"):
            raise ReadError("not an RSS or Atom feed")
        logger.info("%s: the feed has no entries", where.location)
    elif parsed.get("bozo"):
        logger.warning(
            "%s: the feed is not well-formed (%s); reading what can be read",
            where.location,
            _describe(parsed.get("bozo_exception") or ValueError("?")),
        )
    prepared: list[FeedEntry | ReadFailure] = []
    for number, entry in enumerate(entries, start=1):
        try:
            prepared.append(_prepare_entry(entry, number))
        except Exception as exc:
            prepared.append(_failure(where.location, exc, f"entry {number}: "))
    return Feed(where, _plain((parsed.get("feed") or {}).get("title")), prepared)


def feed_articles(
    feed: Feed, entries: Iterable[FeedEntry | ReadFailure], settings: ReadConfig
) -> Iterator[Article | ReadFailure]:
    """The articles of `entries` (of `feed`); for an entry with only a teaser, the linked page
    is fetched (settings.fetch_full_articles), a few at a time."""
    where, items = feed.where, list(entries)
    to_fetch = [
        item
        for item in items
        if isinstance(item, FeedEntry)
        and settings.fetch_full_articles
        and item.link.lower().startswith(("http://", "https://"))
        and (not item.has_content or len(item.text) < SUMMARY_MAX_CHARS)
    ]
    with ThreadPoolExecutor(max_workers=max(1, min(FEED_FETCH_WORKERS, len(to_fetch)))) as pool:
        results = pool.map(lambda entry: _fetch_page(entry.link, settings), to_fetch)
        pages = {entry.number: page for entry, page in zip(to_fetch, results, strict=True)}
    for item in items:
        if isinstance(item, ReadFailure):
            yield item
            continue
        try:
            yield _article_from_entry(item, pages.get(item.number), feed.title, where)
        except Exception as exc:
            yield _failure(where.location, exc, f"entry {item.number}: ")


def _prepare_entry(entry: Any, number: int) -> FeedEntry:
    contents = [
        _entry_text(part) for part in (entry.get("content") or []) if isinstance(part, dict)
    ]
    content = max(contents, key=len, default="")
    summary = _entry_text(entry.get("summary_detail")) or _entry_text(entry.get("summary"))
    # The dates feedparser parsed first, then its text ones. dict.get: FeedParserDict.get maps
    # "updated" to "published" with a DeprecationWarning.
    names = ("published", "updated", "created")
    dates = (parse_date(dict.get(entry, key)) for key in (*(f"{n}_parsed" for n in names), *names))
    published_at = next((when for when in dates if when is not None), None)
    author = _plain(entry.get("author")) or _name_value(entry.get("authors"))
    title = entry.get("title")
    if isinstance(title, str) and "html" in str((entry.get("title_detail") or {}).get("type")):
        title = html_fragment_text(title)
    return FeedEntry(
        number=number,
        title=_plain(title),
        link=_web_url(entry.get("link")),
        guid=_plain(entry.get("id")),
        author=author,
        published_at=published_at,
        text=_normalise(content or summary).strip(),
        has_content=bool(content.strip()),
    )


def _entry_text(value: Any) -> str:
    """The plain text of a feedparser detail ({"type", "value"}) or of a string (maybe HTML)."""
    if isinstance(value, dict):
        text, html = value.get("value"), "html" in str(value.get("type") or "")
    else:
        text, html = value, isinstance(value, str) and bool(_HTML_HINT.search(value))
    if not isinstance(text, str):
        return ""
    return html_fragment_text(text) if html else text.strip()


def _fetch_page(link: str, settings: ReadConfig) -> Article | None:
    """The full article behind a feed entry's link, or None (logged) when it cannot be had."""
    try:
        fetched = fetch(link, settings)
        if _sniff(fetched.content) != "html" and _MEDIA_KINDS.get(fetched.content_type) != "html":
            raise ReadError(f"{link} is not an HTML page ({fetched.content_type or 'unknown'})")
        where = _Where(location=link, id_key=fetched.url, url=fetched.url)
        return _article_from_html(fetched.content, where)
    except ReadError as exc:
        logger.warning("using the feed's summary: %s", exc)
    except Exception as exc:
        logger.warning("using the feed's summary: cannot read %s: %s", link, _describe(exc))
    return None


def _article_from_entry(
    item: FeedEntry, page: Article | None, feed_title: str, where: _Where
) -> Article:
    body = item.text
    author, published_at = item.author, item.published_at
    if page is not None and len(page.body) > len(body):
        body = page.body
        author = author or page.author
        published_at = published_at or page.published_at
    if not body:
        raise ReadError("no text: the entry has no content or summary, and no page was read")
    source = feed_title or (page.source if page else "") or urlsplit(item.link).hostname or ""
    return Article(
        id=where.article_id(item.link, item.guid or str(item.number)),
        title=item.title or (page.title if page else "") or _title_from_body(body),
        body=body,
        source=source,
        url=item.link,
        author=author,
        published_at=published_at,
        origin=item.link or f"{where.location}#{item.number}",
    )


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
