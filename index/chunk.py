"""Article -> chunks. Pure functions of their inputs: no model, no store.

A chunk is whole sentences (`body[start:end] == text`: a quoted sentence lies in one chunk), bounded
in word pieces so that the embedding model never cuts it off silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec

from index.article import Article, Chunk

CountTokens = Callable[[str], int]

# Room for [CLS] and [SEP], which the model adds to every text.
SPECIAL_TOKENS = 2
# The context line may use at most this share of the model's window; a longer title is shortened.
MAX_HEADER_SHARE = 0.25

_PARAGRAPH = re.compile(r"[^\n]+")
# blingfire treats a title before a name as a sentence end ("Blinken. Dr. | Smith arrived") and
# misses the end before one ("the group said. Mr. Blinken agreed."); these two patterns mend it.
_HONORIFIC = r"(?:Mr|Mrs|Ms|Mx|Dr|Prof|Sen|Rep|Gov|Gen|Lt|Col|Sgt|Capt|Rev|Hon|St)\."
_ENDS_WITH_HONORIFIC = re.compile(r"\b" + _HONORIFIC + r"$")
_MISSED_END = re.compile(r"(?<=[a-z]{2})[.!?][\"”’)]?(?=\s+" + _HONORIFIC + r"\s+[A-Z])")
_WORD = re.compile(r"\S+")


def _blingfire() -> ctypes.CDLL:
    """blingfire's C library, loaded as its wrapper loads it, without importing the wrapper
    (docs/ingesting.md, "Sentences")."""
    spec = find_spec("blingfire")  # finds the package without running it
    if spec is not None and spec.origin is not None:
        names = {"win32": "blingfiretokdll.dll", "darwin": "libblingfiretokdll.dylib"}
        name = names.get(sys.platform, "libblingfiretokdll.so")
        with contextlib.suppress(OSError):  # a release that lays its files out otherwise
            return ctypes.CDLL(os.path.join(os.path.dirname(spec.origin), name))
    import blingfire  # its wrapper knows where its library is (or says it is not installed)

    return blingfire.blingfire


# The C call of blingfire's text_to_sentences_and_offsets (docs/ingesting.md, "Sentences").
_SENTENCES_WITH_OFFSETS = _blingfire().TextToSentencesWithOffsets


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text`, never crossing a line break (headlines, datelines, list items).
    blingfire keeps abbreviations whole and is ~20x faster than pysbd (README, "Decisions")."""
    spans: list[Span] = []
    for line in _PARAGRAPH.finditer(text):
        piece = line.group()
        if not piece.strip():
            continue
        merged: list[tuple[int, int]] = []
        for start, end in _sentence_offsets(piece):
            if merged and _ENDS_WITH_HONORIFIC.search(piece, merged[-1][0], merged[-1][1]):
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        for start, end in merged:
            for sub_start, sub_end in _split_missed(piece, start, end):
                sub_start, sub_end = _trim(piece, sub_start, sub_end)
                if sub_end > sub_start:
                    spans.append(Span(line.start() + sub_start, line.start() + sub_end))
    return spans


def _sentence_offsets(piece: str) -> list[tuple[int, int]]:
    """blingfire.text_to_sentences_and_offsets(piece)[1], computed the same way (docs/ingesting.md,
    "Sentences"), or by the wrapper itself for offsets its loop treats in its own way."""
    data = piece.encode("utf-8")
    capacity = len(data) * 2  # what the wrapper allows the output, and tells the library
    # Buffers in power-of-two sizes: a ctypes array type of a new length costs ~11 us to make,
    # three a text of each new length; the room beyond `capacity` stays zero.
    room = 1 << max(capacity, 64).bit_length()
    out = (ctypes.c_char * room)()
    starts, ends = (ctypes.c_int32 * room)(), (ctypes.c_int32 * room)()
    written = _SENTENCES_WITH_OFFSETS(data, len(data), out, starts, ends, capacity)
    if written == -1 or written > capacity:
        return []
    count = out.value.count(b"\n") + 1  # sentences, as the wrapper counts them
    # Each sentence's first byte, and the byte after its last (the wrapper's "end + 1").
    bounds = [bound for i in range(count) for bound in (starts[i], ends[i] + 1)]
    # The wrapper maps bounds in order onto the bytes that start characters, and the last one,
    # if not met by then, to the end of the text.
    if bounds[0] < 0 or bounds[-2] >= len(data) or bounds != sorted(bounds):
        return _wrapper(piece)
    bounds[-1] = min(bounds[-1], len(data))
    if len(data) > len(piece):  # not ASCII: byte offsets to character offsets
        chars, at = 0, 0
        try:
            for index, bound in enumerate(bounds):
                chars += len(data[at:bound].decode("utf-8"))  # raises inside a character
                bounds[index], at = chars, bound
        except UnicodeDecodeError:
            return _wrapper(piece)
    return list(zip(bounds[::2], bounds[1::2], strict=True))


def _wrapper(piece: str) -> list[tuple[int, int]]:
    import blingfire

    return list(blingfire.text_to_sentences_and_offsets(piece)[1])


def _split_missed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    for match in _MISSED_END.finditer(text, start, end):
        yield start, match.end()
        start = match.end()
    yield start, end


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())


# Bump when context_header changes what the model reads: stored chunks are then re-embedded.
HEADER_FORMAT = 3


def context_header(article: Article) -> str:
    """The line the model reads before a continuation chunk's text: title, then source.

    No date (format 1): filters use the stored one; it cost 6% more text, no better retrieval. Not
    on the first chunk (format 2): README, "Decisions worth knowing".
    """
    header = article.title.strip()
    if article.source:
        header = f"{header} ({article.source})" if header else article.source
    return header


def _split_long(text: str, span: Span, budget: int, count_tokens: CountTokens) -> Iterator[Span]:
    """Cut one over-long sentence at word boundaries into pieces of at most `budget` word pieces."""
    words = [
        (span.start + m.start(), span.start + m.end())
        for m in _WORD.finditer(text, span.start, span.end)
    ]
    piece_start = 0
    used = 0
    for index, (word_start, word_end) in enumerate(words):
        cost = count_tokens(text[word_start:word_end])
        if used and used + cost > budget:
            yield Span(words[piece_start][0], words[index - 1][1])
            piece_start, used = index, 0
        used += cost
    if words:
        yield Span(words[piece_start][0], words[-1][1])


def chunk_article(
    article: Article,
    *,
    count_tokens: CountTokens,
    max_model_tokens: int,
    chunk_tokens: int,
    overlap_sentences: int,
) -> list[Chunk]:
    """Chunks of `article`, each within the model's window once the context header is added."""
    body = article.body
    words = context_header(article).split()
    while True:  # the header, shortened word by word to its share of the model's window
        header = " ".join(words)
        header_tokens = count_tokens(header) if header else 0
        if header_tokens <= int(max_model_tokens * MAX_HEADER_SHARE):
            break
        words = words[:-1]
    budget = max(8, min(chunk_tokens, max_model_tokens - SPECIAL_TOKENS - header_tokens))

    sentences: list[tuple[Span, int]] = []
    for span in split_sentences(body):
        cost = count_tokens(body[span.start : span.end])
        if cost <= budget:
            sentences.append((span, cost))
        else:
            pieces = _split_long(body, span, budget, count_tokens)
            sentences += [(piece, count_tokens(body[piece.start : piece.end])) for piece in pieces]

    groups: list[list[tuple[Span, int]]] = []
    current: list[tuple[Span, int]] = []
    used = 0
    for sentence in sentences:
        if current and used + sentence[1] > budget:
            groups.append(current)
            # Carry the last sentences over, but never so many that little new text fits.
            carried = current[-overlap_sentences:] if overlap_sentences else []
            while carried and sum(cost for _, cost in carried) + sentence[1] > budget // 2:
                carried = carried[1:]
            current, used = list(carried), sum(cost for _, cost in carried)
        current.append(sentence)
        used += sentence[1]
    if current:
        groups.append(current)

    return [
        Chunk(
            id=f"{article.id}#{position}",
            article_id=article.id,
            position=position,
            start=group[0][0].start,
            end=group[-1][0].end,
            text=body[group[0][0].start : group[-1][0].end],
            header=header if position else "",
        )
        for position, group in enumerate(groups)
    ]
