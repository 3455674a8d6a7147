"""A config, dataset or model folder that cannot work is refused before `ghpo run` starts anything, in one
line naming the setting and what to do: missing columns after mapping, no solution column while hints
are on, a model without a chat template, a micro-batch that cannot fit, a held-out evaluation without
held-out rows. Real loaders and the real memory estimate; model folders are written here (a config and a
safetensors header are all the checks read), so nothing is loaded or downloaded."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ghpo.local.config import RunConfigError, parse_run_config
from ghpo.local.memory import trainer_budget, training_memory
from ghpo.local.preflight import preflight

QUIET = {"log": lambda _line: None}


def dataset(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


QA_ROWS = [
    {"question": f"What is {i}+{i}?", "final_answer": str(2 * i), "worked": f"{i}+{i}={2 * i}"}
    for i in range(8)
]


def model_folder(
    tmp_path: Path, *, params: int, hidden: int, layers: int, vocab: int, template: bool = True
) -> Path:
    """A model folder as the checks see it: config.json, a chat template, a safetensors header of
    `params` fp32 parameters (the data itself is not written: nothing here loads the weights)."""
    folder = tmp_path / "model"
    folder.mkdir()
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": 4 * hidden,
        "vocab_size": vocab,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    if template:
        (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [params], "data_offsets": [0, 4 * params]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return folder


def refusal(data: dict) -> str:
    with pytest.raises(RunConfigError) as info:
        preflight(parse_run_config(data), **QUIET)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_dataset_without_the_mapped_columns_is_refused_naming_data_map_and_its_columns(tmp_path):
    message = refusal({"data": {"dataset": dataset(tmp_path, QA_ROWS)}})

    assert message.startswith("data.map: ")
    assert "no column 'problem'" in message and "columns: final_answer, question, worked" in message


def test_no_solution_column_while_hints_are_on_is_refused_and_plain_grpo_is_not(tmp_path):
    data = {"dataset": dataset(tmp_path, QA_ROWS), "map": "problem=question,answer=final_answer"}

    message = refusal({"data": data})
    assert message.startswith("data.map: no training row")
    assert "services.broker_policy" in message and 'data.map = "solution=COLUMN"' in message
    preflight(parse_run_config({"data": data, "services": {"broker_policy": "none"}}), **QUIET)
    preflight(parse_run_config({"data": {**data, "map": data["map"] + ",solution=worked"}}), **QUIET)


def test_a_model_folder_without_a_chat_template_is_refused(tmp_path):
    folder = model_folder(tmp_path, params=1000, hidden=8, layers=1, vocab=16, template=False)

    message = refusal({"model": {"path": str(folder)}})
    assert message.startswith("model.path = ") and "no chat template" in message


def test_a_model_path_that_is_no_model_is_refused(tmp_path):
    message = refusal({"model": {"path": str(tmp_path)}})
    assert "no config.json" in message and "ghpo models prepare" in message


def test_a_model_that_cannot_train_one_row_here_is_refused_naming_the_settings(tmp_path):
    # 200 billion parameters: 16 bytes each is more memory than any machine this runs on
    folder = model_folder(tmp_path, params=200 * 10**9, hidden=64, layers=2, vocab=64)

    message = refusal({"model": {"path": str(folder)}})
    assert message.startswith("model.path: training this model takes about")
    assert "services.max_model_len" in message and "gradient_checkpointing" in message


def test_a_micro_batch_that_cannot_fit_is_refused_with_the_largest_that_does(tmp_path):
    folder = model_folder(tmp_path, params=10**6, hidden=4096, layers=32, vocab=32_000)
    cfg = parse_run_config({"model": {"path": str(folder)}, "services": {"max_model_len": 512}})
    memory = training_memory(folder, 512)
    fits = memory.rows_within(trainer_budget(folder, kv_cache_gib=1, verifier_workers=1))
    if not 1 <= fits < 4096:
        pytest.skip(f"this machine fits {fits} rows of the test model; the test needs 1..4095")

    message = refusal({**cfg.model_dump(exclude={"deepspeed"}), "deepspeed": {"micro_batch_size": fits + 1}})
    assert message.startswith(f"deepspeed.micro_batch_size = {fits + 1}: about")
    assert f"set deepspeed.micro_batch_size = {fits} or less" in message
    auto = preflight(cfg, **QUIET).deepspeed.micro_batch_size
    assert 1 <= auto <= min(64, fits)  # 'auto' sizes it within what fits


def test_a_held_out_evaluation_needs_held_out_rows():
    with pytest.raises(RunConfigError, match=r"run\.eval = 'heldout' evaluates rows held out"):
        parse_run_config({"run": {"eval": "heldout"}, "data": {"dataset": "math500"}})


def test_a_completion_budget_as_long_as_the_context_is_refused():
    with pytest.raises(RunConfigError, match=r"rollout\.max_tokens = 512 leaves no room for a prompt"):
        parse_run_config({"rollout": {"max_tokens": 512}, "services": {"max_model_len": 512}})


def test_ghpo_run_refuses_a_bad_config_in_one_line_and_creates_no_run_folder(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'[data]\ndataset = "{dataset(tmp_path, QA_ROWS)}"\n')
    run_dir = tmp_path / "run"

    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "run", "--config", str(config), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("ghpo run: error: data.map: ") and proc.stderr.count("\n") == 1
    assert not run_dir.exists()
