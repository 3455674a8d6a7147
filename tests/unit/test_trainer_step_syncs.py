"""A training step reads values back from the device once, after its last micro-batch, not per micro-batch
(each read is a GPU pipeline stall), and still refuses a step with non-finite log-probs.

The DeepSpeed engine is real (single process, gloo, CPU, the tiny model); batches are built here. Reads
are counted by wrapping the Tensor methods that turn a value into a Python object (`item`, `tolist`,
`__float__`, `__int__`, `__bool__`, `__index__`), only where ghpo's code calls them: DeepSpeed's own reads
in its optimizer step are not the trainer's to remove.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.step import NonFiniteError, train_step
from tests.unit.test_trainer_batches import completion, group

pytestmark = pytest.mark.slow  # builds a DeepSpeed engine

READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
GHPO = str(Path(__file__).resolve().parents[2])


def batch(rows: int) -> Batch:
    completions = [completion([20 + i, 21, 22 + i], 1.0 if i % 2 else -1.0) for i in range(rows)]
    return Batch(
        batch_id=f"b{rows}",
        groups=[group("g", [5, 6, 7], completions, temperature=0.8)],
        created_at=1.0,
    )


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    from ghpo.trainer.tiny import ensure_tiny_model

    config = parse_config(
        {
            "model": {"path": str(ensure_tiny_model())},
            "optim": {"lr": 1e-3},
            "deepspeed": {"zero_stage": 0, "precision": "fp32", "micro_batch_size": 1},
            "run": {"steps": 10, "checkpoint_dir": str(tmp_path_factory.mktemp("ck")), "num_threads": 1},
            "ghpo": {"tis_cap": 2.0},
        }
    )
    return build_engine(config)


def count_reads(monkeypatch) -> list[str]:
    """Reads of tensor values made by code under the repository (not .venv), as 'file:line'."""
    calls: list[str] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(GHPO) and "/.venv/" not in caller:
                calls.append(f"{caller}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return calls


def test_a_step_of_four_micro_batches_reads_the_device_at_most_once(train, monkeypatch):
    train_step(train, batch(4), policy_version=0)  # warm-up: lazy initialisation is not the step's
    calls = count_reads(monkeypatch)
    result = train_step(train, batch(4), policy_version=0)
    assert result.rows == 4 and result.tokens == 12
    assert len(calls) <= 1, calls
    assert result.entropy > 0 and result.grad_norm > 0 and "is_weight_mean" in result.extra


def test_a_nan_in_the_forward_of_one_micro_batch_refuses_the_step_and_names_it(train):
    before = {n: p.detach().clone() for n, p in train.module.named_parameters()}
    forwards = []

    def glitch(_module, _inputs, output):
        forwards.append(1)
        if len(forwards) == 3:
            output.logits = output.logits * float("nan")
        return output

    handle = train.module.register_forward_hook(glitch)
    try:
        with pytest.raises(NonFiniteError, match=r"non-finite log-probs .* in micro-batch 2 of batch b4"):
            train_step(train, batch(4), policy_version=0)
    finally:
        handle.remove()
    assert len(forwards) == 4  # every micro-batch still ran its backward (other ranks' collectives)
    after = dict(train.module.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert all(p.grad is None or not p.grad.any() for p in train.module.parameters())
