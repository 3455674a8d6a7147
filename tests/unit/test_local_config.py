"""`ghpo run`'s config file: trainer sections laid over the run's own defaults, bad keys named."""

from __future__ import annotations

import pytest

from ghpo.local.config import RunConfig, RunConfigError, load_run_config, parse_run_config


def test_a_partial_optim_section_keeps_the_runs_constant_schedule_and_warmup():
    cfg = parse_run_config({"optim": {"lr": 1e-3}})
    default = RunConfig().optim
    assert cfg.optim.lr == 1e-3
    assert (cfg.optim.schedule, cfg.optim.warmup_steps) == (default.schedule, default.warmup_steps)
    assert (default.schedule, default.warmup_steps) == ("constant", 5)


def test_a_partial_ghpo_section_keeps_the_runs_cold_start_unless_it_sets_one():
    assert parse_run_config({"ghpo": {"condition_on": "plain"}}).ghpo.cold_start_steps == 0
    assert parse_run_config({"ghpo": {"cold_start_steps": 20}}).ghpo.cold_start_steps == 20
    assert parse_run_config({"deepspeed": {"zero_stage": 1}}).deepspeed.micro_batch_size == 64


def test_a_saved_config_reads_back_equal():
    cfg = parse_run_config({"optim": {"lr": 1e-3}, "ghpo": {"condition_on": "plain"}})
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_bad_keys_in_a_trainer_section_are_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[optim]\nlrr = 1.0\n\n[ghpo]\ncondition_on = "prompt"\n')
    with pytest.raises(RunConfigError) as err:
        load_run_config(path)
    assert "optim.lrr: unknown key" in str(err.value)
    assert "ghpo.condition_on" in str(err.value)


def test_the_trainer_gets_one_thread_fewer_than_the_cores_unless_the_config_says(tmp_path, monkeypatch):
    import tomllib

    from ghpo.local.stack import Endpoints, trainer_toml

    ends = Endpoints(
        "redis://127.0.0.1:1/0",
        "t",
        dict.fromkeys(("verifier", "broker", "inference", "rollout", "trainer"), 1),
    )

    def threads(cfg: RunConfig) -> int:
        return tomllib.loads(trainer_toml(cfg, tmp_path, tmp_path, ends))["run"]["num_threads"]

    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 2)
    assert threads(parse_run_config({})) == 1
    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 16)
    assert threads(parse_run_config({})) == 15
    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 1)
    assert threads(parse_run_config({})) == 1
    assert threads(parse_run_config({"services": {"trainer_threads": 4}})) == 4
