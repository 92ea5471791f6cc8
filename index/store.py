"""The store: chunks and their vectors in Chroma (the one source of truth), the lexical index and
article registry beside it (index/lexical.py), kept in step through the store's log, a
`<name>-log` collection with one entry per committed batch. The commit order, and why a reader
never sees half an article: docs/store.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from index.errors import StoreError
from index.files import safe_name
from index.lexical import Analyse, ChunkDoc, LexicalIndex
from index.model import EmbeddingIdentity
from index.text import ANALYSER_VERSION

if TYPE_CHECKING:
    import numpy as np

    from index.config import StoreConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
# Chroma caps one write at its max batch size (5,461 on SQLite); stay well below it.
WRITE_BATCH = 1000
# Up to this many ids, or this share of the store, Store.nearest ranks exactly (docs/store.md).
EXACT_AMONG = 1000
EXACT_SHARE = 0.005
EXACT_PAGE = 500  # vectors read at a time: a 1M store's 0.5% is 5,000 (~60 MB as Python lists)
# Log entries read and applied per lexical commit while catching up.
LOG_PAGE = 50
# Words of a failure to reach a Chroma server (retried), in its exception's name or message.
CONNECTION_WORDS = ("connect", "timeout", "timed out", "unavailable", "refused", "reset")
# Records that are not chunks need a vector; one constant dimension keeps Chroma's index happy.
_NO_VECTOR = [1.0]
# Chroma keeps the records written to a collection since its vector index was last saved in its
# own queue, and every new process replays them all (~0.5 ms a record at 10k chunks, ~1.4 ms at
# 100k). A process saves the index once the records it has applied since its last save, those it
# replayed included, reach the collection's `sync_threshold` (1000 by default), and a process
# loads that threshold with the index. The log's and the lease's index (one dimension, one record
# a commit) is saved at every write: saving an index this small costs nothing that grows with the
# store, and the log's entries are 5.6 MB of JSON at 100k chunks. The chunks' threshold is the
# settings' `vector_save_every` in an embedded store (docs/store.md, "Chroma's replay").
_SMALL_INDEX = {"hnsw": {"sync_threshold": 1}}


@dataclass(frozen=True)
class StoredChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    vector: Any = None  # the stored embedding, when asked for (iter_chunks/get_chunks vectors=True)


def make_client(settings: StoreConfig) -> Any:
    """A Chroma client: embedded in settings.store_dir, or a server when chroma_url is set."""
    import chromadb

    chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=True)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if url.scheme != "https":
            # Plain http has no certificate to check; left unset, httpx loads certifi's CA
            # bundle into an SSL context for each of the client's two HTTP sessions (0.03-0.06 s
            # of every new process: docs/benchmarks.md, "Cold start").
            chroma_settings.chroma_server_ssl_verify = False
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


def lexical_folder(data_dir: Path, where: str, collection: str) -> Path:
    """Where a host keeps its lexical index of the collection at `where` (a Chroma folder or
    server URL). The index holds analysed terms: another analyser (index/text.py) gets a new
    index, built from the log."""
    identity = f"{where}|{collection}|analyser {ANALYSER_VERSION}"
    key = hashlib.sha1(identity.encode()).hexdigest()[:12]
    return data_dir / "lexical" / f"{safe_name(collection)}-{key}"


def _with_retries(call: Callable[[], T], *, where: str, retries: int) -> T:
    """Run a Chroma call; retry connection failures with exponential backoff, then explain."""
    for attempt in range(retries + 1):
        try:
            return call()
        except StoreError:
            raise
        except Exception as exc:
            text = f"{type(exc).__name__} {exc}".lower()
            if not any(word in text for word in CONNECTION_WORDS):
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
    """Chunks in Chroma and the lexical index beside them. `connect` makes the Chroma client on
    first use (under `opening`)."""

    def __init__(
        self,
        name: str,
        *,
        lexical: LexicalIndex,
        connect: Callable[[], Any],
        where: str = "embedded store",
        retries: int = 0,
        opening: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        turn_lock: Path | None = None,
        save_every: int | None = None,
    ) -> None:
        self._client: Any = None
        self._connect = connect
        self._opening = opening
        self.name = name
        self.where = where
        self.lexical = lexical
        self._retries = retries
        self._turn_lock = turn_lock  # None: a Chroma server, whose writers take turns by lease
        self._save_every = save_every  # the chunks' sync_threshold; None: left as it is (a server)
        self._lease: Any = None  # the ChromaLease this process holds while it writes
        self._holding = False  # this Store holds the store's turn
        self._collections: tuple[Any, Any] | None = None
        self._checked_at = float("-inf")
        self._refreshing = threading.Lock()

    def _opened(self) -> tuple[Any, Any]:
        if self._collections is None:
            with self._opening():
                if self._client is None:
                    self._client = self._connect()
                self._collections = self._open_collections()
        return self._collections

    def _open_collections(self) -> tuple[Any, Any]:
        hnsw: dict[str, Any] = {"space": "cosine"}
        if self._save_every:
            hnsw["sync_threshold"] = self._save_every
        chunks = self._call(
            self._client.get_or_create_collection,
            self.name,
            embedding_function=None,
            configuration={"hnsw": hnsw},
        )
        return chunks, self._log_collection()

    def _log_collection(self) -> Any:
        return self._call(
            self._client.get_or_create_collection,
            f"{self.name}-log",
            embedding_function=None,
            configuration=_SMALL_INDEX,
        )

    @property
    def client(self) -> Any:
        self._opened()
        return self._client

    @property
    def _chunks(self) -> Any:
        return self._opened()[0]

    @property
    def _log(self) -> Any:
        return self._opened()[1]

    @classmethod
    def open(cls, settings: StoreConfig, analyse: Analyse) -> Store:
        """The store the settings name; `analyse` makes a text's lexical index terms. Nothing is
        opened yet: the client is made on first use."""
        from index.lock import exclusive, lock_path

        where = settings.chroma_url or str(settings.store_dir)
        lexical = LexicalIndex(
            lexical_folder(settings.data_dir, where, settings.collection), analyse
        )

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

        server = bool(settings.chroma_url)  # a server's writers take turns by lease, not by file
        turn_lock = lock_path(settings.data_dir, f"{where}|{settings.collection}")
        return cls(
            settings.collection,
            lexical=lexical,
            where=where,
            retries=settings.store_retries if server else 0,
            connect=lambda: make_client(settings),
            opening=contextlib.nullcontext if server else opening,
            turn_lock=None if server else turn_lock,
            # A server is one long process: it replays once, when it starts.
            save_every=None if server else settings.vector_save_every,
        )

    def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return _with_retries(
            lambda: function(*args, **kwargs), where=self.where, retries=self._retries
        )

    # -- taking turns --------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """This process's turn to write (index/lock.py): a file lock for an embedded store, a
        lease in the server for a Chroma server. Waits for the current writer, calling
        `on_wait` first. Taken again while held (by this Store), it is held already."""
        from index.lock import ChromaLease, exclusive

        if self._holding:
            yield
            return
        if self._turn_lock is not None:
            turn: contextlib.AbstractContextManager[Any] = exclusive(self._turn_lock, on_wait)
        else:
            leases = self._call(
                self.client.get_or_create_collection,
                f"{self.name}-lease",
                embedding_function=None,
                configuration=_SMALL_INDEX,
            )
            turn = ChromaLease(leases).held(on_wait)
        with turn as lease:
            self._lease, self._holding = lease, True
            try:
                yield
            finally:
                self._lease, self._holding = None, False

    # -- keeping the lexical index in step -----------------------------------------------------
    def refresh(self, max_age: float = 0.0) -> None:
        """Apply the log entries the lexical index lacks (written by other processes or hosts),
        unless this was checked less than `max_age` seconds ago. Costs one small Chroma read
        when there is nothing new."""
        if time.monotonic() - self._checked_at < max_age:
            return
        with self._refreshing:
            if time.monotonic() - self._checked_at < max_age:
                return
            self._catch_up()
            self._checked_at = time.monotonic()

    def _catch_up(self) -> None:
        self._opened()
        log_collection = self._log_collection()
        log_id = str(log_collection.id)
        if self._collections is not None and str(self._collections[1].id) != log_id:
            self._collections = None  # another process reset the store: open the new ones
        if self._holding:  # before this writer's first write loads the chunks' index
            self._keep_thresholds()
        self.lexical.reload()
        applied_log, applied = self.lexical.state()
        if applied_log == log_id and not self._entries(log_collection, applied, 1):
            return
        if applied_log != log_id and not self._entries(log_collection, 0, 1):
            self._migrate(log_collection)
        while True:
            with self.lexical.writer() as writer:
                applied_log, applied = self.lexical.state()
                if applied_log != log_id:
                    log.info("building the lexical index of %s from the store", self.where)
                    writer.clear()
                    applied = 0
                entries = self._entries(log_collection, applied, LOG_PAGE)
                for seq, entry in entries:
                    self._apply(writer, entry)
                    applied = seq
                writer.set_state(log_id, applied)
            if len(entries) < LOG_PAGE:
                return

    def _keep_thresholds(self) -> None:
        """Give a store made before _SMALL_INDEX, or with another `vector_save_every`, the save
        thresholds above. A process keeps the threshold it loaded an index with: a writer sets
        them when it first catches up in its turn (Bot.ingest does before writing anything)."""
        wanted = [(self._log, 1)]
        if self._save_every:
            wanted.append((self._chunks, self._save_every))
        for collection, every in wanted:
            if (collection.configuration_json.get("hnsw") or {}).get("sync_threshold") != every:
                self._call(collection.modify, configuration={"hnsw": {"sync_threshold": every}})

    def _entries(self, log_collection: Any, after: int, limit: int) -> list[tuple[int, Any]]:
        """The log entries numbered after `after` (at most `limit`, in order, no gap)."""
        result = self._call(
            log_collection.get,
            where={"$and": [{"seq": {"$gt": after}}, {"seq": {"$lte": after + limit}}]},
            include=["documents", "metadatas"],
        )
        found = {
            int((meta or {})["seq"]): json.loads(document or "{}")
            for meta, document in zip(
                result["metadatas"] or [], result["documents"] or [], strict=False
            )
        }
        entries = []
        while after + 1 in found:
            after += 1
            entries.append((after, found[after]))
        return entries

    def _apply(self, writer: Any, entry: dict[str, Any], chunks: Sequence[ChunkDoc] = ()) -> None:
        """Apply one log entry to the lexical index; its chunks' texts come from Chroma unless
        given (the writer that just wrote them has them)."""
        known = {chunk.id for chunk in chunks}
        missing = [chunk_id for chunk_id in entry.get("chunks", []) if chunk_id not in known]
        writer.remove_chunks(entry.get("removed", []))
        writer.put_chunks(chunks)
        for start in range(0, len(missing), WRITE_BATCH):
            writer.put_chunks(self.get_chunks(missing[start : start + WRITE_BATCH]))
        writer.put_articles(entry.get("records", {}))

    def commit(
        self,
        records: dict[str, dict[str, Any]],
        chunks: Sequence[ChunkDoc] = (),
        changed: Sequence[str] = (),
        removed: Sequence[str] = (),
    ) -> int:
        """Commit a batch whose chunks are in Chroma already (steps 2 and 3 in docs/store.md),
        holding the store's turn: the registry `records`, the `chunks` written (with their
        texts), the ids of chunks `changed` in place and of those `removed`. Returns the number
        of its log entry."""
        self.refresh()
        log_id, seq = self.lexical.state()
        seq += 1
        entry = {
            "records": records,
            "chunks": [*(chunk.id for chunk in chunks), *changed],
            "removed": list(removed),
        }
        token = uuid.uuid4().hex
        entry_id = f"{seq:012d}"
        if self._lease is not None:
            from index.lock import LeaseLost

            try:
                self._lease.check()
            except LeaseLost as exc:
                raise StoreError(
                    f"this ingest lost its turn to write to {self.where}: {exc}",
                    hint="run the ingest again: it redoes what was not recorded",
                ) from exc
        self._call(
            self._log.add,
            ids=[entry_id],
            embeddings=[_NO_VECTOR],
            metadatas=[{"seq": seq, "token": token}],
            documents=[json.dumps(entry)],
        )
        stored = self._call(self._log.get, ids=[entry_id], include=["metadatas"])
        if not stored["ids"] or (stored["metadatas"][0] or {}).get("token") != token:
            raise StoreError(
                f"another process committed a write to {self.where} (collection {self.name}) "
                "while this one held its turn; this batch was not recorded",
                hint="run the ingest again: it redoes what was not recorded",
            )
        with self.lexical.writer() as writer:
            if self.lexical.state() == (log_id, seq - 1):  # else a reader applied it already
                self._apply(writer, entry, chunks)
                writer.set_state(log_id, seq)
        self._checked_at = time.monotonic()
        return seq

    def _migrate(self, log_collection: Any) -> None:
        """A store written by an earlier newsbot keeps its registry in `<name>-articles` and has
        no log: write the registry into the log (its first entries) and drop that collection."""
        try:
            old = self._client.get_collection(f"{self.name}-articles")
        except Exception:  # none: a store of this version
            return
        if not old.count():
            return
        with self.turn():
            if self._entries(log_collection, 0, 1):
                return  # migrated by another process meanwhile
            log.info("moving the article registry of %s into the store's log", self.where)
            seq, offset = 0, 0
            while batch := self._call(old.get, include=["metadatas"], limit=500, offset=offset):
                if not batch["ids"]:
                    break
                records = {
                    i: dict(m or {})
                    for i, m in zip(batch["ids"], batch["metadatas"] or [], strict=False)
                }
                chunks = [f"{i}#{n}" for i, r in records.items() for n in range(int(r["n_chunks"]))]
                seq += 1
                self._call(
                    log_collection.add,
                    ids=[f"{seq:012d}"],
                    embeddings=[_NO_VECTOR],
                    metadatas=[{"seq": seq, "token": "migrated"}],
                    documents=[json.dumps({"records": records, "chunks": chunks, "removed": []})],
                )
                offset += len(batch["ids"])
            self._call(self._client.delete_collection, f"{self.name}-articles")

    # -- identity ------------------------------------------------------------------------------
    @property
    def identity(self) -> EmbeddingIdentity | None:
        return _identity(self._collection_meta())

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
        stored = _identity(meta)  # one read of the metadata for both (a Chroma server: one request)
        if stored is None:  # recorded when the store is empty (e.g. made by an earlier newsbot)
            # Chroma, not the lexical index, says whether it is: that index may still follow a
            # store reset or deleted elsewhere, until its catch-up.
            if not self.holds_chunks():
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
        return dict(self._call(self.client.get_collection, self.name).metadata or {})

    def _set_meta(self, updates: dict[str, Any]) -> None:
        collection = self._call(self.client.get_collection, self.name)
        self._call(collection.modify, metadata={**(collection.metadata or {}), **updates})

    def set_identity(self, identity: EmbeddingIdentity | None, *, reindexing: bool) -> None:
        """Record the vectors' identity; `reindexing` marks a store half-way through a re-embed."""
        meta: dict[str, Any] = {"reindexing": reindexing}
        if identity is not None:
            meta.update(identity.to_metadata())
        self._set_meta(meta)

    # -- chunks --------------------------------------------------------------------------------
    def upsert_chunks(
        self,
        ids: list[str],
        texts: list[str],
        vectors: np.ndarray,
        metadatas: list[dict[str, Any]],
    ) -> None:
        self._write(
            self._chunks.upsert, ids=ids, embeddings=vectors, documents=texts, metadatas=metadatas
        )

    def update_vectors(self, ids: list[str], vectors: np.ndarray) -> None:
        self._write(self._chunks.update, ids=ids, embeddings=vectors)

    def _write(self, method: Callable[..., Any], **columns: Any) -> None:
        for start in range(0, len(columns["ids"]), WRITE_BATCH):
            rows = slice(start, start + WRITE_BATCH)
            self._call(method, **{name: values[rows] for name, values in columns.items()})

    def delete_chunks_from(self, article_id: str, first_position: int) -> None:
        """Delete the article's chunks at positions >= first_position (left over by an update,
        or by a run that stopped half-way through writing a longer version)."""
        where = {"$and": [{"article_id": article_id}, {"position": {"$gte": first_position}}]}
        self._call(self._chunks.delete, where=where)

    def update_chunk_metadata(self, article_id: str, updates: dict[str, Any]) -> list[str]:
        """Merge `updates` into the metadata of the article's chunks; returns their ids."""
        result = self._call(
            self._chunks.get, where={"article_id": article_id}, include=["metadatas"]
        )
        if not result["ids"]:
            return []
        metadatas = [{**(meta or {}), **updates} for meta in result["metadatas"] or []]
        self._call(self._chunks.update, ids=result["ids"], metadatas=metadatas)
        return list(result["ids"])

    def nearest(
        self, vector: Sequence[float], k: int, *, among: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k chunks nearest to `vector`, best first, over
        the whole store or among the given ids; ids and scores only (docs/store.md)."""
        if k <= 0 or (among is not None and not among):
            return []
        if among is not None and len(among) <= max(
            EXACT_AMONG, EXACT_SHARE * self.lexical.chunk_count()
        ):
            import numpy as np

            query = np.asarray(vector, dtype=np.float32)
            query_norm = float(np.linalg.norm(query)) or 1.0
            scored: list[tuple[float, str]] = []
            ids = list(among)
            for start in range(0, len(ids), EXACT_PAGE):  # memory bounded by a page, not the scope
                page = ids[start : start + EXACT_PAGE]
                result = self._call(self._chunks.get, ids=page, include=["embeddings"])
                if not result["ids"]:
                    continue
                matrix = np.asarray(result["embeddings"], dtype=np.float32)
                norms = np.linalg.norm(matrix, axis=1) * query_norm
                scores = matrix @ query / np.where(norms > 0, norms, 1.0)
                scored += zip((-float(s) for s in scores), result["ids"], strict=True)
            return [(chunk_id, -score) for score, chunk_id in sorted(scored)[:k]]
        result = self._call(
            self._chunks.query,
            query_embeddings=[list(vector)],
            n_results=k,
            ids=list(among) if among is not None else None,
            include=["distances"],
        )
        distances = (result["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], distances, strict=False)]

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
        if not ids:
            return []
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        return _stored(self._call(self._chunks.get, ids=list(ids), include=include), vectors)

    def count(self) -> int:
        return int(self._call(self._chunks.count))

    def holds_chunks(self) -> bool:
        """Whether the store holds a chunk. Chroma's first read of the chunks loads their vector
        index (0.1-0.4 s at 10k-100k chunks); this one lets other threads run meanwhile, where
        `count` holds the GIL throughout (docs/benchmarks.md, "Cold start")."""
        return bool(self._call(self._chunks.get, limit=1, include=[])["ids"])

    def article_count(self) -> int:
        self.refresh()
        return self.lexical.article_count()

    def stats(self) -> dict[str, Any]:
        identity = self.identity
        return {
            "store": self.where,
            "collection": self.name,
            "articles": self.article_count(),
            "chunks": self.count(),
            "embedding": identity.to_metadata() if identity else None,
        }

    def reset(self) -> None:
        """Delete every chunk and article of this collection (hold the store's turn)."""
        for name in (self.name, f"{self.name}-log", f"{self.name}-articles"):
            with contextlib.suppress(Exception):  # -articles: only in stores of earlier versions
                self._call(self.client.delete_collection, name)
        self._collections = self._open_collections()
        with self.lexical.writer() as writer:
            writer.clear()
            writer.set_state(str(self._log.id), 0)


def _identity(meta: dict[str, Any]) -> EmbeddingIdentity | None:
    """The vectors' identity recorded in a collection's metadata (None: none recorded)."""
    if "embedding_model" not in meta:
        return None
    return EmbeddingIdentity(
        model=str(meta["embedding_model"]),
        dimension=int(meta["embedding_dimension"]),
        backend=str(meta.get("embedding_backend", "torch")),
        precision=str(meta.get("embedding_precision", "fp32")),
    )


def _stored(result: Any, vectors: bool) -> list[StoredChunk]:
    embeddings = result.get("embeddings") if vectors else None
    if embeddings is None:
        embeddings = [None] * len(result["ids"])
    documents, metadatas = result["documents"] or [], result["metadatas"] or []
    rows = zip(result["ids"], documents, metadatas, embeddings, strict=False)
    return [StoredChunk(i, doc or "", dict(meta or {}), vector) for i, doc, meta, vector in rows]
