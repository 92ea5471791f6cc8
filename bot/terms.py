"""Words as the answerer compares them: lower-cased, possessives dropped, name forms folded.

"Qatari", "Qatar's" and "Qatar" all become `qatar`; "Egyptian" becomes `egypt`; "U.S." becomes
`usa`. A light suffix stemmer folds plurals and -ing/-ed forms. Pure functions, no model.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Words that carry no evidence about what a question asks.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each even ever few for
    from further had has have having he her here hers herself him himself his how i if in into is it
    its itself just let me more most much must my myself no nor not now of off on once only or other
    ought our ours ourselves out over own per same shall she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up upon us
    very was we were what whatever when whenever where whether which while who whom whose why will
    with within without would yet you your yours yourself yourselves
    according among amid around based considering regarding via
    article articles report reports reported reporting news piece story stories outlet published
    say says said tell told mention mentioned mentions state stated states
    """.split()
)

# Demonyms and adjectives that name the same actor as the place ("Qatari officials" = Qatar).
DEMONYMS = {
    "afghan": "afghanistan",
    "african": "africa",
    "american": "usa",
    "americans": "usa",
    "argentine": "argentina",
    "argentinian": "argentina",
    "australian": "australia",
    "austrian": "austria",
    "bahraini": "bahrain",
    "belgian": "belgium",
    "brazilian": "brazil",
    "british": "britain",
    "briton": "britain",
    "canadian": "canada",
    "chinese": "china",
    "colombian": "colombia",
    "cuban": "cuba",
    "danish": "denmark",
    "dutch": "netherlands",
    "egyptian": "egypt",
    "emirati": "uae",
    "english": "england",
    "ethiopian": "ethiopia",
    "european": "europe",
    "filipino": "philippines",
    "finnish": "finland",
    "french": "france",
    "german": "germany",
    "greek": "greece",
    "indian": "india",
    "indonesian": "indonesia",
    "iranian": "iran",
    "iraqi": "iraq",
    "irish": "ireland",
    "israeli": "israel",
    "italian": "italy",
    "japanese": "japan",
    "jordanian": "jordan",
    "kenyan": "kenya",
    "korean": "korea",
    "kuwaiti": "kuwait",
    "lebanese": "lebanon",
    "libyan": "libya",
    "mexican": "mexico",
    "moroccan": "morocco",
    "nigerian": "nigeria",
    "norwegian": "norway",
    "omani": "oman",
    "pakistani": "pakistan",
    "palestinian": "palestine",
    "palestinians": "palestine",
    "polish": "poland",
    "portuguese": "portugal",
    "qatari": "qatar",
    "russian": "russia",
    "saudi": "saudi",
    "scottish": "scotland",
    "spanish": "spain",
    "sudanese": "sudan",
    "swedish": "sweden",
    "swiss": "switzerland",
    "syrian": "syria",
    "taiwanese": "taiwan",
    "turkish": "turkey",
    "ukrainian": "ukraine",
    "venezuelan": "venezuela",
    "vietnamese": "vietnam",
    "welsh": "wales",
    "yemeni": "yemen",
    # Other spellings of one actor.
    "america": "usa",
    "uk": "britain",
    "emirates": "uae",
    "gazan": "gaza",
    "gazans": "gaza",
    "türkiye": "turkey",
}

# "U.S." / "US" (capitals) are the country, "us" is a pronoun: fold the country before lower-casing.
_US = re.compile(r"\bU\.\s?S\.(?:\s?A\.)?|\bUSA\b|\bUS\b")
_UK = re.compile(r"\bU\.K\.")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s?$")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """One word in its folded form (the word is already lower case)."""
    word = _POSSESSIVE.sub("", word)
    if word in DEMONYMS:
        return DEMONYMS[word]
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is", "ous")):
        word = word[:-1]
    if word.endswith("ing") and len(word) > 5:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) > 4 and not word.endswith("eed"):
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return DEMONYMS.get(word, word)


def _undouble(word: str) -> str:
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The raw words of `text`, country abbreviations folded, in order."""
    text = _UK.sub(" UK ", _US.sub(" USA ", text))
    return _WORD.findall(text)


def terms(text: str) -> list[str]:
    """Folded content words of `text`, in order (stopwords dropped)."""
    found = []
    for word in words(text):
        lower = word.lower()
        if lower in STOPWORDS:
            continue
        found.append(stem(lower))
    return found


def term_set(text: str) -> frozenset[str]:
    return frozenset(terms(text))
