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


def _load_names() -> tuple[dict[str, str], dict[str, str], re.Pattern[str] | None]:
    """(lower-case form -> name, capitalised form -> name, phrase pattern) from names.tsv."""
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
    return lower, cased, re.compile(pattern, re.IGNORECASE) if phrases else None


_NAMES, _CASED_NAMES, _PHRASES = _load_names()

# PyStemmer's Stemmer objects are not thread-safe (Slack answers questions on several threads).
_local = threading.local()


@lru_cache(maxsize=200_000)
def _analyse_word(token: str) -> tuple[str, str]:
    """(the word as stop lists spell it, its term) for one token as the text writes it."""
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
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return word, str(stemmer.stemWord(word))


def _normalise(text: str) -> str:
    text = _ABBREVIATION.sub(lambda match: match.group().replace(".", ""), text)
    if _PHRASES is not None:
        text = _PHRASES.sub(lambda match: _NAMES[" ".join(match.group().lower().split())], text)
    return text


def _analyse(text: str, dropped: frozenset[str]) -> list[str]:
    analysed = map(_analyse_word, _WORD.findall(_normalise(text)))
    return [term for word, term in analysed if word and word not in dropped]


_QUESTION_DROPPED = STOPWORDS | REPORT_WORDS


def terms(text: str) -> list[str]:
    """The terms of `text` in order: stop words out, names folded, other words stemmed."""
    return _analyse(text, STOPWORDS)


def query_terms(text: str) -> list[str]:
    """The terms of a question, claim or sentence that carry evidence: `terms` without the words
    people use about reports ("said", "article", "according")."""
    return _analyse(text, _QUESTION_DROPPED)


def fold_name(word: str) -> str:
    """The name a word stands for ("Emirati" -> "uae", "U.S." -> "usa", "Qatar's" -> "qatar");
    a word that names nothing comes back as its term ("talks" -> "talk")."""
    found = _analyse(word, frozenset())
    return found[0] if found else word.lower()
