"""Follow-up questions rewritten into standalone ones, so that retrieval sees what is asked.

With a chat model, prompts/condense.md does it. Without one, `rewrite_follow_up` carries the
previous question's frame over: after "What did Qatar say about Hamas's response?",
"What about Egypt?" becomes "What did Egypt say about Hamas's response?" and "When was that?"
becomes "When did Qatar say about Hamas's response?". A question that does not read as a
follow-up is left as it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.models import Turn
from bot.terms import terms

if TYPE_CHECKING:
    from bot.prompts import Prompt

log = logging.getLogger(__name__)

# Turns of history given to the chat model, and how much of each answer.
HISTORY_TURNS = 4
HISTORY_ANSWER_CHARS = 400
# A rewrite longer than this many times the inputs is the model talking, not a question.
MAX_REWRITE_CHARS = 500

_WHAT_ABOUT = re.compile(
    r"^\s*(?:and\s+|but\s+|so\s+)?(?:what|how)\s+about\s+(?P<subject>.+?)\s*[?.!]*\s*$", re.I
)
_AND_SUBJECT = re.compile(r"^\s*(?:and|also|plus)\s+(?P<subject>[^?]+?)\s*[?.!]*\s*$", re.I)
_WH = re.compile(
    r"^\s*(?:and\s+|so\s+|but\s+)?(?P<wh>when|where|why|how|who|what|which)\b(?P<rest>[^?]*)\??\s*$",
    re.I,
)
_FRAME = re.compile(
    r"^\s*(?P<wh>what|who|which|how|when|where|why|whom)(?:\s+\w+)?\s+"
    r"(?P<aux>did|does|do|was|were|is|are|has|have|had|will|would|could|can|should)\s+"
    r"(?P<rest>.+?)\s*[?.!]*\s*$",
    re.I,
)
_SPEAKER = re.compile(
    r"^\s*(?:what|how)\s+(?:did|does|do|has|have|had|will|would)\s+(?P<speaker>.+?)\s+"
    r"(?:say|said|tell|told|think|announce|claim|respond|react|reply|comment|argue|warn)\b",
    re.I,
)
_REFERENCE = re.compile(
    r"\b(?:that|this|it|they|them|he|him|she|her|then|there|those|these)\b", re.I
)
_ENTITY = re.compile(r"(?<![\w'’])[A-Z][\w’'.-]*(?:\s+(?:of\s+|al\s+|de\s+)?[A-Z][\w’'.-]*)*")
# "When did that happen?": words that refer to the event rather than add to it.
_EVENT_WORDS = frozenset(terms("happen happened occur occurred take took place exactly"))
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
_OWNER = re.compile(r"['’]s$")


def previous_question(history: Sequence[Turn]) -> str | None:
    """The last standalone question of the conversation (what a follow-up follows)."""
    for turn in reversed(history):
        text = (turn.standalone_question or turn.question).strip()
        if text:
            return text
    return None


def _entities(question: str) -> list[re.Match[str]]:
    """Names (capitalised runs) and years in a question, without its first word."""
    found = []
    for match in _ENTITY.finditer(question):
        if match.start() == len(question) - len(question.lstrip()):
            # The first word is capitalised because it starts the question.
            continue
        found.append(match)
    return found


def _replace_subject(previous: str, subject: str) -> str | None:
    """`previous` with its subject (the speaker of "what did X say", else its first name or
    year of the same kind as `subject`) replaced by `subject`."""
    subject = subject.strip().rstrip("?.!").strip()
    subject = (
        re.sub(r"^(?:in|on|at|for|from)\s+", "", subject, flags=re.I)
        if _YEAR.search(subject)
        else subject
    )
    speaker = _SPEAKER.match(previous)
    if speaker and not _YEAR.fullmatch(subject):
        start, end = speaker.span("speaker")
        return previous[:start] + subject + previous[end:]
    if _YEAR.fullmatch(subject):
        year = _YEAR.search(previous)
        return previous[: year.start()] + subject + previous[year.end() :] if year else None
    for match in _entities(previous):
        if _YEAR.fullmatch(match.group()):
            continue
        start, end = match.span()
        if _OWNER.search(match.group()):
            end -= 2
        return previous[:start] + subject + previous[end:]
    return None


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the conversation before it."""
    if _WHAT_ABOUT.match(question) or _AND_SUBJECT.match(question):
        return True
    content = terms(_REFERENCE.sub(" ", question))
    words = question.split()
    if len(words) <= 2 and _WH.match(question):
        return True  # "Why?", "When exactly?"
    return bool(_REFERENCE.search(question)) and len(content) <= 2


def rewrite_follow_up(question: str, history: Sequence[Turn]) -> str:
    """A standalone version of `question`, by carrying the previous question's frame over."""
    question = question.strip()
    previous = previous_question(history)
    if not previous or not is_follow_up(question):
        return question
    about = _WHAT_ABOUT.match(question) or _AND_SUBJECT.match(question)
    if about:
        subject = about.group("subject")
        replaced = _replace_subject(previous, subject)
        if replaced:
            return replaced
        return f"{previous.rstrip(' ?.!')}: what about {subject.strip()}?"
    wh = _WH.match(question)
    frame = _FRAME.match(previous)
    if wh and frame and not set(terms(_REFERENCE.sub(" ", wh.group("rest")))) - _EVENT_WORDS:
        # "When was that?" after "What did Qatar say about X?" -> "When did Qatar say about X?"
        word = wh.group("wh").capitalize()
        return f"{word} {frame.group('aux').lower()} {frame.group('rest')}?"
    return f"{question.rstrip(' ?.!')} ({previous.rstrip(' ?.!')})?"


def format_history(history: Sequence[Turn]) -> str:
    lines = []
    for turn in history[-HISTORY_TURNS:]:
        answer = " ".join(turn.answer.split())
        if len(answer) > HISTORY_ANSWER_CHARS:
            answer = answer[:HISTORY_ANSWER_CHARS].rsplit(" ", 1)[0] + " ..."
        lines.append(f"User: {turn.question.strip()}")
        lines.append(f"Assistant: {answer}")
    return "\n".join(lines)


def condense(
    question: str,
    history: Sequence[Turn] | None,
    *,
    chat_model: Any = None,
    prompt: Prompt | None = None,
) -> str:
    """The standalone question: by the chat model when there is one, else by the rules.

    A model that fails or answers with something that is not one question falls back to the
    rules, so a flaky provider never loses the conversation.
    """
    question = question.strip()
    if not history:
        return question
    if chat_model is None or prompt is None:
        return rewrite_follow_up(question, history)
    messages = prompt.messages(history=format_history(history), question=question)
    try:
        reply = chat_model.invoke(messages)
    except Exception as exc:  # a provider's error must not end the conversation
        log.warning("condensing the question failed (%s); using the rules", exc)
        return rewrite_follow_up(question, history)
    text = _first_line(getattr(reply, "content", reply))
    if not text or len(text) > MAX_REWRITE_CHARS:
        log.info("the model's rewrite was unusable; using the rules")
        return rewrite_follow_up(question, history)
    return text


def _first_line(content: Any) -> str:
    if isinstance(content, list):
        content = "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    text = str(content or "").strip()
    for line in text.splitlines():
        line = line.strip().strip("\"'“”").strip()
        line = re.sub(r"^(?:standalone question\s*:\s*)", "", line, flags=re.I)
        if line:
            return line
    return ""
