"""Scale: what asking and adding cost as the store grows to 10k, 100k and 1M chunks, with an
embedded Chroma and with a Chroma server (`chroma run`).

    .venv/bin/python bench/scale.py                              # 10k and 100k
    .venv/bin/python bench/scale.py --sizes 1000000 --json-out scale-1m.json
    .venv/bin/python bench/scale.py --sizes 10000 --modes server --repeats 5

Each store is filled once (kept in --data-dir, reused when it holds the size) by bench/query.py's
seeded generator: synthetic chunk texts with random unit vectors, written through the store's
own write path (`Store.upsert_chunks` + `Store.commit`, in batches of 5,000) rather than
through the model (embedding a million chunks would take days here). Questions go through the
real embedder and the real retrieval. The server mode serves the same Chroma folder with
`chroma run`; its client keeps its own lexical index under another data dir, built from the
store's log on first use (timed: what a new host pays once).

Per size and mode, every process a new one:
- warm `ask`: p50/p95 over --rounds x 40 questions in one process, after 4 warm-up questions;
- `newsbot ask "<question>"` as a new process: wall time and peak RSS (median of --repeats),
  and ("unsaved") the chunk records Chroma had not saved into its vector index at each one:
  what an embedded process replays first (~0.5 ms each at 10k, ~1.4 ms at 100k; fewer than the
  store's `vector_save_every`, docs/store.md); a server replayed them when it started. Beside
  each ask, right before it: `python -c pass`, `newsbot --help` (0.03 s and 0.27 s on a quiet
  host) and the libraries alone on the same store (bench/cold_start.py's FLOOR: the
  interpreter, onnxruntime's session and the tokenizer, numpy, pydantic-settings, tantivy's
  search, Chroma's engine (chromadb_rust_bindings; a server's chromadb.HttpClient), one
  embedding and the question's Chroma query); their medians are printed beside the ask's,
  since a VM's neighbours move the ask by more than the goals' margin (docs/benchmarks.md,
  "Cold start");
- `newsbot ingest one.txt` adding one new article (~1,000 characters), after each ask: wall and
  peak RSS;
- disk: the Chroma folder and the lexical index.
Peak RSS is the kernel's ru_maxrss of that process (os.wait4). Then the goals of issue 16 are
checked against the figures of this run: ratios against the 10k store of the same mode.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "newsbot-bench-scale"
NEWSBOT = REPO / ".venv" / "bin" / "newsbot"
CHROMA = REPO / ".venv" / "bin" / "chroma"
QUESTION = "What did the council say about the harbour budget?"
ARTICLE = """title: Harbour budget vote {n}
source: Coast Daily
date 2024-03-{day:02d}

The town council approved the harbour budget on Tuesday after a debate that ran late into the
evening, the {n}th such vote this year. Councillors said the money would repair the northern
breakwater, which storms damaged in January, and pay for a new ferry landing. The mayor said the
repairs would start in the spring and end before the summer season. Fishermen who attended the
meeting welcomed the decision but asked for a timetable. Opponents said the cost had doubled
since the first estimate and asked for an independent review. The council agreed to publish the
contracts. A second vote, on the ferry timetable, was put off to next month. The harbour master
said boats would be moved to the southern quay while the work goes on. Local shops said they
hoped the new landing would bring more visitors from the islands. Run {run}.
"""


# -- helpers -------------------------------------------------------------------------------------


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run `command` to its end: wall seconds, CPU seconds (user + system, all its threads),
    peak RSS (MiB, the kernel's ru_maxrss of that process) and its output. Fails loudly when it
    fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    output = process.stdout.read().decode("utf-8", errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command} failed ({process.returncode}):\n{output[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output


def disk_mib(*paths: Path) -> float:
    total = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total / 2**20


def unsaved_records(chroma_dir: Path, collection: str = "news") -> int:
    """Records of the collection written since Chroma last saved its vector index: what a new
    embedded process replays before its first answer (docs/store.md, "Chroma's replay")."""
    import sqlite3

    from index.store import vector_segment

    db = sqlite3.connect(f"file:{chroma_dir / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        return len(vector_segment(db, collection)[1])
    finally:
        db.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def compile_newsbot() -> None:
    """Compile bot/ and index/ as installing newsbot does (pip compiles a package's modules;
    an editable install writes them on its first run). The sessions on this machine set
    PYTHONDONTWRITEBYTECODE=1, under which every `newsbot` process compiled them from source
    again: 0.1 s of CPU no installed newsbot spends (docs/benchmarks.md, "Cold start")."""
    import compileall

    for package in ("bot", "index"):
        compileall.compile_dir(REPO / package, quiet=2)


def environment(data_dir: Path, chroma_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    env.update({"HF_HUB_OFFLINE": "1", "NEWSBOT_DATA_DIR": str(data_dir)})
    env["NEWSBOT_CONFIG"] = "/nonexistent/newsbot-bench.toml"
    if chroma_url:
        env["NEWSBOT_CHROMA_URL"] = chroma_url
    return env


class ChromaServer:
    """`chroma run` on a folder, on a free local port, until stopped."""

    def __init__(self, path: Path, log: Path, port: int) -> None:
        import socket

        # A fixed port per store: a client's lexical index is keyed by the server's URL, so the
        # host's index is reused from one run to the next.
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        with socket.socket() as sock:  # a server left from an earlier run would answer instead
            if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                raise SystemExit(f"port {self.port} is in use: stop what listens there first")
        # Its own process group: `chroma run` may leave workers, and stop() ends them all.
        self.process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(path), "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"chroma run did not start; see {log}") from None
                time.sleep(0.3)

    def rss_mib(self) -> float:
        import psutil

        process = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(True)]) / 2**20

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


# -- work done in child processes ----------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """--child fill|warm: fill the store to --size, or time warm asks; prints one JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from bench.query import CHUNKS_PER_ARTICLE, FILL_BATCH, Vocabulary, fill_store, questions_for
    from bot import Bot

    overrides: dict[str, Any] = {"data_dir": args.data_dir}
    if args.chroma_url:
        overrides["chroma_url"] = args.chroma_url
    started = time.perf_counter()
    bot = Bot.open(**overrides)
    vocabulary = Vocabulary(args.seed)
    if args.child == "fill":
        filled = 0.0
        if bot.store.count() < args.size:
            # A fill that was stopped goes on after its last committed batch (4 chunks an article).
            committed = bot.store.article_count() * CHUNKS_PER_ARTICLE
            start = committed // FILL_BATCH * FILL_BATCH
            filled = fill_store(bot, args.size, args.seed, vocabulary, start=start)
        print(json.dumps({"fill_s": filled, "chunks": bot.store.count()}))
        return
    bot.warm()  # a new host's first use builds its lexical index from the log
    opened = time.perf_counter() - started
    questions = questions_for(args.size, args.seed, bot, vocabulary)
    for question in questions[:4]:
        bot.ask(question)
    timings, cpu = [], []
    for _ in range(args.rounds):
        for question in questions:
            mark, cpu_mark = time.perf_counter(), time.process_time()
            bot.ask(question)
            timings.append(1000 * (time.perf_counter() - mark))
            cpu.append(1000 * (time.process_time() - cpu_mark))
    import psutil

    memory = psutil.Process().memory_info()
    print(
        json.dumps(
            {
                # Resident now, after the questions (the peak may be the first use's index build).
                "rss_now_mib": memory.rss / 2**20,
                # What the process itself holds: resident pages not mapped from files (tantivy
                # maps its on-disk index; those pages are the OS's cache, shared and reclaimable).
                "anon_now_mib": (memory.rss - memory.shared) / 2**20,
                "open_s": opened,
                "ask_p50_ms": statistics.median(timings),
                "ask_p95_ms": percentile(timings, 0.95),
                "cpu_p50_ms": statistics.median(cpu),
                "cpu_p95_ms": percentile(cpu, 0.95),
                "questions": len(timings),
            }
        )
    )


def run_child(kind: str, args: argparse.Namespace, size: int, data_dir: Path, url: str | None):
    command = [sys.executable, __file__, "--child", kind, "--size", str(size)]
    command += ["--data-dir", str(data_dir), "--seed", str(args.seed), "--rounds", str(args.rounds)]
    if url:
        command += ["--chroma-url", url]
    _, _, rss, output = timed_process(command, environment(data_dir, url))
    result = json.loads(output.strip().splitlines()[-1])
    result["rss_mib"] = rss
    return result


# -- one size, one mode --------------------------------------------------------------------------


def copy_host_index(embedded: Path, host: Path, url: str) -> None:
    """Give the server's client a copy of the embedded store's lexical index (the same log),
    instead of letting its first use build one from the log: a shortcut for large stores,
    where that build takes a long time here. Its key is the one Store.open computes."""
    from index.store import lexical_folder

    target = lexical_folder(host, url, "news")
    if not target.exists():
        shutil.copytree(lexical_folder(embedded, None, "news"), target)


def measure(
    args: argparse.Namespace, size: int, data_dir: Path, url: str | None, chroma_dir: Path
) -> dict:
    warm = run_child("warm", args, size, data_dir, url)
    env = environment(data_dir, url)
    from bench.cold_start import floor_command

    libraries = floor_command(data_dir, url, QUESTION)
    asks, adds, unsaved, passes, helps, floors = [], [], [], [], [], []
    for repeat in range(args.repeats):
        # Each ask after the first follows the previous round's add: the store as it is in use,
        # whatever Chroma has left unsaved (printed: an embedded ask replays it; a server has).
        unsaved.append(unsaved_records(chroma_dir))
        # How busy the host is as this ask runs: the interpreter alone, `newsbot --help` (0.03
        # and 0.27 s on a quiet one), and the libraries alone on the same store (FLOOR, which
        # replays what the ask will: readers never save).
        passes.append(timed_process([sys.executable, "-c", "pass"], env)[0])
        helps.append(timed_process([str(NEWSBOT), "--help"], env)[0])
        floors.append(timed_process(libraries, env)[0])
        asks.append(timed_process([str(NEWSBOT), "ask", QUESTION], env)[:3])
        # A new article each time: its id is its file's path, and an article ingested again is
        # an update (its chunks upserted: Chroma replays those ~4x slower than new ones).
        run = f"{time.time_ns()}-{repeat}"
        article = data_dir.parent / f"one-{run}.txt"
        article.write_text(ARTICLE.format(n=repeat + 1, day=repeat + 1, run=run), encoding="utf-8")
        adds.append(timed_process([str(NEWSBOT), "ingest", str(article)], env)[:3])
        article.unlink()
    return {
        "open_s": warm["open_s"],
        "warm_p50_ms": warm["ask_p50_ms"],
        "warm_p95_ms": warm["ask_p95_ms"],
        "warm_cpu_p50_ms": warm["cpu_p50_ms"],
        "warm_cpu_p95_ms": warm["cpu_p95_ms"],
        "warm_rss_mib": warm["rss_now_mib"],  # the process that asked 80 questions, after them
        "warm_anon_mib": warm["anon_now_mib"],
        "warm_peak_mib": warm["rss_mib"],
        "ask_wall_s": statistics.median(wall for wall, _, _ in asks),
        "ask_runs_s": [wall for wall, _, _ in asks],
        "ask_cpu_s": statistics.median(cpu for _, cpu, _ in asks),
        "ask_rss_mib": statistics.median(rss for _, _, rss in asks),
        "ask_unsaved": unsaved,  # Chroma's unsaved chunk records at each new-process ask
        "add_wall_s": statistics.median(wall for wall, _, _ in adds),
        "add_cpu_s": statistics.median(cpu for _, cpu, _ in adds),
        "add_rss_mib": statistics.median(rss for _, _, rss in adds),
        "load": os.getloadavg()[0],
        "help_wall_s": statistics.median(helps),
        "pass_wall_s": statistics.median(passes),
        "floor_wall_s": statistics.median(floors),
    }


def run_size(args: argparse.Namespace, size: int) -> dict[str, dict]:
    base = args.data_dir / str(size)
    embedded = base / "embedded"  # its Chroma folder is embedded/chroma, served as is below
    fill = run_child("fill", args, size, embedded, None)
    if fill["fill_s"]:
        print(
            f"  filled {size:,} chunks in {fill['fill_s']:.0f} s"
            f" (peak RSS {fill['rss_mib']:.0f} MiB)"
        )
    results: dict[str, dict] = {}
    if "embedded" in args.modes:
        result = measure(args, size, embedded, None, embedded / "chroma")
        result["disk_mib"] = disk_mib(embedded / "chroma", embedded / "lexical")
        results["embedded"] = result
        report(size, "embedded", result)
    if "server" in args.modes:
        host = base / "host"  # a client machine's data dir: its own lexical index
        if args.fresh_host and host.exists():
            shutil.rmtree(host)
        server = ChromaServer(
            embedded / "chroma", base / "chroma-server.log", 38100 + len(str(size))
        )
        if args.copy_host_index:
            copy_host_index(embedded, host, server.url)
        try:
            result = measure(args, size, host, server.url, embedded / "chroma")
            result["server_rss_mib"] = server.rss_mib()
        finally:
            server.stop()
        result["disk_mib"] = disk_mib(embedded / "chroma", host / "lexical")
        results["server"] = result
        report(size, "server", result)
    return results


HEADER = (
    f"{'chunks':>9} {'mode':>8} {'open s':>7} {'warm p50':>9} {'p95 ms':>7} {'(CPU p50':>9}"
    f" {'p95)':>6} {'ask s':>6} {'(CPU)':>6} {'floor s':>8} {'ask MiB':>8} {'add s':>6}"
    f" {'(CPU)':>6} {'add MiB':>8} {'warm MiB':>9} {'disk MiB':>9} {'server MiB':>11}"
    f" {'load':>5} {'--help s':>9} {'pass s':>7} {'unsaved':>9}"
)


def report(size: int, mode: str, result: dict) -> None:
    server = f"{result['server_rss_mib']:>11.0f}" if "server_rss_mib" in result else f"{'':>11}"
    print(
        f"{size:>9,} {mode:>8} {result['open_s']:>7.1f} {result['warm_p50_ms']:>9.1f}"
        f" {result['warm_p95_ms']:>7.1f} {result['warm_cpu_p50_ms']:>9.1f}"
        f" {result['warm_cpu_p95_ms']:>6.1f} {result['ask_wall_s']:>6.2f}"
        f" {result['ask_cpu_s']:>6.2f} {result['floor_wall_s']:>8.2f}"
        f" {result['ask_rss_mib']:>8.0f} {result['add_wall_s']:>6.2f}"
        f" {result['add_cpu_s']:>6.2f} {result['add_rss_mib']:>8.0f}"
        f" {result['warm_rss_mib']:>9.0f} {result['disk_mib']:>9.0f}"
        f"{server} {result['load']:>5.1f} {result['help_wall_s']:>9.2f}"
        f" {result['pass_wall_s']:>7.3f} {'/'.join(map(str, result['ask_unsaved'])):>9}",
        flush=True,
    )


def goals(results: dict[int, dict[str, dict]]) -> list[str]:
    """Issue 16's goals, checked on this run's figures (ratios against 10k of the same mode).
    Times are judged on wall time and, as an estimate for a machine nobody else is using, on
    the CPU time of the same work (all threads counted)."""
    lines = []

    def check(
        label: str, wall: float, cpu: float | None, limit: float, unit: str, note: str = ""
    ) -> None:
        verdicts = ["met" if wall <= limit else "MISSED"]
        figures = f"{wall:.2f}{unit}"
        if cpu is not None:
            figures += f" wall, {cpu:.2f}{unit} CPU"
            verdicts.append("met" if cpu <= limit else "MISSED")
        verdict = " / ".join(verdicts)
        lines.append(f"{label}: {figures} (goal <= {limit:g}{unit}): {verdict}{note}")

    for mode in ("embedded", "server"):
        for size, limit in ((100_000, 50), (1_000_000, 150)):
            if mode in results.get(size, {}):
                got = results[size][mode]
                label = f"warm ask p95, {size:,}, {mode}"
                check(label, got["warm_p95_ms"], got["warm_cpu_p95_ms"], limit, " ms")
        for size, limit in ((10_000, 1.2), (100_000, 1.5)):
            if mode in results.get(size, {}):
                got = results[size][mode]
                label = f"new-process ask, {size:,}, {mode}"
                runs = ", ".join(f"{wall:.2f}" for wall in got.get("ask_runs_s", []))
                # The host's noise beside it (older --json-out files lack the gauges).
                note = f"; runs {runs}" if runs else ""
                if "floor_wall_s" in got:
                    note += (
                        f"; libraries alone {got['floor_wall_s']:.2f} s, --help"
                        f" {got['help_wall_s']:.2f} s (quiet host: 0.27)"
                    )
                check(label, got["ask_wall_s"], got["ask_cpu_s"], limit, " s", note)
    small = results.get(10_000, {}).get("server")
    for size in sorted(results):
        large = results[size].get("server")
        if size <= 10_000 or not small or not large:
            continue
        check(
            f"server, add one at {size:,} / 10k, time",
            large["add_wall_s"] / small["add_wall_s"],
            large["add_cpu_s"] / small["add_cpu_s"],
            1.5,
            "x",
        )
        ratio = large["add_rss_mib"] / small["add_rss_mib"]
        check(f"server, add one at {size:,} / 10k, memory", ratio, None, 1.3, "x")
        ratio = large["ask_rss_mib"] / small["ask_rss_mib"]
        check(f"server, newsbot ask memory {size:,} / 10k", ratio, None, 1.3, "x")
        ratio = large["warm_rss_mib"] / small["warm_rss_mib"]
        check(f"server, memory after 80 asks {size:,} / 10k", ratio, None, 1.3, "x")
        ratio = large["warm_anon_mib"] / small["warm_anon_mib"]
        lines.append(f"  (the same without the pages mapped from files: {ratio:.2f}x)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--modes", default="embedded,server")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the 40 questions")
    parser.add_argument("--repeats", type=int, default=5, help="new processes per figure")
    parser.add_argument("--seed", type=int, default=20240207)
    parser.add_argument(
        "--fresh-host", action="store_true", help="rebuild the server client's index"
    )
    parser.add_argument(
        "--copy-host-index",
        action="store_true",
        help="server mode: copy the embedded store's lexical index to the client (see docs)",
    )
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", choices=["fill", "warm"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chroma-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.modes = args.modes.split(",")
    compile_newsbot()
    sizes = [int(size) for size in args.sizes.split(",")]
    if 10_000 not in sizes and len(sizes) > 1:
        print("note: the goals compare with a 10k store; include 10000 in --sizes for ratios")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start;"
        f" {args.rounds} x 40 questions warm, {args.repeats} new processes per figure (median)"
    )
    print(HEADER, flush=True)
    results: dict[int, dict[str, dict]] = {}
    for size in sizes:
        results[size] = run_size(args, size)
    previous: dict[str, Any] = {}
    if args.json_out and args.json_out.exists():  # e.g. 10k and 100k from an earlier run
        previous = json.loads(args.json_out.read_text())
    merged = {int(size): modes for size, modes in previous.items()} | results
    print()
    for line in goals(merged):
        print(line)
    if args.json_out:
        args.json_out.write_text(json.dumps({str(k): v for k, v in merged.items()}, indent=1))


if __name__ == "__main__":
    main()
