"""Settings: defaults that work, env vars, a TOML file, and one clear error for a bad value."""

from __future__ import annotations

import pytest

from bot.errors import SettingsError
from bot.settings import load_settings


def test_defaults_work_offline(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.store_dir == tmp_path / "chroma"
    assert settings.chroma_url is None and settings.llm is None
    assert settings.embedding_model == "all-MiniLM-L6-v2"


def test_a_bad_env_value_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("NEWSBOT_BATCH_SIZE", "0")
    with pytest.raises(SettingsError, match="NEWSBOT_BATCH_SIZE"):
        load_settings()


def test_a_chroma_url_without_scheme_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("NEWSBOT_CHROMA_URL", "localhost:8000")
    with pytest.raises(SettingsError, match=r"NEWSBOT_CHROMA_URL.*http://"):
        load_settings()


def test_lists_take_commas_or_json_in_env_vars(monkeypatch) -> None:
    monkeypatch.setenv("NEWSBOT_SLACK_ADMINS", "U1, U2")
    monkeypatch.setenv("NEWSBOT_SLACK_ALLOWED_TEAMS", '["T1"]')
    settings = load_settings()
    assert settings.slack_admins == ["U1", "U2"]
    assert settings.slack_allowed_teams == ["T1"]


def test_toml_file_is_read_and_env_vars_win(monkeypatch, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('collection = "from-file"\nk = 9\n')
    monkeypatch.setenv("NEWSBOT_CONFIG", str(config))
    monkeypatch.setenv("NEWSBOT_K", "3")
    settings = load_settings()
    assert settings.collection == "from-file"
    assert settings.k == 3


def test_a_broken_toml_file_is_named(monkeypatch, tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("collection = [unclosed\n")
    monkeypatch.setenv("NEWSBOT_CONFIG", str(config))
    with pytest.raises(SettingsError, match=str(config)):
        load_settings()


def test_unknown_settings_are_refused(tmp_path) -> None:
    with pytest.raises(SettingsError, match="colection"):
        load_settings(data_dir=tmp_path, colection="typo")
