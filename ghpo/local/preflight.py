"""A run config checked against its model, its data and this machine, before `ghpo run` starts anything.

Each refusal is one line (RunConfigError) that names the setting and what to do:
- model.path: the folder exists, holds config.json and a chat template (the rollout server and the
  evaluation send chat messages; a base model without a template would be prompted with nothing it
  knows); 'smollm2' is the folder `ghpo models prepare smollm2` makes (converted here if absent);
- data: the source loads under data.map (a mapped column it lacks is named with the columns it has), the
  level filter and the hold-out leave training rows, and when hints are on (services.broker_policy other
  than 'none') some rows have a worked solution to cut hints from;
- run.eval: a named benchmark loads (a local copy or the hub), held-out rows exist;
- model.lora: each of target_modules names a linear layer the model has (rank, alpha and dropout are
  bounded by the config itself, which names the key);
- deepspeed.micro_batch_size: the estimate of ghpo.local.memory fits this machine; 'auto' is sized here.
It returns the config the run uses: the model path resolved to a folder, the micro-batch to a number (the
run folder keeps the config as given, so a resume on another machine sizes it again). The tiny model
(model.path empty) is the project's own: it is built later if absent, and its micro-batch is 64.

What it deliberately does not do: start processes or write the run folder (run.py), or check settings
whose errors the services report themselves at start (ports, tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ghpo.local.config import PREPARED_MODELS, RunConfig, RunConfigError
from ghpo.local.memory import AUTO_MAX_ROWS, AUTO_SHARE, GiB, trainer_budget, training_memory
from ghpo.shared.data.benchmarks import BenchmarkUnavailable, load_benchmark
from ghpo.shared.data.loaders import MappingError
from ghpo.shared.data.selection import SelectionError, heldout_records, training_records
from ghpo.shared.data.sources import SourceFormatError

TINY_MICRO_BATCH = AUTO_MAX_ROWS


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def has_chat_template(folder: Path) -> bool:
    """Whether a model folder carries a chat template (a file of its own, or in tokenizer_config.json)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def resolve_model(path: str | None, log: Callable[[str], None]) -> Path | None:
    """The model folder `model.path` names (None: the tiny model); refused when it cannot be trained."""
    if not path:
        return None
    if path in PREPARED_MODELS and not Path(path).exists():
        from ghpo.trainer.models import prepare_smollm2

        try:
            return prepare_smollm2(log=log)
        except FileNotFoundError as exc:
            raise RunConfigError(f"model.path = {path!r}: {_line(exc)}") from None
    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise RunConfigError(
            f"model.path = {path!r}: no Hugging Face model there (no config.json in {folder}); give a model "
            f"folder, or one of {', '.join(PREPARED_MODELS)} (`ghpo models prepare NAME`)"
        )
    if not has_chat_template(folder):
        raise RunConfigError(
            f"model.path = {path!r}: the model has no chat template (no chat_template.jinja, nor one in "
            "tokenizer_config.json), and prompts are sent as chat messages: use an instruct/chat model or "
            "add a chat template to the folder"
        )
    return folder


def check_data(cfg: RunConfig, log: Callable[[str], None]) -> None:
    """The training rows load and can be trained on with this config's hint policy."""
    spec = cfg.data.spec(cfg.run.seed)
    if spec.is_arith:
        return
    try:
        records, report = training_records(spec)
    except MappingError as exc:
        raise RunConfigError(
            f"data.map: {_line(exc)}; map the source's columns, e.g. data.map = "
            '"problem=question,answer=final_answer" (`ghpo data inspect` shows them)'
        ) from None
    except (SourceFormatError, BenchmarkUnavailable, FileNotFoundError) as exc:
        raise RunConfigError(f"data.dataset = {spec.dataset!r}: {_line(exc)}") from None
    except SelectionError as exc:
        raise RunConfigError(_line(exc)) from None
    hintable = sum(r.hintable for r in records)
    if cfg.services.broker_policy != "none" and hintable == 0:
        mapping = f"data.map = {cfg.data.map!r}" if cfg.data.map else "no 'solution' column"
        raise RunConfigError(
            f"data.map: no training row of {spec.dataset} has a worked solution ({mapping}), but "
            f"hints are on (services.broker_policy = {cfg.services.broker_policy!r}): map the solution "
            'column with data.map = "solution=COLUMN", or set services.broker_policy = "none" (plain GRPO)'
        )
    skipped = f", {report.n_skipped} rows skipped (`ghpo data inspect` says why)" if report.n_skipped else ""
    log(f"data: {len(records)} training rows of {spec.dataset}, {hintable} with worked solutions{skipped}")


def check_eval(cfg: RunConfig) -> None:
    """The in-run evaluation's problems can be had."""
    kind = cfg.run.eval
    if kind.startswith("benchmark:"):
        try:
            load_benchmark(kind.removeprefix("benchmark:"), check_answers=False)
        except (BenchmarkUnavailable, MappingError, SourceFormatError) as exc:
            raise RunConfigError(f"run.eval = {kind!r}: {_line(exc)}") from None
    elif kind == "heldout" and not heldout_records(cfg.data.spec(cfg.run.seed)):
        raise RunConfigError("run.eval = 'heldout': data.heldout selects no row; set data.heldout > 0")


def size_micro_batch(cfg: RunConfig, model: Path | None, log: Callable[[str], None]) -> int:
    """deepspeed.micro_batch_size as a number: 'auto' sized, an explicit one checked (module docstring)."""
    asked = cfg.deepspeed.micro_batch_size
    if model is None:
        return TINY_MICRO_BATCH if asked == "auto" else int(asked)
    tokens = cfg.services.max_model_len
    memory = training_memory(
        model,
        tokens,
        gradient_checkpointing=cfg.deepspeed.gradient_checkpointing,
        precision=cfg.deepspeed.precision,
    )
    budget = trainer_budget(
        model, kv_cache_gib=cfg.services.kv_cache_gib, verifier_workers=cfg.services.verifier_workers
    )
    fits = memory.rows_within(budget)
    if fits < 1:
        raise RunConfigError(
            f"model.path: training this model takes about {memory.bytes_for(1) / GiB:.1f} GiB for one row of "
            f"{tokens} tokens (services.max_model_len), and about {budget / GiB:.1f} GiB is left beside the "
            "services: lower services.max_model_len, set deepspeed.gradient_checkpointing = true, or free memory"
        )
    if asked == "auto":
        rows = max(1, min(AUTO_MAX_ROWS, memory.rows_within(int(AUTO_SHARE * budget))))
        log(
            f"deepspeed.micro_batch_size = 'auto': {rows} rows (about {memory.bytes_for(rows) / GiB:.1f} GiB "
            f"of {budget / GiB:.1f} GiB available for rows of {tokens} tokens); set a number to override"
        )
        return rows
    if int(asked) > fits:
        raise RunConfigError(
            f"deepspeed.micro_batch_size = {asked}: about {memory.bytes_for(int(asked)) / GiB:.1f} GiB for "
            f"rows of {tokens} tokens of this model, {budget / GiB:.1f} GiB available: set "
            f"deepspeed.micro_batch_size = {fits} or less, or 'auto'"
        )
    return int(asked)


def linear_layer_names(folder: Path) -> set[str]:
    """Names (last part) of the linear layers of the model in `folder`, built on the meta device: no
    weights read, no memory taken."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def check_lora(cfg: RunConfig, model: Path | None, log: Callable[[str], None]) -> None:
    """model.lora.target_modules names linear layers the model has (PEFT would fail at the trainer's start)."""
    lora = cfg.model.lora
    if lora is None or lora.target_modules == ["all-linear"]:
        return
    if model is None:
        from ghpo.trainer.tiny.build import shipped_model

        model = shipped_model(log)
        if model is None:
            return  # built later; PEFT checks the names then
    linear = linear_layer_names(model)
    missing = [name for name in lora.target_modules if name.rsplit(".", 1)[-1] not in linear]
    if missing:
        raise RunConfigError(
            f"model.lora.target_modules: {missing} are no linear layers of this model; its linear layers are "
            f"{sorted(linear)}, or use ['all-linear']"
        )


def preflight(cfg: RunConfig, log: Callable[[str], None] = print) -> RunConfig:
    """`cfg` checked (RunConfigError, one line) and resolved for this machine (module docstring)."""
    model = resolve_model(cfg.model.path, log)
    check_lora(cfg, model, log)
    check_data(cfg, log)
    check_eval(cfg)
    micro_batch = size_micro_batch(cfg, model, log)
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"path": str(model) if model else None}),
            "deepspeed": cfg.deepspeed.model_copy(update={"micro_batch_size": micro_batch}),
        }
    )
