"""Peak memory of one training micro-step (forward + backward) at Qwen2.5's vocabulary: the trainer's
log-prob path (ghpo.trainer.train.step.completion_logps) against the path it replaced and against TRL.

The model is a Qwen2 with Qwen2.5's vocabulary (151,936) and a tiny body (hidden 8, one layer), in bf16,
so the LM head's logits are nearly all the memory there is, as they are for a 1.5B-7B model at 4-8k
tokens. Rows x completion tokens: 4 x 1,024 and 4 x 4,096, after a 64-token prompt, temperature 1. Three
paths, each followed by the same loss (advantage-weighted mean log-prob) and its backward:
- "today": the code before issue 28: logits of every position, an fp32 copy, a full log_softmax, the
  tokens gathered, entropy from a third full tensor (under no_grad);
- "new": ghpo's completion_logps (logits of the completion positions only, chunked fp32 logsumexp, the
  gradient written into the logits' own storage, entropy in the same chunks);
- "trl": the model's logits of the completion positions (`logits_to_keep`), then TRL's
  `selective_log_softmax` and, under no_grad, `entropy_from_logits` (TRL 1.16's non-Triton path).

Each path runs in its own child process, capped with RLIMIT_AS at `--cap-gib` (at most 14 GiB) so a
path that does not fit fails its allocation there ("does not fit in N GiB") and the machine is never at
risk. Peak: the kernel's high-water mark of resident memory (VmHWM), reset to the current RSS just before
the micro-step (`echo 5 > /proc/self/clear_refs`), minus the RSS at that moment: what the step itself
added, model and inputs excluded, counted in pages actually touched (every tensor here is written). Not
torch's allocator profiler: it would miss memory outside torch's CPU allocator (oneDNN scratch), and it
slows large runs down. Where clear_refs cannot be written, ru_maxrss (lifetime peak) minus the RSS
before the step, which over-counts only if setup peaked higher than the step (it does not here).

Figures are in units of one bf16 logits tensor of the completion positions (rows x tokens x 151,936 x 2
bytes). Headline: trainer.logprob_peak_over_logits_4x4096 (new path), target <= 1.5 and <= TRL's.

    .venv/bin/python bench/trainer_memory.py [--cap-gib 14] [--sizes 4x1024,4x4096]

`--quick`: 4 x 256 only (the three paths; a smoke run, about 2 minutes). Also timed, in this process:
the new path against the old one on the tiny world's model (16 rows x 96 completion tokens after a
40-token prompt, fp32, one thread), forward + backward, alternating, medians
(`trainer.logprob_microstep_s_tiny`, baseline the old path): the chunked path must not cost the tiny
world time. On this 2-core CPU without bf16 instructions the LM head's bf16 matmul is slow: at 4 x 4,096
one path takes 20 minutes or more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from ghpo.shared.bench_results import require_extras

VOCAB = 151_936
PROMPT = 64
GIB = 1024**3
MAX_CAP_GIB = 14
PATHS = ("today", "new", "trl")


def build(rows: int, tokens: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=PROMPT + tokens + 1,
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.train()
    return model, build_batch(rows, PROMPT, tokens, VOCAB)


def build_batch(rows: int, prompt: int, tokens: int, vocab: int):
    import torch

    from ghpo.trainer.train.batches import MicroBatch

    ids = torch.randint(0, vocab, (rows, prompt + tokens))
    mb = MicroBatch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(prompt + tokens).expand(rows, -1),
        prompt_width=prompt,
        completion_ids=ids[:, prompt:],
        completion_mask=torch.ones(rows, tokens),
        behaviour_logps=torch.zeros(rows, tokens),
        advantages=torch.linspace(-1, 1, rows),
        hinted=torch.zeros(rows, dtype=torch.bool),
        truncated=torch.zeros(rows, dtype=torch.bool),
        policy_versions=torch.zeros(rows, dtype=torch.long),
        temperatures=torch.ones(rows),
    )
    return mb


def today_logps(model, mb):
    """completion_logps as it was before issue 28 (trainer/train/step.py at d28fde6)."""
    import torch

    out = model(
        input_ids=mb.input_ids,
        attention_mask=mb.attention_mask,
        position_ids=mb.position_ids,
        use_cache=False,
    )
    width_t = mb.completion_ids.size(1)
    logits = out.logits[:, mb.prompt_width - 1 : mb.prompt_width - 1 + width_t].float()
    if bool((mb.temperatures != 1.0).any()):
        logits = logits / mb.temperatures[:, None, None]
    log_probs = torch.log_softmax(logits, dim=-1)
    logps = log_probs.gather(-1, mb.completion_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logps, entropy


def trl_logps(model, mb):
    import torch
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    width_t = mb.completion_ids.size(1)
    out = model(
        input_ids=mb.input_ids,
        attention_mask=mb.attention_mask,
        position_ids=mb.position_ids,
        use_cache=False,
        logits_to_keep=width_t + 1,
    )
    logits = out.logits[:, :-1]
    logps = selective_log_softmax(logits, mb.completion_ids)
    with torch.no_grad():
        entropy = entropy_from_logits(logits)
    return logps, entropy


def new_logps(model, mb):
    from ghpo.trainer.train.step import completion_logps

    return completion_logps(model, mb)


def speed(repeats: int) -> None:
    """Old vs new log-prob micro-step on the tiny model, alternating, medians."""
    import statistics

    import torch
    from transformers import AutoModelForCausalLM

    from ghpo.shared.bench_results import emit
    from ghpo.trainer.tiny import ensure_tiny_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(), dtype=torch.float32)
    model.train()
    rows, prompt, tokens = 16, 40, 96
    mb = build_batch(rows, prompt, tokens, model.config.vocab_size)
    times: dict[str, list[float]] = {"today": [], "new": []}
    for i in range(repeats + 1):  # the first round warms both up and is not timed
        for name, fn in (("today", today_logps), ("new", new_logps))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            logps, _ = fn(model, mb)
            (-(logps * mb.advantages[:, None]).mean()).backward()
            if i:
                times[name].append(time.perf_counter() - started)
            model.zero_grad(set_to_none=True)
    new, today = statistics.median(times["new"]), statistics.median(times["today"])
    print(
        f"\ntiny model, {rows} x {tokens}: new {new * 1e3:.1f} ms, old {today * 1e3:.1f} ms (medians of {repeats})"
    )
    emit(
        "trainer.logprob_microstep_s_tiny",
        new,
        "s",
        baseline="the path before issue 28, same model and micro-batch",
        baseline_value=today,
        target="ratio <= 1.05",
    )


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child(path: str, rows: int, tokens: int, cap_gib: float) -> None:
    """One micro-step of `path` under the address-space cap; prints one JSON line."""
    cap = int(cap_gib * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, mb = build(rows, tokens)
    step = {"today": today_logps, "new": new_logps, "trl": trl_logps}[path]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        method = "VmHWM"
    except OSError:
        method = "ru_maxrss"
    base = _status_kib("VmRSS")
    started = time.perf_counter()
    try:
        logps, _entropy = step(model, mb)
        loss = -(logps * mb.advantages[:, None]).mean()
        loss.backward()
    except (MemoryError, RuntimeError) as exc:  # an allocation refused under the cap
        print(json.dumps({"fits": False, "error": str(exc).splitlines()[0][:200]}), flush=True)
        return
    high = _status_kib("VmHWM") if method == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"fits": True, "peak": (high - base) * 1024, "seconds": time.perf_counter() - started}
    print(json.dumps(result | {"method": method}), flush=True)


def measure(path: str, rows: int, tokens: int, cap_gib: float) -> dict:
    cmd = [sys.executable, __file__, "--child", path, str(rows), str(tokens), "--cap-gib", str(cap_gib)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    if done.returncode < 0:  # killed from outside (a timeout, a person): no verdict on memory
        return {"fits": False, "killed": True, "error": f"killed by signal {-done.returncode}"}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {"fits": False, "error": f"exit {done.returncode}: {tail}"}  # failed outside the step


def main() -> None:
    require_extras(__file__)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cap-gib", type=float, default=MAX_CAP_GIB, help=f"per path, at most {MAX_CAP_GIB}")
    parser.add_argument("--sizes", default="4x1024,4x4096", help="rows x completion tokens, comma-separated")
    parser.add_argument("--quick", action="store_true", help="4 x 256 only, 5 timed repeats")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats of the tiny-model comparison")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "ROWS", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cap_gib = min(args.cap_gib, MAX_CAP_GIB)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), cap_gib)
        return
    sizes = [tuple(int(x) for x in s.split("x")) for s in ("4x256" if args.quick else args.sizes).split(",")]
    print(
        f"Qwen2, vocabulary {VOCAB}, hidden 8, 1 layer, bf16; prompt {PROMPT}; cap {cap_gib:g} GiB per path"
    )
    results: dict[tuple[int, int], dict[str, dict]] = {}
    for rows, tokens in sizes:
        logits = rows * tokens * VOCAB * 2
        results[rows, tokens] = {}
        print(
            f"\n{rows} x {tokens}: one bf16 logits tensor of the completion positions = {logits / GIB:.2f} GiB"
        )
        for path in PATHS:
            r = measure(path, rows, tokens, cap_gib)
            results[rows, tokens][path] = r
            if r["fits"]:
                print(
                    f"  {path:5s} peak {r['peak'] / GIB:6.2f} GiB = {r['peak'] / logits:5.2f} x logits ({r['seconds']:.0f} s)"
                )
            elif r.get("killed"):
                print(f"  {path:5s} did not finish ({r['error']})")
            else:
                print(f"  {path:5s} does not fit in {cap_gib:g} GiB ({r['error']})")
        emit_size(rows, tokens, results[rows, tokens], cap_gib)
    speed(5 if args.quick else args.repeats)


def emit_size(rows: int, tokens: int, paths: dict[str, dict], cap_gib: float) -> None:
    """The figures of one size, printed as soon as its three paths are measured."""
    logits = rows * tokens * VOCAB * 2
    new, trl, today = paths["new"], paths["trl"], paths["today"]
    if not new["fits"]:
        print(f"new path does not fit at {rows} x {tokens} in {cap_gib:g} GiB")
        return
    size = f"{rows}x{tokens}"
    emit_figure(
        f"trainer.logprob_peak_over_logits_{size}",
        new["peak"] / logits,
        trl,
        logits,
        "TRL selective_log_softmax + entropy_from_logits, same model and micro-step",
        cap_gib,
    )
    emit_figure(
        f"trainer.logprob_peak_over_logits_{size}_before",
        today["peak"] / logits if today["fits"] else None,
        new,
        logits,
        "this path (new)",
        cap_gib,
        what="the path before issue 28 (full fp32 log_softmax)",
    )


def emit_figure(name, value, baseline, logits, baseline_name, cap_gib, what=None) -> None:
    from ghpo.shared.bench_results import emit

    notes = [] if what is None else [what]
    if value is None:
        print(f"{name}: does not fit in {cap_gib:g} GiB (not emitted)")
        return
    base = baseline["peak"] / logits if baseline["fits"] else None
    if base is None:
        notes.append(f"baseline does not fit in {cap_gib:g} GiB")
    emit(
        name,
        value,
        "x bf16 logits",
        baseline=baseline_name,
        baseline_value=base,
        target="<= 1.5, ratio <= 1" if what is None else None,
        note="; ".join(notes) or None,
    )


if __name__ == "__main__":
    main()
