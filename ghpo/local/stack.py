"""Wire the local system: ports, a shared token, each service's environment, and the trainer's TOML.

What it is for: `ghpo run` starts the same `ghpo serve <name>` and `ghpo train` entry points that compose
and Kubernetes start, configured only through their documented GHPO_<SERVICE>_* variables and the
trainer config file, so the local run exercises the production wiring. The GHPO settings come from the
one `RunConfig.ghpo` and reach the broker, the rollout server and the trainer in the same form as in a
deployment: the GHPO_ALGORITHM_* variables, set identically in each one's environment.

Every process keeps the port it is given here for the whole invocation, restarts included (a restarted
service is reachable at the URL the others already hold).

What it deliberately does not do: start processes (processes.py) or decide when to stop (run.py).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from ghpo.local.config import RunConfig
from ghpo.local.processes import ProcessSpec, ghpo_argv
from ghpo.shared.algorithm.environment import environment_of
from ghpo.shared.redis_local import LocalRedis, free_port

SERVICES = ("verifier", "broker", "inference", "rollout")


@dataclass(frozen=True)
class Endpoints:
    redis_url: str
    token: str
    ports: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def public(self) -> dict[str, str]:
        """Every component's base URL (the token stays out: it is a secret)."""
        return {"redis": self.redis_url} | {name: self.url(name) for name in self.ports}

    @classmethod
    def allocate(cls) -> Endpoints:
        """Ports for this invocation; a restarted process keeps its port, so no URL goes stale."""
        ports = {name: free_port() for name in ("redis", *SERVICES, "trainer")}
        return cls(f"redis://127.0.0.1:{ports.pop('redis')}/0", secrets.token_urlsafe(24), ports)

    @property
    def redis_port(self) -> int:
        return int(self.redis_url.rsplit(":", 1)[1].split("/")[0])


def _env(prefix: str, values: dict[str, object]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, list | tuple | dict):
            text = json.dumps(list(value) if isinstance(value, tuple) else value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        out[f"GHPO_{prefix}_{key.upper()}"] = text
    return out


def redis_spec(cfg: RunConfig, run_dir: Path, ends: Endpoints) -> ProcessSpec:
    """Redis with its data in the run folder (a resume, or a restart after a crash, reloads its AOF)."""
    server = LocalRedis(run_dir / "redis", port=ends.redis_port)
    return ProcessSpec(
        "redis", server.command(), ready=server.ping, start_timeout_s=cfg.services.start_timeout_s
    )


def dataset_env(cfg: RunConfig) -> dict[str, object]:
    """The rollout server's dataset settings: the run's [data] section, unset keys left out."""
    data = cfg.data
    values: dict[str, object] = {
        "dataset": data.dataset,
        "dataset_split": data.split,
        "dataset_config": data.config,
        "dataset_map": data.map,
        "dataset_levels": data.levels,
        "dataset_heldout": data.heldout,
        "dataset_limit": data.limit,
        "arith_levels": data.arith_levels,
        "arith_per_level": data.arith_per_level,
    }
    return {key: value for key, value in values.items() if value is not None}


def service_specs(cfg: RunConfig, model_path: Path, run_dir: Path, ends: Endpoints) -> list[ProcessSpec]:
    """The four services in start order (each depends only on those before it)."""
    common = {"host": "127.0.0.1", "token": ends.token}
    algorithm = environment_of(cfg.ghpo)
    envs = {
        "verifier": _env(
            "VERIFIER", {**common, "port": ends.ports["verifier"], "workers": cfg.services.verifier_workers}
        ),
        "broker": algorithm
        | _env(
            "BROKER",
            {
                **common,
                "port": ends.ports["broker"],
                "redis_url": ends.redis_url,
                "policy": cfg.services.broker_policy,
                "group_size": cfg.rollout.group_size,
            },
        ),
        "inference": _env(
            "INFERENCE",
            {
                **common,
                "port": ends.ports["inference"],
                "model": model_path,
                "max_model_len": cfg.services.max_model_len,
                "kv_cache_gib": cfg.services.kv_cache_gib,
                "seed": cfg.run.seed,
                "staging_dir": run_dir / "inference-staging",
            },
        ),
        "rollout": algorithm
        | _env(
            "ROLLOUT",
            {
                **common,
                "port": ends.ports["rollout"],
                "inference_urls": [ends.url("inference")],
                "verifier_url": ends.url("verifier"),
                "broker_url": ends.url("broker"),
                "upstream_token": ends.token,
                "redis_url": ends.redis_url,
                "batch_groups": cfg.rollout.batch_groups,
                "prompts_per_step": cfg.rollout.batch_groups,
                "max_policy_lag": cfg.rollout.max_policy_lag,
                "max_concurrent_steps": cfg.rollout.max_concurrent_steps,
                "dynamic_sampling": cfg.rollout.dynamic_sampling,
                **dataset_env(cfg),
                "prompt_system": cfg.prompt.system,
                "prompt_instruction": cfg.prompt.instruction,
                "hint_separator": cfg.prompt.hint_separator,
                "seed": cfg.run.seed,
                "group_size": cfg.rollout.group_size,
                "temperature": cfg.rollout.temperature,
                "max_tokens": cfg.rollout.max_tokens,
                "include_text": False,
            },
        ),
    }
    return [
        ProcessSpec(
            name,
            ghpo_argv("serve", name),
            env=envs[name],
            ready_url=f"{ends.url(name)}/readyz",
            start_timeout_s=cfg.services.start_timeout_s,
        )
        for name in SERVICES
    ]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def toml_section(name: str, values: dict[str, object]) -> list[str]:
    """The lines of one TOML table (None values left out), then a blank line."""
    return [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None] + [""]


def toml_document(config: dict[str, dict[str, object]]) -> str:
    """A TOML file of tables: {table: {key: value}} (a run config as `ghpo run --config` reads it)."""
    return "\n".join(line for name, values in config.items() for line in toml_section(name, values))


def trainer_toml(cfg: RunConfig, model_path: Path, run_dir: Path, ends: Endpoints) -> str:
    """The trainer's config file for this run. The token and the GHPO settings travel in the environment
    (`trainer_spec`), the latter as GHPO_ALGORITHM_* like the services' (so no [ghpo] section here).
    `cfg` is the one ghpo.local.preflight resolved: its micro-batch is a number."""
    if cfg.deepspeed.micro_batch_size == "auto":
        raise ValueError("trainer_toml needs the config ghpo.local.preflight.preflight resolved")
    lines = ["# written by `ghpo run`; edit the run config instead", ""]
    lines += toml_section("model", {"path": model_path})
    if cfg.model.lora is not None:
        lines += toml_section("model.lora", cfg.model.lora.model_dump())
    lines += toml_section("optim", cfg.optim.model_dump())
    lines += toml_section("deepspeed", cfg.deepspeed.model_dump())
    lines += toml_section(
        "run",
        {
            "steps": cfg.run.steps,
            "seed": cfg.run.seed,
            "checkpoint_dir": run_dir / "checkpoints",
            "checkpoint_every": cfg.run.checkpoint_every,
            "resume": True,
            "port": ends.ports["trainer"],
            "history_file": run_dir / "trainer-steps.jsonl",
            "num_threads": cfg.trainer_threads(),
            "checkpoint_at_start": True,
        },
    )
    lines += toml_section(
        "services",
        {
            "rollout_url": ends.url("rollout"),
            "inference_urls": [ends.url("inference")],
            "broker_url": ends.url("broker"),
            "outage_budget_s": cfg.services.outage_budget_s,
        },
    )
    return "\n".join(lines)


def trainer_spec(cfg: RunConfig, config_path: Path, ends: Endpoints) -> ProcessSpec:
    return ProcessSpec(
        "trainer",
        ghpo_argv("train", "--config", str(config_path)),
        env={"GHPO_TRAINER_TOKEN": ends.token, **environment_of(cfg.ghpo)},
        ready_url=None,
        start_timeout_s=cfg.services.start_timeout_s,
    )
