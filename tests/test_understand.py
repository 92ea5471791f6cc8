"""Question understanding: dates relative to today, outlets matched fuzzily, multi-part questions.

Pure functions: no model, no store."""

from __future__ import annotations

from datetime import date

import pytest

from bot.understand import (
    DATE_RULES,
    DateContext,
    match_outlets,
    parse_dates,
    understand_question,
)

TODAY = date(2024, 2, 14)  # a Wednesday
STORE_DAYS = (date(2023, 9, 1), date(2023, 12, 31))
SOURCES = [
    "The Verge",
    "Wired",
    "TechCrunch",
    "The Age",
    "Fortune",
    "CBSSports.com",
    "The Independent - Life and Style",
    "The Independent - Sports",
    "Cnbc | World Business News Leader",
    "Business Today | Latest Stock Market And Economy News India",
    "BBC News - Entertainment & Arts",
]


def days(question: str, today: date = TODAY) -> list[tuple[str, str, str]]:
    return [
        (m.first.isoformat(), m.last.isoformat(), m.relation)
        for m in parse_dates(question, today=today, known_range=STORE_DAYS)
    ]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What did Qatar say on 7 February 2024?", [("2024-02-07", "2024-02-07", "on")]),
        ("What did Qatar say on February 7, 2024?", [("2024-02-07", "2024-02-07", "on")]),
        ("the 7th of February 2024", [("2024-02-07", "2024-02-07", "on")]),
        ("Which report came out on 2023-11-24?", [("2023-11-24", "2023-11-24", "on")]),
        ("What happened yesterday?", [("2024-02-13", "2024-02-13", "on")]),
        ("What did the bot see today?", [("2024-02-14", "2024-02-14", "on")]),
        # the previous calendar week, Monday to Sunday
        ("What did Hamas say last week?", [("2024-02-05", "2024-02-11", "on")]),
        ("news from last week", [("2024-02-05", "2024-02-11", "on")]),
        ("this week", [("2024-02-12", "2024-02-14", "on")]),
        ("over the past 3 days", [("2024-02-11", "2024-02-14", "on")]),
        ("two days ago", [("2024-02-12", "2024-02-12", "on")]),
        ("last month", [("2024-01-01", "2024-01-31", "on")]),
        ("What happened in 2023?", [("2023-01-01", "2023-12-31", "on")]),
        ("in November 2023", [("2023-11-01", "2023-11-30", "on")]),
        ("What was reported in late November?", [("2023-11-21", "2023-11-30", "on")]),
        ("in early November 2023", [("2023-11-01", "2023-11-10", "on")]),
        ("reports after September 26, 2023", [("2023-09-26", "2023-09-26", "after")]),
        ("anything before 2023-10-01?", [("2023-10-01", "2023-10-01", "before")]),
        ("from 1 November 2023 to 5 November 2023", [("2023-11-01", "2023-11-05", "on")]),
        ("What did he say on Monday?", [("2024-02-12", "2024-02-12", "on")]),
    ],
)
def test_dates_are_read_relative_to_today(question: str, expected: list) -> None:
    assert days(question) == expected


@pytest.mark.parametrize(
    ("today", "this_weekend", "last_weekend"),
    [
        (date(2024, 2, 14), "2024-02-10", "2024-02-10"),  # a Wednesday: both the one just past
        (date(2024, 2, 12), "2024-02-10", "2024-02-10"),  # a Monday
        (date(2024, 2, 10), "2024-02-10", "2024-02-03"),  # a Saturday: last is the one before
        (date(2024, 2, 11), "2024-02-10", "2024-02-03"),  # a Sunday
    ],
)
def test_last_weekend_asked_on_a_weekend_is_the_one_before(
    today: date, this_weekend: str, last_weekend: str
) -> None:
    def saturday(phrase: str) -> str:
        ((first, last, _),) = days(f"What happened {phrase}?", today)
        assert (date.fromisoformat(last) - date.fromisoformat(first)).days == 1
        return first

    assert saturday("this weekend") == this_weekend
    assert saturday("last weekend") == last_weekend


def test_a_date_without_a_year_falls_in_the_stored_articles_or_before_today() -> None:
    # The store holds autumn 2023; "October 18th" asked in February 2024 is October 2023.
    assert days("the Sorcerer guide on October 18th") == [("2023-10-18", "2023-10-18", "on")]
    # With another year in the question, that year wins.
    assert days("on October 18th, as on 12 May 2021") == [
        ("2021-10-18", "2021-10-18", "on"),
        ("2021-05-12", "2021-05-12", "on"),
    ]


def test_the_following_day_is_relative_to_the_date_before_it() -> None:
    question = "Does the report from The Verge on 2023-11-24 agree with Wired's the next day?"
    assert days(question) == [
        ("2023-11-24", "2023-11-24", "on"),
        ("2023-11-25", "2023-11-25", "on"),
    ]
    assert days("on 3 October 2023 and the previous day")[1][:2] == ("2023-10-02", "2023-10-02")
    assert days("on 3 October 2023 and two days later")[1][:2] == ("2023-10-05", "2023-10-05")


# One phrase per rule of the table, read by that rule alone (with the dates found before it, for
# the anchored rule). A new rule without an example here fails test_every_date_rule_has_an_example.
RULE_EXAMPLES = {
    "iso day": ("published 2023-11-24", "2023-11-24", "2023-11-24"),
    "day month [year]": ("on the 7th of February 2024", "2024-02-07", "2024-02-07"),
    "month day [year]": ("on Oct. 18th", "2023-10-18", "2023-10-18"),
    "month year": ("in early November 2023", "2023-11-01", "2023-11-10"),
    "month": ("in late November", "2023-11-21", "2023-11-30"),
    "year": ("throughout 2022", "2022-01-01", "2022-12-31"),
    "relative": ("over the past two weeks", "2024-01-31", "2024-02-14"),
    "weekday": ("last Friday", "2024-02-09", "2024-02-09"),
    "anchored": ("on 3 October 2023 and two days later", "2023-10-05", "2023-10-05"),
}


def test_every_date_rule_has_an_example() -> None:
    assert [rule.name for rule in DATE_RULES] == list(RULE_EXAMPLES)


@pytest.mark.parametrize("rule", DATE_RULES, ids=lambda rule: rule.name)
def test_each_date_rule_reads_its_phrase(rule) -> None:
    text, first, last = RULE_EXAMPLES[rule.name]
    earlier = tuple(m for m in parse_dates(text, today=TODAY) if not m.anchored)
    context = DateContext(text, TODAY, STORE_DAYS, earlier if rule.name == "anchored" else ())
    matches = list(rule.pattern.finditer(text))
    assert len(matches) == 1
    mention = rule.resolve(matches[0], context)
    assert mention is not None
    assert (mention.first.isoformat(), mention.last.isoformat()) == (first, last)
    assert text.endswith(mention.text)
    # The whole pipeline reads the phrase the same way.
    assert days(text)[-1][:2] == (first, last)


def test_a_relative_phrase_refers_to_the_nearest_date_before_it() -> None:
    question = "on 3 October 2023, the next day, on 9 October 2023 and two days later"
    assert [first for first, _, _ in days(question)] == [
        "2023-10-03",
        "2023-10-04",
        "2023-10-09",
        "2023-10-11",
    ]


@pytest.mark.parametrize(
    "question",
    [
        "Tyreek Hill may struggle to reach 2,000 yards",
        "Black Friday deals on power banks",
        "the Monday Night Football game",
        "Tate McRae on Saturday Night Live",
        "invested $26.3 billion to stay the default",
    ],
)
def test_words_that_only_look_like_dates_are_not_dates(question: str) -> None:
    assert days(question) == []


def test_latest_is_understood() -> None:
    def latest(question: str) -> bool:
        return understand_question(question, SOURCES, today=TODAY).latest

    assert latest("What is the latest on the ceasefire talks?")
    assert latest("the most recent report about Gaza")
    assert not latest("What did Qatar say about Hamas's response?")


@pytest.mark.parametrize(
    ("question", "named", "sources"),
    [
        ("What did The Verge say about chargers?", "The Verge", ("The Verge",)),
        ("What did Verge say about chargers?", "Verge", ("The Verge",)),
        ("Is TechCrunch's report about FTX right?", "TechCrunch", ("TechCrunch",)),
        ("according to Wired, which power bank is best?", "Wired", ("Wired",)),
        ("according to the verge, which charger?", "the verge", ("The Verge",)),
        ("according to techcrunch who won?", "techcrunch", ("TechCrunch",)),
        ("What did CBS Sports say about Kelce?", "CBS Sports", ("CBSSports.com",)),
        ("What did CNBC say about Amazon?", "CNBC", ("Cnbc | World Business News Leader",)),
        ("What did the BBC report?", "BBC", ("BBC News - Entertainment & Arts",)),
        (
            "the article from Cnbc | World Business News Leader says",
            "Cnbc | World Business News Leader",
            ("Cnbc | World Business News Leader",),
        ),
        (
            "What did The Independent report?",
            "The Independent",
            ("The Independent - Life and Style", "The Independent - Sports"),
        ),
        (
            "Does the article from Business Today | Latest Stock Market And Economy News India say",
            "Business Today | Latest Stock Market And Economy News India",
            ("Business Today | Latest Stock Market And Economy News India",),
        ),
    ],
)
def test_outlets_are_matched_fuzzily(question: str, named: str, sources: tuple) -> None:
    mentions = match_outlets(question, SOURCES)
    assert [(m.text, m.sources) for m in mentions] == [(named, sources)]
    assert question[mentions[0].start : mentions[0].end] == named


@pytest.mark.parametrize(
    "question",
    [
        "How is work changing in the age of AI?",
        "Wired headphones are back in fashion",
        "He made a fortune selling crypto",
        "What did Reuters say about the talks?",  # not in the store
        "What did the verge of collapse mean for FTX?",
    ],
)
def test_ordinary_words_are_not_outlets(question: str) -> None:
    assert match_outlets(question, SOURCES) == []


def test_a_comparison_of_two_reports_is_split_into_parts() -> None:
    understood = understand_question(
        "Does the report from The Verge on 2023-11-24 agree with Wired's the next day about "
        "which power bank to buy?",
        SOURCES,
        today=TODAY,
    )
    assert [(p.sources, p.first, p.last) for p in understood.parts] == [
        (("The Verge",), date(2023, 11, 24), date(2023, 11, 24)),
        (("Wired",), date(2023, 11, 25), date(2023, 11, 25)),
    ]
    assert all("power bank" in part.text for part in understood.parts)
    assert [part.label for part in understood.parts] == [
        "The Verge, 2023-11-24",
        "Wired, 2023-11-25",
    ]


def test_each_part_asks_with_its_own_clause() -> None:
    understood = understand_question(
        "Does the article from Cnbc | World Business News Leader suggest that sellers on Amazon "
        "set non-competitive prices, while the article from The Verge indicates that eBay offers "
        "a price-matching policy?",
        SOURCES,
        today=TODAY,
    )
    first, second = understood.parts
    assert first.sources == ("Cnbc | World Business News Leader",)
    assert "Amazon" in first.text and "eBay" not in first.text
    assert second.sources == ("The Verge",)
    assert "eBay" in second.text and "Amazon" not in second.text
    assert "Verge" not in second.text  # the outlet is a filter, not words to search for


def test_one_report_gives_filters_for_the_whole_question_and_no_parts() -> None:
    understood = understand_question(
        "What did The Verge report on 2023-11-24 about power banks?", SOURCES, today=TODAY
    )
    assert understood.parts == []
    assert understood.sources == ("The Verge",)
    assert (understood.first, understood.last) == (date(2023, 11, 24), date(2023, 11, 24))


def test_a_date_of_an_event_only_boosts() -> None:
    # "launching on November 16th" says when Valve launches, not when the article came out.
    understood = understand_question(
        "Is Valve launching the Steam Deck OLED on November 16th?",
        SOURCES,
        today=TODAY,
        known_range=STORE_DAYS,
    )
    assert (understood.first, understood.last) == (None, None)
    assert understood.near_first == date(2023, 11, 16)


def test_dates_inside_an_outlet_name_are_not_dates() -> None:
    understood = understand_question(
        "What did Business Today | Latest Stock Market And Economy News India say about Italy?",
        SOURCES,
        today=TODAY,
    )
    assert understood.dates == []
    assert understood.sources == ("Business Today | Latest Stock Market And Economy News India",)


def test_one_outlet_with_two_dates_gives_two_parts_of_that_outlet() -> None:
    understood = understand_question(
        "After TechCrunch reported on Google's antitrust battle with Epic Games on November 6, "
        "2023, and then reported on a class action suit against Google on December 15, 2023, "
        "was the portrayal consistent?",
        SOURCES,
        today=TODAY,
    )
    assert [(p.sources, p.first) for p in understood.parts] == [
        (("TechCrunch",), date(2023, 11, 6)),
        (("TechCrunch",), date(2023, 12, 15)),
    ]
    assert "Epic" in understood.parts[0].text and "class action" in understood.parts[1].text


def test_a_plain_question_is_left_alone() -> None:
    understood = understand_question(
        "What did Qatar say about Hamas's response?", SOURCES, today=TODAY
    )
    assert understood.parts == [] and understood.sources == () and understood.dates == []


def test_latest_inside_an_outlet_name_is_not_a_wish_for_the_newest() -> None:
    from bot.understand import understand_question

    outlet = "Business Today | Latest Stock Market And Economy News India"
    today = date(2023, 12, 1)
    question = f"What did {outlet} report about the rupee?"
    assert not understand_question(question, [outlet], today=today).latest
    assert understand_question("What is the latest on the rupee?", [outlet], today=today).latest
