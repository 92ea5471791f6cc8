"""Who said it: a statement's speaker, named ("said al Thani"), described ("the armed group said")
or pointed at ("she said"), and its *profile* (titles, appositions, the organisation "its" stands
for), which a question's naming of the speaker is matched against. Pure; words compared by
`index.text`. Shapes and rules: docs/answering.md ("Who said it")."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from index.text import query_terms

# Verbs that attribute a statement to its subject or to the name after them.
_VERBS = (
    r"said|says|added|adds|told|tells|stated|explained|noted|warned|insisted|argued|wrote|"
    r"continued|declared|announced|stressed|replied|responded|acknowledged|admitted|confirmed|"
    r"revealed|urged|called|described|insisted|vowed|promised|pledged|claimed|spoke|speaking|"
    r"commented|remarked|recalled|cautioned|conceded|predicted|welcomed|criticised|criticized"
)
_PARTICLE_WORDS = "al el bin ben de del der van von da di du la le ibn abu dos".split()
_PARTICLES = "(?:" + "|".join(_PARTICLE_WORDS) + ")"
_CAP = r"[A-Z][\w'’.-]*"
_NAME = (
    rf"(?:{_PARTICLES}[\s-]+)?{_CAP}"
    rf"(?:\s+(?:{_PARTICLES}[\s-]+|of\s+(?:the\s+)?)?{_CAP}){{0,5}}"
)
# "said al Thani", "according to Moriyama", "told Belgian television" is not a name: checked after.
_VERB_NAME = re.compile(rf"\b(?i:said|says|added|according to|continued|wrote)\s+(?P<name>{_NAME})")
# "said Toffees boss Sean Dyche": a title with a role noun before a full name.
_VERB_TITLED_NAME = re.compile(
    rf"\b(?i:said|says|added|according to)\s+(?P<title>(?:{_CAP}\s+){{0,3}}[a-z]+\s+)"
    rf"(?P<name>{_CAP}\s+{_CAP}(?:\s+{_CAP})?)"
)
# "Blinken said", "Kenji Moriyama, said", "Moriyama told reporters".
_NAME_VERB = re.compile(
    rf"(?P<name>{_NAME})\s*,?\s+(?:(?i:also|later|then|has|had)\s+)?(?:{_VERBS})\b"
)
# "Dolores Okafor, the union's president, said", "Blinken, whose government ..., both ...,
# for ..., spoke" (an apposition may hold commas of its own).
_NAME_APPOSITION_VERB = re.compile(
    rf"(?P<name>{_NAME})(?P<apposition>(?:\s*,[^,.;]{{1,90}}){{1,4}},)\s+(?:(?i:also|later|then)\s+)?"
    rf"(?:{_VERBS})\b"
)
# "the armed group said", "The mayor, who faces re-election, said", "its chief executive told".
_DESCRIBED_VERB = re.compile(
    rf"(?<![\w'’])(?P<description>(?i:the|its|his|her|their|a|an)\s+[\w'’-]+(?:\s+[\w'’-]+){{0,5}}?)"
    rf"(?:\s*,[^,]{{1,90}},)?\s+(?:{_VERBS})\b"
)
# "Hospital workers said", "Farmers told reporters": a bare plural or role, then a speech verb.
_PLAIN_SUBJECT_VERB = re.compile(
    rf"^[\"“”'’\s]*(?P<description>[A-Za-z][a-z'’-]+(?:\s+[a-z][a-z'’-]+){{0,2}})\s+(?:{_VERBS})\b"
)
# "said the head of US diplomacy", "according to the ministry".
_VERB_DESCRIBED = re.compile(
    r"\b(?i:said|says|added|according to|told)\s+(?P<description>(?i:the|its|his|her|their|a|an|"
    r"one)\s+[\w'’-]+(?:\s+(?:of|for|at|in|on)?\s*[\w'’-]+){0,5})"
)
_PRONOUN_VERB = re.compile(rf"\b(?P<pronoun>he|she|they|we|it)\s+(?:also\s+)?(?:{_VERBS})\b", re.I)
_VERB_PRONOUN = re.compile(r"\b(?:said|says|added|told)\s+(?P<pronoun>he|she|they)\b", re.I)
_SPEECH_WORDS = (*_VERBS.split("|"), "says", "say", "according to", "in a statement")
_SPEECH = re.compile(rf"\b(?:{'|'.join(_SPEECH_WORDS)})\b|[\"“”]", re.I)
# ASCII text without a quotation mark matches _SPEECH only with one of these lower-cased \w+ runs
# or a phrase: checked first, 5x cheaper than the search most sentences fail (docs/benchmarks.md).
_SPEECH_RUNS = frozenset(word for word in _SPEECH_WORDS if " " not in word)
_SPEECH_PHRASES = tuple(word for word in _SPEECH_WORDS if " " in word)
_RUN = re.compile(r"\w+")
# Capitalised words that start a clause or a quotation rather than name a speaker.
_NOT_NAMES = frozenset(
    "the a an this that these those it its he she they we i our my his her their you but and or "
    "although though however nevertheless meanwhile officials sources shortly after before in on "
    "at for as if when while what who there here no not yes".split()
)
# Descriptions that point back at an organisation, not at a person.
_ORGANISATIONS = frozenset(
    query_terms(
        "group movement organisation organization union ministry agency authority company firm "
        "office government party militia council committee department team club association "
        "federation board bank court army police alliance coalition campaign"
    )
)
# How sure an attribution is: a name in the sentence, a description, a pronoun or a neighbour.
NAMED, DESCRIBED, POINTED = 1.0, 0.9, 0.7


def is_statement(text: str) -> bool:
    """Whether a sentence reports what someone said (a speech verb or quotation marks)."""
    if '"' in text or "“" in text or "”" in text:
        return True
    if text.isascii():  # where ignoring case is lower-casing
        lowered = text.lower()
        if _SPEECH_RUNS.isdisjoint(_RUN.findall(lowered)) and not any(
            phrase in lowered for phrase in _SPEECH_PHRASES
        ):
            return False
    return _SPEECH.search(text) is not None


def _clean_name(name: str) -> str | None:
    words = name.strip(" .,'’").split()
    while words and words[0].lower() in _NOT_NAMES:
        words = words[1:]
    if not any(w[:1].isupper() for w in words) or words[-1].lower().rstrip(".,") in _DAYS:
        return None
    return " ".join(words)


@dataclass(frozen=True)
class Mention:
    """How a sentence names its speaker."""

    kind: str  # "named", "described" or "pronoun"
    text: str  # the name, the description or the pronoun
    apposition: str = ""  # "the union's president" in "Okafor, the union's president, said"


@lru_cache(maxsize=16384)
def mention(text: str) -> Mention | None:
    """The speaker a statement names itself, if it does."""
    for match in _VERB_NAME.finditer(text):
        name = _clean_name(match.group("name"))
        # "told Belgian television": one capitalised word before a lower-case one is not the
        # speaker ("said Tuesday" is not a name either: `_clean_name`).
        following = text[match.end() : match.end() + 20].lstrip()
        if name and not (len(name.split()) == 1 and following[:1].islower()):
            return Mention("named", name)
    for match in _VERB_TITLED_NAME.finditer(text):
        return Mention("named", match.group("name"), match.group("title").strip())
    # The earliest name that a verb of speech follows, directly or after an apposition; an
    # apposition that is itself a name ("Its representative in Nairobi, Dr. Abdourahmane
    # Diallo, said") is the speaker, and the name before it is not.
    named = []
    for pattern in (_NAME_VERB, _NAME_APPOSITION_VERB):
        for match in pattern.finditer(text):
            name = _clean_name(match.group("name"))
            apposition = (match.groupdict().get("apposition") or "").strip(" ,")
            if name and not (apposition and _is_name(apposition)):
                named.append((match.start(), name, apposition))
                break
    if named:
        _, name, apposition = min(named)
        return Mention("named", name, apposition)
    subject = _PLAIN_SUBJECT_VERB.match(text)
    if subject and not {w.lower() for w in subject.group("description").split()} & _NOT_NAMES:
        return Mention("described", subject.group("description"))
    pronoun = _PRONOUN_VERB.search(text) or _VERB_PRONOUN.search(text)
    described = [m for m in (_VERB_DESCRIBED.search(text), _DESCRIBED_VERB.search(text)) if m]
    if described:
        first = min(described, key=lambda m: m.start())
        if pronoun is None or first.start() < pronoun.start():
            return Mention("described", first.group("description"))
    if pronoun:
        return Mention("pronoun", pronoun.group("pronoun").lower())
    return None


def _is_name(text: str) -> bool:
    words = text.split()
    return bool(words) and all(w[:1].isupper() or w.lower() in _PARTICLE_WORDS for w in words)


_DAYS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday today yesterday january february "
    "march april may june july august september october november december".split()
)
# Words that may stand before a name as its title: capitalised words, demonyms, role nouns.
_TITLE = re.compile(r"^(?:[A-Z][\w'’.-]*|of|for|al|el|bin|ibn|de|van|von|da|di|du|la|le)$")
_ROLE = re.compile(r"^[a-z][a-z-]+$")


@lru_cache(maxsize=16384)
def descriptions(name: str, text: str) -> frozenset[str]:
    """Words `text` uses to describe `name`: titles before it ("Qatari Prime Minister Mohammed
    al Thani", "Kenyan rider Amara Njoroge", "the Belgian Lotte Verbeke") and appositions
    ("Dolores Okafor, the union's president,"; "Its chief executive, Paul Brennan,")."""
    surname = name.split()[-1]
    found: set[str] = set()
    target = query_terms(surname)
    if not target:
        return frozenset()
    tokens = re.findall(r"[\w'’.-]+|[^\w\s]", text)
    for index, token in enumerate(tokens):
        if query_terms(token) != target:
            continue
        run = [token]
        lower = 0
        for previous in reversed(tokens[:index]):
            if previous.lower() in _NOT_NAMES:
                break
            if _TITLE.match(previous):
                run.append(previous)
            elif _ROLE.match(previous) and lower < 2:  # "rider" in "Kenyan rider Amara Njoroge"
                run.append(previous)
                lower += 1
            else:
                break
        found.update(query_terms(" ".join(run)))
    escaped = re.escape(surname)
    after = re.search(
        rf"{escaped}\s*,\s*(?P<desc>(?:the|its|his|her|their|a|an)\s[^,.;]{{2,80}})", text
    )
    if after is None:
        after = re.search(rf"{escaped}\s*,\s*(?P<desc>[\w'’]+['’]s\s[^,.;]{{2,80}})", text)
    if after:
        found.update(query_terms(after.group("desc")))
    before = re.search(
        rf"(?:^|[,;]\s*)(?P<desc>(?:[A-Z][\w'’]*|the|its|his|her|their)\s[^,.;]{{2,80}}?),\s*"
        rf"(?:[A-Z][\w'’.-]*\s+){{0,4}}{escaped}\b",
        text,
    )
    if before:
        found.update(query_terms(before.group("desc")))
    if found:  # a question may name an organisation by its initials ("European Space Agency")
        names = re.finditer(r"(?:[A-Z][a-z]+\s+(?:of\s+)?){1,5}[A-Z][a-z]+", text)
        initials = ("".join(w[0] for w in name.group().split() if w[0].isupper()) for name in names)
        found |= {letters.lower() for letters in initials if len(letters) >= 2}
    return frozenset(found)


@dataclass(frozen=True)
class Attribution:
    """Who makes a statement: the words that describe the speaker, the neighbouring sentences
    that name or introduce it (by their offset from the statement: -1 the sentence before), and
    how sure the attribution is."""

    words: frozenset[str]
    linked: tuple[int, ...]
    certainty: float


def _profile(name: str, texts: Sequence[str]) -> frozenset[str]:
    return frozenset(query_terms(name)).union(*(descriptions(name, text) for text in texts))


def _owner(text: str, before: Sequence[str]) -> set[str]:
    """ "Its chief executive": the organisation the sentence before speaks for, or is about."""
    if not re.match(r"[\"“”'’\s]*(?i:its|their)\b", text) or not before:
        return set()
    said = mention(before[-1])
    if said is not None and said.kind != "pronoun":
        return set(query_terms(said.text))
    # else the sentence's first name ("The World Health Organization, which ...")
    subject = next((full for _, full in _names(before[-1])), None)
    return set(query_terms(subject)) if subject else set()


def _names(text: str) -> Iterator[tuple[str, str]]:
    """(name, name with the short form it gives in brackets) of each name in `text`, in order:
    "the Islamic Resistance Movement (Hamas)"."""
    for match in re.finditer(_NAME, text):
        name = _clean_name(match.group())
        if name:
            short = re.match(r"\s*\((?P<short>[^()]{1,40})\)", text[match.end() :])
            yield name, f"{name} {short.group('short')}" if short else name


def _named_in(text: str) -> list[str]:
    """Speakers and names a sentence holds, the speaker first."""
    said = mention(text)
    found = [said.text] if said is not None and said.kind == "named" else []
    for name, full in _names(text):
        if name not in found:
            found.append(full)
    return found


def attribute(
    text: str, before: Sequence[str] = (), after: str | None = None, elsewhere: Sequence[str] = ()
) -> Attribution:
    """The speaker of the statement `text`, from the sentences before it (nearest last), the one
    after, and the article's others (where a name may come with its title); else, with low
    certainty, its own words."""
    around = [*elsewhere, *before, text, *([after] if after else [])]
    said = mention(text)
    if said is not None and said.kind == "named":
        words = set(_profile(said.text, around)) | set(query_terms(said.apposition))
        words |= _owner(text, before) | _owner(said.apposition, before)
        own = descriptions(said.text, text) | set(query_terms(said.text))
        neighbours = ((-1, before[-1] if before else None), (1, after))
        linked = tuple(
            offset
            for offset, other in neighbours
            if other is not None and descriptions(said.text, other) - own
        )
        return Attribution(frozenset(words), linked, NAMED)
    if said is not None and said.kind == "described":
        description = set(query_terms(said.text)) | _owner(said.text, before)
        if (antecedent := _antecedent(description, before)) is None:
            return Attribution(frozenset(description), (), DESCRIBED)
        offset, name = antecedent
        return Attribution(frozenset(description | _profile(name, around)), (offset,), DESCRIBED)
    if said is not None and said.kind == "pronoun" and before:
        for offset in range(1, min(3, len(before)) + 1):
            if names := _named_in(before[-offset]):
                return Attribution(_profile(names[0], around), (-offset,), POINTED)
    # A bare quotation: ", said X" opening the next sentence, else the speaker of the one before.
    if after is not None and re.match(r"^[\"“”'’,\s]*(?:said|says|added)\b", after, re.I):
        nxt = mention(after)
        if nxt is not None and nxt.kind == "named":
            return Attribution(_profile(nxt.text, around), (1,), NAMED)
    if before and text.lstrip()[:1] in '"“' and (names := _named_in(before[-1])):
        return Attribution(_profile(names[0], around), (-1,), POINTED)
    return Attribution(frozenset(query_terms(text)), (), 0.3)


def _antecedent(description: set[str], before: Sequence[str]) -> tuple[int, str] | None:
    """The named speaker a description stands for: the latest name before whose profile shares a
    word with it ("the head of US diplomacy" -> "U.S. Secretary of State Antony Blinken": `usa`),
    linked to the nearest sentence naming it ("Blinken ... spoke in a similar vein"); for a bare
    organisation ("the armed group"), a name of the two sentences before."""
    for offset in range(1, min(4, len(before)) + 1):
        sentence = before[-offset]
        for name in _named_in(sentence):
            if description & (set(query_terms(name)) | descriptions(name, sentence)):
                surname = query_terms(name.split()[-1])
                for nearer in range(1, offset):
                    if surname and set(surname) <= set(query_terms(before[-nearer])):
                        return -nearer, name
                return -offset, name
    if description & _ORGANISATIONS:
        for offset in range(1, min(2, len(before)) + 1):
            for name in _named_in(before[-offset]):
                # A name that can stand for "the group": several capitalised words ("Volta
                # Motors"), an acronym or a short form in brackets; not "Egypt" or "Amman".
                if len(name.split()) >= 2 or re.fullmatch(r"[A-Z]{2,6}", name):
                    return -offset, name
    return None


def speaker_terms(text: str) -> frozenset[str]:
    """How a question names a speaker, as words: its terms, and initials written in capitals
    ("WHO", "ESA"), which are not stop words there."""
    found = set(query_terms(text))
    found.update(w.lower() for w in re.findall(r"\b[A-Z]{2,5}\b", text) if w not in ("US", "UK"))
    return frozenset(found)
