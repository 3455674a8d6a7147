"""The tiny model's warm-start examples: what the SFT trains on (no model, no training here)."""

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
