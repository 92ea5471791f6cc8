"""Prompts: loaded by name, variables checked when loaded (at Bot.open), rendered safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import prompts
from bot.prompts import (
    PROMPT_VARIABLES,
    PromptError,
    load_prompt,
    load_prompts,
    parse_prompt,
)

GOOD = """---
variables: question, passages, today
---
## system
Answer from the passages. Literal braces: {{like this}}.
## user
Today is {today}.
{passages}
Question: {question}
"""


@pytest.fixture
def prompt_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty prompts folder in place of the checkout's (and no installed package)."""
    monkeypatch.setattr(prompts, "CHECKOUT_DIR", tmp_path)
    monkeypatch.setattr(prompts, "PACKAGE", "newsbot_no_such_package")
    prompts.load_prompt.cache_clear()
    yield tmp_path
    prompts.load_prompt.cache_clear()


def test_the_shipped_prompts_load_and_match_the_code() -> None:
    loaded = load_prompts()
    assert set(loaded) == set(PROMPT_VARIABLES)
    for name, prompt in loaded.items():
        assert prompt.variables == PROMPT_VARIABLES[name]
        assert prompt.system.strip() and prompt.user.strip()


def test_rendering_fills_variables_and_keeps_literal_braces() -> None:
    prompt = parse_prompt("answer", GOOD)
    system, user = prompt.render(question="Q?", passages="P", today="2024-02-08")
    assert "Literal braces: {like this}." in system
    assert user == "Today is 2024-02-08.\nP\nQuestion: Q?\n"


def test_values_are_inserted_as_they_are() -> None:
    # An article or question containing {today} or stray braces is text, not a placeholder.
    prompt = parse_prompt("answer", GOOD)
    _, user = prompt.render(question="what is {today}?", passages="a {b} c }", today="T")
    assert "what is {today}?" in user and "a {b} c }" in user


def test_messages_have_a_system_and_a_human_part() -> None:
    messages = parse_prompt("answer", GOOD).messages(question="Q", passages="P", today="T")
    assert [role for role, _ in messages] == ["system", "human"]


def test_rendering_with_other_variables_is_an_error() -> None:
    prompt = parse_prompt("answer", GOOD)
    with pytest.raises(PromptError, match="today"):
        prompt.render(question="Q", passages="P")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("{today}", "{date}"), "declares"),
        (GOOD.replace("variables: question, passages, today", "variables: question"), "declares"),
        (GOOD.replace("---\nvariables: question, passages, today\n---\n", ""), "front matter"),
        (GOOD.replace("{today}", "{today.year}"), "plain variable"),
        (GOOD.replace("Literal braces: {{like this}}", "Broken {brace"), "brace"),
        (GOOD.replace("variables: question, passages, today", "vars: x"), "variables"),
    ],
)
def test_broken_prompt_files_are_errors(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse_prompt("answer", text, "answer.md")


def test_a_prompt_that_does_not_match_the_code_fails_at_load(prompt_dir: Path) -> None:
    # Consistent in itself, but the code passes {question}, {passages} and {today}.
    (prompt_dir / "answer.md").write_text(
        "---\nvariables: question, context\n---\n{context}\n{question}\n", encoding="utf-8"
    )
    with pytest.raises(PromptError, match=r"newsbot passes \{passages\}, \{question\}, \{today\}"):
        load_prompt("answer")


def test_a_missing_prompt_is_an_error(prompt_dir: Path) -> None:
    with pytest.raises(PromptError, match="not found"):
        load_prompt("answer")


def test_a_broken_prompt_fails_the_answerer_before_any_question(prompt_dir: Path, settings) -> None:
    from bot.llm import Answerer
    from tests.fake_embedder import HashingEmbedder

    (prompt_dir / "answer.md").write_text(GOOD.replace("{today}", "{now}"), encoding="utf-8")
    (prompt_dir / "condense.md").write_text(
        "---\nvariables: history, question\n---\n{history}\n{question}\n", encoding="utf-8"
    )
    with pytest.raises(PromptError, match="answer.md"):
        Answerer(settings, embedder=HashingEmbedder())


@pytest.mark.slow
def test_a_broken_prompt_fails_at_start_up(prompt_dir: Path, make_bot) -> None:
    (prompt_dir / "answer.md").write_text(GOOD, encoding="utf-8")
    (prompt_dir / "condense.md").write_text(
        "---\nvariables: history\n---\n{history}\n", encoding="utf-8"
    )
    with pytest.raises(PromptError, match="condense.md"):
        make_bot().warm(index=False)  # as every front door starts


def test_prompts_are_found_in_the_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a checkout (a wheel), prompts come from the newsbot_prompts package."""
    import importlib.util
    import sys

    package = tmp_path / "fake_prompts_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "condense.md").write_text(
        "---\nvariables: history, question\n---\n{history} / {question}\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(prompts, "CHECKOUT_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(prompts, "PACKAGE", "fake_prompts_pkg")
    prompts.load_prompt.cache_clear()
    try:
        assert importlib.util.find_spec("fake_prompts_pkg") is not None
        prompt = load_prompt("condense")
        assert prompt.origin == "fake_prompts_pkg/condense.md"
        assert prompt.render(history="H", question="Q") == ("", "H / Q\n")
    finally:
        prompts.load_prompt.cache_clear()
        sys.modules.pop("fake_prompts_pkg", None)
