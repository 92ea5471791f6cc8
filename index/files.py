"""Files newsbot keeps beside its store: safe names, and small files written so that readers in
other processes see the old one or the new one whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def safe_name(name: str) -> str:
    """`name` (a collection's) as part of a file name: letters, digits, '-', '_' and '.' kept,
    anything else made '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a fresh temporary file beside `path`, flush it to disk, then rename it
    over `path` (mode 0644: the files written this way hold no secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
