"""People's votes on answers, one JSON line each in <data_dir>/feedback.jsonl. A vote records a
recent answer's question, text and citations, else (e.g. after a restart) what its message shows."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from bot.models import Answer

log = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback.jsonl"
MEMORY_SIZE = 1000  # answers kept so a vote can record the citations it voted on


class FeedbackLog:
    def __init__(self, path: Path, memory: int = MEMORY_SIZE) -> None:
        self.path = path
        self.memory = memory
        self._answers: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, where: tuple[str, str], answer: Answer) -> None:
        """Keep what a vote on the answer posted at `where` (channel, ts) will record."""
        record = {
            "question": answer.question,
            "answer": answer.text,
            "refused": answer.refused,
            "citations": [
                {"n": c.n, "article_id": c.article_id, "title": c.title, "url": c.url,
                 "quote": c.quote}
                for c in answer.citations
            ],
        }  # fmt: skip
        with self._lock:
            self._answers[where] = record
            while len(self._answers) > self.memory:
                self._answers.popitem(last=False)

    def vote(
        self, where: tuple[str, str], vote: str, user: str, shown: dict[str, Any]
    ) -> dict[str, Any]:
        """Append one vote and return it; `shown` is what the message shows (if not remembered)."""
        channel, ts = where
        with self._lock:
            known = self._answers.get(where, shown)
            record = {**known, "vote": vote, "user": user, "channel": channel, "ts": ts}
            record["voted_at"] = time.time()
            line = json.dumps(record, ensure_ascii=False) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        log.info("feedback %s on %s/%s", vote, channel, ts)
        return record
