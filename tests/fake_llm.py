"""Fake LLM servers on 127.0.0.1 for tests: the OpenAI chat completions API (what llama-server,
vLLM, LM Studio and hosted OpenAI-compatible APIs speak) and Ollama's /api/chat, each answering
with scripted replies, plain or streamed, so that the real langchain-openai and langchain-ollama
clients are tested end to end, failures included.

    with FakeLLM() as server:
        server.script(Script("Al Thani called it positive [3]."), Script(status=500))
        settings = load_settings(llm="openai:fake", llm_base_url=server.openai_url, ...)
        ...
        server.requests[0]["messages"]

Each request takes the next script; the last one is reused once the others are used up.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-model"


@dataclass(frozen=True)
class Script:
    """One scripted response."""

    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Retry-After": "0"}
    delay: float = 0.0  # seconds before the response starts (a slow or hung server)
    break_after: int | None = None  # streamed: drop the connection after this many pieces
    piece_delay: float = 0.001  # seconds between streamed pieces (a model writing)
    usage: tuple[int, int] | None = (812, 41)  # prompt and completion tokens reported


def pieces(text: str) -> list[str]:
    """The text in word-sized pieces, as a model streams it (" [3]." as " [" and "3].")."""
    found: list[str] = []
    for word in re.findall(r"\s*\S+|\s+", text):
        cut = word.find("[")
        found += [word[: cut + 1], word[cut + 1 :]] if cut >= 0 else [word]
    return [piece for piece in found if piece]


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def text_of(self, role: str) -> str:
        return "\n".join(
            str(message.get("content") or "")
            for message in self.messages
            if message.get("role") == role
        )


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._scripts: list[Script] = [Script("The articles don't say.")]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- set-up ----------------------------------------------------------------------------
    def script(self, *scripts: Script) -> FakeLLM:
        with self._lock:
            self._scripts = list(scripts)
        return self

    def _next(self) -> Script:
        with self._lock:
            return self._scripts.pop(0) if len(self._scripts) > 1 else self._scripts[0]

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ollama_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, provider: str) -> str:
        return self.openai_url if provider == "openai" else self.ollama_url

    def __enter__(self) -> FakeLLM:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # shutdown() waits up to one poll interval (0.5 s by default): once per test.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # a delayed response stops waiting
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # streams are chunked, so a dropped one is seen as broken
    server_fake: FakeLLM

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake = self.server_fake
        with fake._lock:
            fake.requests.append(Request(self.path, body, dict(self.headers.items())))
        script = fake._next()
        if script.delay and fake._stopping.wait(script.delay):
            return
        if self.path.endswith("/chat/completions"):
            self._openai(body, script)
        elif self.path == "/api/chat":
            self._ollama(body, script)
        else:
            self._json(404, {"error": f"no such path {self.path}"})

    # -- plumbing ----------------------------------------------------------------------------
    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, lines: list[bytes], script: Script) -> None:
        for number, line in enumerate(lines):
            if script.break_after is not None and number >= script.break_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)  # no terminating chunk: the client sees it cut
                return
            self._chunk(line)
            time.sleep(script.piece_delay)
        self.wfile.write(b"0\r\n\r\n")

    # -- OpenAI: POST /v1/chat/completions -------------------------------------------------
    def _openai(self, body: dict[str, Any], script: Script) -> None:
        if script.status != 200:
            error = {"message": f"scripted failure {script.status}", "type": "server_error"}
            self._json(script.status, {"error": error}, script.headers)
            return
        created = int(time.time())
        usage = None
        if script.usage:
            prompt, completion = script.usage
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if not body.get("stream"):
            message = {"role": "assistant", "content": script.text}
            self._json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": body.get("model", MODEL),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )
            return

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", MODEL),
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        lines = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
        lines += [
            event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            for piece in pieces(script.text)
        ]
        lines.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            lines.append(event([], usage=usage))
        lines.append(b"data: [DONE]\n\n")
        self._start_stream("text/event-stream")
        self._stream(lines, script)

    # -- Ollama: POST /api/chat ----------------------------------------------------------------
    def _ollama(self, body: dict[str, Any], script: Script) -> None:
        if script.status != 200:
            self._json(script.status, {"error": f"scripted failure {script.status}"})
            return
        model = body.get("model", MODEL)
        stamp = "2024-02-07T12:00:00Z"
        done: dict[str, Any] = {
            "model": model,
            "created_at": stamp,
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_200_000_000,
            "load_duration": 1_000_000,
            "eval_duration": 900_000_000,
        }
        if script.usage:
            done["prompt_eval_count"], done["eval_count"] = script.usage
        if body.get("stream") is False:
            message = {"role": "assistant", "content": script.text}
            self._json(200, {**done, "message": message})
            return
        lines = [
            json.dumps(
                {
                    "model": model,
                    "created_at": stamp,
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            ).encode()
            + b"\n"
            for piece in pieces(script.text)
        ]
        lines.append(
            json.dumps({**done, "message": {"role": "assistant", "content": ""}}).encode() + b"\n"
        )
        self._start_stream("application/x-ndjson")
        self._stream(lines, script)
