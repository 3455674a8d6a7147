"""The GHPO trainer: a DeepSpeed engine that pulls scored batches over HTTP and pushes weights back.

Modules:
- `config`      the TOML run config, validated (errors name the bad key).
- `engine`      the DeepSpeed engine around a Hugging Face causal LM, AdamW and the LR schedule.
- `batches`     a rollout `Batch` -> padded micro-batch tensors.
- `step`        log-probs, the core GHPO loss, entropy, mismatch KL, the non-finite guard; one optimizer step.
- `weights`     bucketed full-precision gathering and the push to every inference replica.
- `push_http`, `push_nccl`  the sending side of one weight update to one replica (HTTP chunks; NCCL on GPU).
- `checkpoint`  atomic checkpoints (DeepSpeed state, RNG, step, version, rollout cursor, broker snapshot).
- `source`      the BatchSource protocol and its HTTP implementation for the rollout server.
- `loop`        pull -> step -> push -> announce -> ack, resume, stop conditions.
- `outage`      waiting through an upstream outage (a service being restarted), within a budget.
- `board`       what the status API reports, written by the loop.
- `session`     wires a whole run from a config (what `ghpo train` calls).
- `ranks`       this process's rank, barriers, and rank 0's decisions on every rank.
- `metrics`     Prometheus metrics (ghpo_trainer_*); `status` the small HTTP status API.

Nothing is re-exported: importing this package does not import torch or DeepSpeed.
"""
