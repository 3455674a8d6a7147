"""ghpo next to TRL's GRPOTrainer on this CPU: seconds per optimizer step and held-out greedy accuracy, with
the same tiny model, task, budget and reward.

Both sides train the tiny model (ensure_tiny_model) on the arith train split (the same levels and
problems, each side in its own shuffled order), with the model's chat template, P prompts x G samples per
optimizer step, at most `--max-tokens` completion tokens, temperature 1, AdamW at a constant `--lr`, no
KL term, clip 0.2, rewards standardised within each group, `--steps` steps, and the verifier's reward
(accuracy + 0.5 x format, `ghpo.shared.scoring.answers.score`; TRL calls it in-process). No hints on
either side: ghpo's broker runs policy `none`, so this compares the GRPO machinery, not GHPO's guidance.

- ghpo: `ghpo run` in a subprocess, with a run config this script writes: the real services and the
  real trainer, asynchronous as shipped (`--max-policy-lag`, default 1), vLLM CPU generation, each
  process with its default threads (the trainer: `ghpo run`'s cores - 1). Seconds per step: median interval
  between the trainer's step lines.
- TRL: GRPOTrainer in this process, HF `generate` on CPU (use_vllm False), torch on every core,
  generation and training in turn. Seconds per step: median interval between optimizer steps.
The first step of each is excluded (start-up). Held-out accuracy: the same evaluator for both final
models and the starting one (ghpo.trainer.tiny.evaluate: batched greedy transformers generate, scored by
the verifier), on `--eval-per-level` held-out problems of each `--eval-levels` level.
Deliberately not here: a claim about learning (a few steps move little; the accuracy rows show that both
sides train without breaking the model, on equal terms).

    python bench/peer_trl.py [--steps 20] [--prompts 8] [--group-size 8] [--max-tokens 96]

`--quick`: 3 steps of 2 prompts x 4 samples, 32 tokens, 3 held-out problems per level. Each figure is also
printed as a BENCH_RESULT line.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

from ghpo.local.stack import toml_document
from ghpo.shared.bench_results import emit

QUICK = {"steps": 3, "prompts": 2, "group_size": 4, "max_tokens": 32, "eval_per_level": 3}
LOG_STEP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\bstep (\d+): loss ")


def medians_of_intervals(times: list[float]) -> float:
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return statistics.median(gaps)


def ghpo_side(args: argparse.Namespace, model: Path, tmp: Path) -> tuple[float, Path]:
    """Train through `ghpo run`; returns (median seconds per step, the final checkpoint's folder)."""
    config = {
        "run": {
            "steps": args.steps,
            "max_minutes": 600,
            "seed": args.seed,
            "checkpoint_every": args.steps,
            "eval_every": 10**6,  # only the start and end evaluations of `ghpo run`, kept tiny below:
            "eval_per_level": 1,  # this script evaluates the final weights itself
            "eval_levels": [1],
        },
        "model": {"path": str(model)},
        "data": {"arith_levels": args.levels, "arith_per_level": args.per_level},
        "rollout": {
            "group_size": args.group_size,
            "batch_groups": args.prompts,
            "max_tokens": args.max_tokens,
            "temperature": 1.0,
            "max_policy_lag": args.max_policy_lag,
        },
        "optim": {"lr": args.lr, "warmup_steps": 0, "schedule": "constant"},
        "ghpo": {
            "cold_start_steps": 0,
            "beta": 0.0,
            "eps_low": 0.2,
            "eps_high": 0.2,
            "scale_advantages": True,
        },
        "services": {"broker_policy": "none"},
    }
    path = tmp / "ghpo-run.toml"
    path.write_text(toml_document(config))
    run_dir = tmp / "ghpo-run"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "run", "--config", str(path), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"ghpo run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"ghpo run: {time.monotonic() - started:.0f} s in all (services start-up and evaluations included)")
    stamps = {}
    for line in (run_dir / "logs" / "trainer.log").read_text().splitlines():
        if m := LOG_STEP.match(line):
            stamps[int(m[2])] = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert len(stamps) == args.steps, f"trainer logged {len(stamps)} of {args.steps} steps"
    checkpoints = run_dir / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    return medians_of_intervals([stamps[s] for s in sorted(stamps)]), latest


def trl_side(args: argparse.Namespace, model: Path, tmp: Path):
    """Train with TRL's GRPOTrainer; returns (median seconds per step, the trained model)."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    # TRL warns about the vLLM version at import; this script does not use TRL's vLLM path.
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")
    from trl import GRPOConfig, GRPOTrainer

    from ghpo.local.config import usable_cores
    from ghpo.shared.scoring.answers import score
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.prompts import chat_messages

    torch.set_num_threads(usable_cores())
    records = arith.make_split("train", args.per_level, args.levels, seed=args.seed)
    dataset = Dataset.from_list([{"prompt": chat_messages(r), "answer": r.answer} for r in records])

    def verifier_reward(completions, answer, **_):
        return [score(c[0]["content"], gold).total for c, gold in zip(completions, answer, strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, *_a, **_k):
            self.times.append(time.monotonic())

    config = GRPOConfig(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=args.prompts * args.group_size,
        gradient_accumulation_steps=1,
        num_generations=args.group_size,
        max_completion_length=args.max_tokens,
        temperature=1.0,
        top_p=1.0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=args.steps,
        beta=0.0,
        epsilon=0.2,
        loss_type="bnpo",
        scale_rewards="group",
        num_iterations=1,
        use_vllm=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=args.seed,
        disable_tqdm=True,
    )
    clock = StepClock()
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    trainer = GRPOTrainer(
        model=str(model),
        reward_funcs=verifier_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    assert len(clock.times) == args.steps, f"TRL took {len(clock.times)} of {args.steps} steps"
    return medians_of_intervals(clock.times), trainer.model


def heldout_accuracy(model, tokenizer, args: argparse.Namespace) -> float:
    """Greedy pass@1 over the held-out problems of every eval level, pooled (the tiny evaluator)."""
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.evaluate import accuracy, generate_greedy

    records = arith.make_split("heldout", args.eval_per_level, args.eval_levels, seed=args.seed)
    model.eval()
    completions = generate_greedy(model, tokenizer, records)
    return sum(accuracy(c, r.answer) for c, r in zip(completions, records, strict=True)) / len(records)


def ghpo_model(base: Path, checkpoint: Path):
    """The tiny model with the weights of a ghpo trainer checkpoint (DeepSpeed's module state)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    state = torch.load(checkpoint / "deepspeed" / "ds" / "mp_rank_00_model_states.pt", weights_only=False)
    # A tied lm_head is not in the module state (it is the embedding); nothing else may be missing.
    result = model.load_state_dict(state["module"], strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(k.startswith("lm_head") for k in result.missing_keys), result.missing_keys
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=8, help="P: prompts (groups) per optimizer step")
    parser.add_argument("--group-size", type=int, default=8, help="G: samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3, 4])
    parser.add_argument("--per-level", type=int, default=400, help="arith training problems per level")
    parser.add_argument("--max-policy-lag", type=int, default=1, help="ghpo side (0: synchronous like TRL)")
    parser.add_argument("--eval-levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--eval-per-level", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is start-up and not timed)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.trainer.tiny import ensure_tiny_model

    model_dir = ensure_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    with tempfile.TemporaryDirectory(prefix="ghpo-bench-trl-") as tmp_name:
        tmp = Path(tmp_name)
        ghpo_s, checkpoint = ghpo_side(args, model_dir, tmp)
        ghpo_acc = heldout_accuracy(ghpo_model(model_dir, checkpoint), tokenizer, args)
    with tempfile.TemporaryDirectory(prefix="ghpo-bench-trl-") as tmp_name:
        trl_s, trl_model = trl_side(args, model_dir, Path(tmp_name))
        trl_acc = heldout_accuracy(trl_model, tokenizer, args)
    start_acc = heldout_accuracy(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), tokenizer, args
    )
    n_eval = args.eval_per_level * len(args.eval_levels)
    print(
        f"\n{args.steps} steps of {args.prompts} prompts x G = {args.group_size}, "
        f"max {args.max_tokens} tokens, "
        f"lr {args.lr:g}; held-out: {n_eval} problems, levels {args.eval_levels}, greedy"
    )
    print(f"{'':34s}{'s/step':>8s}{'held-out accuracy':>19s}")
    print(f"{'ghpo (ghpo run, lag ' + str(args.max_policy_lag) + ')':34s}{ghpo_s:8.2f}{ghpo_acc:19.1%}")
    print(f"{'TRL GRPOTrainer (HF generate)':34s}{trl_s:8.2f}{trl_acc:19.1%}")
    print(f"{'starting model':34s}{'':8s}{start_acc:19.1%}")
    faster, ratio = ("TRL", ghpo_s / trl_s) if trl_s < ghpo_s else ("ghpo", trl_s / ghpo_s)
    print(f"ghpo / TRL seconds per step: {ghpo_s / trl_s:.2f} ({faster} is {ratio:.2f}x faster per step)")
    emit(
        "peer.ghpo_s_per_step",
        ghpo_s,
        "s/step",
        baseline="TRL GRPOTrainer, same model/task/budget, HF generate on CPU",
        baseline_value=trl_s,
        note=f"{args.prompts}x{args.group_size} samples, {args.max_tokens} tokens; "
        f"ghpo lag {args.max_policy_lag}",
    )
    emit(
        "peer.ghpo_heldout_accuracy",
        ghpo_acc,
        "fraction",
        baseline="TRL GRPOTrainer's final model, same evaluator",
        baseline_value=trl_acc,
        note=f"after {args.steps} steps; starting model {start_acc:.3f}; {n_eval} greedy problems",
    )
    emit(
        "peer.trl_heldout_accuracy", trl_acc, "fraction", baseline="starting model", baseline_value=start_acc
    )


if __name__ == "__main__":
    main()
