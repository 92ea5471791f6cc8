"""Rebuilding a vector index Chroma left half-saved (docs/store.md, "A damaged vector index"):
drop the index, let Chroma start an empty one, and write every record's vector again (read back
from the damaged files, or embedded again from the text Chroma's SQLite keeps)."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import sqlite3
import struct
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.article import StoredChunk
from index.errors import StoreError
from index.store import (
    _NO_VECTOR,
    REPAIRING,
    Store,
    _identity,
    _stored,
    half_written,
    is_damage,
    same_vectors,
    saved_rows,
    vector_segment,
)

if TYPE_CHECKING:
    from index.ingest import Ingestor

log = logging.getLogger(__name__)

PAGE = 512  # records read, embedded and written back at a time
CHANGED = "newsbot-changed.json"  # beside a damaged index: the records queued since its last save
# Chroma documents none of its files: what does not read as expected is left to it, or embedded.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, struct.error, pickle.PickleError)


def damaged(store: Store) -> list[str]:
    """The store's collections (chunks, log) whose vector index Chroma cannot load, or whose
    rebuild was cut short."""
    found = []
    folder = store.embedded_folder
    for collection in store.collections():
        if (collection.metadata or {}).get(REPAIRING) or (
            folder and half_written(folder, [collection.name], every_row=True)
        ):
            found.append(collection.name)
            continue
        try:
            # Chroma loads the index, and applies its unsaved records, before any read.
            collection.get(limit=1, include=[])
            collection.count()
        except Exception as exc:
            if not is_damage(exc):
                raise
            found.append(collection.name)
    return found


def repair(
    store: Store,
    ingestor_of: Callable[[], Ingestor],
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Rebuild the vector index of each of the store's damaged collections (hold the store's
    turn): the chunks' vectors embedded again from their stored texts by `ingestor_of()`'s embedder
    (called only then: it loads the model), which the collection records then; the log's are a
    constant. Returns the records written again, by collection."""
    rebuilt = {}
    for name in damaged(store):
        if name != store.name:
            rebuilt[name] = rebuild(store, name, lambda got: [_NO_VECTOR] * len(got), progress)
            continue
        ingestor = ingestor_of()
        mine, meta = ingestor.embedder.identity, _named(store, name).metadata or {}
        # Vectors read back from the damaged files are kept only if they are this model's:
        # not after a re-embed cut short, nor with another model or precision configured.
        read_back = same_vectors(_identity(meta), mine) and not meta.get("reindexing")
        recorded = {**mine.to_metadata(), "reindexing": False}
        rebuilt[name] = rebuild(store, name, ingestor.embed_stored, progress, read_back, recorded)
    return rebuilt


def rebuild(
    store: Store,
    name: str,
    vectors_of: Callable[[Sequence[StoredChunk]], Any],
    progress: Callable[[str, int], None] | None = None,
    read_back: bool = True,
    recorded: dict[str, Any] | None = None,
) -> int:
    """Drop collection `name`'s vector index and write every record's vector again: read back
    from the dropped index if `read_back`, else computed by `vectors_of` from the records. A
    rebuild cut short is marked (REPAIRING) until one ends, which also records `recorded` in
    the collection's metadata. Returns the number of records."""
    folder = store.embedded_folder
    if folder is None:
        raise StoreError(
            f"the vector index of collection {name!r} at {store.where} cannot be rebuilt from "
            "here: the Chroma server keeps its files",
            hint="stop the server, then run `newsbot repair --data-dir DIR` on its folder "
            "(DIR/chroma)",
        )
    dimension = _mark(store, name, {REPAIRING: True}).metadata.get("embedding_dimension")
    aside = _drop_index(store, folder, name)
    saved = _SavedVectors(aside, int(dimension)) if dimension and read_back else None
    log.info("rebuilding the vector index of collection %s in %s", name, folder)
    collection = _named(store, name)  # Chroma starts an empty index
    ids: list[str] = []
    while page := collection.get(include=[], limit=PAGE * 10, offset=len(ids))["ids"]:
        ids += page
    for start in range(0, len(ids), PAGE):
        records = _stored(
            collection.get(ids=ids[start : start + PAGE], include=["documents", "metadatas"]),
            vectors=False,
        )
        vectors = [saved.get(record.id) if saved is not None else None for record in records]
        missing = [record for record, found in zip(records, vectors, strict=True) if found is None]
        computed = iter(vectors_of(missing) if missing else [])
        collection.upsert(
            ids=[record.id for record in records],
            # one array: Chroma refuses a list that mixes lists and arrays
            embeddings=np.asarray(
                [next(computed) if vector is None else vector for vector in vectors], np.float32
            ),
            documents=[record.text for record in records],
            metadatas=[record.metadata or None for record in records],
        )
        if progress:
            progress(name, start + len(records))
    if saved is not None:
        log.info("%s: %d vectors read back from the damaged index", name, saved.used)
    shutil.rmtree(aside, ignore_errors=True)  # before the mark: a rebuild may still need it
    _mark(store, name, {REPAIRING: False, **(recorded or {})})
    return len(ids)


class _SavedVectors:
    """The vectors a damaged index still holds, by record id (which: docs/store.md, "A damaged
    vector index"). The id map is a pickle Chroma wrote into this store's own folder."""

    def __init__(self, aside: Path, dimension: int) -> None:
        self.used = 0
        self._rows: dict[str, int] = {}
        try:
            with (aside / "index_metadata.pickle").open("rb") as file:
                label_to_id = pickle.load(file)["label_to_id"]  # noqa: S301 (see above)
            changed = set(json.loads((aside / CHANGED).read_text(encoding="utf-8")))
            rows = saved_rows(aside)
            if rows is None or rows.vector.stop - rows.vector.start != 4 * dimension:
                raise ValueError("rows of another size, or missing")
        except UNREADABLE as exc:  # EOFError: the id map cut short
            log.info("no vectors read back from %s: %s", aside, exc)
            return
        self._data, self._vector = rows.data, rows.vector
        self._rows = {
            record_id: row
            for row, label in enumerate(rows.labels.tolist())
            if (record_id := label_to_id.get(label)) is not None and record_id not in changed
        }

    def get(self, record_id: str) -> np.ndarray | None:
        row = self._rows.get(record_id)
        if row is None:
            return None
        vector = self._data[row, self._vector].copy().view("<f4")
        if not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
            return None
        self.used += 1
        return vector


def _named(store: Store, name: str) -> Any:
    return next(collection for collection in store.collections() if collection.name == name)


def _mark(store: Store, name: str, updates: dict[str, Any]) -> Any:
    collection = _named(store, name)
    # Chroma's modify replaces the whole metadata (and cannot set it empty).
    collection.modify(metadata={**(collection.metadata or {}), **updates})
    return collection


def _drop_index(store: Store, folder: Path, name: str) -> Path:
    """Move the collection's index files aside (`<segment>-damaged`, with the ids of the records
    queued since their last save) and delete Chroma's mark of that save, Chroma closed: it starts
    an empty index (no Chroma call does so: docs/store.md). Returns that folder."""
    store.close()
    database = folder / "chroma.sqlite3"
    try:
        with closing(sqlite3.connect(database, timeout=30)) as db, db:
            segment, changed = vector_segment(db, name)
            db.execute("DELETE FROM max_seq_id WHERE segment_id = ?", (segment,))
    except (sqlite3.Error, ValueError) as exc:
        raise StoreError(f"cannot rebuild a vector index in {database}: {exc}") from exc
    index, aside = folder / segment, folder / f"{segment}-damaged"
    if aside.exists():
        shutil.rmtree(index, ignore_errors=True)
    elif index.exists():
        (index / CHANGED).write_text(json.dumps(sorted(set(changed))), encoding="utf-8")
        index.rename(aside)
    return aside
