"""The Slack front door: Block Kit rendering (pure), and a real slack-bolt app fed signed events
through `app.dispatch(BoltRequest(...))`, talking to a local fake Slack Web API.

Conventions: the bot's token and signing secret below must never show up in logs or in Slack.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.errors import SettingsError, StoreError
from bot.models import Answer, Citation, Turn
from bot.settings import load_settings
from bot.slack import RedactSecrets, SlackDoor, WorkerPool, build_app, register, slack_settings
from bot.slack_messages import (
    APOLOGY,
    BUSY,
    MAX_BLOCKS,
    MAX_BUTTON_VALUE,
    MAX_TEXT,
    NOT_ADMIN,
    PLACEHOLDER,
    EventGate,
    FeedbackLog,
    RecentKeys,
    answer_blocks,
    plain_text,
    read_request,
    thread_history,
)
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE
from tests.fake_slack import (
    APP_TOKEN,
    SECRET,
    TOKEN,
    FakeSlack,
    event_body,
    quoted,
    signed_headers,
)

ARTICLE_TEXT = SAMPLE_ARTICLE.read_text(encoding="utf-8")


# -- rendering (pure) ----------------------------------------------------------------------------
def citation(n: int = 1, **changes: Any) -> Citation:
    fields: dict[str, Any] = {
        "n": n,
        "article_id": "a1",
        "title": "Talks & truce <live>",
        "source": "Example News",
        "url": "https://news.example/talks?id=1&lang=en",
        "published_at": datetime(2024, 2, 7, tzinfo=UTC),
        "quote": "Hamas said the plan was <positive> & workable.",
        "start": 0,
        "end": 10,
        "score": 0.9,
    }
    fields.update(changes)
    return Citation(**fields)


def answer(
    text: str = "The plan was positive [1].", *citations: Citation, **changes: Any
) -> Answer:
    fields: dict[str, Any] = {
        "question": "What did Hamas say?",
        "standalone_question": "What did Hamas say?",
        "text": text,
        "citations": citations or (citation(),),
        "refused": False,
    }
    fields.update(changes)
    return Answer(**fields)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            found.append(element["text"] if isinstance(element["text"], str) else "")
    return found


def test_answer_blocks_show_the_answer_then_one_context_block_per_citation() -> None:
    blocks = answer_blocks(answer("A [1]. B [2].", citation(1), citation(2, title="Second")))

    assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": "A [1]. B [2]."}}
    contexts = [b for b in blocks if b["type"] == "context"]
    assert len(contexts) == 2
    first = contexts[0]["elements"][0]["text"]
    # linked title, outlet, date, the quote; article text escaped for mrkdwn
    assert first.startswith("*[1]* <https://news.example/talks?id=1&amp;lang=en|")
    assert "Talks &amp; truce &lt;live&gt;" in first
    assert "Example News" in first and "2024-02-07" in first
    assert "Hamas said the plan was &lt;positive&gt; &amp; workable." in first
    assert "<positive>" not in json.dumps(blocks)
    assert "|Second>" in contexts[1]["elements"][0]["text"]


def test_feedback_buttons_sit_under_each_answer() -> None:
    actions = answer_blocks(answer())[-1]
    assert actions["type"] == "actions"
    assert [e["action_id"] for e in actions["elements"]] == [
        "newsbot_feedback_up",
        "newsbot_feedback_down",
    ]
    assert json.loads(actions["elements"][0]["value"]) == {"q": "What did Hamas say?"}


def test_a_refusal_says_not_found_then_shows_the_closest_evidence() -> None:
    refusal = answer("The articles don't say. The closest passages are below.", refused=True)
    blocks = answer_blocks(refusal)
    assert blocks[0]["text"]["text"].startswith(":mag: *Not found in the articles.*")
    assert "Closest evidence" in blocks[1]["elements"][0]["text"]
    assert "workable" in blocks[2]["elements"][0]["text"]


def test_sources_list_every_outlet_and_undated_articles_say_so() -> None:
    syndicated = citation(sources=("Reuters", "AP"), published_at=None)
    text = answer_blocks(answer("x [1]", syndicated))[1]["elements"][0]["text"]
    assert "Reuters, AP" in text and "undated" in text


def test_a_citation_without_a_web_address_is_not_a_broken_link() -> None:
    local = citation(url="/data/articles/a.txt", title="Local | file")
    text = answer_blocks(answer("x [1]", local))[1]["elements"][0]["text"]
    assert "<" not in text.split("·")[0] and "*Local | file*" in text


def test_rendering_keeps_within_slack_limits() -> None:
    long_quote = citation(quote="word & " * 2000, title="t" * 5000)
    many = [citation(n, quote=f"quote {n}") for n in range(1, 81)]
    huge = answer("&" * 20_000 + " [1]", long_quote, *many, question="q" * 5000)

    blocks = answer_blocks(huge)

    assert len(blocks) <= MAX_BLOCKS
    assert all(len(text) <= MAX_TEXT for text in texts(blocks))
    assert blocks[-1]["type"] == "actions"
    assert all(len(b["value"]) <= MAX_BUTTON_VALUE for b in blocks[-1]["elements"])
    assert "more sources not shown" in blocks[-2]["elements"][0]["text"]
    for text in texts(blocks):  # no &entity; cut in half
        assert "&" not in text.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")


# -- reading Slack messages (pure) -----------------------------------------------------------------
def test_plain_text_drops_the_bot_mention_and_unescapes() -> None:
    raw = "<@UBOT> what about <https://x.example/a?b=1&amp;c=2|x.example> &amp; <#C1|general>?"
    assert (
        plain_text(raw, bot_user_id="UBOT") == "what about https://x.example/a?b=1&c=2 & #general?"
    )
    assert plain_text("<@UBOT|newsbot>   hi <@UOTHER>", bot_user_id="UBOT") == "hi @UOTHER"
    assert plain_text("<@UBOT> hi", bot_user_id=None) == "hi"


def test_thread_history_pairs_questions_with_the_bots_answers() -> None:
    messages = [
        {"ts": "1.0", "user": "UALICE", "text": "<@UBOT> Who mediates?"},
        {"ts": "1.1", "user": "UBOT", "bot_id": "BBOT", "text": "Qatar &amp; Egypt [1]."},
        {"ts": "1.2", "user": "UBOB", "text": "interesting"},
        {"ts": "1.3", "user": "UALICE", "text": "<@UBOT> broken one"},
        {"ts": "1.4", "user": "UBOT", "bot_id": "BBOT", "text": APOLOGY},
        {"ts": "1.5", "bot_id": "BOTHER", "subtype": "bot_message", "text": "another bot"},
        {"ts": "1.6", "user": "UALICE", "text": "<@UBOT> And what did they say?"},
        {"ts": "1.7", "user": "UBOT", "bot_id": "BBOT", "text": "Later answer"},
    ]
    turns = thread_history(messages, before_ts="1.6", bot_user_id="UBOT", bot_id="BBOT")
    assert turns == [Turn(question="Who mediates?", answer="Qatar & Egypt [1].")]


def test_a_message_asks_a_question_an_ingest_or_for_help() -> None:
    assert read_request("<@UBOT> Who &amp; why?", bot_user_id="UBOT") == ("ask", "Who & why?")
    link = "<@UBOT> ingest <https://news.example/a?b=1&amp;c=2|news.example>"
    assert read_request(link, bot_user_id="UBOT") == ("ingest", "https://news.example/a?b=1&c=2")
    assert read_request("<@UBOT>  ", bot_user_id="UBOT") == ("help", "")
    assert read_request("ingest the news please", bot_user_id=None)[0] == "ask"


def test_the_gate_admits_each_message_once_and_only_from_people_where_allowed() -> None:
    gate = EventGate(teams=["T0001"], channels=["C0GENERAL", "D0ALICE"])
    mention = event_body("<@UBOT> Who mediates?", thread_ts="1.0")
    request = gate.admit(mention, mention["event"], bot_user_id="UBOT", bot_id="BBOT")
    assert request is not None
    assert (request.action, request.text, request.user) == ("ask", "Who mediates?", "UALICE")
    assert (request.thread_ts, request.follow_up, request.bot_id) == ("1.0", True, "BBOT")
    assert gate.admit(mention, mention["event"], bot_user_id="UBOT") is None  # a retry
    twin = dict(mention, event_id="EvTWIN")  # the same message under another event id
    assert gate.admit(twin, mention["event"], bot_user_id="UBOT") is None

    def admitted(body: dict[str, Any], **options: Any) -> bool:
        return gate.admit(body, body["event"], bot_user_id="UBOT", **options) is not None

    assert not admitted(event_body("hi", channel="C0RANDOM"))
    assert not admitted(event_body("hi", team_id="T0EVIL"))
    assert not admitted(event_body("hi", user="UBOT"))
    assert not admitted(event_body("hi", bot_id="BOTHER"))
    assert not admitted(event_body("hi", subtype="message_changed"))
    chatter = event_body("lunch?", event_type="message", channel_type="channel")
    assert not admitted(chatter, direct=True)
    dm = event_body("Who?", event_type="message", channel="D0ALICE", channel_type="im")
    assert admitted(dm, direct=True)


def test_a_vote_records_the_answer_it_voted_on_or_what_the_message_showed(tmp_path) -> None:
    votes = FeedbackLog(tmp_path / "feedback.jsonl", memory=1)
    votes.remember(("C1", "1.0"), answer())
    votes.remember(("C1", "2.0"), answer("Another [1]."))  # 1.0 is forgotten (memory=1)
    votes.vote(("C1", "2.0"), "up", "UALICE", {"question": "unused"})
    votes.vote(("C1", "1.0"), "down", "UBOB", {"question": "shown", "answer": "as shown"})

    known, forgotten = [json.loads(line) for line in votes.path.read_text().splitlines()]
    assert (known["vote"], known["answer"], known["user"]) == ("up", "Another [1].", "UALICE")
    assert known["citations"][0]["quote"] == citation().quote
    assert (forgotten["question"], forgotten["answer"], forgotten["vote"]) == (
        "shown",
        "as shown",
        "down",
    )


# -- bounded memory --------------------------------------------------------------------------------
def test_recent_keys_forget_after_the_ttl_and_beyond_the_size() -> None:
    keys = RecentKeys(ttl=0.05, size=3)
    assert keys.first_time("a") and not keys.first_time("a")
    time.sleep(0.1)
    assert keys.first_time("a")
    for key in "bcde":
        keys.first_time(key)
    assert len(keys._seen) <= 4 and keys.first_time("b")


def test_worker_pool_refuses_work_beyond_its_queue() -> None:
    release = threading.Event()
    pool = WorkerPool(workers=1, queue=2)
    try:
        accepted = [pool.try_submit(release.wait) for _ in range(5)]
        assert accepted == [True, True, True, False, False]
        release.set()
        assert pool.wait_idle(timeout=10)
        assert pool.try_submit(lambda: None)
    finally:
        release.set()
        pool.shutdown()


# -- settings --------------------------------------------------------------------------------------
def test_missing_tokens_name_the_env_var(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="NEWSBOT_SLACK_BOT_TOKEN.*SLACK_BOT_TOKEN"):
        slack_settings(settings, socket=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)  # Slack's own convention is accepted too
    with pytest.raises(SettingsError, match="NEWSBOT_SLACK_SIGNING_SECRET"):
        slack_settings(settings, socket=False)
    with pytest.raises(SettingsError, match="NEWSBOT_SLACK_APP_TOKEN"):
        slack_settings(settings, socket=True)
    monkeypatch.setenv("NEWSBOT_SLACK_APP_TOKEN", APP_TOKEN)
    resolved = slack_settings(load_settings(data_dir=settings.data_dir), socket=True)
    assert (resolved.slack_bot_token, resolved.slack_app_token) == (TOKEN, APP_TOKEN)


@pytest.fixture
def redacted(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog behind the filter `newsbot slack` puts on its log handler."""
    caplog.handler.addFilter(RedactSecrets([TOKEN, APP_TOKEN, SECRET]))
    return caplog


def test_the_log_handler_filter_keeps_tokens_out_of_every_record(caplog) -> None:
    handler_filter = RedactSecrets([SECRET])
    caplog.handler.addFilter(handler_filter)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("slack_sdk.web").info("calling with %s and %s", TOKEN, APP_TOKEN)
        logging.getLogger("bot.some.module").warning("secret is " + SECRET)
        try:
            raise RuntimeError(f"bad token {TOKEN}")
        except RuntimeError:
            logging.getLogger("elsewhere").exception("failed")
    assert len(caplog.records) == 3
    assert TOKEN not in caplog.text and APP_TOKEN not in caplog.text and SECRET not in caplog.text
    assert caplog.text.count("[redacted]") == 4
    assert logging.getLogRecordFactory() is logging.LogRecord  # the process's logging untouched


# -- a real Bolt app against the fake Slack API ----------------------------------------------------
class SpyBot:
    """The real Bot, with every call recorded; `fail` makes stream() raise it instead."""

    def __init__(self, bot: Any) -> None:
        self._bot = bot
        self.streams: list[tuple[str, dict[str, Any]]] = []
        self.ingests: list[Any] = []
        self.answers: list[Answer] = []
        self.fail: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bot, name)

    def stream(self, question: str, **kwargs: Any) -> Iterator[Any]:
        self.streams.append((question, kwargs))
        if self.fail:
            raise self.fail
        for item in self._bot.stream(question, **kwargs):
            if isinstance(item, Answer):
                self.answers.append(item)
            yield item

    def ingest(self, sources: Any, **kwargs: Any) -> Any:
        from index.ingest import IngestReport

        self.ingests.append(sources)
        return IngestReport(new=1, chunks=3)


class Harness:
    def __init__(self, app: Any, door: SlackDoor, slack: FakeSlack, bot: SpyBot) -> None:
        self.app, self.door, self.slack, self.bot = app, door, slack, bot

    def send(self, body: dict[str, Any], **header_options: Any) -> Any:
        from slack_bolt import BoltRequest

        raw = json.dumps(body)
        response = self.app.dispatch(
            BoltRequest(body=raw, headers=signed_headers(raw, SECRET, **header_options))
        )
        return response

    def settle(self) -> None:
        assert self.door.wait_idle(timeout=120)

    def texts(self, channel: str, thread_ts: str) -> list[str]:
        return [m["text"] for m in self.slack.replies_in(channel, thread_ts)]


@pytest.fixture
def harness(fake_bot, fake_slack, slack_config) -> Iterator[Any]:
    """make(**settings) -> a real Bolt app over a Bot with the hashing embedder: these tests are
    about Slack's rules, not about what retrieval finds (tests/integration/test_slack_http.py
    runs the real model)."""
    pools: list[WorkerPool] = []

    def make(**overrides: Any) -> Harness:
        pool = WorkerPool(2, 10)
        pools.append(pool)
        bot = SpyBot(fake_bot)
        app, door = build_app(bot, slack_config(**overrides), executor=pool)  # type: ignore[arg-type]
        return Harness(app, door, fake_slack, bot)

    yield make
    for pool in pools:
        pool.shutdown()


def test_a_mention_gets_a_threaded_answer_with_citation_blocks(harness) -> None:
    h = harness()
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    ts = body["event"]["ts"]

    response = h.send(body)
    assert response.status == 200
    h.settle()

    placeholder = h.slack.calls_to("chat.postMessage")[0].params
    assert placeholder["thread_ts"] == ts and placeholder["text"] == PLACEHOLDER
    [reply] = h.slack.answers("C0GENERAL", ts)
    assert "[1]" in reply["blocks"][0]["text"]["text"]
    contexts = [b["elements"][0]["text"] for b in reply["blocks"] if b["type"] == "context"]
    assert contexts and all("Ceasefire talks" in text and "2024-02-07" in text for text in contexts)
    assert all(quoted(text) in ARTICLE_TEXT for text in contexts)  # verbatim from the article
    assert any("Qatar" in quoted(text) for text in contexts)
    assert reply["blocks"][-1]["type"] == "actions"
    assert h.bot.streams == [(QATAR_QUESTION, {"history": None})]  # the mention stripped
    assert {call.token for call in h.slack.calls} == {TOKEN}


def test_the_app_posts_through_the_web_client_it_is_given(fake_bot, fake_slack, slack_config):
    """The outside world is injected (STYLE.md): a caller's WebClient, not one built from the
    settings, carries the answer."""
    from slack_sdk import WebClient

    client = WebClient(token=TOKEN, base_url=fake_slack.api_url)
    nowhere = "http://127.0.0.1:9/api/"  # nothing listens there
    settings = slack_config().model_copy(update={"slack_api_url": nowhere})
    pool = WorkerPool(2, 10)
    try:
        app, door = build_app(SpyBot(fake_bot), settings, client=client, executor=pool)  # type: ignore[arg-type]
        h = Harness(app, door, fake_slack, SpyBot(fake_bot))
        body = event_body(f"<@UBOT> {QATAR_QUESTION}")
        assert h.send(body).status == 200
        h.settle()
        assert h.slack.answers("C0GENERAL", body["event"]["ts"])
    finally:
        pool.shutdown()


def test_direct_messages_are_answered_and_channel_chatter_is_not(harness) -> None:
    h = harness()
    dm = event_body(QATAR_QUESTION, event_type="message", channel="D0ALICE", channel_type="im")
    chatter = event_body("lunch?", event_type="message", channel_type="channel")

    assert h.send(dm).status == 200 and h.send(chatter).status == 200
    h.settle()

    assert len(h.slack.answers("D0ALICE", dm["event"]["ts"])) == 1
    assert [q for q, _ in h.bot.streams] == [QATAR_QUESTION]


@pytest.mark.parametrize(
    "fields",
    [
        {"user": "UBOT"},  # our own message
        {"bot_id": "BOTHER", "subtype": "bot_message", "user": None},
        {"bot_id": "BOTHER", "user": "UOTHERBOT"},  # a bot posting as its user
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
    ],
)
def test_own_bot_and_edited_messages_are_ignored(harness, fields: dict[str, Any]) -> None:
    h = harness()
    user = fields.pop("user", "UALICE")
    body = event_body(
        QATAR_QUESTION, event_type="message", channel="D0A", channel_type="im", user=user, **fields
    )
    assert h.send(body).status == 200
    h.settle()
    assert h.slack.calls_to("chat.postMessage") == [] and h.bot.streams == []


@pytest.mark.parametrize(
    "problem", ["bad signature", "no signature", "stale", "from the future", "no timestamp"]
)
def test_unsigned_or_stale_requests_get_401_and_no_reply(harness, problem: str) -> None:
    h = harness()
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    raw = json.dumps(body)
    now = int(time.time())
    headers = signed_headers(raw, SECRET)
    if problem == "bad signature":
        headers = signed_headers(raw, "not-the-signing-secret")
    elif problem == "no signature":
        del headers["x-slack-signature"]
    elif problem == "stale":  # a replay of a genuine request, 5 minutes and a bit later
        headers = signed_headers(raw, SECRET, timestamp=now - 5 * 60 - 10)
    elif problem == "from the future":
        headers = signed_headers(raw, SECRET, timestamp=now + 5 * 60 + 10)
    else:
        del headers["x-slack-request-timestamp"]
    from slack_bolt import BoltRequest

    response = h.app.dispatch(BoltRequest(body=raw, headers=headers))

    assert response.status == 401
    h.settle()
    assert h.slack.calls_to("chat.postMessage") == [] and h.bot.streams == []


def test_a_request_signed_four_minutes_ago_is_still_accepted(harness) -> None:
    h = harness()
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    assert h.send(body, timestamp=int(time.time()) - 4 * 60).status == 200


def test_a_retried_event_is_answered_once(harness) -> None:
    h = harness()
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    assert h.send(body).status == 200
    assert h.send(body, retry_num=1).status == 200
    assert h.send(body, retry_num=2).status == 200
    # the same message delivered as both app_mention and message.im (different event ids)
    twin = dict(body, event_id="EvTWIN", event=dict(body["event"], type="message"))
    twin["event"]["channel_type"] = "im"
    assert h.send(twin).status == 200
    h.settle()

    assert len(h.slack.answers("C0GENERAL", body["event"]["ts"])) == 1
    assert len(h.slack.calls_to("chat.postMessage")) == 1
    assert len(h.bot.streams) == 1


def test_a_follow_up_in_the_thread_is_answered_with_the_thread_as_history(harness) -> None:
    h = harness()
    first = event_body(f"<@UBOT> {QATAR_QUESTION}")
    thread = first["event"]["ts"]
    h.slack.add_message("C0GENERAL", dict(first["event"]))
    h.send(first)
    h.settle()
    [first_answer] = h.slack.answers("C0GENERAL", thread)

    follow_up = event_body("<@UBOT> And what did Blinken say?", thread_ts=thread)
    h.slack.add_message("C0GENERAL", dict(follow_up["event"]))
    h.send(follow_up)
    h.settle()

    [replies_call] = h.slack.calls_to("conversations.replies")
    assert replies_call.params["ts"] == thread
    question, kwargs = h.bot.streams[-1]
    assert question == "And what did Blinken say?"
    assert kwargs["history"] == [
        Turn(question=QATAR_QUESTION, answer=first_answer["text"].replace("&amp;", "&"))
    ]
    # the core used it: the follow-up was rewritten into a question that stands on its own
    assert h.bot.answers[-1].standalone_question != "And what did Blinken say?"
    placeholder = h.slack.calls_to("chat.postMessage")[-1].params
    assert placeholder["thread_ts"] == thread
    assert len(h.slack.answers("C0GENERAL", thread)) == 2


def test_a_core_error_gives_an_apology_and_no_token_or_traceback(harness, redacted) -> None:
    caplog = redacted
    h = harness()
    h.bot.fail = StoreError(f"Chroma at http://10.0.0.5:8000 is down (client token {TOKEN})")
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")

    with caplog.at_level(logging.DEBUG):
        assert h.send(body).status == 200
        h.settle()

    assert h.texts("C0GENERAL", body["event"]["ts"]) == [APOLOGY]
    sent = json.dumps([call.params for call in h.slack.calls])
    assert TOKEN not in sent and "Traceback" not in sent and "Chroma" not in sent
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert "Traceback" not in caplog.text
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and "StoreError" in failures[0].getMessage()


def test_the_whole_exchange_logs_no_secret_even_at_debug(harness, redacted) -> None:
    caplog = redacted
    h = harness()
    with caplog.at_level(logging.DEBUG):
        h.send(event_body(f"<@UBOT> {QATAR_QUESTION}"))
        h.send(event_body("<@UBOT> hi"), timestamp=int(time.time()) - 3600)  # rejected: logged
        h.settle()
    assert any(r.name.startswith("slack_sdk") for r in caplog.records)  # it did log at debug
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def action_body(
    action_id: str, message: dict[str, Any], *, channel: str, user: str = "UALICE"
) -> dict[str, Any]:
    button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"])
    return {
        "type": "block_actions",
        "team": {"id": "T0001", "domain": "newsbot-test"},
        "user": {"id": user, "team_id": "T0001"},
        "api_app_id": "A0NEWSBOT",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
        "trigger_id": "123.456.abc",
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "newsbot_feedback",
                "value": button["value"],
                "action_ts": str(time.time()),
            }
        ],
    }


def test_feedback_buttons_append_the_vote_to_a_jsonl_file(harness, slack_config) -> None:
    from slack_bolt import BoltRequest

    h = harness()
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    h.send(body)
    h.settle()
    [reply] = h.slack.answers("C0GENERAL", body["event"]["ts"])

    for action_id, user in [("newsbot_feedback_up", "UALICE"), ("newsbot_feedback_down", "UBOB")]:
        payload = action_body(action_id, reply, channel="C0GENERAL", user=user)
        raw = urlencode({"payload": json.dumps(payload)})
        headers = signed_headers(raw, SECRET, content_type="application/x-www-form-urlencoded")
        assert h.app.dispatch(BoltRequest(body=raw, headers=headers)).status == 200
    h.settle()

    path = slack_config().data_dir / "feedback.jsonl"
    up, down = [json.loads(line) for line in path.read_text().splitlines()]
    assert (up["vote"], up["user"], down["vote"], down["user"]) == ("up", "UALICE", "down", "UBOB")
    assert up["question"] == QATAR_QUESTION and up["ts"] == reply["ts"]
    assert "[1]" in up["answer"]
    assert up["citations"] and all(c["quote"] in ARTICLE_TEXT for c in up["citations"])
    assert len(h.slack.calls_to("chat.postEphemeral")) == 2  # "thanks" only the voter sees


def test_allow_lists_ignore_other_workspaces_and_channels(harness, caplog) -> None:
    h = harness(slack_allowed_teams=["T0001"], slack_allowed_channels=["C0NEWS"])
    allowed = event_body(f"<@UBOT> {QATAR_QUESTION}", channel="C0NEWS")
    other_channel = event_body(f"<@UBOT> {QATAR_QUESTION}", channel="C0RANDOM")
    other_team = event_body(f"<@UBOT> {QATAR_QUESTION}", channel="C0NEWS", team_id="T0EVIL")

    with caplog.at_level(logging.INFO, logger="bot"):
        for body in (allowed, other_channel, other_team):
            assert h.send(body).status == 200
        h.settle()

    assert len(h.bot.streams) == 1
    assert [call.params["channel"] for call in h.slack.calls_to("chat.postMessage")] == ["C0NEWS"]
    ignored = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert len(ignored) == 2 and any("T0EVIL" in m for m in ignored)


def test_only_admins_may_ingest_from_slack(harness) -> None:
    h = harness(slack_admins=["UADMIN"])
    by_alice = event_body("<@UBOT> ingest <https://news.example/story>")
    by_admin = event_body("<@UBOT> ingest <https://news.example/story>", user="UADMIN")
    local_file = event_body("<@UBOT> ingest /etc/passwd", user="UADMIN")

    for body in (by_alice, by_admin, local_file):
        h.send(body)
    h.settle()

    assert h.texts("C0GENERAL", by_alice["event"]["ts"]) == [NOT_ADMIN]
    assert h.bot.ingests == [["https://news.example/story"]]
    [added] = h.texts("C0GENERAL", by_admin["event"]["ts"])
    assert added.startswith("Added https://news.example/story: 1 new")
    [refused] = h.texts("C0GENERAL", local_file["event"]["ts"])
    assert "http" in refused and h.bot.streams == []


def test_a_full_queue_answers_busy_instead_of_growing(fake_bot, fake_slack, slack_config) -> None:
    release = threading.Event()

    class SlowBot(SpyBot):
        def stream(self, question: str, **kwargs: Any) -> Iterator[Any]:
            release.wait(60)
            return super().stream(question, **kwargs)

    pool = WorkerPool(workers=1, queue=1)
    bot = SlowBot(fake_bot)
    app, door = build_app(bot, slack_config(), executor=pool)  # type: ignore[arg-type]
    h = Harness(app, door, fake_slack, bot)
    bodies = [event_body(f"<@UBOT> {QATAR_QUESTION}") for _ in range(4)]
    try:
        assert [h.send(body).status for body in bodies] == [200] * 4  # acked while busy
        fake_slack.wait_for(lambda: len(h.texts("C0GENERAL", bodies[3]["event"]["ts"])) == 1)
    finally:
        release.set()
    h.settle()
    pool.shutdown()

    assert [h.texts("C0GENERAL", b["event"]["ts"]) for b in bodies[2:]] == [[BUSY], [BUSY]]
    assert [len(h.slack.answers("C0GENERAL", b["event"]["ts"])) for b in bodies[:2]] == [1, 1]


def test_streamed_text_updates_the_placeholder_about_once_a_second(
    fake_bot, fake_slack, slack_config
) -> None:
    from slack_bolt import App
    from slack_sdk import WebClient

    class StreamingBot(SpyBot):
        """An LLM-style answerer: text arrives in pieces, then the Answer."""

        def stream(self, question: str, **kwargs: Any) -> Iterator[Any]:
            started = time.monotonic()
            final = self._bot.ask(question, **kwargs)
            words = final.text.split(" ")
            for index, word in enumerate(words):
                if index == len(words) // 2:
                    time.sleep(0.3)  # a pause longer than the update interval
                yield word + " "
            streamed.append(time.monotonic() - started)
            yield final

    streamed: list[float] = []

    settings = slack_config()
    pool = WorkerPool(1, 5)
    app = App(
        client=WebClient(token=TOKEN, base_url=fake_slack.api_url),
        signing_secret=SECRET,
        process_before_response=True,
    )
    door = register(app, StreamingBot(fake_bot), settings, executor=pool, update_interval=0.2)  # type: ignore[arg-type]
    h = Harness(app, door, fake_slack, SpyBot(fake_bot))
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    h.send(body)
    h.settle()
    pool.shutdown()

    updates = [call.params for call in fake_slack.calls_to("chat.update")]
    *partials, final = updates  # partial text (at least the pause's), then the answer
    # At most one partial update an interval, however slow a loaded machine made the stream
    # (on an idle one: exactly one, after the pause), not one a word.
    assert 1 <= len(partials) <= streamed[0] / 0.2 + 1
    for partial in partials:
        assert "blocks" not in partial and partial["text"].endswith(" …")
        assert 0 < len(partial["text"]) < len(final["text"]) + 2
    assert final["blocks"][0]["type"] == "section"


def command_body(text: str, fake: FakeSlack, *, user: str = "UALICE") -> str:
    return urlencode(
        {
            "token": "legacy-verification-token",
            "team_id": "T0001",
            "team_domain": "newsbot-test",
            "channel_id": "C0GENERAL",
            "channel_name": "general",
            "user_id": user,
            "user_name": "alice",
            "command": "/newsbot",
            "text": text,
            "api_app_id": "A0NEWSBOT",
            "response_url": f"{fake.api_url}response_url",
            "trigger_id": "123.456.abc",
        }
    )


def send_command(h: Harness, text: str, **options: Any) -> Any:
    from slack_bolt import BoltRequest

    raw = command_body(text, h.slack, **options)
    headers = signed_headers(raw, SECRET, content_type="application/x-www-form-urlencoded")
    return h.app.dispatch(BoltRequest(body=raw, headers=headers))


def test_the_slash_command_posts_the_question_and_answers_in_its_thread(harness) -> None:
    h = harness()
    response = send_command(h, QATAR_QUESTION)
    assert response.status == 200 and response.body == ""
    h.settle()

    parent = h.slack.calls_to("chat.postMessage")[0]
    assert "thread_ts" not in parent.params
    assert parent.params["text"] == f"<@UALICE> asked: {QATAR_QUESTION}"
    thread = next(iter(h.slack.threads["C0GENERAL"]))
    [answer_message] = h.slack.answers("C0GENERAL", thread)
    assert "[1]" in answer_message["text"]

    # a follow-up mention in that thread sees the slash command's question as history
    follow_up = event_body("<@UBOT> And Blinken?", thread_ts=thread)
    h.slack.add_message("C0GENERAL", dict(follow_up["event"]))
    h.send(follow_up)
    h.settle()
    [turn] = h.bot.streams[-1][1]["history"]
    assert turn.question == QATAR_QUESTION


def test_the_slash_command_answers_privately_when_it_cannot_help(harness) -> None:
    h = harness(slack_admins=["UADMIN"])
    assert "Ask me about the news articles" in send_command(h, "").body
    assert send_command(h, "ingest https://news.example/a").body == NOT_ADMIN
    h.slack.errors["chat.postMessage"] = "not_in_channel"
    assert send_command(h, QATAR_QUESTION).status == 200
    h.settle()

    [private] = h.slack.calls_to("response_url")
    assert "invite me" in private.params["text"]
    assert h.bot.ingests == [] and h.bot.streams == []


def test_the_manifest_subscribes_to_what_the_app_listens_for() -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).parent.parent / "slack_manifest.yml").read_text())
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert settings["interactivity"]["is_enabled"] and settings["socket_mode_enabled"]
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/newsbot"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "im:history"} <= scopes
    assert {"channels:history", "groups:history", "mpim:history"} <= scopes  # thread history
