"""Prompts live in prompts/*.md, one per file, loaded by name and checked when loaded.

A prompt file declares its variables in a front matter and has a system and a user section:

    ---
    variables: question, passages
    ---
    ## system
    You answer questions ...
    ## user
    {passages}
    Question: {question}

`{name}` is a variable, `{{` and `}}` are literal braces. Loading fails (PromptError, at
`Bot.open`) when the variables the text uses differ from those it declares, or from those the code
passes; a mistake in a prompt never waits for the first question. Files are read from the checkout's
prompts/ folder, else from the installed `newsbot_prompts` package (prompts/ in a wheel).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bot.errors import SettingsError

# The variables each prompt gets from the code: the contract the files are checked against.
PROMPT_VARIABLES: dict[str, frozenset[str]] = {
    "answer": frozenset({"question", "passages", "today"}),
    "condense": frozenset({"history", "question"}),
}
CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "prompts"
PACKAGE = "newsbot_prompts"

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<head>.*?)\n---[ \t]*\n", re.DOTALL)
_SECTION = re.compile(r"^##[ \t]+(system|user)[ \t]*$", re.IGNORECASE | re.MULTILINE)


class PromptError(SettingsError):
    """A prompt file is missing or does not match the variables the code passes."""


@dataclass(frozen=True)
class Prompt:
    name: str
    origin: str  # where it was read from, for messages
    system: str
    user: str
    variables: frozenset[str]

    def render(self, **values: str) -> tuple[str, str]:
        """(system, user) with the variables filled in; values are inserted as they are (braces
        in an article are never read as placeholders)."""
        given = frozenset(values)
        if given != self.variables:
            raise PromptError(
                f"prompt {self.name} ({self.origin}) takes {_names(self.variables)}, "
                f"was given {_names(given)}"
            )
        return self.system.format_map(values), self.user.format_map(values)

    def messages(self, **values: str) -> list[tuple[str, str]]:
        """Chat messages as LangChain takes them: [("system", ...), ("human", ...)]."""
        system, user = self.render(**values)
        messages = [("system", system)] if system.strip() else []
        return [*messages, ("human", user)]


def _names(names: Iterable[str]) -> str:
    listed = ", ".join("{" + name + "}" for name in sorted(names))
    return listed or "no variables"


def _read(name: str) -> tuple[str, str]:
    path = CHECKOUT_DIR / f"{name}.md"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    try:
        resource = resources.files(PACKAGE) / f"{name}.md"
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), f"{PACKAGE}/{name}.md"
    except ModuleNotFoundError:
        pass
    raise PromptError(
        f"prompt {name!r} not found in {CHECKOUT_DIR} or the {PACKAGE} package",
        hint="reinstall newsbot, or restore prompts/" + f"{name}.md",
    )


def _placeholders(template: str, where: str) -> set[str]:
    found = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PromptError(
            f"prompt {where}: unbalanced braces ({exc})", hint="write literal braces as {{ and }}"
        ) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise PromptError(
                f"prompt {where}: placeholder {{{field}}} is not a plain variable name",
                hint="use {name}; write literal braces as {{ and }}",
            )
        found.add(field)
    return found


def parse_prompt(name: str, text: str, origin: str = "") -> Prompt:
    """Parse and check a prompt file's text (its own declarations only)."""
    where = origin or name
    head = _FRONT_MATTER.match(text)
    if head is None:
        raise PromptError(
            f"prompt {where} has no front matter",
            hint="start it with ---, a line `variables: a, b`, and ---",
        )
    declared: set[str] | None = None
    for line in head.group("head").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "variables":
            declared = {v.strip() for v in value.split(",") if v.strip()}
    if declared is None:
        raise PromptError(f"prompt {where} declares no `variables:` line in its front matter")
    body = text[head.end() :]
    sections = _SECTION.split(body)
    parts = {"system": "", "user": ""}
    if len(sections) == 1:
        parts["user"] = body
    else:
        if sections[0].strip():
            raise PromptError(f"prompt {where}: text before the first ## system/## user heading")
        for role, content in zip(sections[1::2], sections[2::2], strict=True):
            parts[role.lower()] = content.strip("\n") + "\n"
    used = _placeholders(parts["system"], where) | _placeholders(parts["user"], where)
    if used != declared:
        raise PromptError(
            f"prompt {where} declares {_names(declared)} but uses {_names(used)}",
            hint="make the `variables:` line match the placeholders in the text",
        )
    return Prompt(name, where, parts["system"], parts["user"], frozenset(declared))


@functools.cache
def _parsed(name: str) -> Prompt:
    return parse_prompt(name, *_read(name))


clear_cache = _parsed.cache_clear


def load_prompt(name: str, *, variables: Iterable[str] | None = None) -> Prompt:
    """The prompt called `name`, checked against the variables the code passes (by default the
    ones in PROMPT_VARIABLES)."""
    expected = frozenset(variables) if variables is not None else PROMPT_VARIABLES.get(name)
    prompt = _parsed(name)
    if expected is not None and prompt.variables != expected:
        raise PromptError(
            f"prompt {prompt.origin} declares {_names(prompt.variables)} but newsbot passes "
            f"{_names(expected)}",
            hint="fix the prompt's variables (a newer or older prompt file?)",
        )
    return prompt


def load_prompts() -> dict[str, Prompt]:
    """Every prompt the code uses, checked: called by Bot.open."""
    return {name: load_prompt(name) for name in PROMPT_VARIABLES}
