"""Per-level greedy accuracy of a model folder on the arithmetic task (batched transformers generate).

Completions are scored by `accuracy()`, the one bridge to the project's verifier (the same pure
scoring function the verifier service runs). Not here: sampling
temperature, pass@k, hinted evaluation (GHPO evaluates without hints).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ghpo.shared.data.records import PromptRecord
from ghpo.shared.tasks import arith
from ghpo.trainer.tiny.prompts import chat_messages


def accuracy(completion: str, gold: str) -> float:
    """The verifier's accuracy reward (math-verify, \\boxed{} first, then <answer> tags): 1.0 or 0.0."""
    from ghpo.shared.scoring.answers import score

    return score(completion, gold).accuracy


def generate_greedy(model, tokenizer, records: list[PromptRecord], batch_size: int = 64) -> list[str]:
    import torch

    completions: list[str] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(chat_messages(r), add_generation_prompt=True, tokenize=False)
            for r in chunk
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        # Room for the full worked solution plus slack; a longer completion is wrong anyway.
        budget = max(len(tokenizer(r.solution or "")["input_ids"]) for r in chunk) * 2 + 32
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=budget, do_sample=False)
        for row in out[:, enc["input_ids"].shape[1] :]:
            completions.append(tokenizer.decode(row, skip_special_tokens=True))
    return completions


def evaluate_levels(
    model_dir: Path, n_per_level: int = 100, levels: list[int] | None = None, seed: int = 0
) -> dict[int, tuple[int, int]]:
    """{level: (correct, total)} on the held-out split, greedy, with the model's chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    records = arith.make_split("heldout", n_per_level, levels or list(arith.LEVELS), seed=seed)
    completions = generate_greedy(model, tokenizer, records)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for record, completion in zip(records, completions, strict=True):
        counts[record.level][0] += int(accuracy(completion, record.answer))
        counts[record.level][1] += 1
    return {level: (c, n) for level, (c, n) in sorted(counts.items())}
