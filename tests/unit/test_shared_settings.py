"""ghpo.shared.settings: env prefix, bounds errors naming the key, production token rules."""

from __future__ import annotations

import pytest
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ghpo.shared.settings import ServiceSettings, SettingsError, build_settings

STRONG = "k3Jd9-xQ2pLm7vB4nZ8rT1yW6cF0hG5s"


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_DEMO_")
    workers: int = Field(2, ge=1, le=64, description="Worker processes.")


def test_fields_come_from_the_service_env_prefix(monkeypatch):
    monkeypatch.setenv("GHPO_DEMO_PORT", "9123")
    monkeypatch.setenv("GHPO_DEMO_WORKERS", "8")
    monkeypatch.setenv("GHPO_DEMO_LOG_LEVEL", "debug")
    settings = DemoSettings()
    assert (settings.port, settings.workers, settings.log_level) == (9123, 8, "DEBUG")


def test_overrides_beat_the_environment(monkeypatch):
    monkeypatch.setenv("GHPO_DEMO_PORT", "9123")
    assert build_settings(DemoSettings, port=9200).port == 9200


def test_out_of_range_env_value_names_the_variable_and_range(monkeypatch):
    monkeypatch.setenv("GHPO_DEMO_PORT", "70000")
    with pytest.raises(SettingsError) as info:
        build_settings(DemoSettings)
    assert "GHPO_DEMO_PORT (port)" in str(info.value)
    assert "65535" in str(info.value)


def test_out_of_range_override_names_the_key():
    with pytest.raises(SettingsError) as info:
        build_settings(DemoSettings, workers=0)
    assert "GHPO_DEMO_WORKERS (workers)" in str(info.value)
    assert "greater than or equal to 1" in str(info.value)


def test_unknown_override_is_refused_by_name():
    with pytest.raises(SettingsError, match="colour"):
        build_settings(DemoSettings, colour="red")


def test_dev_allows_no_token():
    assert build_settings(DemoSettings).token is None


def test_production_refuses_a_missing_token():
    with pytest.raises(SettingsError, match="token is required"):
        build_settings(DemoSettings, environment="production")


@pytest.mark.parametrize("weak", ["changeme", "short-token", "a" * 40])
def test_production_refuses_a_weak_token_without_echoing_it(weak):
    with pytest.raises(SettingsError, match="too weak") as info:
        build_settings(DemoSettings, environment="production", token=weak)
    assert weak not in str(info.value)


def test_production_accepts_a_strong_token(monkeypatch):
    monkeypatch.setenv("GHPO_DEMO_TOKEN", STRONG)
    settings = build_settings(DemoSettings, environment="production")
    assert settings.token_value == STRONG
    assert STRONG not in repr(settings)


def test_every_base_field_is_documented():
    assert all(field.description for field in ServiceSettings.model_fields.values())
