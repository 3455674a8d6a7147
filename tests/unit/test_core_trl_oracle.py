"""External oracle: our policy loss and its gradient equal TRL's GRPOTrainer on the same inputs.

How TRL is driven: a real `trl.GRPOTrainer` is constructed around a tiny float64 Llama built here (no
download), then its own `_compute_loss(model, inputs)` runs on a hand-made micro-batch (prompt ids, left
padding, completion ids, completion mask, advantages, old log-probs, num_items_in_batch). TRL computes
the log-probs itself through its fused LM head, so the comparison covers log-prob extraction, ratio,
clipping, KL, importance weights and normalisation. Our side computes log-probs with a plain forward of
the same model and calls `ghpo.trainer.core.loss.policy_loss`. Loss values and gradients with respect to
every model parameter must agree to 1e-6.

Settings TRL reads from its config that a case changes (loss_type, epsilon_low/high, beta,
use_vllm + vllm_importance_sampling_correction) are set on the constructed trainer as attributes,
since `_compute_loss` reads them from there. For the truncated-IS case, TRL computes the IS ratio
inside generation (`_generate_and_score_completions`), which needs a generation engine; the test builds
that ratio the way TRL's token_truncate mode does and checks how `_compute_loss` applies it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

pytestmark = pytest.mark.slow  # importing TRL and building its trainer take ~10 s

from ghpo.shared.algorithm.advantages import group_advantages  # noqa: E402
from ghpo.shared.algorithm.config import GHPOConfig  # noqa: E402
from ghpo.trainer.core.loss import policy_loss  # noqa: E402

VOCAB = 32
GRAD_ACCUM = 2
MAX_COMPLETION = 6


def build_trl_trainer(output_dir: str):
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="t1", eos_token="t2", unk_token="t0"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).double()
    args = trl.GRPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=GRAD_ACCUM,
        num_generations=4,
        max_completion_length=MAX_COMPLETION,
        loss_type="bnpo",
        beta=0.0,
        report_to=[],
        use_cpu=True,
        bf16=False,  # no autocast: the comparison is in float64
        save_strategy="no",
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["t3 t4"] * 4}),
        processing_class=tokenizer,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = GRAD_ACCUM  # set by Trainer's loop during training
    assert trainer.args.steps_per_generation == GRAD_ACCUM
    return trainer


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    return build_trl_trainer(str(tmp_path_factory.mktemp("trl")))


def _batch(seed: int):
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(3, VOCAB, (4, 3), generator=gen)
    prompt_mask = torch.ones(4, 3, dtype=torch.long)
    prompt_mask[1, 0] = 0  # left padding, as TRL pads prompts
    prompt_ids[1, 0] = 1
    completion_ids = torch.randint(3, VOCAB, (4, MAX_COMPLETION), generator=gen)
    lengths = torch.tensor([6, 4, 0, 2])  # row 2 is an empty completion
    completion_mask = (torch.arange(MAX_COMPLETION).unsqueeze(0) < lengths.unsqueeze(1)).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, 1)
    advantages = torch.tensor(
        group_advantages([1.0, 0.0, 0.5, 1.5], eps=1e-4, scale=True), dtype=torch.float64
    )
    noise = 0.4 * torch.randn(4, MAX_COMPLETION, generator=gen, dtype=torch.float64)
    return prompt_ids, prompt_mask, completion_ids, completion_mask, advantages, noise


def _our_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return logps[:, -completion_ids.size(1) :]


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


CASES = {
    "reference_bnpo": dict(loss_type="bnpo"),
    "dapo_asymmetric_clip": dict(loss_type="dapo", eps_low=0.2, eps_high=0.28),
    "grpo_sequence_mean": dict(loss_type="grpo"),
    "dr_grpo": dict(loss_type="dr_grpo"),
    "bnpo_with_k3_kl": dict(loss_type="bnpo", beta=0.04),
    "bnpo_with_ratio_corrected_kl": dict(loss_type="bnpo", beta=0.04, kl_ratio_correction=True),
    "dapo_with_truncated_is": dict(loss_type="dapo", tis_cap=1.3),
    "bnpo_masking_truncated": dict(loss_type="bnpo", mask_truncated_completions=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradient_equal_trl_grpo_trainer(trl_trainer, case):
    settings = CASES[case]
    config = GHPOConfig(**settings)
    model = trl_trainer.model
    prompt_ids, prompt_mask, completion_ids, completion_mask, advantages, noise = _batch(seed=0)
    truncated = torch.tensor([True, False, False, False])  # row 0 reached MAX_COMPLETION

    with torch.no_grad():
        current = _our_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    old_logps = current + noise  # far enough from the current policy that both clip sides trigger
    ref_logps = current - noise.flip(0)
    behaviour_logps = old_logps + 0.5 * noise.flip(1)

    # TRL side: its own _compute_loss on the constructed trainer.
    trl_trainer.loss_type = config.loss_type
    trl_trainer.epsilon_low, trl_trainer.epsilon_high = config.eps_low, config.eps_high
    trl_trainer.beta = config.beta
    trl_trainer.args.use_bias_correction_kl = config.kl_ratio_correction
    trl_trainer.use_vllm = trl_trainer.vllm_importance_sampling_correction = config.tis_cap is not None
    trl_mask = completion_mask.clone()
    if config.mask_truncated_completions:  # TRL zeroes a truncated completion's mask at generation time
        trl_mask[truncated] = 0
    # Completion tokens of the whole accumulation window: the other micro-batch had 7, so the DAPO global
    # token mean differs from bnpo's per-micro-batch mean.
    num_items = trl_mask.sum() + 7
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": trl_mask,
        "advantages": advantages,
        "old_per_token_logps": old_logps,
        "ref_per_token_logps": ref_logps,
        "num_items_in_batch": num_items,
    }
    if config.tis_cap is not None:  # TRL's token_truncate ratio, built as its generation step would
        diff = torch.nan_to_num((old_logps - behaviour_logps) * trl_mask, nan=0.0)
        inputs["importance_sampling_ratio"] = torch.clamp(torch.exp(diff), max=config.tis_cap)
    model.zero_grad()
    trl_loss = trl_trainer._compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = _grads(model)

    # Our side.
    model.zero_grad()
    logps = _our_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask)
    our_loss, metrics = policy_loss(
        logps,
        old_logps,
        advantages,
        completion_mask,
        config,
        ref_logps=ref_logps,
        behaviour_logps=behaviour_logps,
        truncated=truncated,
        token_normaliser=num_items,
        num_micro_batches=GRAD_ACCUM,
        max_completion_length=MAX_COMPLETION,
    )
    our_loss.backward()
    our_grads = _grads(model)

    torch.testing.assert_close(our_loss, trl_loss, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(our_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in our_grads), "degenerate case: no gradient at all"
    assert metrics["clip_low_fraction"] > 0 or metrics["clip_high_fraction"] > 0


def test_group_std_is_trl_unbiased_nanstd():
    from trl.trainer.utils import nanstd

    # float32 as TRL's rewards are (its Bessel factor count / (count - 1) is float32 whatever the input).
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.5, 0.5, 0.5, 0.0, 1.0])
    grouped = rewards.view(2, 4)
    expected = (grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1).unsqueeze(1) + 1e-4)
    ours = torch.tensor(
        [a for group in grouped.tolist() for a in group_advantages(group, eps=1e-4, scale=True)]
    )
    torch.testing.assert_close(ours, expected.reshape(-1), rtol=1e-6, atol=1e-6)
    biased = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, correction=0, keepdim=True) + 1e-4)
    assert not torch.allclose(ours, biased.reshape(-1), atol=1e-3)
