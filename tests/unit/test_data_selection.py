"""One data spec read the same way everywhere: mapping, level filter, a hold-out chosen by id hash (never
trained on, independent of row order), a training limit; and one prompt template for training and
evaluation alike (system turn, instruction, hint separator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghpo.shared.data.records import PromptRecord
from ghpo.shared.data.selection import (
    DataSpec,
    SelectionError,
    heldout_records,
    split_heldout,
    training_records,
)
from ghpo.shared.data.template import BOXED_INSTRUCTION, PromptTemplate


def write_rows(path: Path, n: int, *, reverse: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "uid": f"q{i}",
            "question": f"What is {i} + {i}?",
            "final": str(2 * i),
            "work": f"{i}+{i}={2 * i}",
            "lvl": 1 + i % 3,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in (reversed(rows) if reverse else rows)))
    return path


MAP = "problem=question,answer=final,solution=work,id=uid,level=lvl"


def test_the_held_out_rows_are_never_trained_on_and_do_not_depend_on_row_order(tmp_path):
    spec = DataSpec(dataset=str(write_rows(tmp_path / "a" / "p.jsonl", 40)), mapping=MAP, heldout=6)
    shuffled = DataSpec(
        dataset=str(write_rows(tmp_path / "b" / "p.jsonl", 40, reverse=True)), mapping=MAP, heldout=6
    )

    train, _report = training_records(spec)
    held = heldout_records(spec)
    assert len(held) == 6 and len(train) == 34
    assert not {r.id for r in train} & {r.id for r in held}
    # the same rows in the opposite order (same file name: ids carry it) hold out the same problems
    assert sorted(r.problem for r in heldout_records(shuffled)) == sorted(r.problem for r in held)


def test_levels_filter_before_the_hold_out_and_limit_keeps_the_first_training_rows(tmp_path):
    spec = DataSpec(
        dataset=str(write_rows(tmp_path / "p.jsonl", 30)), mapping=MAP, levels=(2,), heldout=2, limit=3
    )

    train, _report = training_records(spec)
    held = heldout_records(spec)
    assert {r.level for r in train + held} == {2}
    assert len(train) == 3 and len(held) == 2
    every_level_2 = [f"What is {i} + {i}?" for i in range(30) if 1 + i % 3 == 2]
    assert [r.problem for r in train] == [p for p in every_level_2 if p not in {r.problem for r in held}][:3]


def test_a_level_filter_that_keeps_nothing_and_a_hold_out_of_everything_are_refused(tmp_path):
    path = str(write_rows(tmp_path / "p.jsonl", 6))
    with pytest.raises(SelectionError, match=r"data.levels = \[7\] keeps no row .*its levels: \[1, 2, 3\]"):
        training_records(DataSpec(dataset=path, mapping=MAP, levels=(7,)))
    records = [PromptRecord(f"id{i}", "p", "1") for i in range(3)]
    with pytest.raises(SelectionError, match=r"data\.heldout = 3 leaves no training rows"):
        split_heldout(records, 3)


def test_the_plain_prompt_is_a_prefix_of_the_hinted_one_with_the_instruction_before_the_hint():
    template = PromptTemplate(system="Be brief.", instruction=BOXED_INSTRUCTION, hint_separator="\nHINT: ")

    plain = template.messages("What is 2+3?")
    hinted = template.messages(
        "What is 2+3?", solution="2+3=5, so 5.", level=2, ladder=(0.25, 0.5), cut="char"
    )

    assert plain == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+3?" + BOXED_INSTRUCTION},
    ]
    assert hinted[0] == plain[0]
    assert hinted[1]["content"] == "What is 2+3?" + BOXED_INSTRUCTION + "\nHINT: " + "2+3=5,"
    assert PromptTemplate().messages("1+1") == [{"role": "user", "content": "1+1"}]  # the tiny model's format


def test_the_rollout_server_and_the_evaluation_ask_the_same_prompt(monkeypatch):
    from ghpo.services.rollout.sampler import Sampler, Slot
    from ghpo.services.rollout.settings import Settings
    from ghpo.trainer.eval.problems import to_problem

    monkeypatch.setenv("GHPO_ROLLOUT_PROMPT_SYSTEM", "You are a careful mathematician.")
    monkeypatch.setenv("GHPO_ROLLOUT_PROMPT_INSTRUCTION", BOXED_INSTRUCTION)
    settings = Settings(inference_urls=["http://x"])
    record = PromptRecord("r1", "Compute 6*7.", "42", "6*7=42")
    sampler = Sampler(settings, pool=None, verifier=None, broker=None)  # only its prompts are used

    trained_on = sampler._messages(Slot(g=0, epoch=0, position=0, record=record), level=0)
    evaluated_on = to_problem(record, "heldout", settings.template()).chat()
    assert trained_on == evaluated_on
    assert trained_on[0] == {"role": "system", "content": "You are a careful mathematician."}
    assert trained_on[1]["content"].endswith("within \\boxed{}.")
