"""`newsbot eval` on MultiHop-RAG, RGB or our own question sets (README); bench/ reuses metrics."""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bot.errors import NewsbotError
from bot.models import CITATION_MARKER, Answer
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.core import Bot
    from index.article import Article

# Ranks are scored at these cut-offs (MultiHop-RAG reports Hits@4/@10 and MRR@10).
HIT_CUTOFFS = (1, 4, 10)
MRR_CUTOFF = 10
# RGB as in its paper: five passages a question, the noise share of them off-topic.
RGB_PASSAGES = 5
RGB_NOISE_RATIOS = (0.0, 0.4, 0.8)
RGB_SEED = 20240207
NULL_TYPE = "null_query"
RETRIEVER_MODES = ("dense", "lexical", "hybrid")

ProgressCallback = Callable[[str, int, int], None]  # progress(stage, done, total)

DatasetFormat = Literal["multihop", "rgb", "questions"]


def distinct(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def hits_at_k(ranked: Sequence[str], evidence: Collection[str], k: int) -> float:
    """Share of the evidence articles found among the first k distinct ranked articles."""
    if not evidence:
        raise ValueError("hits_at_k needs at least one evidence article")
    return len(set(distinct(ranked)[:k]) & set(evidence)) / len(set(evidence))


def any_hit_at_k(ranked: Sequence[str], evidence: Collection[str], k: int) -> bool:
    return bool(set(distinct(ranked)[:k]) & set(evidence))


def reciprocal_rank(ranked: Sequence[str], evidence: Collection[str], k: int = MRR_CUTOFF) -> float:
    """1 / rank of the first evidence article among the first k distinct ones, else 0."""
    for rank, article_id in enumerate(distinct(ranked)[:k], start=1):
        if article_id in evidence:
            return 1.0 / rank
    return 0.0


def mean(values: Iterable[float | bool]) -> float | None:
    """Arithmetic mean, or None for no values (a metric that does not apply is not a zero)."""
    items = [float(value) for value in values]
    return sum(items) / len(items) if items else None


def normalise(text: str) -> str:
    """Lower case, one space between words: how gold answers are compared with answer text."""
    return " ".join(text.lower().split())


def is_yes_no(gold: str) -> bool:
    return normalise(gold).rstrip(".!") in ("yes", "no")


def contains_phrase(text: str, phrase: str) -> bool:
    wanted = normalise(phrase).rstrip(".")
    return bool(wanted) and wanted in normalise(text)


def yes_no_matches(text: str, gold: str) -> bool:
    """The first yes/no word of the answer is the gold one (for LLM answerers only)."""
    found = re.search(r"\b(yes|no)\b", text, flags=re.IGNORECASE)
    return found is not None and found.group(1).lower() == normalise(gold).rstrip(".!")


def rgb_answer_matches(text: str, gold: str | Sequence[Any]) -> bool:
    """RGB's rule: every part of the gold answer appears; a list part accepts any alternative."""
    if isinstance(gold, str):
        return contains_phrase(text, gold)
    parts = [[part] if isinstance(part, str) else part for part in gold]
    return bool(parts) and all(any(contains_phrase(text, alt) for alt in part) for part in parts)


def quote_is_verbatim(body: str | None, start: int, end: int, quote: str) -> bool:
    return body is not None and 0 <= start <= end <= len(body) and body[start:end] == quote


_LEADING_MARKERS = re.compile(rf"^(?:\s*{CITATION_MARKER.pattern})+")


def answer_sentences(text: str) -> list[str]:
    """The answer's sentences, each keeping its [n] (a splitter starts the next one with them)."""
    from index.chunk import split_sentences

    sentences: list[str] = []
    for span in split_sentences(text):
        piece = text[span.start : span.end]
        leading = _LEADING_MARKERS.match(piece)
        if leading and sentences:
            sentences[-1] += leading.group()
            piece = piece[leading.end() :].strip()
        if piece:
            sentences.append(piece)
    return sentences


# "X: the articles don't say." makes no claim, so it needs no citation.
_NO_CLAIM = re.compile(r"\barticles (?:don't|do not) say\b", re.IGNORECASE)


def cited_sentence_share(text: str) -> float | None:
    """Share of the claims (sentences not saying the articles are silent) carrying a [n]."""
    claims = [sentence for sentence in answer_sentences(text) if not _NO_CLAIM.search(sentence)]
    return mean(bool(CITATION_MARKER.search(sentence)) for sentence in claims)


def stratified_subset(rows: Sequence[dict[str, Any]], limit: int, key: str) -> list[dict[str, Any]]:
    """At most `limit` rows, each `key` value in proportion to its share (largest remainder)."""
    if limit >= len(rows):
        return list(rows)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        groups[str(row.get(key, ""))].append(index)
    quotas = {name: limit * len(members) / len(rows) for name, members in groups.items()}
    taken = {name: math.floor(quota) for name, quota in quotas.items()}
    by_remainder = sorted(groups, key=lambda name: (-(quotas[name] - taken[name]), name))
    for name in by_remainder[: limit - sum(taken.values())]:
        taken[name] += 1
    chosen = sorted(index for name, members in groups.items() for index in members[: taken[name]])
    return [rows[index] for index in chosen]


def rgb_setting(
    question_id: object, setting: object, positive: Sequence[str], negative: Sequence[str],
    noise_ratio: float,
) -> list[tuple[str, bool]]:  # fmt: skip
    """RGB's noise setting: shuffled (text, positive?) pairs, the noise_ratio share negative,
    seeded by question and setting, so the eval and the refit (bench/fit_answer.py) mix alike."""
    rng = random.Random(f"{RGB_SEED}:{question_id}:{setting}")
    negatives = min(round(noise_ratio * RGB_PASSAGES), len(negative))
    positives = min(RGB_PASSAGES - round(noise_ratio * RGB_PASSAGES), len(positive))
    mixed = [(text, True) for text in rng.sample(list(positive), positives)]
    mixed += [(text, False) for text in rng.sample(list(negative), negatives)]
    rng.shuffle(mixed)
    return mixed


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


@dataclass(frozen=True)
class RetrievalScores:
    """Article-level retrieval over the questions that have evidence (not null_query)."""

    questions: int
    hits_at_1: float | None  # share of a question's evidence in the top k, averaged
    hits_at_4: float | None
    hits_at_10: float | None
    any_at_1: float | None  # share of questions with any evidence in the top k
    any_at_4: float | None
    any_at_10: float | None
    mrr_at_10: float | None


@dataclass(frozen=True)
class AnswerScores:
    answerable: int  # questions with evidence
    unanswerable: int  # null_query questions
    evidence_cited_any: float | None  # answers citing at least one evidence article
    evidence_cited_share: float | None  # share of the evidence articles cited, averaged
    accuracy: float | None  # gold phrase in the answer text, over `accuracy_questions`
    accuracy_questions: int
    refused_answerable: float | None  # lower is better
    refused_unanswerable: float | None  # higher is better
    citations: int
    citations_verbatim: float | None
    sentences_cited: float | None  # share of answer sentences carrying a [n]
    seconds_per_question: float | None


@dataclass(frozen=True)
class QuestionResult:
    id: str
    question_type: str
    # k -> the distinct articles of the retriever's top k chunks when asked for k (a retriever
    # may share out a small k among a question's parts, so top 4 is not the head of top 10).
    ranked_at_k: dict[int, tuple[str, ...]]
    # The defaults are a retrieval-only run's: no answer asked for.
    refused: bool = False
    answer: str = ""
    cited_articles: tuple[str, ...] = ()
    correct: bool | None = None  # None when the gold answer is not scored for this answerer
    verbatim: tuple[bool, ...] = ()  # per citation
    sentences_cited: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class MultiHopResult:
    retriever: str
    retrieval: RetrievalScores
    retrieval_by_type: dict[str, RetrievalScores]
    answers: AnswerScores | None  # None for a retrieval-only run
    answers_by_type: dict[str, AnswerScores]
    questions: tuple[QuestionResult, ...] = ()


@dataclass(frozen=True)
class RgbResult:
    retriever: str
    questions: int
    accuracy_by_noise: dict[str, float | None]  # noise ratio ("0.4") -> share answered right
    rejection_rate: float | None  # only noise given: share refused (higher is better)
    counterfactual_fake: float | None  # falsified passages: share repeating the fake answer
    counterfactual_correct: float | None  # ... share still giving the true answer
    citations_verbatim: float | None
    seconds: float


@dataclass(frozen=True)
class KindScores:
    """A question set of our own (samples/questions), one kind of question."""

    questions: int
    correct: float | None  # refused when it should be, else answered with a gold phrase
    refused: float | None  # share refused (right for `refusal`, wrong for the others)
    citations_verbatim: float | None


@dataclass(frozen=True)
class OwnQuestion:
    id: str
    kind: str
    question: str
    standalone_question: str
    refused: bool
    correct: bool
    answer: str


@dataclass(frozen=True)
class QuestionSetResult:
    by_kind: dict[str, KindScores]  # "all" first, then each kind
    questions: tuple[OwnQuestion, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    format: DatasetFormat
    corpus: str | None
    answerer: str  # "extractive" or the provider:model of the LLM
    embedding: dict[str, Any]
    questions: int
    limit: int | None
    multihop: tuple[MultiHopResult, ...] = ()
    rgb: RgbResult | None = None
    questions_by_kind: QuestionSetResult | None = None
    ingest_seconds: float = 0.0
    seconds: float = 0.0
    # An LLM answerer's fallbacks to the extractive answer: reason -> questions (docs/answering.md)
    fallbacks: dict[str, int] = field(default_factory=dict)
    finished_at: str = field(default_factory=lambda: datetime.now().astimezone().isoformat())

    def result(self, retriever: str) -> MultiHopResult:
        return {item.retriever: item for item in reversed(self.multihop)}[retriever]

    def to_dict(self) -> dict[str, Any]:
        """The fields, nested results too, floats rounded."""
        rounded = {name: round(getattr(self, name), 2) for name in ("ingest_seconds", "seconds")}
        return _rounded(asdict(self)) | rounded


_RETRIEVAL_HEAD = ["Hits@1", "Hits@4", "Hits@10", "any@4", "any@10", "MRR@10"]
_RETRIEVAL_FIELDS = "hits_at_1 hits_at_4 hits_at_10 any_at_4 any_at_10 mrr_at_10".split()
_ANSWER_HEAD = ["cites evidence", "evidence share", "accuracy", "accuracy n"]
_ANSWER_HEAD += ["refuses answerable", "refuses null", "verbatim", "sentences cited", "s/question"]
_ANSWER_FIELDS = """evidence_cited_any evidence_cited_share accuracy accuracy_questions
    refused_answerable refused_unanswerable citations_verbatim sentences_cited
    seconds_per_question""".split()


def _cell(value: float | int | str | None, name: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, int | str):
        return str(value)
    return f"{value:.{2 if name.startswith('seconds') else 3}f}"


def rich_tables(report: EvalReport) -> list[Any]:
    from rich.table import Table

    tables = []

    def add(title: str, head: list[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            table = Table(title=title, title_justify="left")
            for index, name in enumerate(head):
                table.add_column(name, justify="left" if index < 2 else "right")
            for row in rows:
                table.add_row(*(_cell(value) for value in row))
            tables.append(table)

    retrieval, answers = [], []
    for item in report.multihop:
        for name, scores in [("all", item.retrieval), *sorted(item.retrieval_by_type.items())]:
            cells = [getattr(scores, field) for field in _RETRIEVAL_FIELDS]
            retrieval.append([item.retriever, name, scores.questions, *cells])
        if item.answers is not None:
            for name, a in [("all", item.answers), *sorted(item.answers_by_type.items())]:
                cells = [_cell(getattr(a, field), field) for field in _ANSWER_FIELDS]
                answers.append([item.retriever, name, a.answerable + a.unanswerable, *cells])
    add("Retrieval (article level)", ["retriever", "type", "n", *_RETRIEVAL_HEAD], retrieval)
    add(f"Answers ({report.answerer})", ["retriever", "type", "n", *_ANSWER_HEAD], answers)
    if rgb := report.rgb:
        head = ["retriever", "n", *(f"accuracy, noise {ratio}" for ratio in rgb.accuracy_by_noise)]
        head += ["refuses noise only", "repeats fake answer", "still correct", "verbatim"]
        row = [rgb.retriever, rgb.questions, *rgb.accuracy_by_noise.values(), rgb.rejection_rate]
        row += [rgb.counterfactual_fake, rgb.counterfactual_correct, rgb.citations_verbatim]
        add(f"RGB ({report.answerer})", head, [row])
    if report.questions_by_kind:
        rows = [
            [kind, k.questions, k.correct, k.refused, k.citations_verbatim]
            for kind, k in report.questions_by_kind.by_kind.items()
        ]
        head = ["kind", "n", "right", "refused", "verbatim"]
        add(f"Answers per kind ({report.answerer})", head, rows)
    add("Answered extractively instead", ["why", "questions"], sorted(report.fallbacks.items()))
    return tables


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise NewsbotError(
                        f"{path}:{number}: not a JSON line ({exc.msg})",
                        hint="eval datasets are JSON Lines, one object a line",
                    ) from None
                if not isinstance(row, dict):
                    raise NewsbotError(f"{path}:{number}: expected a JSON object")
                rows.append(row)
    except OSError as exc:
        raise NewsbotError(
            f"cannot read {path}: {exc.strerror or exc}", hint="check the dataset path"
        ) from None
    return rows


def detect_format(rows: Sequence[dict[str, Any]], path: Path) -> DatasetFormat:
    if not rows:
        raise NewsbotError(f"{path} holds no questions", hint="pass a questions file")
    first = rows[0]
    if {"question", "evidence_ids"} <= first.keys():
        return "multihop"
    if {"query", "positive", "negative"} <= first.keys():
        return "rgb"
    if {"question", "kind"} <= first.keys():
        return "questions"
    if "body" in first:
        raise NewsbotError(
            f"{path} is a corpus of articles, not questions",
            hint="pass the questions file (e.g. multihop_dev.jsonl); the corpus is found beside it",
        )
    raise NewsbotError(
        f"{path}: unknown dataset format (fields: {', '.join(sorted(first))})",
        hint="expected MultiHop questions (question, evidence_ids) or RGB (query, positive)",
    )


def question_set_corpus(questions: Path, corpus: str | Path | None) -> list[str]:
    """`corpus`, else the paths in `corpus.txt` beside the questions (# starts a comment)."""
    if corpus is not None:
        return [str(Path(corpus).expanduser())]
    listing = questions.parent / "corpus.txt"
    if not listing.is_file():
        raise NewsbotError(
            f"no corpus for {questions.name}: {listing} does not exist",
            hint="list the articles' paths in corpus.txt beside the questions or pass --corpus",
        )
    lines = [line.split("#", 1)[0].strip() for line in listing.read_text("utf-8").splitlines()]
    return [str((listing.parent / line).resolve()) for line in lines if line]


def find_corpus(questions: Path, corpus: str | Path | None) -> Path:
    path = Path(corpus).expanduser() if corpus else questions.parent / "multihop_corpus.jsonl"
    if not path.is_file():
        raise NewsbotError(
            f"no corpus for {questions.name}: {path} does not exist",
            hint="put multihop_corpus.jsonl beside the questions or pass --corpus FILE",
        )
    return path


@contextmanager
def throwaway_bot(settings: Settings) -> Iterator[Bot]:
    from bot.core import Bot
    from index.embed import load_embedder

    # Loaded under the caller's settings first (cached per process): the throwaway Bot reuses
    # it, and exported models stay in the caller's data_dir instead of exporting again.
    load_embedder(settings)
    with tempfile.TemporaryDirectory(prefix="newsbot-eval-", ignore_cleanup_errors=True) as folder:
        yield Bot.open(settings.model_copy(update={"data_dir": Path(folder)}))


def use_retriever(bot: Bot, mode: str) -> None:
    from bot.retrieve import Retriever

    if bot.retriever.mode != mode:  # same tuning as the bot's own retriever
        config = bot.retriever.config
        bot.retriever = Retriever(bot.store, bot.embedder, mode=mode, config=config)  # type: ignore[arg-type]


def _counted(
    rows: Sequence[dict[str, Any]], stage: str, progress: ProgressCallback
) -> Iterator[dict[str, Any]]:
    for done, row in enumerate(rows):
        progress(stage, done, len(rows))
        yield row
    progress(stage, len(rows), len(rows))


def run_eval(
    dataset: str | Path,
    *,
    settings: Settings,
    retrievers: Sequence[str] = ("hybrid",),
    limit: int | None = None,
    corpus: str | Path | None = None,
    progress: ProgressCallback | None = None,
    answer: bool = True,
) -> EvalReport:
    """Evaluate the bot (as `settings` configure it) on a MultiHop or RGB questions file: each of
    `retrievers` ("dense", "lexical", "hybrid") on one store; `limit` questions at most (MultiHop:
    stratified by type); `answer=False` scores retrieval only (MultiHop): quick, no answer made."""
    path = Path(dataset).expanduser()
    if path.is_dir():
        raise NewsbotError(
            f"{path} is a folder", hint="pass a questions file, e.g. multihop_dev.jsonl"
        )
    unknown = [mode for mode in retrievers if mode not in RETRIEVER_MODES]
    if unknown or not retrievers:
        raise NewsbotError(
            f"unknown retriever {unknown[0]!r}" if unknown else "no retriever to evaluate",
            hint="pass --retriever dense, lexical or hybrid (repeat to compare)",
        )
    if limit is not None and limit < 1:
        raise NewsbotError(f"limit must be at least 1, not {limit}")
    rows = read_jsonl(path)
    kind = detect_format(rows, path)
    if kind == "rgb" and not answer:
        raise NewsbotError(
            f"{path.name} is an RGB set, which measures answers only",
            hint="drop --retrieval-only, or pass a MultiHop questions file",
        )
    started = time.perf_counter()
    progress = progress or (lambda stage, done, total: None)
    if kind == "multihop" and limit:
        questions = stratified_subset(rows, limit, "question_type")
    else:
        questions = rows[:limit]
    # What each format asks over: MultiHop's corpus file, a question set's listed articles, or
    # (RGB) each question's own passages, ingested per question by evaluate_rgb.
    corpus_name: str | None = None
    articles: list[Article] = []
    if kind == "multihop":
        corpus_name = str(find_corpus(path, corpus))
        articles = read_corpus([corpus_name], settings)
    elif kind == "questions":
        corpus_name = str(corpus) if corpus else str(path.parent / "corpus.txt")
        articles = read_corpus(question_set_corpus(path, corpus), settings)
    by_id = {a.id: a for a in articles}
    results: dict[str, Any] = {}
    with throwaway_bot(settings) as bot:
        # RGB and question sets measure the answerer: they run once, with the first retriever.
        use_retriever(bot, retrievers[0])
        ingest_started = time.perf_counter()
        if articles:
            stage, total = "ingest corpus", len(articles)
            progress(stage, 0, total)
            report = bot.ingest(
                articles, progress=lambda p: progress(stage, p.articles_done, total)
            )
            if report.failures:
                raise NewsbotError(
                    f"{len(report.failures)} corpus articles failed to ingest: {report.failures[0]}"
                )
        ingest_seconds = time.perf_counter() - ingest_started
        if kind == "multihop":
            results["multihop"] = tuple(
                evaluate_multihop(bot, questions, by_id, mode, progress, answer=answer)
                for mode in retrievers
            )
        elif kind == "questions":
            results["questions_by_kind"] = evaluate_question_set(bot, questions, by_id, progress)
        else:
            results["rgb"] = evaluate_rgb(bot, questions, retrievers[0], progress)
        embedding = dict(bot.embedder.identity.to_metadata())
        fallbacks = dict(bot.answerer.fallbacks)
    return EvalReport(
        dataset=str(path),
        format=kind,
        corpus=corpus_name,
        answerer=settings.llm or "extractive",
        embedding=embedding,
        fallbacks=fallbacks,
        questions=len(questions),
        limit=limit,
        ingest_seconds=ingest_seconds,
        seconds=time.perf_counter() - started,
        **results,
    )


def evaluate_multihop(
    bot: Bot,
    questions: Sequence[dict[str, Any]],
    articles: dict[str, Article],
    retriever: str,
    progress: ProgressCallback,
    *,
    answer: bool = True,
) -> MultiHopResult:
    """Score every question with the `retriever` mode over a store already holding `articles`."""
    use_retriever(bot, retriever)
    results = [
        _ask_multihop(bot, row, articles, answer=answer)
        for row in _counted(questions, f"questions ({retriever})", progress)
    ]
    pairs = list(zip(questions, results, strict=True))
    by_type: dict[str, list[tuple[dict[str, Any], QuestionResult]]] = defaultdict(list)
    for row, result in pairs:
        by_type[result.question_type].append((row, result))
    types = sorted(by_type.items())
    return MultiHopResult(
        retriever=retriever,
        retrieval=_retrieval_scores(pairs),
        retrieval_by_type={name: _retrieval_scores(i) for name, i in types if name != NULL_TYPE},
        answers=_answer_scores(pairs) if answer else None,
        answers_by_type={name: _answer_scores(items) for name, items in types} if answer else {},
        questions=tuple(results),
    )


def _gold_scored(row: dict[str, Any], articles: dict[str, Article], *, llm_answerer: bool) -> bool:
    """Whether the gold answer can be checked in the answer text: a phrase the evidence articles
    contain (an extractive answer can only quote them), or yes/no for an answerer that writes."""
    gold = str(row.get("answer") or "")
    if not row.get("evidence_ids") or not gold.strip():
        return False
    if is_yes_no(gold):
        return llm_answerer
    evidence = [articles[i] for i in row["evidence_ids"] if i in articles]
    return any(contains_phrase(f"{a.title}\n{a.body}", gold) for a in evidence)


def _ask_multihop(
    bot: Bot, row: dict[str, Any], articles: dict[str, Article], *, answer: bool
) -> QuestionResult:
    question = str(row["question"])
    query = bot.retriever.understand(question)
    asked = QuestionResult(
        id=str(row.get("id", "")),
        question_type=str(row.get("question_type") or "unknown"),
        ranked_at_k={  # MRR's cut-off is also a Hits one: one search each
            k: tuple(distinct(passage.article_id for passage in bot.retriever.search(query, k)))
            for k in dict.fromkeys((*HIT_CUTOFFS, MRR_CUTOFF))
        },
    )
    if not answer:
        return asked
    started = time.perf_counter()
    reply = bot.ask(question)
    seconds = time.perf_counter() - started
    correct: bool | None = None
    if _gold_scored(row, articles, llm_answerer=bot.settings.llm is not None):
        gold = str(row["answer"])
        matches = yes_no_matches if is_yes_no(gold) else contains_phrase
        correct = not reply.refused and matches(reply.text, gold)
    ids = (citation.article_id for citation in reply.citations)
    return replace(
        asked,
        refused=reply.refused,
        answer=reply.text,
        cited_articles=() if reply.refused else tuple(distinct(ids)),
        correct=correct,
        verbatim=_verbatim(reply, articles),
        sentences_cited=None if reply.refused else cited_sentence_share(reply.text),
        seconds=seconds,
    )


def _verbatim(answer: Answer, articles: dict[str, Article]) -> tuple[bool, ...]:
    return tuple(
        c.article_id in articles
        and quote_is_verbatim(articles[c.article_id].body, c.start, c.end, c.quote)
        for c in answer.citations
    )


def _retrieval_scores(pairs: Sequence[tuple[dict[str, Any], QuestionResult]]) -> RetrievalScores:
    scored = [(row["evidence_ids"], result) for row, result in pairs if row.get("evidence_ids")]

    def average(metric: Callable[[Sequence[str], Any, int], float | bool], k: int) -> float | None:
        return mean(metric(r.ranked_at_k[k], evidence, k) for evidence, r in scored)

    scores = {f"hits_at_{k}": average(hits_at_k, k) for k in HIT_CUTOFFS}
    scores |= {f"any_at_{k}": average(any_hit_at_k, k) for k in HIT_CUTOFFS}
    scores[f"mrr_at_{MRR_CUTOFF}"] = average(reciprocal_rank, MRR_CUTOFF)
    return RetrievalScores(questions=len(scored), **scores)


def _answer_scores(pairs: Sequence[tuple[dict[str, Any], QuestionResult]]) -> AnswerScores:
    answerable = [(set(row["evidence_ids"]), r) for row, r in pairs if row.get("evidence_ids")]
    unanswerable = [r for row, r in pairs if not row.get("evidence_ids")]
    results = [r for _, r in pairs]
    accuracy = [r.correct for r in results if r.correct is not None]
    verbatim = [flag for r in results for flag in r.verbatim]
    return AnswerScores(
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        evidence_cited_any=mean(bool(ev & set(r.cited_articles)) for ev, r in answerable),
        evidence_cited_share=mean(
            len(ev & set(r.cited_articles)) / len(ev) for ev, r in answerable
        ),
        accuracy=mean(accuracy),
        accuracy_questions=len(accuracy),
        refused_answerable=mean(r.refused for _, r in answerable),
        refused_unanswerable=mean(r.refused for r in unanswerable),
        citations=len(verbatim),
        citations_verbatim=mean(verbatim),
        sentences_cited=mean(r.sentences_cited for r in results if r.sentences_cited is not None),
        seconds_per_question=mean(r.seconds for r in results),
    )


def read_corpus(paths: Sequence[str], settings: Settings) -> list[Article]:
    """Every article of `paths`; one unreadable is an error (a set needs all of its articles)."""
    from index.article import ReadFailure
    from index.read import iter_articles

    articles = []
    for item in iter_articles(paths, settings):
        if isinstance(item, ReadFailure):
            raise NewsbotError(f"a corpus article failed to read: {item}")
        articles.append(item)
    return articles


def evaluate_question_set(
    bot: Bot,
    rows: Sequence[dict[str, Any]],
    articles: dict[str, Article],
    progress: ProgressCallback,
) -> QuestionSetResult:
    """Ask each question after its `history`: right if refused as it should be, or gold-phrased."""
    from bot.models import Turn

    asked: list[tuple[OwnQuestion, tuple[bool, ...]]] = []
    for row in _counted(rows, "questions", progress):
        history: list[Turn] = []
        for earlier in row.get("history") or []:
            reply = bot.ask(str(earlier), history=history)
            history.append(Turn(str(earlier), reply.text, reply.standalone_question))
        reply = bot.ask(str(row["question"]), history=history)
        if row.get("refuse"):
            correct = reply.refused
        else:
            gold = row.get("answer") or []
            correct = not reply.refused and any(contains_phrase(reply.text, str(g)) for g in gold)
        result = OwnQuestion(
            id=str(row.get("id", "")),
            kind=str(row.get("kind") or "other"),
            question=str(row["question"]),
            standalone_question=reply.standalone_question,
            refused=reply.refused,
            correct=correct,
            answer=reply.text,
        )
        asked.append((result, _verbatim(reply, articles)))
    groups: dict[str, list[tuple[OwnQuestion, tuple[bool, ...]]]] = {"all": asked}
    for item in asked:
        groups.setdefault(item[0].kind, []).append(item)

    def scores(items: list[tuple[OwnQuestion, tuple[bool, ...]]]) -> KindScores:
        return KindScores(
            questions=len(items),
            correct=mean(q.correct for q, _ in items),
            refused=mean(q.refused for q, _ in items),
            citations_verbatim=mean(flag for _, flags in items for flag in flags),
        )

    return QuestionSetResult(
        by_kind={kind: scores(items) for kind, items in groups.items()},
        questions=tuple(q for q, _ in asked),
    )


def evaluate_rgb(
    bot: Bot,
    questions: Sequence[dict[str, Any]],
    retriever: str,
    progress: ProgressCallback,
) -> RgbResult:
    """Ask each RGB question over a store holding only the passages of one setting."""
    from index.article import Article

    started = time.perf_counter()
    correct: dict[float, list[bool]] = {ratio: [] for ratio in RGB_NOISE_RATIOS}
    rejected: list[bool] = []
    fake: list[bool] = []
    still_correct: list[bool] = []
    verbatim: list[bool] = []

    def ask(row: dict[str, Any], passages: list[tuple[str, bool]]) -> Answer:
        key, articles = row["id"], []
        for n, (text, good) in enumerate(passages):
            if text.strip():
                name = f"{key}-{'pos' if good else 'neg'}-{n}"
                articles.append(Article(name, "", text, "RGB", origin=f"{key} passage {n}"))
        bot.reset()
        bot.ingest(articles)
        answer = bot.ask(str(row["query"]))
        verbatim.extend(_verbatim(answer, {a.id: a for a in articles}))
        return answer

    for row in _counted(questions, "RGB questions", progress):
        key, gold = row["id"], row["answer"]
        positive, negative = list(row.get("positive") or []), list(row.get("negative") or [])
        for ratio in RGB_NOISE_RATIOS:
            answer = ask(row, rgb_setting(key, ratio, positive, negative, ratio))
            correct[ratio].append(not answer.refused and rgb_answer_matches(answer.text, gold))
        if negative:
            rejected.append(ask(row, rgb_setting(key, "noise-only", [], negative, 1.0)).refused)
        wrong = list(row.get("positive_wrong") or [])
        if wrong and row.get("fakeanswer"):
            answer = ask(row, rgb_setting(key, "counterfactual", wrong, [], 0.0))
            fake.append(not answer.refused and contains_phrase(answer.text, row["fakeanswer"]))
            still_correct.append(not answer.refused and rgb_answer_matches(answer.text, gold))
    bot.reset()
    return RgbResult(
        retriever=retriever,
        questions=len(questions),
        accuracy_by_noise={str(ratio): mean(values) for ratio, values in correct.items()},
        rejection_rate=mean(rejected),
        counterfactual_fake=mean(fake),
        counterfactual_correct=mean(still_correct),
        citations_verbatim=mean(verbatim),
        seconds=time.perf_counter() - started,
    )
