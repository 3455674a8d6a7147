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
    assert parse_run_config({"deepspeed": {"zero_stage": 1}}).deepspeed.micro_batch_size == "auto"


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


def test_the_trainer_takes_every_core_for_large_steps_and_one_fewer_for_small_unless_the_config_says(
    tmp_path, monkeypatch
):
    import tomllib

    from ghpo.local.preflight import preflight
    from ghpo.local.stack import Endpoints, trainer_toml

    ends = Endpoints(
        "redis://127.0.0.1:1/0",
        "t",
        dict.fromkeys(("verifier", "broker", "inference", "rollout", "trainer"), 1),
    )

    def threads(cfg: RunConfig) -> int:
        resolved = preflight(cfg, log=lambda _line: None)
        return tomllib.loads(trainer_toml(resolved, tmp_path, tmp_path, ends))["run"]["num_threads"]

    small = {"rollout": {"batch_groups": 8, "group_size": 8}}  # 64 completions a step
    large = {"rollout": {"batch_groups": 64, "group_size": 8}}  # 512
    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 2)
    assert threads(parse_run_config(large)) == 2  # 64 x 8: training outlasts generation, take every core
    assert threads(parse_run_config(small)) == 1  # the engine's worker keeps the other core busy
    assert threads(parse_run_config({})) == 1  # the default, 16 x 8, is a small step
    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 16)
    assert threads(parse_run_config(large)) == 16
    assert threads(parse_run_config(small)) == 15
    monkeypatch.setattr("ghpo.local.config.usable_cores", lambda: 1)
    assert threads(parse_run_config(small)) == 1
    assert threads(parse_run_config({"services": {"trainer_threads": 4}})) == 4


def test_ghpo_run_gives_broker_rollout_and_trainer_the_one_ghpo_section_in_the_shared_form(tmp_path):
    from ghpo.local.preflight import preflight
    from ghpo.local.stack import Endpoints, service_specs, trainer_spec, trainer_toml
    from ghpo.shared.algorithm.environment import environment_of
    from ghpo.trainer.train.config import load_config

    cfg = preflight(
        parse_run_config({"ghpo": {"hint_ladder": [0.2, 0.7], "condition_on": "plain", "tis_cap": 2.0}})
    )
    ends = Endpoints(
        "redis://127.0.0.1:1/0",
        "t",
        dict.fromkeys(("verifier", "broker", "inference", "rollout", "trainer"), 1),
    )
    specs = {s.name: s for s in service_specs(cfg, tmp_path, tmp_path, ends)}
    config_path = tmp_path / "trainer.toml"
    config_path.write_text(trainer_toml(cfg, tmp_path, tmp_path, ends))
    trainer = trainer_spec(cfg, config_path, ends)
    expected = environment_of(cfg.ghpo)
    for spec in (specs["broker"], specs["rollout"], trainer):
        shared = {k: v for k, v in spec.env.items() if k.startswith("GHPO_ALGORITHM_")}
        assert shared == expected, spec.name
    for spec in specs.values():  # no component gets a GHPO setting any other way
        assert not any(
            k.endswith(("_HINT_LADDER", "_COLD_START_STEPS")) for k in spec.env if "ALGORITHM" not in k
        )
    assert "[ghpo]" not in config_path.read_text()
    assert load_config(config_path, trainer.env).ghpo == cfg.ghpo


def test_the_shipped_run_configs_load_as_run_configs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shipped = [p for p in (root / "deploy").rglob("*.toml") if "[data]" in p.read_text().splitlines()]
    assert shipped, "deploy/configs holds at least one `ghpo run` config (smollm2-math.toml)"
    for path in shipped:
        assert isinstance(load_run_config(path), RunConfig), path
