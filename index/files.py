"""Files newsbot keeps beside its store: safe names, and small files written so that readers in
other processes see the old one or the new one whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def safe_name(name: str) -> str:  # a collection's name, in a file name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@contextlib.contextmanager
def written_in_place(target: Path) -> Iterator[Path]:
    """A fresh path beside `target` to write to, renamed over it once the block is done (mode
    0644: these files hold no secrets); removed if the block fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def write_atomically(path: Path, data: bytes) -> None:
    with written_in_place(path) as temporary:
        temporary.write_bytes(data)
