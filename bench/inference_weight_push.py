"""HTTP weight push into the running inference service, against a plain in-memory copy of the same tensors.

Starts the service (uvicorn on a loopback port, real vLLM CPU engine) on a random Qwen2 of ~`--hidden`
width, then pushes full weight sets with `ghpo.trainer.train.push_http.push_weights` (pack into
safetensors chunks, SHA-256, PUT each chunk, commit: drain + load into vLLM). Prints the median bytes/s of
the whole push, of the upload alone and of the commit alone, next to the median bytes/s of `clone()`-ing
the same tensors in memory (the limit), and the ratio push / copy. Twice: with chunks larger than every
tensor (`--chunk-mib`, whole tensors in safetensors chunks), and with chunks smaller than the embedding
and MLP matrices (`--sliced-chunk-mib`), which then travel as byte-range slices reassembled on disk.

    .venv/bin/python bench/inference_weight_push.py [--hidden 512] [--layers 8] [--repeats 3]

`--quick` is a smoke run (hidden 128, 2 layers, 1 repeat); each figure is also printed as a BENCH_RESULT
line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from ghpo.shared.bench_results import emit

QUICK = {"hidden": 128, "layers": 2, "repeats": 1}
TOKEN = "bench-token"


def random_qwen2(out_dir: Path, hidden: int, layers: int) -> Path:
    from ghpo.trainer.tiny.random_model import build_random_qwen2

    return build_random_qwen2(
        out_dir,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_layers=layers,
        num_heads=hidden // 64,
        num_kv_heads=max(1, hidden // 128),
        max_position_embeddings=1024,
        vocab_size=4096,
    )


def serve(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return url, server, thread
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("inference service not ready")
        time.sleep(0.5)


def main() -> None:
    from safetensors.torch import load_file

    from ghpo.services.inference.app import create_app
    from ghpo.services.inference.settings import Settings
    from ghpo.shared.http import SyncServiceClient
    from ghpo.trainer.train.push_http import HEADER_ROOM_BYTES, pack_chunks, push_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--chunk-mib", type=int, default=16)
    parser.add_argument("--sliced-chunk-mib", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    mib = 1024 * 1024
    chunk_bytes = args.chunk_mib * mib
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_qwen2(Path(tmp) / "model", args.hidden, args.layers)
        base = load_file(model_dir / "model.safetensors")
        nbytes = sum(t.numel() * t.element_size() for t in base.values())
        largest = max(t.numel() * t.element_size() for t in base.values())
        copy_rates = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            copies = {name: t.clone() for name, t in base.items()}
            copy_rates.append(nbytes / (time.perf_counter() - started))
            del copies
        settings = Settings(
            model=str(model_dir),
            token=TOKEN,
            max_model_len=512,
            kv_cache_gib=1,
            max_chunk_bytes=chunk_bytes + HEADER_ROOM_BYTES,
            max_body_bytes=chunk_bytes + HEADER_ROOM_BYTES,
        )
        url, server, thread = serve(create_app(settings))
        runs = {}
        try:
            with SyncServiceClient(url, token=TOKEN, timeout=300, total_budget=600) as client:
                version = 0
                for label, size in (("whole", chunk_bytes), ("sliced", args.sliced_chunk_mib * mib)):
                    push_rates, upload_rates, commit_rates, sliced = [], [], [], 0
                    for _ in range(args.repeats):
                        version += 1
                        weights = {name: t + 0.01 * version for name, t in base.items()}
                        started = time.perf_counter()
                        chunks = pack_chunks(weights, size)
                        status = push_weights(client, weights, version, chunks=chunks)
                        push_rates.append(nbytes / (time.perf_counter() - started))
                        commit_s = status.last_update_seconds or 0.0
                        commit_rates.append(nbytes / commit_s if commit_s else float("nan"))
                        upload_rates.append(nbytes / (nbytes / push_rates[-1] - commit_s))
                        sliced = len({c.piece.tensor for c in chunks if c.piece is not None})
                        assert status.policy_version == version
                    runs[label] = (size, sliced, push_rates, upload_rates, commit_rates)
        finally:
            server.should_exit = True
            thread.join(60)
    copy = statistics.median(copy_rates)
    print(f"model: {nbytes / mib:.1f} MiB fp32 in {len(base)} tensors (largest {largest / mib:.1f} MiB)")
    print(f"in-memory copy (clone): median {copy / mib:.0f} MiB/s")
    for label, (size, sliced, push_rates, upload_rates, commit_rates) in runs.items():
        push = statistics.median(push_rates)
        print(f"[{label}] chunks of {size / mib:g} MiB, {sliced} tensors sent in slices")
        print(
            f"  HTTP push, whole (pack + sha256 + upload + validate + stage + commit): median {push / mib:.1f} MiB/s"
        )
        print(f"  upload part: median {statistics.median(upload_rates) / mib:.1f} MiB/s")
        print(
            f"  commit part (drain + load into vLLM): median {statistics.median(commit_rates) / mib:.1f} MiB/s"
        )
        print(f"  ratio push / copy: {push / copy:.3f}")
        emit(
            "inference.weight_push_mib_per_s" + ("" if label == "whole" else "_sliced"),
            push / mib,
            "MiB/s",
            baseline="in-memory clone() of the same tensors",
            baseline_value=copy / mib,
            note=f"chunks of {size / mib:g} MiB, {sliced} tensors in byte-range slices",
        )


if __name__ == "__main__":  # vLLM spawns worker processes that re-import this module
    main()
