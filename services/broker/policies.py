"""Hint-level policies and outcome rules of the guidance broker: pure functions, no I/O.

Levels: 0 is the plain prompt; level k in 1..L appends `ladder[k-1]` of the worked solution (L = len(ladder)).
A plan is (start_level, max_level): the first group of the step is generated at start_level and, when
all G rollouts are wrong, escalated one level at a time up to max_level.

Policies:
- `none`: plain GRPO. Start 0, never escalate (max 0).
- `ghpo`: the paper. Start 0, escalate through the whole ladder (max L).
- `ghpo-memory`: start where the last visit ended, and step the hint down as the policy improves.
  From the prompt's last recorded outcome (start level s, final level f, final group c correct of G):
    * escalated (f > s): start at f next time, the level that rescued it (or the top, if nothing did);
    * not escalated (f == s) and c / G >= step_down_accuracy: start at s - 1 (the hint is no longer
      needed at s, so try with less); an all-correct group always qualifies;
    * otherwise start at s again.
  When `stale_after_steps` > 0 and the memory is older than that many steps, start one level lower
  still (the policy has moved since). Escalation stays allowed up to L.
- `ghpo-adaptive`: hold each prompt near a hinted accuracy of `target_accuracy` (the idea behind SEELE
  and AdaRFT; meant for a finer ladder than the paper's three rungs). From the last outcome's final
  level f and that group's accuracy a:
    * a > target_accuracy: start at f - 1 (the hint made it easier than aimed at: give less);
    * otherwise (0 < a <= target, or nothing rescued it): start at f, the smallest level known to give
      signal, or the highest level tried.
  Unlike `ghpo-memory` it also steps down from a level the prompt escalated to, and its threshold is
  the aimed-at accuracy rather than "the hint is no longer needed". Staleness as `ghpo-memory`.
- Cold start: while step < cold_start_steps every policy plans (0, 0): no hints at all.

Outcome rules checked before anything is written (`outcome_problem`): levels within 0..L and strictly
increasing, 0 <= correct <= G, G equal to the configured group size (when set), and every group but the
last all wrong (escalation only follows an all-wrong group).

Not here: Redis, HTTP, metrics export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ghpo.shared.schemas.broker import PolicyName

REMEMBERING: tuple[PolicyName, ...] = ("ghpo-memory", "ghpo-adaptive")  # plans read the prompt's memory


@dataclass(frozen=True)
class PolicyConfig:
    name: PolicyName
    n_hint_levels: int  # L = len(ladder)
    cold_start_steps: int = 20
    step_down_accuracy: float = 0.75
    stale_after_steps: int = 0  # 0: memory never goes stale
    target_accuracy: float = 0.5  # ghpo-adaptive: the hinted accuracy aimed at


@dataclass(frozen=True)
class Memory:
    """What the broker remembers of a prompt's last outcome (None fields: never seen)."""

    last_start: int | None = None
    last_final: int | None = None
    last_final_correct: int | None = None
    last_final_g: int | None = None
    last_step: int | None = None


@dataclass(frozen=True)
class Plan:
    start_level: int
    max_level: int


def memory_start_level(cfg: PolicyConfig, memory: Memory, step: int) -> int:
    """The `ghpo-memory` or `ghpo-adaptive` starting level (see the module docstring)."""
    if memory.last_final is None or memory.last_start is None:
        return 0
    start, final = memory.last_start, memory.last_final
    g = memory.last_final_g or 0
    accuracy = (memory.last_final_correct or 0) / g if g else 0.0
    if cfg.name == "ghpo-adaptive":
        level = final - 1 if accuracy > cfg.target_accuracy else final
    elif final > start:
        level = final
    else:
        level = start - 1 if accuracy >= cfg.step_down_accuracy else start
    if (
        cfg.stale_after_steps
        and memory.last_step is not None
        and step - memory.last_step > cfg.stale_after_steps
    ):
        level -= 1
    return min(max(level, 0), cfg.n_hint_levels)


def plan(cfg: PolicyConfig, memory: Memory, step: int) -> Plan:
    if cfg.name == "none" or step < cfg.cold_start_steps:
        return Plan(0, 0)
    if cfg.name == "ghpo":
        return Plan(0, cfg.n_hint_levels)
    return Plan(memory_start_level(cfg, memory, step), cfg.n_hint_levels)


def outcome_problem(
    results: Sequence[tuple[int, int, int]], n_hint_levels: int, group_size: int
) -> tuple[str, str] | None:
    """(field suffix, message) for the first rule `results` [(level, correct, G), ...] breaks, else None."""
    previous = -1
    for j, (level, correct, g) in enumerate(results):
        if level > n_hint_levels:
            return (
                f"results.{j}.level",
                f"unknown hint level {level}; the ladder has levels 0..{n_hint_levels}",
            )
        if level <= previous:
            return (
                f"results.{j}.level",
                f"levels must be strictly increasing (escalation order); got {level} after {previous}",
            )
        if correct > g:
            return f"results.{j}.correct", f"correct ({correct}) exceeds G ({g})"
        if group_size and g != group_size:
            return f"results.{j}.G", f"G is {g} but the broker's group_size is {group_size}"
        if j < len(results) - 1 and correct != 0:
            return (
                f"results.{j}.correct",
                "only an all-wrong group is escalated; a non-final group has correct > 0",
            )
        previous = level
    return None


@dataclass(frozen=True)
class GroupSummary:
    """One outcome reduced to what the sparsity metrics need."""

    start_level: int
    final_level: int
    nohint_correct: int | None  # correct rollouts of the level-0 group, if there was one
    nohint_g: int | None
    difficult: bool  # the level-0 group was all wrong
    zero_advantage: bool  # the final group is all wrong or all right
    attempts: tuple[int, ...]  # levels tried
    rescues: tuple[int, ...]  # levels whose group was not all wrong


def summarize(results: Sequence[tuple[int, int, int]]) -> GroupSummary:
    first_level, first_correct, first_g = results[0]
    final_level, final_correct, final_g = results[-1]
    nohint = first_level == 0
    return GroupSummary(
        start_level=first_level,
        final_level=final_level,
        nohint_correct=first_correct if nohint else None,
        nohint_g=first_g if nohint else None,
        difficult=nohint and first_correct == 0,
        zero_advantage=final_correct in (0, final_g),
        attempts=tuple(level for level, _, _ in results),
        rescues=tuple(level for level, c, _ in results if c > 0),
    )
