"""ghpo next to TRL's GRPOTrainer on this CPU: held-out gain and seconds per optimizer step, with the same tiny
model, task, budget and reward, over several seeds.

Both sides train the tiny model (ensure_tiny_model) on the arith train split (the same levels and
problems, each side in its own shuffled order), with the model's chat template, P prompts x G samples per
optimizer step, at most `--max-tokens` completion tokens, `--temperature` (1), AdamW at a constant `--lr`, no
warm-up, no KL term, clip 0.2, rewards standardised within each group (std + 1e-4), the bnpo loss, `--steps`
steps, and the verifier's reward (accuracy + 0.5 x format, the same scoring function; TRL calls it
in-process). No hints on either side: ghpo's broker runs policy `none`, so this compares the GRPO machinery,
not GHPO's guidance.

- ghpo: `ghpo run` in a subprocess, with a run config this script writes: the real services and the
  real trainer, asynchronous as shipped (`--max-policy-lag`, default 1 as in `ghpo run`), vLLM CPU
  generation, each process with its default threads. Seconds per step: median interval between the
  trainer's step lines.
- TRL: GRPOTrainer in this process, HF `generate` on CPU (use_vllm False), torch on every core,
  generation and training in turn. Seconds per step: median interval between optimizer steps.
The first step of each is excluded (start-up). Held-out accuracy: one evaluator for every final model
and the starting one (ghpo.trainer.tiny.evaluate: batched greedy transformers generate, scored by the
verifier), on `--eval-per-level` held-out problems of each `--eval-levels` level, the same problems for
every seed. Training accuracy per step (no-hint rollouts at the sampling temperature) is printed for both sides as a
learning curve that is less noisy than one held-out figure.

One thing at a time: `--ghpo-set section.key=value` (a `ghpo run` config key, e.g.
`rollout.max_policy_lag=0`, `ghpo.tis_cap=2`, `ghpo.loss_type=grpo`, `optim.warmup_steps=5`) and
`--trl-set key=value` (a GRPOConfig field) change one side only; the table says what was changed.

    python bench/peer_trl.py [--steps 60] [--seeds 0 1 2] [--prompts 8] [--group-size 8]
    python bench/peer_trl.py --prompts 64 --steps 10 --sides time   # seconds per step at ghpo run's batch

`--quick`: 3 steps of 2 prompts x 4 samples of levels 2 and 3, 64 tokens, 3 held-out level-2 problems.
Each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import ast
import itertools
import json
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

QUICK = {
    "steps": 3,
    "prompts": 2,
    "group_size": 4,
    "max_tokens": 64,  # a level-2 completion is ~35 tokens: shorter ones are cut, unscored, untrainable
    "levels": [2, 3],
    "per_level": 50,
    "eval_levels": [2],
    "eval_per_level": 3,
    "seeds": [0],
}
LOG_STEP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\bstep (\d+): loss ")


def median_interval(times: list[float]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(times))


def parse_sets(pairs: list[str]) -> dict[str, object]:
    """`key=value` pairs; values are Python literals where they parse as one (numbers, booleans...)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            sys.exit(f"--ghpo-set/--trl-set: expected key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = {"true": True, "false": False}.get(text.lower(), text)
    return out


def ghpo_config(args: argparse.Namespace, model: Path, seed: int) -> dict[str, dict[str, object]]:
    config: dict[str, dict[str, object]] = {
        "run": {
            "steps": args.steps,
            "max_minutes": 600,
            "seed": seed,
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
            "temperature": args.temperature,
        },
        "optim": {"lr": args.lr, "warmup_steps": 0, "schedule": "constant"},
        "ghpo": {"cold_start_steps": 0, "beta": 0.0, "eps_low": 0.2, "eps_high": 0.2, "loss_type": "bnpo"},
        "deepspeed": {"micro_batch_size": args.prompts * args.group_size},
        "services": {"broker_policy": "none"},
    }
    for dotted, value in args.ghpo_set.items():
        section, _, key = dotted.partition(".")
        config.setdefault(section, {})[key] = value
    return config


def ghpo_side(args: argparse.Namespace, model: Path, tmp: Path, seed: int) -> dict[str, object]:
    """Train through `ghpo run`: seconds per step, the final checkpoint, the rollout accuracy per step."""
    path = tmp / "ghpo-run.toml"
    path.write_text(toml_document(ghpo_config(args, model, seed)))
    run_dir = tmp / "ghpo-run"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "run", "--config", str(path), "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"ghpo run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    print(f"  ghpo run: {time.monotonic() - started:.0f} s in all (start-up and evaluations included)")
    stamps = {}
    for line in (run_dir / "logs" / "trainer.log").read_text().splitlines():
        if m := LOG_STEP.match(line):
            stamps[int(m[2])] = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert len(stamps) == args.steps, f"trainer logged {len(stamps)} of {args.steps} steps"
    curve = {}
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "step" and record.get("plain_accuracy") is not None:
            curve[record["step"]] = record["plain_accuracy"]
    checkpoints = run_dir / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    return {
        "s_per_step": median_interval([stamps[s] for s in sorted(stamps)]),
        "checkpoint": latest,
        "curve": [curve[s] for s in sorted(curve)],
    }


def trl_side(args: argparse.Namespace, model: Path, tmp: Path, seed: int) -> dict[str, object]:
    """Train with TRL's GRPOTrainer: seconds per step, the trained model, the rollout accuracy per step."""
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
    records = arith.make_split("train", args.per_level, args.levels, seed=seed)
    dataset = Dataset.from_list([{"prompt": chat_messages(r), "answer": r.answer} for r in records])

    def verifier_reward(completions, answer, **_):
        return [score(c[0]["content"], gold).total for c, gold in zip(completions, answer, strict=True)]

    def accuracy(completions, answer, **_):  # weight 0: logged, not trained on
        return [score(c[0]["content"], gold).accuracy for c, gold in zip(completions, answer, strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, *_a, **_k):
            self.times.append(time.monotonic())

    settings = {
        "output_dir": str(tmp / "trl"),
        "per_device_train_batch_size": args.prompts * args.group_size,
        "gradient_accumulation_steps": 1,
        "num_generations": args.group_size,
        "max_completion_length": args.max_tokens,
        "temperature": args.temperature,
        "top_p": 1.0,
        "learning_rate": args.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "max_steps": args.steps,
        "beta": 0.0,
        "epsilon": 0.2,
        "loss_type": "bnpo",
        "scale_rewards": "group",
        "reward_weights": [1.0, 0.0],
        "num_iterations": 1,
        "use_vllm": False,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "seed": seed,
        "disable_tqdm": True,
    } | args.trl_set
    clock = StepClock()
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    trainer = GRPOTrainer(
        model=str(model),
        reward_funcs=[verifier_reward, accuracy],
        args=GRPOConfig(**settings),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    assert len(clock.times) == args.steps, f"TRL took {len(clock.times)} of {args.steps} steps"
    curve = [h["rewards/accuracy/mean"] for h in trainer.state.log_history if "rewards/accuracy/mean" in h]
    return {"s_per_step": median_interval(clock.times), "model": trainer.model, "curve": curve}


def heldout_accuracy(model, tokenizer, args: argparse.Namespace) -> float:
    """Greedy pass@1 over the held-out problems of every eval level, pooled (the tiny evaluator)."""
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.evaluate import accuracy, generate_greedy

    records = arith.make_split("heldout", args.eval_per_level, args.eval_levels, seed=0)
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


def curve_text(curve: list[float], chunks: int = 4) -> str:
    """Mean rollout accuracy over consecutive quarters of the steps."""
    if not curve:
        return "-"
    size = max(1, -(-len(curve) // chunks))
    return " → ".join(f"{statistics.fmean(curve[i : i + size]):.2f}" for i in range(0, len(curve), size))


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+.1f} ± {sd:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--prompts", type=int, default=8, help="P: prompts (groups) per optimizer step")
    parser.add_argument("--group-size", type=int, default=8, help="G: samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, both sides")
    parser.add_argument("--lr", type=float, default=5e-5, help="ghpo run's default")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[3, 4])
    parser.add_argument("--per-level", type=int, default=2000, help="arith training problems per level")
    parser.add_argument("--eval-levels", type=lambda s: [int(x) for x in s.split(",")], default=[3, 4])
    parser.add_argument("--eval-per-level", type=int, default=200)
    parser.add_argument(
        "--sides", choices=("both", "time"), default="both", help="time: seconds per step only, no evaluation"
    )
    parser.add_argument("--ghpo-set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--trl-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is start-up and not timed)")
    args.ghpo_set, args.trl_set = parse_sets(args.ghpo_set), parse_sets(args.trl_set)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.trainer.tiny import ensure_tiny_model

    model_dir = ensure_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    evaluate = args.sides == "both"
    start_acc = (
        heldout_accuracy(
            AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), tokenizer, args
        )
        if evaluate
        else float("nan")
    )
    rows = []
    for seed in args.seeds:
        print(f"seed {seed}: ghpo ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="ghpo-bench-trl-") as tmp_name:
            ghpo = ghpo_side(args, model_dir, Path(tmp_name), seed)
            if evaluate:
                ghpo["acc"] = heldout_accuracy(ghpo_model(model_dir, ghpo["checkpoint"]), tokenizer, args)
        print(f"seed {seed}: TRL ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="ghpo-bench-trl-") as tmp_name:
            trl = trl_side(args, model_dir, Path(tmp_name), seed)
            if evaluate:
                trl["acc"] = heldout_accuracy(trl["model"], tokenizer, args)
        rows.append((seed, ghpo, trl))
        if evaluate:
            print(
                f"  seed {seed}: held-out ghpo {ghpo['acc']:.1%}, TRL {trl['acc']:.1%} (start {start_acc:.1%})"
            )

    n_eval = args.eval_per_level * len(args.eval_levels)
    changed = ", ".join(f"ghpo {k}={v}" for k, v in args.ghpo_set.items())
    changed += ", ".join(f"TRL {k}={v}" for k, v in args.trl_set.items())
    print(
        f"\n{args.steps} steps of {args.prompts} prompts x G = {args.group_size}, max {args.max_tokens} tokens, "
        f"temperature {args.temperature:g}, lr {args.lr:g}, seeds {args.seeds}; changed: {changed or 'nothing'}"
    )
    if evaluate:
        print(f"held-out: {n_eval} problems (levels {args.eval_levels}, greedy), start {start_acc:.1%}")
    print(
        f"{'seed':>4} {'side':6}{'s/step':>8}{'held-out':>10}{'gain':>8}   rollout accuracy by quarter of the run"
    )
    for seed, ghpo, trl in rows:
        for name, side in (("ghpo", ghpo), ("TRL", trl)):
            acc = side.get("acc")
            held = f"{acc:10.1%}{100 * (acc - start_acc):+8.1f}" if acc is not None else f"{'-':>10}{'-':>8}"
            print(f"{seed:>4} {name:6}{side['s_per_step']:8.2f}{held}   {curve_text(side['curve'])}")
    ghpo_s = statistics.median(g["s_per_step"] for _, g, _ in rows)
    trl_s = statistics.median(t["s_per_step"] for _, _, t in rows)
    faster, factor = ("TRL", ghpo_s / trl_s) if trl_s < ghpo_s else ("ghpo", trl_s / ghpo_s)
    print(
        f"seconds per step (median over seeds): ghpo {ghpo_s:.2f}, TRL {trl_s:.2f}; ratio {ghpo_s / trl_s:.2f} "
        f"({faster} {factor:.2f}x faster)"
    )
    setting = f"{args.prompts}x{args.group_size} samples, {args.max_tokens} tokens; {changed or 'as shipped'}"
    emit(
        f"peer.ghpo_s_per_step_{args.prompts}x{args.group_size}",
        ghpo_s,
        "s/step",
        baseline="TRL GRPOTrainer, same model/task/budget, HF generate on CPU",
        baseline_value=trl_s,
        target="<= 1.0",
        note=setting,
    )
    if evaluate:
        ghpo_gains = [100 * (g["acc"] - start_acc) for _, g, _ in rows]
        trl_gains = [100 * (t["acc"] - start_acc) for _, _, t in rows]
        print(
            f"held-out gain, points (mean ± sd over {len(rows)} seeds): ghpo {mean_sd(ghpo_gains)}, "
            f"TRL {mean_sd(trl_gains)}; ghpo - TRL {statistics.fmean(ghpo_gains) - statistics.fmean(trl_gains):+.1f}"
        )
        emit(
            "peer.ghpo_heldout_gain_points",
            statistics.fmean(ghpo_gains),
            "points",
            baseline="TRL GRPOTrainer's mean gain, same evaluator and problems",
            baseline_value=statistics.fmean(trl_gains),
            target=">= TRL - 1",
            note=f"{args.steps} steps x {len(rows)} seeds; start {start_acc:.3f}; {n_eval} greedy problems; {setting}",
        )


if __name__ == "__main__":
    main()
