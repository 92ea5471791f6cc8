"""Retrieval quality on the MultiHop dev questions: article-level Hits@k, any-hit and MRR@10.

    .venv/bin/python bench/retrieval_eval.py                 # dense / lexical / hybrid, plain and
                                                              # with question understanding
    .venv/bin/python bench/retrieval_eval.py --questions ../shared/eval/multihop_heldout.jsonl
    .venv/bin/python bench/retrieval_eval.py --only understood --modes hybrid --folds

The corpus is ingested with the real model into --data-dir (kept between runs, so a second run
only checks the fingerprints). Per question, the passages of `search(query, k)` are reduced to
their distinct articles in order; "share@k" is the share of the question's evidence articles among
them (MultiHop-RAG's Hits@k), "any@k" whether at least one is, and MRR@10 the reciprocal rank of
the first evidence article in the top 10. Null questions (no evidence) are left out.

Rows: "baseline" is the dense-only retriever this started from (the k nearest chunks in Chroma);
dense / lexical / hybrid are this retriever's modes (one chunk per article first, coverage-aware
fill) on the bare question; "+understood" adds outlets, dates and parts read from the question.
ms/query is after the first configuration has embedded each question once (vectors are cached).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EVAL = REPO.parent / "shared" / "eval"
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "newsbot-retrieval-eval"
# The corpus runs from September to December 2023; questions are read as if asked just after.
TODAY = date(2024, 1, 1)


def distinct_articles(passages: list[Any]) -> list[str]:
    return list(dict.fromkeys(p.article_id for p in passages))


def question_number(question_id: str) -> int:
    """The number in an id such as "mh-q042" (folds split on it)."""
    digits = "".join(c for c in question_id if c.isdigit())
    return int(digits) if digits else 0


def score_question(evidence: set[str], ranked: dict[int, list[str]]) -> dict[str, float]:
    # The metrics of `newsbot eval` (bot/evaluate.py), so both report the same figures.
    from bot.evaluate import any_hit_at_k, hits_at_k, reciprocal_rank

    row: dict[str, float] = {}
    for k, articles in ranked.items():
        row[f"share@{k}"] = hits_at_k(articles, evidence, k)
        row[f"any@{k}"] = float(any_hit_at_k(articles, evidence, k))
    row["mrr@10"] = reciprocal_rank(ranked.get(10, []), evidence, 10)
    return row


class CachedEmbedder:
    """The real embedder, remembering question vectors across configurations of one run."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self.identity = embedder.identity
        self._vectors: dict[str, Any] = {}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            for text, vector in zip(missing, self._embedder.embed(missing), strict=True):
                self._vectors[text] = vector
        return np.stack([self._vectors[text] for text in texts])


def run_config(
    bot: Any,
    embedder: Any,
    questions: list[dict],
    mode: str,
    understand: bool,
    ks: list[int],
    config: Any = None,
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    from bot.retrieve import Query, Retriever

    retriever = Retriever(
        bot.store, embedder, mode="dense" if mode == "baseline" else mode, config=config
    )
    retriever.refresh()
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    details = []
    seconds: list[float] = []
    for question in questions:
        evidence = set(question["evidence_ids"])
        if not evidence:
            continue
        ranked = {}
        for k in sorted(set(ks) | {10}):
            started = time.perf_counter()
            if mode == "baseline":
                # The dense-only retriever this work started from: k nearest chunks in Chroma.
                vector = embedder.embed([question["question"]])[0]
                nearest = [chunk_id for chunk_id, _ in bot.store.nearest(vector.tolist(), k)]
                read = {chunk.id: chunk for chunk in bot.store.get_chunks(nearest)}
                articles = (read[i].metadata.get("article_id") for i in nearest if i in read)
                ranked[k] = list(dict.fromkeys(str(article) for article in articles))
            else:
                query = (
                    retriever.understand(question["question"], today=TODAY)
                    if understand
                    else Query(question["question"])
                )
                ranked[k] = distinct_articles(retriever.search(query, k))
            seconds.append(time.perf_counter() - started)
        row = score_question(evidence, ranked)
        rows[question["question_type"]].append(row)
        rows["all"].append(row)
        details.append({"id": question["id"], **row, "top10": ranked[10]})
    table = {
        kind: {metric: statistics.fmean(r[metric] for r in kind_rows) for metric in kind_rows[0]}
        | {"n": len(kind_rows)}
        for kind, kind_rows in rows.items()
    }
    table["all"]["ms"] = 1000 * statistics.fmean(seconds)
    return table, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=EVAL / "multihop_corpus.jsonl")
    parser.add_argument("--questions", type=Path, default=EVAL / "multihop_dev.jsonl")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--modes", default="dense,lexical,hybrid")
    parser.add_argument("--ks", default="4,10")
    parser.add_argument("--only", choices=["plain", "understood"], default=None)
    parser.add_argument("--details", type=Path, help="write per-question results (JSON Lines)")
    parser.add_argument(
        "--folds",
        action="store_true",
        help="also print each configuration on even- and odd-numbered questions (tune on one "
        "half, check on the other)",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="override a RetrievalConfig knob: NAME=VALUE"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from dataclasses import fields

    from bot import Bot
    from bot.retrieve import RetrievalConfig

    types = {f.name: f.type for f in fields(RetrievalConfig)}
    overrides: dict[str, Any] = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in types:
            parser.error(f"unknown knob {name}; known: {', '.join(types)}")
        overrides[name] = int(value) if types[name] in ("int", int) else float(value)
    config = RetrievalConfig(**overrides)

    bot = Bot.open(data_dir=args.data_dir)
    report = bot.ingest([str(args.corpus)])
    print(
        f"corpus: {report.new} new, {report.unchanged} unchanged, {report.failed} failed; "
        f"{bot.store.count()} chunks in {args.data_dir}"
    )
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line]
    ks = [int(k) for k in args.ks.split(",")]
    configs = [("baseline", False)] if args.only in (None, "plain") else []
    configs += [
        (mode, understand)
        for understand in (False, True)
        for mode in args.modes.split(",")
        if args.only is None or args.only == ("understood" if understand else "plain")
    ]
    metrics = [f"share@{k}" for k in ks] + [f"any@{k}" for k in ks] + ["mrr@10"]
    kinds = ["all", "inference_query", "comparison_query", "temporal_query"]
    print(f"\n{args.questions.name}: article-level retrieval, null questions left out\n")
    header = f"{'config':<22}{'type':<18}{'n':>4}" + "".join(f"{m:>9}" for m in metrics)
    print(header + f"{'ms/query':>10}")  # question vectors are cached across configurations
    print("-" * (len(header) + 10))
    all_details = {}
    embedder = CachedEmbedder(bot.embedder)
    for mode, understand in configs:
        name = f"{mode}{'+understood' if understand else ''}"
        table, details = run_config(bot, embedder, questions, mode, understand, ks, config)
        all_details[name] = details
        for kind in kinds:
            if kind not in table:
                continue
            row = table[kind]
            line = (
                f"{name if kind == 'all' else '':<22}{kind.replace('_query', ''):<18}{row['n']:>4}"
            )
            line += "".join(f"{row[m]:>9.3f}" for m in metrics)
            if kind == "all":
                line += f"{row['ms']:>10.1f}"
            print(line)
        if args.folds:
            for fold, parity in (("even ids", 0), ("odd ids", 1)):
                rows = [d for d in details if question_number(d["id"]) % 2 == parity]
                line = f"{'':<22}{fold:<18}{len(rows):>4}"
                line += "".join(f"{statistics.fmean(r[m] for r in rows):>9.3f}" for m in metrics)
                print(line)
    if args.details:
        with args.details.open("w") as out:
            for name, details in all_details.items():
                for detail in details:
                    out.write(json.dumps({"config": name, **detail}) + "\n")


if __name__ == "__main__":
    main()
