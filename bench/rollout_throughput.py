"""Rollout server throughput with a trainer that only acknowledges: engine busy fraction and the server's
own overhead per group.

Setup: the tiny model in a real inference service (vLLM CPU build), the verifier (1 worker) and the
broker (policy ghpo, no cold start) as `ghpo serve` subprocesses, a local Redis, and the rollout server
in this process under uvicorn (so its producer and replica pool can be read directly). A consumer thread
pulls `GET /v1/batches/next` and acknowledges at once. Figures, medians over `--windows` windows of
`--window-s` seconds after a warm-up:
- engine busy fraction: share of the window with a /v1/generate call outstanding (target >= 0.9);
- overhead per group: a step's wall time minus its time awaiting inference/verifier/broker, per group;
- groups per second delivered and acknowledged.
Baseline, in the same script: the same server with one step at a time (`max_concurrent_steps=1`), where
the engine idles while each step is verified and reported. Ratios are concurrent / sequential, and the
overhead as a share of the wall time per group.

    python bench/rollout_throughput.py [--windows 3 --window-s 15 --warmup-s 15]

`--quick` is a smoke run (1 short window). Each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from ghpo.services.rollout.app import create_app
from ghpo.services.rollout.settings import Settings
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.algorithm.environment import environment_of
from ghpo.shared.bench_results import emit
from ghpo.shared.redis_local import LocalRedis, free_port

QUICK = {"windows": 1, "window_s": 4.0, "warmup_s": 4.0}
MAX_WINDOW_S = 120.0  # the longest a window waits for its first finished step
G = 8
BATCH = 8
GHPO = GHPOConfig(cold_start_steps=0)  # the broker's and the rollout server's: they must agree


def spawn(service: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    prefix = f"GHPO_{service.upper()}_"
    full = {
        **os.environ,
        **environment_of(GHPO),  # read by the broker; the other services ignore GHPO_ALGORITHM_*
        **{prefix + k.upper(): v for k, v in env.items()},
        prefix + "PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ghpo", "serve", service],
        env=full,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def running_app(app, port: int):
    """The rollout app under uvicorn in a thread of this process (its producer stays readable here)."""
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_ready(url: str, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready")


class Consumer(threading.Thread):
    """Pulls batches and acknowledges them at once; counts acknowledged groups."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.groups, self.stop = url, 0, threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                r = client.get("/v1/batches/next", params={"wait_s": 1.0})
                if r.status_code == 200:
                    batch = r.json()
                    client.post(f"/v1/batches/{batch['batch_id']}/ack", json={"policy_version": 0})
                    self.groups += len(batch["groups"])


def measure(base: dict, concurrent_steps: int, args: argparse.Namespace, prefix: str) -> dict[str, float]:
    settings = Settings(**base, key_prefix=prefix, max_concurrent_steps=concurrent_steps)
    app = create_app(settings)
    with running_app(app, free_port()) as url:
        consumer = Consumer(url)
        consumer.start()
        time.sleep(args.warmup_s)
        busy, overhead, rate, wall = [], [], [], []
        for _ in range(args.windows):
            producer = app.state.producer
            seen, groups, started = len(producer.overheads), consumer.groups, time.monotonic()
            time.sleep(args.window_s)
            # A window ends once a step has finished in it too: a short (--quick) window on a slow machine can
            # otherwise close before the first step, with no overhead to report.
            deadline = started + max(MAX_WINDOW_S, args.window_s)
            while len(producer.overheads) == seen and time.monotonic() < deadline:
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            busy.append(app.state.pool.busy_fraction(window_s=elapsed))
            fresh = (
                list(producer.overheads)[seen:] if len(producer.overheads) < producer.overheads.maxlen else []
            )
            if not fresh:
                raise RuntimeError(
                    f"no rollout step finished within {elapsed:.0f} s (is inference, the verifier or the broker stuck?)"
                )
            overhead.append(statistics.median(fresh))
            rate.append((consumer.groups - groups) / elapsed)
            wall.append(elapsed / max(1, consumer.groups - groups))
        consumer.stop.set()
        consumer.join(10)
    return {
        "busy": statistics.median(busy),
        "overhead_s": statistics.median(overhead),
        "groups_per_s": statistics.median(rate),
        "wall_per_group_s": statistics.median(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    from ghpo.trainer.tiny import ensure_tiny_model

    model = ensure_tiny_model()
    with tempfile.TemporaryDirectory(prefix="ghpo-bench-rollout-") as tmp:
        tmp_path = Path(tmp)
        redis = LocalRedis(tmp_path / "redis").start()
        ports = {name: free_port() for name in ("inference", "verifier", "broker")}
        envs = {
            "inference": {"model": str(model), "max_model_len": "512", "kv_cache_gib": "1"},
            "verifier": {"workers": "1"},
            "broker": {
                "redis_url": redis.url,
                "policy": "ghpo",
                "group_size": str(G),
            },
        }
        procs = [spawn(name, ports[name], envs[name], tmp_path / f"{name}.log") for name in ports]
        try:
            for port in ports.values():
                wait_ready(f"http://127.0.0.1:{port}")
            base = {
                "inference_urls": [f"http://127.0.0.1:{ports['inference']}"],
                "verifier_url": f"http://127.0.0.1:{ports['verifier']}",
                "broker_url": f"http://127.0.0.1:{ports['broker']}",
                "redis_url": redis.url,
                "group_size": G,
                "batch_groups": BATCH,
                "prompts_per_step": BATCH,
                "max_policy_lag": 1,
                "max_tokens": 160,
                "ghpo": GHPO,
                "arith_levels": [1, 2, 3, 4, 5, 6],
            }
            sequential = measure(base, 1, args, "bench-seq:")
            concurrent = measure(base, 3, args, "bench-conc:")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(60)
            redis.stop()
    print(f"{'':28s}{'concurrent (3 steps)':>22s}{'sequential (1 step)':>22s}{'ratio':>8s}")
    for key, label in [("busy", "engine busy fraction"), ("groups_per_s", "groups/s")]:
        ratio = concurrent[key] / sequential[key] if sequential[key] else float("nan")
        print(f"{label:28s}{concurrent[key]:22.3f}{sequential[key]:22.3f}{ratio:8.2f}")
    for config, figures in (("concurrent", concurrent), ("sequential", sequential)):
        share = figures["overhead_s"] / figures["wall_per_group_s"]
        print(
            f"{config}: overhead {figures['overhead_s'] * 1000:.2f} ms/group = {share:.3%} of "
            f"{figures['wall_per_group_s'] * 1000:.1f} ms wall per group"
        )
    emit(
        "rollout.engine_busy_fraction",
        concurrent["busy"],
        "fraction",
        baseline="same server, one step at a time",
        baseline_value=sequential["busy"],
        target=">= 0.9 (value)",
    )
    emit(
        "rollout.group_overhead_s",
        concurrent["overhead_s"],
        "s/group",
        baseline="wall time per delivered group",
        baseline_value=concurrent["wall_per_group_s"],
    )
    emit(
        "rollout.groups_per_s",
        concurrent["groups_per_s"],
        "groups/s",
        baseline="same server, one step at a time",
        baseline_value=sequential["groups_per_s"],
    )


if __name__ == "__main__":
    main()
