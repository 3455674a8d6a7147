"""The GHPO-vs-GRPO study at an equal generation budget: methods x seeds, each one `ghpo run`.

Methods (same model, data, levels, learning rate, batch and group size; only the hint policy, the
sampling rule and the [ghpo] settings each names differ): ghpo.local.study.STUDY_METHODS, e.g.
    grpo         broker policy none: plain GRPO, no hints
    grpo-dapo    none + DAPO dynamic sampling (groups whose rewards are all equal are dropped, more drawn)
    ghpo         broker policy ghpo: the paper's hint ladder for all-wrong groups
    ghpo-memory  broker policy ghpo-memory: a prompt starts at the hint level it last needed
The defaults are the tiny world's severe set: level 4 (13.5% of plain groups of 8 hold a success),
16 prompts x G 8 per step, lr 1e-4, held-out levels 2 and 4 evaluated every 2 steps, greedy and sampled
(2 per problem at T = 1), so the completions a method needs to reach a target can be read off. An
evaluation takes longer than a step here, so steps go on while it runs: `--eval-levels 4 --eval-samples 0`
evaluates often enough to read completions-to-target to a few hundred completions (docs/results.md).
Every run stops once the rollout server has generated `--budget` completions (count rollouts, not steps:
hint rounds and dropped groups spend budget too), then evaluates and writes its report. Runs go one
after another (the machine is small), each in `RUNS_DIR/<method>-s<seed>/`; a finished run is skipped
and an interrupted one resumed, so the study can be stopped and started again. At the end (or with
`--aggregate-only RUNS_DIR`, without running anything) the runs are aggregated by `ghpo.local.study_report`
into `--out` (default docs/study/): results.json, README.md (tables, mean ± std over seeds, where GHPO
does not win) and PNG plots.

This is not a speed benchmark: `ghpo bench` does not run it (it is deliberately not in registry.toml).
Run: python bench/study.py --methods grpo ghpo             (3 seeds, about 5 min a run on 2 CPU cores)
     python bench/study.py --quick                          (smoke: 1 seed, a tiny budget, minutes per run)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from ghpo.local.config import RunConfig, parse_run_config
from ghpo.local.history import HISTORY_FILE
from ghpo.local.run import CONFIG_FILE
from ghpo.local.stack import toml_document
from ghpo.local.study import METHODS, SETTINGS_FILE, STUDY_FILE, STUDY_METHODS
from ghpo.local.study_report import aggregate

REPORT = "report.md"


def run_config(args: argparse.Namespace, method: str, seed: int) -> dict[str, dict[str, Any]]:
    """The run config of one (method, seed); everything but the method's own settings and the seed is
    shared (`--set` applies to every method, then the method's settings win)."""
    arm = STUDY_METHODS[method]
    config: dict[str, dict[str, Any]] = {
        "run": {
            "steps": 10**6,  # the generation budget ends the run, not a step count
            "max_minutes": args.max_minutes,
            "max_rollouts": args.budget,
            "seed": seed,
            "checkpoint_every": 10**6,  # the stop writes the one checkpoint a study run needs
            "eval_every": args.eval_every,
            "eval_per_level": args.eval_per_level,
            "eval_levels": args.eval_levels,
            "eval_samples": args.eval_samples,
        },
        "data": {"arith_levels": args.levels, "arith_per_level": args.arith_per_level},
        "rollout": {
            "group_size": args.group_size,
            "batch_groups": args.batch_groups,
            "max_tokens": args.max_tokens,
            "dynamic_sampling": arm.dynamic_sampling,
        },
        # What the three seeds ran: a constant lr without warm-up (they ran before `ghpo run` laid a
        # partial [optim] over its own defaults, so they got the trainer's cosine schedule, over 10**6
        # steps: constant to 1e-8, and no warm-up)
        "optim": {"lr": args.lr, "schedule": "constant", "warmup_steps": 0},
        "services": {"broker_policy": arm.broker_policy},
    }
    if args.model:
        config["model"] = {"path": str(args.model)}
    for dotted, value in args.set.items():
        section, _, key = dotted.partition(".")
        config.setdefault(section, {})[key] = value
    config.setdefault("ghpo", {}).update(dict(arm.ghpo))
    return config


def parse_setting(text: str) -> tuple[str, Any]:
    """`section.key=value` with a TOML value (`ghpo.hint_ladder=[0.5, 0.75]`); a bare word is a string."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise SystemExit(f"--set: expected SECTION.KEY=VALUE, got {text!r}")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    run_defaults = RunConfig()
    return {
        "budget (completions)": args.budget,
        "seeds": args.seeds,
        "levels": args.levels,
        "held-out levels": args.eval_levels,
        "G": args.group_size,
        "groups per batch": args.batch_groups,
        "max tokens": args.max_tokens,
        "lr": args.lr,
        "lr schedule": "constant, no warm-up",
        "train problems per level": args.arith_per_level,
        "held-out problems per level": args.eval_per_level,
        "held-out samples per problem (T = 1)": args.eval_samples,
        # `ghpo run`'s GHPO settings, the same for every method (the paper's cold start is 20 steps; the
        # reference code's released config, and `ghpo run` for short runs, use 0)
        "hint ladder": list(run_defaults.ghpo.hint_ladder),
        "cold start (steps)": run_defaults.ghpo.cold_start_steps,
        "max policy lag": run_defaults.rollout.max_policy_lag,
        "model": str(args.model) if args.model else "the tiny model",
    } | {f"set {key}": value for key, value in args.set.items()}


def run_one(args: argparse.Namespace, method: str, seed: int) -> None:
    run_dir = args.runs_dir / f"{method}-s{seed}"
    if (run_dir / REPORT).exists():
        print(f"{run_dir.name}: done already, skipped", flush=True)
        return
    config = run_config(args, method, seed)
    parse_run_config(config, f"{method} seed {seed}")  # a bad flag fails here, naming the key
    resume = (run_dir / CONFIG_FILE).exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STUDY_FILE).write_text(json.dumps({"method": method, "seed": seed}) + "\n")
    toml_path = args.runs_dir / f"{method}-s{seed}.toml"
    toml_path.write_text(toml_document(config))
    cmd = [sys.executable, "-m", "ghpo", "run", "--run-dir", str(run_dir)]
    cmd += ["--resume"] if resume else ["--config", str(toml_path)]
    log_path = args.runs_dir / f"{method}-s{seed}.log"
    print(f"{run_dir.name}: {'resuming' if resume else 'running'} (log {log_path})", flush=True)
    started = time.monotonic()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"})
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            # Not subprocess.call's kill: `ghpo run` stops its services and checkpoints, and the next
            # study invocation resumes the run. It ignores a second signal while it stops.
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
    if code != 0 or not (run_dir / REPORT).exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SystemExit(
            f"{run_dir.name}: ghpo run failed (exit {code}); rerun to resume it. Log tail:\n{tail}"
        )
    steps = sum(1 for line in (run_dir / HISTORY_FILE).read_text().splitlines() if '"kind": "step"' in line)
    print(f"{run_dir.name}: finished in {time.monotonic() - started:.0f} s, {steps} steps", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=3500, help="completions generated per run (all rounds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--levels", type=int, nargs="+", default=[4], help="arith levels trained on")
    parser.add_argument(
        "--eval-levels", type=int, nargs="+", default=[2, 4], help="held-out levels evaluated"
    )
    parser.add_argument("--arith-per-level", type=int, default=2000, help="training problems per level")
    parser.add_argument("--eval-per-level", type=int, default=200, help="held-out problems per level")
    parser.add_argument("--eval-every", type=int, default=2, help="steps between held-out evaluations")
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=2,
        help="completions per held-out problem for sampled accuracy (T = 1)",
    )
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--batch-groups", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-minutes", type=float, default=40.0, help="safety limit per run")
    parser.add_argument("--model", type=Path, help="model folder (default: the tiny model)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a run-config key for every method (TOML value, e.g. ghpo.hint_cut='\"line\"' or run.eval_every=10)",
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/study"))
    parser.add_argument("--out", type=Path, default=Path("docs/study"), help="results.json, README.md, plots")
    parser.add_argument(
        "--aggregate-only", type=Path, metavar="RUNS_DIR", help="aggregate these runs, run none"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: seed 0, budget 192, G 4, 4 groups, levels 1 2, tiny eval",
    )
    args = parser.parse_args()
    args.set = dict(parse_setting(text) for text in args.set)
    if args.aggregate_only is not None:
        print(f"wrote {aggregate(args.aggregate_only, args.out)}")
        return
    if args.quick:
        args.seeds, args.budget, args.group_size, args.batch_groups = [0], 192, 4, 4
        args.levels, args.arith_per_level, args.eval_per_level, args.eval_every = [1, 2], 50, 4, 100
        args.eval_levels, args.eval_samples = [1, 2], 2
        args.max_tokens, args.max_minutes = 64, 20.0
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    (args.runs_dir / SETTINGS_FILE).write_text(json.dumps(shared_settings(args), indent=2) + "\n")
    for seed in args.seeds:
        for method in args.methods:
            run_one(args, method, seed)
    print(f"wrote {aggregate(args.runs_dir, args.out)}")


if __name__ == "__main__":
    main()
