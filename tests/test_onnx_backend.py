"""The ONNX backend: sentence-transformers' vectors without torch, from a self-checking cache."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.errors import EmbeddingError
from bot.settings import DEFAULT_MODEL

SENTENCES = [
    "The central bank raised interest rates by a quarter point on Tuesday.",
    "Officials said the flooding had closed more than forty roads across the region.",
    "Shares in the carmaker fell 7% after it cut its forecast for the year.",
    "Negotiators in Doha reported progress, though no agreement has been signed.",
    "The minister told reporters that the budget would be balanced by 2027.",
    "Firefighters brought the blaze under control late on Sunday evening.",
    "A spokesperson for the company declined to comment on the allegations.",
    "Voters in three states will decide on the measure in November.",
    "The striker scored twice in the second half to secure a 3-1 win.",
    "Researchers found the vaccine reduced hospital admissions by half.",
]
WORD_COUNTS = [5, 9, 14, 23, 40, 65, 100, 140, 190, 250, 320, 400]


def news_text(words: int, seed: int) -> str:
    """Deterministic news-like text of exactly `words` words."""
    rng = random.Random(seed)
    pool: list[str] = []
    while len(pool) < words:
        pool.extend(rng.choice(SENTENCES).split())
    return " ".join(pool[:words])


TEXTS = [news_text(count, seed) for seed, count in enumerate(WORD_COUNTS + WORD_COUNTS[::-1])]


def cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.sum(left * right, axis=1)


@pytest.fixture(scope="session")
def reference_vectors() -> np.ndarray:
    """sentence-transformers on torch, the reference the ONNX backend must reproduce."""
    from sentence_transformers import SentenceTransformer

    from index.embed import resolve_model_path

    model = SentenceTransformer(str(resolve_model_path(DEFAULT_MODEL)), device="cpu")
    assert model.max_seq_length == 256
    return np.asarray(
        model.encode(TEXTS, batch_size=16, normalize_embeddings=True, show_progress_bar=False)
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose models/ cache holds the fp32 and int8 exports (exported once)."""
    from index.onnx_backend import export_model

    data = tmp_path_factory.mktemp("onnx-data")
    for precision in ("fp32", "int8"):
        export_model(DEFAULT_MODEL, precision, data / "models")
    return data


@pytest.fixture
def private_cache(data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's export cache that a test may damage."""
    cache = tmp_path / "models"
    shutil.copytree(data_dir / "models", cache)
    return cache


def embedder(
    precision: str,
    cache: Path,
    batch_size: int = 16,
    model: str = DEFAULT_MODEL,
    *,
    questions: bool = False,
) -> Any:
    from index.onnx_backend import OnnxEmbedder

    return OnnxEmbedder(model, precision, batch_size, cache_dir=cache, questions=questions)


def entry_folder(cache: Path) -> Path:
    (folder,) = [path for path in cache.iterdir() if path.is_dir()]
    return folder


def file_state(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [5, 64])
def test_fp32_vectors_match_sentence_transformers_in_padded_batches(
    data_dir: Path, reference_vectors: np.ndarray, batch_size: int
) -> None:
    onnx = embedder("fp32", data_dir / "models", batch_size=batch_size)
    counts = [len(encoding.ids) for encoding in onnx._tokenizer.encode_batch(TEXTS)]
    assert max(counts) == 256 and min(counts) < 16, "texts must span short to truncated"
    assert sum(count > 128 for count in counts) >= 8, "the shipped 128-token cut must matter"

    vectors = onnx.embed(TEXTS)

    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, reference_vectors).min() >= 0.9999
    assert onnx.identity.to_metadata() == {
        "embedding_model": DEFAULT_MODEL,
        "embedding_dimension": 384,
        "embedding_backend": "onnx",
        "embedding_precision": "fp32",
    }
    assert onnx.max_tokens == 256


@pytest.mark.slow
def test_a_text_embeds_the_same_alone_or_beside_long_ones(data_dir: Path) -> None:
    onnx = embedder("fp32", data_dir / "models", batch_size=64)
    alone = onnx.embed([TEXTS[0]])
    padded = onnx.embed([TEXTS[0], TEXTS[11], TEXTS[5]])[:1]
    assert cosines(alone, padded)[0] >= 0.99999
    assert onnx.embed([]).shape == (0, 384)
    assert np.isfinite(onnx.embed([""])).all()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_process_that_asks_embeds_as_one_that_ingests(data_dir: Path, precision: str) -> None:
    """A process that asks runs the model on more threads: a store must still be searched with
    the vectors it was built with, for a question alone and for texts in batches."""
    ingesting = embedder(precision, data_dir / "models", batch_size=4)
    asking = embedder(precision, data_dir / "models", batch_size=4, questions=True)
    for texts in ([TEXTS[0]], [TEXTS[5]], TEXTS):
        assert asking.embed(texts).tolist() == ingesting.embed(texts).tolist()


@pytest.mark.slow
def test_texts_run_unpadded_in_batches_of_one_length(
    data_dir: Path, reference_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.onnx_backend

    onnx = embedder("fp32", data_dir / "models", batch_size=2)
    shapes: list[tuple[int, int]] = []
    run_batch = index.onnx_backend._run_batch

    def watched(session: Any, rows: Any) -> np.ndarray:
        assert len({len(row) for row in rows}) == 1, "a batch mixes lengths: rows were padded"
        shapes.append((len(rows), len(rows[0])))
        return run_batch(session, rows)

    monkeypatch.setattr(index.onnx_backend, "_run_batch", watched)
    texts = [*TEXTS, TEXTS[3], TEXTS[3], TEXTS[3]]  # three more of one length: batches of 2
    vectors = onnx.embed(texts)
    assert cosines(vectors[: len(TEXTS)], reference_vectors).min() >= 0.9999
    assert cosines(vectors[len(TEXTS) :], reference_vectors[[3, 3, 3]]).min() >= 0.9999
    assert sum(size for size, _ in shapes) == len(texts) and max(s for s, _ in shapes) == 2
    assert onnx.embed_tokens(onnx.tokenize(texts)).tolist() == vectors.tolist()


@pytest.mark.slow
def test_int8_vectors_stay_close_to_sentence_transformers(
    data_dir: Path, reference_vectors: np.ndarray
) -> None:
    onnx = embedder("int8", data_dir / "models")
    vectors = onnx.embed(TEXTS)
    assert onnx.identity.precision == "int8"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, reference_vectors).min() >= 0.97
    assert (
        onnx.path.stat().st_size
        < entry_folder(data_dir / "models").joinpath("model-fp32.onnx").stat().st_size / 3
    )


@pytest.mark.slow
def test_a_process_that_only_embeds_never_imports_torch(
    data_dir: Path, reference_vectors: np.ndarray
) -> None:
    script = """
import json, sys
import index.onnx_backend
after_import = sorted(m for m in ("onnxruntime", "torch") if m in sys.modules)
from bot.settings import load_settings
from index.embed import load_embedder
embedder = load_embedder(load_settings(data_dir=sys.argv[1], embedding_backend="onnx"))
vector = embedder.embed([sys.argv[2]])[0]
heavy = ("torch", "sentence_transformers", "transformers")
print(json.dumps({
    "after_import": after_import,
    "heavy": sorted(m for m in heavy if m in sys.modules),
    "backend": embedder.identity.backend,
    "vector": vector.tolist(),
}))
"""
    environment = dict(os.environ)  # NEWSBOT_* were cleared by conftest; its NEWSBOT_CONFIG stays
    result = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), TEXTS[3]],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["after_import"] == [], "importing the backend must stay cheap"
    assert report["heavy"] == []
    assert report["backend"] == "onnx"
    assert float(np.dot(report["vector"], reference_vectors[3])) >= 0.9999


OFFLINE_VARIABLES = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "TRANSFORMERS_VERBOSITY",
)


@pytest.mark.slow
def test_both_backends_load_the_model_with_no_network_and_no_offline_variables(
    tmp_path: Path, reference_vectors: np.ndarray
) -> None:
    # A process whose every connection or name lookup is recorded and refused, with none of the
    # variables that would tell huggingface to stay offline: loading by path (and exporting to
    # ONNX into an empty cache) must not need them, nor set them in the host's process.
    script = """
import json, os, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:200])
    raise OSError("network attempted")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.getaddrinfo = socket.create_connection = refuse
from bot.settings import load_settings
from index.embed import load_embedder
vectors = {}
for backend in ("torch", "onnx"):
    settings = load_settings(data_dir=sys.argv[1], embedding_backend=backend,
                             model_cache_dir=os.path.join(sys.argv[1], "models"))
    vectors[backend] = load_embedder(settings).embed([sys.argv[2]])[0].tolist()
print(json.dumps({"attempts": attempts, "vectors": vectors,
                  "set": [n for n in sys.argv[3:] if n in os.environ]}))
"""
    environment = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), TEXTS[3], *OFFLINE_VARIABLES],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["set"] == []
    assert list((tmp_path / "models").glob("*/model-fp32.onnx"))  # exported here, offline
    for vector in report["vectors"].values():
        assert float(np.dot(vector, reference_vectors[3])) >= 0.9999


@pytest.mark.slow
def test_a_second_load_reuses_the_export(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import index.onnx_backend as backend

    folder = entry_folder(data_dir / "models")
    before = {path.name: file_state(path) for path in folder.glob("model-*")}

    def no_export(*args: object) -> None:
        raise AssertionError("a valid cached export was exported again")

    monkeypatch.setattr(backend, "_build", no_export)
    for precision in ("fp32", "int8"):
        embedder(precision, data_dir / "models")
        backend.export_model(DEFAULT_MODEL, precision, data_dir / "models")

    assert {path.name: file_state(path) for path in folder.glob("model-*")} == before


@pytest.mark.slow
def test_the_export_command_derives_the_runtime_copy(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image built with `newsbot model export` opens the runtime copy at its first start,
    without deriving it (which a read-only cache would not allow)."""
    import index.onnx_backend as backend

    folder = entry_folder(private_cache)
    for copy in folder.glob("runtime-*"):
        shutil.rmtree(copy)
    backend.export_model(DEFAULT_MODEL, "int8", private_cache)
    (copy,) = folder.glob("runtime-int8-*")

    def no_derive(*args: object) -> None:
        raise AssertionError("the export's runtime copy was derived again")

    monkeypatch.setattr(backend, "_derive_runtime_copy", no_derive)
    before = file_state(copy / "model.onnx.data")
    onnx = embedder("int8", private_cache)
    assert onnx.embed(TEXTS[:3]).tolist() == plain_vectors(onnx, TEXTS[:3]).tolist()
    assert file_state(copy / "model.onnx.data") == before


def plain_vectors(onnx: Any, texts: list[str]) -> np.ndarray:
    """The vectors of the export itself, opened as it was before runtime copies (in the same
    batches: a row's float rounding depends on its batch)."""
    import copy

    from index.onnx_backend import _open_session

    twin = copy.copy(onnx)
    twin._session = _open_session(onnx.path)
    return np.asarray(twin.embed(texts))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_runtime_copy_gives_the_exports_vectors_and_is_reused(
    private_cache: Path, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.onnx_backend as backend

    first = embedder(precision, private_cache)
    (copy,) = entry_folder(private_cache).glob(f"runtime-{precision}-*")
    assert sorted(path.name for path in copy.iterdir()) == [
        "checksums.json",
        "model.onnx",
        "model.onnx.data",
    ]
    assert first.embed(TEXTS).tolist() == plain_vectors(first, TEXTS).tolist()

    def no_derive(*args: object) -> None:
        raise AssertionError("a valid runtime copy was derived again")

    monkeypatch.setattr(backend, "_derive_runtime_copy", no_derive)
    before = file_state(copy / "model.onnx.data")
    again = embedder(precision, private_cache)
    assert again.embed(TEXTS[:5]).tolist() == first.embed(TEXTS[:5]).tolist()
    assert file_state(copy / "model.onnx.data") == before


@pytest.mark.slow
def test_a_damaged_runtime_copy_is_not_used_and_is_derived_again(
    private_cache: Path, reference_vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    embedder("fp32", private_cache)
    (copy,) = entry_folder(private_cache).glob("runtime-fp32-*")
    weights = copy / "model.onnx.data"
    with weights.open("r+b") as handle:  # same size, other bytes: mapped, it would embed wrong
        handle.seek(weights.stat().st_size // 2)
        handle.write(os.urandom(4096))

    onnx = embedder("fp32", private_cache)

    assert "differ from their checksums" in caplog.text
    assert cosines(onnx.embed(TEXTS[:4]), reference_vectors[:4]).min() >= 0.9999
    assert not copy.exists()
    assert (
        embedder("fp32", private_cache).embed(TEXTS[:4]).tolist() == onnx.embed(TEXTS[:4]).tolist()
    )
    assert copy.is_dir()
    assert not list(entry_folder(private_cache).glob(".runtime-*"))


@pytest.mark.slow
def test_a_new_copy_removes_the_older_ones_and_killed_derivations_scratch(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.onnx_backend as backend

    embedder("fp32", private_cache)
    folder = entry_folder(private_cache)
    (old,) = folder.glob("runtime-fp32-*")
    other_precision = folder / "runtime-int8-000000000000"
    killed, running = folder / ".runtime-killed", folder / ".runtime-running"
    for kept_or_not in (other_precision, killed, running):
        kept_or_not.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(killed, (two_hours_ago, two_hours_ago))
    # A new recipe (level, weights file) names a new copy, as a new onnxruntime or export does.
    monkeypatch.setattr(backend, "RUNTIME_FORMAT", backend.RUNTIME_FORMAT + 1)

    onnx = embedder("fp32", private_cache)

    (new,) = folder.glob("runtime-fp32-*")
    assert new == backend.runtime_folder(onnx.path, "fp32") != old
    assert not killed.exists()
    assert running.is_dir() and other_precision.is_dir()


@pytest.mark.slow
def test_a_derivation_that_failed_is_not_tried_at_every_start(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import index.onnx_backend as backend

    for copy in entry_folder(private_cache).glob("runtime-*"):
        shutil.rmtree(copy)
    tries = []
    derive = backend._derive_runtime_copy

    def failing(*args: object) -> None:
        tries.append(args)
        raise EmbeddingError("its vectors differ from the export's")

    monkeypatch.setattr(backend, "_derive_runtime_copy", failing)
    caplog.set_level(logging.INFO, logger="index.onnx_backend")
    embedder("fp32", private_cache)
    onnx = embedder("fp32", private_cache)

    assert len(tries) == 1
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "vectors differ" in caplog.records[-1].getMessage()
    assert onnx.embed(TEXTS[:3]).tolist() == plain_vectors(onnx, TEXTS[:3]).tolist()

    # `newsbot model export` is asked for by a person: it tries again, and its copy is used.
    monkeypatch.setattr(backend, "_derive_runtime_copy", derive)
    backend.export_model(DEFAULT_MODEL, "fp32", private_cache)
    assert backend.runtime_folder(onnx.path, "fp32").is_dir()
    assert not list(entry_folder(private_cache).glob("*.failed"))


@pytest.mark.slow
def test_a_copy_that_fails_to_open_once_is_kept(
    private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.onnx_backend as backend

    embedder("fp32", private_cache)
    (copy,) = entry_folder(private_cache).glob("runtime-fp32-*")
    open_session = backend._open_session

    def no_memory_for_copies(path: Path, *args: Any, optimised: bool = False, **kw: Any) -> Any:
        if optimised:
            raise MemoryError("cannot allocate")  # transient, in this process only
        return open_session(path, *args, **kw)

    monkeypatch.setattr(backend, "_open_session", no_memory_for_copies)
    embedder("fp32", private_cache)

    assert copy.is_dir()


def _truncate(folder: Path) -> str:
    path = folder / "model-fp32.onnx"
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    return "fp32"


def _garble_keeping_size(folder: Path) -> str:
    path = folder / "model-int8.onnx"
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(os.urandom(4096))
    return "int8"


def _unloadable_with_matching_manifest(folder: Path) -> str:
    import hashlib

    path = folder / "model-int8.onnx"
    path.write_bytes(b"this is not an onnx model")
    manifest_path = folder / "model-int8.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["size"] = path.stat().st_size
    manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return "int8"


def _stale_manifest(folder: Path) -> str:
    manifest_path = folder / "model-int8.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["source_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    return "int8"


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [_truncate, _garble_keeping_size, _unloadable_with_matching_manifest, _stale_manifest],
    ids=["truncated", "garbled", "unloadable", "stale"],
)
def test_a_damaged_export_is_rebuilt(
    private_cache: Path, reference_vectors: np.ndarray, damage: Any
) -> None:
    import hashlib

    folder = entry_folder(private_cache)
    precision = damage(folder)
    damaged = file_state(folder / f"model-{precision}.onnx")

    onnx = embedder(precision, private_cache)

    assert file_state(onnx.path) != damaged
    manifest = json.loads((folder / f"model-{precision}.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(onnx.path.read_bytes()).hexdigest()
    minimum = 0.9999 if precision == "fp32" else 0.97
    some = slice(0, None, 4)  # short to truncated, enough to show the rebuilt model is right
    assert cosines(onnx.embed(TEXTS[some]), reference_vectors[some]).min() >= minimum
    assert not [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]


@pytest.mark.slow
def test_export_command_rechecks_every_byte(private_cache: Path) -> None:
    """Garbled in place with its timestamp put back: start-up may trust it, the command does not."""
    from index.onnx_backend import export_model

    path = entry_folder(private_cache) / "model-int8.onnx"
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(stat.st_size // 3)
        handle.write(b"\0" * 1024)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    rebuilt = export_model(DEFAULT_MODEL, "int8", private_cache)

    assert rebuilt == path and path.stat().st_ino != stat.st_ino


@pytest.mark.slow
def test_a_changed_model_gets_its_own_cache_entry(
    private_cache: Path, tmp_path: Path, reference_vectors: np.ndarray
) -> None:
    from index.embed import resolve_model_path

    original = resolve_model_path(DEFAULT_MODEL)
    changed = tmp_path / "minilm-retrained"
    for source in original.rglob("*"):
        if source.is_file():
            target = changed / source.relative_to(original)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)
    # Same weights, one changed file: the checksum, and so the cache entry, must change.
    (changed / "data_config.json").unlink()
    (changed / "data_config.json").write_text("[]")
    old_entry = entry_folder(private_cache)

    onnx = embedder("fp32", private_cache, model=str(changed))

    entries = sorted(path for path in private_cache.iterdir() if path.is_dir())
    assert len(entries) == 2 and old_entry in entries
    assert onnx.path.parent != old_entry and onnx.path.parent.name.startswith("minilm-retrained-")
    assert onnx.identity.model == str(changed)
    assert cosines(onnx.embed(TEXTS[:4]), reference_vectors[:4]).min() >= 0.9999


def test_an_unknown_precision_is_refused(tmp_path: Path) -> None:
    from index.onnx_backend import OnnxEmbedder, export_model

    with pytest.raises(EmbeddingError, match="precision 'fp16'"):
        OnnxEmbedder(DEFAULT_MODEL, "fp16", 16, cache_dir=tmp_path)
    with pytest.raises(EmbeddingError, match="precision"):
        export_model(DEFAULT_MODEL, "int4", tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="not a model folder"):
        embedder("fp32", tmp_path / "cache", model=str(tmp_path))
