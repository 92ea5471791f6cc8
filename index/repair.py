"""Rebuilding a vector index Chroma left half-saved (docs/store.md, "A damaged vector index").

Chroma 1.5.9 saves a collection's HNSW index in place: a process killed in the middle of a save
leaves files no later process can load, and every read of that collection fails, documents and
metadata included. What the index held survives elsewhere: each record's document and metadata in
Chroma's SQLite (its metadata segment), so the chunks' vectors can be embedded again from their
texts, and the log's are a constant. A repair drops the index, lets Chroma start an empty one, and
writes every record's vector again.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from index.errors import StoreError
from index.store import _NO_VECTOR, REPAIRING, Store, StoredChunk, _stored, is_damage

log = logging.getLogger(__name__)

PAGE = 512  # records read, embedded and written back at a time


def damaged(store: Store) -> list[str]:
    """The store's collections (chunks, log) whose vector index Chroma cannot load, or whose
    rebuild was cut short."""
    found = []
    for collection in store.collections():
        if (collection.metadata or {}).get(REPAIRING):
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
    embed: Callable[[Sequence[StoredChunk]], Any],
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Rebuild the vector index of each of the store's damaged collections (hold the store's
    turn): the chunks' vectors from `embed` (of their stored texts), the log's a constant.
    Returns the records written again, by collection."""

    def constant(records: Sequence[StoredChunk]) -> list[list[float]]:
        return [_NO_VECTOR] * len(records)

    return {
        name: rebuild(store, name, embed if name == store.name else constant, progress)
        for name in damaged(store)
    }


def rebuild(
    store: Store,
    name: str,
    vectors_of: Callable[[Sequence[StoredChunk]], Any],
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Drop collection `name`'s vector index and write every record's vector again, computed by
    `vectors_of` from the records (their texts and metadata). A rebuild cut short is marked
    (REPAIRING) until one ends. Returns the number of records."""
    folder = store.embedded_folder
    if folder is None:
        raise StoreError(
            f"the vector index of collection {name!r} at {store.where} cannot be rebuilt from "
            "here: the Chroma server keeps its files",
            hint="stop the server, then run `newsbot repair --data-dir DIR` on its folder "
            "(DIR/chroma)",
        )
    collection = _named(store, name)
    # Chroma's modify replaces the whole metadata (and cannot set it empty).
    collection.modify(metadata={**(collection.metadata or {}), REPAIRING: True})
    _drop_index(store, folder, str(collection.id))
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
        collection.upsert(
            ids=[record.id for record in records],
            embeddings=vectors_of(records),
            documents=[record.text for record in records],
            metadatas=[record.metadata or None for record in records],
        )
        if progress:
            progress(name, start + len(records))
    collection.modify(metadata={**(collection.metadata or {}), REPAIRING: False})
    return len(ids)


def _named(store: Store, name: str) -> Any:
    return next(collection for collection in store.collections() if collection.name == name)


def _drop_index(store: Store, folder: Path, collection_id: str) -> None:
    """Delete the collection's HNSW files and Chroma's mark of the records saved in them, so that
    Chroma starts an empty index and applies the records still in its queue. Chroma has no call
    that does this (deleting or resetting a collection deletes its records too), so it is done on
    its files, with this process's Chroma closed: it holds the files open and caches the index."""
    store.close()
    database = folder / "chroma.sqlite3"
    try:
        db = sqlite3.connect(database, timeout=30)
        try:
            with db:
                row = db.execute(
                    "SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'",
                    (collection_id,),
                ).fetchone()
                if row is None:
                    raise StoreError(f"no vector index of collection {collection_id} in {database}")
                db.execute("DELETE FROM max_seq_id WHERE segment_id = ?", (str(row[0]),))
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot rebuild a vector index in {database}: {exc}") from exc
    shutil.rmtree(folder / str(row[0]), ignore_errors=True)
