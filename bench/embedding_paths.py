"""Embedding speed and agreement: sentence-transformers on torch vs the ONNX export (fp32, int8).

    .venv/bin/python bench/embedding_paths.py [--texts 500] [--repeats 3] [--batch-size 16]

Embeds the same news chunks (~710 characters, cut at sentence ends from ../shared/eval's
multihop corpus, or from samples/articles when that is absent) with each path, and prints
chunks/s (median of the repeats), the ratio to torch measured in this run, the cosine of each
vector to torch's (mean / min), and the time from starting a new process to its first embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "eval" / "multihop_corpus.jsonl"
SAMPLES = REPO / "samples" / "articles"
CHUNK_CHARACTERS = 710
MODEL = "all-MiniLM-L6-v2"


def sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if part]


def windows(parts: list[str], count: int, size: int = CHUNK_CHARACTERS) -> list[str]:
    """`count` chunks of consecutive sentences, each starting one sentence after the last and
    ending once it reaches `size` characters (the corpus' articles are short excerpts, so a chunk
    of news-chunk length spans neighbouring articles, as overlapping chunks would)."""
    chunks: list[str] = []
    start = 0
    while len(chunks) < count:
        piece, index = "", start
        while len(piece) < size:
            piece = f"{piece} {parts[index % len(parts)]}".strip()
            index += 1
        chunks.append(piece)
        start += 1
    return chunks


def load_texts(count: int) -> tuple[list[str], list[str], str]:
    """Long texts (news-chunk length) and short ones (questions), and where they came from."""
    if CORPUS.is_file():
        articles = [json.loads(line) for line in CORPUS.read_text().splitlines() if line]
        parts = [s for a in articles for s in sentences(f"{a['title']}. {a['body']}")]
        questions_file = CORPUS.with_name("multihop_dev.jsonl")
        questions = [
            json.loads(line)["question"] for line in questions_file.read_text().splitlines()
        ]
        source = str(CORPUS.parent)
    else:
        parts = [s for path in sorted(SAMPLES.glob("*.txt")) for s in sentences(path.read_text())]
        questions = [" ".join(part.split()[:12]) for part in parts]
        source = f"{SAMPLES} (../shared is absent)"
    if not parts:
        raise SystemExit(f"no texts found in {source}")
    return windows(parts, count), questions, source


def measure(
    paths: Mapping[str, Callable[[Sequence[str]], np.ndarray]], texts: list[str], repeats: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Median texts/s of each path and its vectors; the paths take turns, so a busy moment on
    the machine slows all of them rather than one."""
    rates: dict[str, list[float]] = {name: [] for name in paths}
    vectors: dict[str, np.ndarray] = {}
    for embed in paths.values():
        embed(texts[:16])  # warm up: first-call allocations and thread start-up
    for _ in range(repeats):
        for name, embed in paths.items():
            started = time.perf_counter()
            vectors[name] = embed(texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    return {name: (statistics.median(rates[name]), vectors[name]) for name in paths}


STARTUP_SCRIPT = """
import sys
from bot.settings import load_settings
from index.embed import load_embedder
settings = load_settings(data_dir=sys.argv[1], embedding_backend=sys.argv[2],
                         embedding_precision=sys.argv[3])
load_embedder(settings).embed(["What did Qatar say about Hamas's response?"])
print("torch imported:", "torch" in sys.modules)
"""


def startup_seconds(data_dir: Path, backend: str, precision: str) -> tuple[float, str]:
    """A new Python process, from its start to its first embedding (export already cached)."""
    environment = {**os.environ, "NEWSBOT_CONFIG": "/nonexistent/newsbot-bench.toml"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", STARTUP_SCRIPT, str(data_dir), backend, precision],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        check=True,
    )
    return time.perf_counter() - started, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-startup", action="store_true", help="skip the new-process timings")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    texts, questions, source = load_texts(options.texts)
    characters = statistics.mean(len(text) for text in texts)
    print(f"from {source}: {len(texts)} chunks of {characters:.0f} characters on average,")
    question_characters = statistics.mean(len(question) for question in questions)
    print(f"and {len(questions)} questions of {question_characters:.0f} characters")
    print(f"{os.cpu_count()} CPUs, batch size {options.batch_size}, median of {options.repeats}")

    from index.embed import TorchEmbedder
    from index.onnx_backend import OnnxEmbedder, export_model

    with tempfile.TemporaryDirectory(prefix="newsbot-bench-") as folder:
        data_dir = Path(folder)
        cache = data_dir / "models"
        for precision in ("fp32", "int8"):
            started = time.perf_counter()
            export_model(MODEL, precision, cache)
            print(f"export {precision}: {time.perf_counter() - started:.1f} s")

        paths = {
            "sentence-transformers, torch fp32": TorchEmbedder(MODEL, options.batch_size).embed
        }
        for precision in ("fp32", "int8"):
            embedder = OnnxEmbedder(MODEL, precision, options.batch_size, cache_dir=cache)
            paths[f"ONNX {precision}, onnxruntime"] = embedder.embed
        chunks = measure(paths, texts, options.repeats)
        short = measure(paths, questions, options.repeats)

        print()
        print(
            f"{'path':<34} {'chunks/s':>9} {'vs torch':>9} {'questions/s':>12} {'vs torch':>9}"
            f"  cosine to torch, mean / min"
        )
        torch_name = next(iter(paths))
        for name in paths:
            similarity = np.concatenate(
                [
                    np.sum(chunks[name][1] * chunks[torch_name][1], axis=1),
                    np.sum(short[name][1] * short[torch_name][1], axis=1),
                ]
            )
            long_rate, short_rate = chunks[name][0], short[name][0]
            print(
                f"{name:<34} {long_rate:>9.1f} {long_rate / chunks[torch_name][0]:>8.2f}x "
                f"{short_rate:>12.1f} {short_rate / short[torch_name][0]:>8.2f}x"
                f"  {similarity.mean():.6f} / {similarity.min():.6f}"
            )

        if not options.no_startup:
            print("\nnew process to first embedding (export cached):")
            for backend, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
                seconds, note = startup_seconds(data_dir, backend, precision)
                print(f"  {backend} {precision}: {seconds:.2f} s ({note})")


if __name__ == "__main__":
    main()
