"""The one text analyser: the words of a text as retrieval, answering and follow-ups compare them.

The lexical index, the extractive answerer and the follow-up reader all use it, so a word means
the same everywhere ("U.S." and "American" are both `usa`). The steps: docs/ingesting.md.

Changing what `terms`, `query_terms` or `fold_name` return changes every stored index's terms:
bump `ANALYSER_VERSION` then, so that older indexes are rebuilt rather than searched with new terms.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from importlib import resources

import Stemmer

ANALYSER_VERSION = 1

# Words that carry no evidence about what a text says.
STOPWORDS = frozenset(
    """
    a about above after again against all also am among amid an and any are around as at be
    because been before being below between both but by can could did do does doing down during
    each even ever few for from further had has have having he her here hers herself him himself
    his how i if in into is it its itself just let me more most much must my myself no nor not now
    of off on once only or other ought our ours ourselves out over own per same shall she should
    so some such than that the their theirs them themselves then there these they this those
    through to too under until up upon us very via was we were what whatever when whenever where
    whether which while who whom whose why will with within without would yet you your yours
    yourself yourselves s t
    """.split()
)

# Words questions use about reports rather than about what happened ("what did the article say",
# "according to the report"): dropped from questions, kept in the articles' own index.
REPORT_WORDS = frozenset(
    """
    according article articles based considering covered coverage discuss discussed discusses
    indicate indicated indicates mention mentioned mentions news outlet piece publish published
    regarding report reported reporting reports said say says source sources stated stories
    story suggest suggested suggests tell told
    """.split()
)

_ABBREVIATION = re.compile(r"\b(?:[A-Z]\.){2,}")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# In ASCII text the pattern's words are the runs of letters and digits, joined by apostrophes:
# every other character ends one, as a space does for `str.split` (`_words`).
_NOT_IN_WORDS = str.maketrans(
    {c: " " for c in map(chr, range(128)) if not c.isalnum() and c != "'"}
)


def _load_names() -> tuple[
    dict[str, str], dict[str, str], re.Pattern[str] | None, tuple[str, ...] | None
]:
    """(lower-case form -> name, capitalised form -> name, phrase pattern, the phrases' first
    words) from names.tsv."""
    lower: dict[str, str] = {}
    cased: dict[str, str] = {}
    phrases: list[str] = []
    table = resources.files("index") / "data" / "names.tsv"
    for line in table.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, forms = line.partition("\t")
        lower[name] = name
        for form in (form.strip() for form in forms.split(",")):
            if " " in form:
                phrases.append(form)
            (lower if form.islower() else cased)[form] = name
    phrases.sort(key=len, reverse=True)  # "united arab emirates" before any shorter phrase
    pattern = r"\b(?:" + "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases) + r")\b"
    # In ASCII text ignoring case is lower-casing, for words of ASCII letters (None: not those).
    starts = (
        tuple({p.split()[0].lower() for p in phrases}) if all(map(str.isascii, phrases)) else None
    )
    return lower, cased, re.compile(pattern, re.IGNORECASE) if phrases else None, starts


_NAMES, _CASED_NAMES, _PHRASES, _PHRASE_STARTS = _load_names()

# What every match of the two substitutions of `_normalise` holds: an abbreviation ".X.", a
# phrase its first word. Looking for these first skips the substitutions in most texts, a third
# of the time to analyse one (docs/benchmarks.md, "Scale").
_IN_ABBREVIATION = re.compile(r"\.[A-Z]\.")

# PyStemmer's Stemmer objects are not thread-safe (Slack answers questions on several threads).
_local = threading.local()

_QUESTION_DROPPED = STOPWORDS | REPORT_WORDS
_TERMS, _QUERY_TERMS, _FOLD_NAME = range(3)  # the places of `_analyse_word`'s answer


@lru_cache(maxsize=200_000)
def _analyse_word(token: str) -> tuple[str | None, str | None, str | None]:
    """The term of one token as the text writes it, for `terms`, `query_terms` and `fold_name`
    in turn (None: that one drops the word)."""
    word, term = _word_and_term(token)
    if not word:
        return None, None, None
    return (
        None if word in STOPWORDS else term,
        None if word in _QUESTION_DROPPED else term,
        term,
    )


def _word_and_term(token: str) -> tuple[str, str]:
    """(the word as stop lists spell it, its term)."""
    if token.endswith(("'s", "’s")):
        token = token[:-2]
    if token in _CASED_NAMES:
        return token, _CASED_NAMES[token]
    word = token.lower()
    if not word.isascii():
        decomposed = unicodedata.normalize("NFKD", word)
        word = "".join(c for c in decomposed if not unicodedata.combining(c))
    word = word.replace("'", "").replace("’", "")
    name = _NAMES.get(word)
    if name is None and word.endswith("s"):
        name = _NAMES.get(word[:-1])  # "Qataris"
    if name is not None:
        return word, name
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        # Without PyStemmer's own cache: `_analyse_word` caches every token already, and missing
        # both cost 1.3-1.7 us a word against 0.3 us stemmed directly (same stems).
        stemmer = _local.stemmer = Stemmer.Stemmer("english", 0)
    return word, str(stemmer.stemWord(word))


def _normalise(text: str) -> str:
    if _IN_ABBREVIATION.search(text):
        text = _ABBREVIATION.sub(lambda match: match.group().replace(".", ""), text)
    if _PHRASES is not None and (
        _PHRASE_STARTS is None
        or not text.isascii()
        or any(map(text.lower().__contains__, _PHRASE_STARTS))
    ):
        text = _PHRASES.sub(_phrase_name, text)
    return text


def _phrase_name(match: re.Match[str]) -> str:
    """The name a phrase stands for; as written when ignoring case matched letters that lower()
    spells otherwise ("Unıted States", "UNİTED STATES": not a KeyError that fails the ingest)."""
    return _NAMES.get(" ".join(match.group().lower().split()), match.group())


def _words(text: str) -> list[str]:
    """`_WORD.findall(text)`; for ASCII text split instead, the pattern matching only pieces
    that hold an apostrophe: 1.5-5x faster (docs/benchmarks.md, "Scale")."""
    if not text.isascii():
        return _WORD.findall(text)
    pieces = text.translate(_NOT_IN_WORDS).split()
    if "'" not in text:
        return pieces
    return [
        word for piece in pieces for word in (_WORD.findall(piece) if "'" in piece else [piece])
    ]


def _analyse(text: str, kind: int) -> list[str]:
    analysed = map(_analyse_word, _words(_normalise(text)))
    return [term for found in analysed if (term := found[kind]) is not None]


def terms(text: str) -> list[str]:
    """The terms of `text` in order: stop words out, names folded, other words stemmed."""
    return _analyse(text, _TERMS)


def query_terms(text: str) -> list[str]:
    """The terms of a question, claim or sentence that carry evidence: `terms` without the words
    people use about reports ("said", "article", "according")."""
    return _analyse(text, _QUERY_TERMS)


def fold_name(word: str) -> str:
    """The name a word stands for ("Emirati" -> "uae", "U.S." -> "usa", "Qatar's" -> "qatar");
    a word that names nothing comes back as its term ("talks" -> "talk")."""
    found = _analyse(word, _FOLD_NAME)
    return found[0] if found else word.lower()
