"""Question understanding, pure: the dates (relative to an injected `today`), outlets (of the
source names the retriever passes in) and parts a question names (docs/understanding.md)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, Literal, cast

from dateutil.relativedelta import relativedelta

Relation = Literal["on", "after", "before"]
Precision = Literal["day", "week", "month", "year"]


_MONTH_NAMES = """january february march april may june july august september october november
    december""".split()
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_MONTHS |= {name[:3]: number for name, number in _MONTHS.items()} | {"sept": 9}
# Month words that are also ordinary English words count only when capitalised.
_AMBIGUOUS_MONTHS = frozenset({"may", "mar", "jan", "jun", "sep", "dec", "oct", "aug"})
_WEEKDAYS = {
    name: index
    for index, name in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())
}
_NUMBER_WORDS = {
    w: n for n, w in enumerate("one two three four five six seven eight nine ten".split(), 1)
}
_NUMBER_WORDS |= {"a": 1, "an": 1, "couple of": 2, "few": 3}

# Longest first, so that "march" is not read as "mar".
_MONTH = "(?P<m>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<d>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<y>(?:19|20)\d\d)"
_PHASE = (
    r"(?:(?P<phase>early|mid|late|the\s+(?:start|beginning|middle|end)\s+of|end\s+of"
    r"|beginning\s+of|start\s+of)[\s-]+)?"
)
_COUNT_WORDS = r"\d+|" + "|".join(word.replace(" ", r"\s+") for word in _NUMBER_WORDS)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_ISO = _re(r"\b(?P<y>(?:19|20)\d\d)[-/](?P<m>[01]?\d)[-/](?P<d>[0-3]?\d)\b")
_DAY_MONTH = _re(rf"\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b")
_MONTH_DAY = _re(rf"\b{_MONTH}\s+(?:the\s+)?{_DAY}(?!\d)(?:,?\s+{_YEAR})?\b")
_MONTH_YEAR = _re(rf"\b{_PHASE}{_MONTH},?\s+(?:of\s+)?{_YEAR}")
_MONTH_ALONE = _re(
    r"\b(?:(?P<prep>in|during|since|until|till|before|after|by|from|through|throughout|of|this"
    rf"|last|next)\s+)?{_PHASE}{_MONTH}\b"
)
_YEAR_ALONE = _re(
    r"\b(?P<prep>in|during|since|until|till|before|after|throughout|from|through|of|for)\s+"
    rf"{_PHASE}{_YEAR}\b(?![-/]\d)"
)
_RELATIVE = _re(
    r"\b(?P<word>the\s+day\s+before\s+yesterday|yesterday|today|tonight|this\s+morning"
    r"|this\s+afternoon|this\s+evening|last\s+night|(?:the\s+)?(?:last|past|previous)\s+"
    rf"(?P<count>{_COUNT_WORDS})\s+(?P<unit>days?|weeks?|months?|years?)"
    rf"|(?P<count2>{_COUNT_WORDS})\s+(?P<unit2>days?|weeks?|months?|years?)\s+ago"
    r"|(?:the\s+)?(?:last|past|previous)\s+(?P<unit3>week|month|year)"
    r"|this\s+(?:past\s+)?(?P<unit4>week|month|year)"
    r"|(?:this|last|past)\s+weekend)\b"
)
_WEEKDAY = _re(r"\b(?:(?P<which>last|this|past|on)\s+)?(?P<wd>" + "|".join(_WEEKDAYS) + r")\b")
_ANCHORED = _re(
    r"\b(?:(?P<same>the\s+same\s+(?:day|date)|that\s+same\s+day|that\s+day)"
    r"|(?P<next>the\s+(?:following|next)\s+day|the\s+day\s+after|a\s+day\s+later|the\s+next\s+morning)"
    r"|(?P<prev>the\s+(?:previous|preceding)\s+day|the\s+day\s+before|a\s+day\s+(?:earlier|before))"
    r"|(?P<count>\d+|two|three|four|five|six|seven|eight|nine|ten|a|one)\s+(?P<unit>days?|weeks?)"
    r"\s+(?P<dir>later|earlier|after|before)"
    r"|the\s+(?P<week>following|next|previous)\s+week)\b"
)
_LATEST = _re(
    r"\b(?:latest|most\s+recent(?:ly)?|newest|last\s+(?:report|article|story|update)"
    r"|up[\s-]to[\s-]date|currently)\b"
)
_AFTER_CUE = _re(r"(?:\b(?:after|since|following|starting|later\s+than)\s+(?:on\s+)?)$")
_BEFORE_CUE = _re(r"(?:\b(?:before|until|till|by|prior\s+to|up\s+to|earlier\s+than)\s+(?:on\s+)?)$")
_NEGATED_CUE = _re(r"(?:\b(?:other\s+than|except|not\s+on|apart\s+from)\s+(?:on\s+)?)$")
_RANGE_JOIN = _re(r"^\s*(?:and|to|until|till|through|-|–)\s*$")
_RANGE_START = _re(r"\b(?:between|from)\s+(?:the\s+)?$")
_ANY_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


@dataclass(frozen=True)
class DateMention:
    """A date or range a question names: days first..last, local to the articles; `relation`:
    published on them, after (from `first` on) or before (up to `last`). Bounds are inclusive:
    questions often say "after 26 September" of an article published that day."""

    start: int
    end: int
    text: str
    first: date
    last: date
    relation: Relation = "on"
    precision: Precision = "day"
    anchored: bool = False  # "the following day": relative to another date in the question

    def label(self) -> str:
        if self.relation == "after":
            return f"from {self.first.isoformat()}"
        if self.relation == "before":
            return f"until {self.last.isoformat()}"
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


def _phase(text: str | None) -> str:
    """ "early", "mid", "late", or "" for a whole month or year."""
    words = " ".join((text or "").lower().split()).removeprefix("the ")
    return {"start of": "early", "beginning of": "early", "middle of": "mid", "end of": "late"}.get(
        words, words
    )


def _month_bounds(year: int, month: int, phase: str | None) -> tuple[date, date]:
    last_day = calendar.monthrange(year, month)[1]
    days = {"early": (1, 10), "mid": (11, 20), "late": (21, last_day)}
    first, last = days.get(_phase(phase), (1, last_day))
    return date(year, month, first), date(year, month, last)


def _infer_year(month: int, day: int, context: DateContext) -> int:
    """The year of a date named without one (and no other year in the question): the latest
    occurrence not after today, preferring one inside the dates the store holds."""
    today, known = context.today, context.known_range
    candidates = [date(today.year - back, month, min(day, 28)) for back in range(30)]
    possible = [candidate for candidate in candidates if candidate <= today]
    if known is not None:
        low, high = known[0] - timedelta(days=31), known[1] + timedelta(days=31)
        possible = [candidate for candidate in possible if low <= candidate <= high] or possible
    return possible[0].year if possible else today.year


def _count(value: str | None) -> int:
    if not value:
        return 1
    value = " ".join(value.lower().split())
    return int(value) if value.isdigit() else _NUMBER_WORDS.get(value, 1)


@dataclass(frozen=True)
class DateContext:
    """What a date rule may read besides its match: the question, today, and the dates found."""

    question: str
    today: date
    known_range: tuple[date, date] | None
    found: tuple[DateMention, ...] = ()  # sorted by position; what anchored phrases refer to

    def year_near(self, position: int) -> int | None:
        years = _ANY_YEAR.finditer(self.question)
        nearest = min(years, key=lambda year: abs(year.start() - position), default=None)
        return int(nearest.group()) if nearest else None


@dataclass(frozen=True)
class DateRule:
    """One kind of date phrase: where it is (`pattern`) and the days it means (`resolve`, which
    returns None for a match that is no date after all, e.g. "may" the verb)."""

    name: str
    pattern: re.Pattern[str]
    resolve: Callable[[re.Match[str], DateContext], DateMention | None]


def _mention(
    match: re.Match[str],
    first: date,
    last: date,
    precision: Precision,
    start: int | None = None,
    anchored: bool = False,
) -> DateMention:
    """The mention of `match` (from `start` on, to leave a preposition to the relation cues)."""
    start = match.start() if start is None else start
    text = match.string[start : match.end()].strip()
    return DateMention(start, match.end(), text, first, last, "on", precision, anchored)


def _month_of(match: re.Match[str]) -> int | None:
    """The month a match names (a name or an ISO number); None for lower-case "may", "march"."""
    word = match["m"].lower().rstrip(".")
    if word in _AMBIGUOUS_MONTHS and not match["m"][:1].isupper():
        return None
    return _MONTHS[word] if word in _MONTHS else int(word)


def _day_of_month(match: re.Match[str], context: DateContext) -> DateMention | None:
    month = _month_of(match)
    if month is None:
        return None
    number = int(match["d"])
    year = int(match["y"]) if match["y"] else context.year_near(match.start())
    year = year or _infer_year(month, number, context)
    try:
        day = date(year, month, number)
    except ValueError:
        return None
    return _mention(match, day, day, "day")


def _month_of_year(match: re.Match[str], context: DateContext) -> DateMention | None:
    month = _month_of(match)
    if month is None:
        return None
    first, last = _month_bounds(int(match["y"]), month, match["phase"])
    return _mention(match, first, last, "month")


def _month_alone(match: re.Match[str], context: DateContext) -> DateMention | None:
    # A bare month needs a preposition or a phase ("in November"), a short form a capital ("Nov").
    month = _month_of(match)
    word = match["m"].lower().rstrip(".")
    if month is None or not (match["prep"] or match["phase"]):
        return None
    if len(word) <= 4 and word != "may" and not match["m"][:1].isupper():
        return None
    today = context.today
    year = context.year_near(match.start())
    if year is None and (match["prep"] or "").lower() == "next":
        year = today.year if month > today.month else today.year + 1
    elif year is None:
        year = _infer_year(month, 1, context)
    first, last = _month_bounds(year, month, match["phase"])
    start = match.start("phase" if match["phase"] else "m")
    return _mention(match, first, last, "month", start=start)


def _year_alone(match: re.Match[str], context: DateContext) -> DateMention | None:
    year = int(match["y"])
    months = {"early": (1, 4), "mid": (5, 8), "late": (9, 12)}
    first, last = months.get(_phase(match["phase"]), (1, 12))
    start = match.start("phase" if match["phase"] else "y")
    end = _month_bounds(year, last, None)[1]
    return _mention(match, date(year, first, 1), end, "year", start=start)


def _weekday(match: re.Match[str], context: DateContext) -> DateMention | None:
    question = match.string
    if not match["which"] and not match["wd"][:1].isupper():
        return None
    # "Black Friday", "Monday Night Football": part of a name, not a date.
    after_word = re.match(r"\W{0,2}(\w+)", question[match.end() :])
    before_word = re.search(r"(\w+)\W{0,2}$", question[: match.start("wd")])
    if (after_word and after_word.group(1)[:1].isupper()) or (
        not match["which"] and before_word and before_word.group(1)[:1].isupper()
    ):
        return None
    today = context.today
    back = (today.weekday() - _WEEKDAYS[match["wd"].lower()]) % 7
    if (match["which"] or "").lower() in ("last", "past") and back == 0:
        back = 7
    day = today - timedelta(days=back)
    return _mention(match, day, day, "day")


def _anchored_days(match: re.Match[str], context: DateContext) -> DateMention | None:
    """ "The following day" and friends: relative to the date named before them (or after)."""
    before = [m for m in context.found if m.end <= match.start()]
    after = [m for m in context.found if m.start >= match.end()]
    anchor = before[-1] if before else after[0] if after else None
    if anchor is None:
        return None
    if match["same"]:
        first, last = anchor.first, anchor.last
    elif match["week"]:
        step = timedelta(days=-7 if match["week"].lower() == "previous" else 7)
        first, last = anchor.first + step, anchor.last + step
    elif match["next"]:
        first = last = anchor.last + timedelta(days=1)
    elif match["prev"]:
        first = last = anchor.first - timedelta(days=1)
    else:  # "two days later", "a week before"
        days = _count(match["count"]) * (7 if match["unit"].lower().startswith("week") else 1)
        if match["dir"].lower() in ("earlier", "before"):
            first = last = anchor.first - timedelta(days=days)
        else:
            first = last = anchor.last + timedelta(days=days)
    return _mention(match, first, last, "day" if first == last else "week", anchored=True)


# Tried in order: a phrase an earlier rule took is not read again, so the longer forms come first
# and anchored phrases last. Why this table and not dateparser: docs/understanding.md.
DATE_RULES: tuple[DateRule, ...] = (
    DateRule("iso day", _ISO, _day_of_month),
    DateRule("day month [year]", _DAY_MONTH, _day_of_month),
    DateRule("month day [year]", _MONTH_DAY, _day_of_month),
    DateRule("month year", _MONTH_YEAR, _month_of_year),
    DateRule("month", _MONTH_ALONE, _month_alone),
    DateRule("year", _YEAR_ALONE, _year_alone),
    DateRule("relative", _RELATIVE, lambda match, c: _mention(match, *_relative(match, c.today))),
    DateRule("weekday", _WEEKDAY, _weekday),
    DateRule("anchored", _ANCHORED, _anchored_days),
)


def parse_dates(
    question: str, *, today: date, known_range: tuple[date, date] | None = None
) -> list[DateMention]:
    """Every date or range the question names, in order; `known_range` (first and last publication
    day in the store) gives the year of "on October 18th" when today's year holds no articles."""
    found: list[DateMention] = []
    for rule in DATE_RULES:
        for match in rule.pattern.finditer(question):
            start, end = match.span()
            if any(start < mention.end and end > mention.start for mention in found):
                continue  # an earlier rule read (part of) this phrase
            mention = rule.resolve(match, DateContext(question, today, known_range, tuple(found)))
            if mention is not None:
                found.append(mention)
                found.sort(key=lambda mention: mention.start)
    return _apply_relations(question, found)


# Phrases that name one day, by how many days before today.
_DAYS_BACK = {"today": 0, "tonight": 0, "this morning": 0, "this afternoon": 0, "this evening": 0}
_DAYS_BACK |= {"yesterday": 1, "last night": 1, "the day before yesterday": 2}


def _relative(match: re.Match[str], today: date) -> tuple[date, date, Precision]:
    word = " ".join(match["word"].lower().split())
    if word in _DAYS_BACK:
        day = today - timedelta(days=_DAYS_BACK[word])
        return day, day, "day"
    if word.endswith("weekend"):
        # The latest Saturday (on a weekend, this one), but "last weekend" asked on a weekend
        # is the one before, as "last week" is the calendar week before this one
        saturday = today - timedelta(days=(today.weekday() - 5) % 7)
        if word.startswith("last") and today.weekday() >= 5:
            saturday -= timedelta(days=7)
        return saturday, saturday + timedelta(days=1), "day"
    if match["unit2"]:  # "three days ago"
        amount, unit = _count(match["count2"]), match["unit2"].lower().rstrip("s")
        day = _shift(today, -amount, unit)
        return day, day, "day" if unit == "day" else "week"
    if match["unit"]:  # "the past 3 days": a window ending today
        amount, unit = _count(match["count"]), match["unit"].lower().rstrip("s")
        return _shift(today, -amount, unit), today, "week"
    unit = (match["unit3"] or match["unit4"] or "week").lower()
    if "past" in word:  # "the past week", "this past month": a window ending today
        return _shift(today, -1, unit), today, "week"
    # "this week": from its start (Monday, the 1st, 1 January) until today; "last week": the
    # calendar week (month, year) before this one
    if unit == "week":
        start = today - timedelta(days=today.weekday())
    else:
        start = today.replace(month=1 if unit == "year" else today.month, day=1)
    if match["unit3"]:
        return _shift(start, -1, unit), start - timedelta(days=1), cast(Precision, unit)
    return start, today, cast(Precision, unit)


def _shift(day: date, amount: int, unit: str) -> date:
    """`day` moved by `amount` days, weeks, months or years (the 31st a month on: its last)."""
    return day + relativedelta(**{f"{unit}s": amount})


def _apply_relations(question: str, mentions: list[DateMention]) -> list[DateMention]:
    """after/before/between cues; a date the question excludes ("other than ...") is dropped."""
    result: list[DateMention] = []
    pairs = zip(mentions, [*mentions[1:], None], strict=False)  # each mention and the next
    for mention, following in pairs:
        before_text = question[max(0, mention.start - 30) : mention.start]
        if _NEGATED_CUE.search(before_text):
            continue
        if (
            following is not None
            and _RANGE_JOIN.match(question[mention.end : following.start])
            and _RANGE_START.search(before_text)
        ):
            text = question[mention.start : following.end]
            first, last = min(mention.first, following.first), max(mention.last, following.last)
            mention = replace(
                mention, end=following.end, text=text, first=first, last=last, anchored=False
            )
            next(pairs)  # the range's end is read
        elif _AFTER_CUE.search(before_text):
            mention = replace(mention, relation="after")
        elif _BEFORE_CUE.search(before_text):
            mention = replace(mention, relation="before")
        result.append(mention)
    return result


_WORD = re.compile(r"[^\W_]+")
_SEPARATORS = re.compile(r"\s+[|\-–—:]\s+|:\s+")
# Words that, alone, are ordinary English: an alias made only of them is not an outlet name.
_GENERIC = frozenset(
    """age news times post daily today world business sport sports life style line science media
    arena blog english independent journal herald mail star sun telegraph mirror express tribune
    standard report reports review weekly monthly online magazine insider live health lifestyle
    entertainment arts travel wire hub the a of and""".split()
)
_SMALL_WORDS = frozenset({"the", "of", "and", "a", "an", "on", "in", "for", "at", "to", "&"})
# A lower-case outlet name counts after or before one of these ("according to the verge").
_OUTLET_CUE_BEFORE = re.compile(
    r"(?:according\s+to|reported\s+by|published\s+(?:by|in|on)|(?:report|article|story|piece|"
    r"coverage|reporting|review|post|analysis|reports|articles|stories)\s+(?:from|by|in|on|of)"
    r"|(?:from|by|in|on)\s+(?:the\s+)?(?:website|site|outlet))\s+(?:the\s+)?$",
    re.IGNORECASE,
)
_OUTLET_CUE_AFTER = re.compile(
    r"^(?:'s|’s)?\s+(?:report|article|story|piece|coverage|reported|reports|wrote|writes|says|"
    r"said|published|claims|claimed|notes|noted|review)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class OutletMention:
    """An outlet named in a question, with the store's spelling(s) it matches."""

    start: int
    end: int
    text: str
    sources: tuple[str, ...]


def outlet_aliases(source: str) -> set[tuple[str, ...]]:
    """Word sequences that name `source`: the full name, the name before a '|' or ' - '
    subtitle, without a leading 'The', without a trailing 'News' or '.com'."""
    aliases: set[tuple[str, ...]] = set()
    for head in {source, _SEPARATORS.split(source)[0]}:
        words = tuple(word.lower() for word in _WORD.findall(head))
        if not words:
            continue
        variants = {words, words[:-1] if words[-1] == "com" and len(words) > 1 else words}
        variants |= {
            variant[1:] for variant in variants if variant[0] == "the" and len(variant) > 1
        }
        variants |= {
            variant[:-1] for variant in variants if variant[-1] == "news" and len(variant) > 1
        }
        # The name (before any subtitle) always counts; a shorter form only if not all generic.
        aliases |= {v for v in variants if v == words or not all(w in _GENERIC for w in v)}
    return aliases


@lru_cache(maxsize=16)
def _alias_table(sources: tuple[str, ...]) -> tuple[dict[str, set[str]], int]:
    """joined alias ("theverge") -> sources; and the longest alias in words."""
    table: dict[str, set[str]] = {}
    longest = 1
    for source in sources:
        for alias in outlet_aliases(source):
            table.setdefault("".join(alias), set()).add(source)
            longest = max(longest, len(alias))
    return table, longest


def match_outlets(question: str, sources: Iterable[str]) -> list[OutletMention]:
    """Outlets of `sources` named in the question, longest match first, in question order. Fuzzy
    in spacing, case and form ("Verge", "TechCrunch's", "Tech Crunch", "CBS Sports" for
    "CBSSports.com"), but a lower-case name counts only next to a cue ("according to", "'s
    report"), so "the age of AI" is not The Age."""
    table, longest = _alias_table(tuple(sorted(set(sources))))
    if not table:
        return []
    words = list(_WORD.finditer(question))
    mentions: list[OutletMention] = []
    index = 0
    while index < len(words):
        for size in range(min(longest + 1, len(words) - index), 0, -1):
            span = words[index : index + size]
            key = "".join(word.group().lower() for word in span)
            start, end = span[0].start(), span[-1].end()
            if key in table and _credible(question, [word.group() for word in span], start, end):
                sources = tuple(sorted(table[key]))
                mentions.append(OutletMention(start, end, question[start:end], sources))
                index += size
                break
        else:
            index += 1
    return mentions


def _credible(question: str, span: Sequence[str], start: int, end: int) -> bool:
    """Whether the words `span` (question[start:end]) name an outlet where they stand."""
    capitalised = all(
        word[:1].isupper() or word[:1].isdigit() or word.lower() in _SMALL_WORDS for word in span
    ) and not all(word.lower() in _SMALL_WORDS for word in span)
    cue = bool(
        _OUTLET_CUE_BEFORE.search(question[max(0, start - 40) : start])
        or _OUTLET_CUE_AFTER.match(question[end : end + 30])
    )
    if not capitalised:
        return cue
    if len(span) == 1 and span[0].lower() in _GENERIC | _COMMON_SINGLE:
        # "Fortune favours ...", "Wired headphones": a lone common word needs a cue, or a
        # position that is not the start of a sentence.
        before = question[:start].rstrip(" \"'‘“(")
        return cue or (bool(before) and before[-1] not in ".!?:;\n")
    return True


# Single-word outlet names that are also common words.
_COMMON_SINGLE = frozenset({"fortune", "wired", "time", "vice", "axios", "polygon", "guardian"})


# Where a question moves from one report to another.
_CLAUSE_BREAK = re.compile(
    r"\s*(?:[;?]|,\s*(?:and|but|while|whereas|or)\b|,(?!\s*(?:19|20)\d\d\b)(?!\d)|\b(?:while|whereas|compared\s+(?:to|with)"
    r"|as\s+opposed\s+to|in\s+contrast\s+to|unlike|than|before|after|and\s+(?:the|a|an|that|in|"
    r"from|by|then|later)\b|versus|vs\.?))\s*",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"\b(?:does|did|do|is|are|was|were|has|have|had|the|a|an|an?\s+article|article|articles|report"
    r"|reports|reported|reporting|piece|story|stories|news|from|by|in|on|of|according\s+to|"
    r"published|between|both|and|as|that|which|who|what|after|before|while|also|other|another|"
    r"first|second|later|earlier|following|previous|subsequent|date|same|'s|’s)\b",
    re.IGNORECASE,
)
# A part whose own clause has fewer content words than this asks with the whole question.
MIN_PART_WORDS = 3


@dataclass(frozen=True)
class Part:
    """One report a question asks about: its clause, and the outlet/dates that pin it down."""

    text: str
    sources: tuple[str, ...] = ()
    first: date | None = None  # inclusive day range of publication, local to the article
    last: date | None = None
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "label": self.label}
        if self.sources:
            data["sources"] = list(self.sources)
        if self.first is not None:
            data["since"] = self.first.isoformat()
        if self.last is not None:
            data["until"] = self.last.isoformat()
        return data


@dataclass(frozen=True)
class Understanding:
    """What a question names: outlets, dates, its parts, and whether it wants the latest.
    `first`/`last` bound publication dates of the whole question (tied to a report, or relative:
    "yesterday"); `near_first`/`near_last` are dates not said to be publication dates ("launching
    on November 16th", "in 2021"): those only boost articles published then."""

    dates: list[DateMention] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    latest: bool = False
    sources: tuple[str, ...] = ()  # every outlet named, in question order
    first: date | None = None
    last: date | None = None
    near_first: date | None = None
    near_last: date | None = None


def _clauses(question: str) -> list[tuple[int, int]]:
    bounds = [0, *(end for match in _CLAUSE_BREAK.finditer(question) for end in match.span())]
    spans = list(zip(bounds[::2], [*bounds[1::2], len(question)], strict=True))
    return [(start, end) for start, end in spans if end > start] or [(0, len(question))]


_FUNCTION_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its just me more most my
    no nor not now of off on once only or other our out over own same she should so some such than
    that the their them then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your also s""".split()
)


def _strip_spans(text: str, offset: int, spans: Iterable[tuple[int, int]]) -> str:
    """`text` (starting at `offset` in the question) without the given question spans."""
    pieces = []
    position = 0
    for start, end in sorted(spans):
        start, end = start - offset, end - offset
        if end <= 0 or start >= len(text):
            continue
        pieces.append(text[position : max(position, start)])
        position = max(position, end)
    pieces.append(text[position:])
    text = " ".join(" ".join(pieces).split())
    # Tidy what the removed names leave behind: empty quotes, "by , , and ?".
    text = re.sub(r"\s*(?:'\s*'|‘\s*’|\"\s*\")\s*", " ", text)
    text = re.sub(r"(?:^|\s)['’]s\b", " ", text)
    for _ in range(2):
        text = re.sub(r"\s+([,;:?.!])", r"\1", text)
        text = re.sub(r"([,;])(?:\s*[,;])+", r"\1", text)
        text = re.sub(r"[,;]?\s*\b(?:and|or)\s*(?=[?.!]|$)", "", text)
        text = re.sub(r"\s*\b(?:by|from|in|on|of|and)\s*([,;?.!])", r"\1", text)
        text = re.sub(r"[,;]\s*(?=[?.!]|$)", "", text)
    return " ".join(text.split()).strip(" ,;")


_PUBLICATION_CUE = re.compile(
    r"\b(?:report|reports|reported|reporting|article|articles|story|stories|published|posted|"
    r"wrote|written|coverage|covered|piece|edition|review|guide)\b",
    re.IGNORECASE,
)
# Words before a date within which a cue (or an outlet) makes it a publication date; a full date
# counts anywhere after a cue in its clause (docs/understanding.md, "Parts: one per report").
PUBLICATION_CUE_WORDS = 6
_CUE_AFTER_DATE = re.compile(r"\W*(?:\w+\W+)?(?:" + _PUBLICATION_CUE.pattern + ")", re.IGNORECASE)


def understand_question(
    question: str,
    sources: Iterable[str],
    *,
    today: date,
    known_range: tuple[date, date] | None = None,
) -> Understanding:
    """Outlets, dates and parts of a question (docs/understanding.md, "Parts: one per report")."""
    outlets = match_outlets(question, sources)

    def in_outlet(start: int, end: int) -> bool:  # "Business Today" is an outlet, not a date
        return any(o.start < end and start < o.end for o in outlets)

    found = parse_dates(question, today=today, known_range=known_range)
    dates = [mention for mention in found if not in_outlet(mention.start, mention.end)]
    # "Business Today | Latest Stock Market ..." names an outlet, not a wish for the newest.
    latest = any(not in_outlet(*match.span()) for match in _LATEST.finditer(question))
    named = tuple(dict.fromkeys(s for mention in outlets for s in mention.sources))
    clauses = _clauses(question)
    publication = _publication_flags(question, dates, outlets, clauses)

    def clause_of(position: int) -> int:
        inside = (number for number, (start, end) in enumerate(clauses) if start <= position < end)
        return next(inside, len(clauses) - 1)

    # Each date to the nearest outlet in its clause, else to the last of the clause before.
    dates_of: dict[int, list[DateMention]] = {i: [] for i in range(len(outlets))}
    loose_dates: list[DateMention] = []
    for mention in dates:
        same = [
            (abs(o.start - mention.start), i)
            for i, o in enumerate(outlets)
            if clause_of(o.start) == clause_of(mention.start)
        ]
        if same:
            dates_of[min(same)[1]].append(mention)
            continue
        earlier = [i for i, o in enumerate(outlets) if o.end <= mention.start]
        if (
            earlier
            and clause_of(mention.start) - clause_of(outlets[earlier[-1]].start) == 1
            and not dates_of[earlier[-1]]
        ):
            dates_of[earlier[-1]].append(mention)
        else:
            loose_dates.append(mention)

    flagged = list(zip(dates, publication, strict=True))
    first, last = _combine([mention for mention, hard in flagged if hard])
    near_first, near_last = _combine([mention for mention, hard in flagged if not hard])
    anchors: list[tuple[int, tuple[str, ...], list[DateMention]]] = [
        (outlet.start, outlet.sources, dates_of[i]) for i, outlet in enumerate(outlets)
    ]
    # With one outlet named, a date of its own is another report of that outlet.
    only_outlet = {o.sources for o in outlets}
    loose_sources = next(iter(only_outlet)) if len(only_outlet) == 1 else ()
    anchors += [(mention.start, loose_sources, [mention]) for mention in loose_dates]
    anchors.sort(key=lambda anchor: anchor[0])
    names_and_dates = [(o.start, o.end) for o in outlets] + [(d.start, d.end) for d in dates]
    parts: list[Part] = []
    if len(anchors) >= 2:
        anchor_clauses = [clause_of(position) for position, _, _ in anchors]
        whole = _strip_spans(question, 0, names_and_dates)
        for index, (_, part_sources, part_dates) in enumerate(anchors):
            # The part asks with its own stretch: from its clause up to the next report's.
            first_clause = anchor_clauses[index]
            later = [c for c in anchor_clauses[index + 1 :] if c > first_clause]
            end_clause = later[0] if later else len(clauses)
            start, end = clauses[first_clause][0], clauses[end_clause - 1][1]
            text = _strip_spans(question[start:end], start, names_and_dates)
            words = _WORD.findall(_BOILERPLATE.sub(" ", text))
            if sum(1 for word in words if word.lower() not in _FUNCTION_WORDS) < MIN_PART_WORDS:
                text = whole
            # Only dates tied to the report limit the part; "launching on November 16th" does not.
            pinned = [d for d in part_dates if publication[dates.index(d)]]
            part_first, part_last = _combine(pinned)
            more = f" (+{len(part_sources) - 1})" if len(part_sources) > 1 else ""
            label_bits = [source + more for source in part_sources[:1]]
            label_bits += [d.label() for d in pinned]
            if not part_sources and not pinned:
                continue  # a date of an event, not of a report: nothing to search apart
            parts.append(Part(text, part_sources, part_first, part_last, ", ".join(label_bits)))
    if len(parts) < 2:
        parts = []
    return Understanding(dates, parts, latest, named, first, last, near_first, near_last)


def _publication_flags(
    question: str,
    dates: Sequence[DateMention],
    outlets: Sequence[OutletMention],
    clauses: Sequence[tuple[int, int]],
) -> list[bool]:
    """Which dates limit publication: relative ones ("yesterday"), ones tied to a report or an
    outlet, and anchored ones as their anchor; the others name when something happened."""
    flags: list[bool] = []
    for mention in dates:
        if mention.anchored:
            anchor = [i for i, m in enumerate(dates) if m.end <= mention.start and not m.anchored]
            flags.append(flags[anchor[-1]] if anchor else False)
            continue
        words_before = list(_WORD.finditer(question[: mention.start]))[-PUBLICATION_CUE_WORDS:]
        window_start = words_before[0].start() if words_before else mention.start
        if mention.precision == "day" and _ANY_YEAR.search(mention.text):
            clause_start = max((start for start, _ in clauses if start <= mention.start), default=0)
            window_start = min(window_start, clause_start)
        flags.append(
            bool(_RELATIVE.fullmatch(mention.text) or _WEEKDAY.fullmatch(mention.text))
            or _PUBLICATION_CUE.search(question[window_start : mention.start]) is not None
            # "the November 1, 2023, article", "Wired's 24 November report"
            or _CUE_AFTER_DATE.match(question[mention.end :]) is not None
            or any(window_start <= o.end <= mention.start for o in outlets)
        )
    return flags


def _combine(mentions: Sequence[DateMention]) -> tuple[date | None, date | None]:
    """One inclusive range covering the mentions (None bounds stay open)."""
    if not mentions:
        return None, None
    relations = {m.relation for m in mentions}  # "before" leaves the start open, "after" the end
    first = None if "before" in relations else min(m.first for m in mentions)
    last = None if "after" in relations else max(m.last for m in mentions)
    return first, last
