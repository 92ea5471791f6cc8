"""All knobs in one place: defaults that work offline, NEWSBOT_* env vars, an optional TOML file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import SettingsError
from index.model import DEFAULT_MODEL


def _home(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / default) / "newsbot"


def default_config_file() -> Path:
    return Path(
        os.environ.get("NEWSBOT_CONFIG") or _home("XDG_CONFIG_HOME", ".config") / "config.toml"
    )


class Settings(BaseSettings):
    """newsbot's settings. Precedence: arguments > NEWSBOT_* env vars > TOML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSBOT_", extra="forbid", validate_default=True, frozen=True
    )

    data_dir: Path = Field(default_factory=lambda: _home("XDG_DATA_HOME", ".local/share"))
    chroma_url: str | None = None  # a Chroma server (http://host:port); unset: embedded store
    collection: str = Field(
        default="news", min_length=3, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]+$"
    )
    store_retries: int = Field(default=3, ge=0, le=10)
    # Records between saves of an embedded store's vector index (docs/store.md, "Chroma's replay").
    vector_save_every: int = Field(default=100, ge=1, le=100_000)

    embedding_model: str = DEFAULT_MODEL  # a model name or folder (sentence-transformers)
    # ONNX Runtime runs the same model without importing torch: same vectors (cosine 1.0000),
    # a new process answers in under a second instead of ~7 s (docs/benchmarks.md).
    embedding_backend: Literal["onnx", "torch"] = "onnx"
    embedding_precision: Literal["fp32", "int8"] = "fp32"
    batch_size: int = Field(default=16, ge=1, le=1024)
    # ONNX exports of the model, shared by every store of the user (they are the model's)
    model_cache_dir: Path = Field(
        default_factory=lambda: _home("XDG_CACHE_HOME", ".cache") / "models"
    )

    chunk_tokens: int = Field(default=200, ge=32, le=4096)  # word pieces of text in a chunk
    chunk_overlap: int = Field(default=1, ge=0, le=5)  # sentences neighbours share

    # Text, HTML, feed files and JSON documents up to this size are read whole; JSON Lines files,
    # and JSON documents over it, are read record by record, whatever their size.
    max_file_bytes: int = Field(default=20_000_000, ge=1)
    max_download_bytes: int = Field(default=10_000_000, ge=1)
    fetch_timeout: float = Field(default=15.0, gt=0, le=600)
    max_redirects: int = Field(default=5, ge=0, le=30)
    allow_private_urls: bool = False  # fetch from loopback, private and link-local addresses
    fetch_full_articles: bool = True  # a feed entry with only a summary: fetch the linked page

    k: int = Field(default=6, ge=1, le=100)  # passages retrieved per question
    llm: str | None = None  # provider:model, e.g. openai:gpt-4o-mini or ollama:llama3.1
    llm_base_url: str | None = None  # openai: an OpenAI-compatible API; ollama: the Ollama host
    llm_api_key: SecretStr | None = None  # else OPENAI_API_KEY, OLLAMA_API_KEY (or none)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)
    # Seconds to connect, for each piece of the reply, and for the whole reply: past it the
    # question is answered extractively. A local model on a CPU may need more.
    llm_timeout: float = Field(default=60.0, gt=0, le=3600)
    # Retries of a request refused with 429 or 5xx (never of one that timed out: that wait was
    # the budget). A Retry-After longer than llm_max_retry_wait is not waited for.
    llm_retries: int = Field(default=2, ge=0, le=10)
    llm_max_retry_wait: float = Field(default=10.0, ge=0, le=600)
    # A claim's [n] needs a sentence of passage n at least this similar (cosine, the embedding
    # model) to the claim; else the marker is dropped. bot/llm.py, bench/citation_mapping.py.
    citation_min_similarity: float = Field(default=0.35, ge=-1, le=1)
    max_answer_sentences: int = Field(default=3, ge=1, le=10)
    # Unset: the cut chosen with the learned sentence scorer on its training folds
    # (bot/answer_model.json, bench/fit_answer.py, docs/answering.md). A value is a probability
    # (0-1) that the best sentence answers the question, below which the bot refuses.
    refusal_threshold: float | None = Field(default=None, ge=0, le=1)

    slack_api_url: str = "https://slack.com/api/"
    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    slack_workers: int = Field(default=4, ge=1, le=64)
    # 200 absorbs a burst of 200 questions (bench/slack_load.py) without telling anyone "busy".
    slack_queue: int = Field(default=200, ge=1, le=10_000)
    # On Ctrl-C or SIGTERM, answers under way get this long to finish before newsbot slack exits.
    slack_shutdown_grace: float = Field(default=10.0, ge=0, le=600)
    # Lists: comma-separated in env vars (NEWSBOT_SLACK_ADMINS=U1,U2), arrays in TOML.
    slack_allowed_teams: Annotated[list[str], NoDecode] = Field(default_factory=list)
    slack_allowed_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    slack_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("slack_allowed_teams", "slack_allowed_channels", "slack_admins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("chroma_url", "llm_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (e.g. http://localhost:8000)")
        return value.rstrip("/")

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "chroma"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A missing file is no source: pydantic-settings reads only the files that exist.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_file())
        return init_settings, env_settings, toml


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning pydantic's validation report into one readable SettingsError."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            problems.append(f"{name} (NEWSBOT_{name.upper()}): {error['msg']}")
        raise SettingsError(
            "bad setting: " + "; ".join(problems),
            hint=f"check the environment and {default_config_file()}",
        ) from None
    except Exception as exc:  # an env value or TOML file that does not parse
        config = default_config_file()
        where = f"the settings file {config}" if config.is_file() else "the NEWSBOT_* variables"
        raise SettingsError(f"cannot read {where}: {exc}", hint="fix the value it names") from None
