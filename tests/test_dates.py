"""Dates (index/dates.py): what sources put in date fields, and what people ask for."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from index.dates import parse_date, to_datetime

END_OF_DAY = dict(hour=23, minute=59, second=59, microsecond=999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-02-07", datetime(2024, 2, 7, tzinfo=UTC)),
        ("2024-02-07T10:00:00", datetime(2024, 2, 7, 10, tzinfo=UTC)),
        ("2024-02-07T10:00:00Z", datetime(2024, 2, 7, 10, tzinfo=UTC)),
        (
            "2024-02-07T10:00:00+05:30",
            datetime(2024, 2, 7, 10, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        ("Wed, 07 Feb 2024 10:00:00 GMT", datetime(2024, 2, 7, 10, tzinfo=UTC)),
        ("7 February 2024", datetime(2024, 2, 7, tzinfo=UTC)),
        (1707300000, datetime(2024, 2, 7, 10, tzinfo=UTC)),
        ("1707300000000", datetime(2024, 2, 7, 10, tzinfo=UTC)),
        ("February 2024", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        ("99999-99-99", None),
    ],
)
def test_parse_date(value, expected):
    parsed = parse_date(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("value", "since", "until"),
    [
        ("2024-02-07", datetime(2024, 2, 7, tzinfo=UTC), datetime(2024, 2, 7, **END_OF_DAY)),
        ("7 Feb 2024", datetime(2024, 2, 7, tzinfo=UTC), datetime(2024, 2, 7, **END_OF_DAY)),
        (date(2024, 2, 7), datetime(2024, 2, 7, tzinfo=UTC), datetime(2024, 2, 7, **END_OF_DAY)),
        # A moment is that moment, whichever end of a range it is.
        ("2024-02-07T10:00", datetime(2024, 2, 7, 10, tzinfo=UTC), None),
        ("2024-02-07 10:00", datetime(2024, 2, 7, 10, tzinfo=UTC), None),
        (datetime(2024, 2, 7, 10), datetime(2024, 2, 7, 10, tzinfo=UTC), None),
        (
            "2024-02-07T10:00:00+02:00",
            datetime(2024, 2, 7, 10, tzinfo=timezone(timedelta(hours=2))),
            None,
        ),
        (None, None, None),
    ],
)
def test_a_day_asked_for_means_the_whole_day(value, since, until):
    assert to_datetime(value) == since
    assert to_datetime(value, end_of_day=True) == (until or since)


@pytest.mark.parametrize("value", ["last Tuesday", "February 2024", "2024-02-30", "", "soon"])
def test_what_is_not_a_date_is_an_error_when_asked_for(value):
    with pytest.raises(ValueError, match="is not a date"):
        to_datetime(value)
