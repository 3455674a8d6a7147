"""The trainer's TOML config: the shipped examples parse; every bad key is named in the error, by
`ghpo train` on the command line too."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghpo.cli import main
from ghpo.trainer.train.config import ConfigError, TrainConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"model": {"path": "m"}, "run": {"steps": 3, "checkpoint_dir": "ck"}}


def with_section(section: str, **values) -> dict:
    data = {k: dict(v) for k, v in MINIMAL.items()}
    data.setdefault(section, {}).update(values)
    return data


# every trainer config in the repository (a TOML with a [run] table): examples, compose and k8s copies;
# a `ghpo run` config (it has a [data] table, which the trainer has not) is tested as one elsewhere
SHIPPED = sorted(
    p
    for p in (ROOT / "deploy").rglob("*.toml")
    if "[run]" in (lines := p.read_text().splitlines()) and "[data]" not in lines
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_parse(path):
    assert len(SHIPPED) >= 1
    config = load_config(path)
    assert isinstance(config, TrainConfig) and config.run.steps >= 1


@pytest.mark.parametrize(
    ("section", "values", "named"),
    [
        ("optim", {"lr": -1.0}, "optim.lr"),
        ("optim", {"betas": [0.9, 1.5]}, "optim.betas"),
        ("optim", {"schedul": "cosine"}, "optim.schedul: unknown key"),
        ("deepspeed", {"zero_stage": 4}, "deepspeed.zero_stage"),
        ("deepspeed", {"precision": "fp8"}, "deepspeed.precision"),
        ("run", {"checkpoint_every": 0}, "run.checkpoint_every"),
        ("ghpo", {"eps_low": 1.5}, "ghpo.eps_low"),
        ("ghpo", {"loss_type": "mean"}, "ghpo.loss_type"),
        ("services", {"push_dtype": "int8"}, "services.push_dtype"),
    ],
)
def test_a_bad_value_is_an_error_naming_its_key(section, values, named):
    with pytest.raises(ConfigError) as error:
        parse_config(with_section(section, **values))
    assert named in str(error.value)


def test_ghpo_errors_say_what_is_allowed():
    with pytest.raises(ConfigError, match=r"ghpo.eps_low: .*allowed: >= 0.0 and < 1.0"):
        parse_config(with_section("ghpo", eps_low=2.0))


def test_missing_sections_and_unknown_sections_are_named():
    with pytest.raises(ConfigError) as error:
        parse_config({"model": {"path": "m"}, "optimiser": {"lr": 1e-5}})
    assert "run: Field required" in str(error.value) and "optimiser: unknown key" in str(error.value)


def test_token_comes_from_the_environment_when_the_file_has_none(tmp_path, monkeypatch):
    path = tmp_path / "run.toml"
    path.write_text('[model]\npath = "m"\n[run]\nsteps = 1\ncheckpoint_dir = "ck"\n')
    monkeypatch.setenv("GHPO_TRAINER_TOKEN", "from-env")
    assert load_config(path).services.token == "from-env"


BARE = '[model]\npath = "m"\n[run]\nsteps = 1\ncheckpoint_dir = "ck"\n'


def test_ghpo_settings_come_from_the_shared_variables_for_keys_the_file_leaves_out(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BARE + "[ghpo]\nbeta = 0.1\n")
    env = {"GHPO_ALGORITHM_HINT_LADDER": "[0.3, 0.6]", "GHPO_ALGORITHM_COLD_START_STEPS": "0"}
    ghpo = load_config(path, env).ghpo
    assert (ghpo.hint_ladder, ghpo.cold_start_steps, ghpo.beta) == ((0.3, 0.6), 0, 0.1)
    assert load_config(path, {}).ghpo.hint_ladder == (0.25, 0.5, 0.75)


def test_a_ghpo_key_set_both_ways_must_agree_and_a_disagreement_names_both_values(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BARE + "[ghpo]\nhint_ladder = [0.25, 0.5]\ncold_start_steps = 20\n")
    agreeing = {"GHPO_ALGORITHM_HINT_LADDER": "[0.25, 0.5]", "GHPO_ALGORITHM_COLD_START_STEPS": "20.0"}
    assert load_config(path, agreeing).ghpo.hint_ladder == (0.25, 0.5)
    with pytest.raises(ConfigError) as error:
        load_config(path, {"GHPO_ALGORITHM_HINT_LADDER": "[0.25, 0.5, 0.75]"})
    assert (
        "ghpo.hint_ladder = [0.25, 0.5] in the file but GHPO_ALGORITHM_HINT_LADDER=[0.25, 0.5, 0.75]"
        in str(error.value)
    )


def test_a_bad_or_unknown_shared_variable_is_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BARE)
    with pytest.raises(
        ConfigError, match=r"ghpo.cold_start_steps: .*\(from GHPO_ALGORITHM_COLD_START_STEPS\)"
    ):
        load_config(path, {"GHPO_ALGORITHM_COLD_START_STEPS": "-1"})
    with pytest.raises(ConfigError, match="GHPO_ALGORITHM_COLD_START is not a GHPO setting"):
        load_config(path, {"GHPO_ALGORITHM_COLD_START": "0"})


def test_cli_reports_the_bad_key_and_exits_2(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(
        '[model]\npath = "m"\n[run]\nsteps = 1\ncheckpoint_dir = "ck"\n[deepspeed]\nzero_stage = 7\n'
    )
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "deepspeed.zero_stage" in err and str(path) in err


def test_cli_reports_invalid_toml_and_a_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\npath=")
    assert main(["train", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read trainer config" in capsys.readouterr().err
