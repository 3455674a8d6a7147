"""The evaluation `ghpo run` does while it trains: greedy, no hints, through the run's own services.

`[run] eval` picks the problems: 'arith' (the synthetic task's held-out split, `eval_per_level` problems
of each of `eval_levels`), 'benchmark:NAME' (a built-in benchmark, its first `eval_limit` rows), 'heldout'
(the `data.heldout` rows the rollout server never draws: ghpo.shared.data.selection) or 'off'. Problems
are asked with the run's prompt template, the one training uses. The result is pass@1 per level where
the problems have levels, else one figure under "all".

What it deliberately does not do: decide when to evaluate or record the result (run.py), or sample more
than one completion per problem (`ghpo eval` does, with --k).
"""

from __future__ import annotations

import asyncio
import functools

from ghpo.local.config import RunConfig
from ghpo.local.stack import Endpoints
from ghpo.shared.data.selection import DataSpec, heldout_records
from ghpo.shared.data.template import PromptTemplate
from ghpo.trainer.eval.problems import EvalProblem, to_problem
from ghpo.trainer.eval.run import EvalConfig, evaluate

HELDOUT = "heldout"


@functools.lru_cache(maxsize=4)
def _heldout_problems(spec: DataSpec, template: PromptTemplate, limit: int | None) -> tuple[EvalProblem, ...]:
    return tuple(to_problem(r, HELDOUT, template) for r in heldout_records(spec)[:limit])


def evaluate_heldout(cfg: RunConfig, ends: Endpoints) -> dict[str, float]:
    """Greedy pass@1 of the served policy on `[run] eval`'s problems, by level ({} when eval is off)."""
    kind = cfg.run.eval
    if kind == "off":
        return {}
    template = cfg.prompt.template()
    name = kind.removeprefix("benchmark:")
    problems = None
    if kind == HELDOUT:
        problems = list(_heldout_problems(cfg.data.spec(cfg.run.seed), template, cfg.run.eval_limit))
    config = EvalConfig(
        benchmarks=(name,),
        arith_levels=tuple(cfg.run.eval_levels),
        arith_per_level=cfg.run.eval_per_level,
        limit=cfg.run.eval_limit,
        max_tokens=cfg.rollout.max_tokens,
        seed=cfg.run.seed,
        system=template.system,
        instruction=template.instruction,
        inference_url=ends.url("inference"),
        verifier_url=ends.url("verifier"),
        token=ends.token,
    )
    report = asyncio.run(evaluate(config, problems=problems, log=lambda _msg: None))
    result = report["results"][name]
    if result["levels"]:
        return {level: float(metrics["pass@1"]) for level, metrics in result["levels"].items()}
    return {"all": float(result["all"]["pass@1"])}
