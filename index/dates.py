"""Dates: the one place where text and values become timezone-aware datetimes (no zone: UTC).
`parse_date` reads sources' date fields (unreadable: None); `to_datetime` what a person asks for."""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, date, datetime
from datetime import time as clock
from email.utils import parsedate_to_datetime

# Two defaults that differ in every field: a field the text leaves out shows up as a difference.
_DEFAULTS = (datetime(2000, 1, 1, 0, 0), datetime(2001, 2, 2, 1, 1))


def _read_twice(text: str) -> tuple[datetime, datetime]:
    """`text` as dateutil reads it with each of _DEFAULTS. dateutil is imported here, not with
    this module (which `bot` imports): a question that names no dates, and `newsbot --help`,
    never need it (5 ms)."""
    from dateutil import parser

    return parser.parse(text, default=_DEFAULTS[0]), parser.parse(text, default=_DEFAULTS[1])


def to_datetime(
    value: datetime | date | str | None, *, end_of_day: bool = False
) -> datetime | None:
    """A timezone-aware datetime from a datetime, a date or a string naming either.

    A bare day ("2024-02-07", "7 Feb 2024", a `date`) means its whole day: its first moment, or
    with `end_of_day` (an inclusive `until`) its last. Raises ValueError when a string names no
    complete date ("last Tuesday", "February 2024").
    """
    day = _bare_day(value.strip()) if isinstance(value, str) else value
    if isinstance(day, date) and not isinstance(day, datetime):
        day = datetime.combine(day, clock.max if end_of_day else clock.min)
    moment = parse_date(day or value)
    if moment is None and value is not None:
        raise ValueError(f"{value!r} is not a date")
    return moment


def _bare_day(text: str) -> date | None:
    """The day `text` names when it names a whole day and no time of it."""
    try:
        first, second = _read_twice(text)
    except (ValueError, OverflowError):
        return None
    if first.date() != second.date() or first.time() == second.time() or first.tzinfo:
        return None
    return first.date()


def parse_date(value: object) -> datetime | None:
    """A timezone-aware datetime from what sources put in date fields, or None.

    Datetimes, dates, epoch seconds or ms, struct_time, ISO 8601, RFC 2822 and complete dates
    dateutil reads; incomplete ones ("February 2024") give None.
    """
    try:
        parsed = _parse_date(value)
    except Exception:  # odd input must not cost the article, only its date
        return None
    if parsed is not None and parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def _parse_date(value: object) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC)
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d{9,13}(?:\.\d+)?", text):
        return _from_epoch(float(text))
    for parse in (datetime.fromisoformat, parsedate_to_datetime):
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return parse(text)
    # An incomplete date ("February 2024") is no date.
    first, second = _read_twice(text)
    return first if first.date() == second.date() else None


def _from_epoch(seconds: float) -> datetime:
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return datetime.fromtimestamp(seconds, UTC)
