"""The broker's pure policy decisions and outcome rules (ghpo.services.broker.policies)."""

from __future__ import annotations

from ghpo.services.broker.policies import Memory, PolicyConfig, outcome_problem, plan, summarize

L = 3


def cfg(name, **kw):
    return PolicyConfig(name=name, n_hint_levels=L, cold_start_steps=kw.pop("cold", 0), **kw)


def seen(start, final, correct, g=8, step=10):
    return Memory(
        last_start=start, last_final=final, last_final_correct=correct, last_final_g=g, last_step=step
    )


def test_new_prompt_starts_at_level_zero_under_every_policy():
    for name in ("ghpo", "ghpo-memory", "ghpo-adaptive", "none"):
        assert plan(cfg(name), Memory(), step=5).start_level == 0


def test_ghpo_always_starts_at_zero_and_may_escalate_to_the_top():
    assert plan(cfg("ghpo"), seen(0, 3, 2), step=11) == (plan(cfg("ghpo"), Memory(), 11))
    assert plan(cfg("ghpo"), seen(0, 3, 2), step=11).max_level == L


def test_none_never_hints():
    p = plan(cfg("none"), seen(0, 2, 3), step=11)
    assert (p.start_level, p.max_level) == (0, 0)


def test_cold_start_plans_no_hints_for_any_policy():
    for name in ("ghpo", "ghpo-memory", "ghpo-adaptive"):
        p = plan(cfg(name, cold=20), seen(0, 2, 3), step=19)
        assert (p.start_level, p.max_level) == (0, 0)
    assert plan(cfg("ghpo-memory", cold=20), seen(0, 2, 3), step=20).start_level == 2


def test_memory_starts_where_the_prompt_was_last_rescued():
    assert plan(cfg("ghpo-memory"), seen(0, 2, 3), step=11).start_level == 2


def test_memory_starts_at_the_top_when_nothing_rescued_it():
    assert plan(cfg("ghpo-memory"), seen(1, 3, 0), step=11).start_level == 3


def test_memory_steps_down_after_an_accurate_unescalated_group():
    assert plan(cfg("ghpo-memory"), seen(2, 2, 6), step=11).start_level == 1  # 6/8 >= 0.75
    assert plan(cfg("ghpo-memory"), seen(2, 2, 8), step=11).start_level == 1  # all correct
    assert plan(cfg("ghpo-memory"), seen(0, 0, 8), step=11).start_level == 0  # never below 0


def test_memory_stays_when_the_starting_level_is_still_hard():
    assert plan(cfg("ghpo-memory"), seen(2, 2, 5), step=11).start_level == 2


def test_stale_memory_starts_one_level_lower():
    c = cfg("ghpo-memory", stale_after_steps=50)
    assert plan(c, seen(0, 2, 3, step=10), step=61).start_level == 1
    assert plan(c, seen(0, 2, 3, step=10), step=60).start_level == 2


def test_outcome_rules_name_the_offending_field():
    assert outcome_problem([(0, 0, 8), (1, 3, 8)], L, 8) is None
    assert outcome_problem([(0, 9, 8)], L, 8)[0] == "results.0.correct"
    assert outcome_problem([(4, 1, 8)], L, 8)[0] == "results.0.level"
    assert outcome_problem([(1, 0, 8), (0, 1, 8)], L, 8)[0] == "results.1.level"
    assert outcome_problem([(0, 2, 8), (1, 3, 8)], L, 8)[0] == "results.0.correct"  # escalated a solved group
    assert outcome_problem([(0, 2, 4)], L, 8)[0] == "results.0.G"
    assert outcome_problem([(0, 2, 4)], L, 0) is None  # group_size 0 accepts any G


def test_summary_of_an_escalated_outcome():
    s = summarize([(0, 0, 8), (1, 0, 8), (2, 8, 8)])
    assert (s.start_level, s.final_level, s.difficult, s.zero_advantage) == (0, 2, True, True)
    assert s.attempts == (0, 1, 2) and s.rescues == (2,)
    assert (s.nohint_correct, s.nohint_g) == (0, 8)
    assert summarize([(1, 3, 8)]).nohint_g is None


def test_adaptive_steps_down_from_an_escalated_level_whose_group_was_above_target():
    # escalated 0 -> 2 and the 2 group was 6/8 right: 2 gives more help than the 50% aimed at
    assert plan(cfg("ghpo-adaptive"), seen(0, 2, 6), step=11).start_level == 1
    assert plan(cfg("ghpo-memory"), seen(0, 2, 6), step=11).start_level == 2  # memory keeps the level


def test_adaptive_keeps_a_level_whose_group_was_at_or_below_target():
    assert plan(cfg("ghpo-adaptive"), seen(0, 2, 4), step=11).start_level == 2  # 4/8 is the target
    assert plan(cfg("ghpo-adaptive"), seen(2, 2, 1), step=11).start_level == 2


def test_adaptive_starts_at_the_top_tried_when_nothing_rescued_it():
    assert plan(cfg("ghpo-adaptive"), seen(0, 3, 0), step=11).start_level == 3


def test_adaptive_target_is_configurable():
    assert plan(cfg("ghpo-adaptive", target_accuracy=0.8), seen(0, 2, 6), step=11).start_level == 2
    assert plan(cfg("ghpo-adaptive", target_accuracy=0.2), seen(2, 2, 2), step=11).start_level == 1


def test_adaptive_never_starts_below_level_zero_and_may_escalate_to_the_top():
    p = plan(cfg("ghpo-adaptive"), seen(0, 0, 8), step=11)
    assert (p.start_level, p.max_level) == (0, L)
