"""The trainer's log-probs: chunked, completion positions only, equal to the full-vocabulary log-softmax of
the code they replaced (fp32, 1e-5), gradients included, at sampling temperatures other than 1."""

from __future__ import annotations

import pytest
import torch

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.train import logprobs
from ghpo.trainer.train.batches import micro_batches
from ghpo.trainer.train.logprobs import token_logps
from ghpo.trainer.train.step import completion_logps
from tests.unit.test_trainer_batches import PAD, completion, group

TOLERANCE = 1e-5


def full_vocabulary_logps(model, mb):
    """The path completion_logps replaced: logits of every position, an fp32 copy, a log-softmax over the
    whole vocabulary, the sampled tokens gathered; entropy from a third full tensor."""
    logits = model(
        input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids
    ).logits
    width = mb.completion_ids.size(1)
    logits = (
        logits[:, mb.prompt_width - 1 : mb.prompt_width - 1 + width].float() / mb.temperatures[:, None, None]
    )
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, mb.completion_ids.unsqueeze(-1)).squeeze(-1), entropy.detach()


def tiny_batch(vocab: int) -> Batch:
    ids = torch.randint(3, vocab, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    return Batch(
        batch_id="lp",
        groups=[
            group(
                "cold", ids[:5], [completion(ids[5:12], 1.0), completion(ids[12:14], -1.0)], temperature=0.6
            ),
            group(
                "hot",
                ids[14:16],
                [completion(ids[16:25], 0.5), completion(ids[25:26], -0.5)],
                temperature=1.3,
            ),
            group("one", ids[26:29], [completion(ids[29:36], 1.0)]),
        ],
        created_at=1.0,
    )


def assert_same_as_full_vocabulary(model, vocab: int):
    (mb,) = micro_batches(tiny_batch(vocab), micro_batch_size=8, pad_token_id=PAD)
    assert sorted(set(mb.temperatures.tolist())) == pytest.approx([0.6, 1.0, 1.3])
    mask = mb.completion_mask
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2)) * mask

    expected, expected_entropy = full_vocabulary_logps(model, mb)
    (expected * weights).sum().backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    logps, entropy = completion_logps(model, mb)
    (logps * weights).sum().backward()
    on = mask.bool()
    assert logps.dtype == torch.float32
    assert (logps - expected)[on].abs().max() <= TOLERANCE
    # entropy (a metric) sums 150k fp32 terms in another order: 1e-5 relative to its size (up to log V)
    assert ((entropy - expected_entropy) / expected_entropy.clamp(min=1.0))[on].abs().max() <= TOLERANCE
    for name, grad in expected_grads.items():
        got = dict(model.named_parameters())[name].grad
        assert (got - grad).abs().max() <= TOLERANCE * max(1.0, float(grad.abs().max())), name


def test_log_probs_on_the_tiny_model_equal_the_full_vocabulary_path_with_gradients():
    from transformers import AutoModelForCausalLM

    from ghpo.trainer.tiny import ensure_tiny_model

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(), dtype=torch.float32)
    assert_same_as_full_vocabulary(model, model.config.vocab_size)


def test_log_probs_of_a_random_model_with_qwens_vocabulary_equal_the_full_vocabulary_path(monkeypatch):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    vocab = 151_936
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).float()
    monkeypatch.setattr(logprobs, "CHUNK_BYTES", 3 * 4 * vocab)  # several chunks per row
    assert_same_as_full_vocabulary(model, vocab)


def test_the_lm_head_computes_logits_for_the_completion_positions_only():
    from transformers import AutoModelForCausalLM

    from ghpo.trainer.tiny import ensure_tiny_model

    model = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(), dtype=torch.float32)
    (mb,) = micro_batches(tiny_batch(model.config.vocab_size), micro_batch_size=8, pad_token_id=PAD)
    seen = []
    model.lm_head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].shape[1]))
    completion_logps(model, mb)
    assert mb.input_ids.size(1) > mb.completion_ids.size(1) + 1  # there is a prompt to skip
    assert seen == [mb.completion_ids.size(1)]


def random_logits(rows=3, width=11, vocab=1000):
    generator = torch.Generator().manual_seed(0)
    leaf = (torch.randn(rows, width, vocab, generator=generator) * 4).requires_grad_()
    tokens = torch.randint(0, vocab, (rows, width), generator=generator)
    return leaf, tokens, torch.tensor([0.5, 1.0, 1.7])


def test_chunked_log_probs_and_their_gradient_equal_a_log_softmax_at_each_rows_temperature(monkeypatch):
    monkeypatch.setattr(logprobs, "CHUNK_BYTES", 4 * 1000 * 4)  # 4 positions per chunk: chunks end mid-row
    leaf, tokens, temperatures = random_logits()
    weights = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(3))
    full = torch.log_softmax(leaf / temperatures[:, None, None], dim=-1)
    expected = full.gather(-1, tokens[..., None]).squeeze(-1)
    (grad,) = torch.autograd.grad((expected * weights).sum(), leaf)

    for logits in (leaf, leaf * 1.0):  # a leaf, and an intermediate whose storage takes the gradient
        logps, entropy = token_logps(logits, tokens, temperatures)
        (got,) = torch.autograd.grad((logps * weights).sum(), leaf)
        assert (logps - expected).abs().max() <= TOLERANCE
        assert (entropy + (full.exp() * full).sum(-1)).abs().max() <= TOLERANCE
        assert (got - grad).abs().max() <= TOLERANCE
    assert torch.equal(leaf, leaf.detach())  # nothing wrote into the leaf


def test_entropy_can_be_left_out():
    leaf, tokens, temperatures = random_logits()
    logps, entropy = token_logps(leaf, tokens, temperatures, entropy=False)
    assert entropy is None and logps.shape == tokens.shape


def test_a_model_that_saved_its_logits_for_its_own_backward_gets_an_error_not_a_wrong_gradient():
    leaf, tokens, temperatures = random_logits()
    logits = torch.sigmoid(leaf)  # sigmoid's backward reads its output: the tensor whose storage is reused
    logps, _ = token_logps(logits, tokens, temperatures)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        logps.sum().backward()
