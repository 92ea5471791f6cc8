"""The store: chunks and their vectors in Chroma (the one source of truth), the lexical index and
article registry beside it (index/lexical.py), kept in step through the store's log, a
`<name>-log` collection with one entry per committed batch. The commit order, and why a reader
never sees half an article: docs/store.md.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlparse

from index.article import StoredChunk
from index.errors import DamagedIndexError, StoreError
from index.files import safe_name
from index.lexical import Analyse, LexicalIndex
from index.model import EmbeddingIdentity
from index.text import ANALYSER_VERSION

if TYPE_CHECKING:
    import numpy as np

    from index.config import StoreConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
# A scope's dense ranking, its vectors read: (the question's vector, k) -> (chunk id, cosine)
Ranking = Callable[[Sequence[float], int], list[tuple[str, float]]]
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
# The log's and the lease's index (one small record a commit) saved at every write: a new process
# replays nothing that grows with the store (docs/store.md, "Chroma's replay").
_SMALL_INDEX = {"hnsw": {"sync_threshold": 1}}
# Chroma's save of a 1M-chunk index takes ~1.6 s (docs/store.md, "Chroma's replay").
SAVE_TIME = 3.0
# A collection's metadata while its index is being rebuilt: a repair cut short leaves the index
# without the vectors it had not written back yet, which readers must not take for the whole store.
REPAIRING = "repairing_index"


def is_damage(exc: BaseException) -> bool:
    """Whether Chroma failed on a collection's vector index left damaged by a save cut short:
    "Failed to apply logs to the hnsw segment writer", "Error constructing hnsw segment reader:
    ... EOF while parsing" (its id map), or a search reaching a row never written ("Error
    finding id")."""
    text = str(exc).lower()
    return ("hnsw segment" in text and "dimensionality" not in text) or "error finding id" in text


def make_client(settings: StoreConfig) -> Any:
    """A Chroma client: embedded in settings.store_dir (Chroma's engine without the chromadb
    package: index/embedded.py), or a server's chromadb.HttpClient when chroma_url is set."""
    if settings.chroma_url:
        import chromadb

        chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=True)
        url = urlparse(settings.chroma_url)
        if url.scheme != "https":  # else httpx loads a CA bundle (docs/benchmarks.md, "Cold start")
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
    from index.embedded import EmbeddedClient

    try:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return EmbeddedClient(settings.store_dir)
    except OSError as exc:
        raise StoreError(
            f"cannot use {settings.store_dir} as the store: {exc.strerror or exc}",
            hint="set NEWSBOT_DATA_DIR (or --data-dir) to a folder you can write to",
        ) from exc


def store_key(chroma_url: str | None, collection: str) -> str:
    """What names a collection in what its `data_dir` keeps of it (the lexical index, the ingest
    lock, feed states): a server's by its URL, an embedded store's without the path of the
    data_dir it lies in, so that a relative and an absolute path, or a moved data_dir, name one
    store."""
    return f"{chroma_url or 'embedded'}|{collection}"


def lexical_folder(data_dir: Path, chroma_url: str | None, collection: str) -> Path:
    """Where a host keeps its lexical index of the collection. The index holds analysed terms:
    another analyser (index/text.py) gets a new index, built from the log."""
    return _lexical_folder(data_dir, store_key(chroma_url, collection), collection)


def _lexical_folder(data_dir: Path, key: str, collection: str) -> Path:
    digest = hashlib.sha1(f"{key}|analyser {ANALYSER_VERSION}".encode()).hexdigest()[:12]
    return data_dir / "lexical" / f"{safe_name(collection)}-{digest}"


def _in_background(call: Callable[[], T]) -> Future[T]:
    """`call()` on a daemon thread of its own. A read from a Chroma server that stopped
    answering waits forever (chromadb's client has no time-out): on a pool's thread, which
    Python joins at exit, it would keep `newsbot slack` from exiting after a stop, where the
    Slack worker that asked (a daemon thread) is let go after its grace (docs/slack.md)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:  # noqa: BLE001 - raised again by future.result()
            future.set_exception(exc)

    threading.Thread(target=run, name="newsbot-scope", daemon=True).start()
    return future


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


class SharedClient:
    """The Chroma client of this process's Stores of one embedded store folder, made again when
    other processes wrote (`saw`): docs/store.md, "A long-running reader". A Chroma server's
    client (`reconnects` False) is kept: its Stores open the collections again after a reset."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        opening: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        reconnects: bool = True,
    ) -> None:
        self._connect = connect
        self.opening = opening  # taken to make the client and to open collections
        self._reconnects = reconnects
        self.client: Any = None
        self.generation = 0  # Stores open their collections again when it changes
        self._holds: dict[str, tuple[str, int]] = {}  # log name -> (its id, last entry held)
        self._stale = False
        self._users = 0  # calls in flight
        self._reopening = False
        self._changing = threading.Condition()

    @contextlib.contextmanager
    def using(self) -> Iterator[tuple[Any, int]]:
        """The client and its generation, current (made again first if stale), not closed
        before the caller is done with it."""
        with self._changing:
            self._changing.wait_for(lambda: not self._reopening)
            if self.client is None or self._stale:
                self._reopening = True
                try:
                    self._changing.wait_for(lambda: not self._users)
                    self._reopen()
                finally:
                    self._reopening = False
                    self._changing.notify_all()
            self._users += 1
            client, generation = self.client, self.generation
        try:
            yield client, generation
        finally:
            with self._changing:
                self._users -= 1
                if not self._users:
                    self._changing.notify_all()

    def _reopen(self) -> None:
        if self.client is not None and self._reconnects:
            log.info("reloading Chroma's vector indexes: other processes wrote to the store")
            self.client.close()  # drops Chroma's engine: its files and loaded indexes
            self.client = None
        if self.client is None:
            with self.opening():
                self.client = self._connect()
        self.generation += 1
        self._holds.clear()
        self._stale = False

    def close(self) -> None:
        """Close the client once the calls in flight are done; the next call makes a new one."""
        with self._changing:
            self._changing.wait_for(lambda: not (self._users or self._reopening))
            if self.client is not None:
                self.client.close()
                self.client = None

    def loaded(self, name: str, log_collection: Any, *, replace: bool = False) -> None:
        """A Store opened its collections on this client: the log's entries so far are in the
        indexes Chroma loads on their first read (the first Store to open them says)."""
        with self._changing:
            if replace or name not in self._holds:
                self._holds[name] = (str(log_collection.id), int(log_collection.count()))

    def saw(self, name: str, log_id: str, last: int) -> bool:
        """The log `name` (id `log_id`) holds entries up to `last`: reload before the next call
        if the indexes may lack some (or the log was replaced: the store was reset). None held:
        not opened since the last reload, its indexes load later and hold them. Returns whether
        a reload is due."""
        with self._changing:
            held = self._holds.get(name)
            if held is not None and (held[0] != log_id or (self._reconnects and held[1] < last)):
                self._stale = True
            return self._stale

    def wrote(self, name: str, log_id: str, entry: int) -> None:
        """This process committed `entry` of the log through this client."""
        with self._changing:
            if self._holds.get(name) == (log_id, entry - 1):
                self._holds[name] = (log_id, entry)


# One Chroma engine per folder and process (two would hold two indexes, each saved over the
# other's): the Stores of a folder share its client.
_SHARED: dict[str, SharedClient] = {}
_SHARING = threading.Lock()


class View(NamedTuple):
    """What a Store calls Chroma through: the client and its two collections."""

    client: Any
    chunks: Any
    log: Any


class Store:
    """Chunks in Chroma and the lexical index beside them, through `chroma` (the client is made
    on first use)."""

    def __init__(
        self,
        name: str,
        *,
        lexical: LexicalIndex,
        chroma: SharedClient,
        where: str = "embedded store",
        retries: int = 0,
        turn_lock: Path | None = None,
        save_every: int | None = None,
    ) -> None:
        self._chroma = chroma
        self.name = name
        self.where = where
        self.lexical = lexical
        self._retries = retries
        self._turn_lock = turn_lock  # None: a Chroma server, whose writers take turns by lease
        self._save_every = save_every  # the chunks' sync_threshold; None: left as it is (a server)
        self._lease: Any = None  # the ChromaLease this process holds while it writes
        self._holding = False  # this Store holds the store's turn
        self._view: View | None = None
        self._generation = -1  # of the shared client that self._view was opened with
        self._checked_at = float("-inf")
        self._refreshing = threading.Lock()
        self._refresh_failed: tuple[float, StoreError | None] = (0.0, None)
        self._committing = 0  # the log entry this Store is adding, until its client holds it

    def _call(self, use: Callable[[View], T], on: str = "") -> T:
        """Call Chroma: `use` gets the client and collections (a reload replaces them between
        calls, never during one); `on` names the collection it reads, if one."""
        try:
            return self._call_once(use, on)
        except DamagedIndexError as exc:
            # The lexical index shows another process's commit a moment before a catch-up marks
            # Chroma for reload (docs/store.md, "A long-running reader"): reload, call again.
            if not exc.searched or not self._saw(*self._call_once(self._log_length)):
                raise
            return self._call_once(use, on)

    def _call_once(self, use: Callable[[View], T], on: str = "") -> T:
        with self._chroma.using() as (client, generation):
            view = None
            try:
                # another thread may set self._view to None (a reset found elsewhere)
                opened = self._view
                if opened is None or self._generation != generation:
                    opened = self._view = self._retrying(lambda: self._open(client))
                    self._generation = generation
                view = opened
                return self._retrying(lambda: use(opened))
            except StoreError as exc:
                if exc.__cause__ is None or not is_damage(exc.__cause__):
                    raise
                if view is None:  # opening reads the log (SharedClient.loaded)
                    name = f"{self.name}-log"
                else:
                    name = getattr(view, on).name if on else _damaged_name(view)
                raise self._damaged(
                    name, searched="finding id" in str(exc).lower()
                ) from exc.__cause__

    def _damaged(self, name: str, searched: bool = False) -> DamagedIndexError:
        """`searched`: found by a search, not at loading: a rerun ingest, which checks only the
        last row (`half_written`), may not repair it."""
        error = DamagedIndexError(
            f"the vector index of collection {name!r} at {self.where} "
            "is damaged (a process was stopped while Chroma saved it)",
            hint="rebuild it with `newsbot repair`"
            + ("" if searched else " (a rerun ingest does it too)"),
        )
        error.searched = searched
        return error

    @property
    def embedded_folder(self) -> Path | None:
        """The folder of an embedded store's Chroma files (None: a Chroma server's)."""
        return Path(self.where) if self._turn_lock is not None else None

    def collections(self) -> tuple[Any, Any]:
        """The chunks' and the log's Chroma collections, opened without reading either nor
        looking at their indexes (`_call` does both: a repair's way in)."""
        with self._chroma.using() as (client, _):
            return self._collections(client)

    def close(self) -> None:
        """Close Chroma in this process (its files, its cached indexes) until the next call."""
        self._chroma.close()

    def _on(self, collection: str, method: str, /, **arguments: Any) -> Any:
        """Call `method` of the chunks' or the log's collection (`collection`, a View field)."""
        return self._call(
            lambda view: getattr(getattr(view, collection), method)(**arguments), collection
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        return _with_retries(call, where=self.where, retries=self._retries)

    def _open(self, client: Any, *, replace: bool = False) -> View:
        chunks, log_collection = self._collections(client)
        if self.embedded_folder is not None:  # before Chroma loads an index (docs/store.md)
            found = half_written(self.embedded_folder, [chunks.name, log_collection.name])
            waited = time.monotonic() + SAVE_TIME  # another process's save looks so meanwhile
            while found and time.monotonic() < waited:
                time.sleep(0.1)
                found = half_written(self.embedded_folder, found)
            if found:
                raise self._damaged(found[0])
        self._chroma.loaded(log_collection.name, log_collection, replace=replace)
        return View(client, chunks, log_collection)

    def _collections(self, client: Any) -> tuple[Any, Any]:
        with self._chroma.opening():
            hnsw: dict[str, Any] = {"space": "cosine"}
            if self._save_every:
                hnsw["sync_threshold"] = self._save_every
            chunks = client.get_or_create_collection(
                self.name, embedding_function=None, configuration={"hnsw": hnsw}
            )
            return chunks, self._small_collection(client, "log")

    def _small_collection(self, client: Any, kind: str) -> Any:
        """The store's log or lease collection (`kind`)."""
        return client.get_or_create_collection(
            f"{self.name}-{kind}", embedding_function=None, configuration=_SMALL_INDEX
        )

    @property
    def client(self) -> Any:
        return self._call(lambda view: view.client)

    @classmethod
    def open(cls, settings: StoreConfig, analyse: Analyse) -> Store:
        """The store the settings name; `analyse` makes a text's lexical index terms. Nothing is
        opened yet: the client is made on first use."""
        from index.lock import exclusive, lock_path

        where = settings.chroma_url or str(settings.store_dir.resolve())
        key = store_key(settings.chroma_url, settings.collection)
        server = bool(settings.chroma_url)  # a server's writers take turns by lease, not by file
        folder = lexical_folder(settings.data_dir, settings.chroma_url, settings.collection)
        if not server and not folder.exists():
            # Kept under the path of the store until 2026-12: renamed, not built again.
            old = _lexical_folder(
                settings.data_dir,
                f"{settings.store_dir}|{settings.collection}",
                settings.collection,
            )
            with suppress(OSError):
                old.rename(folder)
        lexical = LexicalIndex(folder, analyse)

        def opening() -> contextlib.AbstractContextManager[Any]:
            # Two processes creating one embedded store at once race in Chroma's schema set-up
            # ("table collections already exists"); they take turns here.
            try:
                lock = lock_path(settings.data_dir, f"open|{key}")
                lock.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot use {settings.data_dir} as the data folder: {exc.strerror or exc}",
                    hint="set NEWSBOT_DATA_DIR (or --data-dir) to a folder you can write to",
                ) from exc
            return exclusive(lock)

        connect = lambda: make_client(settings)  # noqa: E731
        if server:
            chroma = SharedClient(connect, reconnects=False)
        else:
            with _SHARING:
                chroma = _SHARED.setdefault(where, SharedClient(connect, opening=opening))
        return cls(
            settings.collection,
            lexical=lexical,
            where=where,
            retries=settings.store_retries if server else 0,
            chroma=chroma,
            turn_lock=None if server else lock_path(settings.data_dir, key),
            # A server is one long process: it replays once, when it starts.
            save_every=None if server else settings.vector_save_every,
        )

    @contextlib.contextmanager
    def turn(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """This process's turn to write (index/lock.py): a file lock, or a lease in a Chroma
        server. Waits for the current writer, calling `on_wait` first. Reentrant."""
        from index.lock import ChromaLease, exclusive

        if self._holding:
            yield
            return
        if self._turn_lock is not None:
            turn: contextlib.AbstractContextManager[Any] = exclusive(self._turn_lock, on_wait)
        else:
            leases = self._call(lambda view: self._small_collection(view.client, "lease"))
            turn = ChromaLease(leases).held(on_wait)
        with turn as lease:
            self._lease, self._holding = lease, True
            try:
                yield
            finally:
                self._lease, self._holding = None, False

    def refresh(self, max_age: float = 0.0) -> None:
        """Apply the log entries the lexical index lacks (written by other processes or hosts),
        unless checked less than `max_age` seconds ago (one small Chroma read if none)."""
        asked = time.monotonic()
        if asked - self._checked_at < max_age:
            return
        with self._refreshing:
            if time.monotonic() - self._checked_at < max_age:
                return
            failed_at, failure = self._refresh_failed
            if failure is not None and failed_at >= asked:
                # It failed while this one waited: the same answer now, not one more round of
                # retries each in turn (a Slack bot's askers, a server down: 38 waited 54 s).
                raise copy.copy(failure) from failure
            try:
                self._catch_up()
            except StoreError as exc:
                self._refresh_failed = (time.monotonic(), exc)
                raise
            self._checked_at = time.monotonic()

    def _log_length(self, view: View) -> tuple[str, int]:
        log_collection = self._small_collection(view.client, "log")
        if str(log_collection.id) != str(view.log.id):  # the store was reset elsewhere
            self._view = None  # open the new ones
        return str(log_collection.id), int(log_collection.count())

    def _catch_up(self) -> None:
        log_id, last = self._call(self._log_length)
        # Entries other processes committed since this process's Chroma loaded its indexes: they
        # reload before the next Chroma call, which comes after the lexical index shows them
        # (it moves only at reload(): a search never finds chunks the vector index lacks).
        self._saw(log_id, last)
        if self._holding:  # before this writer's first write loads the chunks' index
            self._keep_thresholds()
        self.lexical.reload()
        applied_log, applied = self.lexical.state()
        if applied_log != log_id or last > applied:
            if applied_log != log_id and not last:
                self._migrate()
            applied = self._apply_log(log_id)
        self._saw(log_id, applied)  # committed since `last` was read, if any

    def _saw(self, log_id: str, last: int) -> bool:
        if last and last == self._committing:  # this Store's own entry: its client holds it
            last -= 1
        return self._chroma.saw(f"{self.name}-log", log_id, last)

    def _apply_log(self, log_id: str) -> int:
        """Apply the log's entries the lexical index lacks; returns the last one."""
        while True:
            with self.lexical.writer() as writer:
                applied_log, applied = self.lexical.state()
                if applied_log != log_id:
                    log.info("building the lexical index of %s from the store", self.where)
                    writer.clear()
                    applied = 0
                entries = self._entries(applied, LOG_PAGE)
                for seq, entry in entries:
                    self._apply(writer, entry)
                    applied = seq
                writer.set_state(log_id, applied)
                self._saw(log_id, applied)  # before the commit shows them to searches
            if len(entries) < LOG_PAGE:
                return applied

    def _keep_thresholds(self) -> None:
        """Give a store made before _SMALL_INDEX, or with another `vector_save_every`, the save
        thresholds above (a writer, in its turn: docs/store.md, "Chroma's replay")."""

        def keep(view: View) -> None:
            for collection, every in ((view.log, 1), (view.chunks, self._save_every)):
                hnsw = collection.configuration_json.get("hnsw") or {}
                if every and hnsw.get("sync_threshold") != every:
                    collection.modify(configuration={"hnsw": {"sync_threshold": every}})

        self._call(keep)

    def _entries(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """The log entries numbered after `after` (at most `limit`, in order, no gap)."""
        result = self._on(
            "log",
            "get",
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

    def _apply(
        self, writer: Any, entry: dict[str, Any], chunks: Sequence[StoredChunk] = ()
    ) -> None:
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
        chunks: Sequence[StoredChunk] = (),
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
        if self._lease is not None:
            from index.lock import LeaseLost

            try:
                self._lease.check()
            except LeaseLost as exc:
                raise StoreError(
                    f"this ingest lost its turn to write to {self.where}: {exc}",
                    hint="run the ingest again: it redoes what was not recorded",
                ) from exc
        # Until wrote(), a catch-up of another thread (slack --watch) that finds this entry
        # would otherwise reload Chroma's indexes, which hold it already (_saw).
        self._committing = seq
        try:
            stored = self._add_entry(seq, token, entry)
            if not stored["ids"] or (stored["metadatas"][0] or {}).get("token") != token:
                raise StoreError(
                    f"another process committed a write to {self.where} (collection "
                    f"{self.name}) while this one held its turn; this batch was not recorded",
                    hint="run the ingest again: it redoes what was not recorded",
                )
            self._chroma.wrote(f"{self.name}-log", log_id, seq)
        finally:
            self._committing = 0
        with self.lexical.writer() as writer:
            if self.lexical.state() == (log_id, seq - 1):  # else a reader applied it already
                self._apply(writer, entry, chunks)
                writer.set_state(log_id, seq)
        self._checked_at = time.monotonic()
        return seq

    def _add_entry(self, seq: int, token: str, entry: dict[str, Any]) -> Any:
        """Add log entry `seq`; returns its metadata as stored (another writer's if it won)."""
        entry_id = f"{seq:012d}"
        self._on(
            "log",
            "add",
            ids=[entry_id],
            embeddings=[_NO_VECTOR],
            documents=[json.dumps(entry)],
            metadatas=[{"seq": seq, "token": token}],
        )
        return self._on("log", "get", ids=[entry_id], include=["metadatas"])

    def _migrate(self) -> None:
        """A store written by an earlier newsbot keeps its registry in `<name>-articles` and has
        no log: write the registry into the log (its first entries) and drop that collection."""
        name = f"{self.name}-articles"

        def registry(offset: int) -> Any:
            def read(view: View) -> Any:
                if name not in _names(view.client):  # a store of this version
                    return {"ids": []}
                old = view.client.get_collection(name)
                return old.get(include=["metadatas"], limit=500, offset=offset)

            return self._call(read)

        if not registry(0)["ids"]:
            return
        with self.turn():
            if self._entries(0, 1):
                return  # migrated by another process meanwhile
            log.info("moving the article registry of %s into the store's log", self.where)
            seq, offset = 0, 0
            while (batch := registry(offset))["ids"]:
                records = {
                    i: dict(m or {})
                    for i, m in zip(batch["ids"], batch["metadatas"] or [], strict=False)
                }
                chunks = [f"{i}#{n}" for i, r in records.items() for n in range(int(r["n_chunks"]))]
                seq += 1
                self._add_entry(
                    seq, "migrated", {"records": records, "chunks": chunks, "removed": []}
                )
                offset += len(batch["ids"])
            self._call(lambda view: view.client.delete_collection(name))

    def check_identity(self, identity: EmbeddingIdentity) -> None:
        """Refuse to mix vectors of different models or precisions (`same_vectors`) in one
        collection."""
        meta = self._collection_meta()
        if meta.get(REPAIRING):
            raise DamagedIndexError(
                f"the vector index of collection {self.name!r} at {self.where} was being rebuilt "
                "when that run stopped; it lacks vectors",
                hint="finish it with `newsbot repair` (a rerun ingest does it too)",
            )
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
        if not same_vectors(stored, identity):
            raise StoreError(
                f"collection {self.name!r} at {self.where} holds {stored.model} "
                f"({stored.precision}, {stored.dimension} dims) vectors, but the settings ask "
                f"for {identity.model} ({identity.precision}, {identity.dimension} dims)",
                hint="re-embed it with `newsbot reindex`, "
                "or set NEWSBOT_COLLECTION to another name",
            )

    def _collection_meta(self) -> dict[str, Any]:
        # Read by name: the Store's collection object keeps the metadata it was opened with.
        return dict(self._call(lambda view: view.client.get_collection(self.name).metadata) or {})

    def _set_meta(self, updates: dict[str, Any]) -> None:
        def update(view: View) -> None:
            collection = view.client.get_collection(self.name)
            collection.modify(metadata={**(collection.metadata or {}), **updates})

        self._call(update)

    def set_identity(self, identity: EmbeddingIdentity | None, *, reindexing: bool) -> None:
        """Record the vectors' identity; `reindexing` marks a store half-way through a re-embed."""
        meta: dict[str, Any] = {"reindexing": reindexing}
        if identity is not None:
            meta.update(identity.to_metadata())
        self._set_meta(meta)

    def upsert_chunks(
        self, ids: list[str], texts: list[str], vectors: np.ndarray, metadatas: list[dict[str, Any]]
    ) -> None:
        self._write("upsert", ids=ids, embeddings=vectors, documents=texts, metadatas=metadatas)

    def update_vectors(self, ids: list[str], vectors: np.ndarray) -> None:
        self._write("update", ids=ids, embeddings=vectors)

    def _write(self, method: str, **columns: Any) -> None:
        for start in range(0, len(columns["ids"]), WRITE_BATCH):
            rows = slice(start, start + WRITE_BATCH)
            self._on("chunks", method, **{name: values[rows] for name, values in columns.items()})

    def delete_chunks_from(self, article_id: str, first_position: int) -> None:
        """Delete the article's chunks at positions >= first_position (left over by an update,
        or by a run that stopped half-way through writing a longer version)."""
        where = {"$and": [{"article_id": article_id}, {"position": {"$gte": first_position}}]}
        self._on("chunks", "delete", where=where)

    def update_chunk_metadata(self, article_id: str, updates: dict[str, Any]) -> list[str]:
        """Merge `updates` into the metadata of the article's chunks; returns their ids."""
        result = self._on("chunks", "get", where={"article_id": article_id}, include=["metadatas"])
        if not result["ids"]:
            return []
        metadatas = [{**(meta or {}), **updates} for meta in result["metadatas"] or []]
        self._on("chunks", "update", ids=result["ids"], metadatas=metadatas)
        return list(result["ids"])

    def nearest(
        self, vector: Sequence[float], k: int, *, among: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k chunks nearest to `vector`, best first, over
        the whole store or among the given ids; ids and scores only (docs/store.md)."""
        if k <= 0 or (among is not None and not among):
            return []
        if among is not None and self._exact(among):
            return self.ranking(among)(vector, k)
        result = self._on(
            "chunks",
            "query",
            query_embeddings=[list(vector)],
            n_results=k,
            ids=list(among) if among is not None else None,
            include=["distances"],
        )
        distances = (result["distances"] or [[]])[0]
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], distances, strict=False)]

    def _exact(self, among: Sequence[str]) -> bool:
        return len(among) <= max(EXACT_AMONG, EXACT_SHARE * self.lexical.chunk_count())

    def ranking(self, among: Sequence[str]) -> Ranking:
        """`nearest(vector, k, among=among)` as a function of the vector. A Chroma server's
        vectors of a scope ranked exactly start being read now, on another thread, while the
        caller makes the question's (docs/retrieval.md); an embedded store reads them when
        ranking (read early, they held the GIL and gained nothing)."""
        if not self._exact(among):
            return lambda vector, k: self.nearest(vector, k, among=among)
        import numpy as np

        def read() -> Iterator[tuple[list[str], Any]]:
            for start in range(0, len(among), EXACT_PAGE):  # chromadb's lists a page at a time
                page = list(among[start : start + EXACT_PAGE])
                result = self._on("chunks", "get", ids=page, include=["embeddings"])
                if result["ids"]:
                    yield result["ids"], np.asarray(result["embeddings"], dtype=np.float32)

        pages: Callable[[], Iterable[tuple[list[str], Any]]] = read
        if self.embedded_folder is None:  # 1.5 kB a vector, held until ranked
            pages = _in_background(lambda: list(read())).result

        def rank(vector: Sequence[float], k: int) -> list[tuple[str, float]]:
            query = np.asarray(vector, dtype=np.float32)
            query_norm = float(np.linalg.norm(query)) or 1.0
            scored: list[tuple[float, str]] = []
            for found, matrix in pages():
                norms = np.linalg.norm(matrix, axis=1) * query_norm
                scores = matrix @ query / np.where(norms > 0, norms, 1.0)
                scored += zip((-float(s) for s in scores), found, strict=True)
            return [(chunk_id, -score) for score, chunk_id in sorted(scored)[:k]]

        return rank

    def iter_chunks(self, page: int = 5000, *, vectors: bool = False) -> Iterable[StoredChunk]:
        """Every chunk (text and metadata; with its vector if asked), page by page."""
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        offset = 0
        while True:
            result = self._on("chunks", "get", include=include, limit=page, offset=offset)
            if not result["ids"]:
                return
            yield from _stored(result, vectors)
            offset += len(result["ids"])

    def get_chunks(self, ids: Sequence[str], *, vectors: bool = False) -> list[StoredChunk]:
        if not ids:
            return []
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        return _stored(self._on("chunks", "get", ids=list(ids), include=include), vectors)

    def count(self) -> int:
        return int(self._on("chunks", "count"))

    def holds_chunks(self) -> bool:
        """Whether the store holds a chunk: as the first read (it loads the vector index), it
        lets other threads run, where `count` holds the GIL (docs/benchmarks.md, "Cold start")."""
        return bool(self._on("chunks", "get", limit=1, include=[])["ids"])

    def article_count(self) -> int:
        self.refresh()
        return self.lexical.article_count()

    def stats(self) -> dict[str, Any]:
        identity = _identity(self._collection_meta())
        return {
            "store": self.where,
            "collection": self.name,
            "articles": self.article_count(),
            "chunks": self.count(),
            "embedding": identity.to_metadata() if identity else None,
        }

    def reset(self) -> None:
        """Delete every chunk and article of this collection (hold the store's turn), whether
        or not Chroma can load its indexes (a damaged store may be reset)."""
        with self._chroma.using() as (client, generation):
            existing = _names(client)
            # The chunks first, then the log: one order, whatever the process (a set's order
            # is its hash seed's); -articles: only in stores of earlier versions
            for name in (self.name, f"{self.name}-log", f"{self.name}-articles"):
                if name in existing:
                    with contextlib.suppress(Exception):  # deleted elsewhere meanwhile
                        client.delete_collection(name)
            self._view = self._retrying(lambda: self._open(client, replace=True))
            self._generation = generation
        with self.lexical.writer() as writer:
            writer.clear()
            writer.set_state(str(self._view.log.id), 0)


def _names(client: Any) -> set[str]:
    """The names of the store's collections: looked up here where one may be missing, as
    Chroma's error for a missing one is chromadb's (index/embedded.py)."""
    return {str(collection.name) for collection in client.list_collections()}


def _damaged_name(view: View) -> str:
    """The name of the collection whose index Chroma cannot load: the first that fails a read
    (Chroma loads the index before any read); the chunks' when none does any more."""
    for collection in (view.log, view.chunks):
        try:
            collection.get(limit=1, include=[])
        except Exception as exc:
            if is_damage(exc):
                return str(collection.name)
    return str(view.chunks.name)


def half_written(folder: Path, names: Sequence[str], *, every_row: bool = False) -> list[str]:
    """Those of the named collections whose index files hold rows a save cut short never wrote,
    told by the last row (`every_row`: by every label): docs/store.md, "A damaged vector index"."""
    found: list[str] = []
    database = f"file:{folder / 'chroma.sqlite3'}?mode=ro"
    with suppress(sqlite3.Error), closing(sqlite3.connect(database, uri=True)) as db:
        for name in names:
            try:
                rows = saved_rows(folder / vector_segment(db, name)[0], last_only=not every_row)
            except (sqlite3.Error, OSError, ValueError, TypeError, struct.error):
                continue  # no index yet, or not one this reads: left to Chroma
            if rows is None or (rows.labels == 0).any():
                found.append(name)
    return found


class SavedRows(NamedTuple):
    data: Any  # the rows' bytes, mapped: one row of `stride` bytes each
    labels: Any  # each row's label: Chroma's record of the vector (0: never written)
    vector: slice  # where a row's vector lies in it


def saved_rows(index: Path, *, last_only: bool = False) -> SavedRows | None:
    """The rows an index's `data_level0.bin` holds (`last_only`: its last), in hnswlib's layout
    as its `header.bin` gives it; None when the file is shorter than the header says (a save cut
    short), ValueError when it does not read as that layout."""
    import numpy as np

    version, level0, _, count, stride, label_at, vector_at = struct.unpack_from(
        "<iQQQQQQ", (index / "header.bin").read_bytes()
    )
    if version != 1 or level0 != 0 or stride != label_at + 8 or label_at <= vector_at:
        raise ValueError(f"{index / 'header.bin'} is not in hnswlib's layout")
    path = index / "data_level0.bin"
    if path.stat().st_size < count * stride:
        return None
    first = max(count - 1, 0) if last_only else 0
    data = (
        np.memmap(path, np.uint8, "r", first * stride, (count - first, stride))
        if count
        else np.zeros((0, stride), np.uint8)
    )
    labels = data[:, label_at:stride].copy().view("<u8").ravel()
    return SavedRows(data, labels, slice(vector_at, label_at))


def vector_segment(db: sqlite3.Connection, collection: str) -> tuple[str, list[str]]:
    """The id of collection `collection`'s vector index (its folder beside Chroma's SQLite `db`)
    and the ids of the records written to the collection since that index was last saved, in
    order: what a process that loads it replays. Read from Chroma's own (undocumented) tables;
    ValueError if they do not hold it."""
    row = db.execute(
        "SELECT s.id, s.collection, m.seq_id FROM segments s JOIN collections c"
        " ON c.id = s.collection LEFT JOIN max_seq_id m ON m.segment_id = s.id"
        " WHERE c.name = ? AND s.scope = 'VECTOR'",
        (collection,),
    ).fetchone()
    if row is None:
        raise ValueError(f"no vector index of collection {collection!r}")
    queued = db.execute(
        "SELECT id FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
        (f"%{row[1]}", row[2] or 0),
    )
    return str(row[0]), [record_id for (record_id,) in queued]


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


def same_vectors(stored: EmbeddingIdentity | None, configured: EmbeddingIdentity) -> bool:
    """Whether vectors of `stored`'s identity are `configured`'s: the torch and ONNX fp32
    backends give the same vectors (cosine 1.0000); int8 vectors differ (cosine ~0.99)."""
    return stored is not None and (stored.model, stored.dimension, stored.precision) == (
        configured.model,
        configured.dimension,
        configured.precision,
    )


def _stored(result: Any, vectors: bool) -> list[StoredChunk]:
    embeddings = result.get("embeddings") if vectors else None
    if embeddings is None:
        embeddings = [None] * len(result["ids"])
    documents, metadatas = result["documents"] or [], result["metadatas"] or []
    rows = zip(result["ids"], documents, metadatas, embeddings, strict=False)
    return [StoredChunk(i, doc or "", dict(meta or {}), vector) for i, doc, meta, vector in rows]
