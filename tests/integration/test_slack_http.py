"""The Slack bot over its real transports: signed Events API requests over HTTP to the running
server (and to `newsbot slack --http` itself), and Socket Mode over a WebSocket; the Web API is
the local fake. The real Bot answers from the sample articles."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bot.errors import SettingsError
from bot.slack import SlackDoor, WorkerPool, build_app, http_server, serve
from bot.slack_messages import PLACEHOLDER
from tests.conftest import (
    QATAR_QUESTION,
    REPO,
    SAMPLE_ARTICLE,
    free_port,
    stop,
    wait_until_listening,
)
from tests.fake_slack import APP_TOKEN, SECRET, TOKEN, event_body, quoted, signed_headers

pytestmark = pytest.mark.slow

ARTICLE_TEXT = SAMPLE_ARTICLE.read_text(encoding="utf-8")


class Served(NamedTuple):
    port: int
    door: SlackDoor


@pytest.fixture
def server(sample_bot, slack_config) -> Iterator[Served]:
    """build_app + http_server on 127.0.0.1, as serve(socket=False) runs them."""
    app, door = build_app(sample_bot, slack_config())
    httpd, listening = http_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    port = listening.getsockname()[1]
    yield Served(port, door)
    httpd.should_exit = True
    thread.join(30)
    door.shutdown(30)


def post(
    port: int, body: str, headers: dict[str, str], path: str = "/slack/events"
) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body.encode(), headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def send(port: int, body: dict[str, Any], **header_options: Any) -> tuple[int, str]:
    raw = json.dumps(body)
    return post(port, raw, signed_headers(raw, SECRET, **header_options))


def test_a_mention_over_http_is_answered_in_its_thread(server, fake_slack) -> None:
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    ts = body["event"]["ts"]

    status, _ = send(server.port, body)

    assert status == 200
    [reply] = fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", ts))
    placeholder = fake_slack.calls_to("chat.postMessage")[0].params
    assert (placeholder["thread_ts"], placeholder["text"]) == (ts, PLACEHOLDER)
    contexts = [b["elements"][0]["text"] for b in reply["blocks"] if b["type"] == "context"]
    assert contexts and all(quoted(text) in ARTICLE_TEXT for text in contexts)


def test_slacks_url_verification_handshake_is_answered(server) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = {"token": "legacy", "challenge": challenge, "type": "url_verification"}
    status, text = send(server.port, body)
    assert status == 200 and challenge in text


@pytest.mark.parametrize("problem", ["bad", "missing", "stale", "not a number"])
def test_bad_missing_or_stale_signatures_get_401_and_no_reply(
    server, fake_slack, problem: str
) -> None:
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    raw = json.dumps(body)
    headers = signed_headers(raw, SECRET)
    if problem == "bad":
        headers["x-slack-signature"] = "v0=" + "0" * 64
    elif problem == "missing":
        del headers["x-slack-signature"], headers["x-slack-request-timestamp"]
    elif problem == "stale":  # a captured request replayed 6 minutes later
        headers = signed_headers(raw, SECRET, timestamp=int(time.time()) - 6 * 60)
    else:
        headers["x-slack-request-timestamp"] = "1e10"

    status, _ = post(server.port, raw, headers)

    assert status == 401
    assert server.door.wait_idle(10)
    assert fake_slack.calls_to("chat.postMessage") == []


def test_a_retried_delivery_over_http_is_answered_once(server, fake_slack) -> None:
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    ts = body["event"]["ts"]
    statuses = [send(server.port, body, retry_num=n)[0] for n in (None, 1, 2)]

    assert statuses == [200, 200, 200]
    fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", ts))
    assert server.door.wait_idle(30)
    assert len(fake_slack.answers("C0GENERAL", ts)) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_the_endpoint_refuses_what_is_not_a_slack_event(server) -> None:
    port = server.port
    assert post(port, "{}", {}, path="/elsewhere")[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    connection.close()
    # a 2 MB body is refused from its Content-Length, before it is read
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 413")


def test_a_burst_of_events_is_acked_and_each_answered_exactly_once(server, fake_slack) -> None:
    """Issue 8's load test at CI size: 30 signed events, 10 at a time (bench/slack_load.py runs
    200 at 50). Every request gets its 200; every question gets one answer, no more."""
    bodies = [event_body(f"<@UBOT> {QATAR_QUESTION}", channel=f"C{i:04d}") for i in range(30)]
    with ThreadPoolExecutor(max_workers=10) as clients:
        statuses = list(clients.map(lambda body: send(server.port, body)[0], bodies))

    assert statuses == [200] * 30
    assert server.door.wait_idle(180)
    answered = Counter(
        (call.params["channel"], call.params["ts"])
        for call in fake_slack.calls_to("chat.update")
        if call.params.get("blocks")
    )
    placeholders = Counter(
        call.params["thread_ts"] for call in fake_slack.calls_to("chat.postMessage")
    )
    assert sorted(placeholders) == sorted(body["event"]["ts"] for body in bodies)
    assert set(placeholders.values()) == {1}
    assert len(answered) == 30 and set(answered.values()) == {1}


def test_socket_mode_acks_each_envelope_and_answers_once(
    sample_bot, slack_config, fake_slack
) -> None:
    settings = slack_config()
    app, door = build_app(sample_bot, settings, socket=True, executor=WorkerPool(2, 10))
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(app, settings.slack_app_token)
    handler.connect()
    try:
        fake_slack.wait_for(lambda: fake_slack.socket_connections)
        body = event_body(f"<@UBOT> {QATAR_QUESTION}", channel="C0SOCKET")
        first = fake_slack.push_socket_event(body)
        again = fake_slack.push_socket_event(body, retry_attempt=1)

        fake_slack.wait_for(lambda: len(fake_slack.socket_acks) >= 2)
        assert {ack["envelope_id"] for ack in fake_slack.socket_acks} == {first, again}
        ts = body["event"]["ts"]
        fake_slack.wait_for(lambda: fake_slack.answers("C0SOCKET", ts))
        assert door.wait_idle(30)
        assert len(fake_slack.answers("C0SOCKET", ts)) == 1
        opened = fake_slack.calls_to("apps.connections.open")
        assert opened and opened[0].token == APP_TOKEN
    finally:
        handler.close()
        door.shutdown(30)


def test_serve_names_the_missing_token(sample_bot) -> None:
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        serve(sample_bot, socket=True)


def slack_env(tmp_path: Path, fake_slack, **more: str) -> dict[str, str]:
    """The environment of a `newsbot slack` process, configured by env vars only."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSBOT_", "SLACK_"))},
        "NEWSBOT_CONFIG": "/nonexistent/newsbot-test-config.toml",
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": TOKEN,  # Slack's own variable names are accepted
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "HF_HUB_OFFLINE": "1",
        **more,
    }


def wait_for_text(path: Path, text: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in: {path.read_text()[-3000:]}")
        time.sleep(0.1)


def stopped(process: subprocess.Popen, log: Path, sig: int) -> str:
    """Send `sig`; the process must exit by itself (it is killed after 60 s) with status 0."""
    sent = time.monotonic()
    stop(process, sig, seconds=60)
    print(f"stopped by {signal.Signals(sig).name} in {time.monotonic() - sent:.2f} s")
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]  # Ctrl-C or SIGTERM is how it is stopped
    assert TOKEN not in output and SECRET not in output and APP_TOKEN not in output
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_newsbot_slack_http_serves_signed_events_and_stops(tmp_path: Path, fake_slack, sig) -> None:
    """The command people run: `newsbot slack --http --port N`, stopped as people stop it."""
    port = free_port()
    command = [sys.executable, "-m", "bot.cli", "slack", "--http", "--port", str(port)]
    log = tmp_path / "newsbot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=slack_env(tmp_path, fake_slack), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_until_listening(process, port, log, seconds=120)
            body = event_body("<@UBOT> What did Qatar say?")  # an empty store: a refusal
            assert send(port, body)[0] == 200
            ts = body["event"]["ts"]
            [reply] = fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", ts))
            assert "Not found in the articles" in reply["blocks"][0]["text"]["text"]
        finally:
            stopped(process, log, sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_newsbot_slack_socket_mode_answers_and_stops(tmp_path: Path, fake_slack, sig) -> None:
    command = [sys.executable, "-m", "bot.cli", "slack", "--socket"]
    log = tmp_path / "newsbot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=slack_env(tmp_path, fake_slack), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            fake_slack.wait_for(lambda: fake_slack.socket_connections, timeout=120)
            body = event_body("<@UBOT> What did Qatar say?", channel="C0SOCKET")
            fake_slack.push_socket_event(body)
            fake_slack.wait_for(lambda: fake_slack.answers("C0SOCKET", body["event"]["ts"]))
        finally:
            stopped(process, log, sig)


# A `newsbot slack --http` whose answers are slow, or never end ("stuck").
SLOW_SLACK = """
import sys, threading, time
from bot import Bot
from bot.slack import serve

bot = Bot.open()
stream = bot.stream

def slow(question, **options):
    print("answering:", question, flush=True)
    if question == "stuck":
        threading.Event().wait()
    time.sleep(1)
    yield from stream(question, **options)

bot.stream = slow
bot.warm()
serve(bot, socket=False, port=int(sys.argv[1]))
print("served", flush=True)
"""


@pytest.mark.parametrize("question", ["What did Qatar say?", "stuck"])
def test_a_stop_gives_answers_under_way_a_bounded_grace(
    tmp_path: Path, fake_slack, question: str
) -> None:
    """An answer under way at SIGTERM is still posted; one that never ends is abandoned after
    NEWSBOT_SLACK_SHUTDOWN_GRACE seconds, and the process exits all the same."""
    port = free_port()
    grace = "60" if question != "stuck" else "1"
    env = slack_env(tmp_path, fake_slack, NEWSBOT_SLACK_SHUTDOWN_GRACE=grace)
    log = tmp_path / "newsbot.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SLOW_SLACK, str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            wait_until_listening(process, port, log, seconds=120)
            body = event_body(f"<@UBOT> {question}")
            assert send(port, body)[0] == 200
            wait_for_text(log, f"answering: {question}", process)
        finally:
            output = stopped(process, log, signal.SIGTERM)
    assert "served" in output
    ts = body["event"]["ts"]
    answers = fake_slack.answers("C0GENERAL", ts)
    if question == "stuck":
        assert answers == [] and "abandoned" in output
        assert [m["text"] for m in fake_slack.replies_in("C0GENERAL", ts)] == [PLACEHOLDER]
    else:
        assert len(answers) == 1 and "abandoned" not in output
