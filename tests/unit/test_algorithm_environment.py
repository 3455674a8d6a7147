"""The one environment form of GHPOConfig (GHPO_ALGORITHM_*): it round-trips, a misspelt or misplaced
variable is refused by name, the broker and the rollout server read the same block, and a disagreement
names each key with both values."""

from __future__ import annotations

import pytest

from ghpo.services.broker.settings import Settings as BrokerSettings
from ghpo.services.rollout.settings import Settings as RolloutSettings
from ghpo.shared.algorithm.config import ConfigError, GHPOConfig
from ghpo.shared.algorithm.environment import disagreement, environment_of, from_environment
from ghpo.shared.settings import SettingsError, build_settings

CUSTOM = GHPOConfig(
    hint_ladder=(0.1, 0.4),
    cold_start_steps=0,
    hint_cut="line",
    condition_on="plain",
    advantage_eps=1e-3,
    scale_advantages=False,
    tis_cap=2.5,
    mask_truncated_completions=True,
)


@pytest.mark.parametrize("config", [GHPOConfig(), CUSTOM], ids=["defaults", "custom"])
def test_every_setting_round_trips_through_its_variable(config):
    env = environment_of(config)
    assert set(env) == {f"GHPO_ALGORITHM_{key.upper()}" for key in GHPOConfig.model_fields}
    assert GHPOConfig(**from_environment(env)) == config


def test_values_are_json_or_bare_strings_and_other_variables_are_ignored():
    env = {
        "GHPO_ALGORITHM_HINT_LADDER": "[0.25, 0.5]",
        "GHPO_ALGORITHM_COLD_START_STEPS": "3",
        "GHPO_ALGORITHM_HINT_CUT": "line",
        "GHPO_ALGORITHM_SCALE_ADVANTAGES": "false",
        "GHPO_ALGORITHM_TIS_CAP": "null",
        "GHPO_BROKER_POLICY": "none",
        "PATH": "/usr/bin",
    }
    assert from_environment(env) == {
        "hint_ladder": [0.25, 0.5],
        "cold_start_steps": 3,
        "hint_cut": "line",
        "scale_advantages": False,
        "tis_cap": None,
    }


def test_a_misspelt_variable_is_refused_naming_it_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"GHPO_ALGORITHM_HINT_LADER is not a GHPO setting.*HINT_LADDER"):
        from_environment({"GHPO_ALGORITHM_HINT_LADER": "[0.5]"})


def test_a_disagreement_names_each_key_and_both_values():
    theirs = GHPOConfig(hint_ladder=(0.25, 0.5), cold_start_steps=0)
    assert disagreement(theirs, theirs, their_name="broker", our_name="rollout") is None
    assert disagreement(theirs, GHPOConfig(), their_name="broker", our_name="rollout") == (
        "broker hint_ladder=[0.25, 0.5] differs from rollout's [0.25, 0.5, 0.75]; "
        "broker cold_start_steps=0 differs from rollout's 20"
    )


def test_broker_and_rollout_server_read_the_same_block(monkeypatch):
    for name, value in environment_of(CUSTOM).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GHPO_ROLLOUT_HINT_CUT_IS_NOT_A_FIELD", "x")  # unrelated names stay ignored
    assert BrokerSettings().ghpo == CUSTOM
    assert RolloutSettings(inference_urls=["http://x"]).ghpo == CUSTOM
    assert BrokerSettings().policy_config().n_hint_levels == 2


def test_a_bad_value_names_the_shared_variable(monkeypatch):
    monkeypatch.setenv("GHPO_ALGORITHM_COLD_START_STEPS", "-1")
    with pytest.raises(SettingsError, match=r"GHPO_ALGORITHM_COLD_START_STEPS \(ghpo.cold_start_steps\)"):
        build_settings(BrokerSettings)


@pytest.mark.parametrize(
    ("variable", "shared"),
    [
        ("GHPO_BROKER_HINT_LADDER", "GHPO_ALGORITHM_HINT_LADDER"),
        ("GHPO_BROKER_COLD_START_STEPS", "GHPO_ALGORITHM_COLD_START_STEPS"),
        ("GHPO_ROLLOUT_CONDITION_ON", "GHPO_ALGORITHM_CONDITION_ON"),
        ("GHPO_ROLLOUT_GHPO", "GHPO_ALGORITHM_<KEY>"),
    ],
)
def test_a_ghpo_setting_under_a_services_own_prefix_is_refused_not_ignored(monkeypatch, variable, shared):
    monkeypatch.setenv(variable, "0")
    cls, kw = (BrokerSettings, {}) if "BROKER" in variable else (RolloutSettings, {"inference_urls": ["x"]})
    with pytest.raises(SettingsError, match=f"{variable} is not read.*{shared}"):
        build_settings(cls, **kw)


def test_an_unknown_shared_variable_stops_a_service(monkeypatch):
    monkeypatch.setenv("GHPO_ALGORITHM_BETTA", "0.1")
    with pytest.raises(SettingsError, match="GHPO_ALGORITHM_BETTA is not a GHPO setting"):
        build_settings(BrokerSettings)


def test_the_rollout_server_refuses_the_token_hint_cut_it_cannot_make():
    with pytest.raises(SettingsError, match=r"GHPO_ALGORITHM_\*.*needs a tokenizer"):
        build_settings(RolloutSettings, inference_urls=["http://x"], ghpo={"hint_cut": "token"})
    assert build_settings(RolloutSettings, inference_urls=["http://x"], ghpo={"hint_cut": "line"})
