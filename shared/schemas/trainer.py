"""Wire schemas of what the trainer exposes over HTTP (`/v1`): its status and checkpoints.

The trainer is a client of the rollout and inference services; its own small API lets an operator or
the local runner see where it is (`GET /v1/status`), list checkpoints (`GET /v1/checkpoints`) and ask
for one now (`POST /v1/checkpoints`). A checkpoint is listed only once complete (written to a temporary
folder, renamed, `latest` marker written last). This module is provisional: the trainer may add
fields, but not loosen bounds.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from ghpo.shared.schemas.common import Id, Message, PolicyVersion, ShortStr, Timestamp, WireModel

MAX_CHECKPOINTS_LISTED = 1000


class TrainerPhase(StrEnum):
    starting = "starting"
    syncing_weights = "syncing_weights"
    waiting_for_batch = "waiting_for_batch"
    training = "training"
    checkpointing = "checkpointing"
    stopped = "stopped"
    failed = "failed"


class CheckpointInfo(WireModel):
    name: ShortStr = Field(description="Folder name, e.g. 'step-000120'.")
    path: ShortStr | None = Field(None, description="Where it lives, if on a shared file system.")
    step: int = Field(ge=0, le=10**9)
    policy_version: PolicyVersion
    created_at: Timestamp
    size_bytes: int = Field(ge=0, le=2**50)


class CheckpointRequest(WireModel):
    tag: ShortStr | None = Field(None, description="Free-form label stored with the checkpoint.")


class CheckpointList(WireModel):
    checkpoints: list[CheckpointInfo] = Field(max_length=MAX_CHECKPOINTS_LISTED, description="Oldest first.")
    latest: ShortStr | None = None


class TrainerStatus(WireModel):
    phase: TrainerPhase
    step: int = Field(ge=0, le=10**9, description="Optimizer steps taken.")
    policy_version: PolicyVersion
    last_batch_id: Id | None = None
    consecutive_empty_batches: int = Field(0, ge=0, le=10**6)
    last_checkpoint: CheckpointInfo | None = None
    message: Message | None = Field(None, description="Why it stopped or failed, when it did.")
