"""Keep feeds up to date: poll them every so often and ingest only what is new (README, "newsbot
watch"). A local feed file's size and modification time stand in for the HTTP validators."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bot.errors import NewsbotError, ReadError
from bot.settings import Settings
from index.article import Article, ReadFailure

if TYPE_CHECKING:
    from bot.core import Bot
    from index.ingest import IngestReport
    from index.read import Feed

log = logging.getLogger(__name__)

STATE_FOLDER = "feeds"


def parse_every(text: str) -> float:
    """Seconds in a duration like "15m", "1h", "30s" or "1h30m" (Go's duration syntax)."""
    import durationpy

    try:
        seconds = durationpy.from_str(text.strip()).total_seconds()
    except Exception:
        seconds = 0.0
    if seconds <= 0:
        raise NewsbotError(
            f"{text!r} is not a duration", hint="write it like 30s, 15m, 1h or 1h30m"
        )
    return seconds


def read_feed_list(path: Path) -> list[str]:
    """The feeds named in a file, one a line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise NewsbotError(f"cannot read the feed list {path}: {exc.strerror or exc}") from None
    feeds = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not feeds:
        raise NewsbotError(f"the feed list {path} names no feeds", hint="one feed URL a line")
    return feeds


@dataclass(frozen=True)
class FeedRound:
    """One feed in one round: what was ingested, or why nothing could be."""

    feed: str
    new: int = 0
    updated: int = 0
    failed: int = 0
    not_modified: bool = False
    error: str = ""  # set when the feed could not be read (down, not a feed, ...)

    def describe(self) -> str:
        if self.error:
            return "down"
        if self.not_modified:
            return "not modified"
        return f"{self.new} new, {self.updated} updated, {self.failed} failed"


@dataclass(frozen=True)
class Round:
    number: int
    feeds: list[FeedRound]
    seconds: float

    @property
    def new(self) -> int:
        return sum(feed.new for feed in self.feeds)

    @property
    def updated(self) -> int:
        return sum(feed.updated for feed in self.feeds)

    @property
    def failed(self) -> int:
        return sum(feed.failed for feed in self.feeds)

    @property
    def down(self) -> list[FeedRound]:
        return [feed for feed in self.feeds if feed.error]

    def line(self) -> str:
        """One line saying what the round did, in total and per feed."""
        per_feed = "; ".join(f"{feed.feed}: {feed.describe()}" for feed in self.feeds)
        down = f", {len(self.down)} down" if self.down else ""
        return (
            f"round {self.number}: {self.new} new, {self.updated} updated, {self.failed} failed"
            f"{down} in {self.seconds:.1f} s ({per_feed})"
        )


class FeedState(BaseModel):
    """What the last successful round learnt of a feed (its file's JSON)."""

    feed: str
    etag: str = ""
    last_modified: str = ""
    entries: dict[str, str] = {}  # entry key -> fingerprint ingested


@dataclass(frozen=True)
class FeedStates:
    """One small JSON file per feed (and store), written whole or not at all."""

    folder: Path
    store_key: str

    def path(self, feed: str) -> Path:
        # Keyed by the store too: what was ingested into one collection is not in another.
        digest = hashlib.sha1(f"{self.store_key}|{feed}".encode()).hexdigest()[:16]
        return self.folder / f"{digest}.json"

    def load(self, feed: str) -> FeedState:
        try:
            return FeedState.model_validate_json(self.path(feed).read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            log.warning("%s: forgetting what was seen of %s (%s)", self.path(feed), feed, exc)
        return FeedState(feed=feed)

    def save(self, state: FeedState) -> None:
        from index.files import write_atomically

        write_atomically(self.path(state.feed), state.model_dump_json(indent=1).encode("utf-8"))


class Watcher:
    """Polls `feeds` and ingests what is new with `ingest` (Bot.ingest, or a test's stand-in)."""

    def __init__(
        self,
        feeds: Sequence[str],
        settings: Settings,
        ingest: Callable[[list[Article]], IngestReport],
        states: FeedStates,
    ) -> None:
        if not feeds:
            raise NewsbotError("no feeds to watch", hint="name at least one feed URL or file")
        self.feeds = list(dict.fromkeys(feeds))
        self.settings = settings
        self.ingest = ingest
        self.states = states
        self.rounds = 0

    @classmethod
    def for_bot(cls, bot: Bot, feeds: Sequence[str]) -> Watcher:
        settings = bot.settings
        from index.store import store_key

        key = store_key(settings.chroma_url, settings.collection)
        states = FeedStates(settings.data_dir / STATE_FOLDER, key)
        return cls(feeds, settings, lambda articles: bot.ingest(articles), states)

    def run(
        self,
        every: float,
        stop: threading.Event,
        on_round: Callable[[Round], None] | None = None,
        rounds: int | None = None,
    ) -> None:
        """A round every `every` seconds (start to start) until `stop` is set or `rounds` done."""
        done = 0
        while not stop.is_set():
            started = time.monotonic()
            result = self.round(stop)
            done += 1
            if on_round is not None:
                on_round(result)
            if rounds is not None and done >= rounds:
                return
            stop.wait(max(0.0, started + every - time.monotonic()))

    def start(
        self, every: float, on_round: Callable[[Round], None] | None = None
    ) -> threading.Event:
        """Run the rounds in a daemon thread (next to a Slack bot); set the event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            try:
                self.run(every, stop, on_round)
            except Exception:  # the bot must go on answering even if watching breaks
                log.exception("watching feeds stopped")

        threading.Thread(target=loop, name="newsbot-watch", daemon=True).start()
        return stop

    def round(self, stop: threading.Event | None = None) -> Round:
        """Poll every feed once; ingest what is new."""
        self.rounds += 1
        started = time.monotonic()
        results = []
        for feed in self.feeds:
            if stop is not None and stop.is_set():
                break
            results.append(self._poll(feed))
        result = Round(self.rounds, results, time.monotonic() - started)
        for down in result.down:
            log.info("feed down: %s: %s (trying again next round)", down.feed, down.error)
        log.info("%s", result.line())
        return result

    def _poll(self, feed: str) -> FeedRound:
        state = self.states.load(feed)
        try:
            document = self._fetch(feed, state)
            if document is None:
                return FeedRound(feed, not_modified=True)
            parsed, validators = document
            outcome, entries = self._ingest_new(parsed, state)
        except NewsbotError as exc:
            return FeedRound(feed, error=str(exc))
        except Exception as exc:  # a bug must not stop the other feeds, nor the next rounds
            log.exception("watching %s failed", feed)
            return FeedRound(feed, error=f"unexpected {type(exc).__name__}: {exc}")
        # Only now, with every new entry handled, may the next round skip what this one read.
        state.etag, state.last_modified = validators
        state.entries = entries
        self.states.save(state)
        return outcome

    def _fetch(self, feed: str, state: FeedState) -> tuple[Feed, tuple[str, str]] | None:
        """The feed's document and its validators, or None when it has not changed."""
        from index.read import read_feed

        if feed.lower().startswith(("http://", "https://")):
            from index.fetch import fetch

            asked = {"If-None-Match": state.etag, "If-Modified-Since": state.last_modified}
            headers = {name: value for name, value in asked.items() if value}
            fetched = fetch(feed, self.settings, headers=headers)
            if fetched.not_modified:
                return None
            validators = (fetched.etag, fetched.last_modified)
            return read_feed(fetched.content, feed, url=fetched.url), validators
        path = Path(feed).expanduser()
        try:
            info = path.stat()
            version = f"{info.st_mtime_ns}-{info.st_size}"
            if version == state.etag:
                return None
            if info.st_size > self.settings.max_file_bytes:
                raise ReadError(
                    f"{feed} is {info.st_size} bytes, over the limit of "
                    f"{self.settings.max_file_bytes} bytes"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise ReadError(f"cannot read {feed}: {exc.strerror or exc}") from None
        return read_feed(data, feed), (version, "")

    def _ingest_new(self, parsed: Feed, state: FeedState) -> tuple[FeedRound, dict[str, str]]:
        """Ingest the entries new or changed; return the counts and the feed's entries now known."""
        from index.read import FeedEntry, feed_articles

        entries = [entry for entry in parsed.entries if isinstance(entry, FeedEntry)]
        failures = [entry for entry in parsed.entries if isinstance(entry, ReadFailure)]
        fresh = [entry for entry in entries if state.entries.get(entry.key) != entry.fingerprint]
        articles: list[Article] = []
        for item in feed_articles(parsed, fresh, self.settings):
            if isinstance(item, ReadFailure):
                failures.append(item)
            else:
                articles.append(item)
        for failure in failures:
            log.warning("%s", failure)
        failed = len(failures)
        new = updated = 0
        if articles:
            report = self.ingest(articles)
            # A syndicated copy of a stored story is stored once, yet new to this feed.
            new, updated = report.new + report.duplicates, report.updated
            failed += report.failed
        # Entries that failed are remembered too: they are read again once the feed changes them.
        # Entries gone from the feed are forgotten, so the file stays as small as the feed.
        known = {entry.key: entry.fingerprint for entry in entries}
        return FeedRound(parsed.where.location, new, updated, failed), known
