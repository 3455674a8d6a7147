"""The asynchronous producer: admission control, drawing positions, running GHPO steps, queueing groups.

Admission: a group drawn now is delivered after everything queued, in flight (any server) and delivered
but unacknowledged, and each batch ahead of it advances the trainer by one version. So the lag bound
holds only if those groups, plus the new ones, fit in (max_policy_lag + 1) x batch_groups; past that,
the producer waits (woken by acks, deliveries, version updates, or every half second for other servers).
With max_policy_lag = 0 that is the synchronous on-policy loop; with more, generation runs ahead of
training by up to max_policy_lag batches. Up to `max_concurrent_steps` steps run at once, so one step
generates while another is being verified or reported, and the engines stay busy.

Claims on drawn positions are renewed while their steps run; a step cancelled by shutdown leaves its
claims to expire (the positions are drawn again, nothing is lost). When every group of a step failed
upstream (broker, verifier or all inference replicas down), the next step waits, doubling from 0.5 s
to 30 s, so an outage drops a few groups rather than the whole epoch. What this module does not do:
sample (sampler.py) or keep queue state (queue.py: everything durable lives in Redis).

Dynamic sampling (DAPO, `dynamic_sampling`): a sampled group whose rewards are all equal carries no
advantage signal, so it is dropped (`no_signal`, after the broker has seen its outcome) instead of
queued; its position is settled and admission frees its place, so drawing goes on until the queue holds
full batches of groups with signal (when drops leave less than a batch queued, room for less than a
step and nothing in flight or unacknowledged, a smaller step tops the batch up rather than deadlock).
Every step adds its generation counters (`step_tally`) to Redis, whether its groups were queued or
dropped: the completions a run spent, for equal-budget comparisons.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from redis.exceptions import RedisError

from ghpo.services.rollout import metrics
from ghpo.services.rollout.cursor import Cursor, epoch_order, split_index
from ghpo.services.rollout.queue import GroupQueue
from ghpo.services.rollout.sampler import Sampler
from ghpo.services.rollout.settings import Settings
from ghpo.services.rollout.slot import Slot, StepClock
from ghpo.shared.data.records import PromptRecord
from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.rollout import DropReason

log = get_logger(__name__)
ADMISSION_POLL_S = 0.5
REDIS_RETRY_S = 1.0
MIN_BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
UPSTREAM_FAILURES = {DropReason.broker_failed, DropReason.verifier_failed, DropReason.inference_failed}
REDIS_ERRORS = (RedisError, OSError)
GAUGE_PERIOD_S = 1.0
OVERHEAD_SAMPLES = 4096


def now_ms() -> int:
    return int(time.time() * 1000)


def no_signal(s: Slot) -> bool:
    """Every reward of the sampled group is equal: every advantage is 0, GRPO learns nothing from it."""
    return len(set(s.final_rewards())) <= 1


def step_tally(slots: list[Slot]) -> dict[str, int]:
    """A step's generation counters (RolloutStatus): completions generated in all rounds, including those
    of groups dropped later; groups sampled to the end; of those, difficult ones (ended hinted, or all
    wrong without a hint: the trainer's definition) and ones without signal."""
    sampled = [s for s in slots if s.drop is None]
    return {
        "completions_generated": sum(s.generated for s in slots),
        "groups_sampled": len(sampled),
        "difficult_groups": sum(1 for s in sampled if s.level > 0 or s.plain_accuracy == 0.0),
        "no_signal_groups": sum(1 for s in sampled if no_signal(s)),
    }


class Producer:
    def __init__(
        self,
        settings: Settings,
        records: list[PromptRecord],
        cursor: Cursor,
        queue: GroupQueue,
        sampler: Sampler,
    ):
        self.settings = settings
        self.records = records
        self.cursor = cursor
        self.queue = queue
        self.sampler = sampler
        self.wake = asyncio.Event()
        self.inflight: set[int] = set()
        self.steps: set[asyncio.Task[None]] = set()
        self.overheads: deque[float] = deque(maxlen=OVERHEAD_SAMPLES)  # seconds per group, recent steps
        self.backoff_s = 0.0  # grows while whole steps fail upstream, so an outage does not eat the epoch

    def slots(self, draws: list[int]) -> list[Slot]:
        out = []
        size = len(self.records)
        for g in sorted(draws):
            epoch, position = split_index(g, size)
            record = self.records[epoch_order(self.settings.seed, epoch, size)[position]]
            out.append(Slot(g=g, epoch=epoch, position=position, record=record))
        return out

    async def _admit(self) -> int:
        """Wait until a step's worth of groups (or all the bound allows) may be drawn; returns how many."""
        want = min(self.settings.prompts_per_step, self.settings.admission_groups)
        while True:
            counts = await self.queue.counts(now_ms())
            used = counts.queued + counts.in_flight + counts.unacked * self.settings.batch_groups
            capacity = self.settings.admission_groups - used
            if capacity >= want:
                return want
            # Groups dropped after sampling (no_signal, failures) can leave less than a batch queued and
            # room for less than a step: nothing else would complete that batch, so draw what fits.
            idle = counts.in_flight == 0 and counts.unacked == 0
            if capacity > 0 and idle and counts.queued < self.settings.batch_groups:
                return capacity
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), ADMISSION_POLL_S)

    async def run(self) -> None:
        """Draw and run steps until cancelled."""
        try:
            while True:
                while len(self.steps) >= self.settings.max_concurrent_steps:
                    await asyncio.wait(self.steps, return_when=asyncio.FIRST_COMPLETED)
                if self.backoff_s:
                    await asyncio.sleep(self.backoff_s)
                try:
                    k = await self._admit()
                    draws = await self.cursor.draw(k, now_ms())
                except REDIS_ERRORS as exc:  # Redis down: nothing was claimed; try again shortly
                    log.warning("Redis unavailable (%s); producer waits", exc)
                    await asyncio.sleep(REDIS_RETRY_S)
                    continue
                self.inflight.update(draws)
                task = asyncio.create_task(self._step(self.slots(draws)))
                self.steps.add(task)
                task.add_done_callback(self.steps.discard)
        finally:
            for task in list(self.steps):
                task.cancel()
            await asyncio.gather(*self.steps, return_exceptions=True)

    async def _step(self, slots: list[Slot]) -> None:
        clock = StepClock()
        try:
            step = await self.queue.version()
            try:
                await self.sampler.run(slots, step, clock)
            except Exception:  # a bug or an unexpected answer: drop this step's groups, keep producing
                log.exception("step of %d groups failed", len(slots))
                for s in slots:
                    s.drop = s.drop or DropReason.internal_error
            await self.queue.add_stats(step_tally(slots))
            for s in slots:
                await self._settle(s)
            if all(s.drop in UPSTREAM_FAILURES for s in slots):
                self.backoff_s = min(MAX_BACKOFF_S, max(MIN_BACKOFF_S, 2 * self.backoff_s))
                log.warning("a whole step failed upstream; next step in %.1f s", self.backoff_s)
            else:
                self.backoff_s = 0.0
            per_group = clock.overhead_s() / len(slots)
            for _ in slots:
                metrics.OVERHEAD.observe(per_group)
                self.overheads.append(per_group)
        finally:
            self.inflight.difference_update(s.g for s in slots)

    async def _settle(self, s: Slot) -> None:
        if s.drop is None and self.settings.dynamic_sampling and no_signal(s):
            s.drop = DropReason.no_signal
        if s.drop is not None:
            if await self.queue.drop(s.g, s.drop.value):
                metrics.DROPPED.labels(reason=s.drop.value).inc()
            else:
                metrics.DROPPED.labels(reason=DropReason.lease_lost.value).inc()
            return
        group = self.sampler.group(s)
        oldest, _ = group.policy_versions
        if not await self.queue.enqueue(s.g, group.model_dump_json(), oldest):
            metrics.DROPPED.labels(reason=DropReason.lease_lost.value).inc()
            log.warning("claim on %s was lost (rewound or taken over); group not queued", s.group_id)
            return
        metrics.ENQUEUED.labels(final_level=str(s.level)).inc()
        metrics.ROUNDS.observe(len(s.rounds))
        if no_signal(s):
            metrics.ZERO_ADVANTAGE.inc()

    async def renew_claims(self) -> None:
        """Keep our claims alive while their steps run (every third of the claim TTL)."""
        while True:
            await asyncio.sleep(self.settings.claim_ttl_s / 3)
            try:
                lost = await self.cursor.renew(sorted(self.inflight), now_ms())
            except REDIS_ERRORS as exc:
                log.warning("could not renew claims: %s", exc)
                continue
            if lost:
                log.warning("%d claims were taken over or rewound while in flight", lost)

    async def update_gauges(self) -> None:
        while True:
            metrics.ENGINE_BUSY.set(self.sampler.pool.busy_fraction())
            with contextlib.suppress(*REDIS_ERRORS):
                counts = await self.queue.counts(now_ms())
                metrics.QUEUE_DEPTH.set(counts.queued)
                metrics.IN_FLIGHT.set(counts.in_flight)
                metrics.UNACKED.set(counts.unacked)
            await asyncio.sleep(GAUGE_PERIOD_S)
