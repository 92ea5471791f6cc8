"""The extractive answerer (the default: no LLM, nothing generated, nothing invented).

The extractive answerer splits the retrieved passages into sentences, gives each the features of
`sentence_features` (lexical evidence with name forms such as Qatar/Qatari folded by
`index.text`, the passage's similarity and rank, the answer type a who/when/where/how-many
question needs, the years it names, and for "What did Qatar say about X?" whether the speaker,
as `bot.speakers` resolves it, is Qatar's) and ranks them by a learned model
(bot/answer_model.json, fitted by bench/fit_answer.py); it answers with the few best, in
article order, each followed by its [n], with the neighbour that names a statement's speaker.

When the probability that the question is answered at all, from its best constrained evidence,
falls below `refusal_threshold` (unset: the cut calibrated with the model) the answer is a
refusal that still returns the closest sentences as citations. The LLM answerer is bot/llm.py;
it falls back to this one.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.models import Citation
from bot.speakers import attribute, is_statement, speaker_terms
from index.chunk import split_sentences
from index.text import query_terms

if TYPE_CHECKING:
    from bot.retrieve import Passage
    from bot.understand import Part

log = logging.getLogger(__name__)

NOT_FOUND = "The articles don't say."
CLOSEST_NOTE = " The closest passages are below."
# Citations returned with a refusal, so the user can see what the bot did find.
CLOSEST_CITATIONS = 2
# Passages whose sentences are kept split (about 1 kB each).
SPLIT_CACHE = 4096


@dataclass(frozen=True)
class Weights:
    """The hand-set constants left after the learned scorer (bot/answer_model.json), each where
    the labelled data cannot decide: they shape how an answer is presented, not whether a
    sentence answers."""

    # Another sentence joins the best one when its probability is at least this share of the
    # best's: a presentation choice (how much to quote); the labels say which sentences answer,
    # not how many of them a reader wants.
    runner_up: float = 0.8
    # A question in parts gets, per part, its statement and who made it.
    sentences_per_part: int = 2
    # A part's sentences are ranked by the part's clause plus this many times the whole question
    # (the clause alone often lacks the names the question is about); measured on MultiHop dev
    # before the scorer was learned (docs/answering.md, "Questions about several reports").
    part_whole: float = 2.0
    # Share of the refusal cut a part's best sentence must reach (a clause is shorter than the
    # question, so its probability is lower); only reached after the whole question passed.
    part_threshold: float = 0.65


WEIGHTS = Weights()

# -- sentences ---------------------------------------------------------------------------------

# Sentences written as orders to a reader or a model: never an answer to an unrelated question.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.?!]{0,40}\b(?:instruction|instructions|prompt|"
    r"rules|guidelines|previous|above|prior|earlier)\b|\b(?:system prompt|you are now|"
    r"as an ai|new instructions|jailbreak)\b|\b(?:respond|reply|answer|say)\s+only\b",
    re.IGNORECASE,
)
_ABOUT_INSTRUCTIONS = re.compile(r"\b(?:instruction|instructions|prompt|injection)\b", re.I)

_DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec|Monday|Tuesday|Wednesday|Thursday|"
    r"Friday|Saturday|Sunday)\b|\b(?:1[89]|20)\d\d\b|\b(?:yesterday|today|tomorrow|tonight|"
    r"last (?:week|month|year|night)|next (?:week|month|year)|this (?:week|month|year)|"
    r"earlier this|later this)\b",
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
        return [
            other
            for other in (self.previous.get(sentence.key), self.following.get(sentence.key))
            if other is not None
        ]


@lru_cache(maxsize=SPLIT_CACHE)
def _split(text: str) -> tuple[tuple[int, int, str, frozenset[str]], ...]:
    """(start, end, sentence, its words) of a passage; popular passages come back often."""
    return tuple(
        (
            span.start,
            span.end,
            text[span.start : span.end],
            frozenset(query_terms(text[span.start : span.end])),
        )
        for span in split_sentences(text)
    )


def sentence_pool(passages: Sequence[Passage]) -> Pool:
    """Split the passages into sentences (offsets into the article body), each kept once, with
    the passage that ranked best; overlapping chunks share sentences."""
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
    _link_adjacent_chunks(pool)
    return pool


def _link_adjacent_chunks(pool: Pool) -> None:
    """Chunks i and i+1 of an article are contiguous: the last sentence of one and the first of
    the other are neighbours even when the chunks do not overlap."""
    by_article = pool.by_article
    for sentence in pool.sentences:
        by_article.setdefault(sentence.article_id, []).append(sentence)
    for sentences in by_article.values():
        sentences.sort(key=lambda s: s.start)
        for first, second in zip(sentences, sentences[1:], strict=False):
            if first.key in pool.following or second.key in pool.previous:
                continue
            positions = (
                first.passage.metadata.get("position"),
                second.passage.metadata.get("position"),
            )
            if None in positions or first.end > second.start:
                continue
            if (
                int(second.passage.metadata["position"]) - int(first.passage.metadata["position"])
                == 1
            ):
                pool.following[first.key] = second
                pool.previous[second.key] = first


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
    """The speaker of a statement: `bot.speakers.attribute` over the sentence, up to three
    sentences before it, the one after it, and the rest of its article in the pool."""
    before: list[Sentence] = []
    cursor = pool.previous.get(sentence.key)
    while cursor is not None and len(before) < 3:
        before.insert(0, cursor)
        cursor = pool.previous.get(cursor.key)
    after = pool.following.get(sentence.key)
    near = {s.key for s in before} | {sentence.key} | ({after.key} if after else set())
    elsewhere = [
        other.text
        for other in pool.by_article.get(sentence.article_id, ())
        if other.key not in near
    ]
    found = attribute(
        sentence.text, [s.text for s in before], after.text if after else None, elsewhere
    )
    by_offset = {-(n + 1): s for n, s in enumerate(reversed(before))}
    if after is not None:
        by_offset[1] = after
    linked = tuple(by_offset[o] for o in found.linked if o in by_offset)
    return Speaker(found.words, linked, found.certainty)


# -- questions ---------------------------------------------------------------------------------

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
_KINDS = (
    (
        "who",
        re.compile(r"^\s*(?:who|whom|whose)\b|\bwhich (?:person|man|woman|official|player)", re.I),
    ),
    ("when", re.compile(r"^\s*(?:when|what (?:date|day|year|time|month))\b", re.I)),
    ("where", re.compile(r"^\s*(?:where|in which (?:city|country|place))\b", re.I)),
    (
        "number",
        re.compile(r"^\s*(?:how (?:many|much|long|old|far)|what (?:percentage|number))\b", re.I),
    ),
    (
        "yesno",
        re.compile(
            r"^\s*(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|"
            r"should)\b",
            re.I,
        ),
    ),
)


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
    outlets: frozenset[str] = frozenset()  # the outlets whose reports it asks about (Part.sources)


def read_question(text: str, *, ignore: Iterable[str] = ()) -> Question:
    """The question's content words (without `ignore`, e.g. the outlets it names), its kind and,
    for "what did X say about Y", the speaker X and topic Y."""
    ignored = set(ignore)
    words = tuple(dict.fromkeys(t for t in query_terms(text) if t not in ignored))
    names = set()
    for match in re.finditer(r"(?<!^)\b[A-Z][\w'’.-]*|\b\d[\d,.]*\b", text.strip()):
        names.update(query_terms(match.group()))
    kind = "other"
    speaker: frozenset[str] = frozenset()
    topic: frozenset[str] = frozenset()
    frame = _SPEECH_FRAME.match(text)
    if frame:
        speaker = speaker_terms(frame.group("speaker")) - ignored
        topic = frozenset(query_terms(frame.group("topic") or "")) - ignored
        if speaker:
            kind = "say"
    if kind == "other":
        for name, pattern in _KINDS:
            if pattern.search(text):
                kind = name
                break
    return Question(
        text=text,
        words=words,
        names=frozenset(names) & set(words),
        kind=kind,
        speaker=speaker,
        topic=topic,
        about_instructions=_ABOUT_INSTRUCTIONS.search(text) is not None,
    )


def outlet_terms(passages: Sequence[Passage]) -> set[str]:
    """Words of the outlets the passages come from: a question names them to pick a report,
    not as evidence the sentence must contain."""
    found: set[str] = set()
    for passage in passages:
        for source in (passage.source, *(passage.metadata.get("sources") or ())):
            found.update(query_terms(str(source)))
    return found


def idf_weights(question: Question, pool: Pool) -> dict[str, float]:
    """IDF of each question word over the sentence pool (absent words weigh most)."""
    total = len(pool.sentences)
    counts: Counter[str] = Counter()
    for sentence in pool.sentences:
        counts.update(w for w in sentence.words if w in question.words)
    weights = {}
    for word in question.words:
        weights[word] = math.log(1.0 + (total + 1) / (counts[word] + 0.5))
    return weights


# -- scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    sentence: Sentence
    score: float  # ranks sentences against each other (the model's probability)
    evidence: float  # how sure it answers, comparable across questions (for refusal)
    statement: bool = False
    linked: tuple[Sentence, ...] = ()  # neighbours that say who is speaking


def _coverage(words: Iterable[str], weights: dict[str, float], wanted: Iterable[str]) -> float:
    wanted = [w for w in wanted if w in weights]
    total = sum(weights[w] for w in wanted)
    if total <= 0:
        return 0.0
    present = set(words)
    return sum(weights[w] for w in wanted if w in present) / total


def _share(present: Iterable[str], wanted: frozenset[str]) -> float:
    return len(wanted & set(present)) / len(wanted) if wanted else 1.0


def _answer_type(question: Question, text: str) -> bool:
    """Whether a sentence holds what a who/when/where/how-many question asks for, and that the
    question does not already say (a "when" question naming 2019 is not answered by "2019")."""
    asked = set(question.words)
    if question.kind == "when":
        return any(not set(query_terms(m.group())) <= asked for m in _DATE.finditer(text))
    if question.kind == "number":
        return any(not set(query_terms(m.group())) <= asked for m in _NUMBER.finditer(text))
    if question.kind in ("who", "where"):
        for match in _CAPITALISED.finditer(text):
            if not set(query_terms(match.group())) & asked:
                return True
    return False


_FULL_NAME = re.compile(r"\b[A-Z][a-z][\w'’-]+(?:\s+[A-Z][a-z][\w'’-]+)+")
_FULL_DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\.?\s+\d{1,2}\b|"
    r"\b\d{1,2}\s+(?:January|February|March|April|May|June|July|August|September|October|"
    r"November|December)\b"
)


def _answer_shape(question: Question, text: str) -> bool:
    """A stricter answer type: a full name the question does not hold (who), a day and month
    (when), a figure the question does not hold (how many); for where, the answer type itself
    (a place is often one word)."""
    asked = set(question.words)
    if question.kind == "where":
        return _answer_type(question, text)
    if question.kind == "who":
        return any(not set(query_terms(m.group())) & asked for m in _FULL_NAME.finditer(text))
    if question.kind == "when":
        return _FULL_DATE.search(text) is not None
    if question.kind == "number":
        return any(
            not set(query_terms(m.group())) <= asked for m in re.finditer(r"\d[\d,.]*", text)
        )
    return False


_YEARS = re.compile(r"\b(?:1[89]|20)\d\d\b")
TYPED_KINDS = ("who", "when", "where", "number")
TYPED_APART = ("own", "own_plain", "context", "dense", "rank", "names_here", "own_gap")


@dataclass(frozen=True)
class Linear:
    """A logistic regression: feature names, their weights and a bias."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    def probability(self, values: dict[str, float]) -> float:
        logit = self.bias + sum(
            weight * values.get(name, 0.0)
            for name, weight in zip(self.features, self.weights, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, logit))))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Linear:
        return cls(
            tuple(data["features"]), tuple(float(w) for w in data["weights"]), float(data["bias"])
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(w, 4) for w in self.weights],
            "bias": round(self.bias, 4),
        }


@dataclass(frozen=True)
class SentenceModel:
    """The learned scorer (bench/fit_answer.py; coefficients in bot/answer_model.json, read
    once): `sentence` gives the probability that a sentence answers the question (ranking),
    `question` the probability that the best one does, from the question's best evidence
    (refusal, below `cut`, the cut chosen on the training folds)."""

    sentence: Linear
    question: Linear
    cut: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentenceModel:
        return cls(
            Linear.from_dict(data["sentence"]), Linear.from_dict(data["question"]), data["cut"]
        )


MODEL_FILE = Path(__file__).with_name("answer_model.json")


@lru_cache(maxsize=1)
def sentence_model() -> SentenceModel:
    """The shipped model (bot/answer_model.json)."""
    return SentenceModel.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


def sentence_features(
    question: Question, pool: Pool
) -> list[tuple[Sentence, dict[str, float], Speaker | None]]:
    """Every candidate sentence with its features (what bench/fit_answer.py fits on):

    own / context   IDF-weighted share of the question's words (of a "what did X say about Y"
                    question: of Y) in the sentence, and added by its neighbours and title
    dense, rank     the passage's cosine similarity to the question; 1 / (1 + its rank)
    names, names_here  share of the names the question asks about (capitalised words, numbers)
                    in the sentence, its neighbours or title / in the sentence itself
    typed, untyped  a who/when/where/how-many question, and the sentence holds / lacks a
                    name, date or number of the kind it asks for
    year_match, year_other  the question names a year, and the sentence's passage or title
                    holds it / holds only other years
    statement, speaker, say_unsaid  a "what did X say" question: the sentence reports speech;
                    how well its speaker matches X (times how sure the attribution is); no
                    statement by X
    """
    weights = idf_weights(question, pool)
    title_words: dict[str, frozenset[str]] = {}
    years = frozenset(_YEARS.findall(question.text))
    names = question.names - (question.speaker if question.kind == "say" else frozenset())
    typed_kind = question.kind in TYPED_KINDS
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
        wanted: Iterable[str] = question.words
        values: dict[str, float] = {}
        speaker: Speaker | None = None
        if question.kind == "say":
            wanted = question.topic or (set(question.words) - question.speaker)
            statement = is_statement(sentence.text)
            match = 0.0
            if statement:
                speaker = speaker_of(pool, sentence)
                match = speaker.certainty * _coverage(speaker.words, weights, question.speaker)
            values["statement"] = float(statement)
            values["speaker"] = match
            values["say_unsaid"] = float(match == 0.0)
        # "What did X say?" asks no topic: every statement by X covers all of it.
        own = _coverage(sentence.words, weights, wanted) if wanted else 1.0
        values["own"] = own
        # The question's ordinary words ("won", "released", "president"): what it asks about
        # the names, which a sentence that merely repeats the names lacks.
        values["own_plain"] = _coverage(sentence.words, weights, set(wanted) - question.names)
        values["context"] = _coverage(sentence.words | around, weights, wanted) - own
        values["dense"] = max(passage.dense_score or 0.0, 0.0)
        # "According to The New York Times, ..." is not answered by another outlet's report.
        if question.outlets and not question.outlets & {
            passage.source,
            *(passage.metadata.get("sources") or ()),
        }:
            values["outlet_other"] = 1.0
        values["rank"] = 1.0 / (1.0 + sentence.rank)
        values["names"] = _share(sentence.words | around, names)
        values["names_here"] = _share(sentence.words, names)
        if typed_kind:
            typed = _answer_type(question, sentence.text)
            values["typed"] = float(typed)
            values["untyped"] = float(not typed)
            values["shaped"] = float(_answer_shape(question, sentence.text))
        if years:
            # The whole passage: "Who won the 2023 race?" is not answered by a sentence
            # without a year in a report of the 2024 race.
            context_text = f"{passage.text} {passage.metadata.get('title', '')}"
            held = frozenset(_YEARS.findall(context_text))
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
    context's, and the passage's similarity (of a "what did X say" question, statements by X
    only); none when it breaks the question's constraints: it holds another year than the one
    the question names (and not that one), or lacks the kind of answer a who/when/where/
    how-many question needs, however many words it shares with the question. (The stricter
    `shaped` is a ranking feature only: as a constraint it refused 4 of the 6 "when" questions
    of samples/questions, answered by a weekday, a month or a year.)"""
    lexical = values["own"] + 0.5 * values["context"]
    dense = values["dense"]
    if "speaker" in values:
        lexical *= values["speaker"]
        dense *= 0.5 if values["speaker"] == 0 else 1.0
    if values.get("year_other") or values.get("untyped") or values.get("outlet_other"):
        return 0.0
    return 0.6 * lexical + 0.4 * dense


def question_features(ranked: Sequence[tuple[float, dict[str, float]]]) -> dict[str, float]:
    """What the refusal model may read: the best evidence of any candidate (`_evidence`), and
    the best sentence probability (`ranked` is best first). The shipped model reads the first
    only (bench/fit_answer.py says why)."""
    if not ranked:
        return {}
    return {
        "best": ranked[0][0],
        "max_evidence": max(_evidence(values) for _, values in ranked),
    }


def score_sentences(
    question: Question, pool: Pool, model: SentenceModel | None = None
) -> list[Scored]:
    """Every sentence of the pool with its probability of answering the question (score), best
    first; evidence is the probability that the question is answered at all, the same for all."""
    model = model or sentence_model()
    ranked = []
    for sentence, values, speaker in sentence_features(question, pool):
        ranked.append((model.sentence.probability(values), values, sentence, speaker))
    ranked.sort(key=lambda item: (-item[0], item[2].rank, item[2].start))
    answered = model.question.probability(question_features([(p, v) for p, v, _, _ in ranked]))
    return [
        Scored(
            sentence,
            probability,
            answered,
            bool(values.get("statement")),
            speaker.linked if speaker is not None else (),
        )
        for probability, values, sentence, speaker in ranked
    ]


# -- the extractive answer ---------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """An answer before the core wraps it: text with [n] markers, citations, refusal, and the
    confidence the refusal was decided on."""

    text: str
    citations: tuple[Citation, ...]
    refused: bool
    confidence: float


def citation_for(n: int, sentence: Sentence, score: float) -> Citation:
    """A citation quoting `sentence` verbatim (offsets into its article's body)."""
    meta = sentence.passage.metadata
    published = meta.get("published_at")
    return Citation(
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


def _ordered(sentences: Iterable[tuple[Sentence, float]]) -> list[tuple[Sentence, float]]:
    """Article order: articles by date (then id), sentences by position in the article."""

    def key(item: tuple[Sentence, float]) -> tuple[str, str, int]:
        sentence = item[0]
        published = str(sentence.passage.metadata.get("published_at") or "")
        return (published, sentence.article_id, sentence.start)

    unique = {item[0].key: item for item in sentences}
    return sorted(unique.values(), key=key)


def render(sentences: Sequence[tuple[Sentence, float]]) -> tuple[str, tuple[Citation, ...]]:
    """'quote [1] quote [2]' and the citations, in article order."""
    citations = tuple(
        citation_for(n, sentence, score)
        for n, (sentence, score) in enumerate(_ordered(sentences), start=1)
    )
    text = " ".join(f"{citation.quote} [{citation.n}]" for citation in citations)
    return text, citations


def refusal(scored: Sequence[Scored], confidence: float) -> Draft:
    closest = [(s.sentence, s.score) for s in scored[:CLOSEST_CITATIONS]]
    citations = tuple(
        citation_for(n, sentence, score) for n, (sentence, score) in enumerate(closest, start=1)
    )
    text = NOT_FOUND + (CLOSEST_NOTE if citations else "")
    return Draft(text, citations, True, confidence)


def select(scored: Sequence[Scored], max_sentences: int) -> list[tuple[Sentence, float]]:
    """The best sentence; who said it, when a neighbour says that; what the same speaker says
    next; then runners-up that add evidence of their own."""
    if not scored:
        return []
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
        if len(chosen) >= max_sentences or runner.score < WEIGHTS.runner_up * best.score:
            break
        if runner.sentence.key in taken:
            continue
        if not (runner.sentence.words - covered):
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
    ignore: Iterable[str] = (),
    parts: Sequence[Part] = (),
    model: SentenceModel | None = None,
) -> Draft:
    """Answer with the sentences that answer the question, or refuse with the closest ones.

    A question in several `parts` (one per report it names) is answered part by part, each from
    its own passages, side by side; see `parts_answer`.
    """
    pool = sentence_pool(passages)
    ignored = set(ignore) | outlet_terms(passages)
    read = read_question(question, ignore=ignored)
    read = replace(read, outlets=frozenset(source for part in parts for source in part.sources))
    model = model or sentence_model()
    threshold = model.cut if threshold is None else threshold
    scored = score_sentences(read, pool, model)
    if not scored:
        return refusal([], 0.0)
    confidence = max(s.evidence for s in scored)
    if confidence < threshold:
        return refusal(scored, confidence)
    if len(parts) > 1:
        by_parts = parts_answer(
            parts, passages, threshold=threshold, ignore=ignored, question=question, model=model
        )
        if by_parts is not None:
            return replace(by_parts, confidence=confidence)
    text, citations = render(select(scored, max_sentences))
    return Draft(text, citations, False, confidence)


def part_label(part: Part, number: int) -> str:
    if part.label:
        return part.label
    return ", ".join(part.sources) or f"Part {number}"


def parts_answer(
    parts: Sequence[Part],
    passages: Sequence[Passage],
    *,
    threshold: float,
    ignore: Iterable[str] = (),
    question: str = "",
    model: SentenceModel | None = None,
) -> Draft | None:
    """One line per part of the question: the best statement of the part's own report, cited,
    or that the articles don't say. None when no part has evidence of its own.

    A part's sentences are scored against the part's clause and, less, the whole question (the
    clause alone often lacks the names the question is about). A part counts as missing below a
    share of the threshold: its clause is shorter than the question, so its evidence is lower.
    """
    lines: list[tuple[str, list[tuple[Sentence, float]]]] = []
    taken: set[tuple[str, int, int]] = set()
    answered = 0
    whole = read_question(question, ignore=ignore) if question else None
    for number, part in enumerate(parts, start=1):
        label = part_label(part, number)
        own = [p for p in passages if p.part == number - 1]
        if not own and part.sources:
            own = [p for p in passages if p.source in part.sources]
        chosen: list[tuple[Sentence, float]] = []
        if own:
            pool = sentence_pool(own)
            scored = score_sentences(read_question(part.text, ignore=ignore), pool, model)
            if whole is not None and WEIGHTS.part_whole:
                overall = {s.sentence.key: s for s in score_sentences(whole, pool, model)}
                scored = sorted(
                    (
                        replace(
                            s,
                            score=s.score + WEIGHTS.part_whole * overall[s.sentence.key].score,
                        )
                        for s in scored
                        if s.sentence.key in overall
                    ),
                    key=lambda s: (-s.score, s.sentence.rank, s.sentence.start),
                )
            scored = [s for s in scored if s.sentence.key not in taken]
            if scored and scored[0].evidence >= WEIGHTS.part_threshold * threshold:
                best = scored[0]
                chosen = [(best.sentence, best.score)]
                chosen += [(other, best.score) for other in best.linked if other.key not in taken]
                chosen = _ordered(chosen)[: WEIGHTS.sentences_per_part]
                taken.update(sentence.key for sentence, _ in chosen)
                answered += 1
        lines.append((label, chosen))
    if answered == 0:
        return None
    citations: list[Citation] = []
    rendered = []
    for label, chosen in lines:
        if not chosen:
            rendered.append(f"{label}: {NOT_FOUND[0].lower()}{NOT_FOUND[1:]}")
            continue
        quotes = []
        for sentence, score in chosen:
            citation = citation_for(len(citations) + 1, sentence, score)
            citations.append(citation)
            quotes.append(f"{citation.quote} [{citation.n}]")
        rendered.append(f"{label}: " + " ".join(quotes))
    return Draft("\n".join(rendered), tuple(citations), False, 0.0)
