"""Atomic trainer checkpoints: DeepSpeed state, RNG states, step, policy version, rollout cursor and a
broker snapshot, in one folder per step.

Layout under `run.checkpoint_dir`:
    step-000000120/      complete checkpoints only (a folder is renamed into place when complete)
        deepspeed/       engine.save_checkpoint (module, optimizer, LR scheduler), tag "ds"; with LoRA
                         the module part is the adapters (the frozen base is the model folder's; only
                         a tied output head's alias of the embedding stays in, DeepSpeed names it once)
        rng-rank{r}.pt   python / numpy / torch RNG states of each rank
        broker.ndjson    GET /v1/snapshot of the broker, when one is configured
        trainer_state.json
    latest               the name of the newest complete checkpoint, replaced atomically, written last
    .tmp-step-.../       a checkpoint being written (removed on the next save if a crash left it)
Order of a save: write everything into the temp folder (fsync'd) -> rename it into place -> replace
`latest` -> delete checkpoints beyond `keep` (never the one `latest` names). A crash at any point leaves
`latest` naming a complete checkpoint. `on_stage(stage, folder)` is a public hook called after each
stage ("deepspeed", "state", "renamed", "latest"): tests inject crashes through it, operators can log.
Deliberately not here: talking to the rollout server or broker (loop.py passes their state in).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ghpo.shared.schemas.trainer import CheckpointInfo
from ghpo.trainer.train import ranks
from ghpo.trainer.train.engine import TrainEngine

LATEST = "latest"
STATE_FILE = "trainer_state.json"
BROKER_FILE = "broker.ndjson"
DS_TAG = "ds"
PREFIX = "step-"


@dataclass
class TrainerState:
    step: int
    policy_version: int
    cursor: dict | None = None  # RolloutCursor as a dict, or None without a rollout server
    has_broker_snapshot: bool = False
    created_at: float = 0.0
    tag: str | None = None
    recent_batch_ids: list[str] | None = None
    skipped_groups: int = 0  # acknowledged untrained since the last step (in the next step's history line)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Checkpointer:
    def __init__(self, root: str | Path, keep: int = 2, on_stage: Callable[[str, Path], None] | None = None):
        self.root = Path(root)
        self.keep = keep
        self.on_stage = on_stage
        self.root.mkdir(parents=True, exist_ok=True)

    def _stage(self, name: str, folder: Path) -> None:
        if self.on_stage is not None:
            self.on_stage(name, folder)

    def save(
        self, train: TrainEngine, state: TrainerState, broker_snapshot: bytes | None = None
    ) -> CheckpointInfo:
        """Write a complete checkpoint for `state.step` and make it `latest`; every rank calls this."""
        name = f"{PREFIX}{state.step:09d}"
        tmp = self.root / f".tmp-{name}"
        final = self.root / name
        rank = ranks.rank()
        if rank == 0:
            for leftover in self.root.glob(".tmp-*"):  # a crashed save: never complete, never named
                shutil.rmtree(leftover, ignore_errors=True)
            tmp.mkdir()
        ranks.barrier()
        # With LoRA the frozen base is the model folder's, not saved: the adapters and their optimizer
        # state are the policy's checkpoint.
        train.engine.save_checkpoint(
            str(tmp / "deepspeed"),
            tag=DS_TAG,
            client_state={},
            save_latest=False,
            exclude_frozen_parameters=train.lora,
        )
        rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, tmp / f"rng-rank{rank}.pt")
        self._stage("deepspeed", tmp)
        ranks.barrier()
        if rank == 0:
            state.created_at = state.created_at or time.time()
            state.has_broker_snapshot = broker_snapshot is not None
            if broker_snapshot is not None:
                _write(tmp / BROKER_FILE, broker_snapshot)
            _write(tmp / STATE_FILE, json.dumps(asdict(state), indent=1).encode())
            _fsync_dir(tmp)
            self._stage("state", tmp)
            if final.exists():  # the same step saved again (e.g. a stop right after a resume)
                old = self.root / f".tmp-old-{name}"
                final.rename(old)
                shutil.rmtree(old)
            tmp.rename(final)
            _fsync_dir(self.root)
            self._stage("renamed", final)
            _write(self.root / f"{LATEST}.tmp", name.encode())
            os.replace(self.root / f"{LATEST}.tmp", self.root / LATEST)
            _fsync_dir(self.root)
            self._stage("latest", final)
            self._prune(name)
        ranks.barrier()
        return self.info(final)

    def _prune(self, latest: str) -> None:
        complete = self.complete()
        for folder in complete[: max(0, len(complete) - self.keep)]:
            if folder.name != latest:
                shutil.rmtree(folder, ignore_errors=True)

    def complete(self) -> list[Path]:
        """Complete checkpoint folders, oldest first."""
        return sorted(p for p in self.root.glob(f"{PREFIX}*") if (p / STATE_FILE).is_file())

    def latest(self) -> Path | None:
        marker = self.root / LATEST
        if not marker.is_file():
            return None
        folder = self.root / marker.read_text().strip()
        if not (folder / STATE_FILE).is_file():
            raise FileNotFoundError(f"{marker} names {folder.name}, which is not a complete checkpoint")
        return folder

    def info(self, folder: Path) -> CheckpointInfo:
        state = read_state(folder)
        return CheckpointInfo(
            name=folder.name,
            path=str(folder)[:256],
            step=state.step,
            policy_version=state.policy_version,
            created_at=state.created_at,
            size_bytes=_size(folder),
        )

    def load(self, train: TrainEngine, folder: Path) -> tuple[TrainerState, bytes | None]:
        """Restore engine and RNG states from `folder`; returns its trainer state and broker snapshot."""
        # LoRA checkpoints hold the adapters only (the base stays as loaded): not a strict module load.
        load_path, _ = train.engine.load_checkpoint(
            str(folder / "deepspeed"), tag=DS_TAG, load_module_strict=not train.lora
        )
        if load_path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint in {folder / 'deepspeed'}")
        train.apply_lr_schedule()
        rng = torch.load(folder / f"rng-rank{ranks.rank()}.pt", weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        state = read_state(folder)
        broker = (folder / BROKER_FILE).read_bytes() if state.has_broker_snapshot else None
        return state, broker


def read_state(folder: Path) -> TrainerState:
    return TrainerState(**json.loads((folder / STATE_FILE).read_text()))
