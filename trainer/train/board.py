"""What the trainer's status API reports (`StatusBoard`): phase, step, version, the last batch and
checkpoint, consecutive batches with nothing trainable, and a pending checkpoint request. Written by the
training loop, read by the HTTP thread (status.py). Not here: the loop or the API.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ghpo.shared.schemas.trainer import CheckpointInfo, TrainerPhase, TrainerStatus


@dataclass
class StatusBoard:
    """What the status API reports; written by the loop, read by the HTTP thread."""

    phase: TrainerPhase = TrainerPhase.starting
    step: int = 0
    policy_version: int = 0
    last_batch_id: str | None = None
    consecutive_empty: int = 0
    last_checkpoint: CheckpointInfo | None = None
    message: str | None = None
    checkpoint_requested: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> TrainerStatus:
        return TrainerStatus(
            phase=self.phase,
            step=self.step,
            policy_version=self.policy_version,
            last_batch_id=self.last_batch_id,
            consecutive_empty_batches=self.consecutive_empty,
            last_checkpoint=self.last_checkpoint,
            message=self.message[:8000] if self.message else None,
        )
