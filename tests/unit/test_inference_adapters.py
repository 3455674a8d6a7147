"""LoRA adapter updates at the inference service: which announced adapters are refused, and the merge.

`merged_weights` reads a real safetensors base folder and a staged adapter folder, as the vLLM worker
does at commit; the merge is checked against PEFT's own merge of the same adapter.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ghpo.services.inference.adapters import check_adapter_specs, merged_weights
from ghpo.shared.errors import Unprocessable
from ghpo.shared.schemas.inference import TensorSpec

EXPECTED = {"layers.0.q.weight": [6, 4], "layers.0.norm.weight": [4], "embed.weight": [10, 4]}


def spec(name: str, shape: list[int], dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def test_an_adapter_pair_matching_a_served_matrix_is_accepted():
    specs = check_adapter_specs(
        [spec("layers.0.q.lora_A.weight", [2, 4]), spec("layers.0.q.lora_B.weight", [6, 2])], EXPECTED
    )
    assert set(specs) == {"layers.0.q.lora_A.weight", "layers.0.q.lora_B.weight"}


@pytest.mark.parametrize(
    ("tensors", "field", "words"),
    [
        ([spec("layers.0.q.weight", [6, 4])], "tensors.0.name", "lora_A"),
        (
            [spec("layers.9.q.lora_A.weight", [2, 4]), spec("layers.9.q.lora_B.weight", [6, 2])],
            "tensors.0.name",
            "no matrix",
        ),
        ([spec("layers.0.norm.lora_A.weight", [2, 4])], "tensors.0.name", "no matrix"),
        (
            [spec("layers.0.q.lora_A.weight", [2, 5]), spec("layers.0.q.lora_B.weight", [6, 2])],
            "tensors.0.shape",
            "[rank, 4]",
        ),
        (
            [spec("layers.0.q.lora_A.weight", [2, 4]), spec("layers.0.q.lora_B.weight", [6, 3])],
            "tensors.1.shape",
            "rank 3",
        ),
        ([spec("layers.0.q.lora_A.weight", [2, 4])], "tensors", "without"),
        (
            [spec("layers.0.q.lora_A.weight", [2, 4], "int8"), spec("layers.0.q.lora_B.weight", [6, 2])],
            "tensors.0.dtype",
            "dtype",
        ),
    ],
)
def test_a_malformed_adapter_is_refused_naming_the_field(tensors, field, words):
    with pytest.raises(Unprocessable) as err:
        check_adapter_specs(tensors, EXPECTED)
    assert err.value.field == field and words in str(err.value)


def test_each_adapter_version_is_merged_into_the_pristine_base_as_peft_merges_it(tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = torch.nn.Sequential()
    model.add_module("q", torch.nn.Linear(4, 6, bias=False))
    model.add_module("k", torch.nn.Linear(4, 6, bias=False))
    base = tmp_path / "base"
    base.mkdir()
    save_file(
        {"q.weight": model.q.weight.detach().clone(), "k.weight": model.k.weight.detach().clone()},
        base / "model.safetensors",
    )
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=6, target_modules=["q"]))
    for p in peft_model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p)
    adapter = {
        "q.lora_A.weight": peft_model.base_model.model.q.lora_A["default"].weight.detach(),
        "q.lora_B.weight": peft_model.base_model.model.q.lora_B["default"].weight.detach(),
    }
    staged = tmp_path / "u2"
    staged.mkdir()
    save_file(adapter, staged / "chunk-000000.safetensors")

    base_q = model.q.base_layer.weight.detach().clone() if hasattr(model.q, "base_layer") else None
    merged = dict(merged_weights(base, staged, scaling=3.0))
    peft_merged = peft_model.merge_and_unload()

    assert list(merged) == ["k.weight", "q.weight"]  # every base tensor, in the file's order
    assert torch.allclose(merged["q.weight"], peft_merged.q.weight, atol=1e-6)
    assert not torch.allclose(merged["q.weight"], base_q)
    assert torch.equal(merged["k.weight"], peft_merged.k.weight)  # no adapter: the base, untouched
