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
        ("When was that?", "When did Qatar speak about Hamas's response?"),
        ("Where did that happen?", "Where did Qatar speak about Hamas's response?"),
        ("Why?", "Why did Qatar speak about Hamas's response?"),
        # The bug this replaced: "What did what did Blinken say say about Hamas's response?"
        ("And what did Blinken say?", "What did Blinken say about Hamas's response?"),
        ("What did he say about Israel?", "What did Qatar say about Israel?"),
        ("Did they agree?", "Did Qatar agree?"),
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


# (first question, the answer it got, follow-up, standalone question): many shapes of follow-up
# after several kinds of first question.
WON = "Who won the 2024 Lakeshore Classic?"
WON_ANSWER = (
    "Kenyan rider Amara Njoroge won the race on Sunday, beating the Belgian Lotte Verbeke. [1]"
)
COST = "How much did the Kestrel probe cost?"
UNION = "Who is the president of the Riverton drivers' union?"
UNION_ANSWER = '"Our members deserve more," said Dolores Okafor, the union\'s president. [1]'
SHAPES = [
    (WON, WON_ANSWER, "Who finished second?", "Who finished second in the 2024 Lakeshore Classic?"),
    (WON, WON_ANSWER, "What did she say?", "What did Amara Njoroge say?"),
    (WON, WON_ANSWER, "Who did she beat?", "Who did Amara Njoroge beat?"),
    (WON, WON_ANSWER, "And the men's race?",
     "Who won the men's race of the 2024 Lakeshore Classic?"),
    (WON, WON_ANSWER, "What about 2022?", "Who won the 2022 Lakeshore Classic?"),
    (WON, WON_ANSWER, "When was that?", "When was the 2024 Lakeshore Classic?"),
    (WON, WON_ANSWER, "Why?", "What explains who won the 2024 Lakeshore Classic?"),
    (COST, "About 620 million euros. [1]", "How many instruments does it carry?",
     "How many instruments does the Kestrel probe carry?"),
    (COST, "...", "When will it launch?", "When will the Kestrel probe launch?"),
    (COST, "...", "And the Rosetta probe?", "How much did the Rosetta probe cost?"),
    (UNION, UNION_ANSWER, "What did she say?", "What did Dolores Okafor say?"),
    # an answer that opens with an organisation: "she" is the person it quotes
    ("Who leads the dockers' federation?",
     'The Northern Dockers Federation represents 900 workers. [1] "We will not wait," said '
     "Marta Silva, its president. [2]", "What did she say?", "What did Marta Silva say?"),
    (UNION, UNION_ANSWER, "Who did she meet?", "Who did Dolores Okafor meet?"),
    ("When was the Lakeshore Classic first held?", "In 1998. [1]", "Who won it in 2022?",
     "Who won the Lakeshore Classic in 2022?"),
    ("When will the Kestrel comet probe launch?", "...", "Why?",
     "Why will the Kestrel comet probe launch?"),
    ("What is the inflation rate in Germany?", "...", "Why?",
     "What explains the inflation rate in Germany?"),
    ("What did Kenji Moriyama say about the comet?", "...", "What did he say about the trajectory?",
     "What did Kenji Moriyama say about the trajectory?"),
    ("What did the mayor say about the walkout?", "...", "What about the union?",
     "What did the union say about the walkout?"),
]  # fmt: skip


@pytest.mark.parametrize(("previous", "answer", "follow_up", "standalone"), SHAPES)
def test_follow_ups_of_many_shapes(
    previous: str, answer: str, follow_up: str, standalone: str
) -> None:
    assert rewrite_follow_up(follow_up, [Turn(previous, answer)]) == standalone


@pytest.mark.parametrize(("previous", "answer"), sorted({(p, a) for p, a, _, _ in SHAPES}))
def test_a_rewrite_never_repeats_words_and_ends_as_one_question(previous: str, answer: str) -> None:
    follow_ups = ["And what did Blinken say?", "What did he say?", "And Egypt?", "Why?", "When?",
                  "What about the others?", "Where was that?", "And what did they say about it?",
                  "How many were there?", "Who did she meet?", "And in 2019?"]  # fmt: skip
    for follow_up in follow_ups:
        rewritten = rewrite_follow_up(follow_up, [Turn(previous, answer)])
        words = rewritten.lower().split()
        assert all(a != b for a, b in zip(words, words[1:], strict=False)), rewritten
        assert rewritten.count("?") == 1 and rewritten.endswith("?"), rewritten
        assert words.count("what") <= 2 and words.count("say") <= 1, rewritten


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
