"""The LLM answerer: prompts a chat model with numbered, delimited passages, streams its reply
with every [n] checked and mapped to a verbatim sentence, and falls back to the extractive answer
(bot/answer.py) when the reply cannot be used.

`Answerer` is what `Bot` holds: extractive when no chat model is configured, else the LLM with the
extractive answer computed first (below the refusal threshold the model is not asked).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from bot.answer import (
    CLOSEST_CITATIONS,
    CLOSEST_NOTE,
    NOT_FOUND,
    Draft,
    Sentence,
    citation_for,
    extractive_answer,
    sentence_pool,
)
from bot.models import Citation, Turn
from bot.terms import terms

if TYPE_CHECKING:
    from bot.prompts import Prompt
    from bot.retrieve import Passage, Query
    from bot.settings import Settings

log = logging.getLogger(__name__)

# -- LLM answers: checking what the model wrote ------------------------------------------------

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


def best_sentence(claim: str, passage: Passage, question: str = "") -> Sentence | None:
    """The sentence of `passage` that best supports `claim` (word overlap, then the question)."""
    pool = sentence_pool([passage])
    if not pool.sentences:
        return None
    claim_words = set(terms(claim))
    question_words = set(terms(question))

    def overlap(sentence: Sentence) -> tuple[float, float, int]:
        shared = len(sentence.words & claim_words) / (len(claim_words) or 1)
        asked = len(sentence.words & question_words) / (len(question_words) or 1)
        return (shared, asked, -sentence.start)

    return max(pool.sentences, key=overlap)


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for piece in re.split(r"\s*[,;]\s*", group):
        bounds = re.split(r"\s*[–-]\s*", piece)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            if 0 < high - low < 10:
                numbers.extend(range(low, high + 1))
                continue
        numbers.extend(int(b) for b in bounds if b.isdigit())
    return numbers


class CitationChecker:
    """Checks an LLM answer's citations as it streams.

    An [n] that points at a passage becomes a citation of the sentence of that passage which best
    supports the claim it follows (numbered in order of first use, so two claims citing one
    passage may quote two sentences of it); any other [n] is dropped with the space before it.
    Text is held back until the first valid citation, so that nothing is shown of an answer that
    will be replaced by the extractive one; after that only a possibly unfinished marker is held.
    The pieces `feed` and `finish` return add up to `text`.
    """

    def __init__(self, passages: Sequence[Passage], question: str = "") -> None:
        self.passages = list(passages)
        self.question = question
        self.sentences: list[tuple[Sentence, Passage]] = []  # citation n - 1 -> what it quotes
        self._number: dict[tuple[str, int, int], int] = {}
        self._pending = ""
        self._out: list[str] = []
        self._released = 0
        self._claim_start = 0

    @property
    def text(self) -> str:
        return "".join(self._out)

    def feed(self, piece: str) -> str:
        """Add a piece of model output; returns the text that may be shown now."""
        self._pending += piece
        cut = self._safe_cut(self._pending)
        self._consume(self._pending[:cut])
        self._pending = self._pending[cut:]
        return self._release()

    def finish(self) -> str:
        """The end of the output: returns what is left to show."""
        self._consume(self._pending.rstrip())
        self._pending = ""
        return self._release()

    @staticmethod
    def _safe_cut(text: str) -> int:
        """How much of `text` cannot be part of a marker still arriving."""
        cut = len(text)
        bracket = text.rfind("[")
        if bracket != -1 and "]" not in text[bracket:]:
            cut = bracket
        # Spaces before a marker go with it when it is dropped.
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        return cut

    def _consume(self, text: str) -> None:
        if not self._out:
            text = text.lstrip()
        position = 0
        for match in _MARKER.finditer(text):
            self._out.append(text[position : match.start()])
            wanted = dict.fromkeys(_numbers(match.group(1)))
            valid = [n for n in wanted if 1 <= n <= len(self.passages)]
            numbers = [self._cite(n) for n in valid]
            numbers = [n for n in dict.fromkeys(numbers) if n is not None]
            if numbers:
                space = match.group(0)[: match.group(0).index("[")]
                self._out.append(space + "".join(f"[{n}]" for n in numbers))
                self._claim_start = len(self.text)
            position = match.end()
        self._out.append(text[position:])

    def _cite(self, passage_number: int) -> int | None:
        passage = self.passages[passage_number - 1]
        claim = _last_sentence(self.text[self._claim_start :])
        sentence = best_sentence(claim, passage, self.question)
        if sentence is None:
            return None
        if sentence.key not in self._number:
            self._number[sentence.key] = len(self.sentences) + 1
            self.sentences.append((sentence, passage))
        return self._number[sentence.key]

    def _release(self) -> str:
        if not self.sentences:
            return ""
        full = self.text
        piece = full[self._released :]
        self._released = len(full)
        return piece

    def citations(self) -> tuple[Citation, ...]:
        found = []
        for n, (sentence, passage) in enumerate(self.sentences, start=1):
            score = passage.dense_score if passage.dense_score is not None else passage.score
            found.append(citation_for(n, sentence, score))
        return tuple(found)


def _last_sentence(text: str) -> str:
    """The claim a marker follows: the last sentence before it (two when the last is short)."""
    pieces = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    if not pieces:
        return text
    claim = pieces[-1]
    if len(claim) < 20 and len(pieces) > 1:
        claim = " ".join(pieces[-2:])
    return claim


def check_citations(text: str, passages: Sequence[Passage], question: str = "") -> CitationChecker:
    """Check a whole LLM answer at once (see CitationChecker)."""
    checker = CitationChecker(passages, question)
    checker.feed(text)
    checker.finish()
    return checker


def is_refusal(text: str) -> bool:
    """Whether the model said the passages don't answer (the prompt asks for NOT_FOUND)."""
    normal = re.sub(r"[’`]", "'", text).strip().lower()
    return normal.startswith(NOT_FOUND.lower().rstrip(".")) or normal in ("", "i don't know.")


def stream_llm_answer(
    chat_model: Any,
    messages: list[Any],
    passages: Sequence[Passage],
    question: str,
    fallback: Callable[[], Draft],
) -> Iterator[str | Draft]:
    """Stream the model's answer with its citations checked, then yield the Draft.

    An answer left with no valid citation is replaced by `fallback()` (the extractive answer),
    unless the model said the articles don't say, which is a refusal.
    """
    from bot.errors import AnswerError

    checker = CitationChecker(passages, question)
    raw: list[str] = []
    try:
        for chunk in chat_model.stream(messages):
            piece = _content(chunk)
            if not piece:
                continue
            raw.append(piece)
            shown = checker.feed(piece)
            if shown:
                yield shown
    except Exception as exc:
        raise AnswerError(
            f"the chat model failed: {type(exc).__name__}: {exc}",
            hint="check NEWSBOT_LLM and the provider's credentials, or unset NEWSBOT_LLM",
        ) from exc
    shown = checker.finish()
    if shown:
        yield shown
    if checker.sentences:
        yield Draft(checker.text, checker.citations(), False, fallback().confidence)
        return
    said = "".join(raw)
    if is_refusal(said):
        draft = fallback()
        closest = draft.citations if draft.refused else draft.citations[:CLOSEST_CITATIONS]
        text = NOT_FOUND + (CLOSEST_NOTE if closest else "")
        yield text
        yield Draft(text, closest, True, draft.confidence)
        return
    log.info("the LLM answer had no valid citation; answering extractively instead")
    draft = fallback()
    yield draft.text
    yield draft


def _content(chunk: Any) -> str:
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return str(content or "")


# -- the LLM prompt ----------------------------------------------------------------------------


def neutralise(text: str) -> str:
    """Article text made inert inside the prompt's <passage> blocks: no tag in it can close or
    open a block, because no `<`, `>` or `&` survives as itself."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    return neutralise(" ".join(value.split())).replace('"', "&quot;")


def format_passages(passages: Sequence[Passage]) -> str:
    """The passages as numbered, delimited blocks for prompts/answer.md."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        meta = passage.metadata
        published = passage.published_at
        attributes = {
            "n": str(n),
            "source": str(meta.get("source", "")),
            "published": published.date().isoformat() if published else "",
            "title": str(meta.get("title", "")),
        }
        head = " ".join(
            f'{key}="{_attribute(value)}"' for key, value in attributes.items() if value
        )
        blocks.append(f"<passage {head}>\n{neutralise(passage.text)}\n</passage>")
    return "\n".join(blocks)


def answer_messages(
    prompt: Prompt, question: str, passages: Sequence[Passage], today: str
) -> list[tuple[str, str]]:
    return prompt.messages(question=question, passages=format_passages(passages), today=today)


def load_chat_model(spec: str, *, temperature: float) -> Any:
    """A LangChain chat model from "provider:model" (init_chat_model)."""
    from bot.errors import AnswerError, SettingsError

    provider, _, model = spec.partition(":")
    if not provider or not model:
        raise SettingsError(
            f"NEWSBOT_LLM={spec!r} is not provider:model",
            hint="e.g. openai:gpt-4o-mini or ollama:llama3.1; unset it for extractive answers",
        )
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(spec, temperature=temperature)
    except ImportError as exc:
        raise AnswerError(
            f"cannot load the chat model {spec}: {exc}",
            hint=f"pip install langchain-{provider.replace('_', '-')}",
        ) from exc
    except Exception as exc:
        raise AnswerError(
            f"cannot load the chat model {spec}: {type(exc).__name__}: {exc}",
            hint="check the provider's settings (API key, base URL), or unset NEWSBOT_LLM",
        ) from exc


class Answerer:
    """Turns a question and its passages into a Draft: extractively, or with a chat model.

    The chat model is `chat_model` when given (any LangChain chat model), else the one named by
    settings.llm, else none. Prompts are loaded and checked here, so a broken prompt file fails
    Bot.open rather than the first question.
    """

    def __init__(self, settings: Settings, chat_model: Any = None) -> None:
        from bot.prompts import load_prompts

        self.settings = settings
        self.prompts = load_prompts()
        if chat_model is None and settings.llm:
            chat_model = load_chat_model(settings.llm, temperature=settings.llm_temperature)
        self.chat_model = chat_model

    def standalone(self, question: str, history: Sequence[Turn] | None) -> str:
        from bot.conversation import condense

        return condense(
            question, history, chat_model=self.chat_model, prompt=self.prompts["condense"]
        )

    def extractive(
        self, question: str, passages: Sequence[Passage], query: Query | None = None
    ) -> Draft:
        return extractive_answer(
            question,
            passages,
            max_sentences=self.settings.max_answer_sentences,
            threshold=self.settings.refusal_threshold,
            parts=query.parts if query is not None else (),
        )

    def stream(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        query: Query | None = None,
        today: date | None = None,
    ) -> Iterator[str | Draft]:
        """Text pieces as they are produced, then the Draft."""
        draft = self.extractive(question, passages, query)
        if self.chat_model is None or draft.refused:
            # Below the calibrated evidence threshold even an LLM would be guessing.
            yield draft.text
            yield draft
            return
        messages = answer_messages(
            self.prompts["answer"], question, passages, (today or date.today()).isoformat()
        )
        yield from stream_llm_answer(self.chat_model, messages, passages, question, lambda: draft)
