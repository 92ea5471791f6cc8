"""The LLM answerer: prompts a chat model with numbered, delimited passages, streams its reply
with every [n] checked and mapped to a verbatim sentence, and falls back to the extractive answer
(bot/answer.py) when the reply cannot be used. Why each rule: docs/answering.md, "LLM answerers"."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.answer import (
    NOT_FOUND,
    Draft,
    Sentence,
    cite,
    extractive_answer,
    is_statement,
    looks_like_instruction,
    read_question,
    refusal,
    sentence_pool,
    speaker_of,
)
from bot.models import Citation, Turn
from index.text import query_terms

if TYPE_CHECKING:
    from bot.retrieve import Passage, Query
    from bot.settings import Settings

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")
Embed = Callable[[Sequence[str]], np.ndarray]  # the bot's embedder: unit vectors, one a row
# Sentences this close (cosine) to a claim's best tie; names decide (bench/citation_mapping.py).
NAME_TIE = 0.01
# Capitalised words and numbers: what a claim names ("al Thani's" -> {thani}).
_NAMED = re.compile(r"\b[A-Z][\w'’.-]*|\b\d[\d,.]*\b")


# A passage's sentences; the vectors of its readings (each sentence, then each statement read
# after the neighbours that introduce its speaker); the sentence each reading is of; and the
# speaker's words a reading adds (empty for a sentence read alone).
_Readings = tuple[list[Sentence], np.ndarray, list[int], list[frozenset[str]]]


@dataclass
class SentenceMatcher:
    """Maps a claim to the sentence of a passage that says what it says (the rules and their
    why: docs/answering.md, "Citations that support the claim")."""

    embed: Embed
    min_similarity: float
    allow_instructions: bool
    _readings: dict[str, _Readings] = field(default_factory=dict, init=False, repr=False)
    _claims: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def _of(self, passage: Passage) -> _Readings:
        key = f"{passage.chunk_id}:{passage.start}"
        if key not in self._readings:
            pool = sentence_pool([passage])
            sentences = [
                sentence
                for sentence in pool.sentences
                if self.allow_instructions or not looks_like_instruction(sentence.text)
            ]
            texts = [s.text for s in sentences]
            owners = list(range(len(sentences)))
            speakers: list[frozenset[str]] = [frozenset()] * len(sentences)
            for index, sentence in enumerate(sentences):
                if is_statement(sentence.text):
                    speaker = speaker_of(pool, sentence)
                    if speaker.linked:
                        ordered = sorted((*speaker.linked, sentence), key=lambda s: s.start)
                        texts.append(" ".join(s.text for s in ordered))
                        owners.append(index)
                        speakers.append(speaker.words)
            vectors = self.embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
            self._readings[key] = (sentences, vectors, owners, speakers)
        return self._readings[key]

    def best(self, claim: str, passage: Passage) -> tuple[Sentence, float] | None:
        """The sentence of `passage` that supports `claim`, and how well; None when none does.
        Support: the similarity, or the share of the claim's words the sentence holds if higher."""
        sentences, vectors, owners, speakers = self._of(passage)
        if not sentences:
            return None
        claim = claim.strip()
        if claim[-1:].isalnum():
            claim += "."  # the marker came before the full stop; embed the sentence as written
        names = frozenset(query_terms(" ".join(_NAMED.findall(claim))))
        reports = is_statement(claim)
        if claim not in self._claims:  # a claim citing several passages is embedded once
            self._claims[claim] = self.embed([claim])[0]
        similarities = np.full(len(sentences), -1.0)
        for owner, speaker, similarity in zip(
            owners, speakers, vectors @ self._claims[claim], strict=True
        ):
            # A statement read with its speaker's introduction counts only for a claim that
            # reports what that speaker said.
            if not speaker or (reports and names & speaker):
                similarities[owner] = max(similarities[owner], float(similarity))
        words = set(query_terms(claim))
        support = [
            max(float(similarity), len(words & sentence.words) / (len(words) or 1))
            for sentence, similarity in zip(sentences, similarities, strict=True)
        ]
        top = max(support)
        if top < self.min_similarity:
            return None
        index = max(
            (len(names & sentences[index].words), value, -sentences[index].start, index)
            for index, value in enumerate(support)
            if value >= top - NAME_TIE
        )[3]
        return sentences[index], support[index]


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
    """Checks an LLM answer's citations as it streams (docs/answering.md, "Citations that support
    the claim", "Streaming"); a number repeated in a run of markers ("[2][3][2]") is dropped too.
    The pieces `feed` and `finish` return add up to `text`."""

    def __init__(self, passages: Sequence[Passage], matcher: SentenceMatcher) -> None:
        self.passages = list(passages)
        self.matcher = matcher
        self.sentences: list[tuple[Sentence, Passage]] = []  # citation n - 1 -> what it quotes
        self._number: dict[tuple[str, int, int], int] = {}
        self.text = ""  # checked
        self.raw = ""  # what the model wrote
        self._pending = ""
        self._released = 0
        self._claim_start = 0  # where the text after the last citing marker starts
        self._claim = ""  # the claim the last marker cited
        self._cited: set[int] = set()  # the numbers shown for it

    def feed(self, piece: str) -> str:
        """Add a piece of model output; returns the text that may be shown now."""
        self.raw += piece
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
        bracket = text.rfind("[")
        cut = bracket if bracket != -1 and "]" not in text[bracket:] else len(text)
        # Spaces before a marker go with it when it is dropped.
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        return cut

    def _consume(self, text: str) -> None:
        if not self.text:
            text = text.lstrip()
        position = 0
        for match in _MARKER.finditer(text):
            self.text += text[position : match.start()]
            # A marker with no word since the last one ("[2][3]", "[2], [3]") cites the same
            # claim, as "[2, 3]" does, and shows each number once, as "[2, 2]" does.
            written = self.text[self._claim_start :]
            if re.search(r"\w", written):
                self._claim, self._cited = _last_sentence(written), set()
            wanted = dict.fromkeys(_numbers(match.group(1)))
            valid = [n for n in wanted if 1 <= n <= len(self.passages)]
            found = dict.fromkeys(self._cite(n) for n in valid)
            numbers = [n for n in found if n is not None and n not in self._cited]
            self._cited.update(numbers)
            if numbers:
                space = match.group(0)[: match.group(0).index("[")]
                self.text += space + "".join(f"[{n}]" for n in numbers)
                self._claim_start = len(self.text)
            position = match.end()
        self.text += text[position:]

    def _cite(self, passage_number: int) -> int | None:
        passage = self.passages[passage_number - 1]
        found = self.matcher.best(self._claim, passage)
        if found is None:
            log.info(
                "[%d] dropped: that passage holds nothing like %r", passage_number, self._claim
            )
            return None
        sentence = found[0]
        if sentence.key not in self._number:
            self._number[sentence.key] = len(self.sentences) + 1
            self.sentences.append((sentence, passage))
        return self._number[sentence.key]

    def _release(self) -> str:
        if not self.sentences:
            return ""
        piece, self._released = self.text[self._released :], len(self.text)
        return piece

    def citations(self) -> tuple[Citation, ...]:
        return cite(
            (sentence, passage.score if passage.dense_score is None else passage.dense_score)
            for sentence, passage in self.sentences
        )


def _last_sentence(text: str) -> str:
    """The claim a marker follows: the last sentence before it (two when the last is short)."""
    pieces = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]  # text holds a word
    claim = pieces[-1]
    if len(claim) < 20 and len(pieces) > 1:
        claim = " ".join(pieces[-2:])
    return claim


def is_refusal(text: str) -> bool:
    """Whether the model said the passages don't answer (the prompt asks for NOT_FOUND)."""
    normal = re.sub(r"[’`]", "'", text).strip().lower()
    return normal.startswith(NOT_FOUND.lower().rstrip(".")) or normal in ("", "i don't know.")


def neutralise(text: str) -> str:
    """Article text that cannot close or open a <passage> block: no `<`, `>` or `&` survives."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    return neutralise(" ".join(value.split())).replace('"', "&quot;")


def format_passages(passages: Sequence[Passage]) -> str:
    """The passages as numbered, delimited blocks for prompts/answer.md."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        published = passage.published_at
        attributes = {
            "n": str(n),
            "source": str(passage.metadata.get("source", "")),
            "published": published.date().isoformat() if published else "",
            "title": str(passage.metadata.get("title", "")),
        }
        head = " ".join(
            f'{key}="{_attribute(value)}"' for key, value in attributes.items() if value
        )
        blocks.append(f"<passage {head}>\n{neutralise(passage.text)}\n</passage>")
    return "\n".join(blocks)


# Local OpenAI-compatible servers (llama-server, vLLM, LM Studio) check no key; openai needs one.
NO_KEY = "not-needed"
# The providers newsbot documents and tests; each has a pip extra of its name (pyproject.toml).
SERVERS = {"openai": "the OpenAI API", "ollama": "the Ollama server"}
NO_CITATION = "the model's reply cited no passage"
RETRY_BACKOFF = 0.5  # seconds before the first retry when the server names no wait; doubled
TOKEN_COUNTS = ("input_tokens", "output_tokens")  # of a chunk's usage_metadata, into timings


def load_chat_model(spec: str, settings: Settings) -> Any:
    """A LangChain chat model from settings.llm ("provider:model"), via init_chat_model. The
    clients' own retries are off: `retry_wait` retries the same way for every provider."""
    from bot.errors import AnswerError, SettingsError

    provider, _, model = spec.partition(":")
    if not provider or not model:
        raise SettingsError(
            f"NEWSBOT_LLM={spec!r} is not provider:model",
            hint="e.g. openai:gpt-4o-mini or ollama:llama3.1; unset it for extractive answers",
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    options: dict[str, Any] = {"temperature": settings.llm_temperature}
    if provider == "openai":
        key = key or os.environ.get("OPENAI_API_KEY")
        if not key and not (settings.llm_base_url or os.environ.get("OPENAI_BASE_URL")):
            raise SettingsError(
                f"NEWSBOT_LLM={spec} needs an API key",
                hint="set NEWSBOT_LLM_API_KEY or OPENAI_API_KEY, or NEWSBOT_LLM_BASE_URL for "
                "a local OpenAI-compatible server",
            )
        options |= {
            "base_url": settings.llm_base_url,
            "api_key": key or NO_KEY,
            "timeout": settings.llm_timeout,
            "max_retries": 0,
            "stream_usage": True,  # token counts in the last streamed chunk
        }
    elif provider == "ollama":
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        options |= {
            "base_url": settings.llm_base_url,
            "client_kwargs": {"timeout": settings.llm_timeout, "headers": headers},
        }
    else:  # another LangChain provider: the usual names, where it takes them
        options |= {"timeout": settings.llm_timeout, "max_retries": 0}
        if settings.llm_base_url:
            options["base_url"] = settings.llm_base_url
        if key:
            options["api_key"] = key
    install = f"-e '.[{provider}]'" if provider in SERVERS else f"langchain-{provider}"
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(model, model_provider=provider, **options)
    except ImportError as exc:
        raise AnswerError(
            f"NEWSBOT_LLM={spec} needs langchain-{provider.replace('_', '-')}, which is not "
            f"installed ({exc})",
            hint=f"pip install {install} (in newsbot's folder), or unset NEWSBOT_LLM",
        ) from exc
    except Exception as exc:
        raise AnswerError(
            f"cannot load the chat model {spec}: {type(exc).__name__}: {exc}",
            hint="check NEWSBOT_LLM, NEWSBOT_LLM_BASE_URL and the API key, or unset NEWSBOT_LLM",
        ) from exc


@dataclass(frozen=True)
class Failure:
    """Why a request to the model failed, in words for the user, and whether to try again."""

    reason: str
    retryable: bool = False
    retry_after: float | None = None  # seconds the server asked to wait (Retry-After)
    timed_out: bool = False


class ModelFailed(Exception):
    """The model gave no usable answer; the message says why (the answer's fallback reason)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def retry_after(headers: Any) -> float | None:
    """Seconds a response asks to wait: retry-after-ms, or Retry-After (seconds or HTTP date)."""
    if not headers:
        return None
    for name, seconds in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        with contextlib.suppress(TypeError, ValueError):  # absent (None), or not a number
            return max(float(headers.get(name)) * seconds, 0.0)
    with contextlib.suppress(TypeError, ValueError):
        when = parsedate_to_datetime(headers.get("retry-after"))
        return max((when - datetime.now(when.tzinfo or UTC)).total_seconds(), 0.0)
    return None


def failure_of(exc: BaseException, *, where: str, timeout: float) -> Failure:
    """What went wrong, from the LangChain, ollama or httpx exceptions in the chain."""
    import httpx
    from langchain_core.exceptions import ModelConnectionError, ModelTimeoutError

    for error in _chain(exc):
        if isinstance(error, ModelTimeoutError | httpx.TimeoutException | TimeoutError):
            return Failure(f"no reply within {timeout:g} s (NEWSBOT_LLM_TIMEOUT)", timed_out=True)
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status >= 400:
            wait = retry_after(getattr(getattr(error, "response", None), "headers", None))
            message = " ".join(str(getattr(error, "message", None) or error).split())[:120]
            if status == 429:
                return Failure(f"rate limited by {where} (429)", True, wait)
            if status >= 500:
                return Failure(f"{where} failed ({status}: {message})", True, wait)
            if status in (401, 403):  # the server's words may quote the key: not shown
                return Failure(f"{where} refused the API key ({status}; NEWSBOT_LLM_API_KEY)")
            return Failure(f"{where} refused the request ({status}: {message})")
        if isinstance(error, ModelConnectionError | httpx.ConnectError | ConnectionError):
            return Failure(f"cannot connect to {where}")
        if isinstance(error, httpx.TransportError):
            return Failure(f"the connection to {where} failed ({type(error).__name__})")
    return Failure(f"the chat model failed ({type(exc).__name__}: {exc})")


def retry_wait(failure: Failure, made: int, settings: Settings, deadline: float) -> float:
    """Seconds to wait before trying a model request again after `made` tries; raises ModelFailed
    when not to: only a 429 or 5xx, never past the deadline (time.monotonic()) nor a Retry-After
    over llm_max_retry_wait (why: docs/answering.md, "Failures never lose the answer")."""
    tries = f" after {made} tries" if made > 1 else ""
    if not failure.retryable or made > settings.llm_retries:
        raise ModelFailed(failure.reason + tries)
    wait = failure.retry_after
    if wait is None:
        wait = RETRY_BACKOFF * 2 ** (made - 1)
    elif wait > settings.llm_max_retry_wait:
        raise ModelFailed(
            f"{failure.reason}: it asked to wait {wait:g} s, more than "
            f"NEWSBOT_LLM_MAX_RETRY_WAIT ({settings.llm_max_retry_wait:g} s)"
        )
    if time.monotonic() + wait > deadline:
        raise ModelFailed(failure.reason + tries + " (no time left to wait and retry)")
    return wait


@dataclass(frozen=True)
class Reply:
    """What the Answerer produced; `fallback_reason` (a one-line note): why no LLM answer."""

    draft: Draft
    answerer: str  # "extractive", or "llm:" + settings.llm (e.g. "llm:openai:gpt-4o-mini")
    fallback_reason: str | None = None
    # The model's seconds (all tries) and, when the server reports usage, its token counts.
    timings: dict[str, float] = field(default_factory=dict)


class Answerer:
    """Turns a question and its passages into a Reply: extractively, or with `chat_model` (any
    LangChain chat model), else the one settings.llm names. Prompts are loaded and checked here,
    so a broken prompt file fails as a front door starts (Bot.warm), not at the first question."""

    def __init__(self, settings: Settings, chat_model: Any = None, *, embedder: Any) -> None:
        from bot.prompts import load_prompts

        self.settings = settings
        self.embedder = embedder  # the bot's: SentenceMatcher embeds claims and sentences with it
        self.prompts = load_prompts()
        # What Answer.answerer says, and the server failure messages name.
        self.name = f"llm:{type(chat_model).__name__}"
        self.where = "the chat model"
        if chat_model is None and settings.llm:
            chat_model = load_chat_model(settings.llm, settings)
            provider = settings.llm.partition(":")[0]
            self.name = f"llm:{settings.llm}"
            self.where = settings.llm_base_url or SERVERS.get(provider, "the model server")
        self.chat_model = chat_model
        # Why the model's answers were not used, since this answerer was made (newsbot eval).
        self.fallbacks: Counter[str] = Counter()
        self._count = threading.Lock()
        self._local = threading.local()  # per question: the rewrite's time-out (standalone)

    def matcher(self, question: str) -> SentenceMatcher:
        return SentenceMatcher(
            self.embedder.embed,
            min_similarity=self.settings.citation_min_similarity,
            allow_instructions=read_question(question).about_instructions,
        )

    def standalone(self, question: str, history: Sequence[Turn] | None) -> str:
        """The follow-up made standalone (bot.conversation.condense); a model that timed out on it
        is not asked for this question's answer (`stream`, same thread): a second time-out."""
        self._local.timed_out = None
        if not history:  # nothing to condense: bot.conversation (its patterns) is not loaded
            return question.strip()
        from bot.conversation import condense

        def failed(exc: Exception) -> None:
            failure = failure_of(exc, where=self.where, timeout=self.settings.llm_timeout)
            if failure.timed_out:
                self._local.timed_out = failure.reason

        prompt = self.prompts["condense"]
        return condense(
            question, history, chat_model=self.chat_model, prompt=prompt, on_error=failed
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
    ) -> Iterator[str | Reply]:
        """Text pieces as produced, then the Reply; the pieces add up to its text unless the stream
        broke after some was shown (the Reply is then extractive: front doors show it in full)."""
        timed_out = getattr(self._local, "timed_out", None)
        self._local.timed_out = None
        draft = self.extractive(question, passages, query)
        timings: dict[str, float] = {}
        shown, answerer = False, "extractive"
        # Below the calibrated evidence threshold even an LLM would be guessing: no fallback.
        asking = self.chat_model is not None and not draft.refused
        reason = timed_out if asking else None
        if asking and not timed_out:
            messages = self.prompts["answer"].messages(
                question=question,
                passages=format_passages(passages),
                today=date.today().isoformat(),
            )
            checker = CitationChecker(passages, self.matcher(question))
            try:
                for piece in self._model_stream(messages, checker, timings):
                    shown = True
                    yield piece
            except ModelFailed as failed:
                log.warning("the chat model gave no answer (%s); answering extractively", failed)
                reason = str(failed)
            else:
                if checker.sentences:  # then `shown`: its text was streamed
                    answerer = self.name
                    draft = Draft(checker.text, checker.citations(), False, draft.confidence)
                elif is_refusal(checker.raw):
                    answerer, draft = self.name, refusal(draft.citations, draft.confidence)
                else:
                    log.info("the LLM answer had no valid citation; answering extractively")
                    reason = NO_CITATION
        if reason:
            with self._count:
                self.fallbacks[reason] += 1
        if not shown:
            yield draft.text
        yield Reply(draft, answerer, reason, timings)

    def _model_stream(
        self, messages: list[Any], checker: CitationChecker, timings: dict[str, float]
    ) -> Iterator[str]:
        """The checked text of the model's streamed reply, with retries (`retry_wait`); raises
        ModelFailed. Records the model's seconds, first-token wait and token counts."""
        settings = self.settings
        started = time.monotonic()
        deadline, tries = started + settings.llm_timeout, 0
        usage: Counter[str] = Counter()
        try:
            while True:
                received = False
                try:
                    for chunk in self.chat_model.stream(messages):
                        received = True
                        counts = getattr(chunk, "usage_metadata", None) or {}
                        usage.update({key: counts.get(key) or 0 for key in TOKEN_COUNTS})
                        piece = chunk.text  # str content, or the text of content blocks
                        if piece:
                            timings.setdefault("model_first_token", time.monotonic() - started)
                            if shown := checker.feed(piece):
                                yield shown
                        if time.monotonic() > deadline:
                            raise ModelFailed(
                                f"the reply took longer than {settings.llm_timeout:g} s "
                                "(NEWSBOT_LLM_TIMEOUT)"
                            )
                    break
                except ModelFailed:
                    raise
                except Exception as exc:
                    failure = failure_of(exc, where=self.where, timeout=settings.llm_timeout)
                    if received:  # text may have been shown: a retry would not add up
                        log.info("the stream broke: %s", failure.reason)
                        raise ModelFailed(
                            f"the reply from {self.where} broke off half-way"
                        ) from exc
                    tries += 1
                    wait = retry_wait(failure, tries, settings, deadline)
                    log.info("%s; trying again in %.1f s", failure.reason, wait)
                    time.sleep(wait)
            if shown := checker.finish():
                yield shown
        finally:
            timings["model"] = time.monotonic() - started
            timings.update(+usage)  # the counts the server gave
