"""The numbers `ghpo eval` reports, from scored samples: pass@1, avg@k, the unbiased pass@k and friends.

Definitions (n problems, k samples each, c_i of problem i's samples correct):
- `pass@1`: the accuracy of each problem's *first* sample. At temperature 0 that is greedy decoding,
  the paper's pass@1 protocol (MATH-500, OlympiadBench, AMC23, Minerva).
- `avg@k`: the mean accuracy over all k samples, mean_i(c_i / k): the paper's avg@32 (AIME24) with k=32.
  It is also the minimum-variance unbiased estimate of sampled pass@1.
- `pass@K` (K <= k): the unbiased estimator of Chen et al. (2021), mean_i(1 - C(k - c_i, K) / C(k, K)),
  the chance that at least one of K samples is right, estimated from k >= K samples.
- `format_rate`: share of samples the reference format reward accepts; `mean_length`: mean completion
  tokens; `answered_rate`: share with an answer the verifier could extract; `truncated_rate`: share
  cut at the token budget; `prompt_too_long`: problems whose prompt did not fit the context (scored 0).

Pure functions: nothing here generates, scores or prints.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ScoredSample:
    """One sample of one problem, after the verifier."""

    problem_id: str
    benchmark: str
    level: int | None
    index: int  # the sample's position among the problem's k samples (0 = first)
    correct: bool
    formatted: bool
    answered: bool
    length: int  # completion tokens
    truncated: bool
    status: str  # the verifier's status, or "prompt_too_long"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i).
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def summarize(samples: Sequence[ScoredSample], pass_k: int) -> dict[str, float | int]:
    """The metrics of one group of problems (a benchmark, or one of its levels)."""
    by_problem: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in samples:
        by_problem[s.problem_id].append(s)
    if not by_problem:
        raise ValueError("no samples to summarize")
    sizes = {len(group) for group in by_problem.values()}
    if len(sizes) != 1:
        raise ValueError(f"every problem needs the same number of samples, got sizes {sorted(sizes)}")
    k = sizes.pop()
    if pass_k > k:
        raise ValueError(f"pass@{pass_k} needs at least {pass_k} samples per problem, have {k}")
    firsts, avgs, passes = [], [], []
    for group in by_problem.values():
        ordered = sorted(group, key=lambda s: s.index)
        correct = sum(s.correct for s in ordered)
        firsts.append(float(ordered[0].correct))
        avgs.append(correct / k)
        passes.append(pass_at_k(k, correct, pass_k))
    n_samples = len(samples)
    return {
        "n": len(by_problem),
        "k": k,
        "pass@1": _mean(firsts),
        "avg@k": _mean(avgs),
        "pass@k": _mean(passes),
        "pass_k": pass_k,
        "format_rate": sum(s.formatted for s in samples) / n_samples,
        "answered_rate": sum(s.answered for s in samples) / n_samples,
        "truncated_rate": sum(s.truncated for s in samples) / n_samples,
        "mean_length": sum(s.length for s in samples) / n_samples,
        "prompt_too_long": sum(1 for group in by_problem.values() if group[0].status == "prompt_too_long"),
    }


def aggregate(samples: Iterable[ScoredSample], pass_k: int) -> dict[str, dict]:
    """{benchmark: {"all": metrics, "levels": {level: metrics}}}; "levels" only where problems have one."""
    by_benchmark: dict[str, list[ScoredSample]] = defaultdict(list)
    for s in samples:
        by_benchmark[s.benchmark].append(s)
    results: dict[str, dict] = {}
    for benchmark, group in by_benchmark.items():
        levels: dict[int, list[ScoredSample]] = defaultdict(list)
        for s in group:
            if s.level is not None:
                levels[s.level].append(s)
        results[benchmark] = {
            "all": summarize(group, pass_k),
            "levels": {str(level): summarize(levels[level], pass_k) for level in sorted(levels)},
        }
    return results


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
