"""The extractive answerer (the default: no LLM, nothing generated, nothing invented).

The extractive answerer splits the retrieved passages into sentences, scores each against the
question and answers with the few that answer it, in article order, each followed by its [n].
Scoring is lexical evidence (IDF-weighted coverage of the question's words, with name forms such as
Qatar/Qatari folded by `bot.terms`), the passage's retrieval score, and the shape of the question:
"What did Qatar say about X?" wants a statement whose speaker is Qatar's, even when the sentence
that names the speaker ("Qatari Prime Minister ... al Thani was upbeat") is a neighbour of the one
that holds the statement ("... it was positive, said al Thani"); both are then quoted.

When the best evidence falls below `refusal_threshold` the answer is a refusal that still returns
the closest sentences as citations. The LLM answerer is bot/llm.py; it falls back to this one.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from bot.models import Citation
from bot.speakers import attribute, is_statement, speaker_terms
from bot.terms import terms
from index.chunk import split_sentences

if TYPE_CHECKING:
    from bot.retrieve import Passage
    from bot.understand import Part

log = logging.getLogger(__name__)

NOT_FOUND = "The articles don't say."
NOT_FOUND_PREFIX = NOT_FOUND  # older name, kept for callers
CLOSEST_NOTE = " The closest passages are below."
# Citations returned with a refusal, so the user can see what the bot did find.
CLOSEST_CITATIONS = 2
# Passages whose sentences are kept split (about 1 kB each).
SPLIT_CACHE = 4096


@dataclass(frozen=True)
class Weights:
    """How much each kind of evidence counts in a sentence's score (tuned on ../shared/eval and
    the sample article; see docs/answering.md)."""

    own: float = 0.6  # question words in the sentence itself
    context: float = 0.15  # ... only in its neighbours or the article's title
    retrieval: float = 0.25  # the passage's cosine similarity to the question
    answer_type: float = 0.08  # a who/when/how-many question meets a name/date/number
    # "What did X say about Y": the topic Y, the speaker X, and the sentence being a statement.
    topic: float = 0.35
    speaker: float = 0.35
    statement: float = 0.15
    no_speaker: float = 0.5  # retrieval similarity left as evidence when X said nothing here
    # Names and numbers in a question pin down what it is about more than other words.
    name_boost: float = 1.5
    # Another sentence joins the best one when it scores at least this share of it.
    runner_up: float = 0.8
    # A question in parts gets, per part, its statement and who made it.
    sentences_per_part: int = 2
    part_whole: float = 2.0  # weight of the whole question when ranking a part's sentences
    part_threshold: float = 0.65  # share of the refusal threshold a part's evidence must reach
    # Evidence (for refusal) mixes lexical coverage and retrieval similarity.
    evidence_retrieval: float = 0.4
    # A "what did X say" question with no statement by X anywhere is weaker evidence.


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
            frozenset(terms(text[span.start : span.end])),
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


def read_question(text: str, *, ignore: Iterable[str] = ()) -> Question:
    """The question's content words (without `ignore`, e.g. the outlets it names), its kind and,
    for "what did X say about Y", the speaker X and topic Y."""
    ignored = set(ignore)
    words = tuple(dict.fromkeys(t for t in terms(text) if t not in ignored))
    names = set()
    for match in re.finditer(r"(?<!^)\b[A-Z][\w'’.-]*|\b\d[\d,.]*\b", text.strip()):
        names.update(terms(match.group()))
    kind = "other"
    speaker: frozenset[str] = frozenset()
    topic: frozenset[str] = frozenset()
    frame = _SPEECH_FRAME.match(text)
    if frame:
        speaker = speaker_terms(frame.group("speaker")) - ignored
        topic = frozenset(terms(frame.group("topic") or "")) - ignored
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
            found.update(terms(str(source)))
    return found


def idf_weights(question: Question, pool: Pool) -> dict[str, float]:
    """IDF of each question word over the sentence pool (absent words weigh most), names up."""
    total = len(pool.sentences)
    counts: Counter[str] = Counter()
    for sentence in pool.sentences:
        counts.update(w for w in sentence.words if w in question.words)
    weights = {}
    for word in question.words:
        weight = math.log(1.0 + (total + 1) / (counts[word] + 0.5))
        if word in question.names:
            weight *= WEIGHTS.name_boost
        weights[word] = weight
    return weights


# -- scoring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    sentence: Sentence
    score: float  # ranks sentences against each other
    evidence: float  # how well it answers, comparable across questions (for refusal)
    statement: bool = False
    linked: tuple[Sentence, ...] = ()  # neighbours that say who is speaking


def _coverage(words: Iterable[str], weights: dict[str, float], wanted: Iterable[str]) -> float:
    wanted = [w for w in wanted if w in weights]
    total = sum(weights[w] for w in wanted)
    if total <= 0:
        return 0.0
    present = set(words)
    return sum(weights[w] for w in wanted if w in present) / total


def _answer_type(question: Question, text: str) -> float:
    if question.kind == "when":
        return 1.0 if _DATE.search(text) else 0.0
    if question.kind == "number":
        return 1.0 if _NUMBER.search(text) else 0.0
    if question.kind in ("who", "where"):
        for match in _CAPITALISED.finditer(text):
            if not set(terms(match.group())) & set(question.words):
                return 1.0
    return 0.0


def score_sentences(question: Question, pool: Pool) -> list[Scored]:
    """Every sentence of the pool with its score and evidence, best first."""
    weights = idf_weights(question, pool)
    title_words: dict[str, frozenset[str]] = {}
    scored = []
    for sentence in pool.sentences:
        if looks_like_instruction(sentence.text) and not question.about_instructions:
            continue
        passage = sentence.passage
        if passage.article_id not in title_words:
            title = str(passage.metadata.get("title", ""))
            title_words[passage.article_id] = frozenset(terms(title))
        neighbours = pool.neighbours(sentence)
        around = set().union(*(n.words for n in neighbours), title_words[passage.article_id])
        similarity = max(passage.dense_score or 0.0, 0.0)
        statement = is_statement(sentence.text)
        linked: tuple[Sentence, ...] = ()
        if question.kind == "say":
            speaker = 0.0
            if statement:
                who = speaker_of(pool, sentence)
                speaker = who.certainty * _coverage(who.words, weights, question.speaker)
                linked = who.linked
            topic_words = question.topic or (set(question.words) - question.speaker)
            topic = _coverage(sentence.words, weights, topic_words)
            topic_around = _coverage(sentence.words | around, weights, topic_words)
            score = (
                WEIGHTS.topic * topic
                + WEIGHTS.context * (topic_around - topic)
                + WEIGHTS.speaker * speaker
                + WEIGHTS.statement * statement
                + WEIGHTS.retrieval * similarity
            )
            # What X said: no statement by X, no answer, however close the topic.
            lexical = speaker * (0.5 + 0.25 * (topic + topic_around))
            if speaker == 0:
                similarity *= WEIGHTS.no_speaker
        else:
            own = _coverage(sentence.words, weights, question.words)
            with_context = _coverage(sentence.words | around, weights, question.words)
            score = (
                WEIGHTS.own * own
                + WEIGHTS.context * (with_context - own)
                + WEIGHTS.answer_type * _answer_type(question, sentence.text)
                + WEIGHTS.retrieval * similarity
            )
            lexical = 0.5 * (own + with_context)
        evidence = (
            1 - WEIGHTS.evidence_retrieval
        ) * lexical + WEIGHTS.evidence_retrieval * similarity
        scored.append(Scored(sentence, score, evidence, statement, linked))
    scored.sort(key=lambda s: (-s.score, s.sentence.rank, s.sentence.start))
    return scored


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


def select(
    scored: Sequence[Scored], max_sentences: int, threshold: float
) -> list[tuple[Sentence, float]]:
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
        if runner.sentence.key in taken or runner.evidence < threshold:
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
    threshold: float,
    ignore: Iterable[str] = (),
    parts: Sequence[Part] = (),
) -> Draft:
    """Answer with the sentences that answer the question, or refuse with the closest ones.

    A question in several `parts` (one per report it names) is answered part by part, each from
    its own passages, side by side; see `parts_answer`.
    """
    pool = sentence_pool(passages)
    ignored = set(ignore) | outlet_terms(passages)
    read = read_question(question, ignore=ignored)
    scored = score_sentences(read, pool)
    if not scored:
        return refusal([], 0.0)
    confidence = max(s.evidence for s in scored)
    if confidence < threshold:
        return refusal(scored, confidence)
    if len(parts) > 1:
        by_parts = parts_answer(
            parts, passages, threshold=threshold, ignore=ignored, question=question
        )
        if by_parts is not None:
            return replace(by_parts, confidence=confidence)
    text, citations = render(select(scored, max_sentences, threshold))
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
            scored = score_sentences(read_question(part.text, ignore=ignore), pool)
            if whole is not None and WEIGHTS.part_whole:
                overall = {s.sentence.key: s for s in score_sentences(whole, pool)}
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
