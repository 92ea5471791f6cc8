"""Taking turns: ingest, reindex and reset runs on one store write one at a time: a file lock for
an embedded store, a lease record for a Chroma server (docs/ingesting.md, "Taking turns")."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LEASE_ID = "ingest"
LEASE_SECONDS = 30.0  # time to live of a lease nobody renews
LEASE_POLL = 0.5  # seconds between tries while another host holds it


def lock_path(data_dir: Path, store_key: str) -> Path:
    digest = hashlib.sha1(store_key.encode("utf-8")).hexdigest()[:12]
    return data_dir / "locks" / f"ingest-{digest}.lock"


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path`; `on_wait` is called before waiting for a holder."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        held = lock.acquire(timeout=0)
    except Timeout:
        log.info("another ingest is writing to this store; waiting for it (%s)", path)
        if on_wait:
            on_wait()
        started = time.monotonic()
        held = lock.acquire()
        log.info("lock acquired after %.1fs", time.monotonic() - started)
    with held:  # released at the end
        yield


class LeaseLost(Exception):
    """This process no longer holds the store's lease."""


class ChromaLease:
    def __init__(self, collection: Any, seconds: float = LEASE_SECONDS) -> None:
        self._collection = collection
        self.seconds = seconds
        self.token = uuid.uuid4().hex
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _record(self) -> dict[str, Any] | None:
        result = self._collection.get(ids=[LEASE_ID], include=["metadatas"])
        return dict(result["metadatas"][0]) if result["ids"] else None

    def _try(self) -> dict[str, Any] | None:
        """Take the lease if it is free or expired; None when taken, else the holder's record."""
        lease = {"token": self.token, "owner": self.owner, "expires": time.time() + self.seconds}
        self._collection.add(ids=[LEASE_ID], embeddings=[[1.0]], metadatas=[lease])
        record = self._record()
        if record is not None and record.get("token") == self.token:
            return None
        if record is not None and float(record.get("expires", 0)) < time.time():
            log.info("the ingest lease of %s expired; taking it over", record.get("owner"))
            self._collection.delete(ids=[LEASE_ID], where={"token": str(record["token"])})
            return self._try()
        return record or {}

    def acquire(self, on_wait: Callable[[], None] | None = None) -> None:
        holder = self._try()
        if holder is not None:
            log.info("%s is writing to this store; waiting for it", holder.get("owner", "a host"))
            if on_wait:
                on_wait()
            while holder is not None:
                time.sleep(LEASE_POLL)
                holder = self._try()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="newsbot-lease", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.check()
                self._collection.update(
                    ids=[LEASE_ID], metadatas=[{"expires": time.time() + self.seconds}]
                )
            except Exception as exc:  # the next check (before a commit) says it is lost
                log.warning("could not renew the ingest lease: %s", exc)

    def check(self) -> None:
        record = self._record()
        if record is None or record.get("token") != self.token:
            raise LeaseLost(f"lease taken over by {(record or {}).get('owner', 'nobody')}")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with contextlib.suppress(Exception):
            self._collection.delete(ids=[LEASE_ID], where={"token": self.token})

    @contextlib.contextmanager
    def held(self, on_wait: Callable[[], None] | None = None) -> Iterator[ChromaLease]:
        self.acquire(on_wait)
        try:
            yield self
        finally:
            self.release()
