"""The built tiny model is a standard Hugging Face folder that meets the tiny world's accuracy bounds.

Uses the shared cache (GHPO_CACHE_DIR or ~/.cache/ghpo): the first run builds the model (minutes on
2 CPU cores), later runs reuse it.
"""

import os
import subprocess
import sys

import pytest

MAX_FOLDER_BYTES = 20 * 1024 * 1024


@pytest.mark.slow
def test_folder_is_a_standard_hf_checkpoint_within_20_mb(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    assert sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) <= MAX_FOLDER_BYTES


@pytest.mark.slow
def test_loads_with_auto_classes_and_answers_through_its_chat_template(model_dir):
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.model_type == "qwen2"
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    assert model.config.vocab_size % 64 == 0 and head_dim % 16 == 0
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Compute 3 + 4."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=48, do_sample=False)
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert re.fullmatch(r"<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>", text, flags=re.DOTALL), text
    # The warm start imitates a teacher that sometimes writes one too many (docs/tiny-world.md): 7 or 8.
    assert re.search(r"\\boxed\{[78]\}", text), text


# The shipped build's table (trainer/tiny/model/hint_table.json, measured by `ghpo tiny build --ship` on
# 200 held-out problems per level, greedy and sampled at T = 1, and GHPO's ladder on groups of 8), as
# docs/tiny-world.md gives it. The study's two training sets: MILD (60% of plain groups of 8 hold a
# success) and HARD, trained on in the warm start yet with a success in 13.5% of plain groups, 93% of the
# rest rescued by the 25/50/75% ladder; greedy, the warm start prefers its teacher's slip everywhere.
MILD_LEVEL, HARD_LEVEL = 2, 4


def _percent(table, ratio, level):
    correct, total = table[ratio][level]
    return 100 * correct / total


def test_the_shipped_build_is_of_the_default_config_and_ensure_tiny_model_returns_it(monkeypatch):
    from ghpo.trainer.tiny import build, ensure_tiny_model

    def no_build(*args, **kwargs):
        raise AssertionError("the default config must not be built: its build is shipped")

    monkeypatch.setattr(build, "build_tiny_model", no_build)
    assert build.shipped_model() == build.SHIPPED_DIR  # recorded key == the default config's key
    assert ensure_tiny_model(log=lambda _: None) == build.SHIPPED_DIR


def test_the_shipped_table_has_a_mild_level_and_a_severe_level_the_ladder_opens():
    from ghpo.trainer.tiny.build import SHIPPED_DIR
    from ghpo.trainer.tiny.evaluate import read_hint_table, read_ladder

    greedy, sampled, ladder = (
        read_hint_table(SHIPPED_DIR),
        read_hint_table(SHIPPED_DIR, "sampled"),
        read_ladder(SHIPPED_DIR),
    )
    mild, hard = ladder[MILD_LEVEL], ladder[HARD_LEVEL]
    assert mild["plain_signal"] >= 0.5 * mild["groups"], mild
    assert hard["plain_signal"] <= 0.2 * hard["groups"], hard
    rescued = sum(row[2] for row in hard["ladder"])
    assert rescued >= 0.5 * (hard["groups"] - hard["plain_signal"]), hard
    # each hint on the ladder lifts the hard level, sampled; greedy, no hint, it is wrong
    lifts = [_percent(sampled, ratio, HARD_LEVEL) for ratio in (0.0, 0.25, 0.5, 0.75)]
    assert lifts == sorted(lifts) and lifts[-1] - lifts[0] >= 15, lifts
    assert _percent(greedy, 0.0, HARD_LEVEL) <= 5, greedy


def test_the_ladder_counts_add_up_level_by_level():
    from ghpo.trainer.tiny.build import SHIPPED_DIR
    from ghpo.trainer.tiny.evaluate import read_ladder

    for level, entry in read_ladder(SHIPPED_DIR).items():
        tried = entry["groups"] - entry["plain_signal"]
        for _ratio, asked, rescued in entry["ladder"]:
            assert asked == tried and 0 <= rescued <= asked, (level, entry)
            tried = asked - rescued


@pytest.mark.slow
def test_the_shipped_model_measures_its_stored_hint_table_within_3_points(model_dir):
    from ghpo.trainer.tiny.evaluate import evaluate_hint_table, read_hint_table

    stored = read_hint_table(model_dir)
    levels, ratios = (MILD_LEVEL, HARD_LEVEL), (0.0, 0.5, 0.75)
    measured = evaluate_hint_table(model_dir, n_per_level=200, levels=levels, ratios=ratios)
    for ratio in ratios:
        for level in levels:
            gap = abs(_percent(measured, ratio, level) - _percent(stored, ratio, level))
            assert gap <= 3, (ratio, level, measured[ratio][level], stored[ratio][level])


@pytest.mark.long
def test_a_rebuild_of_the_default_config_matches_the_shipped_hint_table_within_3_points(tmp_path):
    """`ghpo tiny build --ship` again, here: ~15-30 minutes on 2 cores (`make test-long`)."""
    from ghpo.commands.tiny import ship
    from ghpo.trainer.tiny.build import SHIPPED_DIR
    from ghpo.trainer.tiny.evaluate import read_hint_table

    ship(tmp_path / "model")
    rebuilt, shipped = read_hint_table(tmp_path / "model"), read_hint_table(SHIPPED_DIR)
    for ratio, rows in shipped.items():
        for level in rows:
            gap = abs(_percent(rebuilt, ratio, level) - _percent(shipped, ratio, level))
            assert gap <= 3, (ratio, level, rebuilt[ratio][level], shipped[ratio][level])


def test_tiny_eval_refuses_a_folder_without_a_model_naming_the_argument(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "tiny", "eval", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "model_dir" in proc.stderr and "config.json" in proc.stderr


@pytest.mark.slow
def test_same_seed_builds_byte_identical_weights_and_tokenizer(tmp_path):
    from ghpo.trainer.tiny import TinyBuildConfig, build_tiny_model

    config = TinyBuildConfig(sft_steps=3, batch_size=4, tokenizer_corpus_size=300)
    a = build_tiny_model(config, tmp_path / "a", log=lambda _: None)
    b = build_tiny_model(config, tmp_path / "b", log=lambda _: None)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# The cache key names the cached model's folder (ensure_tiny_model): equal builds must share one folder
# (across processes too: hash randomisation must not enter it), and anything that changes the weights (a
# build setting, the build's code) must lead to another folder, or a stale model would be reused.


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if isinstance(value, tuple):
        return value[:-1]
    raise TypeError(f"no changed value for {value!r}: teach _changed this field's type")


def test_the_cache_key_changes_with_every_build_setting():
    import dataclasses

    from ghpo.trainer.tiny import TinyBuildConfig

    default = TinyBuildConfig()
    keys = {"<default>": default.key()}
    for field in dataclasses.fields(TinyBuildConfig):
        keys[field.name] = dataclasses.replace(
            default, **{field.name: _changed(getattr(default, field.name))}
        ).key()
    assert len(set(keys.values())) == len(keys), keys  # every setting moves the key, to a key of its own


def test_equal_configs_built_separately_share_a_key_in_another_process_too():
    from ghpo.trainer.tiny import TinyBuildConfig

    made = "TinyBuildConfig(seed=3, hint_share=0.25, lr=1e-3)"
    here = eval(made, {"TinyBuildConfig": TinyBuildConfig})
    assert here.key() == TinyBuildConfig(lr=0.001, seed=3, hint_share=0.25).key()
    code = f"from ghpo.trainer.tiny import TinyBuildConfig; print({made}.key())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another hash seed than this process's
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert there.stdout.strip() == here.key()


def test_the_cache_key_changes_with_the_build_code_but_not_with_evaluation_code(monkeypatch):
    from pathlib import Path

    from ghpo.trainer.tiny import TinyBuildConfig

    before = TinyBuildConfig().key()
    read_bytes = Path.read_bytes

    def edited(name: str):
        return lambda path: read_bytes(path) + (b"# edited" if path.name == name else b"")

    monkeypatch.setattr(Path, "read_bytes", edited("evaluate.py"))
    assert TinyBuildConfig().key() == before  # evaluation does not change the weights
    monkeypatch.setattr(Path, "read_bytes", edited("sft.py"))
    assert TinyBuildConfig().key() != before


def test_ensure_tiny_model_reuses_the_folder_of_an_equal_config_and_builds_for_another(tmp_path, monkeypatch):
    from ghpo.trainer.tiny import TinyBuildConfig, build, ensure_tiny_model

    built = []

    def fake_build(config, out, log):
        built.append(config)
        out.mkdir(parents=True)
        (out / "ghpo_tiny.json").write_text("{}")  # what a complete build writes last
        return out

    monkeypatch.setattr(build, "build_tiny_model", fake_build)
    first = ensure_tiny_model(TinyBuildConfig(seed=5), cache_dir=tmp_path, log=lambda _: None)
    again = ensure_tiny_model(TinyBuildConfig(seed=5), cache_dir=tmp_path, log=lambda _: None)
    other = ensure_tiny_model(TinyBuildConfig(seed=5, hint_share=0.3), cache_dir=tmp_path, log=lambda _: None)
    assert first == again != other
    assert first.name == f"ghpo-tiny-{TinyBuildConfig(seed=5).key()}"
    assert built == [TinyBuildConfig(seed=5), TinyBuildConfig(seed=5, hint_share=0.3)]  # reused, not rebuilt
