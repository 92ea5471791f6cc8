"""The Slack front door: a slack-bolt app whose listeners acknowledge every event at once, call
`Bot.stream` in a bounded worker pool and post the Answer (docs/slack.md, "Code")."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket as sockets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from bot.errors import NewsbotError, SettingsError
from bot.models import Answer, Turn
from bot.settings import Settings
from bot.slack_messages import (
    APOLOGY,
    BUSY,
    CANNOT_POST,
    FEEDBACK_FILE,
    HELP,
    MAX_TEXT,
    NOT_ADMIN,
    PLACEHOLDER,
    EventGate,
    FeedbackLog,
    Request,
    _cut,
    answer_blocks,
    escape,
    read_request,
    shown_answer,
    thread_history,
    web_link,
)

if TYPE_CHECKING:
    from slack_bolt import Ack, App, BoltContext, Respond
    from slack_sdk import WebClient
    from starlette.applications import Starlette
    from uvicorn import Server

    from bot.core import Bot

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
STREAM_UPDATE_SECONDS = 1.0  # chat.update is rate limited (Tier 3), so partial text at most ~1/s
THREAD_FETCH_LIMIT = 200
# "busy" notices waiting to be sent (~1 kB each); beyond that they are dropped (and logged)
NOTICE_WORKERS, NOTICE_QUEUE = 2, 1000
MAX_REQUEST_BYTES = 1_000_000  # Slack's payloads are a few kB
_TOKEN = re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]+")


# -- secrets never reach the logs -----------------------------------------------------------------
class RedactSecrets(logging.Filter):
    """A log handler filter that replaces Slack tokens (xoxb-, xoxp-, xapp-, ...) and the given
    secrets in every record the handler writes: `handler.addFilter(RedactSecrets([secret]))`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # very short values would redact ordinary words; Slack's secrets are 32+ characters
        self._secrets = {secret for secret in secrets if secret and len(secret) >= 8}

    def redact(self, text: str) -> str:
        text = _TOKEN.sub("[redacted]", text)
        for secret in self._secrets:
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


def slack_settings(settings: Settings, *, socket: bool) -> Settings:
    """Fill the Slack secrets from Slack's conventional env vars when NEWSBOT_SLACK_* are unset,
    and check that the ones this transport needs are there."""
    where = {  # the setting, and where the Slack app's page shows its value
        "slack_bot_token": "OAuth & Permissions > Bot User OAuth Token",
        "slack_app_token": "Basic Information > App-Level Tokens (scope connections:write)",
        "slack_signing_secret": "Basic Information > App Credentials > Signing Secret",
    }
    # Slack's own names: SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET
    update = {
        name: os.environ[name.upper()]
        for name in where
        if not getattr(settings, name) and os.environ.get(name.upper())
    }
    settings = settings.model_copy(update=update)
    for name in ["slack_bot_token", "slack_app_token" if socket else "slack_signing_secret"]:
        if not getattr(settings, name):
            raise SettingsError(
                f"the Slack {name.removeprefix('slack_').replace('_', ' ')} is not set: "
                f"set NEWSBOT_{name.upper()} (or {name.upper()})",
                hint=f"copy it from your Slack app's page, {where[name]}; see docs/slack.md",
            )
    return settings


class WorkerPool:
    """Threads with a bounded queue: `try_submit` returns False instead of queueing more than
    `workers + queue` jobs, so a burst of questions cannot exhaust memory or block acks. The
    threads are daemons: `shutdown(grace)` bounds how long a stop waits for jobs under way."""

    def __init__(self, workers: int, queue: int, *, name: str = "newsbot-slack") -> None:
        self.capacity = workers + queue
        self._jobs: SimpleQueue[Callable[[], object] | None] = SimpleQueue()
        self.in_flight = 0  # jobs queued or running
        self._closed = False
        self._idle = threading.Condition()
        self._workers = workers
        for n in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True).start()

    def try_submit(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> bool:
        with self._idle:
            if self._closed or self.in_flight >= self.capacity:
                return False
            self.in_flight += 1
        self._jobs.put(partial(fn, *args, **kwargs))
        return True

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:  # jobs report their own failures; this is the last resort
                log.error("Slack job failed: %s: %s", type(exc).__name__, exc)
            finally:
                with self._idle:
                    self.in_flight -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout=timeout)

    def shutdown(self, grace: float | None = None) -> bool:
        """Take no more jobs; wait up to `grace` seconds (None: no limit); True if all finished."""
        with self._idle:
            self._closed = True
        finished = self.wait_idle(grace)
        for _ in range(self._workers):
            self._jobs.put(None)
        return finished


class SlackDoor:
    """What the listeners do: turn requests into Bot calls and post what it says. One per app;
    `register` makes it. Answers and ingests run in `pool`; short notices in `notices`."""

    def __init__(
        self,
        bot: Bot,
        settings: Settings,
        *,
        executor: WorkerPool | None = None,
        update_interval: float = STREAM_UPDATE_SECONDS,
    ) -> None:
        self.bot = bot
        self.admins = frozenset(settings.slack_admins)
        self.gate = EventGate(settings.slack_allowed_teams, settings.slack_allowed_channels)
        self.feedback = FeedbackLog(settings.data_dir / FEEDBACK_FILE)
        self.pool = executor or WorkerPool(settings.slack_workers, settings.slack_queue)
        self.notices = WorkerPool(NOTICE_WORKERS, NOTICE_QUEUE, name="newsbot-slack-notice")
        self.update_interval = update_interval

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every answer and notice is sent; False if `timeout` passed first."""
        return self.pool.wait_idle(timeout) and self.notices.wait_idle(timeout)

    def shutdown(self, grace: float | None = None) -> bool:
        """Take no more work; give what is under way up to `grace` seconds. True if it ended."""
        started = time.monotonic()
        finished = self.pool.shutdown(grace)
        left = None if grace is None else max(0.0, grace - (time.monotonic() - started))
        return self.notices.shutdown(left) and finished

    def submit(self, client: WebClient, request: Request, respond: Respond | None = None) -> bool:
        """Queue the work a request asks for; False when the queue was full and the person was
        told (or, for a command, is to be told) to ask again."""
        if request.action == "ingest" and request.user not in self.admins:
            log.info("Slack ingest by %s refused (not in slack_admins)", request.user)
            self.say(client, request, NOT_ADMIN, respond)
            return True
        job = self.ingest if request.action == "ingest" else self.answer
        if self.pool.try_submit(job, client, request, respond):
            return True
        log.warning("Slack worker queue full (%d jobs); told the user", self.pool.capacity)
        if respond is None:
            self.say(client, request, BUSY)
        return False

    def say(
        self, client: WebClient, request: Request, text: str, respond: Respond | None = None
    ) -> None:
        """A short notice in the request's thread (or, for a command, to its caller only)."""
        send = partial(respond, text=text) if respond else partial(self.post, client, request, text)
        if not self.notices.try_submit(send):
            log.warning("Slack notice queue full; a notice was dropped")

    def post(self, client: WebClient, request: Request, text: str) -> None:
        try:
            client.chat_postMessage(channel=request.channel, thread_ts=request.thread_ts, text=text)
        except Exception as exc:
            log.error(
                "Slack message to %s failed: %s: %s", request.channel, type(exc).__name__, exc
            )

    # -- answering (in the worker pool) -------------------------------------------------------
    def answer(self, client: WebClient, request: Request, respond: Respond | None = None) -> None:
        if request.action == "help":
            self.post(client, request, HELP)
            return
        if request.thread_ts is None:  # a /newsbot command: its question opens the thread
            try:
                parent = client.chat_postMessage(
                    channel=request.channel, text=f"<@{request.user}> asked: {escape(request.text)}"
                )["ts"]
            except Exception as exc:
                log.info("Slack /newsbot in %s cannot post: %s", request.channel, exc)
                if respond is not None:
                    respond(text=CANNOT_POST)
                return
            request = replace(request, thread_ts=parent, asked_ts=parent)
        started = time.perf_counter()
        placeholder: str | None = None
        channel = request.channel
        try:
            placeholder = client.chat_postMessage(
                channel=channel, thread_ts=request.thread_ts, text=PLACEHOLDER
            )["ts"]
            history = self.history(client, request)
            answer = self._stream(client, request, placeholder, history)
            # `text` is what notifications, screen readers and the thread's history read
            text, blocks = _cut(escape(answer.text), MAX_TEXT), answer_blocks(answer)
            client.chat_update(channel=channel, ts=placeholder, text=text, blocks=blocks)
            self.feedback.remember((channel, str(placeholder)), answer)
            log.info(
                "Slack answer in %s (%s, %d citations, %d history turns) in %.2fs",
                channel,
                "refused" if answer.refused else "answered",
                len(answer.citations),
                len(history),
                time.perf_counter() - started,
            )
        except Exception as exc:
            log.error("Slack answer in %s failed: %s: %s", channel, type(exc).__name__, exc)
            if not placeholder:
                self.post(client, request, APOLOGY)
                return
            try:
                client.chat_update(channel=channel, ts=placeholder, text=APOLOGY, blocks=[])
            except Exception as again:
                log.error("Slack apology in %s failed too: %s", channel, type(again).__name__)

    def history(self, client: WebClient, request: Request) -> list[Turn]:
        if not request.follow_up:
            return []
        replies = client.conversations_replies(
            channel=request.channel, ts=request.thread_ts or "", limit=THREAD_FETCH_LIMIT
        )
        return thread_history(
            replies.get("messages") or [],
            before_ts=request.asked_ts,
            bot_user_id=request.bot_user_id,
            bot_id=request.bot_id,
        )

    def _stream(
        self, client: WebClient, request: Request, placeholder: str, history: list[Turn]
    ) -> Answer:
        """The Answer; while it is written, the placeholder shows the text so far (updated at most
        every `update_interval` seconds)."""
        so_far: list[str] = []
        last_update = time.monotonic()
        for item in self.bot.stream(request.text, history=history or None):
            if isinstance(item, Answer):
                return item
            so_far.append(item)
            now = time.monotonic()
            if now - last_update >= self.update_interval:
                last_update = now
                partial_text = _cut(escape("".join(so_far)), MAX_TEXT - 2) + " …"
                try:
                    client.chat_update(channel=request.channel, ts=placeholder, text=partial_text)
                except Exception as exc:  # a skipped partial update is harmless
                    log.info("Slack partial update skipped: %s: %s", type(exc).__name__, exc)
        raise NewsbotError("the answerer finished without an answer")

    def ingest(self, client: WebClient, request: Request, respond: Respond | None = None) -> None:
        """Add one web page to the store (admins only: `submit` checked); report back."""
        text = _cut(self._ingested(request), MAX_TEXT)
        if respond is not None:
            respond(text=text)
        else:
            self.post(client, request, text)

    def _ingested(self, request: Request) -> str:
        url = request.text
        if not web_link(url):
            return "I can only add http:// or https:// links."
        try:
            report = self.bot.ingest([url])
        except Exception as exc:
            log.error("Slack ingest of %s failed: %s: %s", url, type(exc).__name__, exc)
            return APOLOGY
        if report.failures:
            return f"Could not add {escape(url)}: {escape(report.failures[0].message)}"
        log.info("Slack ingest of %s by %s: %s", url, request.user, report.to_dict())
        return (
            f"Added {escape(url)}: {report.new} new, {report.updated} updated, "
            f"{report.unchanged + report.duplicates} already known ({report.chunks} chunks)."
        )

    def thank(self, client: WebClient, channel: str, user: str, thread_ts: str | None) -> None:
        try:
            client.chat_postEphemeral(
                channel=channel, user=user, thread_ts=thread_ts, text="Thanks for the feedback!"
            )
        except Exception as exc:
            log.info("Slack thank-you skipped: %s: %s", type(exc).__name__, exc)


def register(app: App, bot: Bot, settings: Settings, **options: Any) -> SlackDoor:
    """Add newsbot's listeners to a Bolt app: mentions, direct messages, /newsbot, feedback. They
    only acknowledge and queue; the SlackDoor returned (`options`: its keywords) does the work."""
    door = SlackDoor(bot, settings, **options)

    @app.event("app_mention")
    @app.event("message")  # direct messages (the gate drops the rest)
    def on_message(
        ack: Ack, body: dict, event: dict, context: BoltContext, client: WebClient
    ) -> None:
        ack()
        request = door.gate.admit(
            body,
            event,
            bot_user_id=context.bot_user_id,
            bot_id=context.bot_id,
            team=context.team_id,
            direct=event.get("type") == "message",
        )
        if request is not None:
            door.submit(client, request)

    @app.command("/newsbot")
    def on_command(
        ack: Ack, command: dict, context: BoltContext, client: WebClient, respond: Respond
    ) -> None:
        channel, user = command.get("channel_id") or "", command.get("user_id") or ""
        if not door.gate.allowed(command.get("team_id") or "", channel, command.get("trigger_id")):
            ack(text="newsbot is not enabled in this channel.")
            return
        action, text = read_request(command.get("text") or "", bot_user_id=context.bot_user_id)
        request = Request(action, text, user, channel, None, bot_user_id=context.bot_user_id)
        if action == "help":
            ack(text=HELP)  # seen only by the person who typed the command
        elif action == "ingest" and user not in door.admins:
            ack(text=NOT_ADMIN)
        elif door.submit(client, request, respond):
            ack()
        else:
            ack(text=BUSY)

    @app.action(re.compile("^newsbot_feedback_(up|down)$"))
    def on_feedback(ack: Ack, body: dict, action: dict, client: WebClient) -> None:
        ack()
        channel = (body.get("channel") or {}).get("id", "")
        if not door.gate.allowed((body.get("team") or {}).get("id", ""), channel, "vote"):
            return
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts", "")
        user = (body.get("user") or {}).get("id", "")
        vote = action["action_id"].removeprefix("newsbot_feedback_")  # up or down: the pattern
        door.feedback.vote((channel, ts), vote, user, shown_answer(message, action.get("value")))
        if channel and user:
            door.notices.try_submit(door.thank, client, channel, user, message.get("thread_ts"))

    @app.error
    def on_error(error: Exception, body: dict) -> None:
        # one line, no traceback: the traceback could carry request data into the logs
        failed_on = (body or {}).get("event_id") or (body or {}).get("type")
        log.error("Slack listener failed on %s: %s: %s", failed_on, type(error).__name__, error)

    return door


def build_app(
    bot: Bot,
    settings: Settings,
    *,
    client: WebClient | None = None,
    executor: WorkerPool | None = None,
    socket: bool = False,
) -> tuple[App, SlackDoor]:
    """A Bolt app with newsbot's listeners and their SlackDoor; `process_before_response=True`:
    they ack and queue (no network) in the request's thread, never waiting for an executor."""
    from slack_bolt import App
    from slack_bolt.error import BoltError
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    settings = slack_settings(settings, socket=socket)
    if client is None:
        client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
        client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret or "unused-in-socket-mode",
            process_before_response=True,
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
    return app, register(app, bot, settings, executor=executor)


def http_app(app: App) -> Starlette:
    """The Events API as an ASGI app: POST /slack/events (slack-bolt's Starlette adapter), GET
    /health for load balancers; bodies over 1 MB refused by their Content-Length, unread."""
    from slack_bolt.adapter.starlette import SlackRequestHandler
    from starlette.applications import Starlette
    from starlette.requests import Request as HttpRequest
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    handler = SlackRequestHandler(app)

    async def events(request: HttpRequest) -> Response:
        length = request.headers.get("content-length") or ""
        if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
            return Response(status_code=413 if length.isdigit() else 411)
        if not (request.headers.get("x-slack-request-timestamp") or "").isdigit():
            return Response(status_code=401)  # slack_sdk's verifier would raise on it (-> 500)
        return await handler.handle(request)

    async def health(request: HttpRequest) -> Response:
        return PlainTextResponse("ok")

    routes = [Route(EVENTS_PATH, events, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes)


def http_server(
    app: App, host: str = "127.0.0.1", port: int = 3000
) -> tuple[Server, sockets.socket]:
    """A uvicorn server for `app` and the socket it will serve, bound now (port 0: any free
    one), so a port in use is an error here rather than in the server's thread."""
    import uvicorn

    try:
        listening = sockets.create_server((host, port), backlog=128)
    except OSError as exc:
        raise SettingsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop what is using it",
        ) from None
    config = uvicorn.Config(
        http_app(app), log_config=None, access_log=False, lifespan="off", timeout_keep_alive=10
    )
    return uvicorn.Server(config), listening


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C or SIGTERM (main thread only). The default handlers
    come back at once, so a second Ctrl-C interrupts the grace period."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(number: int, frame: object) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("%s: stopping", signal.Signals(number).name)
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(bot: Bot, *, socket: bool, port: int = 3000, host: str = "127.0.0.1") -> None:
    """Run the Slack bot (Socket Mode, or HTTP on host:port) until Ctrl-C or SIGTERM, then give
    answers under way settings.slack_shutdown_grace seconds. Call `bot.warm()` first, or the first
    question waits for the model and the lexical index (about a minute at 100k chunks)."""
    settings = slack_settings(bot.settings, socket=socket)
    grace = settings.slack_shutdown_grace
    app, door = build_app(bot, settings, socket=socket)
    with stop_signals() as stop:
        if socket:  # Slack pushes events over a WebSocket; nothing needs to be reachable
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            handler = SocketModeHandler(app, settings.slack_app_token)
            log.info("newsbot Slack app connecting over Socket Mode to %s", settings.slack_api_url)
            handler.connect()
            stop.wait()
            handler.close()
        else:
            server, listening = http_server(app, host, port)
            thread = threading.Thread(
                target=server.run, kwargs={"sockets": [listening]}, name="newsbot-http"
            )
            thread.start()
            log.info("newsbot Slack app listening on http://%s:%d%s", host, port, EVENTS_PATH)
            while thread.is_alive() and not stop.wait(0.5):
                pass
            server.should_exit = True  # it stops taking requests and lets those in flight end
            thread.join(grace)
        log.info("newsbot Slack app stopping; finishing the answers under way")
        if not door.shutdown(grace):
            log.warning("answers still under way after %.0f s were abandoned", grace)
