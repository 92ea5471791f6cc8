"""The Slack front door: a slack-bolt app whose listeners call `Bot.stream` and render the Answer.

No answering logic lives here. This module turns Slack events into questions (with the thread as
history), acknowledges every event at once, answers in a bounded worker pool, renders the Answer
as Block Kit, and keeps Slack's rules: answers go in the question's thread, retried events are
answered once, bots are ignored, tokens never reach logs and stack traces never reach Slack.

    app = build_app(bot, settings)           # or: register(existing_app, bot, settings)
    serve(bot, socket=True)                  # Socket Mode (SLACK_APP_TOKEN)
    serve(bot, socket=False, port=3000)      # HTTP Events API at /slack/events (signed requests)
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.errors import NewsbotError, SettingsError
from bot.models import Answer, Citation, Turn
from bot.settings import Settings

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk import WebClient

    from bot.core import Bot

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
PLACEHOLDER = "Looking through the articles..."
APOLOGY = "Sorry, something went wrong while answering; the team has been told."
BUSY = "I'm answering a lot of questions right now; please ask again in a minute."
NOT_ADMIN = "Sorry, only newsbot admins can add articles from Slack."
CANNOT_POST = "I can't post here: invite me with `/invite @newsbot`, or ask me in a direct message."
HELP = "Ask me about the news articles, e.g. `@newsbot What did Qatar say about Hamas's response?`"
NOT_FOUND_LINE = ":mag: *Not found in the articles.*"
FEEDBACK_ACTIONS = {"newsbot_feedback_up": "up", "newsbot_feedback_down": "down"}
FEEDBACK_FILE = "feedback.jsonl"

# Slack's own limits (https://docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_TEXT = 3000  # characters in one section / context text object
MAX_BUTTON_VALUE = 2000
MAX_ANSWER_SECTIONS = 5  # an answer longer than 15,000 characters is cut, not spread over 50 blocks

STREAM_UPDATE_SECONDS = 1.0  # chat.update is rate limited (Tier 3), so partial text at most ~1/s
EVENT_MEMORY_SECONDS = 3600.0  # Slack retries for up to ~5 minutes; remember event ids far longer
EVENT_MEMORY_SIZE = 10_000
FEEDBACK_MEMORY_SIZE = 1000  # answers kept so a vote can record the citations it voted on
HISTORY_TURNS = 10  # most recent exchanges of a thread passed as history
THREAD_FETCH_LIMIT = 200
# "busy" notices waiting to be sent (~1 kB each); beyond that they are dropped (and logged)
NOTICE_WORKERS, NOTICE_QUEUE = 2, 1000
MAX_REQUEST_BYTES = 1_000_000  # Slack's payloads are a few kB
HTTP_SOCKET_TIMEOUT = 10.0

_ANSWERED_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_SPECIAL_REF = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_INGEST = re.compile(r"^\s*ingest\s+(\S+)\s*$", re.IGNORECASE)
_ASKED = re.compile(r"^<@[UW][A-Z0-9]+> asked: (.*)$", re.DOTALL)
_TOKEN = re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]+")


# -- secrets never reach the logs -----------------------------------------------------------------
class RedactSecrets(logging.Filter):
    """Replace Slack tokens (xoxb-, xoxp-, xapp-, ...) and the given secrets in log records.

    Installed with `install_redaction`, it runs on every record of every logger (as part of the
    record factory), so a handler added later (a file, pytest's caplog) never sees a secret either.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        with self._lock:
            # very short values would redact ordinary words; Slack's secrets are 32+ characters
            self._secrets |= {secret for secret in secrets if secret and len(secret) >= 8}

    def redact(self, text: str) -> str:
        text = _TOKEN.sub("[redacted]", text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_redactor = RedactSecrets()
_redaction_installed = False
_redaction_lock = threading.Lock()


def install_redaction(*secrets: str | None) -> RedactSecrets:
    """Redact Slack tokens and these secrets from every log record of this process (idempotent)."""
    global _redaction_installed
    _redactor.add(secrets)
    with _redaction_lock:
        if not _redaction_installed:
            make_record = logging.getLogRecordFactory()

            def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = make_record(*args, **kwargs)
                _redactor.filter(record)
                return record

            logging.setLogRecordFactory(redacting_factory)
            _redaction_installed = True
    return _redactor


# -- settings -------------------------------------------------------------------------------------
def slack_settings(settings: Settings, *, socket: bool) -> Settings:
    """Fill the Slack secrets from Slack's conventional env vars when NEWSBOT_SLACK_* are unset,
    and check that the ones this transport needs are there."""
    fallbacks = {
        "slack_bot_token": "SLACK_BOT_TOKEN",
        "slack_app_token": "SLACK_APP_TOKEN",
        "slack_signing_secret": "SLACK_SIGNING_SECRET",
    }
    update = {
        name: os.environ[env]
        for name, env in fallbacks.items()
        if not getattr(settings, name) and os.environ.get(env)
    }
    if update:
        settings = settings.model_copy(update=update)
    needed = ["slack_bot_token", "slack_app_token" if socket else "slack_signing_secret"]
    for name in needed:
        if not getattr(settings, name):
            where = (
                "Basic Information > App-Level Tokens (scope connections:write)"
                if name == "slack_app_token"
                else "OAuth & Permissions > Bot User OAuth Token"
                if name == "slack_bot_token"
                else "Basic Information > App Credentials > Signing Secret"
            )
            raise SettingsError(
                f"the Slack {name.removeprefix('slack_').replace('_', ' ')} is not set: "
                f"set NEWSBOT_{name.upper()} (or {fallbacks[name]})",
                hint=f"copy it from your Slack app's page, {where}; see docs/slack.md",
            )
    return settings


# -- rendering ------------------------------------------------------------------------------------
def escape(text: str) -> str:
    """Escape the three characters mrkdwn treats as markup (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """Shorten escaped mrkdwn to `limit` characters without splitting an &entity;."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _split(text: str, limit: int) -> list[str]:
    """Split escaped mrkdwn into pieces of at most `limit` characters, at spaces where possible."""
    pieces = []
    while len(text) > limit:
        cut = text.rfind(" ", limit // 2, limit)
        if cut == -1:
            cut = limit
            amp = text.rfind("&", cut - 5, cut)
            if amp != -1 and ";" not in text[amp:cut]:
                cut = amp
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ")
    pieces.append(text)
    return pieces


def _link(citation: Citation) -> str:
    title = escape(citation.title.strip() or citation.url or "untitled article")
    if urlsplit(citation.url).scheme in ("http", "https"):
        url = escape(citation.url).replace("|", "%7C")
        return f"<{url}|{title}>"
    return f"*{title}*"


def citation_text(citation: Citation) -> str:
    """One citation as mrkdwn: number, linked title, outlet(s), date, then the quoted sentence."""
    outlets = escape(citation.outlets)
    head = f"*[{citation.n}]* {_link(citation)} · {outlets} · {citation.date}\n"
    if len(head) > MAX_TEXT // 2:  # an absurd title must not squeeze the quote out
        head = _cut(head, MAX_TEXT // 2) + "\n"
    quote = _cut(escape(" ".join(citation.quote.split())), MAX_TEXT - len(head) - 2)
    return f"{head}“{quote}”"


def fallback_text(answer: Answer) -> str:
    """The message's plain `text`: notifications, screen readers, and the thread history."""
    return _cut(escape(answer.text), MAX_TEXT)


def feedback_value(question: str) -> str:
    """The buttons' value: the question, so a vote can be recorded even after a restart."""
    question = question[:MAX_BUTTON_VALUE]
    while True:
        value = json.dumps({"q": question}, ensure_ascii=False)
        if len(value) <= MAX_BUTTON_VALUE:
            return value
        question = question[: len(question) * 3 // 4]


def answer_blocks(answer: Answer, *, feedback: bool = True) -> list[dict[str, Any]]:
    """Block Kit for an Answer: the text with its [n] markers, one context block per citation,
    a clear "not found" line for a refusal, and 👍/👎 buttons. Within Slack's limits."""
    blocks: list[dict[str, Any]] = []
    text = escape(answer.text.strip())
    if answer.refused:
        text = f"{NOT_FOUND_LINE}\n{text}" if text else NOT_FOUND_LINE
    pieces = _split(text, MAX_TEXT)
    if len(pieces) > MAX_ANSWER_SECTIONS:
        pieces = pieces[:MAX_ANSWER_SECTIONS]
        pieces[-1] = _cut(pieces[-1] + " " * MAX_TEXT, MAX_TEXT)  # force the "…"
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": p}} for p in pieces]
    if answer.note:
        note = {"type": "mrkdwn", "text": f"_{_cut(escape(answer.note), MAX_TEXT - 2)}_"}
        blocks.append({"type": "context", "elements": [note]})

    citations = list(answer.citations)
    if citations and answer.refused:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "*Closest evidence:*"}]}
        )
    room = MAX_BLOCKS - len(blocks) - (1 if feedback else 0)
    shown = citations if len(citations) <= room else citations[: room - 1]
    for citation in shown:
        element = {"type": "mrkdwn", "text": citation_text(citation)}
        blocks.append({"type": "context", "elements": [element]})
    if len(shown) < len(citations):
        more = f"…and {len(citations) - len(shown)} more sources not shown."
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})

    if feedback:
        value = feedback_value(answer.question)
        blocks.append(
            {
                "type": "actions",
                "block_id": "newsbot_feedback",
                "elements": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "text": {"type": "plain_text", "text": label, "emoji": True},
                        "value": value,
                    }
                    for action_id, label in (
                        ("newsbot_feedback_up", "👍 Helpful"),
                        ("newsbot_feedback_down", "👎 Not helpful"),
                    )
                ],
            }
        )
    return blocks


# -- reading Slack messages -----------------------------------------------------------------------
def plain_text(text: str, *, bot_user_id: str | None = None) -> str:
    """A Slack message as the words a person typed: the bot's mention removed, links, channel and
    user references made readable, and &amp; &lt; &gt; unescaped."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    else:  # who we are is unknown: drop the leading mentions, which address the bot
        text = re.sub(r"^\s*(?:<@[UW][A-Z0-9]+(?:\|[^>]*)?>\s*)+", " ", text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _CHANNEL_REF.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _USER_REF.sub(lambda m: "@" + m.group(1), text)
    text = _SPECIAL_REF.sub(lambda m: "@" + (m.group(2) or m.group(1)), text)
    return html.unescape(" ".join(text.split()))


def thread_history(
    messages: Sequence[dict[str, Any]],
    *,
    before_ts: str,
    bot_user_id: str | None,
    bot_id: str | None,
) -> list[Turn]:
    """Question -> answer pairs of a thread, oldest first, from the messages before `before_ts`.

    A person's message followed by the bot's answer is one Turn; the bot's placeholder, apology
    and busy notices are not answers, and people talking among themselves are not questions.
    """
    turns: list[Turn] = []
    pending: str | None = None
    for message in sorted(messages, key=lambda m: float(m.get("ts", "0"))):
        if float(message.get("ts", "0")) >= float(before_ts):
            break
        from_us = (bot_user_id and message.get("user") == bot_user_id) or (
            bot_id and message.get("bot_id") == bot_id
        )
        text = message.get("text") or ""
        asked = _ASKED.match(text)
        if from_us and asked:  # the /newsbot command's "<@U1> asked: ..." opens a thread
            pending = plain_text(asked[1], bot_user_id=bot_user_id) or None
        elif from_us:
            answer = html.unescape(text).strip()
            if pending and answer and answer not in (PLACEHOLDER, APOLOGY, BUSY, HELP):
                turns.append(Turn(question=pending, answer=answer))
            pending = None
        elif message.get("bot_id") or message.get("subtype") not in (None, *_ANSWERED_SUBTYPES):
            continue
        else:
            pending = plain_text(text, bot_user_id=bot_user_id) or None
    return turns[-HISTORY_TURNS:]


# -- bounded concurrency --------------------------------------------------------------------------
class WorkerPool:
    """A thread pool with a bounded queue: `try_submit` returns False instead of queueing more
    than `workers + queue` jobs, so a burst of questions cannot exhaust memory or block acks."""

    def __init__(self, workers: int, queue: int, *, name: str = "newsbot-slack") -> None:
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._in_flight = 0
        self._idle = threading.Condition()

    def try_submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> bool:
        with self._idle:
            if self._in_flight >= self.capacity:
                return False
            self._in_flight += 1
        try:
            self._executor.submit(self._run, fn, args, kwargs)
        except RuntimeError:  # shut down
            self._done()
            return False
        return True

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # jobs report their own failures; this is the last resort
            log.error("Slack job failed: %s: %s", type(exc).__name__, exc)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    @property
    def in_flight(self) -> int:
        """Jobs queued or running."""
        return self._in_flight

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


class RecentKeys:
    """Keys seen in the last `ttl` seconds, at most `size` of them (oldest forgotten first)."""

    def __init__(self, ttl: float = EVENT_MEMORY_SECONDS, size: int = EVENT_MEMORY_SIZE) -> None:
        self.ttl, self.size = ttl, size
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, *keys: str) -> bool:
        """Record the keys; True only when none of them was seen recently."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) > self.size or next(iter(self._seen.values())) < now - self.ttl
            ):
                self._seen.popitem(last=False)
            fresh = not any(key in self._seen for key in keys)
            for key in keys:
                self._seen[key] = now
                self._seen.move_to_end(key)
            return fresh


# -- the listeners --------------------------------------------------------------------------------
class SlackResponder:
    """What the listeners do. One per app; `register` creates it."""

    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        *,
        executor: WorkerPool | None = None,
        update_interval: float = STREAM_UPDATE_SECONDS,
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.pool = executor or WorkerPool(settings.slack_workers, settings.slack_queue)
        self.notices = WorkerPool(NOTICE_WORKERS, NOTICE_QUEUE, name="newsbot-slack-notice")
        self.update_interval = update_interval
        self.seen = RecentKeys()
        self.feedback_path = Path(settings.data_dir) / FEEDBACK_FILE
        self._feedback_lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._answers_lock = threading.Lock()

    # -- events ------------------------------------------------------------------------------
    def on_event(
        self,
        *,
        body: dict[str, Any],
        event: dict[str, Any],
        context: Any,
        client: WebClient,
        direct: bool,
    ) -> None:
        """Decide at once (no network) whether and how to answer; the answering is queued."""
        if direct and event.get("channel_type") != "im":
            return  # channel messages are answered through app_mention only
        if self._ignored(event, context):
            return
        team = body.get("team_id") or event.get("team") or context.team_id or ""
        channel = event.get("channel") or ""
        if not self._allowed(team, channel, body.get("event_id")):
            return
        ts = event.get("ts") or ""
        if not self.seen.first_time(f"event:{body.get('event_id', '')}", f"msg:{channel}:{ts}"):
            log.info("Slack event %s already handled (a retry); skipped", body.get("event_id"))
            return
        thread_ts = event.get("thread_ts") or ts
        user = event.get("user") or ""
        question = plain_text(event.get("text") or "", bot_user_id=context.bot_user_id)
        ingest = _INGEST.match(question)
        if ingest:
            if not self.may_ingest(user):
                self.notices.try_submit(self._post, client, channel, thread_ts, NOT_ADMIN)
                return
            say = partial(self._post, client, channel, thread_ts)
            job = partial(self.ingest, say, user, ingest[1])
        else:
            job = partial(
                self.answer,
                client,
                channel,
                thread_ts,
                question,
                asked_ts=ts,
                follow_up=event.get("thread_ts") not in (None, ts),
                bot_user_id=context.bot_user_id,
                bot_id=context.bot_id,
            )
        if not self.pool.try_submit(job):
            log.warning(
                "Slack worker queue full (%d jobs); told the user to retry", self.pool.capacity
            )
            if not self.notices.try_submit(self._post, client, channel, thread_ts, BUSY):
                log.warning("Slack notice queue full; a busy notice was dropped")

    def _ignored(self, event: dict[str, Any], context: Any) -> bool:
        if event.get("bot_id") or event.get("bot_profile"):
            return True  # our own messages and other bots'
        if event.get("subtype") not in (None, *_ANSWERED_SUBTYPES):
            return True  # edits, deletions, joins, bot_message, ...
        if event.get("edited"):
            return True
        user = event.get("user")
        return not user or user == context.bot_user_id

    def _allowed(self, team: str, channel: str, event_id: Any) -> bool:
        teams, channels = self.settings.slack_allowed_teams, self.settings.slack_allowed_channels
        if teams and team not in teams:
            log.info("Slack event %s from workspace %s ignored (not allowed)", event_id, team)
            return False
        if channels and channel not in channels:
            log.info("Slack event %s from channel %s ignored (not allowed)", event_id, channel)
            return False
        return True

    # -- answering (in the worker pool) -------------------------------------------------------
    def answer(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        question: str,
        *,
        asked_ts: str,
        follow_up: bool,
        bot_user_id: str | None,
        bot_id: str | None,
    ) -> None:
        if not question:
            self._post(client, channel, thread_ts, HELP)
            return
        started = time.perf_counter()
        placeholder: str | None = None
        try:
            placeholder = self._post(client, channel, thread_ts, PLACEHOLDER, quiet=False)
            history: list[Turn] = []
            if follow_up:
                replies = client.conversations_replies(
                    channel=channel, ts=thread_ts, limit=THREAD_FETCH_LIMIT
                )
                history = thread_history(
                    replies.get("messages") or [],
                    before_ts=asked_ts,
                    bot_user_id=bot_user_id,
                    bot_id=bot_id,
                )
            answer = self._stream(client, channel, placeholder, question, history)
            blocks = answer_blocks(answer)
            text = fallback_text(answer)
            if placeholder:
                client.chat_update(channel=channel, ts=placeholder, text=text, blocks=blocks)
                answer_ts = placeholder
            else:
                posted = client.chat_postMessage(
                    channel=channel, thread_ts=thread_ts, text=text, blocks=blocks
                )
                answer_ts = posted["ts"]
            self._remember(channel, answer_ts, answer)
            log.info(
                "Slack answer in %s (%s, %d citations, %d history turns) in %.2fs",
                channel,
                "refused" if answer.refused else "answered",
                len(answer.citations),
                len(history),
                time.perf_counter() - started,
            )
        except Exception as exc:
            self._apologise(client, channel, thread_ts, placeholder, exc)

    def _stream(
        self,
        client: WebClient,
        channel: str,
        placeholder: str | None,
        question: str,
        history: list[Turn],
    ) -> Answer:
        so_far: list[str] = []
        last_update = time.monotonic()
        for item in self.bot.stream(question, history=history or None):
            if isinstance(item, Answer):
                return item
            so_far.append(item)
            now = time.monotonic()
            if placeholder and now - last_update >= self.update_interval:
                last_update = now
                partial = _cut(escape("".join(so_far)), MAX_TEXT - 2) + " …"
                try:
                    client.chat_update(channel=channel, ts=placeholder, text=partial)
                except Exception as exc:  # a skipped partial update is harmless
                    log.info("Slack partial update skipped: %s: %s", type(exc).__name__, exc)
        raise NewsbotError("the answerer finished without an answer")

    def _apologise(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        placeholder: str | None,
        exc: Exception,
    ) -> None:
        log.error("Slack answer in %s failed: %s: %s", channel, type(exc).__name__, exc)
        try:
            if placeholder:
                client.chat_update(channel=channel, ts=placeholder, text=APOLOGY, blocks=[])
            else:
                client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=APOLOGY)
        except Exception as again:
            log.error(
                "Slack apology in %s failed too: %s: %s", channel, type(again).__name__, again
            )

    def _post(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str | None,
        text: str,
        *,
        quiet: bool = True,
    ) -> str | None:
        try:
            response = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
            return str(response["ts"])
        except Exception as exc:
            if not quiet:
                raise
            log.error("Slack message to %s failed: %s: %s", channel, type(exc).__name__, exc)
            return None

    # -- ingest command (admins only) ---------------------------------------------------------
    def may_ingest(self, user: str) -> bool:
        allowed = user in self.settings.slack_admins
        if not allowed:
            log.info("Slack ingest by %s refused (not in slack_admins)", user)
        return allowed

    def ingest(self, say: Callable[[str], Any], user: str, url: str) -> None:
        """Add one web page to the store (the caller checked `may_ingest`); report in `say`."""
        if urlsplit(url).scheme not in ("http", "https"):
            # bot.ingest also reads local paths; from Slack only web pages may be added
            say("I can only add http:// or https:// links.")
            return
        try:
            report = self.bot.ingest([url])
        except Exception as exc:
            log.error("Slack ingest of %s failed: %s: %s", url, type(exc).__name__, exc)
            say(APOLOGY)
            return
        if report.failures:
            reason = escape(report.failures[0].message)
            text = f"Could not add {escape(url)}: {reason}"
        else:
            text = (
                f"Added {escape(url)}: {report.new} new, {report.updated} updated, "
                f"{report.unchanged + report.duplicates} already known ({report.chunks} chunks)."
            )
        log.info("Slack ingest of %s by %s: %s", url, user, report.to_dict())
        say(_cut(text, MAX_TEXT))

    # -- the /newsbot slash command -----------------------------------------------------------
    def on_command(
        self, *, command: dict[str, Any], context: Any, client: WebClient, respond: Any
    ) -> str | None:
        """Queue the work; return the text only the caller sees (None: nothing to add)."""
        team, channel = command.get("team_id") or "", command.get("channel_id") or ""
        if not self._allowed(team, channel, command.get("trigger_id")):
            return "newsbot is not enabled in this channel."
        user = command.get("user_id") or ""
        question = plain_text(command.get("text") or "", bot_user_id=context.bot_user_id)
        if not question:
            return HELP
        ingest = _INGEST.match(question)
        if ingest:
            if not self.may_ingest(user):
                return NOT_ADMIN
            job = partial(self.ingest, lambda text: respond(text=text), user, ingest[1])
        else:
            job = partial(self.answer_command, client, respond, channel, user, question, context)
        if not self.pool.try_submit(job):
            log.warning("Slack worker queue full (%d jobs); told the user", self.pool.capacity)
            return BUSY
        return None

    def answer_command(
        self,
        client: WebClient,
        respond: Any,
        channel: str,
        user: str,
        question: str,
        context: Any,
    ) -> None:
        """Post the question in the channel (so the answer has a thread), then answer under it."""
        try:
            parent = client.chat_postMessage(
                channel=channel, text=f"<@{user}> asked: {escape(question)}"
            )["ts"]
        except Exception as exc:
            log.info("Slack /newsbot in %s cannot post: %s: %s", channel, type(exc).__name__, exc)
            try:
                respond(text=CANNOT_POST)
            except Exception as again:
                log.error("Slack /newsbot reply failed: %s: %s", type(again).__name__, again)
            return
        self.answer(
            client,
            channel,
            parent,
            question,
            asked_ts=parent,
            follow_up=False,
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
        )

    # -- feedback -----------------------------------------------------------------------------
    def _remember(self, channel: str, ts: str, answer: Answer) -> None:
        record = {
            "question": answer.question,
            "answer": answer.text,
            "refused": answer.refused,
            "citations": [
                {"n": c.n, "article_id": c.article_id, "title": c.title, "url": c.url,
                 "quote": c.quote}
                for c in answer.citations
            ],
        }  # fmt: skip
        with self._answers_lock:
            self._answers[(channel, ts)] = record
            while len(self._answers) > FEEDBACK_MEMORY_SIZE:
                self._answers.popitem(last=False)

    def on_feedback(
        self, *, body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        team = (body.get("team") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id", "")
        if not self._allowed(team, channel, body.get("trigger_id")):
            return
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts", "")
        user = (body.get("user") or {}).get("id", "")
        with self._answers_lock:
            known = self._answers.get((channel, ts))
        if known is None:  # answered before a restart: rebuild what the message shows
            try:
                question = str(json.loads(action.get("value") or "{}").get("q", ""))
            except ValueError:
                question = ""
            known = {
                "question": question,
                "answer": html.unescape(message.get("text") or ""),
                "citations": [
                    {"text": html.unescape(element.get("text", ""))}
                    for block in message.get("blocks") or []
                    if block.get("type") == "context"
                    for element in block.get("elements") or []
                ],
            }
        record = {
            **known,
            "vote": FEEDBACK_ACTIONS.get(action.get("action_id", ""), "unknown"),
            "user": user,
            "channel": channel,
            "ts": ts,
            "voted_at": time.time(),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._feedback_lock:
            self.feedback_path.parent.mkdir(parents=True, exist_ok=True)
            with self.feedback_path.open("a", encoding="utf-8") as out:
                out.write(line)
        log.info("Slack feedback %s on %s/%s", record["vote"], channel, ts)
        if channel and user:
            self.notices.try_submit(self._thank, client, channel, user, message.get("thread_ts"))

    def _thank(self, client: WebClient, channel: str, user: str, thread_ts: str | None) -> None:
        try:
            client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, text="Thanks for the feedback!"
            )
        except Exception as exc:
            log.info("Slack thank-you skipped: %s: %s", type(exc).__name__, exc)


def register(
    app: App,
    bot: Bot,
    settings: Settings,
    *,
    executor: WorkerPool | None = None,
    update_interval: float = STREAM_UPDATE_SECONDS,
) -> None:
    """Add newsbot's listeners to a Bolt app: mentions in channels, direct messages, feedback.

    Listeners only acknowledge and queue; answers are produced in `executor` (by default a
    WorkerPool of settings.slack_workers threads and settings.slack_queue waiting jobs).
    """
    install_redaction(
        settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret
    )
    responder = SlackResponder(bot, settings, executor=executor, update_interval=update_interval)

    @app.event("app_mention")
    def on_mention(ack: Any, body: dict, event: dict, context: Any, client: Any) -> None:
        ack()
        responder.on_event(body=body, event=event, context=context, client=client, direct=False)

    @app.event("message")
    def on_message(ack: Any, body: dict, event: dict, context: Any, client: Any) -> None:
        ack()
        responder.on_event(body=body, event=event, context=context, client=client, direct=True)

    @app.command("/newsbot")
    def on_command(ack: Any, command: dict, context: Any, client: Any, respond: Any) -> None:
        text = responder.on_command(
            command=command, context=context, client=client, respond=respond
        )
        if text:
            ack(text=text)  # seen only by the person who typed the command
        else:
            ack()

    @app.action(re.compile("^newsbot_feedback_(up|down)$"))
    def on_feedback(ack: Any, body: dict, action: dict, client: Any) -> None:
        ack()
        responder.on_feedback(body=body, action=action, client=client)

    @app.error
    def on_error(error: Exception, body: dict) -> None:
        # one line, no traceback: the traceback could carry request data into the logs
        log.error(
            "Slack listener failed on %s: %s: %s",
            (body or {}).get("event_id") or (body or {}).get("type"),
            type(error).__name__,
            error,
        )

    app._newsbot_responder = responder  # type: ignore[attr-defined]  # for tests and serve()


# -- the app and its transports -------------------------------------------------------------------
def build_app(
    bot: Bot,
    settings: Settings,
    *,
    client: WebClient | None = None,
    executor: WorkerPool | None = None,
    socket: bool = False,
    token_verification_enabled: bool = True,
) -> App:
    """A Bolt app with newsbot's listeners. The Web API client talks to settings.slack_api_url.

    `process_before_response=True`: listeners run in the request's thread, ack and queue (no
    network), so the HTTP response or Socket Mode ack goes back at once and never waits for a
    shared executor; answering happens in the WorkerPool.
    """
    from slack_bolt import App
    from slack_bolt.error import BoltError
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    settings = slack_settings(settings, socket=socket)
    token = settings.slack_bot_token
    install_redaction(token, settings.slack_app_token, settings.slack_signing_secret)
    if client is None:
        client = WebClient(token=token, base_url=settings.slack_api_url)
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
            process_before_response=True,
            token_verification_enabled=token_verification_enabled,
            request_verification_enabled=not socket,
        )
    except BoltError as exc:  # auth.test refused the token
        raise SettingsError(
            f"Slack rejected the bot token at {settings.slack_api_url}: {exc}",
            hint="check NEWSBOT_SLACK_BOT_TOKEN (or SLACK_BOT_TOKEN): the Bot User OAuth Token",
        ) from None
    except Exception as exc:  # the API could not be reached
        raise SettingsError(
            f"cannot reach the Slack API at {settings.slack_api_url}: {type(exc).__name__}: {exc}",
            hint="check the network or NEWSBOT_SLACK_API_URL",
        ) from None
    register(app, bot, settings, executor=executor)
    return app


def responder_of(app: App) -> SlackResponder:
    """The SlackResponder `register` attached to this app."""
    return app._newsbot_responder  # type: ignore[attr-defined, no-any-return]


class SlackHTTPServer(ThreadingHTTPServer):
    """The Events API endpoint: POST /slack/events -> app.dispatch. One thread per request (acks
    never wait behind each other); GET /health answers 200 for load balancers."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of Slack's requests is not refused

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        super().__init__((host, port), _SlackRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{EVENTS_PATH}"


class _SlackRequestHandler(BaseHTTPRequestHandler):
    server: SlackHTTPServer
    timeout = HTTP_SOCKET_TIMEOUT  # a client that stops sending does not hold a thread forever
    server_version = "newsbot"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.partition("?")[0] == "/health":
            self._send(200, b"ok", {"Content-Type": ["text/plain"]})
        else:
            self._send(404, b"", {})

    def do_POST(self) -> None:  # noqa: N802
        from slack_bolt import BoltRequest

        path, _, query = self.path.partition("?")
        if path != EVENTS_PATH:
            self._send(404, b"", {})
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BYTES:
            self._send(413 if length > 0 else 400, b"", {})
            return
        body = self.rfile.read(length)
        timestamp = self.headers.get("X-Slack-Request-Timestamp") or ""
        if not timestamp.isdigit():  # slack_sdk's verifier would raise on it (-> 500)
            self._send(401, b'{"error":"invalid request"}', {"Content-Type": ["application/json"]})
            return
        request = BoltRequest(
            body=body.decode("utf-8", errors="replace"),
            query=query,
            headers={key.lower(): value for key, value in self.headers.items()},
        )
        response = self.server.app.dispatch(request)
        self._send(response.status, response.body.encode("utf-8"), response.headers)

    def _send(self, status: int, body: bytes, headers: dict[str, Sequence[str]]) -> None:
        self.send_response(status)
        for name, values in headers.items():
            if name.lower() == "content-length":
                continue
            for value in values:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("Slack HTTP %s: " + format, self.client_address[0], *args)


def make_server(app: App, host: str = "127.0.0.1", port: int = 3000) -> SlackHTTPServer:
    """The HTTP endpoint for `app`, bound but not yet serving (call serve_forever)."""
    try:
        return SlackHTTPServer(app, host, port)
    except OSError as exc:
        raise SettingsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop what is using it",
        ) from None


def socket_mode_handler(app: App, settings: Settings) -> SocketModeHandler:
    """Socket Mode: Slack pushes events over a WebSocket; nothing needs to be reachable."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    settings = slack_settings(settings, socket=True)
    return SocketModeHandler(app, settings.slack_app_token)


def serve(bot: Bot, *, socket: bool, port: int = 3000, host: str = "127.0.0.1") -> None:
    """Run the Slack bot until interrupted: Socket Mode, or HTTP on host:port at /slack/events.

    Missing tokens raise SettingsError naming the env var. On Ctrl-C, answers already being
    written are finished before returning.
    """
    settings = slack_settings(bot.settings, socket=socket)
    app = build_app(bot, settings, socket=socket)
    # Build the lexical index now, not on the first question (about a minute at 100k chunks).
    bot.warm()
    pool = responder_of(app).pool
    try:
        if socket:
            log.info("newsbot Slack app connecting over Socket Mode to %s", settings.slack_api_url)
            socket_mode_handler(app, settings).start()
        else:
            server = make_server(app, host, port)
            log.info("newsbot Slack app listening on %s", server.url)
            try:
                server.serve_forever()
            finally:
                server.server_close()
    except KeyboardInterrupt:
        log.info("newsbot Slack app stopping; finishing the answers in progress")
    finally:
        pool.shutdown(wait=True)
