"""A fake Slack Web API on 127.0.0.1 for tests: it answers the methods newsbot calls, keeps the
messages it was sent (so conversations.replies returns the thread as Slack would), and records
every call with its parameters for assertions.

    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        ...
        slack.wait_for(lambda: slack.calls_to("chat.update"))
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# The test app's credentials: tests check that they never show up in logs or in Slack.
TOKEN = "xoxb-1111-2222-newsbotTESTtoken0123456789"
APP_TOKEN = "xapp-1-A0NEWSBOT-3333-newsbotTESTapptoken"
SECRET = "8f14e45fceea167a5a36dedd4bea2543newsbot"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str | None


@dataclass
class FakeSlack:
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    team_id: str = "T0001"
    calls: list[Call] = field(default_factory=list)
    # channel -> thread_ts -> messages of that thread (the parent included), oldest first
    threads: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    # method -> error code returned (ok: false) by every call to it
    errors: dict[str, str] = field(default_factory=dict)
    # method -> seconds to wait before answering (a slow Slack)
    delays: dict[str, float] = field(default_factory=dict)

    # Socket Mode: the acks the app sent back ({"envelope_id": ...}), and the open connections
    socket_acks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._sockets: list[_WebSocketPeer] = []
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if (self.headers.get("Upgrade") or "").lower() == "websocket":
                    fake._websocket(self)
                else:
                    fake._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        assert self._server, "FakeSlack is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    # -- what tests look at --------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def replies_in(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread as they read now (after updates)."""
        with self._lock:
            thread = self.threads.get(channel, {}).get(thread_ts, [])
            return [dict(m) for m in thread if m.get("bot_id") == self.bot_id]

    def answers(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's finished answers in a thread (its messages with Block Kit blocks)."""
        return [m for m in self.replies_in(channel, thread_ts) if m.get("blocks")]

    def wait_for(self, condition: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Wait until `condition()` is truthy (re-checked on every call received); return it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; calls so far: {self.methods()}")
                self._lock.wait(min(remaining, 0.5))

    def methods(self) -> list[str]:
        with self._lock:
            return [call.method for call in self.calls]

    @property
    def socket_connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    def push_socket_event(self, body: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Deliver an Events API payload over Socket Mode as Slack does; returns the envelope id."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": body,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        with self._lock:
            peers = list(self._sockets)
        assert peers, "no Socket Mode connection is open"
        for peer in peers:
            peer.send_text(json.dumps(envelope))
        return envelope_id

    def add_message(self, channel: str, message: dict[str, Any]) -> None:
        """Put a person's message into a thread (as Slack would have it before the event)."""
        thread_ts = message.get("thread_ts") or message["ts"]
        with self._lock:
            self.threads.setdefault(channel, {}).setdefault(thread_ts, []).append(dict(message))

    # -- the API --------------------------------------------------------------------------------
    def _websocket(self, request: BaseHTTPRequestHandler) -> None:
        """A minimal RFC 6455 server for Socket Mode: hello, envelopes out, acks and pings in."""
        key = request.headers.get("Sec-WebSocket-Key") or ""
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        request.connection.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        peer = _WebSocketPeer(request)
        with self._lock:
            self._sockets.append(peer)
            self._lock.notify_all()
        peer.send_text(json.dumps({"type": "hello", "num_connections": 1}))
        try:
            while True:
                opcode, payload = peer.receive()
                if opcode == 0x1:
                    with self._lock:
                        self.socket_acks.append(json.loads(payload))
                        self._lock.notify_all()
                elif opcode == 0x9:
                    peer.send(0xA, payload)
                elif opcode == 0x8:
                    peer.send(0x8, payload[:2])
                    break
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            with self._lock:
                self._sockets.remove(peer)
                self._lock.notify_all()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        method = url.path.rstrip("/").rsplit("/", 1)[-1]
        params: dict[str, Any] = dict(parse_qsl(url.query))
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length).decode("utf-8") if length else ""
        if raw:
            if "json" in (request.headers.get("Content-Type") or ""):
                params.update(json.loads(raw))
            else:
                params.update(parse_qsl(raw))
        for key in ("blocks", "attachments"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        auth = request.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ") or params.get("token")
        if self.delays.get(method):
            time.sleep(self.delays[method])
        with self._lock:
            self.calls.append(Call(method, params, token))
            if method in self.errors:
                body: dict[str, Any] = {"ok": False, "error": self.errors[method]}
            else:
                body = self._answer(method, {**params, "_token": token})
            self._lock.notify_all()
        data = json.dumps(body).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel", "")
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://newsbot-test.slack.com/",
                "team": "newsbot test",
                "user": "newsbot",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            ts = message_ts()
            message = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
                "text": params.get("text", ""),
                "blocks": params.get("blocks") or [],
                "ts": ts,
            }
            thread_ts = params.get("thread_ts")
            if thread_ts:
                message["thread_ts"] = thread_ts
            self.threads.setdefault(channel, {}).setdefault(thread_ts or ts, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            for thread in self.threads.get(channel, {}).values():
                for message in thread:
                    if message["ts"] == params.get("ts"):
                        message["text"] = params.get("text", message["text"])
                        if "blocks" in params:
                            message["blocks"] = params["blocks"]
                        return {"ok": True, "channel": channel, "ts": message["ts"]}
            return {"ok": False, "error": "message_not_found"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": message_ts()}
        if method == "conversations.replies":
            replies = self.threads.get(channel, {}).get(params.get("ts", ""))
            if replies is None:
                return {"ok": False, "error": "thread_not_found"}
            return {"ok": True, "messages": [dict(m) for m in replies], "has_more": False}
        if method == "reactions.add":
            return {"ok": True}
        if method == "apps.connections.open":
            if not str(params.get("_token", "")).startswith("xapp-"):
                return {"ok": False, "error": "not_allowed_token_type"}
            assert self._server
            port = self._server.server_address[1]
            return {"ok": True, "url": f"ws://127.0.0.1:{port}/link/?ticket={uuid.uuid4()}"}
        return {"ok": False, "error": "unknown_method"}


_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _WebSocketPeer:
    def __init__(self, request: BaseHTTPRequestHandler) -> None:
        self._reader = request.rfile
        self._socket = request.connection
        self._send_lock = threading.Lock()

    def _read(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) < size:
            raise ConnectionError("the client closed the connection")
        return data

    def receive(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(length)))
        return first & 0x0F, payload

    def send(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._send_lock:
            self._socket.sendall(header + payload)

    def send_text(self, text: str) -> None:
        self.send(0x1, text.encode("utf-8"))


def quoted(context_text: str) -> str:
    """The quoted sentence of a citation as the bot rendered it in a context block, unescaped."""
    quote = context_text.split("“", 1)[1].rsplit("”", 1)[0]
    return quote.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# -- what Slack sends us ------------------------------------------------------------------------
_event_ids = itertools.count(1)
_message_ts = itertools.count(1)
_message_ts_lock = threading.Lock()


def message_ts() -> str:
    """A fresh message timestamp, later than every one before (people's and the bot's alike)."""
    with _message_ts_lock:
        return f"{1_700_000_000 + next(_message_ts)}.000100"


def event_body(
    text: str,
    *,
    event_type: str = "app_mention",
    user: str | None = "UALICE",
    channel: str = "C0GENERAL",
    channel_type: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = "T0001",
    event_id: str | None = None,
    **event_fields: Any,
) -> dict[str, Any]:
    """An Events API envelope (event_callback) as Slack posts it."""
    event: dict[str, Any] = {
        "type": event_type,
        "text": text,
        "channel": channel,
        "ts": ts or message_ts(),
        "event_ts": ts or message_ts(),
        "team": team_id,
    }
    if user is not None:
        event["user"] = user
    if channel_type:
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(event_fields)
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": "A0NEWSBOT",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {"team_id": team_id, "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
    }


def signed_headers(
    body: str,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """The headers Slack sends: a v0 HMAC-SHA256 signature over `v0:{timestamp}:{body}`."""
    from slack_sdk.signature import SignatureVerifier

    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    headers: dict[str, Any] = {
        "content-type": content_type,
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": str(signature),
    }
    if retry_num is not None:
        headers["x-slack-retry-num"] = str(retry_num)
        headers["x-slack-retry-reason"] = "http_timeout"
    return headers
