"""The Chroma store: chunk vectors plus a small article registry beside them.

Two collections: `<name>` holds one record per chunk (vector, verbatim text, article metadata);
`<name>-articles` holds one record per article (fingerprint, chunk count, duplicate_of), written
only after the article's chunks are in place. That order is what makes ingest crash-safe: an
article is "done" only when its registry record says so, and redoing a half-done article
overwrites the same deterministic chunk ids.

An embedded store also keeps a *version file* beside Chroma's own files (`newsbot-<name>.json`):
the chunk collection's id, generation, chunk count and metadata, as of the last completed write.
It lets a process that only asks (`newsbot ask`) check that the on-disk retrieval index is
current without importing chromadb (0.45 s of a 1 s start), so the client is opened only when
something needs it. Before any change to the store the file is overwritten with a "writing"
mark, and only `publish()`, which the writers call when they finish, holding the store's ingest
lock, records a version again: while a write is under way (or after one stopped half-way) new
readers ask Chroma, and readers that already hold an index keep it (bot/retrieve.py). A Chroma
server has no such file (other machines may write to it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlparse

from index.errors import StoreError
from index.files import safe_name, write_atomically
from index.model import EmbeddingIdentity

if TYPE_CHECKING:
    import numpy as np

    from index.config import StoreConfig as Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
# Chroma caps one write at its max batch size (5,461 on SQLite); stay well below it.
WRITE_BATCH = 1000
# Registry records need a vector; one constant dimension keeps Chroma's index happy.
_REGISTRY_VECTOR = [1.0]
VERSION_FILE_FORMAT = 1


class StoreVersion(NamedTuple):
    collection_id: str
    generation: int  # bumped by every completed batch of writes
    settled: bool  # no batch of writes is under way or was left half-done


@dataclass(frozen=True)
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float = 0.0  # cosine similarity for dense hits
    vector: Any = None  # the stored embedding, when asked for (iter_chunks/get_chunks vectors=True)


def make_client(settings: Settings) -> Any:
    """A Chroma client: embedded in settings.store_dir, or a server when chroma_url is set."""
    import chromadb

    chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=True)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return _with_retries(
            lambda: chromadb.HttpClient(
                host=url.hostname or "localhost",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            ),
            where=settings.chroma_url,
            retries=settings.store_retries,
        )
    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.store_dir), settings=chroma_settings)
    except OSError as exc:
        raise StoreError(
            f"cannot use {settings.store_dir} as the store: {exc.strerror or exc}",
            hint="set NEWSBOT_DATA_DIR (or --data-dir) to a folder you can write to",
        ) from exc


def _is_connection_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        word in text
        for word in ("connect", "timeout", "timed out", "unavailable", "refused", "reset")
    )


def _with_retries(call: Callable[[], T], *, where: str, retries: int) -> T:
    """Run a Chroma call; retry connection failures with exponential backoff, then explain."""
    for attempt in range(retries + 1):
        try:
            return call()
        except StoreError:
            raise
        except Exception as exc:
            if not _is_connection_error(exc):
                raise StoreError(f"Chroma at {where} failed: {exc}") from exc
            if attempt == retries:
                raise StoreError(
                    f"cannot reach the Chroma server at {where} ({type(exc).__name__})",
                    hint="start it with `chroma run --path DIR --port PORT`, "
                    "or unset NEWSBOT_CHROMA_URL to use the embedded store",
                ) from exc
            delay = 0.25 * 2**attempt
            log.warning("Chroma at %s unreachable, retrying in %.2fs", where, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Store:
    """Chunks and articles in Chroma. Takes a ready client (tests pass real local ones), or a
    `connect` function that makes one on first use (under the `opening` lock, if given)."""

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        where: str = "embedded store",
        retries: int = 0,
        connect: Callable[[], Any] | None = None,
        opening: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        version_file: Path | None = None,
        writer_lock: Path | None = None,
    ) -> None:
        self._client = client
        self._connect = connect
        self._opening = opening
        self.name = name
        self.where = where
        self._retries = retries
        self.version_file = version_file  # None: no version file (a Chroma server)
        self._writer_lock = writer_lock  # the ingest lock a writer holds (index/lock.py)
        self._collections: tuple[Any, Any] | None = None
        if client is not None:
            self._opened()

    def _opened(self) -> tuple[Any, Any]:
        """The chunk and article collections, connecting and creating them on first use."""
        if self._collections is None:
            with self._opening():
                if self._client is None:
                    assert self._connect is not None
                    self._client = self._connect()
                self._collections = self._open_collections()
        return self._collections

    def _open_collections(self) -> tuple[Any, Any]:
        chunks = self._call(
            self._client.get_or_create_collection,
            self.name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        articles = self._call(
            self._client.get_or_create_collection, f"{self.name}-articles", embedding_function=None
        )
        return chunks, articles

    @property
    def client(self) -> Any:
        """The Chroma client, made (chromadb imported, collections opened) on first use."""
        self._opened()
        return self._client

    @property
    def _chunks(self) -> Any:
        return self._opened()[0]

    @property
    def _articles(self) -> Any:
        return self._opened()[1]

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """The store the settings name. Nothing is opened yet: the client is made on first use."""
        where = settings.chroma_url or str(settings.store_dir)
        if settings.chroma_url:
            return cls(
                None,
                settings.collection,
                where=where,
                retries=settings.store_retries,
                connect=lambda: make_client(settings),
            )
        from index.lock import exclusive, lock_path, store_lock_path

        def opening() -> contextlib.AbstractContextManager[Any]:
            # Two processes creating one embedded store at once race in Chroma's schema set-up
            # ("table collections already exists"); they take turns here.
            try:
                lock = lock_path(settings.data_dir, f"open|{where}")
                lock.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot use {settings.data_dir} as the data folder: {exc.strerror or exc}",
                    hint="set NEWSBOT_DATA_DIR (or --data-dir) to a folder you can write to",
                ) from exc
            return exclusive(lock)

        return cls(
            None,
            settings.collection,
            where=where,
            connect=lambda: make_client(settings),
            opening=opening,
            version_file=settings.store_dir / f"newsbot-{safe_name(settings.collection)}.json",
            writer_lock=store_lock_path(settings),
        )

    def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return _with_retries(
            lambda: function(*args, **kwargs), where=self.where, retries=self._retries
        )

    # -- the version file ----------------------------------------------------------------------
    def _read_version_file(self) -> dict[str, Any] | None:
        if self.version_file is None:
            return None
        try:
            recorded = json.loads(self.version_file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.debug("version file %s unreadable: %s", self.version_file, exc)
            return None
        if (
            not isinstance(recorded, dict)
            or recorded.get("format") != VERSION_FILE_FORMAT
            or recorded.get("collection") != self.name
        ):
            return None
        return recorded

    def _recorded(self) -> dict[str, Any] | None:
        """The settled version the file records, or None (no file, a write under way, or
        unreadable)."""
        recorded = self._read_version_file()
        fields = ("collection_id", "generation", "chunks", "metadata")
        if recorded is None or recorded.get("writing") or any(f not in recorded for f in fields):
            return None
        return recorded

    def _marked_writing(self) -> bool:
        recorded = self._read_version_file()
        return bool(recorded and recorded.get("writing"))

    def _writer_alive(self) -> bool:
        from index.lock import held

        return self._writer_lock is None or held(self._writer_lock)

    def write_under_way(self) -> bool:
        """A writer has begun changing the store, has not published yet, and still runs (holds
        the ingest lock). The mark of a writer that died (killed half-way, the machine went down)
        does not count: what it wrote is what the store holds until the next ingest."""
        return self._marked_writing() and self._writer_alive()

    def stopped_half_way(self) -> bool:
        """The last ingest, reindex or reset stopped before it finished (killed, or failed in the
        middle of a batch): readers ask Chroma until the next one completes."""
        return self._marked_writing() and not self._writer_alive()

    def _write_version_file(self, recorded: dict[str, Any]) -> None:
        assert self.version_file is not None
        recorded = {"format": VERSION_FILE_FORMAT, "collection": self.name, **recorded}
        write_atomically(self.version_file, json.dumps(recorded, indent=1).encode())

    def _unpublish(self) -> None:
        """Before any change: the file says a write is under way until `publish`."""
        if self.version_file is None or self._marked_writing():
            return
        try:
            self._write_version_file({"writing": True})
        except OSError as exc:
            raise StoreError(
                f"cannot mark {self.version_file} before writing to the store: "
                f"{exc.strerror or exc}",
                hint="check the permissions of the store folder",
            ) from exc

    def publish(self) -> None:
        """Record the store's version for readers that do not open Chroma. Call it when a run
        of writes has finished, holding the ingest lock (bot/core.py does)."""
        if self.version_file is None:
            return
        collection = self._call(self.client.get_collection, self.name)
        metadata = dict(collection.metadata or {})
        if metadata.get("writing") or metadata.get("reindexing"):
            return  # a write stopped half-way: readers keep asking Chroma
        try:
            self._write_version_file(
                {
                    "collection_id": str(collection.id),
                    "generation": int(metadata.get("generation", 0)),
                    "chunks": self.count(chroma=True),
                    "metadata": metadata,
                }
            )
        except OSError as exc:  # readers ask Chroma instead: slower, still right
            log.info("cannot write the version file %s: %s", self.version_file, exc)

    # -- identity ------------------------------------------------------------------------------
    @property
    def identity(self) -> EmbeddingIdentity | None:
        meta = self._collection_meta()
        if "embedding_model" not in meta:
            return None
        return EmbeddingIdentity(
            model=str(meta["embedding_model"]),
            dimension=int(meta["embedding_dimension"]),
            backend=str(meta.get("embedding_backend", "torch")),
            precision=str(meta.get("embedding_precision", "fp32")),
        )

    def check_identity(self, identity: EmbeddingIdentity) -> None:
        """Refuse to mix vectors of different models or precisions in one collection.

        The torch and ONNX fp32 backends give the same vectors (cosine 1.0000), so they may
        share a collection; int8 vectors differ (cosine ~0.99) and may not.
        """
        meta = self._collection_meta()
        if meta.get("reindexing"):
            raise StoreError(
                f"collection {self.name!r} at {self.where} was being re-embedded when that run "
                "stopped; its vectors are mixed",
                hint="finish it with `newsbot reindex`",
            )
        stored = self.identity
        if stored is None:
            if self.count() == 0:
                self._set_meta(identity.to_metadata())
            return
        if (stored.model, stored.dimension, stored.precision) != (
            identity.model,
            identity.dimension,
            identity.precision,
        ):
            raise StoreError(
                f"collection {self.name!r} at {self.where} holds {stored.model} "
                f"({stored.precision}, {stored.dimension} dims) vectors, but the settings ask "
                f"for {identity.model} ({identity.precision}, {identity.dimension} dims)",
                hint="re-embed it with `newsbot reindex`, "
                "or set NEWSBOT_COLLECTION to another name",
            )

    def _collection_meta(self) -> dict[str, Any]:
        recorded = self._recorded()
        if recorded is not None:
            return dict(recorded["metadata"])
        return dict(self._call(self.client.get_collection, self.name).metadata or {})

    def _set_meta(self, updates: dict[str, Any]) -> None:
        self._unpublish()
        collection = self._call(self.client.get_collection, self.name)
        self._call(collection.modify, metadata={**(collection.metadata or {}), **updates})

    @property
    def version(self) -> StoreVersion:
        """The store's version, read in one call. The collection id is new after a reset, which
        starts the generation again from 0, so together they say whether a copy of the chunks
        (the in-memory index or its snapshot on disk) is still what the store holds. `settled`
        is False while a batch is being written, and stays False if its writer died half-way
        (until the next batch completes): no snapshot may be taken of, or trusted for, that.
        Read from the version file when there is one, without opening Chroma."""
        recorded = self._recorded()
        if recorded is not None:
            return StoreVersion(str(recorded["collection_id"]), int(recorded["generation"]), True)
        collection = self._call(self.client.get_collection, self.name)
        meta = collection.metadata or {}
        return StoreVersion(
            str(collection.id), int(meta.get("generation", 0)), not meta.get("writing", False)
        )

    def _bump_generation(self) -> None:
        generation = self._call(self.client.get_collection, self.name).metadata or {}
        self._set_meta({"generation": int(generation.get("generation", 0)) + 1, "writing": False})

    # -- articles ------------------------------------------------------------------------------
    def articles(self, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Registry records of those articles that are completely stored."""
        found: dict[str, dict[str, Any]] = {}
        for batch in _batches(list(dict.fromkeys(article_ids)), WRITE_BATCH):
            result = self._call(self._articles.get, ids=batch, include=["metadatas"])
            for article_id, meta in zip(result["ids"], result["metadatas"] or [], strict=False):
                found[article_id] = dict(meta or {})
        return found

    def articles_by_hash(self, content_hashes: Sequence[str]) -> dict[str, str]:
        """content hash -> id of the primary article stored with that body."""
        found: dict[str, str] = {}
        for batch in _batches(list(dict.fromkeys(content_hashes)), WRITE_BATCH):
            where = {"$and": [{"content_hash": {"$in": batch}}, {"duplicate_of": ""}]}
            result = self._call(self._articles.get, where=where, include=["metadatas"])
            for article_id, meta in zip(result["ids"], result["metadatas"] or [], strict=False):
                found[str((meta or {})["content_hash"])] = article_id
        return found

    def duplicates_of(self, article_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """primary article id -> registry records of the stored copies of its story, each with
        the copy's own id under "article_id"."""
        found: dict[str, list[dict[str, Any]]] = {}
        for batch in _batches(list(dict.fromkeys(article_ids)), WRITE_BATCH):
            where = {"duplicate_of": {"$in": batch}}
            result = self._call(self._articles.get, where=where, include=["metadatas"])
            for copy_id, meta in zip(result["ids"], result["metadatas"] or [], strict=False):
                record = {**(meta or {}), "article_id": copy_id}
                found.setdefault(str(record["duplicate_of"]), []).append(record)
        return found

    def put_articles(self, records: dict[str, dict[str, Any]]) -> None:
        self._unpublish()
        for batch in _batches(list(records), WRITE_BATCH):
            self._call(
                self._articles.upsert,
                ids=batch,
                embeddings=[_REGISTRY_VECTOR] * len(batch),
                metadatas=[records[article_id] for article_id in batch],
            )

    # -- chunks --------------------------------------------------------------------------------
    def upsert_chunks(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        self._unpublish()
        for start in range(0, len(ids), WRITE_BATCH):
            end = start + WRITE_BATCH
            self._call(
                self._chunks.upsert,
                ids=list(ids[start:end]),
                embeddings=vectors[start:end],
                documents=list(texts[start:end]),
                metadatas=list(metadatas[start:end]),
            )

    def update_vectors(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self._unpublish()
        for start in range(0, len(ids), WRITE_BATCH):
            end = start + WRITE_BATCH
            self._call(self._chunks.update, ids=list(ids[start:end]), embeddings=vectors[start:end])

    def set_identity(self, identity: EmbeddingIdentity | None, *, reindexing: bool) -> None:
        """Record the vectors' identity; `reindexing` marks a store half-way through a re-embed."""
        meta: dict[str, Any] = {"reindexing": reindexing}
        if identity is not None:
            meta.update(identity.to_metadata())
        self._set_meta(meta)

    def delete_chunks_from(self, article_id: str, first_position: int) -> None:
        """Delete the article's chunks at positions >= first_position (left over by an update)."""
        where = {"$and": [{"article_id": article_id}, {"position": {"$gte": first_position}}]}
        self._unpublish()
        self._call(self._chunks.delete, where=where)

    def update_chunk_metadata(self, article_id: str, updates: dict[str, Any]) -> list[str]:
        """Merge `updates` into the metadata of the article's chunks; returns their ids."""
        result = self._call(
            self._chunks.get, where={"article_id": article_id}, include=["metadatas"]
        )
        if not result["ids"]:
            return []
        metadatas = [{**(meta or {}), **updates} for meta in result["metadatas"] or []]
        self._unpublish()
        self._call(self._chunks.update, ids=result["ids"], metadatas=metadatas)
        return list(result["ids"])

    def writing(self) -> None:
        """Call before a batch of writes: marks the store unsettled until `written`."""
        self._set_meta({"writing": True})

    def written(self) -> None:
        """Call after a batch of writes: tells readers in this and other processes to refresh."""
        self._bump_generation()

    def query(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None = None
    ) -> list[StoredChunk]:
        if k <= 0:
            return []
        result = self._call(
            self._chunks.query,
            query_embeddings=[list(vector)],
            n_results=k,
            where=where or None,
            include=["documents", "metadatas", "distances"],
        )
        return [
            StoredChunk(id=i, text=doc or "", metadata=dict(meta or {}), score=1.0 - float(dist))
            for i, doc, meta, dist in zip(
                result["ids"][0],
                (result["documents"] or [[]])[0],
                (result["metadatas"] or [[]])[0],
                (result["distances"] or [[]])[0],
                strict=False,
            )
        ]

    def iter_chunks(self, page: int = 5000, *, vectors: bool = False) -> Iterable[StoredChunk]:
        """Every chunk (text and metadata; with its vector if asked), page by page."""
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        offset = 0
        while True:
            result = self._call(self._chunks.get, include=include, limit=page, offset=offset)
            if not result["ids"]:
                return
            yield from _stored(result, vectors)
            offset += len(result["ids"])

    def get_chunks(self, ids: Sequence[str], *, vectors: bool = False) -> list[StoredChunk]:
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        return list(_stored(self._call(self._chunks.get, ids=list(ids), include=include), vectors))

    def count(self, *, chroma: bool = False) -> int:
        """Chunks stored (from the version file if there is one, unless `chroma`)."""
        recorded = None if chroma else self._recorded()
        if recorded is not None:
            return int(recorded["chunks"])
        return int(self._call(self._chunks.count))

    def article_count(self) -> int:
        return int(self._call(self._articles.count))

    def stats(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "store": self.where,
            "collection": self.name,
            "articles": self.article_count(),
            "chunks": self.count(),
            "embedding": identity.to_metadata() if identity else None,
            "stopped_half_way": self.stopped_half_way(),
        }

    def reset(self) -> None:
        """Delete every chunk and article of this collection (the collection itself stays)."""
        self._unpublish()
        for name in (self.name, f"{self.name}-articles"):
            self._call(self.client.delete_collection, name)
        self._collections = self._open_collections()
        self.publish()


def _stored(result: Any, vectors: bool) -> Iterable[StoredChunk]:
    embeddings = result.get("embeddings") if vectors else None
    if embeddings is None:
        embeddings = [None] * len(result["ids"])
    for i, doc, meta, vector in zip(
        result["ids"],
        result["documents"] or [],
        result["metadatas"] or [],
        embeddings,
        strict=False,
    ):
        yield StoredChunk(id=i, text=doc or "", metadata=dict(meta or {}), vector=vector)


def _batches(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
