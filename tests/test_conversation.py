"""Follow-ups rewritten into standalone questions: by rules, by a (fake) chat model, end to end."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.conversation import condense, format_history, is_follow_up, rewrite_follow_up
from bot.models import Turn
from bot.prompts import load_prompt
from tests.conftest import QATAR_QUESTION

QATAR = [Turn(QATAR_QUESTION, "Hamas made some comments ... said al Thani. [1]")]


@pytest.mark.parametrize(
    ("follow_up", "standalone"),
    [
        ("What about Egypt?", "What did Egypt say about Hamas's response?"),
        ("And Blinken?", "What did Blinken say about Hamas's response?"),
        ("how about Israel", "What did Israel say about Hamas's response?"),
        ("When was that?", "When did Qatar say about Hamas's response?"),
        ("Where did that happen?", "Where did Qatar say about Hamas's response?"),
        ("Why?", "Why did Qatar say about Hamas's response?"),
    ],
)
def test_follow_ups_carry_the_previous_frame_over(follow_up: str, standalone: str) -> None:
    assert rewrite_follow_up(follow_up, QATAR) == standalone


def test_the_last_standalone_question_is_what_is_followed() -> None:
    history = [
        Turn(QATAR_QUESTION, "..."),
        Turn("What about Egypt?", "...", "What did Egypt say about Hamas's response?"),
    ]
    assert rewrite_follow_up("And Israel?", history) == (
        "What did Israel say about Hamas's response?"
    )


@pytest.mark.parametrize(
    ("previous", "follow_up", "standalone"),
    [
        ("Who won the 2023 World Series?", "What about 2022?", "Who won the 2022 World Series?"),
        ("Who won the 2023 World Series?", "And in 2021?", "Who won the 2021 World Series?"),
        ("What is the inflation rate in Germany?", "What about France?",
         "What is the inflation rate in France?"),
    ],
)  # fmt: skip
def test_names_and_years_are_swapped(previous: str, follow_up: str, standalone: str) -> None:
    assert rewrite_follow_up(follow_up, [Turn(previous, "...")]) == standalone


def test_an_unresolvable_reference_keeps_the_previous_question_beside_it() -> None:
    rewritten = rewrite_follow_up("Did they agree?", QATAR)
    assert rewritten.startswith("Did they agree")
    assert "Hamas's response" in rewritten


def test_standalone_questions_are_left_alone() -> None:
    question = "What did Israel say about the ceasefire talks in Cairo?"
    assert not is_follow_up(question)
    assert rewrite_follow_up(question, QATAR) == question
    assert rewrite_follow_up("What about Egypt?", []) == "What about Egypt?"


def test_history_for_the_model_is_short() -> None:
    turns = [Turn(f"Question {i}?", "word " * 500) for i in range(10)]
    text = format_history(turns)
    assert "Question 9?" in text and "Question 5?" not in text
    assert all(len(line) < 500 for line in text.splitlines())


# -- with a chat model --------------------------------------------------------------------------


class Recording(FakeListChatModel):
    seen: list[Any] = []

    def invoke(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.seen.append(messages)
        return super().invoke(messages, *args, **kwargs)


def test_the_model_rewrites_with_the_condense_prompt() -> None:
    model = Recording(responses=['"What did Egypt say about Hamas\'s response to the framework?"'])
    model.seen = []
    rewritten = condense(
        "What about Egypt?", QATAR, chat_model=model, prompt=load_prompt("condense")
    )
    assert rewritten == "What did Egypt say about Hamas's response to the framework?"
    (messages,) = model.seen
    human = messages[-1][1]
    assert QATAR_QUESTION in human and "What about Egypt?" in human


def test_no_history_means_no_model_call() -> None:
    model = Recording(responses=["should not be used"])
    model.seen = []
    assert condense("What about Egypt?", [], chat_model=model, prompt=load_prompt("condense")) == (
        "What about Egypt?"
    )
    assert model.seen == []


def test_a_failing_or_rambling_model_falls_back_to_the_rules() -> None:
    class Broken(FakeListChatModel):
        def invoke(self, *args: Any, **kwargs: Any) -> Any:
            raise TimeoutError("provider timed out")

    prompt = load_prompt("condense")
    expected = "What did Egypt say about Hamas's response?"
    broken = Broken(responses=["x"])
    assert condense("What about Egypt?", QATAR, chat_model=broken, prompt=prompt) == expected
    rambling = FakeListChatModel(responses=["Sure! " * 200])
    assert condense("What about Egypt?", QATAR, chat_model=rambling, prompt=prompt) == expected
    empty = FakeListChatModel(responses=["  "])
    assert condense("What about Egypt?", QATAR, chat_model=empty, prompt=prompt) == expected


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_follow_up_through_the_bot(sample_bot) -> None:
    first = sample_bot.ask(QATAR_QUESTION)
    turn = Turn(first.question, first.text, first.standalone_question)

    egypt = sample_bot.ask("What about Egypt?", history=[turn])
    assert egypt.question == "What about Egypt?"
    assert egypt.standalone_question == "What did Egypt say about Hamas's response?"
    # The article reports no statement of Egypt's: refused, with the closest passages.
    assert egypt.refused and egypt.citations

    blinken = sample_bot.ask("And Blinken?", history=[turn])
    assert blinken.standalone_question == "What did Blinken say about Hamas's response?"
    assert not blinken.refused
    assert any("Blinken" in citation.quote for citation in blinken.citations)
    assert "condense" in blinken.timings
