"""Prompts live in prompts/*.md, one per file, loaded by name and checked when loaded (their
format: docs/answering.md, "Prompts"): a mistake fails at `Bot.open`, not at the first question."""

from __future__ import annotations

import contextlib
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
_VARIABLES = re.compile(r"^[ \t]*variables[ \t]*:(.*)$", re.MULTILINE)
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
        """(system, user) with the variables filled in, as they are (no braces read in them)."""
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
    return ", ".join("{" + name + "}" for name in sorted(names)) or "no variables"


def _read(name: str) -> tuple[str, str]:
    path = CHECKOUT_DIR / f"{name}.md"
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    with contextlib.suppress(ModuleNotFoundError):
        resource = resources.files(PACKAGE) / f"{name}.md"
        if resource.is_file():
            return resource.read_text(encoding="utf-8"), f"{PACKAGE}/{name}.md"
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
    variables = _VARIABLES.search(head.group("head"))
    if variables is None:
        raise PromptError(f"prompt {where} declares no `variables:` line in its front matter")
    declared = {v.strip() for v in variables.group(1).split(",") if v.strip()}
    body = text[head.end() :]
    sections = _SECTION.split(body)
    parts = {"system": "", "user": body if len(sections) == 1 else ""}
    if len(sections) > 1 and sections[0].strip():
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
def load_prompt(name: str) -> Prompt:
    """The prompt called `name`, checked against the variables the code passes to it."""
    expected = PROMPT_VARIABLES.get(name)
    prompt = parse_prompt(name, *_read(name))
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
