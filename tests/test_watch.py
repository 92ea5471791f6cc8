"""`newsbot watch`: feeds polled with conditional requests from a local HTTP server that honours
If-None-Match / If-Modified-Since, changes its feed, then goes down. The ingest is a recording
stand-in here (tests/integration/test_watch_bot.py runs the real Bot)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.errors import NewsbotError
from bot.settings import Settings, load_settings
from bot.watch import FeedStates, Round, Watcher, parse_every, read_feed_list
from index.article import Article
from index.ingest import IngestReport


def rss(*items: tuple[str, str, str]) -> bytes:
    """An RSS document of (guid, title, text) items, each with its text in full."""
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<link>https://news.example/{guid}</link>"
        f"<pubDate>Mon, 04 Mar 2024 10:00:00 GMT</pubDate>"
        f"<description>{text}</description></item>"
        for guid, title, text in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Coast Daily</title>'
        f"{entries}</channel></rss>"
    ).encode()


HARBOUR = ("harbour", "Harbour reopens", "The northern harbour reopened on Monday after storms.")
FERRY = ("ferry", "Ferry runs again", "The ferry to the islands runs again from Tuesday.")
LIBRARY = ("library", "Library extends hours", "The city library stays open until ten.")


class FeedServer:
    """One feed at /feed.xml with an ETag and a Last-Modified; 304 when the client has it."""

    def __init__(self, body: bytes, *, validators: bool = True) -> None:
        self.body = body
        self.validators = validators
        self.down = False
        self.requests: list[dict[str, str]] = []
        self._version = 0
        self._modified = formatdate(1_700_000_000, usegmt=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(dict(self.headers.items()))
                if server.down:
                    self.send_error(503, "Service Unavailable")
                    return
                etag = f'"v{server._version}"'
                if server.validators and (
                    self.headers.get("If-None-Match") == etag
                    or self.headers.get("If-Modified-Since") == server._modified
                ):
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(server.body)))
                if server.validators:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", server._modified)
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def change(self, body: bytes) -> None:
        self.body = body
        self._version += 1
        self._modified = formatdate(1_700_000_000 + self._version, usegmt=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer(rss(HARBOUR, FERRY))
    yield server
    server.close()


@pytest.fixture
def watch_settings(tmp_path: Path) -> Settings:
    # Entries carry their full text here: no linked page is fetched.
    return load_settings(
        data_dir=tmp_path / "data", allow_private_urls=True, fetch_full_articles=False
    )


class Recorder:
    """Stands in for Bot.ingest: records the articles, calls each id new the first time."""

    def __init__(self) -> None:
        self.calls: list[list[Article]] = []
        self.bodies: dict[str, str] = {}

    def __call__(self, articles: list[Article]) -> IngestReport:
        self.calls.append(articles)
        report = IngestReport()
        for article in articles:
            if article.id not in self.bodies:
                report.new += 1
            elif self.bodies[article.id] != article.body:
                report.updated += 1
            else:
                report.unchanged += 1
            self.bodies[article.id] = article.body
        return report


def watcher(feeds: list[str], settings: Settings, ingest: Recorder) -> Watcher:
    return Watcher(feeds, settings, ingest, FeedStates(settings.data_dir / "feeds", "store"))


def titles(articles: list[Article]) -> list[str]:
    return sorted(article.title for article in articles)


def test_only_new_and_changed_entries_are_ingested_and_a_304_costs_nothing(
    feed_server: FeedServer, watch_settings: Settings
) -> None:
    ingest = Recorder()
    poller = watcher([feed_server.url], watch_settings, ingest)

    first = poller.round()
    assert titles(ingest.calls[0]) == ["Ferry runs again", "Harbour reopens"]
    assert (first.new, first.updated, first.failed) == (2, 0, 0)
    assert "round 1: 2 new, 0 updated, 0 failed" in first.line()
    assert feed_server.url in first.line()

    second = poller.round()
    assert feed_server.requests[-1]["If-None-Match"] == '"v0"'
    assert second.feeds[0].not_modified and "not modified" in second.line()
    assert len(ingest.calls) == 1

    changed_ferry = ("ferry", "Ferry runs again", "The ferry runs again from Wednesday instead.")
    feed_server.change(rss(HARBOUR, changed_ferry, LIBRARY))
    third = poller.round()
    assert titles(ingest.calls[1]) == ["Ferry runs again", "Library extends hours"]
    assert (third.new, third.updated, third.failed) == (1, 1, 0)


def test_a_restarted_watcher_remembers_validators_and_entries(
    feed_server: FeedServer, watch_settings: Settings
) -> None:
    ingest = Recorder()
    watcher([feed_server.url], watch_settings, ingest).round()
    restarted = watcher([feed_server.url], watch_settings, ingest).round()
    assert restarted.feeds[0].not_modified
    assert feed_server.requests[-1]["If-None-Match"] == '"v0"'
    assert len(ingest.calls) == 1


def test_a_feed_without_validators_is_read_but_seen_entries_are_not_ingested_again(
    watch_settings: Settings,
) -> None:
    server = FeedServer(rss(HARBOUR), validators=False)
    try:
        ingest = Recorder()
        poller = watcher([server.url], watch_settings, ingest)
        poller.round()
        again = poller.round()
        assert "If-None-Match" not in server.requests[-1]
        assert (again.new, again.updated, again.failed) == (0, 0, 0)
        assert not again.feeds[0].not_modified
        assert len(ingest.calls) == 1
    finally:
        server.close()


def test_a_feed_that_is_down_is_named_the_others_go_on_and_it_is_retried(
    feed_server: FeedServer, watch_settings: Settings, tmp_path: Path
) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(rss(LIBRARY))
    ingest = Recorder()
    poller = watcher([feed_server.url, str(local)], watch_settings, ingest)
    feed_server.down = True

    result = poller.round()
    assert [feed.error != "" for feed in result.feeds] == [True, False]
    assert feed_server.url in result.down[0].error and "503" in result.down[0].error
    assert f"{feed_server.url}: down" in result.line()
    assert titles(ingest.calls[0]) == ["Library extends hours"]

    feed_server.down = False
    back = poller.round()
    assert not back.down and back.new == 2
    assert "If-None-Match" not in feed_server.requests[-1]  # nothing was remembered while down
    assert back.feeds[1].not_modified  # the local file did not change


def test_a_local_feed_file_is_read_again_when_it_changes(
    watch_settings: Settings, tmp_path: Path
) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(rss(HARBOUR))
    ingest = Recorder()
    poller = watcher([str(local)], watch_settings, ingest)
    poller.round()
    assert poller.round().feeds[0].not_modified
    local.write_bytes(rss(HARBOUR, LIBRARY))
    assert poller.round().new == 1
    assert titles(ingest.calls[-1]) == ["Library extends hours"]


def test_run_stops_at_once_when_told_even_with_an_hour_to_wait(
    feed_server: FeedServer, watch_settings: Settings
) -> None:
    poller = watcher([feed_server.url], watch_settings, Recorder())
    stop = threading.Event()
    rounds: list[Round] = []

    def on_round(result: Round) -> None:
        rounds.append(result)
        threading.Timer(0.2, stop.set).start()

    started = time.monotonic()
    poller.run(3600, stop, on_round)
    assert len(rounds) == 1
    assert time.monotonic() - started < 60  # not the hour


def test_run_polls_round_after_round(feed_server: FeedServer, watch_settings: Settings) -> None:
    rounds: list[Round] = []
    poller = watcher([feed_server.url], watch_settings, Recorder())
    poller.run(0, threading.Event(), rounds.append, rounds=3)
    assert [result.number for result in rounds] == [1, 2, 3]
    assert len(feed_server.requests) == 3


def test_durations_and_feed_lists(tmp_path: Path) -> None:
    assert parse_every("15m") == 900
    assert parse_every("1h") == 3600
    assert parse_every("30s") == 30
    assert parse_every("1h30m") == 5400
    for bad in ("soon", "0s", "-5m", ""):
        with pytest.raises(NewsbotError, match="not a duration"):
            parse_every(bad)
    listed = tmp_path / "feeds.txt"
    listed.write_text("# our feeds\nhttps://a.example/rss\n\n  https://b.example/atom  \n")
    assert read_feed_list(listed) == ["https://a.example/rss", "https://b.example/atom"]
    listed.write_text("# none yet\n")
    with pytest.raises(NewsbotError, match="names no feeds"):
        read_feed_list(listed)
    with pytest.raises(NewsbotError, match="cannot read the feed list"):
        read_feed_list(tmp_path / "missing.txt")


def test_an_entry_without_text_is_one_failure_and_the_others_are_ingested(
    watch_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "local.xml"
    local.write_bytes(rss(HARBOUR, ("empty", "Nothing here", "")))
    ingest = Recorder()
    result = watcher([str(local)], watch_settings, ingest).round()
    assert (result.new, result.failed) == (1, 1)
    assert titles(ingest.calls[0]) == ["Harbour reopens"]
    assert any("entry 2: no text" in message for message in caplog.messages)
