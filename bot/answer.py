"""Answerers: extractive (the default: no LLM, nothing generated, nothing invented) and LLM.

The extractive answerer splits the retrieved passages into sentences, scores each against the
question and answers with the few that answer it, in article order, each followed by its [n].
Scoring is lexical evidence (IDF-weighted coverage of the question's words, with name forms such as
Qatar/Qatari folded by `bot.terms`), the passage's retrieval score, and the shape of the question:
"What did Qatar say about X?" wants a statement whose speaker is Qatar's, even when the sentence
that names the speaker ("Qatari Prime Minister ... al Thani was upbeat") is a neighbour of the one
that holds the statement ("... it was positive, said al Thani"); both are then quoted.

When the best evidence falls below `refusal_threshold` the answer is a refusal that still returns
the closest sentences as citations. The LLM answerer (`LLMAnswerer`) writes from numbered,
delimited passages; every [n] it writes is checked afterwards and mapped to a verbatim sentence.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from bot.models import Citation, Turn
from bot.terms import terms
from index.chunk import split_sentences

if TYPE_CHECKING:
    from bot.prompts import Prompt
    from bot.retrieve import Passage, Query
    from bot.settings import Settings
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
    pronoun_speaker: float = 0.7  # "he said": the sentence before names him, probably
    unnamed_speaker: float = 0.3  # a bare quotation: the sentence before may say whose
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

_SPEECH_VERBS = (
    r"said|says|say|saying|told|tells|tell|added|adds|stated|states|announced|announces|declared|"
    r"explained|explains|noted|notes|warned|warns|insisted|insists|argued|argues|wrote|writes|"
    r"claimed|claims|stressed|stresses|asserted|urged|urges|remarked|commented|comments|replied|"
    r"responded|spoke|speaking|acknowledged|admitted|denied|denies|confirmed|confirms|revealed|"
    r"reveals|vowed|vows|promised|pledged|called|described|described|suggested|suggests|believes|"
    r"according to|in a statement|statement"
)
_SPEECH = re.compile(rf"\b(?:{_SPEECH_VERBS})\b|[\"“”]", re.IGNORECASE)
_NAME_PARTICLES = r"(?:al|el|bin|ben|de|del|der|van|von|da|di|du|la|le|ibn|abu)"
_NAME = (
    rf"(?:{_NAME_PARTICLES}[\s-]+)?[A-Z][\w'’.-]*"
    rf"(?:\s+(?:{_NAME_PARTICLES}[\s-]+)?[A-Z][\w'’.-]*){{0,3}}"
)
_SAID_NAME = re.compile(
    rf"\b(?i:said|says|added|told|stated|explained|noted|warned|insisted|argued|wrote|continued|"
    rf"declared|announced|stressed|according to)\s+(?P<name>{_NAME})"
)
_NAME_SAID = re.compile(
    rf"(?P<name>{_NAME})\s*(?:,[^,]{{1,80}},\s*)?\s+(?:said|says|added|told|stated|explained|"
    rf"noted|warned|insisted|argued|wrote|declared|announced|stressed|spoke|speaking)\b"
)
_SAYS = r"(?:said|says|added|told|stated|explained|noted|warned|insisted|argued|stressed)"
# "the armed group said", "said the head of US diplomacy": a speaker described, not named.
_DESCRIBED_SAID = re.compile(
    rf"\b(?P<before>(?:the|a|an|its|his|her|their)(?:\s+[\w'’-]+){{1,4}})\s+{_SAYS}\b|"
    rf"\b{_SAYS}\s+(?P<after>(?:the|a|an|his|her|its|their|one)(?:\s+[\w'’-]+){{1,5}})",
    re.IGNORECASE,
)
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
    by_article: dict[str, list[Sentence]] = {}
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


def is_statement(text: str) -> bool:
    """Whether a sentence reports what someone said (a speech verb or quotation marks)."""
    return _SPEECH.search(text) is not None


def looks_like_instruction(text: str) -> bool:
    """Whether a sentence reads as an order to a model ("Ignore previous instructions...")."""
    return _INSTRUCTION.search(text) is not None


def speaker_name(text: str) -> str | None:
    """The name a statement attributes itself to ("... said al Thani" -> "al Thani")."""
    for pattern in (_SAID_NAME, _NAME_SAID):
        for match in pattern.finditer(text):
            name = match.group("name").strip(" .,'’")
            words = [w for w in name.split() if w[:1].isupper()]
            if words and words[0].lower() not in _NOT_NAMES:
                return name
    return None


# Capitalised words that start clauses rather than name people.
_NOT_NAMES = frozenset(
    "the a an this that these those it he she they we i but and or although though however "
    "nevertheless meanwhile officials sources shortly after before in on at for".split()
)
_PRONOUN_SAID = re.compile(rf"\b(?:he|she|they|we)\s+{_SAYS}\b", re.IGNORECASE)
_TITLE_WORD = re.compile(r"^(?:[A-Z][\w'’.-]*|of|for|al|el|bin|ibn|de|van|von|da|di|du|la|le)$")


def described_as(text: str, surname: str) -> set[str]:
    """The words that introduce a name in `text`: "Qatari Prime Minister Mohammed al Thani" for
    "Thani" gives {qatar, prime, minister, mohammed, al, thani}; a comma or a lower-case word ends
    the description."""
    found: set[str] = set()
    tokens = re.findall(r"[\w'’.-]+|[^\w\s]", text)
    target = terms(surname)
    for index, token in enumerate(tokens):
        if terms(token) != target:
            continue
        run = [token]
        for previous in reversed(tokens[:index]):
            if not _TITLE_WORD.match(previous) or previous.lower() in _NOT_NAMES:
                break
            run.append(previous)
        found.update(terms(" ".join(run)))
    return found


@dataclass(frozen=True)
class Speaker:
    """Who makes a statement, as far as the sentence and its neighbours tell."""

    words: frozenset[str]  # words that describe the speaker
    linked: tuple[Sentence, ...]  # neighbours that name or introduce the speaker
    certainty: float  # 1 for a name, less for "he said" / "the group said"


def speaker_of(pool: Pool, sentence: Sentence) -> Speaker:
    """The speaker of a statement.

    A named speaker ("said al Thani") is described by the name and by how a neighbour introduces
    it ("Qatari Prime Minister Mohammed al Thani was upbeat"). "He said" points at the sentence
    before; so does a bare quotation, or "the group said", with less certainty. A quotation
    followed by a sentence starting "..., said X" is X's.
    """
    before = pool.previous.get(sentence.key)
    after = pool.following.get(sentence.key)
    name = speaker_name(sentence.text)
    if name:
        surname = name.split()[-1]
        words = set(terms(name))
        introducing = []
        for other in (before, after):
            if other is not None:
                introduced = described_as(other.text, surname)
                if introduced - words:
                    words |= introduced
                    introducing.append(other)
        return Speaker(frozenset(words), tuple(introducing), 1.0)
    # A bare quotation: "..., said X" or "X said" in the next sentence, else the one before.
    if after is not None and _SAID_NAME.match(after.text.lstrip("\"“”'’ ,")) is not None:
        named = speaker_name(after.text)
        if named:
            return Speaker(frozenset(terms(named)), (after,), 1.0)
    bare = sentence.text.lstrip()[:1] in '"“' and speaker_name(sentence.text) is None
    if bare and before is not None:
        named = speaker_name(before.text)
        if named:
            return Speaker(frozenset(terms(named)), (before,), WEIGHTS.pronoun_speaker)
    linked: tuple[Sentence, ...] = (before,) if before is not None else ()
    if before is not None and _PRONOUN_SAID.search(sentence.text):
        return Speaker(before.words, linked, WEIGHTS.pronoun_speaker)
    described = _DESCRIBED_SAID.search(sentence.text)
    if described:
        description = described.group("before") or described.group("after") or ""
        return Speaker(frozenset(terms(description)), linked, 1.0)
    # A statement that names no speaker: its own subject, or the sentence before.
    words = set(sentence.words)
    if before is not None and sentence.text.lstrip()[:1] in '"“':
        return Speaker(frozenset(words | before.words), (before,), WEIGHTS.unnamed_speaker)
    return Speaker(frozenset(words), (), WEIGHTS.pronoun_speaker)


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
        speaker = frozenset(terms(frame.group("speaker"))) - ignored
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


# -- LLM answers: checking what the model wrote ------------------------------------------------

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


def best_sentence(claim: str, passage: Passage, question: str = "") -> Sentence | None:
    """The sentence of `passage` that best supports `claim` (word overlap, then the question)."""
    pool = sentence_pool([passage])
    if not pool.sentences:
        return None
    claim_words = set(terms(claim))
    question_words = set(terms(question))

    def overlap(sentence: Sentence) -> tuple[float, float, int]:
        shared = len(sentence.words & claim_words) / (len(claim_words) or 1)
        asked = len(sentence.words & question_words) / (len(question_words) or 1)
        return (shared, asked, -sentence.start)

    return max(pool.sentences, key=overlap)


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for piece in re.split(r"\s*[,;]\s*", group):
        bounds = re.split(r"\s*[–-]\s*", piece)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            if 0 < high - low < 10:
                numbers.extend(range(low, high + 1))
                continue
        numbers.extend(int(b) for b in bounds if b.isdigit())
    return numbers


class CitationChecker:
    """Checks an LLM answer's citations as it streams.

    An [n] that points at a passage becomes a citation of the sentence of that passage which best
    supports the claim it follows (numbered in order of first use, so two claims citing one
    passage may quote two sentences of it); any other [n] is dropped with the space before it.
    Text is held back until the first valid citation, so that nothing is shown of an answer that
    will be replaced by the extractive one; after that only a possibly unfinished marker is held.
    The pieces `feed` and `finish` return add up to `text`.
    """

    def __init__(self, passages: Sequence[Passage], question: str = "") -> None:
        self.passages = list(passages)
        self.question = question
        self.sentences: list[tuple[Sentence, Passage]] = []  # citation n - 1 -> what it quotes
        self._number: dict[tuple[str, int, int], int] = {}
        self._pending = ""
        self._out: list[str] = []
        self._released = 0
        self._claim_start = 0

    @property
    def text(self) -> str:
        return "".join(self._out)

    def feed(self, piece: str) -> str:
        """Add a piece of model output; returns the text that may be shown now."""
        self._pending += piece
        cut = self._safe_cut(self._pending)
        self._consume(self._pending[:cut])
        self._pending = self._pending[cut:]
        return self._release()

    def finish(self) -> str:
        """The end of the output: returns what is left to show."""
        self._consume(self._pending.rstrip())
        self._pending = ""
        return self._release()

    @staticmethod
    def _safe_cut(text: str) -> int:
        """How much of `text` cannot be part of a marker still arriving."""
        cut = len(text)
        bracket = text.rfind("[")
        if bracket != -1 and "]" not in text[bracket:]:
            cut = bracket
        # Spaces before a marker go with it when it is dropped.
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        return cut

    def _consume(self, text: str) -> None:
        if not self._out:
            text = text.lstrip()
        position = 0
        for match in _MARKER.finditer(text):
            self._out.append(text[position : match.start()])
            wanted = dict.fromkeys(_numbers(match.group(1)))
            valid = [n for n in wanted if 1 <= n <= len(self.passages)]
            numbers = [self._cite(n) for n in valid]
            numbers = [n for n in dict.fromkeys(numbers) if n is not None]
            if numbers:
                space = match.group(0)[: match.group(0).index("[")]
                self._out.append(space + "".join(f"[{n}]" for n in numbers))
                self._claim_start = len(self.text)
            position = match.end()
        self._out.append(text[position:])

    def _cite(self, passage_number: int) -> int | None:
        passage = self.passages[passage_number - 1]
        claim = _last_sentence(self.text[self._claim_start :])
        sentence = best_sentence(claim, passage, self.question)
        if sentence is None:
            return None
        if sentence.key not in self._number:
            self._number[sentence.key] = len(self.sentences) + 1
            self.sentences.append((sentence, passage))
        return self._number[sentence.key]

    def _release(self) -> str:
        if not self.sentences:
            return ""
        full = self.text
        piece = full[self._released :]
        self._released = len(full)
        return piece

    def citations(self) -> tuple[Citation, ...]:
        found = []
        for n, (sentence, passage) in enumerate(self.sentences, start=1):
            score = passage.dense_score if passage.dense_score is not None else passage.score
            found.append(citation_for(n, sentence, score))
        return tuple(found)


def _last_sentence(text: str) -> str:
    """The claim a marker follows: the last sentence before it (two when the last is short)."""
    pieces = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    if not pieces:
        return text
    claim = pieces[-1]
    if len(claim) < 20 and len(pieces) > 1:
        claim = " ".join(pieces[-2:])
    return claim


def check_citations(text: str, passages: Sequence[Passage], question: str = "") -> CitationChecker:
    """Check a whole LLM answer at once (see CitationChecker)."""
    checker = CitationChecker(passages, question)
    checker.feed(text)
    checker.finish()
    return checker


def is_refusal(text: str) -> bool:
    """Whether the model said the passages don't answer (the prompt asks for NOT_FOUND)."""
    normal = re.sub(r"[’`]", "'", text).strip().lower()
    return normal.startswith(NOT_FOUND.lower().rstrip(".")) or normal in ("", "i don't know.")


def stream_llm_answer(
    chat_model: Any,
    messages: list[Any],
    passages: Sequence[Passage],
    question: str,
    fallback: Callable[[], Draft],
) -> Iterator[str | Draft]:
    """Stream the model's answer with its citations checked, then yield the Draft.

    An answer left with no valid citation is replaced by `fallback()` (the extractive answer),
    unless the model said the articles don't say, which is a refusal.
    """
    from bot.errors import AnswerError

    checker = CitationChecker(passages, question)
    raw: list[str] = []
    try:
        for chunk in chat_model.stream(messages):
            piece = _content(chunk)
            if not piece:
                continue
            raw.append(piece)
            shown = checker.feed(piece)
            if shown:
                yield shown
    except Exception as exc:
        raise AnswerError(
            f"the chat model failed: {type(exc).__name__}: {exc}",
            hint="check NEWSBOT_LLM and the provider's credentials, or unset NEWSBOT_LLM",
        ) from exc
    shown = checker.finish()
    if shown:
        yield shown
    if checker.sentences:
        yield Draft(checker.text, checker.citations(), False, fallback().confidence)
        return
    said = "".join(raw)
    if is_refusal(said):
        draft = fallback()
        closest = draft.citations if draft.refused else draft.citations[:CLOSEST_CITATIONS]
        text = NOT_FOUND + (CLOSEST_NOTE if closest else "")
        yield text
        yield Draft(text, closest, True, draft.confidence)
        return
    log.info("the LLM answer had no valid citation; answering extractively instead")
    draft = fallback()
    yield draft.text
    yield draft


def _content(chunk: Any) -> str:
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return str(content or "")


# -- the LLM prompt ----------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """Article text made inert inside the prompt's <passage> blocks: no tag in it can close or
    open a block, because no `<`, `>` or `&` survives as itself."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    return neutralise(" ".join(value.split())).replace('"', "&quot;")


def format_passages(passages: Sequence[Passage]) -> str:
    """The passages as numbered, delimited blocks for prompts/answer.md."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        meta = passage.metadata
        published = passage.published_at
        attributes = {
            "n": str(n),
            "source": str(meta.get("source", "")),
            "published": published.date().isoformat() if published else "",
            "title": str(meta.get("title", "")),
        }
        head = " ".join(
            f'{key}="{_attribute(value)}"' for key, value in attributes.items() if value
        )
        blocks.append(f"<passage {head}>\n{neutralise(passage.text)}\n</passage>")
    return "\n".join(blocks)


def answer_messages(
    prompt: Prompt, question: str, passages: Sequence[Passage], today: str
) -> list[tuple[str, str]]:
    return prompt.messages(question=question, passages=format_passages(passages), today=today)


def load_chat_model(spec: str, *, temperature: float) -> Any:
    """A LangChain chat model from "provider:model" (init_chat_model)."""
    from bot.errors import AnswerError, SettingsError

    provider, _, model = spec.partition(":")
    if not provider or not model:
        raise SettingsError(
            f"NEWSBOT_LLM={spec!r} is not provider:model",
            hint="e.g. openai:gpt-4o-mini or ollama:llama3.1; unset it for extractive answers",
        )
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(spec, temperature=temperature)
    except ImportError as exc:
        raise AnswerError(
            f"cannot load the chat model {spec}: {exc}",
            hint=f"pip install langchain-{provider.replace('_', '-')}",
        ) from exc
    except Exception as exc:
        raise AnswerError(
            f"cannot load the chat model {spec}: {type(exc).__name__}: {exc}",
            hint="check the provider's settings (API key, base URL), or unset NEWSBOT_LLM",
        ) from exc


class Answerer:
    """Turns a question and its passages into a Draft: extractively, or with a chat model.

    The chat model is `chat_model` when given (any LangChain chat model), else the one named by
    settings.llm, else none. Prompts are loaded and checked here, so a broken prompt file fails
    Bot.open rather than the first question.
    """

    def __init__(self, settings: Settings, chat_model: Any = None) -> None:
        from bot.prompts import load_prompts

        self.settings = settings
        self.prompts = load_prompts()
        if chat_model is None and settings.llm:
            chat_model = load_chat_model(settings.llm, temperature=settings.llm_temperature)
        self.chat_model = chat_model

    def standalone(self, question: str, history: Sequence[Turn] | None) -> str:
        from bot.conversation import condense

        return condense(
            question, history, chat_model=self.chat_model, prompt=self.prompts["condense"]
        )

    def extractive(
        self, question: str, passages: Sequence[Passage], query: Query | None = None
    ) -> Draft:
        return extractive_answer(
            question,
            passages,
            max_sentences=self.settings.max_answer_sentences,
            threshold=self.settings.refusal_threshold,
            parts=query.parts if query is not None else (),
        )

    def stream(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        query: Query | None = None,
        today: date | None = None,
    ) -> Iterator[str | Draft]:
        """Text pieces as they are produced, then the Draft."""
        draft = self.extractive(question, passages, query)
        if self.chat_model is None or draft.refused:
            # Below the calibrated evidence threshold even an LLM would be guessing.
            yield draft.text
            yield draft
            return
        messages = answer_messages(
            self.prompts["answer"], question, passages, (today or date.today()).isoformat()
        )
        yield from stream_llm_answer(self.chat_model, messages, passages, question, lambda: draft)
