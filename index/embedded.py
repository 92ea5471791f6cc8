"""An embedded store's Chroma without the chromadb package: Chroma's own engine, the compiled
`chromadb_rust_bindings` module that chromadb.PersistentClient wraps (chromadb/api/rust.py),
called as that wrapper calls it, through the subset of chromadb's Client and Collection that
index/store.py, index/repair.py and the tests use. Why, what it costs, what is kept of chromadb
(the pin, arguments by name, errors): docs/store.md, "Chroma without the chromadb package".
Results are dicts as chromadb's; vectors come back as lists. Of chromadb's checks of what is
written, only one is kept (newsbot writes records of its own making): an id given twice is
refused, where the engine would keep the last row.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Sequence
from functools import partialmethod
from pathlib import Path
from typing import Any

TENANT, DATABASE = "default_tenant", "default_database"
SCOPE = {"tenant": TENANT, "database": DATABASE}
# Each loaded index holds four data files and a metadata file open: chromadb sizes the cache of
# loaded indexes so (chromadb/api/rust.py).
HNSW_CACHE_SIZE = resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 5


def _configuration(configuration: dict[str, Any] | None, *, create: bool) -> str | None:
    """The JSON chromadb makes of a collection's configuration (collection_configuration.py's
    `create_`/`update_collection_configuration_to_json_str`) for a collection without an
    embedding function, the only kind newsbot makes: chromadb passes none when there is none."""
    if not configuration:
        return None
    return json.dumps(
        {
            "hnsw": configuration.get("hnsw"),
            "spann": None,
            "embedding_function": {"type": "legacy"} if create else None,
        }
    )


def _selected(ids: Sequence[str] | None, where: dict[str, Any] | None) -> dict[str, Any]:
    """The records a call selects, as the bindings take them (a filter as JSON text)."""
    return {
        "ids": list(ids) if ids is not None else None,
        "where": json.dumps(where) if where else None,
        "where_document": None,
    }


class EmbeddedClient:
    """Chroma's engine on the store in `folder`, created (with chromadb's default migrations)
    if missing. One per folder and process: index/store.py's SharedClient shares it. `close`
    drops the engine, which closes its files and loaded indexes."""

    def __init__(self, folder: Path) -> None:
        import chromadb_rust_bindings as rust

        database = rust.SqliteDBConfig(
            url=str(folder / "chroma.sqlite3"),
            hash_type=rust.MigrationHash.MD5,
            migration_mode=rust.MigrationMode.Apply,
        )
        self._bindings: Any = rust.Bindings(
            allow_reset=False,
            sqlite_db_config=database,
            persist_path=str(folder),
            hnsw_cache_size=HNSW_CACHE_SIZE,
        )

    @property
    def bindings(self) -> Any:
        if self._bindings is None:
            raise RuntimeError("this Chroma client is closed")
        return self._bindings

    def close(self) -> None:
        self._bindings = None

    def get_collection(self, name: str) -> EmbeddedCollection:
        return EmbeddedCollection(self, self.bindings.get_collection(name=name, **SCOPE))

    def get_or_create_collection(
        self,
        name: str,
        *,
        configuration: dict[str, Any] | None = None,
        embedding_function: None = None,  # chromadb's argument: newsbot embeds its own vectors
    ) -> EmbeddedCollection:
        model = self.bindings.create_collection(
            name=name,
            configuration_json_str=_configuration(configuration, create=True),
            schema_str=None,
            metadata=None,
            get_or_create=True,
            **SCOPE,
        )
        return EmbeddedCollection(self, model)

    def list_collections(self) -> list[EmbeddedCollection]:
        found = self.bindings.list_collections(limit=None, offset=0, **SCOPE)
        return [EmbeddedCollection(self, model) for model in found]

    def delete_collection(self, name: str) -> None:
        self.bindings.delete_collection(name=name, **SCOPE)


class EmbeddedCollection:
    """One collection: its name, id, metadata and configuration as read when it was opened (or
    last modified through it), and the record calls."""

    def __init__(self, client: EmbeddedClient, model: Any) -> None:
        self._client = client  # not the engine: a closed client's collections hold no files
        self.id = model.id
        self.name: str = model.name
        self.metadata: dict[str, Any] | None = model.metadata
        self.configuration_json: dict[str, Any] = model.configuration

    def _call(self, method: str, **arguments: Any) -> Any:
        # No local holds the engine: an error's traceback keeps this frame's locals, and a
        # held error would keep a closed engine's files and indexes (a retry or a repair runs
        # inside the `except` that caught it).
        return getattr(self._client.bindings, method)(
            collection_id=str(self.id), **arguments, **SCOPE
        )

    def count(self) -> int:
        return int(self._call("count"))

    def get(
        self,
        ids: Sequence[str] | None = None,
        *,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include: Sequence[str] = ("metadatas", "documents"),
    ) -> dict[str, Any]:
        got = self._call(
            "get", **_selected(ids, where), limit=limit, offset=offset or 0, include=list(include)
        )
        return {
            name: getattr(got, name) for name in ("ids", "embeddings", "documents", "metadatas")
        }

    def query(
        self,
        query_embeddings: Any,
        n_results: int = 10,
        *,
        ids: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        include: Sequence[str] = ("metadatas", "documents", "distances"),
    ) -> dict[str, Any]:
        found = self._call(
            "query",
            **_selected(ids, where),
            query_embeddings=query_embeddings,
            n_results=n_results,
            include=list(include),
        )
        names = ("ids", "distances", "documents", "metadatas", "embeddings")
        return {name: getattr(found, name) for name in names}

    def _write(
        self,
        method: str,
        ids: list[str],
        embeddings: Any = None,
        documents: list[str] | None = None,
        metadatas: list[dict[str, Any] | None] | None = None,
    ) -> None:
        if len(set(ids)) < len(ids):  # chromadb refuses them; the engine keeps the last
            raise ValueError(f"{method} of {self.name}: an id given twice")
        self._call(
            method,
            ids=list(ids),
            embeddings=embeddings,
            metadatas=metadatas,
            documents=documents,
            uris=None,
        )

    add = partialmethod(_write, "add")
    upsert = partialmethod(_write, "upsert")
    update = partialmethod(_write, "update")

    def delete(
        self, ids: Sequence[str] | None = None, *, where: dict[str, Any] | None = None
    ) -> None:
        self._call("delete", **_selected(ids, where), limit=None)

    def modify(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> None:
        """Replace the metadata (chromadb cannot set it empty) and/or update the configuration."""
        self._client.bindings.update_collection(
            collection_id=str(self.id),
            new_name=None,
            new_metadata=metadata,
            new_configuration_json_str=_configuration(configuration, create=False),
        )
        model = self._client.bindings.get_collection_by_id(collection_id=str(self.id), **SCOPE)
        self.metadata, self.configuration_json = model.metadata, model.configuration
