"""One evaluation run: problems -> k samples each -> verifier -> metrics, as a JSON-ready dict and a table.

`evaluate(config)` is what `ghpo eval` calls (and what a study script can call): it starts the generator
and the verifier, asks every problem at once (the engine batches), scores every sample, and aggregates
per benchmark and per level (metrics.py says what each number means). The result carries the resolved
configuration, so a results file says how it was made. Not here: argument parsing (ghpo.commands.eval).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ghpo.services.inference.engine import SamplingSpec
from ghpo.shared.data.template import PromptTemplate
from ghpo.trainer.eval.generation import Generator, HttpGenerator, LocalGenerator, Samples
from ghpo.trainer.eval.metrics import ScoredSample, aggregate
from ghpo.trainer.eval.problems import EvalProblem, build_problems
from ghpo.trainer.eval.verify import LocalVerifier, RemoteVerifier, Verifier

TOO_LONG = "prompt_too_long"


@dataclass(frozen=True)
class EvalConfig:
    benchmarks: tuple[str, ...]
    k: int = 1
    pass_k: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    limit: int | None = None
    arith_per_level: int = 100
    arith_levels: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    instruction: str = ""
    system: str = ""
    model: str | None = None  # a model folder, for the in-process engine
    inference_url: str | None = None
    verifier_url: str | None = None
    token: str | None = None
    device: str = "cpu"
    max_model_len: int | None = None
    verifier_workers: int = 2
    benchmarks_dir: str | None = None
    engine_log: str | None = None  # where the in-process engine's own output goes (None: the console)


async def _start(config: EvalConfig) -> tuple[Generator, Verifier]:
    if config.inference_url:
        generator_start: Any = asyncio.sleep(0, HttpGenerator(config.inference_url, token=config.token))
    else:
        assert config.model is not None, "give a model folder or an inference URL"
        generator_start = LocalGenerator.start(
            Path(config.model),
            device=config.device,
            max_model_len=config.max_model_len,
            seed=config.seed,
            log_path=Path(config.engine_log) if config.engine_log else None,
        )
    if config.verifier_url:
        verifier_start: Any = asyncio.sleep(0, RemoteVerifier(config.verifier_url, token=config.token))
    else:
        verifier_start = LocalVerifier.start(config.verifier_workers)
    generator, verifier = await asyncio.gather(generator_start, verifier_start)
    return generator, verifier


def _scored(
    problems: list[EvalProblem], samples: list[Samples], verdicts: list, k: int
) -> list[ScoredSample]:
    out: list[ScoredSample] = []
    verdict_iter = iter(verdicts)
    for problem, drawn in zip(problems, samples, strict=True):
        common = {"problem_id": problem.id, "benchmark": problem.benchmark, "level": problem.level}
        if drawn is None:
            out.extend(
                ScoredSample(
                    **common,
                    index=i,
                    correct=False,
                    formatted=False,
                    answered=False,
                    length=0,
                    truncated=False,
                    status=TOO_LONG,
                )
                for i in range(k)
            )
            continue
        for i, sample in enumerate(drawn):
            verdict = next(verdict_iter)
            out.append(
                ScoredSample(
                    **common,
                    index=i,
                    correct=verdict.accuracy >= 1.0,
                    formatted=verdict.format >= 1.0,
                    answered=verdict.status == "ok",
                    length=sample.length,
                    truncated=sample.truncated,
                    status=verdict.status,
                )
            )
    return out


def _write_samples(path: Path, problems, samples, scored: list[ScoredSample]) -> None:
    texts = {
        (p.id, p.benchmark, i): s.text
        for p, drawn in zip(problems, samples, strict=True)
        for i, s in enumerate(drawn or [])
    }
    answers = {(p.id, p.benchmark): p.answer for p in problems}
    with path.open("w", encoding="utf-8") as f:
        for s in scored:
            row = asdict(s) | {
                "gold": answers[(s.problem_id, s.benchmark)],
                "completion": texts.get((s.problem_id, s.benchmark, s.index)),
            }
            f.write(json.dumps(row) + "\n")


def eval_problems(config: EvalConfig) -> list[EvalProblem]:
    """The problems `config` names, with its prompt template (loads the benchmarks: local or hub)."""
    return build_problems(
        config.benchmarks,
        limit=config.limit,
        arith_per_level=config.arith_per_level,
        arith_levels=config.arith_levels,
        template=PromptTemplate(system=config.system, instruction=config.instruction),
        benchmarks_dir=Path(config.benchmarks_dir) if config.benchmarks_dir else None,
    )


async def evaluate(
    config: EvalConfig,
    *,
    problems: list[EvalProblem] | None = None,
    samples_out: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the evaluation `config` describes (or of `problems`, when given: a run's held-out rows);
    returns {"config", "results", "timing"}."""
    started = time.monotonic()
    problems = eval_problems(config) if problems is None else problems
    log(f"{len(problems)} problems x {config.k} samples; starting generator and verifier")
    generator, verifier = await _start(config)
    spec = SamplingSpec(
        n=config.k, temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    ready = time.monotonic()
    try:
        try:
            samples = await generator.generate(problems, spec)
        finally:
            await generator.close()  # before scoring: the engine's memory and threads are not needed
        generated = time.monotonic()
        log(f"generated {sum(len(s or []) for s in samples)} samples in {generated - ready:.1f}s; scoring")
        items = [(s.text, p.answer) for p, drawn in zip(problems, samples, strict=True) for s in drawn or []]
        verdicts = await verifier.verify(items)
        scored_at = time.monotonic()
    finally:
        await verifier.close()
    scored = _scored(problems, samples, verdicts, config.k)
    if samples_out is not None:
        _write_samples(samples_out, problems, samples, scored)
    return {
        "config": asdict(config) | {"token": None},  # never write a secret into a results file
        "results": aggregate(scored, config.pass_k),
        "timing": {
            "start_s": round(ready - started, 2),
            "generate_s": round(generated - ready, 2),
            "score_s": round(scored_at - generated, 2),
            "total_s": round(time.monotonic() - started, 2),
        },
    }


def print_table(report: dict[str, Any]) -> None:
    """One row per benchmark and per level. With one sample per problem, avg@k and pass@K equal pass@1
    and are left out of the table (the JSON keeps them)."""
    from rich.console import Console
    from rich.table import Table

    k, pass_k = report["config"]["k"], report["config"]["pass_k"]
    metrics = [("pass@1", "pass@1")]
    if k > 1:
        metrics += [(f"avg@{k}", "avg@k"), (f"pass@{pass_k}", "pass@k")]
    metrics += [("format", "format_rate"), ("answered", "answered_rate"), ("truncated", "truncated_rate")]
    table = Table(title=f"ghpo eval: k={k}, temperature={report['config']['temperature']}")
    table.add_column("benchmark")
    for column in ("level", "n", *(title for title, _ in metrics), "mean len", "too long"):
        table.add_column(column, justify="right")
    for name, result in report["results"].items():
        for level, m in [("all", result["all"]), *result["levels"].items()]:
            table.add_row(
                name if level == "all" else "",
                level,
                str(m["n"]),
                *(f"{m[key]:.1%}" for _, key in metrics),
                f"{m['mean_length']:.0f}",
                str(m["prompt_too_long"]),
            )
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)
