"""Follow-up questions rewritten into standalone ones, so that retrieval sees what is asked: by
a chat model with prompts/condense.md, else by `rewrite_follow_up`'s rules ("What about Egypt?"
-> "What did Egypt say about Hamas's response?"; docs/answering.md, "Follow-ups without an LLM")."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bot.models import CITATION_MARKER, Turn
from bot.speakers import mention
from index.text import query_terms

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
_LEADING_AND = re.compile(r"^\s*(?:and|but|so|also|then)\s+(?:,\s*)?", re.I)
_AUX = "did|does|do|was|were|is|are|has|have|had|will|would|could|can|should"
_WH_WORD = re.compile(rf"^\s*(?:when|where|why|how|who|whom|whose|what|which|{_AUX})\b", re.I)
_BARE_WH = re.compile(
    r"^\s*(?P<wh>when|where|why|how)(?:\s+(?:was|is|did|does|were)\s+(?:that|this|it))?"
    r"(?:\s+(?:exactly|happen|happened|take place))?\s*[?.!]*\s*$",
    re.I,
)
_FRAME = re.compile(
    rf"^\s*(?P<wh>what|who|which|how(?:\s+\w+)?|when|where|why|whom)\s+(?P<aux>{_AUX})\s+"
    r"(?P<rest>.+?)\s*[?.!]*\s*$",
    re.I,
)
_SPEAKER = re.compile(
    r"^\s*(?:what|how)\s+(?:did|does|do|has|have|had|will|would)\s+(?P<speaker>.+?)\s+"
    r"(?P<verb>say|said|tell|told|think|announce|claim|respond|react|reply|comment|argue|warn)\b"
    r"(?:\s+(?:about|on|of|regarding|to)\s+(?P<topic>.+?))?\s*[?.!]*\s*$",
    re.I,
)
_PERSON_PRONOUN = re.compile(r"\b(?:he|she|him|her|his|they|them|their)\b", re.I)
_THING_PRONOUN = re.compile(r"\b(?:it|its)\b", re.I)
_REFERENCE = re.compile(
    r"\b(?:that|this|it|its|they|them|he|him|his|she|her|then|there|those|these)\b", re.I
)
_NAME_WORD = r"[A-Z][\w’'.-]*"
# A name: capitalised words, with the particles names carry ("Mohammed al Thani").
_ENTITY = re.compile(
    rf"(?<![\w'’]){_NAME_WORD}(?:\s+(?:of\s+(?:the\s+)?|al\s+|de\s+|van\s+|von\s+)?{_NAME_WORD})*"
)
_PERSON = re.compile(
    rf"(?<![\w'’]){_NAME_WORD}(?:\s+(?:al\s+|de\s+|van\s+|von\s+|bin\s+)?{_NAME_WORD})+"
)
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
_OWNER = re.compile(r"['’]s$")
# Capitalised words that start a clause or a quotation rather than name someone.
_NOT_NAMES = frozenset(
    "the a an this that these those it he she they we i our my his her their but and or "
    "although however meanwhile shortly after before in on at for what who when where why how "
    "which mr mrs ms dr".split()
)


def _entities(question: str) -> list[re.Match[str]]:
    """Names (capitalised runs) in a question, but its first word (capitalised as the start)."""
    first = len(question) - len(question.lstrip())
    return [match for match in _ENTITY.finditer(question) if match.start() != first]


def _topic(previous: str) -> tuple[int, int] | None:
    """The span of what the previous question is about: its first name or year, widened to
    the noun phrase around it ("the 2024 Lakeshore Classic", "the Kestrel probe")."""
    spans = [m.span() for m in _entities(previous)] + [m.span() for m in _YEAR.finditer(previous)]
    if not spans:
        return None
    start, end = min(spans)
    for other_start, other_end in sorted(spans):  # "2024" + "Lakeshore Classic"
        if other_start <= end + 1 and other_end > end:
            end = other_end
    if _OWNER.search(previous[start:end]):
        end -= 2
    article = re.search(r"\b(?:the|a|an)\s+$", previous[:start], re.I)
    if article:
        start = article.start()
        # "the Kestrel probe", "the Riverton drivers' union": nouns after the name belong to it,
        # but not the verb that ends "How much did the Kestrel probe cost?".
        tail = previous[end:]
        verb_last = re.match(
            r"^\s*\w+(?:\s+\w+)?\s+(?:did|does|do|will|would|can|could)\b", previous, re.I
        )
        for _ in range(2):
            following = re.match(r"\s+([a-z][\w'’-]*)", tail)
            if not following or following.group(1) in _FUNCTION_WORDS:
                break
            rest = tail[following.end() :]
            if verb_last and not re.match(r"\s+\w", rest):
                break
            end += following.end()
            tail = rest
    return start, end


_FUNCTION_WORDS = frozenset(
    "first last ever really also still in on at of for to from by with and or is was did does "
    "say said".split()
)


def _person(turns: Sequence[Turn], previous: str) -> str | None:
    """Who "he"/"she" points at: the speaker of the previous "what did X say", else the previous
    answer's first full name the question did not name, else one the question names."""
    speaker = _SPEAKER.match(previous)
    if speaker:
        return speaker.group("speaker")
    answer = turns[-1].answer if turns else ""
    asked = set(query_terms(previous))
    # Someone the answer quotes ("..., said Dolores Okafor, the union's president") comes first;
    # the first name of an answer is often an organisation.
    uncited = re.sub(rf"\s*{CITATION_MARKER.pattern}", "", answer)
    for sentence in re.split(r"(?<=[.!?\]])\s+", uncited):
        said = mention(sentence)
        if said is not None and said.kind == "named" and len(said.text.split()) >= 2:
            return _OWNER.sub("", said.text)
    for text in (answer, previous):
        for match in _PERSON.finditer(CITATION_MARKER.sub(" ", text)):
            words = match.group().split()
            while words and words[0].lower() in _NOT_NAMES:
                words = words[1:]
            if len(words) < 2:
                continue
            name = " ".join(words)
            if text is answer and set(query_terms(name)) <= asked:
                continue
            return _OWNER.sub("", name)
    return None


def _replace_subject(previous: str, subject: str) -> str | None:
    """`previous` with what it is about replaced by `subject`: the speaker of "what did X
    say", the year, a name by a name; a part of it ("the men's race") narrows it instead."""
    subject = subject.strip().rstrip("?.!").strip()
    if _YEAR.search(subject):
        subject = re.sub(r"^(?:in|on|at|for|from)\s+", "", subject, flags=re.I)
    speaker = _SPEAKER.match(previous)
    if _YEAR.fullmatch(subject):
        year = _YEAR.search(previous)
        if year:
            return previous[: year.start()] + subject + previous[year.end() :]
        return f"{previous.rstrip(' ?.!')} in {subject}?"
    if speaker:
        start, end = speaker.span("speaker")
        return previous[:start] + subject + previous[end:]
    topic = _topic(previous)
    if topic is None:
        return None
    start, end = topic
    if re.search(r"(?<![\w'’])[A-Z]", subject):  # another name: "the Rosetta probe"
        return previous[:start] + subject + previous[end:]
    # "And the men's race?" after "Who won the 2024 Lakeshore Classic?"
    return previous[:start] + f"{subject} of {previous[start:end]}" + previous[end:]


def _resolve(question: str, turns: Sequence[Turn], previous: str) -> str:
    """`question` with he/she and it pointing at what the conversation named."""

    def point(pronoun: re.Pattern[str], question: str, name: str) -> str:
        def named(match: re.Match[str]) -> str:
            return name + ("'s" if match.group().lower() in ("his", "their", "its") else "")

        return pronoun.sub(named, question, count=1)

    if _PERSON_PRONOUN.search(question) and (person := _person(turns, previous)):
        question = point(_PERSON_PRONOUN, question, person)
    if _THING_PRONOUN.search(question) and (topic := _topic(previous)):
        question = point(_THING_PRONOUN, question, previous[topic[0] : topic[1]])
    return question


def _lacks_context(question: str) -> bool:
    """A short question that names nothing: "Who finished second?"."""
    return (
        not _entities(question) and not _YEAR.search(question) and len(query_terms(question)) <= 3
    )


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the conversation before it."""
    if any(rule.match(question) for rule in (_WHAT_ABOUT, _AND_SUBJECT, _BARE_WH, _LEADING_AND)):
        return True
    content = query_terms(_REFERENCE.sub(" ", question))
    return (bool(_REFERENCE.search(question)) and len(content) <= 3) or _lacks_context(question)


def rewrite_follow_up(question: str, history: Sequence[Turn]) -> str:
    """`question` made standalone with the previous question's subject, speaker, topic or year;
    as it is when it does not lean on the conversation."""
    question = question.strip()
    # The last standalone question of the conversation: what a follow-up follows.
    asked = ((turn.standalone_question or turn.question).strip() for turn in reversed(history))
    previous = next(filter(None, asked), None)
    if not previous or not is_follow_up(question):
        return question
    bare = _LEADING_AND.sub("", question)
    about = _WHAT_ABOUT.match(question) or (
        None if _WH_WORD.match(bare) else _AND_SUBJECT.match(question)
    )
    if not about:
        return _rewrite_question(bare[:1].upper() + bare[1:], history, previous)
    replaced = _replace_subject(previous, about.group("subject"))
    return _tidy(replaced) if replaced else question


def _rewrite_question(question: str, history: Sequence[Turn], previous: str) -> str:
    """A follow-up that is a question of its own: "What did he say?", "And what did Blinken
    say?", "When was that?", "Why?", "Who finished second?"."""
    frame = _FRAME.match(previous)
    speaker = _SPEAKER.match(previous)
    bare = _BARE_WH.match(question)
    if bare:
        wh = bare.group("wh").capitalize()
        if speaker:
            topic = speaker.group("topic")
            about = f" about {topic}" if topic else ""
            return _tidy(f"{wh} did {speaker.group('speaker')} speak{about}?")
        if frame and frame.group("wh").lower() not in ("who", "what", "which"):
            return _tidy(f"{wh} {frame.group('aux').lower()} {frame.group('rest')}?")
        if wh == "Why":
            # "Why?" after "Who won the 2024 Lakeshore Classic?" / "What is the rate in Germany?"
            copula = frame and frame.group("aux").lower() in ("is", "are", "was", "were")
            asked = frame.group("rest") if frame and copula else _lower_first(previous)
            return _tidy(f"What explains {asked}?")
        if frame and frame.group("wh").lower() == "what":
            return _tidy(f"{wh} {frame.group('aux').lower()} {frame.group('rest')}?")
        topic = _topic(previous)
        if topic:
            return _tidy(f"{wh} was {previous[topic[0] : topic[1]]}?")
        return _tidy(f"{wh} did it happen: {_lower_first(previous)}?")
    resolved = _resolve(question, history, previous)
    asked = _SPEAKER.match(resolved)
    if asked and not asked.group("topic") and speaker and speaker.group("topic"):
        # "What did Blinken say?" after "What did Qatar say about Hamas's response?"
        resolved = f"{resolved.rstrip(' ?.!')} about {speaker.group('topic')}?"
    elif _lacks_context(_REFERENCE.sub(" ", resolved)) and resolved == question:
        topic = _topic(previous)
        if topic:
            resolved = f"{resolved.rstrip(' ?.!')} in {previous[topic[0] : topic[1]]}?"
    return _tidy(resolved)


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(" ?.!")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _tidy(text: str) -> str:
    text = " ".join(text.split()).rstrip(" ?.!")
    return text[:1].upper() + text[1:] + "?"


def format_history(history: Sequence[Turn]) -> str:
    lines = []
    for turn in history[-HISTORY_TURNS:]:
        answer = " ".join(turn.answer.split())
        if len(answer) > HISTORY_ANSWER_CHARS:
            answer = answer[:HISTORY_ANSWER_CHARS].rsplit(" ", 1)[0] + " ..."
        lines += [f"User: {turn.question.strip()}", f"Assistant: {answer}"]
    return "\n".join(lines)


def condense(
    question: str,
    history: Sequence[Turn] | None,
    *,
    chat_model: Any,
    prompt: Prompt,
    on_error: Callable[[Exception], object] | None = None,
) -> str:
    """The standalone question, by the chat model if any, else (also when it fails, `on_error`
    told why, or answers with not one question) by the rules: a flaky provider loses nothing."""
    question = question.strip()
    if not history:
        return question
    if chat_model is None:
        return rewrite_follow_up(question, history)
    messages = prompt.messages(history=format_history(history), question=question)
    try:
        reply = chat_model.invoke(messages)
    except Exception as exc:  # a provider's error must not end the conversation
        log.warning("condensing the question failed (%s); using the rules", exc)
        if on_error is not None:
            on_error(exc)
        return rewrite_follow_up(question, history)
    lines = (line.strip().strip("\"'“”").strip() for line in reply.text.strip().splitlines())
    lines = (re.sub(r"^(?:standalone question\s*:\s*)", "", line, flags=re.I) for line in lines)
    text = next(filter(None, lines), "")
    if not text or len(text) > MAX_REWRITE_CHARS:
        log.info("the model's rewrite was unusable; using the rules")
        return rewrite_follow_up(question, history)
    return text
