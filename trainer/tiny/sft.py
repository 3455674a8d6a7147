"""Supervised warm start of the tiny model on short arithmetic chains (CPU, fp32, deterministic).

Training examples are drawn on the fly from the *train* split only (held-out problems are rejected by
their hash), from a fixed mixture of problem shapes (`arith.LevelSpec`s, on or off the ladder). A share of the prompts carries a GHPO hint (a prefix of the
worked solution appended to the user turn) while the target stays the full completion: the model learns
to copy the hinted steps and carry on, which is what makes guidance effective during RL. The loss covers
assistant tokens only. Not here: caching, saving, evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from ghpo.shared.data.records import PromptRecord
from ghpo.shared.tasks import arith
from ghpo.trainer.tiny.prompts import assistant_target, chat_messages

HINT_RATIOS = (0.25, 0.5, 0.75)


def noisy_record(
    record: PromptRecord, problem: arith.Problem, rng: random.Random, slip: float, keep_chars: int
) -> PromptRecord:
    """`record` as a noisy teacher writes it: each operation's result is one too high with probability
    `slip`, and the chain carries on from the slipped value (so the steps stay self-consistent and the
    boxed answer is wrong). Lines that start within the first `keep_chars` characters of the worked
    solution (the part a hint shows) are always right, so a hinted prompt teaches copying a right hint."""
    if slip <= 0.0:
        return record
    numbers, ops = list(problem.numbers), list(problem.ops)
    lines = [arith.render(numbers, ops)]
    offset = len(lines[0]) + 1  # where the next line starts in the solution text
    while ops:
        done = ops.index("*") if "*" in ops else 0  # where reduce_once puts the value it computes
        numbers, ops = arith.reduce_once(numbers, ops)
        if offset >= keep_chars and rng.random() < slip:
            numbers[done] += 1
        lines.append("= " + arith.render(numbers, ops))
        offset += len(lines[-1]) + 1
    answer = str(numbers[0])
    solution = "\n".join(lines) + f"\n\\boxed{{{answer}}}"
    return dataclasses.replace(record, answer=answer, solution=solution)


def sample_example(
    rng: random.Random, mix: Sequence[tuple[arith.LevelSpec, float]], hint_share: float, slip: float = 0.0
):
    """One (messages, target) pair from the train split, drawn from `rng`: a problem shape picked from
    `mix` by weight, then (with probability `hint_share`) a hint cut from its worked solution, and the
    target written by a teacher that slips with probability `slip` per line after the hint
    (`noisy_record`)."""
    specs, weights = zip(*mix, strict=True)
    index = rng.choices(range(len(specs)), weights=weights)[0]
    while True:
        problem = arith.generate_spec(specs[index], rng, level=index + 1)
        if arith.split_of(problem.text) == "train":
            break
    record = arith.to_record(problem)
    ratio = 0.0
    if rng.random() < hint_share:
        # Mostly the ladder's ratios, sometimes any cut, so the model copes with cuts anywhere.
        ratio = rng.choice(HINT_RATIOS) if rng.random() < 0.7 else rng.uniform(0.05, 0.95)
    messages = chat_messages(record, hint_ratio=ratio)
    keep_chars = round(len(record.solution or "") * ratio)  # the hint's cut (shared.algorithm.hints)
    return messages, assistant_target(noisy_record(record, problem, rng, slip, keep_chars))


_SENTINEL = "\x00content\x00"


@functools.lru_cache(maxsize=8)
def _template_parts(tokenizer: PreTrainedTokenizerFast) -> tuple[str, str]:
    """The chat template's text around a single user turn (rendered once: the template inserts the
    content verbatim, so rendering it per example would only cost time; a test checks the two agree)."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], add_generation_prompt=True, tokenize=False
    )
    before, _, after = rendered.partition(_SENTINEL)
    return before, after


def encode(tokenizer: PreTrainedTokenizerFast, messages, target: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + target + EOS, and labels masking the prompt with -100."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        before, after = _template_parts(tokenizer)
        prompt_text = before + messages[0]["content"] + after
    else:
        prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt + completion, [-100] * len(prompt) + completion


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def train(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    mix: Sequence[tuple[arith.LevelSpec, float]],
    hint_share: float,
    slip: float = 0.0,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Run SFT in place; returns the loss per step."""
    rng = random.Random(f"tiny-sft:{seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    start = time.monotonic()
    for step in range(steps):
        batch = [encode(tokenizer, *sample_example(rng, mix, hint_share, slip)) for _ in range(batch_size)]
        out = model(**collate(batch, tokenizer.pad_token_id))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if step % 50 == 0 or step == steps - 1:
            recent = sum(losses[-50:]) / len(losses[-50:])
            log(f"sft step {step + 1}/{steps} loss {recent:.4f} ({time.monotonic() - start:.0f}s)")
    model.eval()
    return losses
