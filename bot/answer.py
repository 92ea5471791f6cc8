"""The extractive answerer (the default: no LLM, nothing generated, nothing invented): the
retrieved passages' sentences ranked by a learned model (`sentence_features`, bot/answer_model.json
fitted by bench/fit_answer.py); the few best answer, each with its [n], or below
`refusal_threshold` it refuses, citing the closest. docs/answering.md; the LLM answerer
(bot/llm.py) falls back to this one."""

from __future__ import annotations

import json
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING

from bot.models import Citation
from bot.speakers import attribute, is_statement, speaker_terms
from index.chunk import split_sentences
from index.text import query_terms

if TYPE_CHECKING:
    from bot.retrieve import Passage
    from bot.understand import Part

NOT_FOUND = "The articles don't say."
CLOSEST_NOTE = " The closest passages are below."
# Citations returned with a refusal, so the user can see what the bot did find.
CLOSEST_CITATIONS = 2
# Passages whose sentences are kept split (about 1 kB each).
SPLIT_CACHE = 4096


# Hand-set where the labelled data cannot decide: how an answer is presented, not whether a
# sentence answers. A runner-up joins the best sentence at this share of its probability.
RUNNER_UP = 0.8
SENTENCES_PER_PART = 2  # a part of a question gets its statement and who made it
# A part's sentences: its clause plus PART_WHOLE x the whole question; its best must reach
# PART_THRESHOLD of the refusal cut (why both: docs/understanding.md, "Parts: one per report").
PART_WHOLE = 2.0
PART_THRESHOLD = 0.65


# Sentences written as orders to a reader or a model: never an answer to an unrelated question.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.?!]{0,40}\b(?:instruction|instructions|prompt|"
    r"rules|guidelines|previous|above|prior|earlier)\b|\b(?:system prompt|you are now|"
    r"as an ai|new instructions|jailbreak)\b|\b(?:respond|reply|answer|say)\s+only\b",
    re.IGNORECASE,
)
_ABOUT_INSTRUCTIONS = re.compile(r"\b(?:instruction|instructions|prompt|injection)\b", re.I)

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_SHORT_MONTHS = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec"
_DATE = re.compile(
    rf"\b(?:{_MONTHS}|{_SHORT_MONTHS}|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"
    r"|\b(?:1[89]|20)\d\d\b|\b(?:yesterday|today|tomorrow|tonight|last (?:week|month|year|night)"
    r"|next (?:week|month|year)|this (?:week|month|year)|earlier this|later this)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozens?|hundreds?|"
    r"thousands?|millions?|billions?|half|percent)\b",
    re.IGNORECASE,
)
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z][\w'’-]+")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a retrieved passage, with offsets into its article's body."""

    passage: Passage
    rank: int  # position of its passage in the retrieval order (0 = best)
    start: int
    end: int
    text: str
    words: frozenset[str]

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.passage.article_id, self.start, self.end)

    @property
    def article_id(self) -> str:
        return self.passage.article_id


@dataclass
class Pool:
    """The sentences of the retrieved passages, each once, with their neighbours."""

    sentences: list[Sentence]
    previous: dict[tuple[str, int, int], Sentence] = field(default_factory=dict)
    following: dict[tuple[str, int, int], Sentence] = field(default_factory=dict)
    by_article: dict[str, list[Sentence]] = field(default_factory=dict)  # in article order

    def neighbours(self, sentence: Sentence) -> list[Sentence]:
        found = (self.previous.get(sentence.key), self.following.get(sentence.key))
        return [other for other in found if other is not None]


@lru_cache(maxsize=SPLIT_CACHE)
def _split(text: str) -> tuple[tuple[int, int, str, frozenset[str]], ...]:
    """(start, end, sentence, its words) of a passage; popular passages come back often."""
    spans = [(span.start, span.end, text[span.start : span.end]) for span in split_sentences(text)]
    return tuple(
        (start, end, sentence, frozenset(query_terms(sentence))) for start, end, sentence in spans
    )


def sentence_pool(passages: Sequence[Passage]) -> Pool:
    """The passages' sentences (offsets into the article body), each once, with its best passage."""
    pool = Pool([])
    seen: dict[tuple[str, int, int], Sentence] = {}
    for rank, passage in enumerate(passages):
        previous: Sentence | None = None
        for start, end, text, words in _split(passage.text):
            key = (passage.article_id, passage.start + start, passage.start + end)
            sentence = seen.get(key)
            if sentence is None:
                sentence = Sentence(passage, rank, key[1], key[2], text, words)
                seen[key] = sentence
                pool.sentences.append(sentence)
            if previous is not None:
                pool.previous.setdefault(sentence.key, previous)
                pool.following.setdefault(previous.key, sentence)
            previous = sentence
    # Chunks i and i+1 of an article are contiguous: the last sentence of one and the first of
    # the other are neighbours even when the chunks do not overlap.
    for sentence in pool.sentences:
        pool.by_article.setdefault(sentence.article_id, []).append(sentence)
    for sentences in pool.by_article.values():
        sentences.sort(key=lambda s: s.start)
        for first, second in zip(sentences, sentences[1:], strict=False):
            if first.key in pool.following or second.key in pool.previous:
                continue
            first_at, second_at = (s.passage.metadata.get("position") for s in (first, second))
            if first_at is None or second_at is None or first.end > second.start:
                continue
            if int(second_at) - int(first_at) == 1:
                pool.following[first.key] = second
                pool.previous[second.key] = first
    return pool


def looks_like_instruction(text: str) -> bool:
    """Whether a sentence reads as an order to a model ("Ignore previous instructions...")."""
    return _INSTRUCTION.search(text) is not None


@dataclass(frozen=True)
class Speaker:
    """Who makes a statement, as far as the sentence and its neighbours tell (bot.speakers)."""

    words: frozenset[str]  # words that describe the speaker
    linked: tuple[Sentence, ...]  # neighbours that name or introduce the speaker
    certainty: float  # 1 for a name, less for "the group said" / "he said"


def speaker_of(pool: Pool, sentence: Sentence) -> Speaker:
    """`bot.speakers.attribute` over it, three sentences before, one after, its article's others."""
    before: list[Sentence] = []
    cursor = pool.previous.get(sentence.key)
    while cursor is not None and len(before) < 3:
        before.insert(0, cursor)
        cursor = pool.previous.get(cursor.key)
    after = pool.following.get(sentence.key)
    near = {s.key for s in (*before, sentence, after) if s is not None}
    article = pool.by_article.get(sentence.article_id, ())
    elsewhere = [other.text for other in article if other.key not in near]
    found = attribute(
        sentence.text, [s.text for s in before], after.text if after else None, elsewhere
    )
    by_offset = {-(n + 1): s for n, s in enumerate(reversed(before))}
    if after is not None:
        by_offset[1] = after
    linked = tuple(by_offset[o] for o in found.linked if o in by_offset)
    return Speaker(found.words, linked, found.certainty)


_SPEECH_FRAME = re.compile(
    r"^\s*(?:and\s+|so\s+)?(?:what|how)\s+(?:did|does|do|has|have|had|is|was|were|are|will|"
    r"would|could|might)\s+(?P<speaker>[^,;:]{1,60}?)\s+(?:say|said|saying|tell|told|think|thought|state|"
    r"stated|announce|announced|claim|claimed|comment|commented|respond|responded|react|reacted|"
    r"reply|replied|argue|argued|warn|warned|suggest|suggested|feel|believe|make of|view|"
    r"describe|described|reveal|revealed|report|reported|write|wrote)\b"
    r"(?:\s+(?:about|on|of|regarding|concerning|to|over|in response to|after)\s+(?P<topic>.+?))?"
    r"\s*[?.!]?\s*$",
    re.IGNORECASE,
)
# The kind of answer a question asks for, by how it starts (the first that matches).
_KINDS = {
    kind: re.compile(pattern, re.IGNORECASE)
    for kind, pattern in {
        "who": r"^\s*(?:who|whom|whose)\b|\bwhich (?:person|man|woman|official|player)",
        "when": r"^\s*(?:when|what (?:date|day|year|time|month))\b",
        "where": r"^\s*(?:where|in which (?:city|country|place))\b",
        "number": r"^\s*(?:how (?:many|much|long|old|far)|what (?:percentage|number))\b",
        "yesno": r"^\s*(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|should)\b",
    }.items()
}


@dataclass(frozen=True)
class Question:
    """What the answerer reads from a question."""

    text: str
    words: tuple[str, ...]  # content terms, in order, each once
    names: frozenset[str]  # terms written with a capital letter or as digits
    kind: str  # who / when / where / number / yesno / say / other
    speaker: frozenset[str] = frozenset()
    topic: frozenset[str] = frozenset()
    about_instructions: bool = False
    outlets: frozenset[str] = frozenset()


def read_question(
    text: str, *, ignore: Iterable[str] = (), outlets: Iterable[str] = ()
) -> Question:
    """The question's content words (less `ignore`, e.g. outlets it names), kind and, for "what did
    X say about Y", speaker X and topic Y; `outlets`: those of the reports it asks about (parts)."""
    ignored = set(ignore)
    words = tuple(dict.fromkeys(t for t in query_terms(text) if t not in ignored))
    names = set()
    for match in re.finditer(r"(?<!^)\b[A-Z][\w'’.-]*|\b\d[\d,.]*\b", text.strip()):
        names.update(query_terms(match.group()))
    frame = _SPEECH_FRAME.match(text)
    speaker = speaker_terms(frame["speaker"]) - ignored if frame else frozenset()
    topic = frozenset(query_terms(frame["topic"] or "")) - ignored if frame else frozenset()
    kinds = (kind for kind, pattern in _KINDS.items() if pattern.search(text))
    return Question(
        text=text,
        words=words,
        names=frozenset(names) & set(words),
        kind="say" if speaker else next(kinds, "other"),
        speaker=speaker,
        topic=topic,
        about_instructions=_ABOUT_INSTRUCTIONS.search(text) is not None,
        outlets=frozenset(outlets),
    )


def outlet_terms(passages: Sequence[Passage]) -> set[str]:
    """Words of the passages' outlets: a question names them to pick a report, not as evidence."""
    return {term for passage in passages for o in passage.outlets for term in query_terms(str(o))}


def read_asked(question: str, passages: Sequence[Passage], parts: Sequence[Part]) -> Question:
    """The question as extractive_answer reads it over `passages` (bench/fit_answer.py fits on
    this reading): their outlets' words ignored, its parts' outlets asked about."""
    outlets = (source for part in parts for source in part.sources)
    return read_question(question, ignore=outlet_terms(passages), outlets=outlets)


@dataclass(frozen=True)
class Scored:
    sentence: Sentence
    score: float  # ranks sentences against each other (the model's probability)
    evidence: float  # how sure it answers, comparable across questions (for refusal)
    statement: bool = False
    linked: tuple[Sentence, ...] = ()  # neighbours that say who is speaking


def _coverage(weights: dict[str, float], wanted: Iterable[str]) -> Callable[[Set[str]], float]:
    """The share of the `wanted` words' weight a sentence's words hold (0 when they weigh
    nothing); what depends on the question only is worked out once."""
    kept = [w for w in wanted if w in weights]
    total = sum(weights[w] for w in kept)
    if total <= 0:
        return lambda words: 0.0
    return lambda words: sum(weights[w] for w in kept if w in words) / total


def _share(present: Iterable[str], wanted: frozenset[str]) -> float:
    return len(wanted.intersection(present)) / len(wanted) if wanted else 1.0


_FULL_NAME = re.compile(r"\b[A-Z][a-z][\w'’-]+(?:\s+[A-Z][a-z][\w'’-]+)+")
_FULL_DATE = re.compile(
    rf"\b(?:{_MONTHS}|{_SHORT_MONTHS})\.?\s+\d{{1,2}}\b|\b\d{{1,2}}\s+(?:{_MONTHS})\b"
)
_FIGURE = re.compile(r"\d[\d,.]*")
Asked = Callable[[set[str], set[str]], bool]  # (a match's words, the question's) -> counts


def _new(words: set[str], asked: set[str]) -> bool:
    return not words <= asked  # a "when" question naming 2019 is not answered by "2019"


def _unasked(words: set[str], asked: set[str]) -> bool:
    return not words & asked


# What a who/when/where/how-many question asks for, and that the question does not already say
# (`typed`), and a stricter form (`shaped`): a full name, a day and month, a figure.
_TYPE: dict[str, tuple[re.Pattern[str], Asked]] = {
    "when": (_DATE, _new),
    "number": (_NUMBER, _new),
    "who": (_CAPITALISED, _unasked),
    "where": (_CAPITALISED, _unasked),
}
_SHAPE: dict[str, tuple[re.Pattern[str], Asked]] = {
    "who": (_FULL_NAME, _unasked),
    "when": (_FULL_DATE, lambda words, asked: True),
    "number": (_FIGURE, _new),
    "where": _TYPE["where"],  # a place is often one word
}


def _holds(table: dict[str, tuple[re.Pattern[str], Asked]], question: Question, text: str) -> bool:
    """Whether `text` holds what the question's kind (one of their keys) asks for."""
    pattern, counts = table[question.kind]
    asked = set(question.words)
    return any(counts(set(query_terms(m.group())), asked) for m in pattern.finditer(text))


_YEARS = re.compile(r"\b(?:1[89]|20)\d\d\b")
TYPED_APART = ("own", "own_plain", "context", "dense", "rank", "names_here", "own_gap")


@dataclass(frozen=True)
class Linear:
    """A logistic regression: feature names, their weights and a bias."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        if len(self.features) != len(self.weights):
            raise ValueError(f"{len(self.features)} features but {len(self.weights)} weights")

    def probability(self, values: dict[str, float]) -> float:
        # The products summed in the features' order, as a generator would: the same float.
        logit = self.bias + sum(
            map(operator.mul, self.weights, map(values.get, self.features, repeat(0.0)))
        )
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, logit))))


@dataclass(frozen=True)
class SentenceModel:
    """The learned scorer (bench/fit_answer.py; bot/answer_model.json, read once): `sentence` is
    the probability a sentence answers (ranking), `question` that the best one does, from the
    question's best evidence (refusal below `cut`, the cut chosen on the training folds)."""

    sentence: Linear
    question: Linear
    cut: float


MODEL_FILE = Path(__file__).with_name("answer_model.json")


@lru_cache(maxsize=1)
def sentence_model() -> SentenceModel:
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    sentence, question = (
        Linear(tuple(d["features"]), tuple(map(float, d["weights"])), float(d["bias"]))
        for d in (data["sentence"], data["question"])
    )
    return SentenceModel(sentence, question, data["cut"])


def sentence_features(
    question: Question, pool: Pool
) -> list[tuple[Sentence, dict[str, float], Speaker | None]]:
    """Every candidate sentence with its features (what bench/fit_answer.py fits on; each is
    described in docs/answering.md, "Features") and, for a statement, its speaker."""
    # IDF of each question word over the sentence pool (absent words weigh most).
    asked, total = set(question.words), len(pool.sentences)
    counts = Counter(w for sentence in pool.sentences for w in sentence.words & asked)
    weights = {w: math.log(1.0 + (total + 1) / (counts[w] + 0.5)) for w in question.words}
    title_words: dict[str, frozenset[str]] = {}
    years = frozenset(_YEARS.findall(question.text))
    names = question.names - (question.speaker if question.kind == "say" else frozenset())
    typed_kind = question.kind in _TYPE  # who / when / where / how many
    wanted: Iterable[str] = question.words
    if question.kind == "say":
        wanted = question.topic or (set(question.words) - question.speaker)
    # "What did X say?" asks no topic: every statement by X covers all of it.
    context_share = _coverage(weights, wanted)
    own_share = context_share if wanted else lambda words: 1.0
    # The question's ordinary words ("won", "released", "president"): what it asks about
    # the names, which a sentence that merely repeats the names lacks.
    plain_share = _coverage(weights, set(wanted) - question.names)
    speaker_share = _coverage(weights, question.speaker)
    held_years: dict[int, frozenset[str]] = {}  # id of a passage -> the years it names
    found = []
    for sentence in pool.sentences:
        if looks_like_instruction(sentence.text) and not question.about_instructions:
            continue
        passage = sentence.passage
        if passage.article_id not in title_words:
            title_words[passage.article_id] = frozenset(
                query_terms(str(passage.metadata.get("title", "")))
            )
        neighbours = pool.neighbours(sentence)
        around = set().union(*(n.words for n in neighbours), title_words[passage.article_id])
        values: dict[str, float] = {}
        speaker: Speaker | None = None
        if question.kind == "say":
            statement = is_statement(sentence.text)
            match = 0.0
            if statement:
                speaker = speaker_of(pool, sentence)
                match = speaker.certainty * speaker_share(speaker.words)
            values["statement"] = float(statement)
            values["speaker"] = match
            values["say_unsaid"] = float(match == 0.0)
        own = own_share(sentence.words)
        values["own"] = own
        values["own_plain"] = plain_share(sentence.words)
        nearby = sentence.words | around
        values["context"] = context_share(nearby) - own
        values["dense"] = max(passage.dense_score or 0.0, 0.0)
        # "According to The New York Times, ..." is not answered by another outlet's report.
        if question.outlets and not question.outlets & passage.outlets:
            values["outlet_other"] = 1.0
        values["rank"] = 1.0 / (1.0 + sentence.rank)
        values["names"] = _share(nearby, names)
        values["names_here"] = _share(sentence.words, names)
        if typed_kind:
            typed = _holds(_TYPE, question, sentence.text)
            values["typed"] = float(typed)
            values["untyped"] = float(not typed)
            values["shaped"] = float(_holds(_SHAPE, question, sentence.text))
        if years:
            # The whole passage: "Who won the 2023 race?" is not answered by a sentence
            # without a year in a report of the 2024 race.
            if id(passage) not in held_years:
                context_text = f"{passage.text} {passage.metadata.get('title', '')}"
                held_years[id(passage)] = frozenset(_YEARS.findall(context_text))
            held = held_years[id(passage)]
            values["year_match"] = float(bool(years & held))
            values["year_other"] = float(bool(held) and not years & held)
        found.append((sentence, values, speaker))
    # How a sentence compares with the best candidate of its own question (ranking), beside the
    # absolute figures above (refusal: whether even the best one answers).
    for name in ("own", "dense"):
        best = max((values[name] for _, values, _ in found), default=0.0)
        for _, values, _ in found:
            values[f"{name}_gap"] = values[name] - best
    for _, values, _ in found:
        values["typed_own"] = values.get("typed", 0.0) * values["own"]
        values["typed_names"] = values.get("typed", 0.0) * values["names_here"]
        # A who/when/where/how-many question is answered by a short fact in one sentence, other
        # questions by what a whole report says: the model weighs the evidence apart for each.
        if typed_kind:
            for name in TYPED_APART:
                values[f"kind_{name}"] = values[name]
    return found


def _evidence(values: dict[str, float]) -> float:
    """A sentence's evidence that the question is answered: its own words and, half, its
    context's, and the passage's similarity (for "what did X say", statements by X only); none
    when it breaks the question's constraints (another year or outlet, not the kind of answer a
    who/when/where/how-many question needs). Why `shaped` is no constraint: docs/answering.md."""
    lexical = values["own"] + 0.5 * values["context"]
    dense = values["dense"]
    if "speaker" in values:
        lexical *= values["speaker"]
        dense *= 0.5 if values["speaker"] == 0 else 1.0
    if values.get("year_other") or values.get("untyped") or values.get("outlet_other"):
        return 0.0
    return 0.6 * lexical + 0.4 * dense


def question_features(ranked: Sequence[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """What the refusal model reads: the best `_evidence` (why no more: bench/fit_answer.py)."""
    return {"max_evidence": max(_evidence(values) for _, values in ranked)} if ranked else {}


def score_sentences(question: Question, pool: Pool, model: SentenceModel) -> list[Scored]:
    """Every sentence of the pool with its probability of answering the question (score), best
    first; evidence is the probability that the question is answered at all, the same for all."""
    ranked = [
        (model.sentence.probability(values), values, sentence, speaker)
        for sentence, values, speaker in sentence_features(question, pool)
    ]
    ranked.sort(key=lambda item: (-item[0], item[2].rank, item[2].start))
    answered = model.question.probability(question_features([(p, v) for p, v, _, _ in ranked]))
    return [
        Scored(s, p, answered, bool(v.get("statement")), speaker.linked if speaker else ())
        for p, v, s, speaker in ranked
    ]


@dataclass(frozen=True)
class Draft:
    """An answer before the core wraps it, with the confidence its refusal was decided on."""

    text: str
    citations: tuple[Citation, ...]
    refused: bool
    confidence: float


def _ordered(sentences: Iterable[tuple[Sentence, float]]) -> list[tuple[Sentence, float]]:
    """Article order: articles by date (then id), sentences by position in the article."""

    def key(item: tuple[Sentence, float]) -> tuple[str, str, int]:
        sentence = item[0]
        published = str(sentence.passage.metadata.get("published_at") or "")
        return (published, sentence.article_id, sentence.start)

    unique = {item[0].key: item for item in sentences}
    return sorted(unique.values(), key=key)


def cite(sentences: Iterable[tuple[Sentence, float]], *, first: int = 1) -> tuple[Citation, ...]:
    """Citations quoting `sentences` verbatim (with offsets), numbered from `first`."""
    citations = []
    for n, (sentence, score) in enumerate(sentences, start=first):
        meta = sentence.passage.metadata
        published = meta.get("published_at")
        citations.append(
            Citation(
                n=n,
                article_id=sentence.passage.article_id,
                title=str(meta.get("title", "")),
                source=str(meta.get("source", "")),
                url=str(meta.get("url", "")),
                published_at=datetime.fromisoformat(published) if published else None,
                quote=sentence.text,
                start=sentence.start,
                end=sentence.end,
                score=round(score, 4),
                passage=sentence.passage.text,
                sources=tuple(meta.get("sources") or ()),
            )
        )
    return tuple(citations)


def render(
    sentences: Sequence[tuple[Sentence, float]], *, first: int = 1
) -> tuple[str, tuple[Citation, ...]]:
    """'quote [1] quote [2]' and the citations, in article order, numbered from `first`."""
    citations = cite(_ordered(sentences), first=first)
    return " ".join(f"{citation.quote} [{citation.n}]" for citation in citations), citations


def refusal(citations: Sequence[Citation], confidence: float) -> Draft:
    """That the articles don't say, citing the closest of `citations`."""
    closest = tuple(citations[:CLOSEST_CITATIONS])
    return Draft(NOT_FOUND + (CLOSEST_NOTE if closest else ""), closest, True, confidence)


def select(scored: Sequence[Scored], max_sentences: int) -> list[tuple[Sentence, float]]:
    """The best sentence; who said it, when a neighbour says that; what the same speaker says
    next; then runners-up that add evidence of their own."""
    best = scored[0]
    chosen: list[tuple[Sentence, float]] = []
    taken: set[tuple[str, int, int]] = set()

    def take(sentence: Sentence, score: float) -> None:
        if sentence.key not in taken and len(chosen) < max_sentences:
            chosen.append((sentence, score))
            taken.add(sentence.key)

    take(best.sentence, best.score)
    for other in best.linked:
        take(other, best.score)
    # "X spoke in a similar vein." followed by "..., said the head of US diplomacy."
    for follower in scored[1:]:
        if follower.statement and best.sentence in follower.linked:
            take(follower.sentence, follower.score)
    covered = set(best.sentence.words).union(*(s.words for s in best.linked))
    for runner in scored[1:]:
        if len(chosen) >= max_sentences or runner.score < RUNNER_UP * best.score:
            break
        if runner.sentence.key in taken or not runner.sentence.words - covered:
            continue
        needed = [n for n in runner.linked if n.key not in taken]
        if len(chosen) + 1 + len(needed) > max_sentences:
            needed = []
        for sentence in (runner.sentence, *needed):
            take(sentence, runner.score)
        covered |= runner.sentence.words
    return chosen


def extractive_answer(
    question: str,
    passages: Sequence[Passage],
    *,
    max_sentences: int,
    threshold: float | None = None,
    parts: Sequence[Part] = (),
    model: SentenceModel | None = None,
) -> Draft:
    """Answer with the sentences that answer the question, or refuse with the closest ones; a
    question in several `parts` is answered part by part, side by side (`parts_answer`)."""
    pool = sentence_pool(passages)
    read = read_asked(question, passages, parts)
    model = model or sentence_model()
    threshold = model.cut if threshold is None else threshold
    scored = score_sentences(read, pool, model)
    confidence = max((s.evidence for s in scored), default=0.0)
    if not scored or confidence < threshold:
        return refusal(cite((s.sentence, s.score) for s in scored[:CLOSEST_CITATIONS]), confidence)
    if len(parts) > 1:
        by_parts = parts_answer(parts, passages, threshold, question, model)
        if by_parts is not None:
            return replace(by_parts, confidence=confidence)
    text, citations = render(select(scored, max_sentences))
    return Draft(text, citations, False, confidence)


def parts_answer(
    parts: Sequence[Part],
    passages: Sequence[Passage],
    threshold: float,
    question: str,
    model: SentenceModel,
) -> Draft | None:
    """One line per part: the best statement of its own report, cited, or that the articles don't
    say; None when no part has evidence of its own. Scored against the part's clause and,
    `PART_WHOLE` times, the whole `question`; missing below `PART_THRESHOLD` of the threshold."""
    ignore = outlet_terms(passages)  # as read_asked
    whole = read_question(question, ignore=ignore)
    citations: list[Citation] = []
    lines = []
    for number, part in enumerate(parts, start=1):
        taken = {(c.article_id, c.start, c.end) for c in citations}  # Sentence.key of each
        own = [p for p in passages if p.part == number - 1]
        if not own and part.sources:
            own = [p for p in passages if p.source in part.sources]
        pool = sentence_pool(own)
        overall = {s.sentence.key: s.score for s in score_sentences(whole, pool, model)}
        scored = sorted(
            (
                replace(s, score=s.score + PART_WHOLE * overall[s.sentence.key])
                for s in score_sentences(read_question(part.text, ignore=ignore), pool, model)
                if s.sentence.key in overall and s.sentence.key not in taken
            ),
            key=lambda s: (-s.score, s.sentence.rank, s.sentence.start),
        )
        label = part.label or ", ".join(part.sources) or f"Part {number}"
        if not scored or scored[0].evidence < PART_THRESHOLD * threshold:
            lines.append(f"{label}: {NOT_FOUND[0].lower()}{NOT_FOUND[1:]}")
            continue
        best = scored[0]
        chosen = [(best.sentence, best.score)]
        chosen += [(other, best.score) for other in best.linked if other.key not in taken]
        text, cited = render(_ordered(chosen)[:SENTENCES_PER_PART], first=len(citations) + 1)
        citations += cited
        lines.append(f"{label}: {text}")
    return Draft("\n".join(lines), tuple(citations), False, 0.0) if citations else None
