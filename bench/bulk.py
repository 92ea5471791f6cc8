"""Bulk input: a 1 GB JSON Lines export read with flat memory, and ingested for a while.

    .venv/bin/python bench/bulk.py                          # 1 GB, read it, ingest for 5 min
    .venv/bin/python bench/bulk.py --gigabytes 0.1 --ingest-seconds 60
    .venv/bin/python bench/bulk.py --skip-read --server --ingest-seconds 1200

Writes (once; reused when its size matches) a seeded JSON Lines export of synthetic articles of
~3,000 characters each in --data-dir, plus a 10 MB export of the same articles as the baseline.
Then, each in a new process whose resident memory is sampled every half second:

1. read: `iter_articles` over the 10 MB export, then over the whole big one (reading only: JSON
   parsing, article fields, dates). Prints articles/s, MB/s and peak RSS, and the RSS at each
   tenth of the file: flat memory means the big file's peak is that of the 10 MB one.
2. ingest: `newsbot ingest BIG.jsonl` into a fresh store for --ingest-seconds (the real
   model embeds every chunk: a whole GB would take hours on 2 cores), then Ctrl-C. Prints the
   articles ingested, chunks/s, the RSS after the first minute and at the end, the highest RSS
   of each minute, and the time the whole file would take at that rate. With --server the store
   is a `chroma run` server the bench starts (bench/scale.py's ChromaServer): the ingesting
   process then holds no vector index, and the server's RSS is sampled beside it.
   With --hashing-embedder the ingest runs `Bot.ingest` with tests/fake_embedder.py's hashing
   embedder instead of the model: everything but the model (reading, chunking, token counting,
   Chroma, the lexical index, the pipeline's queues) at ~50x the model's pace here, so that what
   grows with the input shows within minutes; it prints articles, chunks and RSS every 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "newsbot-bench-bulk"
ARTICLE_CHARS = 3_000
OUTLETS = ["Coast Daily", "Town Crier", "The Harbour Post", "Valley News", "Metro Wire"]

READER = """
import json, sys, time
from bot.settings import load_settings
from index.read import iter_articles
from index.article import Article
path, size = sys.argv[1], int(sys.argv[2])
settings = load_settings(data_dir=sys.argv[3])
started = time.perf_counter()
articles = failures = 0
for item in iter_articles([path], settings):
    if isinstance(item, Article):
        articles += 1
        if articles % 5000 == 0:
            print(json.dumps({"articles": articles, "seconds": time.perf_counter() - started}),
                  flush=True)
    else:
        failures += 1
print(json.dumps({"articles": articles, "failures": failures,
                  "seconds": time.perf_counter() - started, "done": True}), flush=True)
"""


# The ingest without the model (--hashing-embedder): Bot.ingest with a hashing embedder, printing
# its progress every 15 s; Ctrl-C stops it as it stops `newsbot ingest`.
PIPELINE = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[2])
from bot.core import Bot, open_store
from bot.settings import load_settings
from tests.fake_embedder import HashingEmbedder
settings = load_settings()
bot = Bot(settings, open_store(settings), embedder=HashingEmbedder())
done = {"articles": 0, "chunks": 0}
started = time.monotonic()
def report():
    while True:
        time.sleep(15)
        print(json.dumps({"t": time.monotonic() - started, **done}), flush=True)
threading.Thread(target=report, daemon=True).start()
def progress(event):
    done["articles"], done["chunks"] = event.articles_done, event.chunks_written
try:
    bot.ingest([sys.argv[1]], progress=progress)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def write_export(path: Path, target_bytes: int, seed: int) -> None:
    """Seeded synthetic articles, one JSON object a line, until the file holds target_bytes."""
    if path.exists() and abs(path.stat().st_size - target_bytes) < 10_000:
        return
    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(30_000)})
    epoch = datetime(2020, 1, 1, tzinfo=UTC)
    temporary = path.with_suffix(".tmp")
    written = number = 0
    with temporary.open("w", encoding="utf-8") as out:
        while written < target_bytes:
            number += 1
            sentences, length = [], 0
            while length < ARTICLE_CHARS:
                sentence = " ".join(rng.choices(words, k=18)).capitalize() + "."
                sentences.append(sentence)
                length += len(sentence) + 1
            record = {
                "id": f"bulk-{number:08d}",
                "title": " ".join(rng.choices(words, k=6)).capitalize(),
                "body": " ".join(sentences),
                "source": rng.choice(OUTLETS),
                "published_at": (epoch + timedelta(minutes=rng.randrange(2_000_000))).isoformat(),
            }
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
    temporary.rename(path)


def prefix_of(source: Path, target: Path, size: int) -> None:
    """The first whole lines of `source` up to `size` bytes."""
    if target.exists() and abs(target.stat().st_size - size) < 10_000:
        return
    with source.open("rb") as read, target.open("wb") as out:
        written = 0
        for line in read:
            if written + len(line) > size:
                break
            out.write(line)
            written += len(line)


def run_sampled(
    command: list[str],
    seconds: float | None = None,
    env: dict[str, str] | None = None,
    beside: Callable[[], float] | None = None,
) -> tuple[list[str], list[tuple[float, float]], float, list[tuple[float, float]]]:
    """Run `command`, sampling its RSS (MiB) every 0.5 s; after `seconds`, send it SIGINT.
    Returns its output lines, the (time, RSS) samples, its wall time, and the (time, MiB) samples
    of `beside` (another process's RSS) taken with them."""
    import psutil

    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as output:
        # A process started from a background job inherits SIGINT ignored (and Python then
        # installs no Ctrl-C handler): give the child the default, so the SIGINT below is Ctrl-C.
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        watched = psutil.Process(process.pid)
        samples: list[tuple[float, float]] = []
        others: list[tuple[float, float]] = []
        interrupted = False
        while process.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [watched, *watched.children(True)])
                if rss:  # 0 once the process has exited and not been reaped yet
                    samples.append((time.monotonic() - started, rss / 2**20))
                if beside is not None:
                    others.append((time.monotonic() - started, beside()))
            except psutil.Error:
                pass
            if seconds is not None and not interrupted and time.monotonic() - started > seconds:
                process.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(0.5)
        wall = time.monotonic() - started
        output.seek(0)
        return output.read().splitlines(), samples, wall, others


def per_minute(samples: list[tuple[float, float]], wall: float) -> list[float]:
    """The highest sample of each whole minute."""
    minutes = [
        [value for at, value in samples if m * 60 <= at < m * 60 + 60]
        for m in range(int(wall // 60))
    ]
    return [max(values) for values in minutes if values]


def read_phase(path: Path, data_dir: Path) -> dict[str, float]:
    size = path.stat().st_size
    command = [sys.executable, "-c", READER, str(path), str(size), str(data_dir / "settings")]
    lines, samples, wall, _ = run_sampled(command)
    done = [json.loads(line) for line in lines if line.startswith("{") and '"done"' in line]
    if not done:
        raise SystemExit("the reader failed:\n" + "\n".join(lines[-20:]))
    result = done[0]
    peak = max(rss for _, rss in samples)
    tenths = []
    for tenth in range(1, 11):
        moment = wall * tenth / 10
        tenths.append(max((rss for at, rss in samples if at <= moment), default=0.0))
    return {
        "bytes": size,
        "articles": result["articles"],
        "failures": result["failures"],
        "seconds": result["seconds"],
        "peak_mib": peak,
        "tenths": tenths,  # type: ignore[dict-item]
    }


def ingest_phase(
    path: Path, data_dir: Path, seconds: float, server: bool, hashing: bool
) -> dict[str, Any]:
    import shutil

    store, served = data_dir / "store", data_dir / "server-db"
    for folder in (store, served):
        if folder.exists():
            shutil.rmtree(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NEWSBOT_DATA_DIR": str(store)}
    chroma = None
    if server:
        from scale import ChromaServer

        chroma = ChromaServer(served, data_dir / "chroma-server.log", free_port())
        env["NEWSBOT_CHROMA_URL"] = chroma.url
    try:
        command = [str(REPO / ".venv" / "bin" / "newsbot"), "ingest", str(path)]
        if hashing:
            command = [sys.executable, "-c", PIPELINE, str(path), str(REPO)]
        lines, samples, wall, server_samples = run_sampled(
            command, seconds=seconds, env=env, beside=chroma.rss_mib if chroma else None
        )
        stats_command = [str(REPO / ".venv" / "bin" / "newsbot"), "stats", "--json"]
        stats = json.loads(
            subprocess.run(
                stats_command, env=env, capture_output=True, text=True, check=True
            ).stdout
        )
    finally:
        if chroma is not None:
            chroma.stop()
    after_minute = [rss for at, rss in samples if 55 <= at <= 65]
    return {
        "seconds": wall,
        "articles": stats["articles"],
        "chunks": stats["chunks"],
        "rss_1min_mib": after_minute[0] if after_minute else float("nan"),
        "rss_end_mib": samples[-1][1] if samples else float("nan"),
        "peak_mib": max((rss for _, rss in samples), default=float("nan")),
        "per_minute": per_minute(samples, wall),
        "server_per_minute": per_minute(server_samples, wall),
        "output": "\n".join(lines[-5:]),
        "progress": progress_table(lines, samples, server_samples),
    }


def progress_table(
    lines: list[str], samples: list[tuple[float, float]], server: list[tuple[float, float]]
) -> list[str]:
    """Rows of articles, chunks and RSS at each progress line the ingest printed."""
    rows = []
    for line in lines:
        if not line.startswith('{"t"'):
            continue
        done = json.loads(line)
        near = [rss for at, rss in samples if abs(at - done["t"]) < 2]
        near_server = [rss for at, rss in server if abs(at - done["t"]) < 2]
        rows.append(
            f"{done['t']:>6.0f} {done['articles']:>9,} {done['chunks']:>8,}"
            f" {max(near, default=float('nan')):>8.0f}"
            f" {max(near_server, default=float('nan')):>11.0f}"
        )
    return rows


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--ingest-seconds", type=float, default=300)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=20240207)
    parser.add_argument("--skip-read", action="store_true", help="only the ingest phase")
    parser.add_argument("--server", action="store_true", help="ingest into a `chroma run` server")
    parser.add_argument(
        "--hashing-embedder", action="store_true", help="ingest without the model (see above)"
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    big = args.data_dir / f"export-{args.gigabytes:g}GB.jsonl"
    small = args.data_dir / "export-10MB.jsonl"
    started = time.perf_counter()
    write_export(big, int(args.gigabytes * 1e9), args.seed)
    prefix_of(big, small, 10_000_000)
    print(
        f"exports ready in {time.perf_counter() - started:.0f} s: {big} ({big.stat().st_size:,} B)"
    )
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start")

    if args.skip_read:
        with big.open("rb") as export:
            articles_in_file = sum(1 for _ in export)
    else:
        articles_in_file = read_phase_report(args, small, big)

    if args.ingest_seconds > 0:
        mode = "a `chroma run` server" if args.server else "embedded Chroma"
        how = "Bot.ingest, hashing embedder," if args.hashing_embedder else "newsbot ingest"
        print(
            f"\n2. {how} {big.name} into {mode}, stopped by Ctrl-C after"
            f" {args.ingest_seconds:.0f} s"
        )
        result = ingest_phase(
            big, args.data_dir, args.ingest_seconds, args.server, args.hashing_embedder
        )
        rate = result["chunks"] / result["seconds"]
        share = result["articles"] / articles_in_file
        hours = result["seconds"] / share / 3600 if share else float("nan")
        print(
            f"{result['articles']:,} articles ({share:.2%} of the file), {result['chunks']:,}"
            f" chunks in {result['seconds']:.0f} s ({rate:.1f} chunks/s, model load included);"
            f" RSS after 1 min {result['rss_1min_mib']:.0f} MiB, at the end"
            f" {result['rss_end_mib']:.0f} MiB, peak {result['peak_mib']:.0f} MiB;"
            f" the whole file would take ~{hours:.1f} h at this rate"
        )
        print(f"RSS (MiB), highest of each minute: {minutes(result['per_minute'])}")
        if args.server:
            print(f"the server's RSS (MiB), same minutes: {minutes(result['server_per_minute'])}")
        if result["progress"]:
            print(f"{'s':>6} {'articles':>9} {'chunks':>8} {'RSS MiB':>8} {'server MiB':>11}")
            print("\n".join(result["progress"]))
        print(result["output"])


def minutes(values: list[float]) -> str:
    return " ".join(f"{value:.0f}" for value in values)


def read_phase_report(args: argparse.Namespace, small: Path, big: Path) -> int:
    print("\n1. read (iter_articles, a new process each)")
    print(f"{'export':>10} {'articles':>9} {'s':>7} {'MB/s':>6} {'art/s':>7} {'peak RSS MiB':>13}")
    results = {}
    for name, path in (("10 MB", small), (f"{args.gigabytes:g} GB", big)):
        result = read_phase(path, args.data_dir)
        results[name] = result
        print(
            f"{name:>10} {result['articles']:>9,} {result['seconds']:>7.1f}"
            f" {result['bytes'] / 1e6 / result['seconds']:>6.1f}"
            f" {result['articles'] / result['seconds']:>7.0f} {result['peak_mib']:>13.0f}"
        )
    baseline, whole = results["10 MB"], results[f"{args.gigabytes:g} GB"]
    print(
        f"peak RSS, {args.gigabytes:g} GB / 10 MB: {whole['peak_mib'] / baseline['peak_mib']:.2f}"
    )
    tenths = " ".join(f"{rss:.0f}" for rss in whole["tenths"])  # type: ignore[attr-defined]
    print(f"RSS (MiB) at each tenth of the read: {tenths}")
    return int(whole["articles"])


if __name__ == "__main__":
    main()
