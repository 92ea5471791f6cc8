"""Slack messages in and out, without the network (the listeners in bot/slack.py call these):
which events newsbot answers, what a message asks, the thread as history, an Answer as Block Kit
within Slack's limits, and the votes on answers. docs/slack.md says what each rule is for."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from bot.models import Answer, Citation, Turn

log = logging.getLogger(__name__)

# What newsbot says besides answers (thread_history knows them: they are not answers).
PLACEHOLDER = "Looking through the articles..."
APOLOGY = "Sorry, something went wrong while answering; the team has been told."
BUSY = "I'm answering a lot of questions right now; please ask again in a minute."
NOT_ADMIN = "Sorry, only newsbot admins can add articles from Slack."
CANNOT_POST = "I can't post here: invite me with `/invite @newsbot`, or ask me in a direct message."
HELP = "Ask me about the news articles, e.g. `@newsbot What did Qatar say about Hamas's response?`"
NOT_FOUND_LINE = ":mag: *Not found in the articles.*"

# Slack's own limits (https://docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_TEXT = 3000  # characters in one section / context text object
MAX_BUTTON_VALUE = 2000
MAX_ANSWER_SECTIONS = 5  # an answer longer than 15,000 characters is cut, not spread over 50 blocks

EVENT_MEMORY_SECONDS = 3600.0  # Slack retries for up to ~5 minutes; remember event ids far longer
EVENT_MEMORY_SIZE = 10_000
HISTORY_TURNS = 10  # most recent exchanges of a thread passed as history

_ANSWERED_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_SPECIAL_REF = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_INGEST = re.compile(r"^\s*ingest\s+(\S+)\s*$", re.IGNORECASE)
_ASKED = re.compile(r"^<@[UW][A-Z0-9]+> asked: (.*)$", re.DOTALL)


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _before_entity(text: str, cut: int) -> int:
    """`cut`, moved back to the start of an &entity; of escaped mrkdwn that it would split."""
    amp = text.rfind("&", max(0, cut - 5), cut)
    return amp if amp != -1 and ";" not in text[amp:cut] else cut


def _cut(text: str, limit: int) -> str:
    """Shorten escaped mrkdwn to `limit` characters without splitting an &entity;."""
    return text if len(text) <= limit else text[: _before_entity(text, limit - 1)] + "…"


def _split(text: str, limit: int) -> list[str]:
    """Split escaped mrkdwn into pieces of at most `limit` characters, at spaces where possible."""
    pieces = []
    while len(text) > limit:
        cut = text.rfind(" ", limit // 2, limit)
        if cut == -1:
            cut = _before_entity(text, limit)
        pieces.append(text[:cut])
        text = text[cut:].lstrip(" ")
    pieces.append(text)
    return pieces


def citation_text(citation: Citation) -> str:
    """One citation as mrkdwn: number, linked title, outlet(s), date, then the quoted sentence."""
    title = escape(citation.title.strip() or citation.url or "untitled article")
    if web_link(citation.url):
        title = f"<{escape(citation.url).replace('|', '%7C')}|{title}>"
    else:
        title = f"*{title}*"
    head = f"*[{citation.n}]* {title} · {escape(citation.outlets)} · {citation.date}\n"
    if len(head) > MAX_TEXT // 2:  # an absurd title must not squeeze the quote out
        head = _cut(head, MAX_TEXT // 2) + "\n"
    quote = _cut(escape(" ".join(citation.quote.split())), MAX_TEXT - len(head) - 2)
    return f"{head}“{quote}”"


def feedback_value(question: str) -> str:
    """The buttons' value: the question, so a vote can be recorded even after a restart."""
    question = question[:MAX_BUTTON_VALUE]
    while True:
        value = json.dumps({"q": question}, ensure_ascii=False)
        if len(value) <= MAX_BUTTON_VALUE:
            return value
        question = question[: len(question) * 3 // 4]


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def answer_blocks(answer: Answer) -> list[dict[str, Any]]:
    """Block Kit for an Answer: the text with its [n] markers, one context block per citation,
    a clear "not found" line for a refusal, and 👍/👎 buttons. Within Slack's limits."""
    text = escape(answer.text.strip())
    if answer.refused:
        text = f"{NOT_FOUND_LINE}\n{text}" if text else NOT_FOUND_LINE
    pieces = _split(text, MAX_TEXT)
    if len(pieces) > MAX_ANSWER_SECTIONS:
        pieces = pieces[:MAX_ANSWER_SECTIONS]
        pieces[-1] = _cut(pieces[-1] + " " * MAX_TEXT, MAX_TEXT)  # force the "…"
    blocks = [{"type": "section", "text": _mrkdwn(piece)} for piece in pieces]
    if answer.note:
        blocks.append(_context(f"_{_cut(escape(answer.note), MAX_TEXT - 2)}_"))

    citations = list(answer.citations)
    if citations and answer.refused:
        blocks.append(_context("*Closest evidence:*"))
    room = MAX_BLOCKS - len(blocks) - 1  # the last block holds the feedback buttons
    shown = citations if len(citations) <= room else citations[: room - 1]
    blocks += [_context(citation_text(citation)) for citation in shown]
    if len(shown) < len(citations):
        blocks.append(_context(f"…and {len(citations) - len(shown)} more sources not shown."))

    value = feedback_value(answer.question)
    buttons = [
        {
            "type": "button",
            "action_id": f"newsbot_feedback_{vote}",
            "text": {"type": "plain_text", "text": label, "emoji": True},
            "value": value,
        }
        for vote, label in (("up", "👍 Helpful"), ("down", "👎 Not helpful"))
    ]
    return [*blocks, {"type": "actions", "block_id": "newsbot_feedback", "elements": buttons}]


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
    and busy notices are not answers, and people talking among themselves are not questions."""
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


def shown_answer(message: dict[str, Any], button_value: str | None) -> dict[str, Any]:
    """What a message with feedback buttons shows: its question (the buttons' value), answer
    and citations, for a vote on an answer that is no longer remembered."""
    try:
        question = str(json.loads(button_value or "{}").get("q", ""))
    except ValueError:
        question = ""
    return {
        "question": question,
        "answer": html.unescape(message.get("text") or ""),
        "citations": [
            {"text": html.unescape(element.get("text", ""))}
            for block in message.get("blocks") or []
            if block.get("type") == "context"
            for element in block.get("elements") or []
        ],
    }


FEEDBACK_FILE = "feedback.jsonl"
FEEDBACK_MEMORY = 1000  # answers kept so a vote can record the citations it voted on


class FeedbackLog:
    """People's votes on answers, one JSON line each in <data_dir>/feedback.jsonl. A vote records
    a recent answer's question, text and citations, else (e.g. after a restart) what its message
    shows (`shown_answer`)."""

    def __init__(self, path: Path, memory: int = FEEDBACK_MEMORY) -> None:
        self.path = path
        self.memory = memory
        self._answers: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, where: tuple[str, str], answer: Answer) -> None:
        """Keep what a vote on the answer posted at `where` (channel, ts) will record."""
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
        with self._lock:
            self._answers[where] = record
            while len(self._answers) > self.memory:
                self._answers.popitem(last=False)

    def vote(
        self, where: tuple[str, str], vote: str, user: str, shown: dict[str, Any]
    ) -> dict[str, Any]:
        """Append one vote and return it; `shown` is what the message shows (if not remembered)."""
        channel, ts = where
        with self._lock:
            known = self._answers.get(where, shown)
            record = {**known, "vote": vote, "user": user, "channel": channel, "ts": ts}
            record["voted_at"] = time.time()
            line = json.dumps(record, ensure_ascii=False) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        log.info("feedback %s on %s/%s", vote, channel, ts)
        return record


Action = Literal["ask", "ingest", "help"]


@dataclass(frozen=True)
class Request:
    """What a person asked newsbot, and where the reply goes."""

    action: Action
    text: str  # the question, or the link to ingest
    user: str
    channel: str
    thread_ts: str | None  # the thread to answer in (None: the channel itself)
    asked_ts: str = ""  # the asking message: the thread's history is what came before it
    follow_up: bool = False  # asked inside an existing thread
    bot_user_id: str | None = None  # who newsbot is (to tell its own messages in the thread)
    bot_id: str | None = None


def read_request(text: str, *, bot_user_id: str | None) -> tuple[Action, str]:
    """What a message or /newsbot asks: ("ask", question), ("ingest", link) or ("help", "")."""
    question = plain_text(text, bot_user_id=bot_user_id)
    ingest = _INGEST.match(question)
    if ingest:
        return "ingest", ingest[1]
    return ("ask", question) if question else ("help", "")


def web_link(url: str) -> bool:
    """An http(s) address: only web pages may be added from Slack (not local paths) or linked."""
    return urlsplit(url).scheme in ("http", "https")


class EventGate:
    """Decides at once, without the network, which messages get an answer."""

    def __init__(self, teams: Sequence[str] = (), channels: Sequence[str] = ()) -> None:
        self.teams, self.channels = frozenset(teams), frozenset(channels)
        self.seen = RecentKeys()

    def allowed(self, team: str, channel: str, what: object) -> bool:
        """The workspace and channel are on the allow-lists (empty lists allow all)."""
        if self.teams and team not in self.teams:
            log.info("Slack event %s from workspace %s ignored (not allowed)", what, team)
            return False
        if self.channels and channel not in self.channels:
            log.info("Slack event %s from channel %s ignored (not allowed)", what, channel)
            return False
        return True

    def admit(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        *,
        bot_user_id: str | None,
        bot_id: str | None = None,
        team: str | None = None,
        direct: bool = False,
    ) -> Request | None:
        """The request in a message event, or None when it is not for newsbot: a channel
        message that is not a mention (`direct`: only DMs), a bot's or newsbot's own message,
        an edit or other subtype, a workspace or channel not allowed, or one already seen."""
        if direct and event.get("channel_type") != "im":
            return None  # channel messages are answered through app_mention only
        user = event.get("user")
        if (
            event.get("bot_id")
            or event.get("bot_profile")
            or event.get("subtype") not in (None, *_ANSWERED_SUBTYPES)
            or event.get("edited")
            or not user
            or user == bot_user_id
        ):
            return None
        channel, ts = event.get("channel") or "", event.get("ts") or ""
        event_id = body.get("event_id", "")
        if not self.allowed(
            body.get("team_id") or event.get("team") or team or "", channel, event_id
        ):
            return None
        if not self.seen.first_time(f"event:{event_id}", f"msg:{channel}:{ts}"):
            log.info("Slack event %s already handled (a retry); skipped", event_id)
            return None
        action, text = read_request(event.get("text") or "", bot_user_id=bot_user_id)
        thread = event.get("thread_ts")
        return Request(
            action,
            text,
            user,
            channel,
            thread or ts,
            asked_ts=ts,
            follow_up=thread not in (None, ts),
            bot_user_id=bot_user_id,
            bot_id=bot_id,
        )


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
