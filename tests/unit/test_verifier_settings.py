"""Verifier settings: read from GHPO_VERIFIER_* variables, every limit checked, bad reward names refused."""

from __future__ import annotations

import pydantic
import pytest

from ghpo.services.verifier.settings import Settings


def test_settings_come_from_ghpo_verifier_environment_variables(monkeypatch):
    monkeypatch.setenv("GHPO_VERIFIER_WORKERS", "3")
    monkeypatch.setenv("GHPO_VERIFIER_ITEM_DEADLINE_S", "2.5")
    monkeypatch.setenv("GHPO_VERIFIER_DEFAULT_WEIGHTS", '{"accuracy": 1.0}')
    settings = Settings()
    assert (settings.workers, settings.item_deadline_s, settings.default_weights) == (
        3,
        2.5,
        {"accuracy": 1.0},
    )


def test_reference_rewards_are_the_default():
    assert Settings().default_weights == {"accuracy": 1.0, "format": 0.5}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workers": 0}, "workers"),
        ({"default_weights": {"acuracy": 1.0}}, "acuracy"),
        ({"default_weights": {"accuracy": 1e9}}, "within"),
        ({"default_weights": {"accuracy": 1.0, "format": -0.5}}, "negative weight is refused"),
        ({"default_weights": {"accuracy": 0.0}}, "positive weight"),
        ({"max_batch_items": 100, "max_queued_items": 10}, "max_queued_items"),
        ({"max_completion_chars": 10**9}, "max_completion_chars"),
    ],
)
def test_out_of_range_settings_are_refused_naming_the_field(overrides, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(**overrides)
