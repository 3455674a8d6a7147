"""GHPOConfig: defaults from the paper/reference code, bounds, and errors that name key and range."""

import pytest
from pydantic import ValidationError

from ghpo.shared.algorithm.config import ConfigError, GHPOConfig, allowed_range


def test_defaults_reproduce_the_reference_setup():
    config = GHPOConfig()
    assert config.hint_ladder == (0.25, 0.5, 0.75)
    assert config.cold_start_steps == 20
    assert config.hint_cut == "char"
    assert config.condition_on == "hinted"
    assert config.advantage_eps == 1e-4
    assert config.scale_advantages is True
    assert config.loss_type == "bnpo"
    assert (config.eps_low, config.eps_high, config.beta) == (0.2, 0.2, 0.0)
    assert config.tis_cap is None
    assert config.mask_truncated_completions is False


def test_out_of_range_value_error_names_key_and_allowed_range():
    with pytest.raises(ConfigError) as caught:
        GHPOConfig.from_mapping({"cold_start_steps": -1})
    message = str(caught.value)
    assert "cold_start_steps" in message
    assert ">= 0 and <= 1000000" in message
    assert "got -1" in message


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        GHPOConfig.from_mapping({"eps_low": 1.5, "tis_cap": 0.5, "loss_type": "ppo"})
    message = str(caught.value)
    assert "eps_low" in message and ">= 0.0 and < 1.0" in message
    assert "tis_cap" in message and ">= 1.0 and <= 1000.0 (or null = off)" in message
    assert "loss_type" in message and "bnpo | grpo | dapo | dr_grpo" in message


@pytest.mark.parametrize(
    "ladder",
    [[0.5, 0.25], [0.25, 0.25], [0.0, 0.5], [0.25, 1.0], [-0.1], []],
)
def test_hint_ladder_must_be_strictly_increasing_inside_open_unit_interval(ladder):
    with pytest.raises(ConfigError) as caught:
        GHPOConfig.from_mapping({"hint_ladder": ladder})
    assert "hint_ladder" in str(caught.value)
    assert "strictly increasing ratios, each in (0, 1)" in str(caught.value)


def test_custom_ladder_is_accepted_as_tuple():
    assert GHPOConfig(hint_ladder=[0.1, 0.9]).hint_ladder == (0.1, 0.9)


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match="hint_ratio: Extra inputs are not permitted"):
        GHPOConfig.from_mapping({"hint_ratio": 0.5})


def test_direct_construction_also_validates():
    with pytest.raises(ValidationError, match="beta"):
        GHPOConfig(beta=-0.1)


def test_config_is_immutable():
    config = GHPOConfig()
    with pytest.raises(ValidationError):
        config.beta = 1.0


def test_allowed_range_lists_choices_of_enumerations():
    assert allowed_range("hint_cut") == "char | token | line"
    assert allowed_range("condition_on") == "hinted | plain"
