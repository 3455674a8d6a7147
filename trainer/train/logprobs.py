"""Log-probs of sampled tokens from the completion positions' logits, without a full-vocabulary copy.

`token_logps(logits, tokens, temperatures)` is `log_softmax(logits.float() / T).gather(tokens)` computed
a chunk of positions at a time: per chunk, the logits are upcast to fp32, divided by the row's sampling
temperature, and reduced to a logsumexp (fp32 accumulation); the result is the picked logit minus it.
Only the chunk's fp32 copy ever exists, so the extra memory is bounded by `CHUNK_BYTES`, not by
rows x tokens x vocabulary. The backward is written out (d logp / d x = onehot - softmax(x), over T) and
recomputes each chunk's softmax from the saved logsumexp. When the logits tensor is an intermediate
result (it has a grad_fn: the LM head's output), the gradient is written into its own storage, chunk by
chunk, instead of a second tensor of its size: the logits are not needed once their gradient is known.
Should another autograd node have saved that same tensor (a model that applies tanh soft-capping after
its head, say), autograd's version counter makes that node's backward raise rather than use overwritten
values. A leaf tensor gets a fresh gradient tensor.

Entropy (a metric) is computed in the same pass under no_grad when asked: H = -sum(p log p).

What it deliberately does not do: compute the LM head (the model does, for the completion positions
only: `logits_to_keep`), fuse the head's matmul into the chunks, or support double backward.
"""

from __future__ import annotations

import torch

# fp32 bytes of one chunk of logits (a few such temporaries exist at a time).
CHUNK_BYTES = 64 * 1024 * 1024


def _chunks(rows: int, width: int, vocab: int):
    """(row, start, stop) spans of at most CHUNK_BYTES of fp32 logits; a span never crosses a row, so each
    one is a contiguous block even when the logits are a slice of a longer sequence."""
    step = max(1, CHUNK_BYTES // (4 * max(1, vocab)))
    for row in range(rows):
        for start in range(0, width, step):
            yield row, start, min(start + step, width)


class _TokenLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, tokens, temperatures, want_entropy):
        rows, width, vocab = logits.shape
        logps = torch.empty((rows, width), dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(logps)
        entropy = torch.empty_like(logps) if want_entropy else None
        for row, a, b in _chunks(rows, width, vocab):
            x = logits[row, a:b].float() / temperatures[row]
            chunk_lse = torch.logsumexp(x, dim=-1)
            lse[row, a:b] = chunk_lse
            logps[row, a:b] = x.gather(-1, tokens[row, a:b, None]).squeeze(-1) - chunk_lse
            if entropy is not None:  # -sum(p * log p), on log p = x - lse (x is this chunk's own copy)
                log_p = x.sub_(chunk_lse[:, None])
                entropy[row, a:b] = -torch.exp(log_p).mul_(log_p).sum(-1)
        ctx.save_for_backward(logits, tokens, temperatures, lse)
        ctx.reuse = logits.grad_fn is not None  # an intermediate: its storage can take the gradient
        ctx.mark_non_differentiable(*([entropy] if entropy is not None else []))
        return logps, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logps, _grad_entropy):
        logits, tokens, temperatures, lse = ctx.saved_tensors
        rows, width, vocab = logits.shape
        grad = logits if ctx.reuse else torch.empty_like(logits)
        for row, a, b in _chunks(rows, width, vocab):
            t = temperatures[row]
            g = grad_logps[row, a:b].float()
            # d logp / d x = onehot - softmax(x), x = logits / t
            probs = (logits[row, a:b].float() / t).sub_(lse[row, a:b, None]).exp_()
            chunk = probs.mul_(-g[:, None])
            chunk.scatter_add_(-1, tokens[row, a:b, None], g[:, None])
            grad[row, a:b] = chunk.div_(t)
        return grad, None, None, None


def token_logps(
    logits: torch.Tensor, tokens: torch.Tensor, temperatures: torch.Tensor, *, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(fp32 log-probs (R, T) of `tokens` under softmax(logits / T_row), with gradient; fp32 token entropies
    (R, T) without gradient, or None when `entropy` is off). `logits` (R, T, V) in any float dtype."""
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits (R, T, V) and tokens (R, T) expected, got {tuple(logits.shape)}, {tuple(tokens.shape)}"
        )
    temperatures = temperatures.to(device=logits.device, dtype=torch.float32)
    return _TokenLogps.apply(logits, tokens, temperatures, entropy)
