"""[model.lora] settings: refused before anything starts, naming the key; carried from the run config to
the trainer's config file unchanged."""

from __future__ import annotations

import tomllib

import pytest

from ghpo.local.config import RunConfigError, parse_run_config
from ghpo.local.preflight import preflight
from ghpo.local.stack import Endpoints, trainer_toml
from ghpo.trainer.train.config import ConfigError, parse_config

QUIET = {"log": lambda _line: None}


@pytest.mark.parametrize("rank", [0, -4])
def test_a_rank_below_one_is_refused_naming_the_key(rank):
    with pytest.raises(RunConfigError, match=r"model\.lora\.rank"):
        parse_run_config({"model": {"lora": {"rank": rank}}})
    with pytest.raises(ConfigError, match=r"model\.lora\.rank"):
        parse_config(
            {"model": {"path": "m", "lora": {"rank": rank}}, "run": {"steps": 1, "checkpoint_dir": "c"}}
        )


def test_a_target_module_the_model_lacks_is_refused_before_the_run_starts_naming_the_key():
    cfg = parse_run_config({"model": {"lora": {"target_modules": ["q_proj", "query_key_value"]}}})
    with pytest.raises(RunConfigError) as err:
        preflight(cfg, **QUIET)
    message = str(err.value)
    assert message.startswith("model.lora.target_modules: ['query_key_value']")
    assert "q_proj" in message  # the layers it does have are listed


def test_lora_targets_the_model_has_pass_and_reach_the_trainer_config(tmp_path):
    lora = {"rank": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
    resolved = preflight(parse_run_config({"model": {"lora": lora}}), **QUIET)
    ports = dict.fromkeys(("verifier", "broker", "inference", "rollout", "trainer"), 1)
    text = trainer_toml(resolved, tmp_path, tmp_path, Endpoints("redis://127.0.0.1:1/0", "t", ports))

    trainer = parse_config(tomllib.loads(text))
    assert trainer.model.lora is not None and trainer.model.lora.model_dump() == lora
    assert trainer.model.lora.scaling == 2.0


def test_lora_over_nccl_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"model\.lora: .*services\.weight_transport = 'http'"):
        parse_config(
            {
                "model": {"path": "m", "lora": {}},
                "run": {"steps": 1, "checkpoint_dir": "c"},
                "services": {"weight_transport": "nccl"},
            }
        )


@pytest.mark.parametrize(
    "example",
    [
        "deploy/configs/tiny-cpu.toml",
        "deploy/configs/containers-cpu.toml",
        "deploy/configs/containers-gpu.toml",
        "deploy/k8s/base/trainer.toml",
        "deploy/k8s/overlays/gpu/trainer.toml",
    ],
)
def test_the_deploy_examples_lora_block_uncommented_is_a_valid_trainer_config(example):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / example).read_text()
    keys = r"\[model\.lora\]|rank =|alpha =|dropout =|target_modules ="
    uncommented = re.sub(rf"^# ({keys})", r"\1", text, flags=re.M)
    data = tomllib.loads(uncommented)
    data["run"] = {**data.get("run", {}), "steps": 1, "checkpoint_dir": "c"}
    assert parse_config(data).model.lora == parse_run_config({"model": {"lora": {}}}).model.lora


def test_the_trainer_started_without_preflight_refuses_a_missing_target_module_naming_the_key():
    from ghpo.trainer.tiny import ensure_tiny_model
    from ghpo.trainer.train.config import LoraSection
    from ghpo.trainer.train.engine import load_model

    with pytest.raises(ConfigError, match=r"^model\.lora\.target_modules: .*query_key_value"):
        load_model(str(ensure_tiny_model()), False, LoraSection(target_modules=["query_key_value"]))
