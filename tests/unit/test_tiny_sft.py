"""The tiny model's warm-start examples: what the SFT trains on (no model, no training here)."""

import itertools
import random

from ghpo.shared.tasks import arith


def _tokenizer():
    from transformers import AutoTokenizer

    from ghpo.trainer.tiny.build import SHIPPED_DIR

    return AutoTokenizer.from_pretrained(SHIPPED_DIR)


def test_encoding_a_user_turn_gives_the_ids_the_chat_template_gives():
    from ghpo.trainer.tiny import sft

    tokenizer = _tokenizer()
    rng = random.Random(0)
    mix = [(arith.LEVELS[3], 1.0)]
    for _ in range(50):
        messages, target = sft.sample_example(rng, mix, hint_share=0.5)
        ids, labels = sft.encode(tokenizer, messages, target)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        prompt_len = len(prompt_ids)
        assert ids == prompt_ids + target_ids + [tokenizer.eos_token_id]
        assert labels[:prompt_len] == [-100] * prompt_len and labels[prompt_len:] == ids[prompt_len:]


def test_examples_come_from_the_train_split_in_the_shapes_and_weights_of_the_mix():
    from ghpo.trainer.tiny import sft

    short = arith.LevelSpec(n_ops=1, max_operand=9, ops="+", max_factor=1)
    long = arith.LevelSpec(n_ops=4, max_operand=20, ops="+-", max_factor=1)
    rng = random.Random(1)
    counts = {1: 0, 4: 0}
    hinted = 0
    for _ in range(2000):
        messages, target = sft.sample_example(rng, [(short, 0.25), (long, 0.75)], hint_share=0.7)
        problem = messages[0]["content"].split("\n")[0]
        assert arith.split_of(problem) == "train"
        counts[problem.count(" + ") + problem.count(" - ")] += 1
        hinted += "beginning part of the answer" in messages[0]["content"]
        assert target.startswith("<think>\n") and target.endswith("\n</answer>")
    assert 0.22 < counts[1] / 2000 < 0.28 and 0.66 < hinted / 2000 < 0.74, (counts, hinted)


def _lines(target: str) -> list[str]:
    return target.split("<think>\n", 1)[1].split("\n</think>", 1)[0].split("\n")


def _chain_value(line: str) -> int:
    """The value of a `= a + b - c` line (or the expression line itself)."""
    numbers, ops = [], []
    for token in line.removeprefix("= ").split(" "):
        (ops if token in "+-" else numbers).append(token)
    value = int(numbers[0])
    for op, n in zip(ops, numbers[1:], strict=True):
        value = value + int(n) if op == "+" else value - int(n)
    return value


def test_a_noisy_teacher_slips_one_up_at_the_rate_asked_and_carries_on_from_its_slip():
    from ghpo.trainer.tiny import sft

    rng = random.Random(2)
    steps = slips = 0
    for _ in range(400):
        _, target = sft.sample_example(rng, [(arith.LEVELS[4], 1.0)], hint_share=0.0, slip=0.4)
        lines = _lines(target)
        for before, after in itertools.pairwise(lines):
            step = _chain_value(after) - _chain_value(before)
            assert step in (0, 1), (before, after)  # right, or one too high; never anything else
            steps, slips = steps + 1, slips + step
        boxed = target.split("\\boxed{")[1].split("}")[0]
        assert int(boxed) == _chain_value(lines[-1])  # the answer follows the (slipped) chain
    assert 0.36 < slips / steps < 0.44, slips / steps


def test_a_noisy_teacher_never_slips_on_lines_the_hint_shows():
    from ghpo.trainer.tiny import sft

    rng = random.Random(3)
    slipped = 0
    for _ in range(300):
        messages, target = sft.sample_example(rng, [(arith.LEVELS[4], 1.0)], hint_share=1.0, slip=0.9)
        hint = messages[0]["content"].split("solving the problem:\n", 1)[1]
        lines, clean = _lines(target), arith.steps(_problem_of(messages[0]["content"]))
        start = 0  # where a line starts in the worked solution the hint was cut from
        for line, good in zip(lines, clean, strict=True):
            if start < len(hint):  # the hint shows this line, wholly or in part: the target copies it
                assert line == good, (hint, line, good)
            start += len(good) + 1
        slipped += lines != clean
    assert slipped > 100  # and after the hint, the teacher still slips


def _problem_of(content: str) -> arith.Problem:
    expression = content.split("\n")[0].removeprefix("Compute ").removesuffix(".")
    tokens = expression.split(" ")
    numbers = tuple(int(t) for t in tokens[0::2])
    return arith.Problem(numbers=numbers, ops=tuple(tokens[1::2]), level=4)


def test_a_clean_teacher_writes_the_worked_solution():
    from ghpo.trainer.tiny import sft

    rng = random.Random(4)
    for _ in range(100):
        messages, target = sft.sample_example(rng, [(arith.LEVELS[4], 1.0)], hint_share=0.5, slip=0.0)
        problem = _problem_of(messages[0]["content"])
        assert _lines(target) == arith.steps(problem)
        assert f"\\boxed{{{arith.evaluate(problem)}}}" in target
