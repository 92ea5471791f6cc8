"""The ONNX backend: exported once with torch, run on onnxruntime without (docs/ingesting.md)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from index.errors import EmbeddingError
from index.files import write_atomically, written_in_place
from index.model import EmbeddingIdentity, load_tokenizer, model_max_tokens, resolve_model_path

if TYPE_CHECKING:
    import numpy as np
    from onnxruntime import InferenceSession
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, outputs, pooling): old cache entries are ignored.
EXPORT_FORMAT = 1
OPSET = 17
PRECISIONS = ("fp32", "int8")
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"
# Exports are checked against the model they came from before they are kept.
MIN_COSINE = {"fp32": 0.9999, "int8": 0.95}
_CHECK_TEXTS = (
    "Rates rose.",
    "The central bank raised interest rates by a quarter point on Tuesday, its third increase "
    "this year, and said further rises were likely while inflation stays above target.",
    "Flooding closed roads across the region.",
)
# Folders of other runtimes' copies of the model, which do not change what torch loads.
_SKIPPED_FOLDERS = {"onnx", "openvino", ".git", ".cache"}
_SOURCE_SUFFIXES = {".json", ".txt", ".safetensors", ".bin", ".model", ".pt", ".pth"}
_CHECKSUMS = "checksums.json"  # the cache's memo (_ChecksumMemo); a runtime copy's manifest
# The runtime copy of an export (see _runtime_session): the optimised graph, its weights beside it.
_RUNTIME_FILES = ("model.onnx", "model.onnx.data")
# Bump when the runtime copy's recipe changes (optimisation level, weights file settings).
RUNTIME_FORMAT = 1
# Tensors smaller than this stay in the graph: its 4-8 byte scalars and shapes, which onnxruntime
# reads as it loads it; all weights (the smallest, 384-float biases, take 1.5 KiB) go to the file.
_EXTERNAL_MIN_BYTES = 1024
# A scratch folder older than this was left by a deriving process that was killed.
_STALE_SCRATCH_SECONDS = 3600
# Intra-op threads of a process that asks: 12.5 -> 8.7 ms a 40-piece question (docs/benchmarks.md).
_QUESTION_THREADS = 2
# Versions a manifest records; all installed, as the export has just imported them.
_RECORDED_PACKAGES = "torch transformers sentence-transformers onnx onnxruntime tokenizers".split()


class _ChecksumMemo:
    """sha256 of files, remembered by (size, mtime_ns, inode): hashing the 90 MB weights and export
    costs ~0.15 s, a third of a question's start-up. With no path: always hash."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if path is not None and path.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded

    def sha256(self, path: Path) -> str:
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        key = str(path.resolve())
        remembered = self._entries.get(key)
        if self._path is not None and remembered is not None and remembered[:3] == signature:
            return str(remembered[3])
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self._entries[key] = [*signature, digest]
        self._dirty = True
        return digest

    def save(self) -> None:
        if self._path is None or not self._dirty:
            return
        try:
            write_atomically(self._path, json.dumps(self._entries, indent=0).encode())
            self._dirty = False
        except OSError as exc:  # a read-only cache still works, it only starts slower
            log.debug("cannot save checksums to %s: %s", self._path, exc)


def source_checksum(model_path: Path, memo: _ChecksumMemo) -> str:
    """One sha256 over the model's files (names and contents) and the export format."""
    digest = hashlib.sha256(f"newsbot-onnx-export-{EXPORT_FORMAT}\n".encode())
    files = [
        path
        for path in sorted(model_path.rglob("*"))
        if path.is_file()
        and path.suffix in _SOURCE_SUFFIXES
        and not _SKIPPED_FOLDERS.intersection(path.relative_to(model_path).parts[:-1])
    ]
    if not files:
        raise EmbeddingError(f"no model files found in {model_path}")
    for path in files:
        digest.update(f"{path.relative_to(model_path).as_posix()}\0{memo.sha256(path)}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Entry:
    model: str
    model_path: Path
    folder: Path
    source_sha256: str

    def onnx_path(self, precision: str) -> Path:
        return self.folder / f"model-{precision}.onnx"

    def manifest_path(self, precision: str) -> Path:
        return self.folder / f"model-{precision}.json"


def _entry(model: str, cache_dir: Path, memo: _ChecksumMemo) -> _Entry:
    model_path = resolve_model_path(model)
    checksum = source_checksum(model_path, memo)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name) or "model"
    return _Entry(model, model_path, cache_dir / f"{name}-{checksum[:12]}", checksum)


def _problem(entry: _Entry, precision: str, memo: _ChecksumMemo) -> str | None:
    """Why the cached export cannot be used, or None when it is whole and current."""
    onnx_path = entry.onnx_path(precision)
    if not onnx_path.is_file():
        return "not exported yet"
    try:
        manifest = json.loads(entry.manifest_path(precision).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        return "no readable manifest"
    expected = {
        "format": EXPORT_FORMAT,
        "precision": precision,
        "source_sha256": entry.source_sha256,
        "file": onnx_path.name,
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"stale manifest ({key} is {manifest.get(key)!r}, expected {value!r})"
    if onnx_path.stat().st_size != manifest.get("size"):
        return "file size differs from the manifest (truncated?)"
    if memo.sha256(onnx_path) != manifest.get("sha256"):
        return "checksum differs from the manifest (corrupt)"
    return None


def _write_manifest(entry: _Entry, precision: str, seconds: float, memo: _ChecksumMemo) -> None:
    onnx_path = entry.onnx_path(precision)  # a new file (inode): its checksum is not remembered
    manifest = {
        "format": EXPORT_FORMAT,
        "model": entry.model,
        "model_path": str(entry.model_path),
        "source_sha256": entry.source_sha256,
        "precision": precision,
        "file": onnx_path.name,
        "size": onnx_path.stat().st_size,
        "sha256": memo.sha256(onnx_path),
        "export_seconds": round(seconds, 2),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(),
    }
    write_atomically(entry.manifest_path(precision), json.dumps(manifest, indent=2).encode())


def _versions() -> dict[str, str]:
    """The recorded packages' versions; one installed without pip metadata is left out."""
    versions = {}
    for package in _RECORDED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


# -- exporting (the only place torch is imported) ----------------------------------------------
def _load_reference(model_path: Path) -> tuple[Any, Any]:
    """The sentence-transformers model and its transformer, if this export reproduces them."""
    try:
        import torch  # noqa: F401
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingError(
            f"exporting the embedding model to ONNX needs torch and sentence-transformers ({exc})",
            hint="pip install torch sentence-transformers (needed once, to export), "
            "or set NEWSBOT_EMBEDDING_BACKEND=torch",
        ) from exc
    try:
        reference = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    except Exception as exc:
        raise EmbeddingError(f"cannot load embedding model from {model_path}: {exc}") from exc
    modules = [type(module).__name__ for module in reference]
    pooling = reference[1] if len(modules) > 1 else None
    mode = getattr(pooling, "pooling_mode", None)
    mean_pooling = mode in ("mean", ("mean",), ["mean"]) or bool(
        getattr(pooling, "pooling_mode_mean_tokens", False)
    )
    transformer = getattr(reference[0], "auto_model", None) or getattr(reference[0], "model", None)
    bert_like = hasattr(transformer, "embeddings") and hasattr(
        getattr(transformer, "encoder", None), "layer"
    )
    if modules[:2] != ["Transformer", "Pooling"] or not mean_pooling or not bert_like:
        raise EmbeddingError(
            f"the ONNX backend supports BERT-style models with mean pooling; {model_path} is "
            f"{' + '.join(modules)} on {type(transformer).__name__}",
            hint="set NEWSBOT_EMBEDDING_BACKEND=torch for this model",
        )
    return reference, transformer


def _export_fp32(entry: _Entry, target: Path) -> None:
    """Export the model's encoder, pooling and normalisation to `target`, and check it."""
    import torch

    reference, transformer = _load_reference(entry.model_path)
    if hasattr(transformer, "set_attn_implementation"):
        # The eager path is plain matmul + softmax, which the TorchScript exporter traces exactly.
        with contextlib.suppress(Exception):
            transformer.set_attn_implementation("eager")
    else:
        transformer.config._attn_implementation = "eager"

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = transformer.embeddings
            self.layers = transformer.encoder.layer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.embeddings(
                input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids)
            )
            mask = attention_mask.to(hidden.dtype)
            # (batch, 1, 1, seq): 0 where a token may be attended to, the lowest float where not.
            additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
            for layer in self.layers:
                output = layer(hidden, additive)
                hidden = output[0] if isinstance(output, tuple) else output
            weights = mask.unsqueeze(-1)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    encoder = SentenceEncoder().eval()
    # Two rows of different lengths, so the trace sees padding.
    example_ids = torch.tensor([[101, 2023, 2003, 102, 0, 0], [101, 2023, 2003, 1037, 3231, 102]])
    example_mask = (example_ids != 0).to(torch.int64)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            encoder,
            (example_ids, example_mask),
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dynamic_axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    expected = reference.encode(
        list(_CHECK_TEXTS),
        normalize_embeddings=True,
        convert_to_numpy=True,
        batch_size=8,
        show_progress_bar=False,
    )
    _check_export(entry, target, expected, "fp32")


def _quantize_int8(entry: _Entry, source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def keep(record: logging.LogRecord) -> bool:  # not its dozens of notes to the root logger
        from_quantizer = f"onnxruntime{os.sep}quantization" in record.pathname
        return not from_quantizer or record.levelno >= logging.ERROR

    logging.getLogger().addFilter(keep)
    try:  # per-channel signed int8 weights, unsigned int8 activations (optimum's avx512_vnni)
        quantize_dynamic(
            str(source),
            str(target),
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.getLogger().removeFilter(keep)
    _check_export(entry, target, _run_checks(entry, _open_session(source)), "int8")


def _run_checks(entry: _Entry, session: InferenceSession) -> np.ndarray:
    tokenizer = load_tokenizer(entry.model_path, model_max_tokens(entry.model_path))
    encodings = tokenizer.encode_batch(list(_CHECK_TEXTS))
    return _run_batch(session, [encoding.ids for encoding in encodings])


def _check_export(entry: _Entry, path: Path, expected: np.ndarray, precision: str) -> None:
    import numpy as np

    try:
        got = _run_checks(entry, _open_session(path))
    except Exception as exc:
        raise EmbeddingError(
            f"the {precision} ONNX export of {entry.model} does not run: {exc}"
        ) from exc
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if cosine < MIN_COSINE[precision]:
        raise EmbeddingError(
            f"the {precision} ONNX export of {entry.model} disagrees with the model "
            f"(cosine {cosine:.5f} < {MIN_COSINE[precision]})",
            hint="set NEWSBOT_EMBEDDING_BACKEND=torch and report this",
        )


def _build(entry: _Entry, precision: str, fp32_source: Path | None, memo: _ChecksumMemo) -> None:
    started = time.perf_counter()
    target = entry.onnx_path(precision)
    with written_in_place(target) as temporary:
        if fp32_source is None:
            _export_fp32(entry, temporary)
        else:
            _quantize_int8(entry, fp32_source, temporary)
    seconds = time.perf_counter() - started
    _write_manifest(entry, precision, seconds, memo)
    log.info("exported %s (%s) to %s in %.1f s", entry.model, precision, target, seconds)


def _ensure(entry: _Entry, precision: str, memo: _ChecksumMemo, *, force: bool = False) -> Path:
    """The path of a whole, current export, built first if needed."""
    try:
        if force or _problem(entry, precision, memo) is not None:
            # int8 is quantized from the fp32 export, which is made (and locked for) first.
            fp32_source = _ensure(entry, "fp32", memo) if precision == "int8" else None
            entry.folder.mkdir(parents=True, exist_ok=True)
            # One exporter per cache entry at a time: two processes starting together export once.
            with FileLock(str(entry.folder / ".lock")):
                # Another process may have finished this export while we waited for the lock.
                problem = "rebuild requested" if force else _problem(entry, precision, memo)
                if problem is not None:
                    log.info("exporting %s (%s) to ONNX: %s", entry.model, precision, problem)
                    try:
                        _build(entry, precision, fp32_source, memo)
                    except EmbeddingError:
                        raise
                    except Exception as exc:
                        raise EmbeddingError(
                            f"cannot export {entry.model} ({precision}) to ONNX in "
                            f"{entry.folder}: {exc}",
                            hint="set NEWSBOT_EMBEDDING_BACKEND=torch to embed without ONNX",
                        ) from exc
    finally:
        memo.save()
    return entry.onnx_path(precision)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise EmbeddingError(
            f"unknown embedding precision {precision!r}",
            hint="set NEWSBOT_EMBEDDING_PRECISION to fp32 or int8",
        )


def export_model(model: str, precision: str, cache_dir: Path, *, force: bool = False) -> Path:
    """The ONNX export of `model` at `precision` (`newsbot model export`), and its runtime copy,
    so that a cache built ahead (an image's) starts fast even if read-only: a cached export is
    checked byte by byte, unlike at start-up; `force` rebuilds it. A runtime copy that failed
    before is tried again (a start-up does not: a marker says it failed)."""
    _check_precision(precision)
    memo = _ChecksumMemo(None)
    entry = _entry(model, cache_dir, memo)
    path = _ensure(entry, precision, memo, force=force)
    _runtime_session(entry, precision, memo, retry=True)
    return path


# -- running (no torch) ------------------------------------------------------------------------
def _open_session(
    path: Path, threads: int = 1, *, optimised: bool = False, save_to: Path | None = None
) -> InferenceSession:
    """A CPU session on `threads` that sleep when idle (spinning took the core others need:
    docs/benchmarks.md, "Scale"). An `optimised` graph (a runtime copy) runs as it is; `save_to`
    saves the graph optimised, its weights in a file beside it."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    level = onnxruntime.GraphOptimizationLevel
    options.graph_optimization_level = level.ORT_DISABLE_ALL if optimised else level.ORT_ENABLE_ALL
    if save_to is not None:
        # Not ALL: its layouts for this CPU must not be saved (docs/benchmarks.md, "Cold start").
        options.graph_optimization_level = level.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(save_to)
        config = {"file_name": _RUNTIME_FILES[1], "min_size_in_bytes": str(_EXTERNAL_MIN_BYTES)}
        for name, value in config.items():
            options.add_session_config_entry(
                f"session.optimized_model_external_initializers_{name}", value
            )
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def runtime_folder(export: Path, precision: str, memo: _ChecksumMemo | None = None) -> Path:
    """The folder of the runtime copy of `export` (see _runtime_session), beside it."""
    import onnxruntime

    sha256 = (memo or _ChecksumMemo(None)).sha256(export)
    key = f"{RUNTIME_FORMAT} {sha256} {onnxruntime.__version__} {platform.machine()}"
    return export.parent / f"runtime-{precision}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _runtime_session(
    entry: _Entry, precision: str, memo: _ChecksumMemo, threads: int = 1, *, retry: bool = False
) -> InferenceSession | None:
    """A session on the export's runtime copy (docs/ingesting.md: the graph optimised once,
    its weights mapped from a file), derived first if missing and not marked as failed (or
    `retry`); None (logged) when there is none to be had: the export is then opened as it is."""
    export = entry.onnx_path(precision)
    folder = runtime_folder(export, precision, memo)
    failed = folder.with_name(f"{folder.name}.failed")
    try:
        if not folder.is_dir():
            if failed.is_file() and not retry:
                log.info("no runtime copy of %s: %s (%s)", export.name, failed.read_text(), failed)
                return None
            try:
                _derive_runtime_copy(entry, export, folder)
            except Exception as exc:
                with contextlib.suppress(OSError):  # not in a cache the user cannot write to
                    write_atomically(failed, str(exc).encode())
                raise
        try:
            recorded = json.loads((folder / _CHECKSUMS).read_text())
            whole = recorded == {file: memo.sha256(folder / file) for file in _RUNTIME_FILES}
        except (FileNotFoundError, ValueError):
            whole = False
        if not whole:
            shutil.rmtree(folder, ignore_errors=True)
            raise EmbeddingError("its files differ from their checksums")
        return _open_session(folder / _RUNTIME_FILES[0], threads, optimised=True)
    except Exception as exc:
        # A cache the user cannot write to only starts slower, as with the checksums.
        level = logging.INFO if isinstance(exc, PermissionError) else logging.WARNING
        log.log(level, "not using the runtime copy %s of %s: %s", folder, export.name, exc)
        return None
    finally:
        memo.save()


def _derive_runtime_copy(entry: _Entry, export: Path, folder: Path) -> None:
    """Write the runtime copy of `export` to `folder`, whole or not at all, then remove what it
    replaces (docs/ingesting.md, "The ONNX backend and its export cache")."""
    import numpy as np

    scratch = Path(tempfile.mkdtemp(prefix=".runtime-", dir=entry.folder))
    try:
        model = scratch / _RUNTIME_FILES[0]
        _open_session(export, save_to=model)
        expected = _run_checks(entry, _open_session(export))
        if not np.array_equal(_run_checks(entry, _open_session(model, optimised=True)), expected):
            raise EmbeddingError("its vectors differ from the export's")
        checksums = {file: _ChecksumMemo(None).sha256(scratch / file) for file in _RUNTIME_FILES}
        write_atomically(scratch / _CHECKSUMS, json.dumps(checksums).encode())
        os.chmod(scratch, 0o755)
        try:
            os.rename(scratch, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stale = time.time() - _STALE_SCRATCH_SECONDS
    copies = entry.folder.glob(folder.name.rsplit("-", 1)[0] + "-*")
    for other in itertools.chain(copies, entry.folder.glob(".runtime-*")):
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            if other != folder and (
                not other.name.startswith(".") or other.stat().st_mtime < stale
            ):
                shutil.rmtree(other) if other.is_dir() else other.unlink()


def _run_batch(session: InferenceSession, rows: Sequence[Sequence[int]]) -> np.ndarray:
    import numpy as np

    length = max(len(row) for row in rows)
    input_ids = np.zeros((len(rows), length), dtype=np.int64)
    attention_mask = np.zeros((len(rows), length), dtype=np.int64)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = row
        attention_mask[index, : len(row)] = 1
    (vectors,) = session.run(
        [OUTPUT_NAME], {"input_ids": input_ids, "attention_mask": attention_mask}
    )
    return np.asarray(vectors, dtype=np.float32)


class OnnxEmbedder:
    """The model's ONNX export on onnxruntime + tokenizers: sentence-transformers' vectors.
    `questions` (a process that asks: Bot.warm): each call runs on `_QUESTION_THREADS`, batches in
    turn; otherwise on one, `embed_tokens` running batches side by side (a two-thread session
    cost an ingest 20% more CPU: docs/benchmarks.md, "Scale"). One session a process."""

    def __init__(
        self,
        model: str,
        precision: str,
        batch_size: int,
        cache_dir: Path,
        *,
        questions: bool = False,
    ) -> None:
        _check_precision(precision)
        memo = _ChecksumMemo(cache_dir / _CHECKSUMS)
        entry = _entry(model, cache_dir, memo)
        self.max_tokens = model_max_tokens(entry.model_path)
        self.batch_size = batch_size
        try:
            self._cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            self._cores = os.cpu_count() or 1
        # One pool for the process's life: threads started for every model call made an ingest's
        # RSS grow by 3-17 MiB a batch (docs/benchmarks.md, "Bulk input").
        self._pool = ThreadPoolExecutor(self._cores, thread_name_prefix="newsbot-embed")
        self.path = _ensure(entry, precision, memo)
        self._threads = min(_QUESTION_THREADS, self._cores) if questions else 1
        try:
            self._session = _runtime_session(
                entry, precision, memo, self._threads
            ) or _open_session(self.path, self._threads)
        except Exception as exc:  # whole by its checksum, yet not loadable: built by a bad run
            log.warning("onnxruntime cannot load %s (%s); exporting it again", self.path, exc)
            path = _ensure(entry, precision, memo, force=True)
            try:  # _check_export has just loaded and run the rebuilt export: rare
                self._session = _open_session(path, self._threads)
            except Exception as again:
                raise EmbeddingError(
                    f"onnxruntime cannot load the ONNX export {path}: {again}",
                    hint="set NEWSBOT_EMBEDDING_BACKEND=torch",
                ) from again
        self._model_path = entry.model_path
        # The export fixes the vectors' width (only the batch axis is dynamic).
        dimension = int(self._session.get_outputs()[0].shape[1])
        self.identity = EmbeddingIdentity(model, dimension, "onnx", precision)

    @functools.cached_property
    def _tokenizer(self) -> Tokenizer:
        """Loaded on first use: its load holds the GIL (~0.035 s), so Bot.warm has it load beside
        Chroma's first read (docs/benchmarks.md, "Cold start")."""
        return load_tokenizer(self._model_path, self.max_tokens)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text as the model reads them: [CLS] ... [SEP], at most
        `max_tokens`. `embed_tokens` of these is `embed` of the texts."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]

    def embed_tokens(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """Unit-length vectors of tokenized texts (see `tokenize`), one row each, in order."""
        import numpy as np

        vectors = np.zeros((len(rows), self.identity.dimension), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
        # Rows of one length run together, at most batch_size at a time: none is padded, and
        # attention's scores stay in cache (8-10% less model time: docs/benchmarks.md, "Ingest").
        batches = []
        for _, same_length in itertools.groupby(order, key=lambda index: len(rows[index])):
            run = list(same_length)
            batches += [
                run[start : start + self.batch_size]
                for start in range(0, len(run), self.batch_size)
            ]

        def embed_batch(batch: list[int]) -> None:
            vectors[batch] = _run_batch(self._session, [rows[i] for i in batch])

        # Side by side, one single-threaded call per core, longest first: 5-8% less ingest time
        # than intra-op threads, which wait for each other (docs/benchmarks.md, "Ingest").
        try:
            if self._threads > 1 or min(self._cores, len(batches)) <= 1:
                for batch in batches:
                    embed_batch(batch)
            else:
                futures = [self._pool.submit(embed_batch, batch) for batch in reversed(batches)]
                try:
                    for future in futures:
                        future.result()
                finally:  # on Ctrl-C or an error, start no more batches and let the running
                    for future in futures:  # ones end before `vectors` is dropped or reused
                        future.cancel()
                    wait(futures)
        except Exception as exc:
            raise EmbeddingError(f"onnxruntime failed to embed a batch: {exc}") from exc
        return vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_tokens(self.tokenize(texts) if texts else [])
