"""Asynchronous pipeline: trained groups per second at max_policy_lag 0 (synchronous), 1 and 2, against the
ideal bounds computed from the measured generation and training times.

Setup: the real local system, started with the helpers `ghpo run` uses (ghpo/local/stack.py and
processes.py): Redis, then verifier, broker (policy `none`: every batch costs the same generation, no
hinted retries), inference (vLLM CPU) and the rollout server as `ghpo serve` processes, and the real
trainer (`ghpo train` with the TOML `ghpo run` writes). One core allocation for every lag: vLLM's OpenMP
threads bound to `--inference-cores`, `--trainer-threads` torch threads for the trainer (and for the
trainer-alone timing), one verifier worker. Verifier, broker and inference stay up across lags; for each
lag the rollout server restarts with that lag (and its own Redis key prefix) and a fresh trainer starts,
so every lag begins from the same weights (the trainer pushes its starting weights when inference serves
newer).
The learning rate is small (`--lr`) so the policy, and with it completion lengths, hardly move during the
bench: the workload stays the same from lag to lag.

Generation alone: with inference up and nothing else running, one /v1/generate of batch_groups prompts x
G samples (what the rollout server asks per step), median over `--gen-batches` calls before the lags and
as many after them (so a change in the machine's load weighs on both sides). The first lag also
lets a consumer that only acknowledges pull batches from its rollout server (its pace is printed) and
keeps them. Then for each lag the trainer runs; after `--warmup-steps` + lag + 1 steps (the last lag + 1
drain the batches queued while the trainer started), trained groups per second over the next `--steps`
steps (steps x batch_groups / their wall time, from the trainer's step log).
Training alone: with everything stopped, the same trainer config's step (ghpo.trainer.train.step) in
this process on the kept batches, median seconds per step.

Bounds (groups/s): synchronous B / (gen + train); overlapped B / max(gen, train). Lag 0's ratio is to the
synchronous bound, lags >= 1 to the overlapped one; the gap is weight pushes, batch hand-over and the two
sides contending for the machine, and verifying (not in the engine-alone time). Deliberately not here:
tuning the allocation (pass other cores/threads).

    python bench/pipeline_lag.py [--lags 0,1,2] [--batch-groups 8] [--group-size 8] [--max-tokens 96]

`--quick` is a smoke run (small batches, few steps). Each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import dataclasses
import itertools
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from ghpo.local.config import RunConfig, parse_run_config
from ghpo.local.preflight import preflight
from ghpo.local.processes import Child, ProcessSpec, Supervisor
from ghpo.local.stack import Endpoints, service_specs, trainer_spec, trainer_toml
from ghpo.shared.bench_results import emit
from ghpo.shared.redis_local import LocalRedis

QUICK = {
    "batch_groups": 4,
    "group_size": 4,
    "max_tokens": 32,
    "gen_batches": 3,
    "warmup_steps": 1,
    "steps": 3,
}
STEP_LOG = "trainer-steps.jsonl"
LEVELS = [1, 2, 3]  # arith levels with mixed rewards for the tiny model: batches are trainable


def run_config(args: argparse.Namespace, lag: int) -> RunConfig:
    """`ghpo run`'s config for this lag, resolved for this machine as `ghpo run` resolves it."""
    return preflight(
        parse_run_config(
            {
                # No checkpoint inside the timed window; the trainer is stopped long before this many steps.
                "run": {"steps": 1_000_000, "checkpoint_every": 10_000_000, "seed": 0},
                "data": {"arith_levels": LEVELS},
                "rollout": {
                    "group_size": args.group_size,
                    "batch_groups": args.batch_groups,
                    "max_tokens": args.max_tokens,
                    "max_policy_lag": lag,
                    "max_concurrent_steps": 2,
                },
                "optim": {"lr": args.lr, "warmup_steps": 0, "schedule": "constant"},
                "services": {"broker_policy": "none", "verifier_workers": 1},
            },
            "pipeline_lag.py",
        ),
        log=lambda _line: None,
    )


def with_env(spec: ProcessSpec, extra: dict[str, str]) -> ProcessSpec:
    return dataclasses.replace(spec, env={**spec.env, **extra})


class Consumer(threading.Thread):
    """Stands in for a trainer that takes no time: pulls batches, acknowledges at once, notes arrivals."""

    def __init__(self, url: str, token: str, n: int):
        super().__init__(daemon=True)
        self.url, self.token, self.n = url, token, n
        self.arrivals: list[float] = []
        self.batches: list[str] = []  # raw JSON, replayed by the trainer-alone timing

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            while len(self.arrivals) < self.n:
                r = client.get("/v1/batches/next", params={"wait_s": 5.0})
                if r.status_code != 200:
                    continue
                self.arrivals.append(time.monotonic())
                self.batches.append(r.text)
                batch_id = r.json()["batch_id"]
                client.post(f"/v1/batches/{batch_id}/ack", json={"policy_version": 0}).raise_for_status()


def step_times(path: Path, n: int, trainer: Child, timeout_s: float) -> list[float]:
    """Wall-clock arrival of the trainer's first n step lines (polled; 50 ms resolution)."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < n:
        if trainer.process.poll() is not None:
            raise trainer.failure(f"exited with code {trainer.process.returncode} during the bench")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} of {n} trainer steps within {timeout_s:.0f} s")
        lines = path.read_text().count("\n") if path.exists() else 0
        seen += [time.monotonic()] * (lines - len(seen))
        time.sleep(0.05)
    return seen[:n]


def engine_alone(args: argparse.Namespace, ends: Endpoints, seed: int) -> list[float]:
    """Seconds of one batch's generation by the inference engine alone (no trainer running), per call: one
    /v1/generate of batch_groups prompts x G samples, what the rollout server asks per step."""
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.prompts import chat_messages

    records = arith.make_split("train", args.batch_groups * (args.gen_batches + 1), LEVELS, seed=seed)
    random.Random(seed).shuffle(records)  # mixed levels in every batch, as the rollout server draws them
    headers = {"Authorization": f"Bearer {ends.token}"}
    seconds = []
    with httpx.Client(base_url=ends.url("inference"), headers=headers, timeout=600) as client:
        for i in range(args.gen_batches + 1):  # the first call warms up and is not timed
            chosen = records[i * args.batch_groups : (i + 1) * args.batch_groups]
            body = {
                "prompts": [{"messages": chat_messages(r)} for r in chosen],
                "sampling": {
                    "n": args.group_size,
                    "seed": i,
                    "max_tokens": args.max_tokens,
                    "temperature": 1.0,
                },
            }
            started = time.perf_counter()
            client.post("/v1/generate", json=body).raise_for_status()
            if i:
                seconds.append(time.perf_counter() - started)
    return seconds


def measure_lag(
    args: argparse.Namespace, lag: int, sup: Supervisor, ends: Endpoints, model: Path, tmp: Path, record: bool
) -> dict:
    cfg = run_config(args, lag)
    lag_dir = tmp / f"lag{lag}"
    lag_dir.mkdir()
    specs = {s.name: s for s in service_specs(cfg, model, lag_dir, ends)}
    rollout = sup.start(with_env(specs["rollout"], {"GHPO_ROLLOUT_KEY_PREFIX": f"bench-lag{lag}:"}))
    out: dict = {"batches": []}
    if record:  # scored batches for the trainer-alone timing, and the rollout server's own pace
        consumer = Consumer(ends.url("rollout"), ends.token, args.gen_batches + 1)
        consumer.start()
        consumer.join()
        out["batches"] = consumer.batches
        side_s = statistics.median(b - a for a, b in itertools.pairwise(consumer.arrivals))
        print(f"lag {lag}: rollout server alone (trainer that only acknowledges) {side_s:.2f} s/batch")
    config_path = lag_dir / "trainer.toml"
    config_path.write_text(trainer_toml(cfg, model, lag_dir, ends))
    spec = with_env(trainer_spec(cfg, config_path, ends), {"OMP_NUM_THREADS": str(args.trainer_threads)})
    trainer = sup.start(spec)
    # While the trainer starts, the rollout server fills its admission window, (lag + 1) batches, which
    # the first steps then take without waiting: the warm-up drains them so the window is steady state.
    warmup = args.warmup_steps + lag + 1
    times = step_times(lag_dir / STEP_LOG, warmup + args.steps, trainer, args.step_timeout_s)
    window = times[warmup - 1 :]  # from the last warm-up step's end to the last step's
    out["groups_per_s"] = args.steps * args.batch_groups / (window[-1] - window[0])
    out["config"] = config_path
    out["env"] = spec.env  # the trainer's GHPO settings travel there (GHPO_ALGORITHM_*), not in its file
    for child in (trainer, rollout):
        sup.stop(child)
        sup.children.remove(child)
    print(f"lag {lag}: pipeline {out['groups_per_s']:.3f} groups/s", flush=True)
    return out


def train_alone(
    config_path: Path, env: dict[str, str], batches: list[str], threads: int, steps: int
) -> float:
    """Median seconds of the trainer's step in this process, nothing else running (first step untimed)."""
    import torch

    from ghpo.shared.schemas.rollout import Batch
    from ghpo.trainer.train.batches import trainable
    from ghpo.trainer.train.config import load_config
    from ghpo.trainer.train.engine import build_engine
    from ghpo.trainer.train.step import train_step

    torch.set_num_threads(threads)
    train = build_engine(load_config(config_path, env))
    usable = [b for b in (Batch.model_validate_json(text) for text in batches) if trainable(b)]
    assert usable, "no recorded batch had anything to train on"
    seconds = []
    for i in range(steps + 1):
        started = time.perf_counter()
        train_step(train, usable[i % len(usable)], i)
        if i:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lags", default="0,1,2", help="comma-separated max_policy_lag values")
    parser.add_argument("--batch-groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--gen-batches", type=int, default=6, help="timed batches of generation alone")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed trainer steps per lag")
    parser.add_argument("--inference-cores", default="0", help="VLLM_CPU_OMP_THREADS_BIND of inference")
    parser.add_argument("--trainer-threads", type=int, default=1)
    parser.add_argument("--step-timeout-s", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1 (the first step includes start-up)")
    lags = [int(x) for x in args.lags.split(",")]
    from ghpo.trainer.tiny import ensure_tiny_model

    model = ensure_tiny_model()
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ghpo-bench-pipeline-") as tmp_name:
        tmp = Path(tmp_name)
        redis = LocalRedis(tmp / "redis").start()
        try:
            ends = dataclasses.replace(
                Endpoints.allocate(), redis_url=redis.url
            )  # this Redis, not ghpo run's
            with Supervisor(tmp) as sup:
                # Verifier, broker and inference once (their settings do not depend on the lag).
                for spec in service_specs(run_config(args, lags[0]), model, tmp, ends)[:3]:
                    if spec.name == "inference":
                        spec = with_env(spec, {"VLLM_CPU_OMP_THREADS_BIND": args.inference_cores})
                    sup.start(spec)
                # Before and after the lags, so a change in the machine's load shows in both sides.
                gen_calls = engine_alone(args, ends, seed=1)
                print(f"generation alone (inference engine): {statistics.median(gen_calls):.2f} s/batch")
                for lag in lags:
                    results[lag] = measure_lag(args, lag, sup, ends, model, tmp, record=lag == lags[0])
                after = engine_alone(args, ends, seed=2)
                print(f"generation alone again, after the lags: {statistics.median(after):.2f} s/batch")
                gen_s = statistics.median(gen_calls + after)
        finally:
            redis.stop()
        recorded = [text for r in results.values() for text in r["batches"]]
        first = results[lags[0]]
        train_s = train_alone(first["config"], first["env"], recorded, args.trainer_threads, args.steps)
    b = args.batch_groups
    sync_bound, overlap_bound = b / (gen_s + train_s), b / max(gen_s, train_s)
    print(
        f"\nB = {b} groups x G = {args.group_size}, max {args.max_tokens} tokens; inference cores "
        f"{args.inference_cores}, trainer {args.trainer_threads} thread(s)"
    )
    print(f"generation alone: {gen_s:.2f} s/batch; training alone: {train_s:.2f} s/step (medians)")
    print(f"bounds: synchronous {sync_bound:.3f} groups/s, overlapped {overlap_bound:.3f} groups/s")
    print(f"{'max_policy_lag':>15s}{'groups/s':>10s}{'bound':>10s}{'ratio':>8s}")
    for lag, r in results.items():
        bound = sync_bound if lag == 0 else overlap_bound
        print(f"{lag:15d}{r['groups_per_s']:10.3f}{bound:10.3f}{r['groups_per_s'] / bound:8.2f}")
    emit("pipeline.generation_s_per_batch", gen_s, "s/batch", note=f"{b} groups, inference engine alone")
    emit("pipeline.train_s_per_step", train_s, "s/step", note=f"{b} groups, trainer step alone")
    for lag, r in results.items():
        name = "synchronous B/(gen+train)" if lag == 0 else "overlapped B/max(gen,train)"
        emit(
            f"pipeline.groups_per_s_lag{lag}",
            r["groups_per_s"],
            "groups/s",
            baseline=f"ideal bound, {name}",
            baseline_value=sync_bound if lag == 0 else overlap_bound,
        )


if __name__ == "__main__":
    main()
