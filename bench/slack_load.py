"""Slack load: a burst of signed Events API requests against the HTTP endpoint (issue 8, item 6).

    .venv/bin/python bench/slack_load.py [--events 200] [--concurrency 50] [--workers 4]
                                         [--queue 200] [--json-out FILE]

Everything runs on 127.0.0.1 in this process: the fake Slack Web API (tests/fake_slack.py), the
bot's HTTP server (bot.slack.http_server, as `newsbot slack --http` runs it) and the real Bot over
the sample articles. `--events` mentions, each in its own channel, are sent `--concurrency` at a
time; the answers are then awaited. Printed:

- ack latency (request sent -> HTTP response) p50 / p95 / max, and how many took over Slack's 3 s;
- the same for a baseline burst of url_verification requests (signed, no answering work) at the
  same concurrency, measured first in the same run, and the ratio of the two;
- answered (exactly one answer in the question's thread), answered twice (must be 0), told "busy"
  (the worker queue was full), and lost (neither; must be 0);
- resident memory before the burst, its peak during it, and after; the most jobs ever queued.

`--queue` defaults to 200 so that every event of the burst can wait for a worker (issue 8 asks
for each question answered exactly once); with the settings' default of 100 the overflow is told
"busy" instead, which is the run to compare against. Figures are for the machine they ran on
(2 vCPUs shared with other work are noisy).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_slack import FakeSlack, event_body, signed_headers  # noqa: E402

TOKEN = "xoxb-0000-0000-benchmarkTOKEN0000000000"
SECRET = "0123456789abcdef0123456789abcdefbench"
QUESTION = "What did Qatar say about Hamas's response?"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def post(port: int, body: dict[str, Any]) -> tuple[int, float]:
    raw = json.dumps(body)
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/slack/events", raw.encode(), signed_headers(raw, SECRET))
        status = connection.getresponse().status
    finally:
        connection.close()
    return status, time.perf_counter() - started


def burst(port: int, bodies: list[dict[str, Any]], concurrency: int) -> list[tuple[int, float]]:
    with ThreadPoolExecutor(max_workers=concurrency) as clients:
        return list(clients.map(lambda body: post(port, body), bodies))


class MemoryWatch:
    """Samples this process's resident memory every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def describe(name: str, results: list[tuple[int, float]]) -> dict[str, Any]:
    seconds = [duration for _, duration in results]
    figures = {
        "requests": len(results),
        "status_200": sum(status == 200 for status, _ in results),
        "ack_p50_ms": round(statistics.median(seconds) * 1000, 1),
        "ack_p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "ack_max_ms": round(max(seconds) * 1000, 1),
        "acks_over_3s": sum(duration > 3 for duration in seconds),
    }
    print(
        f"{name:<22} {figures['status_200']}/{figures['requests']} got 200;  ack p50 "
        f"{figures['ack_p50_ms']} ms  p95 {figures['ack_p95_ms']} ms  "
        f"max {figures['ack_max_ms']} ms  (> 3 s: {figures['acks_over_3s']})"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4, help="settings.slack_workers")
    parser.add_argument(
        "--queue",
        type=int,
        default=200,
        help="settings.slack_queue (default 100)",
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from bot import Bot
    from bot.slack import build_app, http_server

    data_dir = Path(tempfile.mkdtemp(prefix="newsbot-slack-load-"))
    bot = Bot.open(data_dir=data_dir)
    bot.ingest([str(REPO / "samples" / "articles")])
    bot.ask(QUESTION)  # warm up: the first question loads what retrieval needs

    with FakeSlack() as slack:
        settings = bot.settings.model_copy(
            update={
                "slack_bot_token": TOKEN,
                "slack_signing_secret": SECRET,
                "slack_api_url": slack.api_url,
                "slack_workers": args.workers,
                "slack_queue": args.queue,
            }
        )
        app, door = build_app(bot, settings)
        pool = door.pool
        server, listening = http_server(app, "127.0.0.1", 0)
        serving = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
        serving.start()
        port = int(listening.getsockname()[1])

        print(
            f"{args.events} events, {args.concurrency} concurrent; {args.workers} workers, "
            f"queue {args.queue}; Python {platform.python_version()} on {platform.machine()}"
        )
        baseline_bodies = [
            {"type": "url_verification", "token": "x", "challenge": f"c{i}"}
            for i in range(args.events)
        ]
        baseline = describe("baseline (no work)", burst(port, baseline_bodies, args.concurrency))

        bodies = [
            event_body(f"<@UBOT> {QUESTION}", channel=f"C{i:05d}") for i in range(args.events)
        ]
        most_queued = 0

        def watch_queue() -> None:
            nonlocal most_queued
            while not done.is_set():
                most_queued = max(most_queued, pool.in_flight)
                time.sleep(0.005)

        done = threading.Event()
        queue_watch = threading.Thread(target=watch_queue, daemon=True)
        with MemoryWatch() as memory:
            rss_before = memory.rss()
            queue_watch.start()
            started = time.perf_counter()
            events = describe("mentions", burst(port, bodies, args.concurrency))
            acked = time.perf_counter() - started
            door.wait_idle(timeout=600)
            finished = time.perf_counter() - started
            done.set()
        rss_after = memory.rss()
        server.should_exit = True
        serving.join()
        door.shutdown()

        answers = Counter(
            call.params["channel"]
            for call in slack.calls_to("chat.update")
            if call.params.get("blocks")
        )
        busy = Counter(
            call.params["channel"]
            for call in slack.calls_to("chat.postMessage")
            if call.params.get("text", "").startswith("I'm answering a lot")
        )
        channels = [body["event"]["channel"] for body in bodies]
        answered_once = sum(answers[c] == 1 for c in channels)
        twice = sum(answers[c] > 1 for c in channels)
        told_busy = sum(busy[c] > 0 and answers[c] == 0 for c in channels)
        lost = sum(answers[c] == 0 and busy[c] == 0 for c in channels)

    mib = 1024 * 1024
    summary = {
        "events": args.events,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "queue": args.queue,
        "baseline": baseline,
        "mentions": events,
        "ack_p95_ratio_vs_baseline": round(events["ack_p95_ms"] / baseline["ack_p95_ms"], 2),
        "all_acked_seconds": round(acked, 2),
        "all_answered_seconds": round(finished, 2),
        "answered_once": answered_once,
        "answered_twice": twice,
        "told_busy": told_busy,
        "lost": lost,
        "most_jobs_queued": most_queued,
        "rss_before_mib": round(rss_before / mib, 1),
        "rss_peak_mib": round(memory.peak / mib, 1),
        "rss_after_mib": round(rss_after / mib, 1),
    }
    print(
        f"ack p95 ratio vs baseline: {summary['ack_p95_ratio_vs_baseline']}x;  all acked in "
        f"{summary['all_acked_seconds']} s, all answered in {summary['all_answered_seconds']} s"
    )
    print(
        f"answered once {answered_once}, twice {twice}, told busy {told_busy}, lost {lost}; "
        f"most jobs queued {most_queued} (bound {args.workers + args.queue})"
    )
    print(
        f"RSS before {summary['rss_before_mib']} MiB, peak {summary['rss_peak_mib']} MiB, "
        f"after {summary['rss_after_mib']} MiB"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
