"""The evaluation `ghpo run` does while it trains, no hints, through the run's own services: greedy pass@1,
and sampled accuracy (the mean over `eval_samples` completions per problem at temperature 1, avg@k), since
RL moves the two differently: it makes the policy's preferred step right (greedy) before it removes the
mass on the wrong ones (sampled).

`[run] eval` picks the problems: 'arith' (the synthetic task's held-out split, `eval_per_level` problems
of each of `eval_levels`), 'benchmark:NAME' (a built-in benchmark, its first `eval_limit` rows), 'heldout'
(the `data.heldout` rows the rollout server never draws: ghpo.shared.data.selection) or 'off'. Problems
are asked with the run's prompt template, the one training uses. The result is pass@1 per level where
the problems have levels, else one figure under "all".

What it deliberately does not do: decide when to evaluate or record the result (run.py), or report
pass@k (`ghpo eval` does, with --k).
"""

from __future__ import annotations

import asyncio
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class HeldoutAccuracy:
    """By level ("all" where the problems have none): greedy pass@1, and the mean accuracy of
    `[run] eval_samples` completions per problem at temperature 1 ({} when that is 0)."""

    greedy: dict[str, float]
    sampled: dict[str, float]


SAMPLED_TEMPERATURE = 1.0


def evaluate_heldout(cfg: RunConfig, ends: Endpoints) -> HeldoutAccuracy:
    """The served policy's accuracy on `[run] eval`'s problems (both empty when eval is off)."""
    kind = cfg.run.eval
    if kind == "off":
        return HeldoutAccuracy({}, {})
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
    greedy = _by_level(
        asyncio.run(evaluate(config, problems=problems, log=lambda _msg: None)), name, "pass@1"
    )
    if not cfg.run.eval_samples:
        return HeldoutAccuracy(greedy, {})
    sampled_config = dataclasses.replace(config, k=cfg.run.eval_samples, temperature=SAMPLED_TEMPERATURE)
    report = asyncio.run(evaluate(sampled_config, problems=problems, log=lambda _msg: None))
    return HeldoutAccuracy(greedy, _by_level(report, name, "avg@k"))


def _by_level(report: dict, name: str, metric: str) -> dict[str, float]:
    result = report["results"][name]
    if result["levels"]:
        return {level: float(metrics[metric]) for level, metrics in result["levels"].items()}
    return {"all": float(result["all"][metric])}
