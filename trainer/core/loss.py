"""The GHPO policy loss: the clipped GRPO surrogate with TRL's normalisation modes and importance weights.

Per completion token t of row i (all tensors (B, T); advantages (B,) or (B, T)):

    r    = exp(logp - old_logp)                             (old_logp = logp.detach() when not given)
    l    = -min(r * A, clamp(r, 1 - eps_low, 1 + eps_high) * A)
    l   *= w                                                (importance weight, detached; 1 when off)
    l   += beta * (exp(ref - logp) - (ref - logp) - 1)      (k3 KL estimate, only when beta > 0;
                                                             times r when kl_ratio_correction)

then reduced over the loss mask (completion mask, minus truncated completions when
`mask_truncated_completions`) by `loss_type`; B = rows of this micro-batch, M = micro-batches per step:
- "bnpo"    sum(l) / max(1, tokens of this micro-batch) / M        (the reference code's mode)
- "grpo"    mean_i( sum_t(l) / max(1, tokens of row i) ) / M
- "dr_grpo" sum(l) / (B * max_completion_length) / M
- "dapo"    sum(l) / max(1, token_normaliser), where the caller passes the number of completion tokens of
            the whole optimizer step (all micro-batches, all ranks) divided by the number of ranks whose
            gradients are averaged; gradients of micro-batches are summed, never divided by M.
These are the conventions of TRL 1.16 GRPOTrainer._compute_loss (the oracle test drives that code).

Importance weight w (detached, per token unless said otherwise), two sources, later one wins per row:
1. truncated IS (`tis_cap`, as TRL's vllm_importance_sampling_correction in *_truncate mode and verl's
   TIS): w = min(exp(old_logp - behaviour_logp), tis_cap) with the inference engine's behaviour log-probs;
   with `tis_level="sequence"` the exponent is the row's summed difference (one weight per row).
2. `condition_on="plain"`, for rows flagged `hinted`: the completion was sampled from the policy given the
   *hinted* prompt but is trained on the *plain* prompt, so logp/old_logp are plain-context log-probs and
   `behaviour_logps` must be the log-probs of the same tokens under the hinted prompt. Then
   w_t = min(exp(old_logp_plain_t - behaviour_logp_hinted_t), plain_is_cap), always per token (a product
   over thousands of tokens would be saturated or vanishing), the per-token truncated weight of the Guide
   method. With `plain_correction="none"` the hinted rows get weight 1 instead: the plain-prompt gradient
   of a completion the hinted policy wrote, uncorrected, as the reference code trains most rescued groups.
   Unhinted rows in this mode are weighted by rule 1 only.

Masked positions never touch the result: their log-prob differences are zeroed before exp, so a padding
value of -inf cannot turn into NaN. A micro-batch with no completion tokens gives loss 0 (with a graph).

`policy_loss` checks its inputs' values and returns metrics as floats (one read of the device);
`policy_loss_terms` is the same loss with no value read back (metrics as 0-dim tensors), for the trainer's
step, which reads all its figures once per optimizer step.

What it deliberately does not do: compute log-probs (the trainer's forward does), entropy bonuses,
sequence-level (GSPO) ratios, or reduce metrics across ranks.
"""

from __future__ import annotations

import torch

from ghpo.shared.algorithm.config import GHPOConfig


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _check_shapes(logps, old_logps, advantages, completion_mask, ref_logps, behaviour_logps) -> None:
    if logps.dim() != 2:
        raise ValueError(f"logps must be (batch, completion_length), got shape {tuple(logps.shape)}")
    for name, tensor in (
        ("old_logps", old_logps),
        ("completion_mask", completion_mask),
        ("ref_logps", ref_logps),
        ("behaviour_logps", behaviour_logps),
    ):
        if tensor is not None and tensor.shape != logps.shape:
            raise ValueError(
                f"{name} must have the shape of logps {tuple(logps.shape)}, got {tuple(tensor.shape)}"
            )
    if advantages.shape not in (logps.shape[:1], logps.shape):
        raise ValueError(
            f"advantages must be (batch,) or (batch, length), got shape {tuple(advantages.shape)}"
        )


def importance_weights(
    old_logps: torch.Tensor,
    behaviour_logps: torch.Tensor | None,
    mask: torch.Tensor,
    config: GHPOConfig,
    hinted: torch.Tensor | None = None,
    *,
    check_values: bool = True,
) -> torch.Tensor | None:
    """Detached (B, T) weights per the module docstring, or None when no weighting applies.

    `check_values=False` reads no value back to the host (no device sync): the weights exist whenever
    the config and `hinted` call for them (1 on unhinted rows), and non-finite log-probs are not refused
    here but come out as non-finite weights, for the caller's own guard.
    """
    plain_rows = None
    if config.condition_on == "plain" and hinted is not None and (not check_values or bool(hinted.any())):
        plain_rows = hinted.bool().view(-1, 1)
    if config.tis_cap is None and plain_rows is None:
        return None
    if behaviour_logps is None:
        raise ValueError(
            "behaviour_logps is required when tis_cap is set or hinted rows train on the plain prompt"
        )
    log_diff = torch.where(mask.bool(), old_logps.detach() - behaviour_logps, 0.0)
    if check_values and not torch.isfinite(log_diff).all():
        raise ValueError("behaviour_logps or old_logps are NaN or infinite on completion tokens")
    weights = torch.ones_like(log_diff)
    if config.tis_cap is not None:
        exponent = (
            log_diff.sum(-1, keepdim=True).expand_as(log_diff) if config.tis_level == "sequence" else log_diff
        )
        weights = torch.exp(exponent).clamp(max=config.tis_cap)
    if plain_rows is not None:
        if config.plain_correction == "none":
            plain_weights = torch.ones_like(log_diff)
        else:
            plain_weights = torch.exp(log_diff).clamp(max=config.plain_is_cap)
        weights = torch.where(plain_rows, plain_weights, weights)
    return weights


def policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    config: GHPOConfig,
    *,
    ref_logps: torch.Tensor | None = None,
    behaviour_logps: torch.Tensor | None = None,
    hinted: torch.Tensor | None = None,
    truncated: torch.Tensor | None = None,
    token_normaliser: float | torch.Tensor | None = None,
    num_micro_batches: int = 1,
    max_completion_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one micro-batch (to be back-propagated as is) and its metrics as floats.

    `hinted` (B,) bool marks rows generated from a hinted prompt; `truncated` (B,) bool marks completions
    cut at the max length (required when config.mask_truncated_completions). Refuses NaN/Inf advantages,
    and NaN/Inf log-probs where importance weights are taken.
    """
    _check_shapes(logps, old_logps, advantages, completion_mask, ref_logps, behaviour_logps)
    if not torch.isfinite(advantages).all():
        raise ValueError("advantages contain NaN or inf")
    plain = config.condition_on == "plain" and hinted is not None
    if plain and not bool(hinted.any()):  # no hinted row: no plain-prompt weights (the terms would give 1s)
        hinted, plain = None, False
    if behaviour_logps is not None and (config.tis_cap is not None or plain):
        old = (logps if old_logps is None else old_logps).detach()
        if not torch.isfinite(torch.where(completion_mask.bool(), old - behaviour_logps, 0.0)).all():
            raise ValueError("behaviour_logps or old_logps are NaN or infinite on completion tokens")
    loss, metrics = policy_loss_terms(
        logps,
        old_logps,
        advantages,
        completion_mask,
        config,
        ref_logps=ref_logps,
        behaviour_logps=behaviour_logps,
        hinted=hinted,
        truncated=truncated,
        token_normaliser=token_normaliser,
        num_micro_batches=num_micro_batches,
        max_completion_length=max_completion_length,
    )
    values = torch.stack(list(metrics.values())).tolist() if metrics else []
    return loss, dict(zip(metrics, values, strict=True))


def policy_loss_terms(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    config: GHPOConfig,
    *,
    ref_logps: torch.Tensor | None = None,
    behaviour_logps: torch.Tensor | None = None,
    hinted: torch.Tensor | None = None,
    truncated: torch.Tensor | None = None,
    token_normaliser: float | torch.Tensor | None = None,
    num_micro_batches: int = 1,
    max_completion_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`policy_loss` without reading any value back to the host: the metrics stay 0-dim tensors on the
    device and nothing is checked that needs the tensors' values (shapes and settings still are). The
    caller vouches for finite advantages and behaviour log-probs (the trainer's come from a validated
    Batch); non-finite log-probs give a non-finite loss, for the caller's guard to find.
    """
    _check_shapes(logps, old_logps, advantages, completion_mask, ref_logps, behaviour_logps)
    for name, flags in (("hinted", hinted), ("truncated", truncated)):
        if flags is not None and flags.shape != logps.shape[:1]:
            raise ValueError(f"{name} must be (batch,) = {tuple(logps.shape[:1])}, got {tuple(flags.shape)}")
    if num_micro_batches < 1:
        raise ValueError(f"num_micro_batches must be >= 1, got {num_micro_batches}")
    if config.beta > 0.0 and ref_logps is None:
        raise ValueError("ref_logps is required when beta > 0")
    mask = completion_mask.to(logps.dtype)
    if config.mask_truncated_completions:
        if truncated is None:
            raise ValueError("truncated is required when mask_truncated_completions is on")
        mask = mask * (~truncated.bool()).to(logps.dtype).view(-1, 1)
    on_token = mask.bool()
    old = logps.detach() if old_logps is None else old_logps
    adv = advantages.view(-1, 1) if advantages.dim() == 1 else advantages
    adv = adv.to(logps.dtype)

    ratio = torch.exp(torch.where(on_token, logps - old, 0.0))
    clipped = ratio.clamp(1.0 - config.eps_low, 1.0 + config.eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    weights = importance_weights(old, behaviour_logps, mask, config, hinted, check_values=False)
    if weights is not None:
        per_token = per_token * weights
    kl = None
    if config.beta > 0.0:
        ref_minus_logp = torch.where(on_token, ref_logps - logps, 0.0)
        kl = torch.exp(ref_minus_logp) - ref_minus_logp - 1.0
        if config.kl_ratio_correction:  # r carries the gradient: the unbiased reverse-KL gradient
            kl = kl * ratio
        per_token = per_token + config.beta * kl

    summed = (per_token * mask).sum()
    if config.loss_type == "bnpo":
        loss = summed / mask.sum().clamp(min=1.0) / num_micro_batches
    elif config.loss_type == "grpo":
        if logps.size(0) == 0:
            raise ValueError("loss_type='grpo' needs at least one row in the micro-batch")
        per_row = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        loss = per_row.mean() / num_micro_batches
    elif config.loss_type == "dr_grpo":
        if max_completion_length is None or max_completion_length < 1:
            raise ValueError("loss_type='dr_grpo' needs max_completion_length >= 1")
        loss = summed / (logps.size(0) * max_completion_length) / num_micro_batches
    elif config.loss_type == "dapo":
        if token_normaliser is None:
            raise ValueError(
                "loss_type='dapo' needs token_normaliser (completion tokens of the optimizer step)"
            )
        normaliser = torch.as_tensor(token_normaliser, dtype=logps.dtype, device=logps.device)
        loss = summed / normaliser.clamp(min=1.0)
    else:
        raise ValueError(f"loss_type must be one of bnpo | grpo | dapo | dr_grpo, got {config.loss_type!r}")

    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "tokens": mask.sum(),
            "ratio_mean": _masked_mean(ratio, mask),
            "clip_low_fraction": _masked_mean(
                ((ratio < 1.0 - config.eps_low) & (adv < 0)).to(mask.dtype), mask
            ),
            "clip_high_fraction": _masked_mean(
                ((ratio > 1.0 + config.eps_high) & (adv > 0)).to(mask.dtype), mask
            ),
        }
        if kl is not None:
            metrics["kl"] = _masked_mean(kl, mask)
        if weights is not None:
            metrics["is_weight_mean"] = _masked_mean(weights, mask)
    return loss, metrics
