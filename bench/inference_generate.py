"""CPU generation throughput of the inference engine (vLLM CPU build) against transformers `generate`.

Same model (a random Qwen2 with the tiny model's dimensions, or the cached tiny model with --tiny), same
batch (64 prompts x 8 samples), same prompt and completion lengths (transformers with min_new_tokens; the
random model rarely samples EOS, and vLLM's rate counts the tokens it actually produced), same threads. Prints the median
tokens/s of each and the ratio vLLM / transformers (the issue asks for >= 0.8). The engine is driven
directly (`VllmEngine.generate`), not over HTTP: the JSON of 512 samples is negligible next to decoding.

    /work/venv-vllm/bin/python bench/inference_generate.py [--max-tokens 32] [--repeats 3]

`--quick` is a smoke run (8 prompts x 2 samples, 8 tokens, 1 repeat); each figure is also printed as a
BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ghpo.shared.bench_results import emit

QUICK = {"prompts": 8, "samples": 2, "max_tokens": 8, "repeats": 1}


def random_tiny_qwen2(out_dir: Path) -> Path:
    """A Qwen2 with TinyBuildConfig's dimensions and random weights (no SFT: speed does not care)."""
    from ghpo.trainer.tiny import TinyBuildConfig
    from ghpo.trainer.tiny.random_model import build_random_qwen2

    c = TinyBuildConfig()
    return build_random_qwen2(
        out_dir,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        num_kv_heads=c.num_kv_heads,
        max_position_embeddings=c.max_position_embeddings,
        vocab_size=512,
    )


def prompts(n: int, length: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(10, vocab - 10, (n, length), generator=g).tolist()


def bench_transformers(
    model_dir: Path, batch: list[list[int]], samples: int, max_tokens: int, repeats: int
) -> list[float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def generate(ids: torch.Tensor, n: int, tokens: int) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                num_return_sequences=n,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
            )

    ids = torch.tensor(batch)
    generate(ids[:2], 1, 4)  # warm-up, as vLLM gets: the first call pays one-off kernel set-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = generate(ids, samples, max_tokens)
        elapsed = time.perf_counter() - started
        rates.append((out.shape[0] * (out.shape[1] - ids.shape[1])) / elapsed)
    return rates


async def bench_vllm(
    model_dir: Path, batch: list[list[int]], samples: int, max_tokens: int, repeats: int
) -> list[float]:

    from ghpo.services.inference.engine import SamplingSpec
    from ghpo.services.inference.vllm_engine import VllmEngine

    engine = await VllmEngine.start(
        model=str(model_dir),
        device="cpu",
        dtype="float32",
        max_model_len=1024,
        kv_cache_gib=2,
        gpu_memory_utilization=0.9,
        max_num_seqs=len(batch) * samples,
        seed=0,
        logprobs_mode="raw_logprobs",
    )
    spec = SamplingSpec(n=samples, temperature=1.0, max_tokens=max_tokens, seed=0)
    rates = []
    try:
        await engine.generate(batch[:2], SamplingSpec(n=1, max_tokens=4))  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            out = await engine.generate(batch, spec)
            elapsed = time.perf_counter() - started
            rates.append(sum(len(c.token_ids) for group in out for c in group) / elapsed)
    finally:
        await engine.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="use ensure_tiny_model() (builds it if absent)")
    parser.add_argument(
        "--model",
        help="a model folder, or 'smollm2' (SmolLM2-135M-Instruct, `ghpo models prepare smollm2`): a real "
        "architecture, where per-token compute rather than per-step overhead sets the rate",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "smollm2":
            from ghpo.trainer.models import prepare_smollm2

            model_dir = prepare_smollm2()
        elif args.model:
            model_dir = Path(args.model)
        elif args.tiny:
            from ghpo.trainer.tiny import ensure_tiny_model

            model_dir = ensure_tiny_model()
        else:
            model_dir = random_tiny_qwen2(Path(tmp) / "model")
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
        batch = prompts(args.prompts, args.prompt_tokens, vocab)
        vllm_rates = asyncio.run(bench_vllm(model_dir, batch, args.samples, args.max_tokens, args.repeats))
        hf_rates = bench_transformers(model_dir, batch, args.samples, args.max_tokens, args.repeats)
    vllm_tps, hf_tps = statistics.median(vllm_rates), statistics.median(hf_rates)
    shape = args.model or ("tiny" if args.tiny else "tiny shape, random weights")
    print(
        f"model {shape}; batch {args.prompts} prompts x {args.samples} samples, {args.prompt_tokens} prompt + {args.max_tokens} new tokens, torch threads {torch.get_num_threads()}"
    )
    print(f"vLLM (CPU) tokens/s: median {vllm_tps:.0f}  runs {[round(r) for r in vllm_rates]}")
    print(f"transformers generate tokens/s: median {hf_tps:.0f}  runs {[round(r) for r in hf_rates]}")
    print(f"ratio vLLM / transformers: {vllm_tps / hf_tps:.2f}x (target >= 0.8)")
    emit(
        "inference.generate_tokens_per_s" + (f"_{Path(args.model).name}" if args.model else ""),
        vllm_tps,
        "tokens/s",
        baseline="transformers generate, same model/batch/threads",
        baseline_value=hf_tps,
        target="ratio >= 0.8",
    )


if __name__ == "__main__":  # vLLM spawns worker processes that re-import this module
    main()
