"""Snapshots of the in-memory retrieval index (bot/retrieve.py's LexicalIndex) on disk.

Building the index means reading every chunk and its vector back from Chroma and tokenizing its
text again: 0.5 s at 1,000 chunks, growing with the store, in every new process. A snapshot
loads in milliseconds instead.

The format is one uncompressed .npz of flat numeric arrays plus one JSON entry for the strings
(chunk, article and term names); it never holds pickled objects and is read with
`allow_pickle=False`. Postings and each chunk's terms are stored as ragged arrays and turned
into the index's per-term arrays only when a search touches them. Each chunk's text and metadata
are kept too (UTF-8 and JSON bytes, decoded when a passage is shown), so that a question can be
answered from the snapshot alone, without opening Chroma.

A snapshot records the store state it reflects: the chunk collection's id (new after a reset),
its generation (bumped by every write batch, index/store.py) and its chunk count. It is used
only when all three match the store now; otherwise, or when the file is missing, unreadable or
inconsistent, the index is built from the store as before and a new snapshot written. Writes
go to a temporary file that replaces the old one in one rename, so a reader in another process
sees either the old snapshot or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator, MutableSequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from index.files import safe_name

if TYPE_CHECKING:
    from bot.retrieve import LexicalIndex

log = logging.getLogger(__name__)

FORMAT = 2  # 2: chunk texts and metadata
# The LexicalIndex attributes a snapshot holds; an index with others is not written (see save).
_FIELDS = frozenset(
    {
        "k1",
        "b",
        "_slot_of",
        "_chunk_ids",
        "_article_ids",
        "_doc_terms",
        "_documents",
        "_text_hash",
        "_vocab",
        "_df",
        "_postings",
        "_length",
        "_ts",
        "_day",
        "_source",
        "_live",
        "_has_vector",
        "_vectors",
        "_extra_sources",
        "_source_code",
        "_source_names",
        "_source_chunks",
        "_total_length",
        "live",
    }
)


@dataclass(frozen=True)
class StoreState:
    """What a snapshot was built from: it is valid only while the store still says the same."""

    collection_id: str
    generation: int
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection_id": self.collection_id,
            "generation": self.generation,
            "chunks": self.chunks,
        }


def snapshot_path(data_dir: Path, where: str, collection: str) -> Path:
    """Where the snapshot of one collection of one store (a folder or a server URL) lives."""
    key = hashlib.sha256(f"{where}|{collection}".encode()).hexdigest()[:12]
    return data_dir / "index" / f"{safe_name(collection)[:40]}-{key}.npz"


class _LazyRows(MutableSequence[Any]):
    """Rows kept as flat arrays and made into objects the first time each is read, so that
    loading costs nothing per row. `dead` rows read as None; rows appended later are kept as
    given. Subclasses say how a row is made (`_make`)."""

    def __init__(self, count: int, dead: np.ndarray | None) -> None:
        self._items: list[Any] = [None] * count
        self._made = np.zeros(count, dtype=np.bool_) if dead is None else dead.copy()

    def _make(self, index: int) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self._items)
        if index < len(self._made) and not self._made[index]:
            self._made[index] = True
            self._items[index] = self._make(index)
        return self._items[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            raise TypeError(f"{type(self).__name__} does not support slice assignment")
        if index < 0:
            index += len(self._items)
        if index < len(self._made):
            self._made[index] = True  # the stored row must not overwrite `value`
        self._items[index] = value

    def __delitem__(self, index: Any) -> None:
        raise TypeError(f"{type(self).__name__} items cannot be deleted")

    def insert(self, index: int, value: Any) -> None:
        if index != len(self._items):
            raise TypeError(f"{type(self).__name__} only appends")
        self._items.append(value)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self._items)))


class RaggedPairs(_LazyRows):
    """A list of (array('i'), array('i')) pairs kept as two flat int32 arrays and offsets."""

    def __init__(
        self,
        offsets: np.ndarray,
        first: np.ndarray,
        second: np.ndarray,
        dead: np.ndarray | None = None,
    ) -> None:
        super().__init__(len(offsets) - 1, dead)
        self._offsets = offsets
        self._first = first
        self._second = second

    def _make(self, index: int) -> Any:
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        return (
            array("i", self._first[start:end].tobytes()),
            array("i", self._second[start:end].tobytes()),
        )


class RaggedDocuments(_LazyRows):
    """A list of (text, metadata) pairs kept as UTF-8 and JSON bytes with offsets (a question
    decodes only the few passages it shows)."""

    def __init__(
        self, offsets: np.ndarray, texts: np.ndarray, metas: np.ndarray, dead: np.ndarray
    ) -> None:
        super().__init__(len(offsets) - 1, dead)
        self._offsets = offsets  # (n + 1, 2): text and metadata offsets
        self._texts = texts
        self._metas = metas

    def _make(self, index: int) -> Any:
        (text_start, meta_start), (text_end, meta_end) = self._offsets[index : index + 2]
        return (
            self._texts[text_start:text_end].tobytes().decode(),
            json.loads(self._metas[meta_start:meta_end].tobytes()),
        )


def _documents(items: MutableSequence[Any], count: int) -> tuple[np.ndarray, ...]:
    """Offsets, text bytes and metadata bytes of a list of (text, metadata) pairs (None: empty)."""
    offsets = np.zeros((count + 1, 2), dtype=np.int64)
    texts: list[bytes] = []
    metas: list[bytes] = []
    for position in range(count):
        item = items[position]
        text, meta = (b"", b"") if item is None else (item[0].encode(), _json(item[1]))
        texts.append(text)
        metas.append(meta)
        offsets[position + 1] = (len(text), len(meta))
    return (
        np.cumsum(offsets, axis=0),
        np.frombuffer(b"".join(texts), dtype=np.uint8),
        np.frombuffer(b"".join(metas), dtype=np.uint8),
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _ragged(items: MutableSequence[Any], count: int) -> tuple[np.ndarray, ...]:
    """Offsets and the two flat arrays of a list of (array, array) pairs (None: empty)."""
    lengths = np.zeros(count + 1, dtype=np.int64)
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for position in range(count):
        pair = items[position]
        if pair is None:
            continue
        firsts.append(np.frombuffer(pair[0], dtype=np.int32))
        seconds.append(np.frombuffer(pair[1], dtype=np.int32))
        lengths[position + 1] = len(pair[0])
    empty = np.zeros(0, dtype=np.int32)
    return (
        np.cumsum(lengths),
        np.concatenate(firsts) if firsts else empty,
        np.concatenate(seconds) if seconds else empty,
    )


def _column(growable: Any, size: int) -> np.ndarray:
    """The first `size` rows of a _Growable column, padded with its fill value if shorter."""
    data = growable.data
    if len(data) >= size:
        return np.ascontiguousarray(data[:size])
    padded = np.full((size, *data.shape[1:]), growable.fill, dtype=data.dtype)
    padded[: len(data)] = data
    return padded


def save(index: LexicalIndex, state: StoreState, path: Path) -> bool:
    """Write the index's snapshot for `state` atomically; False (and a log line) if it could not."""
    started = time.perf_counter()
    fields = set(vars(index))
    if fields != _FIELDS:
        log.warning(
            "not writing the index snapshot: LexicalIndex has fields this format does not know "
            "(%s); bot/lexical_cache.py needs updating",
            ", ".join(sorted(fields ^ _FIELDS)),
        )
        return False
    size = len(index._chunk_ids)
    live = _column(index._live, size)
    post_offsets, post_slots, post_counts = _ragged(index._postings, len(index._postings))
    doc_offsets, doc_terms, doc_counts = _ragged(index._doc_terms, size)
    document_offsets, document_texts, document_metas = _documents(index._documents, size)
    extra_slots = sorted(index._extra_sources)
    extra_lengths = [len(index._extra_sources[slot]) for slot in extra_slots]
    codes = list(index._source_chunks)
    meta = {
        "format": FORMAT,
        "state": state.to_dict(),
        "k1": index.k1,
        "b": index.b,
        "size": size,
        "live": index.live,
        "total_length": index._total_length,
        "chunk_ids": index._chunk_ids,
        "article_ids": index._article_ids,
        "vocab": list(index._vocab),
        "source_names": index._source_names,
    }
    if list(index._vocab.values()) != list(range(len(index._vocab))):
        log.warning("not writing the index snapshot: term ids are not in insertion order")
        return False
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
        "text_hash": np.asarray(index._text_hash, dtype=np.int64),
        "df": np.asarray(index._df, dtype=np.int64),
        "post_offsets": post_offsets,
        "post_slots": post_slots,
        "post_counts": post_counts,
        "doc_offsets": doc_offsets,
        "doc_terms": doc_terms,
        "doc_counts": doc_counts,
        "document_offsets": document_offsets,
        "document_texts": document_texts,
        "document_metas": document_metas,
        "length": _column(index._length, size),
        "ts": _column(index._ts, size),
        "day": _column(index._day, size),
        "source": _column(index._source, size),
        "live_mask": live,
        "has_vector": _column(index._has_vector, size),
        "extra_slots": np.asarray(extra_slots, dtype=np.int64),
        "extra_offsets": np.concatenate([[0], np.cumsum(extra_lengths, dtype=np.int64)]),
        "extra_codes": np.asarray(
            [code for slot in extra_slots for code in index._extra_sources[slot]], dtype=np.int64
        ),
        "source_chunk_codes": np.asarray(codes, dtype=np.int64),
        "source_chunk_counts": np.asarray([index._source_chunks[c] for c in codes], np.int64),
    }
    if index._vectors is not None:
        arrays["vectors"] = _column(index._vectors, size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per writer; created like any file (the umask applies), which
        # mkstemp's owner-only mode would not be for a data dir shared by several users.
        temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, allow_pickle=False, **arrays)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.info("cannot write the index snapshot %s: %s", path, exc)
        return False
    log.info(
        "index snapshot written: %d chunks in %.3fs (%s)",
        index.live,
        time.perf_counter() - started,
        path,
    )
    return True


class _Unusable(Exception):
    """The snapshot file exists but cannot be used (another state, format or broken)."""


def load(path: Path, state: StoreState, *, k1: float, b: float) -> LexicalIndex | None:
    """The index saved in `path` if it was built from `state` with these BM25 parameters."""
    started = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as data:
            index = _from_arrays({name: data[name] for name in data.files}, state, k1, b)
    except FileNotFoundError:
        log.debug("no index snapshot at %s", path)
        return None
    except _Unusable as exc:
        log.info("index snapshot %s not used: %s", path, exc)
        return None
    except Exception as exc:  # a truncated or garbled file fails in many ways
        log.info("index snapshot %s is unreadable (%s: %s)", path, type(exc).__name__, exc)
        return None
    log.info("index snapshot loaded: %d chunks in %.3fs", index.live, time.perf_counter() - started)
    return index


def _from_arrays(
    arrays: dict[str, np.ndarray], state: StoreState, k1: float, b: float
) -> LexicalIndex:
    from bot.retrieve import LexicalIndex

    meta = json.loads(arrays["meta"].tobytes().decode())
    if meta.get("format") != FORMAT:
        raise _Unusable(f"format {meta.get('format')}, expected {FORMAT}")
    if meta.get("state") != state.to_dict():
        raise _Unusable(f"built from {meta.get('state')}, the store is at {state.to_dict()}")
    if (meta["k1"], meta["b"]) != (k1, b):
        raise _Unusable("other BM25 parameters")
    size = int(meta["size"])
    vocab: list[str] = meta["vocab"]
    chunk_ids: list[str | None] = meta["chunk_ids"]
    sources: list[str] = meta["source_names"]
    live = arrays["live_mask"].astype(np.bool_)
    _check(arrays, meta, size, len(vocab), len(sources), live)

    index = LexicalIndex(k1, b)
    index._chunk_ids = chunk_ids
    index._slot_of = {
        chunk_id: slot for slot, chunk_id in enumerate(chunk_ids) if chunk_id is not None
    }
    index._article_ids = meta["article_ids"]
    index._text_hash = arrays["text_hash"].tolist()
    index._vocab = dict(zip(vocab, range(len(vocab)), strict=True))
    if len(index._vocab) != len(vocab):
        raise _Unusable("inconsistent snapshot: repeated terms")
    index._df = arrays["df"].tolist()
    index._postings = RaggedPairs(
        arrays["post_offsets"], arrays["post_slots"], arrays["post_counts"]
    )
    index._doc_terms = RaggedPairs(
        arrays["doc_offsets"], arrays["doc_terms"], arrays["doc_counts"], dead=~live
    )
    index._documents = RaggedDocuments(
        arrays["document_offsets"], arrays["document_texts"], arrays["document_metas"], ~live
    )
    capacity = max(1024, size)
    for name, column in (
        ("length", index._length),
        ("ts", index._ts),
        ("day", index._day),
        ("source", index._source),
        ("live_mask", index._live),
        ("has_vector", index._has_vector),
    ):
        column.data = arrays[name].astype(column.data.dtype, copy=False)
        column.resize(capacity, size)
    if "vectors" in arrays:
        from bot.retrieve import _Growable

        vectors = _Growable(np.float32, 0.0, width=int(arrays["vectors"].shape[1]))
        vectors.data = np.asarray(arrays["vectors"], dtype=np.float32)
        vectors.resize(capacity, size)
        index._vectors = vectors
    offsets = arrays["extra_offsets"].tolist()
    codes = arrays["extra_codes"].tolist()
    index._extra_sources = {
        slot: tuple(codes[offsets[i] : offsets[i + 1]])
        for i, slot in enumerate(arrays["extra_slots"].tolist())
    }
    index._source_names = sources
    index._source_code = {name: code for code, name in enumerate(sources)}
    index._source_chunks = Counter(
        dict(
            zip(
                arrays["source_chunk_codes"].tolist(),
                arrays["source_chunk_counts"].tolist(),
                strict=True,
            )
        )
    )
    index._total_length = float(meta["total_length"])
    index.live = int(meta["live"])
    return index


def _check(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    size: int,
    terms: int,
    sources: int,
    live: np.ndarray,
) -> None:
    """Shapes and ranges agree, so that a damaged snapshot cannot index out of bounds later."""

    def require(condition: bool, what: str) -> None:
        if not condition:
            raise _Unusable(f"inconsistent snapshot: {what}")

    require(len(meta["chunk_ids"]) == size and len(meta["article_ids"]) == size, "chunk ids")
    for name in ("text_hash", "length", "ts", "day", "source", "live_mask", "has_vector"):
        require(arrays[name].shape == (size,), name)
    require(int(live.sum()) == int(meta["live"]), "live count")
    require(
        all(
            (chunk_id is not None) == bool(alive)
            for chunk_id, alive in zip(meta["chunk_ids"], live.tolist(), strict=True)
        ),
        "live chunks",
    )
    require(arrays["df"].shape == (terms,), "vocabulary")
    for prefix, rows, bound in (("post", terms, size), ("doc", size, terms)):
        offsets = arrays[f"{prefix}_offsets"]
        first = arrays[f"{prefix}_slots" if prefix == "post" else "doc_terms"]
        second = arrays[f"{prefix}_counts"]
        require(offsets.shape == (rows + 1,) and int(offsets[0]) == 0, f"{prefix} offsets")
        require(bool((np.diff(offsets) >= 0).all()), f"{prefix} offsets")
        require(int(offsets[-1]) == len(first) == len(second), f"{prefix} lengths")
        require(first.dtype == np.int32 and second.dtype == np.int32, f"{prefix} types")
        require(not len(first) or (int(first.min()) >= 0 and int(first.max()) < bound), prefix)
    offsets = arrays["document_offsets"]
    require(offsets.shape == (size + 1, 2) and not offsets[0].any(), "document offsets")
    require(bool((np.diff(offsets, axis=0) >= 0).all()), "document offsets")
    require(
        (int(offsets[-1, 0]), int(offsets[-1, 1]))
        == (len(arrays["document_texts"]), len(arrays["document_metas"])),
        "document lengths",
    )
    source = arrays["source"]
    require(not size or (int(source.min()) >= -1 and int(source.max()) < sources), "outlets")
    extra = arrays["extra_codes"]
    require(not len(extra) or (int(extra.min()) >= 0 and int(extra.max()) < sources), "outlets")
    require(
        arrays["extra_offsets"].shape == (len(arrays["extra_slots"]) + 1,)
        and int(arrays["extra_offsets"][-1]) == len(extra),
        "extra outlets",
    )
    slots = arrays["extra_slots"]
    require(not len(slots) or (int(slots.min()) >= 0 and int(slots.max()) < size), "outlets")
    if "vectors" in arrays:
        vectors = arrays["vectors"]
        require(vectors.ndim == 2 and vectors.shape[0] == size, "vectors")
        require(vectors.dtype == np.float32, "vectors")
