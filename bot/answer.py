"""Answerers. The default is extractive: it answers with the article sentences that answer the
question, each cited; nothing is generated, so nothing can be invented."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.models import Citation
from bot.retrieve import Passage
from index.chunk import split_sentences

_TOKEN = re.compile(r"[A-Za-z0-9]+")
_STOP = frozenset(
    "a an the of to in on at for by with and or but is are was were be been what who whom which "
    "when where why how did do does say said about from that this these those it its as into than "
    "then there their they them he she his her we our you your i me my not no yes".split()
)


def content_terms(text: str) -> set[str]:
    return {t for t in (w.lower() for w in _TOKEN.findall(text)) if t not in _STOP}


@dataclass(frozen=True)
class Candidate:
    passage: Passage
    start: int  # offsets into the article body
    end: int
    text: str
    score: float


def candidate_sentences(question: str, passages: Sequence[Passage]) -> list[Candidate]:
    terms = content_terms(question)
    candidates = []
    for passage in passages:
        for span in split_sentences(passage.text):
            text = passage.text[span.start : span.end]
            overlap = len(terms & content_terms(text)) / (len(terms) or 1)
            candidates.append(
                Candidate(
                    passage,
                    passage.start + span.start,
                    passage.start + span.end,
                    text,
                    score=overlap + 0.1 * passage.score,
                )
            )
    return sorted(candidates, key=lambda c: c.score, reverse=True)


def citation_for(n: int, candidate: Candidate) -> Citation:
    meta = candidate.passage.metadata
    published = meta.get("published_at")
    return Citation(
        n=n,
        article_id=str(meta.get("article_id", "")),
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        url=str(meta.get("url", "")),
        published_at=datetime.fromisoformat(published) if published else None,
        quote=candidate.text,
        start=candidate.start,
        end=candidate.end,
        score=round(candidate.score, 4),
        passage=candidate.passage.text,
        sources=tuple(meta.get("sources") or ()),
    )


NOT_FOUND_PREFIX = "The articles don't say."


def extractive_answer(
    question: str, passages: Sequence[Passage], *, max_sentences: int, threshold: float
) -> tuple[str, list[Citation], bool]:
    """(text, citations, refused): the best sentences in article order, each with its [n]."""
    candidates = candidate_sentences(question, passages)
    if not candidates or candidates[0].score < threshold:
        closest = [citation_for(n, c) for n, c in enumerate(candidates[:2], start=1)]
        text = NOT_FOUND_PREFIX
        if closest:
            text += " The closest passages are below."
        return text, closest, True
    best = candidates[:max_sentences]
    best.sort(key=lambda c: (c.passage.article_id, c.start))
    citations = [citation_for(n, c) for n, c in enumerate(best, start=1)]
    text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return text, citations, False
