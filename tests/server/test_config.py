from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ability_gateway.server.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["README.md", ".env.example"])
def test_every_setting_is_documented(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"GATEWAY_{n.upper()}" not in text]
    assert missing == []


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_COZE_BASE_URL", "http://coze.internal")
    monkeypatch.setenv("GATEWAY_COZE_API_TOKEN", "pat_x")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.coze_base_url == "http://coze.internal"
    assert settings.coze_api_token is not None
    assert settings.coze_api_token.get_secret_value() == "pat_x"
    assert "pat_x" not in repr(settings)


def test_production_refuses_the_simulator_token() -> None:
    with pytest.raises(ValidationError, match="simulator"):
        Settings(_env_file=None, env="production", coze_api_token="pat_simulator")  # type: ignore[call-arg]


def test_default_database_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
