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
from typing import Any

import pytest

from bot.errors import SettingsError
from bot.slack import (
    PLACEHOLDER,
    SlackHTTPServer,
    WorkerPool,
    build_app,
    make_server,
    responder_of,
    serve,
    socket_mode_handler,
)
from tests.conftest import QATAR_QUESTION, SAMPLE_ARTICLE, free_port, stop, wait_until_listening
from tests.fake_slack import APP_TOKEN, SECRET, TOKEN, event_body, quoted, signed_headers

pytestmark = pytest.mark.slow

ARTICLE_TEXT = SAMPLE_ARTICLE.read_text(encoding="utf-8")


@pytest.fixture
def server(sample_bot, slack_config) -> Iterator[SlackHTTPServer]:
    """build_app + make_server on 127.0.0.1, as serve(socket=False) runs them."""
    app = build_app(sample_bot, slack_config())
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    responder_of(app).pool.shutdown()


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


def port_of(httpd: SlackHTTPServer) -> int:
    return int(httpd.server_address[1])


def test_a_mention_over_http_is_answered_in_its_thread(server, fake_slack) -> None:
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    ts = body["event"]["ts"]

    status, _ = send(port_of(server), body)

    assert status == 200
    [reply] = fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", ts))
    placeholder = fake_slack.calls_to("chat.postMessage")[0].params
    assert (placeholder["thread_ts"], placeholder["text"]) == (ts, PLACEHOLDER)
    contexts = [b["elements"][0]["text"] for b in reply["blocks"] if b["type"] == "context"]
    assert contexts and all(quoted(text) in ARTICLE_TEXT for text in contexts)


def test_slacks_url_verification_handshake_is_answered(server) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = {"token": "legacy", "challenge": challenge, "type": "url_verification"}
    status, text = send(port_of(server), body)
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

    status, _ = post(port_of(server), raw, headers)

    assert status == 401
    assert responder_of(server.app).pool.wait_idle(10)
    assert fake_slack.calls_to("chat.postMessage") == []


def test_a_retried_delivery_over_http_is_answered_once(server, fake_slack) -> None:
    body = event_body(f"<@UBOT> {QATAR_QUESTION}")
    ts = body["event"]["ts"]
    statuses = [send(port_of(server), body, retry_num=n)[0] for n in (None, 1, 2)]

    assert statuses == [200, 200, 200]
    fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", ts))
    assert responder_of(server.app).pool.wait_idle(30)
    assert len(fake_slack.answers("C0GENERAL", ts)) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_the_endpoint_refuses_what_is_not_a_slack_event(server) -> None:
    port = port_of(server)
    assert post(port, "{}", {}, path="/elsewhere")[0] == 404
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200
    connection.close()
    # a 2 MB body is refused from its Content-Length, before it is read
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.0 413")


def test_a_burst_of_events_is_acked_and_each_answered_exactly_once(server, fake_slack) -> None:
    """Issue 8's load test at CI size: 30 signed events, 10 at a time (bench/slack_load.py runs
    200 at 50). Every request gets its 200; every question gets one answer, no more."""
    bodies = [event_body(f"<@UBOT> {QATAR_QUESTION}", channel=f"C{i:04d}") for i in range(30)]
    with ThreadPoolExecutor(max_workers=10) as clients:
        statuses = list(clients.map(lambda body: send(port_of(server), body)[0], bodies))

    assert statuses == [200] * 30
    assert responder_of(server.app).pool.wait_idle(180)
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
    app = build_app(sample_bot, settings, socket=True, executor=WorkerPool(2, 10))
    handler = socket_mode_handler(app, settings)
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
        assert responder_of(app).pool.wait_idle(30)
        assert len(fake_slack.answers("C0SOCKET", ts)) == 1
        opened = fake_slack.calls_to("apps.connections.open")
        assert opened and opened[0].token == APP_TOKEN
    finally:
        handler.close()
        responder_of(app).pool.shutdown()


def test_serve_names_the_missing_token(sample_bot) -> None:
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN"):
        serve(sample_bot, socket=True)


def test_newsbot_slack_http_serves_signed_events(tmp_path: Path, fake_slack) -> None:
    """The command people run: `newsbot slack --http --port N`, configured by env vars only."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NEWSBOT_", "SLACK_"))},
        "NEWSBOT_CONFIG": "/nonexistent/newsbot-test-config.toml",
        "NEWSBOT_DATA_DIR": str(tmp_path / "data"),
        "NEWSBOT_SLACK_API_URL": fake_slack.api_url,
        "SLACK_BOT_TOKEN": TOKEN,  # Slack's own variable names are accepted
        "SLACK_SIGNING_SECRET": SECRET,
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "bot.cli", "slack", "--http", "--port", str(port)]
    log = open(tmp_path / "newsbot.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_listening(process, port, tmp_path / "newsbot.log", seconds=120)
        body = event_body("<@UBOT> What did Qatar say?")  # an empty store: a refusal
        assert send(port, body)[0] == 200
        [reply] = fake_slack.wait_for(lambda: fake_slack.answers("C0GENERAL", body["event"]["ts"]))
        assert "Not found in the articles" in reply["blocks"][0]["text"]["text"]
    finally:
        stop(process, signal.SIGINT, seconds=30)
        log.close()
    output = (tmp_path / "newsbot.log").read_text()
    assert process.returncode == 0, output[-3000:]  # Ctrl-C is a normal way to stop it
    assert TOKEN not in output and SECRET not in output and "Traceback" not in output
