"""A per-store file lock: concurrent `newsbot ingest` runs on one store take turns.

Chroma's upserts are safe on their own, but two runs writing the same article could each delete
what the other just wrote. flock is released by the kernel when a process dies, so a killed run
never leaves the store locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from index.config import StoreConfig as Settings

log = logging.getLogger(__name__)


def lock_path(data_dir: Path, store_key: str) -> Path:
    digest = hashlib.sha1(store_key.encode("utf-8")).hexdigest()[:12]
    return data_dir / "locks" / f"ingest-{digest}.lock"


def store_lock_path(settings: Settings) -> Path:
    """The lock that ingest, reindex and reset hold on the settings' collection of their store
    (a folder or a server URL)."""
    where = settings.chroma_url or str(settings.store_dir)
    return lock_path(settings.data_dir, f"{where}|{settings.collection}")


def held(path: Path) -> bool:
    """Whether some process (this one included) holds the lock on `path` now. A holder that
    died has released it: the kernel drops a dead process's flocks."""
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


@contextmanager
def exclusive(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path`, waiting for the current holder if there is one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another ingest is writing to this store; waiting for it (%s)", path)
            if on_wait:
                on_wait()
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            log.info("lock acquired after %.1fs", time.monotonic() - started)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
