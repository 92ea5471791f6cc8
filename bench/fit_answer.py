"""Fit the extractive answerer's sentence scorer and its refusal cut, and report them on folds
they were not fitted or tuned on.

    .venv/bin/python bench/fit_answer.py [--folds 5] [--write]

Labelled sentences come from the dev part of ../shared/eval (bundled as samples/eval):

- MultiHop: each question is retrieved as the bot does (hybrid, k=6, over the whole corpus);
  a candidate sentence is positive when its article is one of the question's evidence articles.
  Null questions have no positive sentence.
- RGB: each question with its own passages at noise 0, 0.4 and 0.8 and noise only (the mixes
  and seeds of `newsbot eval`); a sentence is positive when it holds the gold answer.
- Our training questions (samples/training: "what did X say" over two articles of our own and
  the MultiHop corpus), retrieved from the same store; positive when it holds a gold phrase.

Questions are split into folds (by question id; an RGB question's four settings stay in one
fold). For each fold a logistic regression (scikit-learn, a dev dependency) is fitted on the
other folds' sentences, the refusal cut is chosen on the other folds' questions, and the held-out
questions are answered by the real extractive answerer with that model and cut. The figures
printed are those held-out answers, pooled over the folds. `--write` then fits on everything,
chooses the cut the same way, and writes bot/answer_model.json (what the bot reads at run time).
Our question set samples/questions is never read here: it is the test set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "samples" / "eval"
TRAINING = REPO / "samples" / "training"
K = 6
# Goal of issue 17, checked when the cut is chosen on training folds (with a margin, so that
# the held-out folds have room): answerable MultiHop questions are refused at most this often.
MAX_REFUSED_ANSWERABLE = 0.03
C = 1.0  # scikit-learn's default regularisation; the fold figures did not move with 0.3 or 3


@dataclass
class Case:
    """One question asked over one set of passages."""

    question_id: str
    setting: str  # mh-answerable, mh-null, rgb-0.0, rgb-0.4, rgb-0.8, rgb-noise
    question: str
    passages: list[Any]
    parts: tuple[Any, ...]
    evidence: frozenset[str] = frozenset()
    gold: Any = None
    features: list[tuple[Any, dict[str, float]]] | None = None
    labels: list[int] | None = None


def multihop_cases(settings: Any) -> list[Case]:
    """MultiHop dev questions and our training questions (samples/training), retrieved from one
    store of the MultiHop corpus and the training articles."""
    from bot.evaluate import read_corpus, read_jsonl, throwaway_bot

    questions = read_jsonl(EVAL / "multihop_dev.jsonl")
    articles = read_corpus(
        [str(EVAL / "multihop_corpus.jsonl"), str(TRAINING / "articles")], settings
    )
    cases = []
    with throwaway_bot(settings) as bot:
        bot.ingest(articles)
        for row in read_jsonl(TRAINING / "questions.jsonl"):
            query = bot.retriever.understand(row["question"])
            cases.append(
                Case(
                    row["id"],
                    "own-null" if row.get("refuse") else "own-answerable",
                    row["question"],
                    bot.retriever.search(query, K),
                    tuple(query.parts),
                    gold=row.get("answer") or [],
                )
            )
        for row in questions:
            query = bot.retriever.understand(row["question"])
            passages = bot.retriever.search(query, K)
            evidence = frozenset(row.get("evidence_ids") or ())
            cases.append(
                Case(
                    row["id"],
                    "mh-answerable" if evidence else "mh-null",
                    row["question"],
                    passages,
                    tuple(query.parts),
                    evidence=evidence,
                    gold=row.get("answer"),
                )
            )
    return cases


def rgb_cases(settings: Any) -> list[Case]:
    import numpy as np

    from bot.evaluate import RGB_NOISE_RATIOS, read_jsonl, rgb_setting
    from bot.retrieve import Passage
    from index.embed import load_embedder

    embedder = load_embedder(settings)
    cases = []
    for row in read_jsonl(EVAL / "rgb_dev.jsonl"):
        question_id, query = str(row["id"]), str(row["query"])
        positive, negative = list(row.get("positive") or []), list(row.get("negative") or [])
        settings_: list[tuple[str, list[tuple[str, bool]]]] = []
        for ratio in RGB_NOISE_RATIOS:
            mixed = rgb_setting(question_id, ratio, positive, negative, ratio)
            settings_.append((f"rgb-{ratio}", mixed))
        if negative:
            mixed = rgb_setting(question_id, "noise-only", [], negative, 1.0)
            settings_.append(("rgb-noise", mixed))
        for setting, mixed in settings_:
            texts = [text for text, _ in mixed if text.strip()]
            if not texts:
                continue
            vectors = embedder.embed([query, *texts])
            similarity = (
                vectors[1:]
                @ vectors[0]
                / (np.linalg.norm(vectors[1:], axis=1) * np.linalg.norm(vectors[0]) + 1e-9)
            )
            order = sorted(range(len(texts)), key=lambda i: -similarity[i])
            passages = [
                Passage(
                    chunk_id=f"{question_id}-{i}#0",
                    text=texts[i],
                    metadata={
                        "article_id": f"{question_id}-{i}",
                        "title": "",
                        "source": "RGB",
                        "chunk_start": 0,
                        "chunk_end": len(texts[i]),
                        "position": 0,
                    },
                    score=1.0 / (60 + rank),
                    dense_score=float(similarity[i]),
                )
                for rank, i in enumerate(order)
            ]
            cases.append(Case(question_id, setting, query, passages, (), gold=row["answer"]))
    return cases


def featurise(case: Case) -> None:
    from bot.answer import read_asked, sentence_features, sentence_pool
    from bot.evaluate import contains_phrase, rgb_answer_matches

    question = read_asked(case.question, case.passages, case.parts)
    found = sentence_features(question, sentence_pool(case.passages))
    case.features = [(sentence, values) for sentence, values, _ in found]
    if case.setting.startswith("mh"):
        case.labels = [int(s.article_id in case.evidence) for s, _ in case.features]
    elif case.setting.startswith("own"):
        case.labels = [
            int(any(contains_phrase(s.text, g) for g in case.gold)) for s, _ in case.features
        ]
    else:
        case.labels = [int(rgb_answer_matches(s.text, case.gold)) for s, _ in case.features]


def fold_of(case: Case, folds: int) -> int:
    return zlib.crc32(case.question_id.encode()) % folds


def _logistic(
    rows: list[list[float]], labels: list[int], names: list[str], weights: list[float] | None = None
) -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from bot.answer import Linear

    fitted = LogisticRegression(C=C, max_iter=5000)
    fitted.fit(np.array(rows), np.array(labels), sample_weight=weights)
    weights = tuple(float(w) for w in fitted.coef_[0])
    return Linear(tuple(names), weights, float(fitted.intercept_[0]))


ANSWERABLE = ("mh-answerable", "rgb-0.0", "rgb-0.4", "rgb-0.8", "own-answerable")


def ranked(case: Case, sentence: Any) -> list[tuple[float, dict[str, float]]]:
    found = [(sentence.probability(values), values) for _, values in case.features or []]
    return sorted(found, key=lambda item: -item[0])


def fit(cases: list[Case]) -> Any:
    """The sentence model on the cases' sentences, then the question model on the cases'
    best evidence as that sentence model ranks it, then the cut, all from `cases` alone."""
    from bot.answer import SentenceModel, question_features

    rows = [[v.get(n, 0.0) for n in FEATURES] for c in cases for _, v in c.features or []]
    labels = [label for c in cases for label in c.labels or []]
    # MultiHop, RGB and our training questions weigh the same in the sentence model (MultiHop
    # has the most sentences, and its labels are whole articles; RGB's are the sentences that
    # hold the answer; ours are the only "what did X say" questions, which set the speaker
    # features' weights).
    sources = [c.setting[:2] for c in cases for _ in c.features or []]
    share = {source: sources.count(source) for source in set(sources)}
    weights = [len(sources) / (len(share) * share[source]) for source in sources]
    sentence = _logistic(rows, labels, FEATURES, weights)
    questions = [question_features(ranked(c, sentence)) for c in cases]
    rows = [[q.get(n, 0.0) for n in QUESTION_FEATURES] for q in questions]
    # Each dataset and each answer (answerable or not) weighs the same in the question model:
    # 28 MultiHop null questions would otherwise count for little beside 160 RGB settings.
    groups = [(c.setting[:2], c.setting in ANSWERABLE) for c in cases]
    sizes = {group: groups.count(group) for group in set(groups)}
    balance = [len(cases) / (len(sizes) * sizes[group]) for group in groups]
    labels = [int(answerable) for _, answerable in groups]
    question = _logistic(rows, labels, QUESTION_FEATURES, balance)
    model = SentenceModel(sentence, question, 0.0)
    return SentenceModel(sentence, question, choose_cut(cases, model))


def confidence(case: Case, model: Any) -> float:
    from bot.answer import question_features

    return float(model.question.probability(question_features(ranked(case, model.sentence))))


def choose_cut(cases: list[Case], model: Any) -> float:
    """The cut that refuses the most null questions and RGB noise-only questions while
    refusing answerable ones at most MAX_REFUSED_* (all measured on `cases`)."""
    scored = [(c.setting, confidence(c, model)) for c in cases]
    candidates = sorted({round(p, 4) for _, p in scored} | {0.0})
    best, best_value = 0.0, -1.0
    for cut in candidates:

        def refused(setting: str, cut: float = cut) -> float:
            values = [p < cut for s, p in scored if s == setting]
            return sum(values) / len(values) if values else 0.0

        if refused("mh-answerable") > MAX_REFUSED_ANSWERABLE:
            continue
        # Refusals gained on questions without an answer, less twice those lost on questions
        # with one (RGB with its answer among the passages).
        value = refused("mh-null") + refused("rgb-noise")
        value -= 2 * (refused("rgb-0.0") + refused("rgb-0.4")) / 2
        if value > best_value:
            best, best_value = cut, value
    return best


def answer_figures(cases: list[Case], models: dict[int, Any], folds: int) -> dict[str, float]:
    """Answer every case with the model of the fold it was held out of; pooled figures."""
    from bot.answer import extractive_answer
    from bot.evaluate import contains_phrase, is_yes_no, rgb_answer_matches

    by: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        by.setdefault(name, []).append(value)

    for case in cases:
        model = models[fold_of(case, folds)]
        draft = extractive_answer(
            case.question,
            case.passages,
            max_sentences=3,
            threshold=model.cut,
            parts=case.parts,
            model=model,
        )
        cited = {c.article_id for c in draft.citations} if not draft.refused else set()
        if case.setting == "mh-null":
            add("MultiHop null refused", draft.refused)
        elif case.setting == "mh-answerable":
            add("MultiHop answerable refused", draft.refused)
            add("MultiHop cites evidence", bool(cited & case.evidence))
            add("MultiHop evidence share cited", len(cited & case.evidence) / len(case.evidence))
            gold = str(case.gold or "")
            if gold and not is_yes_no(gold):
                bodies = " ".join(p.text for p in case.passages if p.article_id in case.evidence)
                if contains_phrase(bodies, gold):
                    add(
                        "MultiHop gold in text",
                        not draft.refused and contains_phrase(draft.text, gold),
                    )
        elif case.setting == "own-answerable":
            add(
                "own training: answered right",
                not draft.refused and any(contains_phrase(draft.text, g) for g in case.gold),
            )
        elif case.setting == "own-null":
            add("own training: unanswerable refused", draft.refused)
        elif case.setting == "rgb-noise":
            add("RGB noise only refused", draft.refused)
        else:
            add(
                f"RGB accuracy noise {case.setting[4:]}",
                not draft.refused and rgb_answer_matches(draft.text, case.gold),
            )
    return {name: sum(values) / len(values) for name, values in sorted(by.items())}


FEATURES = [
    "own",
    "own_plain",
    "context",
    "dense",
    "rank",
    "names",
    "names_here",
    "typed",
    "untyped",
    "shaped",
    "year_match",
    "year_other",
    "statement",
    "speaker",
    "say_unsaid",
    "own_gap",
    "dense_gap",
    "typed_own",
    "typed_names",
    *(f"kind_{name}" for name in ("own", "own_plain", "context", "dense", "rank", "names_here",
                                  "own_gap")),
]  # fmt: skip


# The refusal model reads one figure: the best constrained evidence (bot.answer._evidence).
# With the best sentence probability, or the names, years and speaker features beside it, it
# refused fewer null MultiHop questions on the held-out folds (0.46-0.64 vs 0.93 at the same
# answerable refusals): RGB's on-topic noise cannot be told from its answers by these features,
# and the fit traded MultiHop's separation away for it. The best lexical evidence and the best
# similarity as two features (the model weighing them instead of the 0.6/0.4 mix) were a wash
# held out and made the plumbing tests' hashing embedder refuse the sample question: see
# docs/answering.md.
QUESTION_FEATURES = ["max_evidence"]


def as_dict(linear: Any) -> dict[str, Any]:
    """A fitted bot.answer.Linear as bot/answer_model.json holds it."""
    return {
        "features": list(linear.features),
        "weights": [round(w, 4) for w in linear.weights],
        "bias": round(linear.bias, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write bot/answer_model.json")
    parser.add_argument("--cache", type=Path, help="pickle the retrieved cases here (reused)")
    args = parser.parse_args()

    from bot.settings import load_settings

    settings = load_settings()
    if args.cache and args.cache.exists():
        import pickle

        cases = pickle.loads(args.cache.read_bytes())
    else:
        cases = multihop_cases(settings) + rgb_cases(settings)
        if args.cache:
            import pickle

            args.cache.write_bytes(pickle.dumps(cases))
    for case in cases:
        featurise(case)
    print(
        f"{len(cases)} cases, {sum(len(c.labels or []) for c in cases)} labelled sentences, "
        f"{sum(sum(c.labels or []) for c in cases)} positive"
    )
    models = {}
    for fold in range(args.folds):
        models[fold] = fit([c for c in cases if fold_of(c, args.folds) != fold])
    for setting in sorted({c.setting for c in cases}):
        values = [
            confidence(c, models[fold_of(c, args.folds)]) for c in cases if c.setting == setting
        ]
        print(f"  confidence {setting:14} median {statistics.median(values):.3f}")
    held_out = answer_figures(cases, models, args.folds)
    by_fold = [
        answer_figures([c for c in cases if fold_of(c, args.folds) == fold], models, args.folds)
        for fold in range(args.folds)
    ]
    print(f"held-out figures ({args.folds} folds by question; model and cut fitted on the rest):")
    print(f"  {'':36} {'pooled':>6} " + " ".join(f"{f'f{f}':>5}" for f in range(args.folds)))
    for name, value in held_out.items():
        folds = " ".join(f"{fold.get(name, float('nan')):5.2f}" for fold in by_fold)
        print(f"  {name:36} {value:6.3f} {folds}")
    cuts = [m.cut for m in models.values()]
    print(f"  cut per fold: {', '.join(f'{c:.3f}' for c in cuts)}")
    final = fit(cases)
    print(f"all data: cut {final.cut:.3f}")
    for linear in (final.sentence, final.question):
        for name, weight in zip(linear.features, linear.weights, strict=True):
            print(f"  {name:12} {weight:+.3f}")
        print(f"  {'bias':12} {linear.bias:+.3f}")
    if args.write:
        data = {
            "sentence": as_dict(final.sentence),
            "question": as_dict(final.question),
            "cut": round(final.cut, 4),
            "fitted": date.today().isoformat(),
            "by": "bench/fit_answer.py on samples/eval dev (MultiHop + RGB); see docs/answering.md",
            "held_out": {name: round(value, 3) for name, value in held_out.items()},
            "cut_per_fold": [round(c, 4) for c in cuts],
            "median_cut": round(statistics.median(cuts), 4),
        }
        target = REPO / "bot" / "answer_model.json"
        target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
