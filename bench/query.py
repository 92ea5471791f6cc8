"""Query latency: retrieval alone and a whole extractive `Bot.ask`, at 1k, 10k and 100k chunks.

    .venv/bin/python bench/query.py                       # 1k, 10k, 100k chunks
    .venv/bin/python bench/query.py --sizes 10000 --questions 100

The stores are filled by a seeded synthetic generator: chunk texts drawn from a Zipf-distributed
vocabulary with names, outlets and dates, written with random unit vectors straight through
`Store.upsert_chunks` and committed with their registry records by `Store.commit` (embedding
100k chunks would take an hour here and does not change query cost). The questions still go
through the real embedder, question understanding, Chroma and the lexical index. Stores are kept
in --data-dir and reused when their size matches.

Prints p50/p95 per size for: retrieval (understand + search, k=6) and `Bot.ask`, plus the time
to open the store and its lexical index. Target: p95 of `ask` < 100 ms at 10k chunks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "newsbot-bench-query"
OUTLETS = [
    "The Verge",
    "Wired",
    "TechCrunch",
    "The Guardian",
    "Fortune",
    "The Age",
    "Sporting News",
    "CBSSports.com",
    "Engadget",
    "Polygon",
    "The New York Times",
    "BBC News",
    "Reuters",
    "Al Jazeera",
    "Associated Press",
    "Bloomberg",
    "Financial Times",
    "The Independent - Life and Style",
    "Cnbc | World Business News Leader",
    "Mashable",
]
EPOCH = datetime(2022, 1, 1, tzinfo=UTC)
DAYS = 730
CHUNKS_PER_ARTICLE = 4
# Chunks made and written at a time: memory stays flat up to a million chunks.
FILL_BATCH = 5_000
WORDS_PER_SENTENCE = 18
SENTENCES_PER_CHUNK = 7


class Vocabulary:
    """Seeded pseudo-words (Zipf-distributed) and capitalised names."""

    def __init__(self, seed: int, size: int = 20_000, names: int = 2_000) -> None:
        rng = random.Random(seed)
        syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"]
        words: set[str] = set()
        while len(words) < size:
            words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
        self.words = sorted(words)
        rng.shuffle(self.words)
        weights = 1.0 / np.arange(1, size + 1) ** 1.07
        self.p = weights / weights.sum()
        people: set[str] = set()
        while len(people) < names:
            people.add(
                "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).title()
                + " "
                + "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))).title()
            )
        self.names = sorted(people)


def synthetic_chunks(
    count: int, seed: int, vocabulary: Vocabulary, first: int = 0
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """`count` chunks of synthetic articles, from chunk number `first` on (a multiple of
    CHUNKS_PER_ARTICLE): ids, texts and store metadata."""
    rng = np.random.default_rng([seed, first])
    picks = rng.choice(len(vocabulary.words), p=vocabulary.p, size=count * 130)
    ids, texts, metadatas = [], [], []
    cursor = 0
    for article_number in range(first, first + count, CHUNKS_PER_ARTICLE):
        outlet = OUTLETS[int(rng.integers(len(OUTLETS)))]
        published = EPOCH + timedelta(seconds=int(rng.integers(DAYS * 86_400)))
        article_id = f"syn-{article_number // CHUNKS_PER_ARTICLE:07d}"
        title_words = [vocabulary.words[int(i)] for i in rng.choice(2_000, size=6)]
        title = " ".join(title_words).capitalize()
        chunks_here = min(CHUNKS_PER_ARTICLE, first + count - article_number)
        offset = 0
        for position in range(chunks_here):
            sentences = []
            for _ in range(SENTENCES_PER_CHUNK):
                words = [
                    vocabulary.words[int(i)] for i in picks[cursor : cursor + WORDS_PER_SENTENCE]
                ]
                cursor += WORDS_PER_SENTENCE
                if rng.random() < 0.5:
                    words.insert(
                        int(rng.integers(len(words))),
                        vocabulary.names[int(rng.integers(len(vocabulary.names)))],
                    )
                sentences.append(" ".join(words).capitalize() + ".")
            text = " ".join(sentences)
            ids.append(f"{article_id}#{position}")
            texts.append(text)
            metadatas.append(
                {
                    "article_id": article_id,
                    "title": title,
                    "source": outlet,
                    "url": f"https://example.com/{article_id}",
                    "author": "",
                    "published_at": published.isoformat(),
                    "published_ts": int(published.timestamp()),
                    "position": position,
                    "chunk_start": offset,
                    "chunk_end": offset + len(text),
                    "n_chunks": chunks_here,
                    "content_hash": hashlib.sha256(article_id.encode()).hexdigest(),
                    "sources": [outlet],
                }
            )
            offset += len(text) + 1
    return ids, texts, metadatas


def fill_store(bot: Any, count: int, seed: int, vocabulary: Vocabulary, start: int = 0) -> float:
    """Write `count` synthetic chunks with random unit vectors, from chunk number `start` on
    (a multiple of the batch: a fill that was stopped goes on); returns seconds taken."""
    started = time.perf_counter()
    from index.store import StoredChunk

    dimension = bot.embedder.identity.dimension
    with bot.store.turn():
        for first in range(start, count, FILL_BATCH):
            ids, texts, metadatas = synthetic_chunks(
                min(FILL_BATCH, count - first), seed, vocabulary, first=first
            )
            rng = np.random.default_rng([seed + 1, first])
            vectors = rng.standard_normal((len(ids), dimension)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            bot.store.upsert_chunks(ids, texts, vectors, metadatas)
            records: dict[str, dict[str, Any]] = {}
            for metadata in metadatas:
                record = records.setdefault(
                    metadata["article_id"],
                    {"content_hash": metadata["content_hash"], "duplicate_of": "", "n_chunks": 0},
                )
                record["n_chunks"] += 1
            chunks = [StoredChunk(*fields) for fields in zip(ids, texts, metadatas, strict=True)]
            bot.store.commit(records, chunks)
    return time.perf_counter() - started


def questions_for(count: int, seed: int, bot: Any, vocabulary: Vocabulary) -> list[str]:
    """Questions made from stored chunks: plain, naming an outlet, a date, or two reports."""
    rng = random.Random(seed)
    articles = rng.sample(range(count // CHUNKS_PER_ARTICLE), 40)
    stored = bot.store.get_chunks([f"syn-{number:07d}#0" for number in articles])
    made = []
    for number, chunk in enumerate(stored):
        words = [w for w in chunk.text.rstrip(".").split() if w.islower()]
        topic = " ".join(rng.sample(words, 4))
        name = rng.choice(vocabulary.names)
        outlet = chunk.metadata["source"]
        day = chunk.metadata["published_at"][:10]
        kind = number % 4
        if kind == 0:
            made.append(f"What did {name} say about the {topic}?")
        elif kind == 1:
            made.append(f"What did {outlet} report about {topic}?")
        elif kind == 2:
            made.append(f"What happened with the {topic} on {day}?")
        else:
            other = rng.choice([o for o in OUTLETS if o != outlet])
            made.append(
                f"Does the report from {outlet} on {day} agree with {other}'s the next day "
                f"about the {topic}?"
            )
    return made


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


KINDS = ["plain", "outlet", "dated", "two reports"]


def measure(bot: Any, questions: list[str], rounds: int) -> dict[str, list[float]]:
    """Seconds per question: the old dense-only path (embed + one Chroma query) as a baseline,
    retrieval (understand + search), and a whole extractive ask; per kind of question too."""
    timings: dict[str, list[float]] = {"baseline": [], "retrieve": [], "ask": []}
    timings.update({f"retrieve {kind}": [] for kind in KINDS})
    retriever = bot.retriever
    for question in questions[:4]:  # warm up: model, caches
        bot.ask(question)
    for _ in range(rounds):
        for number, question in enumerate(questions):
            started = time.perf_counter()
            vector = bot.embedder.embed([question])[0]
            nearest = bot.store.nearest(vector.tolist(), bot.settings.k)
            bot.store.get_chunks([chunk_id for chunk_id, _ in nearest])
            timings["baseline"].append(time.perf_counter() - started)
            started = time.perf_counter()
            retriever.search(retriever.understand(question), bot.settings.k)
            seconds = time.perf_counter() - started
            timings["retrieve"].append(seconds)
            timings[f"retrieve {KINDS[number % 4]}"].append(seconds)
            started = time.perf_counter()
            bot.ask(question)
            timings["ask"].append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the 40 questions")
    parser.add_argument("--seed", type=int, default=20240207)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.basicConfig(level=logging.WARNING)
    from bot import Bot

    vocabulary = Vocabulary(args.seed)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.1f} at start; k=6; "
        f"{args.rounds} x 40 questions per size (10 plain, 10 naming an outlet, 10 dated, "
        "10 comparing two reports)"
    )
    print("times in ms; baseline = embed + one plain Chroma query (the dense-only retriever)")
    print(
        f"{'chunks':>8} {'fill s':>7} {'index s':>8} {'baseline p50':>13} {'p95':>6}"
        f" {'retrieve p50':>13} {'p95':>6} {'x base':>7} {'ask p50':>8} {'p95':>6}"
        + "".join(f" {'p95 ' + kind:>16}" for kind in KINDS)
    )
    for size in (int(s) for s in args.sizes.split(",")):
        data_dir = args.data_dir / str(size)
        bot = Bot.open(data_dir=data_dir)
        fill = 0.0
        if bot.store.count() != size:
            bot.reset()
            fill = fill_store(bot, size, args.seed, vocabulary)
        started = time.perf_counter()
        bot.warm()
        index_seconds = time.perf_counter() - started
        questions = questions_for(size, args.seed, bot, vocabulary)
        timings = measure(bot, questions, args.rounds)
        ms = {name: [1000 * t for t in values] for name, values in timings.items()}
        p50 = {name: statistics.median(values) for name, values in ms.items()}
        p95 = {name: percentile(values, 0.95) for name, values in ms.items()}
        print(
            f"{size:>8} {fill:>7.1f} {index_seconds:>8.1f} {p50['baseline']:>13.1f}"
            f" {p95['baseline']:>6.1f} {p50['retrieve']:>13.1f} {p95['retrieve']:>6.1f}"
            f" {p50['retrieve'] / p50['baseline']:>7.2f} {p50['ask']:>8.1f} {p95['ask']:>6.1f}"
            + "".join(f" {p95['retrieve ' + kind]:>16.1f}" for kind in KINDS)
        )


if __name__ == "__main__":
    main()
