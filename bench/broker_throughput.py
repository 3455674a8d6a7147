"""Guidance broker throughput: plans/s and outcomes/s through the HTTP API at batches of 256 prompts,
against a raw redis-py baseline doing the same Redis reads and writes from this script.

Setup: a local Redis server (ghpo.shared.redis_local, AOF everysec as in production) and the broker
under uvicorn in a subprocess (`--factory`), policy ghpo-memory past the cold start so every plan reads
each prompt's memory. HTTP side: `--clients` concurrent keep-alive clients each sending batches.
Baseline: the same number of concurrent asyncio redis-py clients, each plan batch one EVALSHA of the
broker's own read_memories.lua (256 HMGETs server-side), each outcome batch one EVALSHA of its
record_outcomes.lua: the same Redis reads and writes the broker does, minus HTTP, JSON and pydantic. Figures are
medians over `--repeats` rounds; the ratio is HTTP / raw (aim: >= 5,000 prompts/s each, ratio >= 0.5).

Run: python bench/broker_throughput.py [--batches 40 --repeats 5 --clients 4]
`--quick` is a smoke run (2 batches, 1 round); each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files

import httpx
import redis.asyncio as aioredis

from ghpo.shared.bench_results import emit
from ghpo.shared.redis_local import LocalRedis, free_port

BATCH = 256
PREFIX = "ghpo:broker:"
QUICK = {"batches": 2, "repeats": 1}


def outcome_batch(tag: str, n: int) -> list[dict]:
    return [
        {
            "prompt_id": f"p{i}",
            "update_id": f"{tag}-{i}",
            "step": 100,
            "policy_version": 3,
            "results": [{"level": 0, "correct": 0, "G": 8}, {"level": 1, "correct": i % 8, "G": 8}],
        }
        for i in range(n)
    ]


async def http_round(base: str, kind: str, batches: int, clients: int, tag: str) -> float:
    ids = [f"p{i}" for i in range(BATCH)]

    async def worker(c: int, client: httpx.AsyncClient) -> None:
        for b in range(batches):
            if kind == "plan":
                r = await client.post("/v1/plan", json={"step": 100, "prompt_ids": ids})
            else:
                r = await client.post(
                    "/v1/outcomes", json={"outcomes": outcome_batch(f"{tag}-{c}-{b}", BATCH)}
                )
            r.raise_for_status()

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, client) for c in range(clients)))
        elapsed = time.perf_counter() - start
    return batches * clients * BATCH / elapsed


async def raw_round(url: str, kind: str, batches: int, clients: int, tag: str) -> float:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    package = files("ghpo.services.broker")
    script = r.register_script(package.joinpath("record_outcomes.lua").read_text())
    read = r.register_script(package.joinpath("read_memories.lua").read_text())
    plan_keys = [f"{PREFIX}p:p{i}" for i in range(BATCH)]

    async def worker(c: int) -> None:
        for b in range(batches):
            if kind == "plan":
                await read(keys=plan_keys)
            else:
                keys, args = [f"{PREFIX}stats"], [604800, BATCH]
                for o in outcome_batch(f"{tag}-{c}-{b}", BATCH):
                    keys += [f"{PREFIX}p:{o['prompt_id']}", f"{PREFIX}u:{o['prompt_id']}:{o['update_id']}"]
                    args += [o["step"], o["policy_version"], len(o["results"])]
                    for x in o["results"]:
                        args += [x["level"], x["correct"], x["G"]]
                await script(keys=keys, args=args)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    await r.aclose()
    return batches * clients * BATCH / elapsed


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"broker exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit("broker did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40, help="batches per client per round")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; medians are reported")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = ap.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        ap.set_defaults(**QUICK)
        args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(tmp) as server:
        port = free_port()
        env = {
            **os.environ,
            "GHPO_BROKER_REDIS_URL": server.url,
            "GHPO_BROKER_POLICY": "ghpo-memory",
            "GHPO_ALGORITHM_COLD_START_STEPS": "0",
            "GHPO_BROKER_LOG_LEVEL": "WARNING",
        }
        cmd = [sys.executable, "-m", "uvicorn", "ghpo.services.broker.app:create_app", "--factory"]
        cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        proc = subprocess.Popen(cmd, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc)
            results: dict[str, list[float]] = {
                k: [] for k in ("http_plan", "raw_plan", "http_out", "raw_out")
            }
            for rep in range(args.repeats):
                b, c = args.batches, args.clients
                results["http_out"].append(asyncio.run(http_round(base, "outcomes", b, c, f"h{rep}")))
                results["raw_out"].append(asyncio.run(raw_round(server.url, "outcomes", b, c, f"r{rep}")))
                results["http_plan"].append(asyncio.run(http_round(base, "plan", b, c, "")))
                results["raw_plan"].append(asyncio.run(raw_round(server.url, "plan", b, c, "")))
        finally:
            proc.terminate()
            proc.wait(15)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"redis: {server.binary.name} {server.version}; batch {BATCH}; {args.clients} clients; "
            f"{args.batches} batches/client/round; medians of {args.repeats} rounds"
        )
        for kind, label in (("plan", "plans"), ("out", "outcomes")):
            http, raw = med[f"http_{kind}"], med[f"raw_{kind}"]
            print(
                f"{label:9s} HTTP {http:10,.0f} prompts/s   raw redis-py {raw:10,.0f} prompts/s   "
                f"ratio {http / raw:.2f}"
            )
            emit(
                f"broker.{label}_prompts_per_s",
                http,
                "prompts/s",
                baseline="raw redis-py, same Lua scripts",
                baseline_value=raw,
                target="value >= 5000, ratio >= 0.5",
            )


if __name__ == "__main__":
    main()
