"""The core's own contracts: dates the Python API accepts, Markdown rendering, store errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from bot import Answer, Bot, Citation, NewsbotError, StoreError
from bot.core import as_datetime
from tests.conftest import QATAR_QUESTION


def test_dates_are_accepted_as_datetimes_days_or_iso_strings() -> None:
    day = date(2024, 2, 7)
    assert as_datetime(day) == datetime(2024, 2, 7, tzinfo=UTC)
    assert as_datetime("2024-02-07", end_of_day=True) == datetime(
        2024, 2, 7, 23, 59, 59, 999999, tzinfo=UTC
    )
    assert as_datetime(datetime(2024, 2, 7, 12)) == datetime(2024, 2, 7, 12, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert as_datetime("2024-02-07T10:00:00+02:00") == datetime(2024, 2, 7, 10, tzinfo=plus_two)
    assert as_datetime(None) is None
    with pytest.raises(NewsbotError, match="'last Tuesday' is not a date"):
        as_datetime("last Tuesday", name="since")


def test_markdown_has_numbered_sources_with_quotes_as_blockquotes() -> None:
    citation = Citation(
        n=1,
        article_id="a",
        title="Ceasefire talks",
        source="Kan",
        url="https://kan.example/1",
        published_at=datetime(2024, 2, 7, tzinfo=UTC),
        quote="It was positive.",
        start=10,
        end=26,
        score=0.9,
        sources=("Kan", "AP"),
    )
    answer = Answer("q?", "q?", "It was positive. [1]", (citation,), refused=False)
    assert answer.to_markdown() == (
        "It was positive. [1]\n\n**Sources:**\n\n"
        "1. [Ceasefire talks](https://kan.example/1) (Kan, AP, 2024-02-07)\n\n"
        "   > It was positive.\n"
    )


def test_a_data_dir_that_is_a_file_is_a_clear_store_error(tmp_path) -> None:
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x")
    with pytest.raises(StoreError, match="afile") as caught:
        Bot.open(data_dir=not_a_folder).stats()
    assert "NEWSBOT_DATA_DIR" in (caught.value.hint or "")


def test_a_misspelt_option_of_ask_is_named_against_ask(fake_bot) -> None:
    """`Bot.ask` spells out its options (help(), an editor's hints, mypy), so a typo is caught
    as Bot.ask's, not as a method the caller never called."""
    with pytest.raises(TypeError, match=r"Bot\.ask\(\) got an unexpected keyword argument 'sinse'"):
        fake_bot.ask(QATAR_QUESTION, sinse="2024-02-01")  # type: ignore[call-arg]
