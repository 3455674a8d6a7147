"""One optimizer step on one batch: log-probs, the core GHPO loss, backward per micro-batch, step.

Per micro-batch: forward (use_cache off; the LM head sees the completion positions only), completion-token
log-probs in fp32 taken a chunk of positions at a time (logprobs.py; of the policy at each row's sampling
temperature: logits / T, as the samples were drawn), the loss of
`ghpo.trainer.core.loss.policy_loss_terms` (one update per batch, so old log-probs are the current ones,
detached: the PPO ratio is 1 and its gradient is the policy gradient), backward without DeepSpeed's
own 1/GAS scaling (the core loss already divides by the number of micro-batches), the accumulation
boundary set on the last one. Truncated IS (ghpo.tis_cap) weighs rows by min(exp(logp - behaviour), cap)
against the inference engine's log-probs; with run.tis_scope="stale" only rows sampled under an older
policy version are weighted (the others get their own log-probs as behaviour, i.e. weight 1).

Also measured (no gradient): token entropy (run.entropy), and the trainer-vs-inference mismatch as the k3
estimate of KL(behaviour || trainer) over completion tokens. Every figure and flag stays on the device
until the last backward; the step then reads them back once (a GPU stall per read, so not per micro-batch). Guard: NaN/Inf log-probs or a non-finite loss, and a
non-finite gradient norm before the optimizer step (stage 0 checks it here; ZeRO 1-3
skip the step themselves when clipping meets a non-finite norm) -- either way the parameters are still
the last good ones and `NonFiniteError` says where. The log-prob/loss check is collective: a rank that
sees NaN/Inf still runs every micro-batch's backward (the gradient collectives must match), then one all-reduce of
a per-rank flag before the optimizer step makes every rank drop the gradients and raise together (the
gradient-norm checks agree by construction: the norm is of the reduced gradients). Not here: pulling
batches, pushing weights, checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.core.loss import policy_loss_terms
from ghpo.trainer.train.batches import MicroBatch, micro_batches
from ghpo.trainer.train.engine import TrainEngine
from ghpo.trainer.train.logprobs import token_logps
from ghpo.trainer.train.ranks import rank_world


class NonFiniteError(RuntimeError):
    """The loss or the gradients of a step are NaN or infinite; the step was not applied."""


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    entropy: float
    mismatch_kl: float
    tokens: int
    rows: int
    lr: float
    extra: dict[str, float] = field(default_factory=dict)


def completion_logps(
    module: torch.nn.Module, mb: MicroBatch, *, entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(fp32 log-probs of the completion tokens (R, T) with gradient, token entropies (R, T) without, or
    None when `entropy` is off). The model computes logits for the T positions that predict completion
    tokens only (the LM head never sees the prompt); `token_logps` reduces them a chunk at a time."""
    width_t = mb.completion_ids.size(1)
    # position P - 1 + t predicts completion token t: exactly those positions, so that the logits are a
    # tensor of their own (a slice of a longer one would get a zero-filled gradient of the whole in backward)
    keep = torch.arange(mb.prompt_width - 1, mb.prompt_width - 1 + width_t, device=mb.input_ids.device)
    out = module(
        input_ids=mb.input_ids,
        attention_mask=mb.attention_mask,
        position_ids=mb.position_ids,
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits
    if logits.size(1) != width_t:  # a model that ignores logits_to_keep: every position's logits
        logits = logits[:, mb.prompt_width - 1 : mb.prompt_width - 1 + width_t]
    del out  # the logits' storage takes their gradient in backward: no other reference may read it
    return token_logps(logits, mb.completion_ids, mb.temperatures, entropy=entropy)


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), values, 0.0).sum()


def mismatch_k3(logps: torch.Tensor, behaviour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(behaviour || trainer) for tokens sampled by the behaviour policy."""
    log_ratio = torch.where(mask.bool(), logps.detach() - behaviour, 0.0)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(min=0.0)  # >= 0 exactly; rounding aside


# The step's sums, accumulated on the device in one vector (read once, after the last micro-batch).
_SUMS = ("loss", "entropy", "kl", "is_weight_mean", "clip_low_fraction", "clip_high_fraction")
_EXTRA = _SUMS[3:]  # policy_loss metrics, token-weighted over the step's micro-batches


def train_step(
    train: TrainEngine, batch: Batch, policy_version: int, *, tis_scope: str | None = None
) -> StepResult:
    """Train on `batch` and take one optimizer step; `policy_version` is the version the trainer holds."""
    config = train.config
    ghpo = config.ghpo
    scope = tis_scope or config.run.tis_scope
    engine = train.engine
    rank, world = rank_world()
    mbs = micro_batches(
        batch,
        config.deepspeed.micro_batch_size,
        train.pad_token_id,
        rank=rank,
        world=world,
        group_by_length=config.deepspeed.group_by_length,
    )
    device = engine.device
    counts = [mb.completion_mask.sum().to(device) for mb in mbs]  # tensors: nothing is read back here
    total = torch.stack(counts).sum()
    # dapo: the step's tokens over all ranks, divided by the ranks whose gradients DeepSpeed averages
    normaliser = _global_sum(total) / world if world > 1 else total
    longest = max(mb.completion_ids.size(1) for mb in mbs)
    sums = torch.zeros(len(_SUMS), dtype=torch.float64, device=device)
    bad = torch.zeros((len(mbs), 2), dtype=torch.bool, device=device)  # per micro-batch: logps, loss
    seen: set[str] = set()
    for index, mb in enumerate(mbs):
        mb = _to(mb, device)
        engine.set_gradient_accumulation_boundary(index == len(mbs) - 1)
        logps, entropy = completion_logps(engine, mb, entropy=config.run.entropy)
        on = mb.completion_mask.bool()
        bad[index, 0] = ~torch.isfinite(torch.where(on, logps.detach(), 0.0)).all()
        behaviour = mb.behaviour_logps
        if ghpo.tis_cap is not None and scope == "stale":
            stale = (mb.policy_versions < policy_version).view(-1, 1)
            behaviour = torch.where(stale, behaviour, logps.detach())
        # no value is read back here: a non-finite log-prob makes a non-finite loss, and the verdict on
        # both comes once, after the last backward (every rank runs the same gradient collectives)
        loss, metrics = policy_loss_terms(
            logps,
            None,
            mb.advantages,
            mb.completion_mask,
            ghpo,
            behaviour_logps=behaviour,
            hinted=mb.hinted,
            truncated=mb.truncated,
            token_normaliser=normaliser,
            num_micro_batches=len(mbs),
            max_completion_length=longest,
        )
        bad[index, 1] = ~torch.isfinite(loss.detach())
        engine.backward(loss, scale_wrt_gas=False)
        terms = [loss.detach(), _masked_sum(entropy, on) if entropy is not None else loss.new_zeros(())]
        terms.append(_masked_sum(mismatch_k3(logps, mb.behaviour_logps, mb.completion_mask), on))
        terms += [metrics[key] * counts[index] if key in metrics else loss.new_zeros(()) for key in _EXTRA]
        sums += torch.stack(terms).to(sums.dtype)
        seen.update(key for key in _EXTRA if key in metrics)
    norm = _grad_norm_tensor(train)
    ranks = torch.zeros(world, device=device)  # every rank's verdict, one flag each (see _agree_finite)
    ranks[rank] = bad.any().float()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(ranks)
    # the one read of the step: every figure, this rank's flags, the ranks' verdicts, the gradient norm
    parts = [total.double().view(1), sums, bad.flatten().double(), ranks.double(), norm.double().view(-1)]
    total_tokens, *values = torch.cat(parts).tolist()
    total_tokens = int(total_tokens)
    summed, values = dict(zip(_SUMS, values[: len(_SUMS)], strict=True)), values[len(_SUMS) :]
    flagged, values = values[: bad.numel()], values[bad.numel() :]
    verdicts, values = values[:world], values[world:]
    _agree_finite(train, _problem(flagged, summed["loss"], batch.batch_id, train), verdicts, batch.batch_id)
    grad_norm = values[0] if values else None
    if grad_norm is not None and not math.isfinite(grad_norm):  # stage 0: checked before the step
        train.engine.zero_grad()
        raise NonFiniteError(
            f"non-finite gradient norm ({grad_norm}) at step {train.global_steps + 1}; the step was not applied"
        )
    lr = train.lr()
    engine.step()
    if grad_norm is None:
        grad_norm = float(engine.get_global_grad_norm())
    if not math.isfinite(grad_norm):
        raise NonFiniteError(
            f"non-finite gradient norm ({grad_norm}) on batch {batch.batch_id} at step "
            f"{train.global_steps}; the optimizer step was skipped"
        )
    return StepResult(
        loss=summed["loss"],
        grad_norm=grad_norm,
        entropy=summed["entropy"] / max(1, total_tokens) if config.run.entropy else math.nan,
        mismatch_kl=summed["kl"] / max(1, total_tokens),
        tokens=total_tokens,
        rows=sum(mb.rows for mb in mbs),
        lr=lr,
        extra={key: summed[key] / max(1, total_tokens) for key in _EXTRA if key in seen},
    )


def _problem(flagged: list[float], loss: float, batch_id: str, train: TrainEngine) -> str | None:
    """This rank's first non-finite log-prob or loss, in words (None when there is none)."""
    for index in range(len(flagged) // 2):
        where = f"in micro-batch {index} of batch {batch_id} at step {train.global_steps + 1}"
        if flagged[2 * index]:
            return f"non-finite log-probs (the forward produced NaN/Inf) {where}; the step was not applied"
        if flagged[2 * index + 1]:
            return f"non-finite loss ({loss}) {where}; the step was not applied"
    return None


def _agree_finite(train: TrainEngine, problem: str | None, verdicts: list[float], batch_id: str) -> None:
    """All ranks' verdict on the log-probs and losses of this step (`verdicts`: one flag per rank, all-
    reduced): when any rank saw NaN/Inf, every rank drops the gradients and raises, so all of them stop
    together (and checkpoint together) instead of the healthy ones waiting forever in the next collective."""
    rank, world = rank_world()
    bad = [r for r, flag in enumerate(verdicts) if flag > 0]
    if not bad:
        return
    train.engine.zero_grad()
    if problem is None:
        problem = (
            f"non-finite log-probs or loss on rank {', '.join(map(str, bad))} of {world} in batch {batch_id} "
            f"at step {train.global_steps + 1}; the step was not applied"
        )
    elif world > 1:
        problem = f"{problem} (rank {rank} of {world})"
    raise NonFiniteError(problem)


def _grad_norm_tensor(train: TrainEngine) -> torch.Tensor:
    """Stage 0: the global norm of the accumulated gradients, on the device (ZeRO: empty, DeepSpeed
    computes its own in the step)."""
    if train.zero_stage != 0:
        return torch.zeros(0, device=train.engine.device)
    grads = [p.grad for p in train.module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def _global_sum(value: torch.Tensor) -> torch.Tensor:
    """`value` summed over the ranks, left on the device (the loss takes a tensor normaliser)."""
    import torch.distributed as dist

    tensor = value.detach().float().view(1).clone()
    dist.all_reduce(tensor)
    return tensor[0]


def _to(mb: MicroBatch, device: torch.device) -> MicroBatch:
    if device.type == "cpu":
        return mb
    return MicroBatch(
        **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(mb).items()}
    )
