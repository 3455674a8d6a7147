"""Verifier throughput: items/s through the HTTP service at batch 64 vs math-verify in a bare process pool.

Workload: MATH-500 worked solutions scored against golds (half their own, half the next row's, so both
the 1 and the 0 paths run). Baseline: `scoring.score` (math-verify) in a `ProcessPoolExecutor` of the
same size, `map(chunksize=16)` over all items, no HTTP. Service: `ghpo serve`-style uvicorn subprocess,
batches of 64 posted by `--concurrency` clients. Rounds alternate baseline/service; medians are printed
with the ratio (target >= 0.8) and the p50/p99 batch latency seen by the client.
Run: python bench/verifier_throughput.py [--workers 2 --batches 16 --rounds 3 --concurrency 2]
`--quick` is a smoke run (2 batches, 1 round); each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import httpx

from ghpo.shared.bench_results import emit
from ghpo.shared.data import default_benchmarks_root
from ghpo.shared.scoring.answers import score

BATCH = 64
QUICK = {"batches": 2, "rounds": 1}


def workload(n: int) -> list[tuple[str, str]]:
    with open(default_benchmarks_root() / "math500.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    items = []
    for i in range(n):
        row = rows[i % len(rows)]
        gold = row["answer"] if i % 2 == 0 else rows[(i + 1) % len(rows)]["answer"]
        items.append((row["solution"], gold))
    return items


def _score(item: tuple[str, str]) -> float:
    return score(item[0], item[1]).total


def baseline(pool: ProcessPoolExecutor, items: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    list(pool.map(_score, items, chunksize=16))
    return len(items) / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "GHPO_VERIFIER_WORKERS": str(workers), "GHPO_VERIFIER_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "ghpo.services.verifier.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("verifier service did not become ready")


async def service(url: str, items: list[tuple[str, str]], concurrency: int) -> tuple[float, list[float]]:
    batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            body = {"items": [{"completion": c, "gold": g} for c, g in batch]}
            sent = time.perf_counter()
            response = await http.post(url + "/v1/verify", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - sent)

    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(items) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    items = workload(BATCH * args.batches)
    process, url = start_service(args.workers)
    try:
        with ProcessPoolExecutor(args.workers) as pool:
            baseline(pool, items[:BATCH])  # warm up: imports, regex compilation
            asyncio.run(service(url, items[:BATCH], 1))
            base_rates, service_rates, latencies = [], [], []
            for _ in range(args.rounds):
                base_rates.append(baseline(pool, items))
                rate, lat = asyncio.run(service(url, items, args.concurrency))
                service_rates.append(rate)
                latencies.extend(lat)
            rate1, lat1 = asyncio.run(service(url, items, 1))
    finally:
        process.terminate()
        process.wait(timeout=30)
    base, served = statistics.median(base_rates), statistics.median(service_rates)
    print(f"items per round: {len(items)} (batch {BATCH}), workers {args.workers}, rounds {args.rounds}")
    print(f"baseline process pool: {base:.1f} items/s (rounds: {', '.join(f'{r:.1f}' for r in base_rates)})")
    print(
        f"HTTP service, concurrency {args.concurrency}: {served:.1f} items/s "
        f"(rounds: {', '.join(f'{r:.1f}' for r in service_rates)})"
    )
    print(f"ratio service/baseline: {served / base:.3f} (target >= 0.8)")
    print(
        f"batch latency at concurrency {args.concurrency}: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
    )
    print(f"HTTP service, concurrency 1 (one round): {rate1:.1f} items/s, ratio {rate1 / base:.3f}")
    print(
        f"batch latency at concurrency 1: p50 {percentile(lat1, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(lat1, 0.99) * 1000:.0f} ms"
    )
    baseline_name = f"math-verify in a bare {args.workers}-process pool"
    emit(
        f"verifier.items_per_s_concurrency{args.concurrency}",
        served,
        "items/s",
        baseline=baseline_name,
        baseline_value=base,
        target="ratio >= 0.8",
    )
    emit("verifier.items_per_s_concurrency1", rate1, "items/s", baseline=baseline_name, baseline_value=base)


if __name__ == "__main__":
    main()
