"""Per-level accuracy of a model folder on the arithmetic task (batched transformers generate), greedy
and sampled (temperature 1, the mean over a few samples per problem), with no hint or with GHPO's hint
at a given ratio of the worked solution. Both are reported because RL moves them differently: it
sharpens the policy's preferred step (greedy) before it removes the mass on the others (sampled).

Completions are scored by `accuracy()`, the one bridge to the project's verifier (the same pure
scoring function the verifier service runs). The hinted table (`evaluate_hint_table`) is how the tiny
model's fitness for GHPO is measured: held-out accuracy per level at each hint ratio, so one can see at
which level a hint turns an all-wrong prompt into a mixed one. Not here: pass@k.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ghpo.shared.data.records import PromptRecord
from ghpo.shared.tasks import arith
from ghpo.trainer.tiny.prompts import chat_messages


def accuracy(completion: str, gold: str) -> float:
    """The verifier's accuracy reward (math-verify, \\boxed{} first, then <answer> tags): 1.0 or 0.0."""
    from ghpo.shared.scoring.answers import score

    return score(completion, gold).accuracy


def generate_greedy(
    model, tokenizer, records: list[PromptRecord], batch_size: int = 64, hint_ratio: float = 0.0
) -> list[str]:
    return generate_completions(model, tokenizer, records, batch_size=batch_size, hint_ratio=hint_ratio)


def generate_completions(
    model,
    tokenizer,
    records: list[PromptRecord],
    batch_size: int = 64,
    hint_ratio: float = 0.0,
    temperature: float = 0.0,
) -> list[str]:
    """One completion per record: greedy at temperature 0, else sampled from the full distribution
    divided by `temperature` (no top-k or top-p), from torch's global generator."""
    import torch

    sampling = (
        {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        if temperature > 0
        else {"do_sample": False}
    )
    completions: list[str] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(
                chat_messages(r, hint_ratio), add_generation_prompt=True, tokenize=False
            )
            for r in chunk
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        # Room for the full worked solution plus slack; a longer completion is wrong anyway.
        budget = max(len(tokenizer(r.solution or "")["input_ids"]) for r in chunk) * 2 + 32
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=budget, **sampling)
        for row in out[:, enc["input_ids"].shape[1] :]:
            completions.append(tokenizer.decode(row, skip_special_tokens=True))
    return completions


def _load(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, tokenizer


SAMPLED_SEED = 1234  # sampled accuracy draws from a fixed generator, so a table is reproducible


def _score_by_level(
    model, tokenizer, records: list[PromptRecord], hint_ratio: float, samples: int = 0
) -> dict[int, tuple[int, int]]:
    """{level: (correct, total)}: greedy when `samples` is 0, else over `samples` completions per
    problem at temperature 1 (total = problems x samples)."""
    import torch

    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    if samples:
        torch.manual_seed(SAMPLED_SEED)
    for _ in range(max(samples, 1)):
        completions = generate_completions(
            model, tokenizer, records, hint_ratio=hint_ratio, temperature=1.0 if samples else 0.0
        )
        for record, completion in zip(records, completions, strict=True):
            counts[record.level][0] += int(accuracy(completion, record.answer))
            counts[record.level][1] += 1
    return {level: (c, n) for level, (c, n) in sorted(counts.items())}


def evaluate_levels(
    model_dir: Path, n_per_level: int = 100, levels: list[int] | None = None, seed: int = 0, samples: int = 0
) -> dict[int, tuple[int, int]]:
    """{level: (correct, total)} on the held-out split with the model's chat template: greedy, or over
    `samples` completions per problem at temperature 1."""
    model, tokenizer = _load(model_dir)
    records = arith.make_split("heldout", n_per_level, levels or list(arith.LEVELS), seed=seed)
    return _score_by_level(model, tokenizer, records, 0.0, samples)


def evaluate_hint_table(
    model_dir: Path,
    n_per_level: int = 200,
    levels: Sequence[int] | None = None,
    ratios: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
    seed: int = 0,
    samples: int = 0,
) -> dict[float, dict[int, tuple[int, int]]]:
    """{hint ratio: {level: (correct, total)}}: the same held-out problems asked with each hint ratio
    (0 = no hint; otherwise the reference hint, cut by characters, in the user turn); greedy, or over
    `samples` completions per problem at temperature 1."""
    model, tokenizer = _load(model_dir)
    records = arith.make_split("heldout", n_per_level, list(levels or arith.LEVELS), seed=seed)
    return {ratio: _score_by_level(model, tokenizer, records, ratio, samples) for ratio in ratios}


HINT_TABLE_FILE = "hint_table.json"  # beside a shipped build: the table it was measured to have
HINT_TABLE_PER_LEVEL = 200
HINT_TABLE_SAMPLES = 4  # sampled accuracy: the mean over this many completions per problem at T = 1
LADDER_LEVELS, LADDER_PER_LEVEL = (1, 2, 3, 4, 5), 200  # the ladder's groups of 8, per level


def write_hint_table(model_dir: Path) -> dict[str, dict[float, dict[int, tuple[int, int]]]]:
    """Measure `model_dir`'s hint table (200 held-out problems per level, every level, greedy and sampled)
    and its ladder (`evaluate_ladder` on LADDER_LEVELS) and store them in the folder as JSON:
    {"per_level": n, "samples": k, "table": {ratio: {level: [correct, total]}} (greedy), "sampled": (the
    same over k samples), "ladder": {level: ...}}. Returns {"greedy": table, "sampled": table}."""
    import json

    tables = {
        kind: evaluate_hint_table(model_dir, n_per_level=HINT_TABLE_PER_LEVEL, samples=samples)
        for kind, samples in (("greedy", 0), ("sampled", HINT_TABLE_SAMPLES))
    }
    ladder = evaluate_ladder(model_dir, LADDER_LEVELS, n_per_level=LADDER_PER_LEVEL)

    def as_json(table: dict[float, dict[int, tuple[int, int]]]) -> dict[str, dict[str, list[int]]]:
        return {str(r): {str(lv): list(ct) for lv, ct in rows.items()} for r, rows in table.items()}

    payload = {
        "per_level": HINT_TABLE_PER_LEVEL,
        "samples": HINT_TABLE_SAMPLES,
        "table": as_json(tables["greedy"]),
        "sampled": as_json(tables["sampled"]),
        "ladder": {str(level): entry for level, entry in ladder.items()},
    }
    (Path(model_dir) / HINT_TABLE_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return tables


def read_hint_table(model_dir: Path, kind: str = "greedy") -> dict[float, dict[int, tuple[int, int]]]:
    """The stored table, greedy or (kind="sampled") sampled: {ratio: {level: (correct, total)}}."""
    import json

    payload = json.loads((Path(model_dir) / HINT_TABLE_FILE).read_text())
    rows_by_ratio = payload["table" if kind == "greedy" else kind]
    return {
        float(r): {int(lv): (ct[0], ct[1]) for lv, ct in rows.items()} for r, rows in rows_by_ratio.items()
    }


def read_ladder(model_dir: Path) -> dict[int, dict[str, object]]:
    """The stored ladder measurement (`evaluate_ladder`'s result) by level."""
    import json

    payload = json.loads((Path(model_dir) / HINT_TABLE_FILE).read_text())
    return {int(level): entry for level, entry in payload["ladder"].items()}


def evaluate_ladder(
    model_dir: Path,
    levels: Sequence[int],
    n_per_level: int = 100,
    group_size: int = 8,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    seed: int = 0,
) -> dict[int, dict[str, object]]:
    """GHPO's ladder as the rollout server runs it, on held-out problems at temperature 1: a group of
    `group_size` plain completions per problem; each all-wrong group asked again with the next hint ratio
    until one completion is right or the ladder ends. Per level: {"groups", "plain_signal" (groups with a
    success without hints: sampled pass@G), "ladder": [[ratio, tried, rescued], ...]}."""
    import torch

    model, tokenizer = _load(model_dir)
    records = arith.make_split("heldout", n_per_level, list(levels), seed=seed)
    torch.manual_seed(SAMPLED_SEED)
    result: dict[int, dict[str, object]] = {}
    for level in levels:
        pending = [r for r in records if r.level == level]
        entry: dict[str, object] = {"groups": len(pending)}
        ladder = []
        for ratio in (0.0, *ratios):
            group = [r for r in pending for _ in range(group_size)]
            completions = generate_completions(model, tokenizer, group, hint_ratio=ratio, temperature=1.0)
            right = {r.id for r, c in zip(group, completions, strict=True) if accuracy(c, r.answer)}
            if ratio == 0.0:
                entry["plain_signal"] = len(right)
            else:
                ladder.append([ratio, len(pending), len(right)])
            pending = [r for r in pending if r.id not in right]
        entry["ladder"] = ladder
        result[level] = entry
    return result
