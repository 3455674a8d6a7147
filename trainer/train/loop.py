"""The training loop: pull a batch -> train step -> push weights -> announce the version -> ack.

Start: restore the `latest` checkpoint when there is one (engine, RNG, step, version), push those
weights to every inference replica and announce the version *before* the broker state and the rollout
cursor are put back (PUT /v1/cursor discards whatever was generated meanwhile), so nothing trained on
after a resume was sampled from weights the run no longer has. Versions only grow: when a replica
already serves the restored version or a newer one (the old run pushed past its last checkpoint), the
weights are pushed as max(served) + 1.

Each delivered batch: a redelivery of a batch already trained on is acknowledged again, not trained;
a batch with nothing trainable (all advantages 0) is acknowledged without a step and counted, and
`run.max_empty_batches` of them in a row stop the run; otherwise one optimizer step, a push (replicas
that missed an earlier push are caught up by it), the version announcement and the ack. A checkpoint
every `run.checkpoint_every` steps and at the end. A non-finite loss or gradient stops the run with
`TrainingStopped`, after saving the last good state -- on every rank at once, even when only one rank
saw it (the check is collective, step.py). With several data-parallel ranks, rank 0 alone talks to the
services (pulls, announces, acks, pushes); its decisions reach the others by `rank0_decides`, and every
rank trains its share of each batch.

Upstream outages: every call to the rollout server and the broker goes through `Patience` (outage.py):
a service being restarted is waited for, up to `services.outage_budget_s`; past it the run stops with
`TrainingStopped` after a checkpoint. A stop request (SIGTERM) ends any wait at once, and the run always
ends with a checkpoint of its last good state: when the rollout server cannot be asked for its cursor,
the checkpoint keeps the cursor its last acknowledgement reported (the same trained state); when the
broker cannot be asked for a snapshot, the checkpoint has none and a resume keeps the broker's own state.
A fresh start (nothing to resume) writes a step-0 checkpoint first (`run.checkpoint_at_start`), so a
trainer killed before its first periodic checkpoint comes back from a state that agrees with the rollout
server's cursor instead of leaving the groups it acknowledged untrained. Each step's history line says
which batch it trained (`batch_id`), the groups acknowledged untrained before it (`skipped_groups`,
batches with nothing trainable) and how long the last checkpoint took (`checkpoint_s`); a step redone
after a resume is appended again, and the later line wins. Not here: the step's maths (step.py).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.rollout import Batch, RolloutCursor
from ghpo.shared.schemas.trainer import CheckpointInfo, TrainerPhase
from ghpo.trainer.train import metrics
from ghpo.trainer.train.batches import batch_sparsity_record, trainable
from ghpo.trainer.train.board import StatusBoard
from ghpo.trainer.train.checkpoint import Checkpointer, TrainerState
from ghpo.trainer.train.engine import TrainEngine
from ghpo.trainer.train.outage import Patience, StopRequested, UpstreamLost, is_outage
from ghpo.trainer.train.ranks import rank, rank0_decides
from ghpo.trainer.train.source import BatchSource, BrokerClient
from ghpo.trainer.train.step import NonFiniteError, StepResult, train_step
from ghpo.trainer.train.weights import WeightSync

log = get_logger(__name__)
RECENT_BATCHES = 1024
T = TypeVar("T")


class TrainingStopped(RuntimeError):
    """The run stopped before `run.steps` for a reason the message gives (non-finite, empty batches)."""


class Trainer:
    def __init__(
        self,
        train: TrainEngine,
        source: BatchSource,
        checkpointer: Checkpointer,
        *,
        weight_sync: WeightSync | None = None,
        broker: BrokerClient | None = None,
        status: StatusBoard | None = None,
    ):
        self.train = train
        self.config = train.config
        self.source = source
        self.checkpointer = checkpointer
        self.weight_sync = weight_sync
        self.broker = broker
        self.status = status or StatusBoard()
        self.step = 0
        self.policy_version = 0
        self.recent: collections.deque[str] = collections.deque(maxlen=RECENT_BATCHES)
        self.history: list[StepResult] = []
        self.rank0 = rank() == 0  # the one process that talks to the services
        # Set by request_stop() (SIGTERM in `ghpo train`): finish the current step, checkpoint, return.
        self.stop_requested = threading.Event()
        # When the trainer last became free for a batch: a step's wait is the time from here to its batch.
        self._free_since = time.monotonic()
        self.patience = Patience(self.config.services.outage_budget_s, self.stop_requested)
        # The rollout server's trained cursor as of the last acknowledgement (or the restored checkpoint):
        # what a checkpoint keeps when the rollout server cannot be asked.
        self.last_cursor: RolloutCursor | None = None
        self.skipped_groups = 0  # groups acknowledged without a step since the last step (empty batches)
        self.last_checkpoint_s: float | None = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    # ---- start
    def start(self) -> bool:
        """Resume from `latest` if configured and present, then bring inference to the trainer's weights.
        Returns whether a checkpoint was restored."""
        folder = self.checkpointer.latest() if self.config.run.resume else None
        cursor: RolloutCursor | None = None
        snapshot: bytes | None = None
        if folder is not None:
            state, snapshot = self.checkpointer.load(self.train, folder)
            self.step, self.policy_version = state.step, state.policy_version
            self.recent.extend(state.recent_batch_ids or [])
            self.skipped_groups = state.skipped_groups
            cursor = RolloutCursor.model_validate(state.cursor) if state.cursor else None
            self.status.last_checkpoint = self.checkpointer.info(folder)
            log.info(
                "resumed from %s: step %d, policy version %d", folder.name, self.step, self.policy_version
            )
        self.last_cursor = cursor
        try:
            self._sync_at_start(resumed=folder is not None)
            if snapshot is not None and self.broker is not None and self.rank0:
                broker = self.broker
                self._upstream("restoring the broker snapshot", lambda: broker.restore(snapshot))
            if cursor is not None and self.rank0:
                self._upstream("rewinding the rollout cursor", lambda: self.source.set_cursor(cursor))
        except StopRequested as exc:  # run() sees the request and keeps the state it starts from
            log.info("stop requested while waiting for %s at start", exc)
            return folder is not None
        except UpstreamLost as exc:
            raise TrainingStopped(f"{exc}. Stopped at start, step {self.step}") from exc
        self._publish()
        if folder is None and self.config.run.checkpoint_at_start:
            self.checkpoint(tag="start")
        self._free_since = time.monotonic()
        return folder is not None

    def _upstream(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()` (a call to the rollout server or the broker, rank 0), waited for through an outage."""
        return self.patience.call(what, fn)

    def _sync_at_start(self, *, resumed: bool) -> None:
        self.status.phase = TrainerPhase.syncing_weights
        if self.weight_sync is not None:  # not `.replicas`: only rank 0 resolves them, all ranks decide
            push, version = False, self.policy_version
            if self.rank0:
                known = [v for v in self.weight_sync.served_versions().values() if v is not None]
                push = resumed or any(v > 0 for v in known)
                if push and any(v >= version for v in known):
                    version = max(known) + 1
            push, self.policy_version = rank0_decides((push, version))
            if push:
                self.weight_sync.push(self.train, self.policy_version)
        held = self._announce() if self.rank0 else None
        # Redis outlived a restart of inference: the rollout server's version (it never goes back) is
        # ahead of what is served, and it would wait forever for inference to reach it. Go past it.
        ahead = rank0_decides(held is not None and held > self.policy_version)
        if ahead and self.weight_sync is not None:
            self.policy_version = rank0_decides(held + 1 if self.rank0 else None)
            log.info("the rollout server holds version %d: pushing as %d", held, self.policy_version)
            self.weight_sync.push(self.train, self.policy_version)
            if self.rank0:
                self._announce()

    def _announce(self) -> int | None:
        version = self.policy_version
        return self._upstream(
            "announcing the policy version", lambda: self.source.announce_policy_version(version)
        )

    # ---- run
    def run(self, stop_after: int | None = None) -> list[StepResult]:
        """Train until `run.steps` (or step `stop_after`: a planned stop), then checkpoint; raises
        TrainingStopped on a guardrail."""
        last = self.config.run.steps if stop_after is None else min(stop_after, self.config.run.steps)
        try:
            while self.step < last and not rank0_decides(self.stop_requested.is_set()):
                self.status.phase = TrainerPhase.waiting_for_batch
                # rank 0 pulls; every data-parallel rank trains on its share of the same batch
                batch, lost = rank0_decides(self._next_batch() if self.rank0 else None)
                if lost is not None:  # on every rank, so all of them checkpoint together
                    raise UpstreamLost(lost)
                if batch is not None:
                    self._handle(batch)
                elif self.weight_sync is not None:  # idle: bring a restarted or missed replica up now
                    self.weight_sync.catch_up(self.train, self.policy_version)
                if rank0_decides(self.status.checkpoint_requested.is_set()):  # asked for over HTTP
                    self.status.checkpoint_requested.clear()
                    self.checkpoint(tag="requested")
        except StopRequested as exc:
            log.info("stop requested while waiting for %s: checkpointing the last good state", exc)
        except UpstreamLost as exc:
            self.status.phase, self.status.message = TrainerPhase.failed, str(exc)
            info = self.checkpoint(tag="upstream-lost")
            raise TrainingStopped(f"{exc}. Stopped; checkpoint {info.name} (step {info.step})") from exc
        except TrainingStopped as exc:
            self.status.phase, self.status.message = TrainerPhase.failed, str(exc)
            raise
        if self.status.last_checkpoint is None or self.status.last_checkpoint.step != self.step:
            self.checkpoint()
        self.status.phase, self.status.message = TrainerPhase.stopped, f"stopped after step {self.step}"
        return self.history

    def _next_batch(self) -> tuple[Batch | None, str | None]:
        """(the next batch or None, why the rollout server is lost or None); a stop ends the wait."""
        wait_s = self.config.run.batch_wait_s
        try:
            return self._upstream("fetching the next batch", lambda: self.source.next_batch(wait_s)), None
        except StopRequested:
            return None, None  # the loop sees the stop request next
        except UpstreamLost as exc:
            return None, str(exc)

    def _handle(self, batch: Batch) -> None:
        received = time.monotonic()
        self.status.last_batch_id = batch.batch_id
        if batch.batch_id in self.recent:  # redelivered after we trained on it (the ack was lost)
            self._ack(batch.batch_id)
            return
        stats = batch_sparsity_record(batch)
        metrics.BATCH_DIFFICULT.set(stats["difficult_fraction"])
        metrics.BATCH_ZERO_ADVANTAGE.set(stats["zero_advantage_fraction"])
        metrics.BATCH_REWARD_MEAN.set(stats["reward_mean"])
        if not trainable(batch):
            self.status.consecutive_empty += 1
            metrics.EMPTY_BATCHES.inc()
            self.recent.append(batch.batch_id)
            self._ack(batch.batch_id)
            self.skipped_groups += len(batch.groups)
            if self.status.consecutive_empty >= self.config.run.max_empty_batches:
                self.checkpoint(tag="empty-batches")
                raise TrainingStopped(
                    f"{self.status.consecutive_empty} consecutive batches had nothing trainable (every "
                    f"advantage 0; run.max_empty_batches = {self.config.run.max_empty_batches}); stopped at "
                    f"step {self.step}"
                )
            return
        self.status.consecutive_empty = 0
        self._check_conditioning(batch)
        self.status.phase = TrainerPhase.training
        started = time.monotonic()
        try:
            result = train_step(self.train, batch, self.policy_version)
        except NonFiniteError as exc:
            metrics.NONFINITE.inc()
            info = self.checkpoint(tag="nonfinite")
            raise TrainingStopped(
                f"{exc}. Stopped; checkpoint {info.name} (step {info.step}) holds the last good state"
            ) from exc
        trained = time.monotonic()
        metrics.STEP_SECONDS.observe(trained - started)
        self.step += 1
        self.policy_version += 1
        self.history.append(result)
        self._record(result)
        if self.weight_sync is not None:
            self.status.phase = TrainerPhase.syncing_weights
            self.weight_sync.push(self.train, self.policy_version)
        if self.rank0:
            self._announce()
        # Where the step's time went: waiting for the batch (generation not done, or the pull), the
        # forward/backward/optimizer step, and pushing the new weights to inference.
        seconds = {
            "wait_s": round(received - self._free_since, 3),
            "train_s": round(trained - started, 3),
            "sync_s": round(time.monotonic() - trained, 3),
        }
        self._append_history(result, stats | seconds, batch.batch_id)
        self.recent.append(batch.batch_id)
        due = self.step % self.config.run.checkpoint_every == 0
        # The broker snapshot is taken before the ack: the ack lets the rollout server report the next
        # step's outcomes, which would race into it (at lag 0 the snapshot is then exactly the trained state).
        snapshot = self._broker_snapshot() if due else None
        self._ack(batch.batch_id)
        self._publish()
        if due:
            self.checkpoint(snapshot=snapshot)
        self._free_since = time.monotonic()

    def _check_conditioning(self, batch: Batch) -> None:
        """Stop (nothing trained, nothing acked) when the rollout server conditioned hinted groups otherwise
        than this trainer weights them: plain-prompt rows trained as on-policy would skip the IS correction."""
        mine = self.config.ghpo.condition_on
        theirs = sorted({g.condition_on for g in batch.groups if g.hint_level > 0} - {mine})
        if theirs:
            raise TrainingStopped(
                f"batch {batch.batch_id} has hinted groups conditioned on {', '.join(theirs)} but this trainer "
                f"has ghpo.condition_on = {mine}: give the rollout server and the trainer the same value "
                f"(GHPO_ALGORITHM_CONDITION_ON, read by both)"
            )

    def _ack(self, batch_id: str) -> None:
        if self.rank0:
            version = self.policy_version
            cursor = self._upstream("acknowledging a batch", lambda: self.source.ack(batch_id, version))
            self.last_cursor = cursor or self.last_cursor

    def _record(self, r: StepResult) -> None:
        metrics.STEPS.inc()
        metrics.LOSS.set(r.loss)
        metrics.GRAD_NORM.set(r.grad_norm)
        metrics.ENTROPY.set(r.entropy)
        metrics.MISMATCH_KL.set(r.mismatch_kl)
        metrics.TOKENS.inc(r.tokens)
        metrics.LAST_STEP_TIMESTAMP.set(time.time())
        log.info(
            "step %d: loss %.5f grad_norm %.4f entropy %.3f mismatch_kl %.2e tokens %d lr %.2e",
            self.step,
            r.loss,
            r.grad_norm,
            r.entropy,
            r.mismatch_kl,
            r.tokens,
            r.lr,
        )

    def _append_history(self, r: StepResult, stats: dict, batch_id: str) -> None:
        """One JSON line per step for `ghpo run`'s report (rank 0, when run.history_file is set)."""
        path = self.config.run.history_file
        if not path or not self.rank0:
            return
        record = {
            "step": self.step,
            "batch_id": batch_id,
            "skipped_groups": self.skipped_groups,
            "checkpoint_s": self.last_checkpoint_s,
            "policy_version": self.policy_version,
            "loss": r.loss,
            "grad_norm": r.grad_norm,
            "entropy": r.entropy,
            "mismatch_kl": r.mismatch_kl,
            "tokens": r.tokens,
            "lr": r.lr,
            **stats,
        }
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")
        self.skipped_groups = 0

    def _publish(self) -> None:
        self.status.step, self.status.policy_version = self.step, self.policy_version
        metrics.POLICY_VERSION.set(self.policy_version)

    # ---- checkpoints
    def _broker_snapshot(self) -> bytes | None:
        """The broker's state now, or None without a broker or while it cannot answer."""
        if self.broker is None or not self.rank0:
            return None
        what = "no broker snapshot in this checkpoint (a resume keeps the broker's state)"
        return self._unless_down(what, self.broker.snapshot, None)

    def _cursor(self) -> RolloutCursor | None:
        """The rollout server's trained cursor now, else the one its last acknowledgement reported."""
        if not self.rank0:
            return None
        what = "the checkpoint keeps the rollout cursor of the last acknowledgement"
        return self._unless_down(what, self.source.get_cursor, self.last_cursor)

    @staticmethod
    def _unless_down(what: str, fn: Callable[[], T], fallback: T) -> T:
        """`fn()`, or `fallback` (saying `what` that means) while its service is down."""
        try:
            return fn()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("%s: %s", what, exc)
            return fallback

    def checkpoint(self, tag: str | None = None, snapshot: bytes | None = None) -> CheckpointInfo:
        """Save now; `snapshot` is a broker snapshot already taken for this step (else one is taken)."""
        phase = self.status.phase
        self.status.phase = TrainerPhase.checkpointing
        started = time.monotonic()
        cursor = self._cursor()
        if snapshot is None:
            snapshot = self._broker_snapshot()
        state = TrainerState(
            step=self.step,
            policy_version=self.policy_version,
            cursor=cursor.model_dump() if cursor is not None else None,
            tag=tag,
            recent_batch_ids=list(self.recent),
            skipped_groups=self.skipped_groups,
        )
        info = self.checkpointer.save(self.train, state, snapshot)
        self.last_checkpoint_s = round(time.monotonic() - started, 3)
        self.status.last_checkpoint = info
        self.status.phase = phase
        log.info("checkpoint %s written (step %d, version %d)", info.name, info.step, info.policy_version)
        return info
