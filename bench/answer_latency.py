"""How long the extractive answerer takes after retrieval, and what sentence embeddings would add.

    .venv/bin/python bench/answer_latency.py [--questions 200]

The answerer gets k=6 passages of ~200 word pieces (what the store returns at the default
settings), cut by the real chunker from the ../shared/eval MultiHop corpus grouped into long
articles, and answers the dev questions and our question set (samples/questions, many of them
"what did X say", whose speaker attribution is the costliest path). It prints p50/p95 of the
answer stage, then the wall and CPU time of embedding all of a question's candidate sentences in
one batched call (fp32 and int8): the figure that decided against sentence embeddings at
question time (docs/answering.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO.parent.parent / "shared" / "eval"
if not EVAL.is_dir():  # a checkout without ../shared: the bundled copy
    EVAL = REPO / "samples" / "eval"
OWN = REPO / "samples" / "questions" / "questions.jsonl"
ARTICLE_BODIES = 8  # corpus excerpts joined into one long article
K = 6


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--eval-dir", type=Path, default=EVAL)
    parser.add_argument("--embed-questions", type=int, default=40)
    args = parser.parse_args()

    from bot.answer import _split, extractive_answer, sentence_pool
    from bot.retrieve import Passage
    from bot.settings import load_settings
    from index.article import Article
    from index.chunk import chunk_article
    from index.embed import TokenCounter, load_embedder

    settings = load_settings()
    rows = [json.loads(line) for line in (args.eval_dir / "multihop_corpus.jsonl").open()]
    questions = [json.loads(line) for line in (args.eval_dir / "multihop_dev.jsonl").open()]
    questions = questions[: args.questions]
    # Our question set adds "what did X say" questions, whose speaker attribution costs most.
    questions += [json.loads(line) for line in OWN.open()]
    count = TokenCounter(settings.embedding_model)

    passages: list[Passage] = []
    for start in range(0, len(rows), ARTICLE_BODIES):
        group = rows[start : start + ARTICLE_BODIES]
        article = Article(
            id=f"bench-{start}",
            title=group[0]["title"],
            body="\n".join(row["body"] for row in group),
            source=group[0]["source"],
            published_at=datetime.fromisoformat(group[0]["published_at"]).astimezone(UTC),
        )
        for chunk in chunk_article(
            article,
            count_tokens=count,
            max_model_tokens=256,
            chunk_tokens=settings.chunk_tokens,
            overlap_sentences=settings.chunk_overlap,
        ):
            passages.append(
                Passage(
                    chunk.id,
                    chunk.text,
                    {
                        "article_id": article.id,
                        "title": article.title,
                        "source": article.source,
                        "published_at": article.published_at.isoformat(),
                        "chunk_start": chunk.start,
                        "chunk_end": chunk.end,
                        "position": chunk.position,
                    },
                    score=0.03,
                    dense_score=0.5,
                )
            )

    def top_k(question: str) -> list[Passage]:
        words = set(question.lower().split())
        return sorted(passages, key=lambda p: -len(words & set(p.text.lower().split())))[:K]

    chosen = [(row["question"], top_k(row["question"])) for row in questions]
    sentences = [len(sentence_pool(found).sentences) for _, found in chosen]
    for question, found in chosen[:5]:  # warm caches (stemmer, regexes)
        extractive_answer(question, found, max_sentences=3, threshold=settings.refusal_threshold)
    print(f"passages per question: {K}, ~{settings.chunk_tokens} word pieces each")
    print(f"candidate sentences per question: median {statistics.median(sentences):.0f}")
    for label, cold in (("passages not seen before", True), ("passages split before", False)):
        seconds, cpu = [], []
        for question, found in chosen:
            if cold:
                _split.cache_clear()
            started, started_cpu = time.perf_counter(), time.process_time()
            extractive_answer(
                question, found, max_sentences=3, threshold=settings.refusal_threshold
            )
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        print(
            f"extractive answer stage, {label}, {len(seconds)} questions: "
            f"wall p50 {percentile(seconds, 0.5) * 1000:.1f} / p95 "
            f"{percentile(seconds, 0.95) * 1000:.1f} ms, CPU p50 "
            f"{percentile(cpu, 0.5) * 1000:.1f} / p95 {percentile(cpu, 0.95) * 1000:.1f} ms"
        )

    # One batched call over every candidate sentence of a question (what a sentence-similarity
    # feature would cost): wall and CPU time of the calling process, as the machine is loaded.
    for precision in ("fp32", "int8"):
        embedder = load_embedder(settings.model_copy(update={"embedding_precision": precision}))
        embedder.embed([row[0] for row in chosen[:3]])
        wall, cpu = [], []
        for _, found in chosen[: args.embed_questions]:
            texts = [s.text for s in sentence_pool(found).sentences]
            started, started_cpu = time.perf_counter(), time.process_time()
            embedder.embed(texts)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        print(
            f"embedding all candidate sentences, one call ({settings.embedding_backend} "
            f"{precision}, {len(wall)} questions): wall p50 {percentile(wall, 0.5) * 1000:.0f} / "
            f"p95 {percentile(wall, 0.95) * 1000:.0f} ms, CPU p50 "
            f"{percentile(cpu, 0.5) * 1000:.0f} / p95 {percentile(cpu, 0.95) * 1000:.0f} ms"
        )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    print(f"machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
