from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ability_gateway.server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# What production needs besides the setting under test.
PRODUCTION = {"console_session_secret": "a-console-session-secret-for-tests-only"}


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


@pytest.mark.parametrize(
    "allow",
    [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/8,0.0.0.0/0,::/0",
        "0.0.0.0/1,128.0.0.0/1",  # together, every IPv4 address
        "0.0.0.1/0",  # not strict: the same network as 0.0.0.0/0
    ],
)
def test_production_refuses_an_egress_list_that_allows_every_address(allow: str) -> None:
    with pytest.raises(ValidationError, match="GATEWAY_EGRESS_ALLOW covers every address"):
        Settings(_env_file=None, env="production", egress_allow=allow, **PRODUCTION)  # type: ignore[call-arg]


def test_production_allows_every_address_only_when_told_so_explicitly() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="production",
        **PRODUCTION,
        egress_allow="0.0.0.0/0,::/0",
        egress_allow_all_in_production=True,
    )
    assert len(settings.egress_networks) == 2


@pytest.mark.parametrize("allow", ["10.0.0.0/8,192.168.0.0/16", "0.0.0.0/1", "fc00::/7"])
def test_production_accepts_egress_lists_of_internal_networks(allow: str) -> None:
    settings = Settings(_env_file=None, env="production", egress_allow=allow, **PRODUCTION)  # type: ignore[call-arg]
    assert settings.egress_networks


def test_development_accepts_an_egress_list_that_allows_every_address() -> None:
    settings = Settings(_env_file=None, egress_allow="0.0.0.0/0")  # type: ignore[call-arg]
    assert settings.egress_networks
