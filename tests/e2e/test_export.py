"""The trained policy out: a DeepSpeed checkpoint of the tiny model, after a real optimizer step, exported
as a Hugging Face folder that transformers loads with the trainer's weights exactly (same logits), tied
embeddings stored once, the tokenizer and its chat template beside them; and `ghpo export` on a run
folder, which records the run's prompt template for `ghpo eval --model`.

Without ZeRO the module's weights are exported; under ZeRO 2 and 3 the fp32 masters gathered from the
optimizer partitions (DeepSpeed's zero_to_fp32), a path of its own: both are checked (ZeRO ≥ 2 slow).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("deepspeed")

import torch

from ghpo.trainer.train.checkpoint import Checkpointer, TrainerState
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.export import EXPORT_INFO, ExportError, export_checkpoint
from ghpo.trainer.train.weights import full_state_dict

INPUT_IDS = torch.tensor([[5, 17, 42, 99, 3, 64, 7, 250], [1, 2, 3, 4, 5, 6, 7, 8]])


def trained_checkpoint(model_dir, root, zero_stage: int):
    """A checkpoint after one AdamW step (lr 1e-2, so the weights move visibly), and the engine."""
    config = parse_config(
        {
            "model": {"path": str(model_dir)},
            "optim": {"lr": 1e-2, "schedule": "constant"},
            "deepspeed": {"zero_stage": zero_stage, "micro_batch_size": 2},
            "run": {"steps": 1, "checkpoint_dir": str(root), "num_threads": 1},
        }
    )
    train = build_engine(config)
    loss = train.engine(input_ids=INPUT_IDS).logits.float().pow(2).mean()
    train.engine.backward(loss)
    train.engine.step()
    checkpointer = Checkpointer(root)
    checkpointer.save(train, TrainerState(step=1, policy_version=1))
    return checkpointer.latest(), train


def logits_of(state: dict[str, torch.Tensor], model_dir) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    model.load_state_dict(state, strict=False)  # the trainer's parameters (a tied lm_head follows)
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits


@pytest.mark.parametrize(
    "zero_stage", [0, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)]
)
def test_an_exported_checkpoint_loads_in_transformers_with_the_trainers_weights(
    model_dir, tmp_path, zero_stage
):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint, train = trained_checkpoint(model_dir, tmp_path / "checkpoints", zero_stage)
    trained = full_state_dict(train, bucket_bytes=1 << 20)

    out = export_checkpoint(checkpoint, model_dir, tmp_path / "export", info={"prompt": {"instruction": "!"}})

    exported = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        got = exported(input_ids=INPUT_IDS).logits
    assert torch.equal(got, logits_of(trained, model_dir))
    assert not torch.allclose(got, logits_of({}, model_dir))  # the step moved the weights: not the base model
    assert exported.lm_head.weight.data_ptr() == exported.model.embed_tokens.weight.data_ptr()
    with safe_open(out / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in set(f.keys())  # tied: stored once
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "1+1"}], tokenize=False)
    assert (out / "generation_config.json").is_file()
    info = json.loads((out / EXPORT_INFO).read_text())
    assert (info["step"], info["policy_version"], info["prompt"]) == (1, 1, {"instruction": "!"})


def test_ghpo_export_reads_the_run_folder_records_its_prompt_and_replaces_only_an_export(model_dir, tmp_path):
    from ghpo.cli import main
    from ghpo.local.config import parse_run_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    checkpoint, _train = trained_checkpoint(model_dir, run_dir / "checkpoints", 0)
    (run_dir / "trainer.toml").write_text(
        f'[model]\npath = "{model_dir}"\n\n[run]\nsteps = 1\ncheckpoint_dir = "{run_dir / "checkpoints"}"\n'
    )
    cfg = parse_run_config({"prompt": {"system": "Be brief.", "instruction": "\nBox it."}})
    (run_dir / "run-config.json").write_text(cfg.model_dump_json())

    assert main(["export", "--run-dir", str(run_dir)]) == 0
    prompt = json.loads((run_dir / "export" / EXPORT_INFO).read_text())["prompt"]
    assert (prompt["system"], prompt["instruction"]) == ("Be brief.", "\nBox it.")
    assert main(["export", "--run-dir", str(run_dir)]) == 0  # an earlier export is replaced

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an earlier ghpo export"):
        export_checkpoint(checkpoint, model_dir, occupied)
    assert main(["export", "--run-dir", str(tmp_path / "nothing")]) == 2  # one line, no traceback


def test_ghpo_export_into_a_log_file_writes_no_carriage_return(model_dir, tmp_path):
    """transformers' "Writing model shards" bar redraws with carriage returns; in a log file (`make run >
    run.log 2>&1`, a service's log) the libraries' bars are off, as ghpo's own are."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained_checkpoint(model_dir, run_dir / "checkpoints", 0)
    (run_dir / "trainer.toml").write_text(
        f'[model]\npath = "{model_dir}"\n\n[run]\nsteps = 1\ncheckpoint_dir = "{run_dir / "checkpoints"}"\n'
    )
    log = tmp_path / "export.log"
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "ghpo", "export", "--run-dir", str(run_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    text = log.read_bytes()
    assert proc.returncode == 0, text[-2000:]
    assert (run_dir / "export" / "model.safetensors").is_file()  # the model was written
    assert b"\r" not in text, text[-2000:]
    assert str(run_dir / "export").encode() in text


def test_eval_asks_an_exported_policy_with_the_prompt_it_was_trained_with(model_dir, tmp_path):
    from ghpo.cli import build_parser
    from ghpo.commands.eval import build_config

    checkpoint, _train = trained_checkpoint(model_dir, tmp_path / "checkpoints", 0)
    out = export_checkpoint(
        checkpoint, model_dir, tmp_path / "export", info={"prompt": {"system": "S", "instruction": "I"}}
    )
    args = build_parser().parse_args(["eval", "--model", str(out), "--benchmarks", "arith"])
    assert (build_config(args).system, build_config(args).instruction) == ("S", "I")
    args = build_parser().parse_args(
        ["eval", "--model", str(out), "--benchmarks", "arith", "--instruction", ""]
    )
    assert build_config(args).instruction == ""  # a flag overrides the record
