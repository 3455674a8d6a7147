"""One optimizer step on one batch: log-probs, the core GHPO loss, backward per micro-batch, step.

Per micro-batch: forward (use_cache off), completion-token log-probs in fp32 (of the policy at each
row's sampling temperature: logits / T, as the samples were drawn), the loss of
`ghpo.trainer.core.loss.policy_loss` (one update per batch, so old log-probs are the current ones,
detached: the PPO ratio is 1 and its gradient is the policy gradient), backward without DeepSpeed's
own 1/GAS scaling (the core loss already divides by the number of micro-batches), the accumulation
boundary set on the last one. Truncated IS (ghpo.tis_cap) weighs rows by min(exp(logp - behaviour), cap)
against the inference engine's log-probs; with run.tis_scope="stale" only rows sampled under an older
policy version are weighted (the others get their own log-probs as behaviour, i.e. weight 1).

Also measured (no gradient): token entropy, and the trainer-vs-inference mismatch as the k3 estimate of
KL(behaviour || trainer) over completion tokens. Guard: NaN/Inf log-probs or a non-finite loss, and a
non-finite gradient norm before the optimizer step (stage 0 checks it here; ZeRO 1-3
skip the step themselves when clipping meets a non-finite norm) -- either way the parameters are still
the last good ones and `NonFiniteError` says where. The log-prob/loss check is collective: a rank that
sees NaN/Inf still runs a backward per micro-batch (the gradient collectives must match), then one all-reduce of
a per-rank flag before the optimizer step makes every rank drop the gradients and raise together (the
gradient-norm checks agree by construction: the norm is of the reduced gradients). Not here: pulling
batches, pushing weights, checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.core.loss import policy_loss
from ghpo.trainer.train.batches import MicroBatch, micro_batches
from ghpo.trainer.train.engine import TrainEngine
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


def completion_logps(module: torch.nn.Module, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs of the completion tokens (R, T) with gradient, token entropies (R, T) without)."""
    out = module(
        input_ids=mb.input_ids,
        attention_mask=mb.attention_mask,
        position_ids=mb.position_ids,
        use_cache=False,
    )
    width_t = mb.completion_ids.size(1)
    logits = out.logits[:, mb.prompt_width - 1 : mb.prompt_width - 1 + width_t].float()
    if bool((mb.temperatures != 1.0).any()):  # the policy that sampled them: softmax(logits / T)
        logits = logits / mb.temperatures[:, None, None]
    log_probs = torch.log_softmax(logits, dim=-1)
    logps = log_probs.gather(-1, mb.completion_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logps, entropy


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(torch.where(mask.bool(), values, 0.0).sum())


def mismatch_k3(logps: torch.Tensor, behaviour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(behaviour || trainer) for tokens sampled by the behaviour policy."""
    log_ratio = torch.where(mask.bool(), logps.detach() - behaviour, 0.0)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(min=0.0)  # >= 0 exactly; rounding aside


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
    total_tokens = sum(mb.tokens for mb in mbs)
    # dapo: the step's tokens over all ranks, divided by the ranks whose gradients DeepSpeed averages
    normaliser = _global_sum(total_tokens, device) / world if world > 1 else total_tokens
    longest = max(mb.completion_ids.size(1) for mb in mbs)
    sums = {"loss": 0.0, "entropy": 0.0, "kl": 0.0}
    extra: dict[str, float] = {}
    problem: str | None = None  # this rank's first non-finite log-prob or loss
    for index, mb in enumerate(mbs):
        mb = _to(mb, device)
        engine.set_gradient_accumulation_boundary(index == len(mbs) - 1)
        logps, entropy = completion_logps(engine, mb)
        finite = torch.isfinite(torch.where(mb.completion_mask.bool(), logps.detach(), 0.0)).all()
        if problem is None and not bool(finite):
            problem = (
                f"non-finite log-probs (the forward produced NaN/Inf) in micro-batch {index} of batch "
                f"{batch.batch_id} at step {train.global_steps + 1}; the step was not applied"
            )
        if problem is not None:
            # the loss is meaningless now, but the other ranks' gradient collectives still need this
            # rank's: a backward through the same graph keeps them in step (the gradients are dropped)
            engine.backward(logps.sum() * 0.0, scale_wrt_gas=False)
            continue
        behaviour = mb.behaviour_logps
        if ghpo.tis_cap is not None and scope == "stale":
            stale = (mb.policy_versions < policy_version).view(-1, 1)
            behaviour = torch.where(stale, behaviour, logps.detach())
        loss, metrics = policy_loss(
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
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            problem = (
                f"non-finite loss ({loss_value}) in micro-batch {index} of batch {batch.batch_id} at step "
                f"{train.global_steps + 1}; the step was not applied"
            )
        # even after a problem: every rank must run the same gradient collectives (the verdict is below)
        engine.backward(loss, scale_wrt_gas=False)
        sums["loss"] += loss_value
        sums["entropy"] += _masked_sum(entropy, mb.completion_mask)
        sums["kl"] += _masked_sum(
            mismatch_k3(logps, mb.behaviour_logps, mb.completion_mask), mb.completion_mask
        )
        for key in ("is_weight_mean", "clip_low_fraction", "clip_high_fraction"):
            if key in metrics:
                extra[key] = extra.get(key, 0.0) + metrics[key] * mb.tokens / max(1, total_tokens)
    _agree_finite(train, problem, batch.batch_id)
    grad_norm = _grad_norm_before_step(train)
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
        loss=sums["loss"],
        grad_norm=grad_norm,
        entropy=sums["entropy"] / max(1, total_tokens),
        mismatch_kl=sums["kl"] / max(1, total_tokens),
        tokens=total_tokens,
        rows=sum(mb.rows for mb in mbs),
        lr=lr,
        extra=extra,
    )


def _agree_finite(train: TrainEngine, problem: str | None, batch_id: str) -> None:
    """All ranks' verdict on the log-probs and losses of this step (one all-reduce of a flag per rank):
    when any rank saw NaN/Inf, every rank drops the gradients and raises, so all of them stop together
    (and checkpoint together) instead of the healthy ones waiting forever in the next collective."""
    rank, world = rank_world()
    if world > 1:
        import torch.distributed as dist

        flags = torch.zeros(world, device=train.engine.device)
        flags[rank] = float(problem is not None)
        dist.all_reduce(flags)
        bad = [r for r in range(world) if flags[r].item() > 0]
    else:
        bad = [0] if problem is not None else []
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


def _grad_norm_before_step(train: TrainEngine) -> float | None:
    """Stage 0: the global norm of the accumulated gradients, raising if non-finite (ZeRO: None)."""
    if train.zero_stage != 0:
        return None
    grads = [p.grad for p in train.module.parameters() if p.grad is not None]
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))
    if not math.isfinite(norm):
        train.engine.zero_grad()
        raise NonFiniteError(
            f"non-finite gradient norm ({norm}) at step {train.global_steps + 1}; the step was not applied"
        )
    return norm


def _global_sum(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def _to(mb: MicroBatch, device: torch.device) -> MicroBatch:
    if device.type == "cpu":
        return mb
    return MicroBatch(
        **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(mb).items()}
    )
