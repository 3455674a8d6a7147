"""One GHPO sampling step over HTTP: plan, generate, verify, escalate all-wrong groups, score, report.

For the prompts drawn together (algorithm doc, section 2):
1. ask the broker for each prompt's start and max hint level at the trainer's step (its version);
2. round by round, generate G completions for every prompt still open, all in ONE /v1/generate call
   (chat messages from the prompt template: an optional system turn, the problem with its instruction
   and, at the prompt's level, the reference hint; the inference service applies the model's chat
   template), and score them in one /v1/verify;
3. a group every one of whose completions has accuracy 0 is regenerated one ladder level up
   (`difficulty.plan_next_level`: not during the cold start, never for a prompt without a solution,
   never above the broker's max level); the failed completions are discarded, except the first
   `ghpo.keep_unhinted` of a failed unhinted round, which take the place of as many in the final group;
4. final groups get group-relative advantages (`ghpo.shared.algorithm.advantages`, the one
   implementation), and their outcomes (every round, in escalation order) go to the broker.

A prompt that cannot finish is dropped whole with its reason (prompt too long, gold unparseable, an
upstream that kept failing). Time spent awaiting upstream calls is accounted per step, so the rest
(the server's own overhead) can be reported. What this module does not do: draw positions, queue
groups or decide admission (producer.py).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ghpo.services.rollout import metrics
from ghpo.services.rollout.cursor import generation_seed
from ghpo.services.rollout.replicas import ReplicaPool
from ghpo.services.rollout.settings import Settings
from ghpo.shared.algorithm.advantages import group_advantages
from ghpo.shared.algorithm.difficulty import checked_accuracies, plan_next_level
from ghpo.shared.algorithm.hints import ratio_for_level
from ghpo.shared.data.records import PromptRecord
from ghpo.shared.errors import Conflict, GhpoError, Unprocessable
from ghpo.shared.http import ServiceClient
from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.broker import LevelResult, Outcome, OutcomesRequest, PlanRequest, PlanResponse
from ghpo.shared.schemas.inference import GenerateRequest, GenerateResponse, SamplingParams
from ghpo.shared.schemas.rollout import Completion, DropReason, ScoredGroup
from ghpo.shared.schemas.verifier import VerifyItem, VerifyRequest, VerifyResponse

log = get_logger(__name__)
_PROMPT_FIELD = re.compile(r"^prompts\.(\d+)")
STALE_ENGINE_WAIT_S = 0.5  # a replica still on older weights than the lag bound allows: ask again soon


@dataclass
class Slot:
    """One drawn prompt's group while its step runs."""

    g: int
    epoch: int
    position: int
    record: PromptRecord
    level: int = 0
    max_level: int = 0
    results: list[tuple[int, int, int]] = field(default_factory=list)  # (level, correct, G) per round
    prompt_ids: list[int] = field(default_factory=list)
    plain_prompt_ids: list[int] | None = None
    samples: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    plain_accuracy: float | None = None
    kept: list[tuple[Any, float, float]] = field(default_factory=list)  # (sample, reward, accuracy) unhinted
    generated: int = 0  # completions generated for this group over all its rounds (the generation budget)
    drop: DropReason | None = None
    final: bool = False

    @property
    def group_id(self) -> str:
        return f"e{self.epoch}-p{self.position}"

    def rows(self) -> list[tuple[Any, float, float, bool]]:
        """(sample, reward, accuracy, unhinted) of the group as trained: with kept unhinted completions
        (ghpo.keep_unhinted = k) they come first, flagged, then the last G - k of the final round."""
        final = list(zip(self.samples, self.rewards, self.accuracies, strict=True))[len(self.kept) :]
        return [(*kept, True) for kept in self.kept] + [(*row, False) for row in final]

    def final_rewards(self) -> list[float]:
        """The rewards of `rows()`, in its order."""
        return [reward for _, reward, _ in self.kept] + self.rewards[len(self.kept) :]


@dataclass
class StepClock:
    """Wall time of a step and the part of it spent awaiting upstream services."""

    started: float = field(default_factory=time.perf_counter)
    upstream_s: float = 0.0

    def overhead_s(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.upstream_s)


class Sampler:
    def __init__(self, settings: Settings, pool: ReplicaPool, verifier: ServiceClient, broker: ServiceClient):
        self.settings = settings
        self.cfg = settings.ghpo
        self.template = settings.template()
        self.pool = pool
        self.verifier = verifier
        self.broker = broker

    async def _timed(self, clock: StepClock, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        finally:
            clock.upstream_s += time.perf_counter() - started

    async def run(self, slots: list[Slot], step: int, clock: StepClock) -> None:
        """Fill every slot with a final group or a drop reason."""
        metrics.GROUPS_STARTED.inc(len(slots))
        if not await self._plan(slots, step, clock):
            return
        open_slots = [s for s in slots if s.drop is None]
        while open_slots:
            await self._generate(open_slots, step, clock)
            open_slots = [s for s in open_slots if s.drop is None]
            if open_slots:
                await self._verify(open_slots, clock)
            for s in open_slots:
                if s.drop is None:
                    self._decide(s, step)
            open_slots = [s for s in open_slots if s.drop is None and not s.final]
        finals = [s for s in slots if s.drop is None]
        if self.cfg.condition_on == "plain":
            await self._plain_prompt_ids([s for s in finals if s.plain_prompt_ids is None], clock)
        await self._report(finals, step, clock)

    async def _plan(self, slots: list[Slot], step: int, clock: StepClock) -> bool:
        request = PlanRequest(step=step, prompt_ids=[s.record.id for s in slots])
        try:
            plan: PlanResponse = await self._timed(
                clock,
                self.broker.request_json(
                    "POST",
                    "/v1/plan",
                    json=request,
                    response_model=PlanResponse,
                    idempotency_key=f"plan-{uuid.uuid4().hex}",  # a plan writes nothing: safe to retry
                ),
            )
            if tuple(plan.ladder) != tuple(self.cfg.hint_ladder):
                raise Conflict(f"broker ladder {plan.ladder} differs from ours {list(self.cfg.hint_ladder)}")
        except GhpoError as exc:
            metrics.UPSTREAM_ERRORS.labels(service="broker", kind=exc.code).inc()
            log.error("plan failed, dropping %d groups: %s", len(slots), exc)
            for s in slots:
                s.drop = DropReason.broker_failed
            return False
        for s, p in zip(slots, plan.plans, strict=True):
            hintable = s.record.hintable
            s.level = p.start_level if hintable else 0
            s.max_level = p.max_level if hintable else 0
        return True

    def _messages(self, s: Slot, level: int) -> list[dict[str, str]]:
        return self.template.messages(
            s.record.problem,
            solution=s.record.solution,
            level=level,
            ladder=self.cfg.hint_ladder,
            cut=self.cfg.hint_cut,
        )

    async def _call_generate(
        self, slots: list[Slot], sampling: SamplingParams, min_version: int, clock: StepClock
    ) -> GenerateResponse | None:
        """One /v1/generate for `slots` on the least-busy replica, failing over; None when it gave up.

        A prompt the service refuses as too long is dropped and the call repeated without it.
        """
        failures = 0
        deadline = time.monotonic() + self.settings.generate_timeout_s
        while slots:
            body = GenerateRequest(
                prompts=[{"id": s.group_id, "messages": self._messages(s, s.level)} for s in slots],
                sampling=sampling,
                min_policy_version=min_version,
            )
            started = time.perf_counter()
            async with self.pool.acquire() as replica:
                try:
                    response = await replica.client.request(
                        "POST",
                        "/v1/generate",
                        json=body,
                        timeout=self.settings.generate_timeout_s,
                        idempotency_key=f"generate-{uuid.uuid4().hex}",  # seeded: a retry is harmless
                    )
                except Unprocessable as exc:
                    match = _PROMPT_FIELD.match(exc.field or "")
                    if match is None:
                        raise
                    clock.upstream_s += time.perf_counter() - started
                    slots[int(match.group(1))].drop = DropReason.prompt_too_long
                    slots = [s for s in slots if s.drop is None]
                    continue
                except Conflict:  # served weights older than the lag bound allows: wait for the push
                    clock.upstream_s += time.perf_counter() - started
                    metrics.UPSTREAM_ERRORS.labels(service="inference", kind="stale_weights").inc()
                    if time.monotonic() > deadline:
                        return None
                    await self._timed(clock, asyncio.sleep(STALE_ENGINE_WAIT_S))
                    continue
                except GhpoError as exc:
                    clock.upstream_s += time.perf_counter() - started
                    metrics.UPSTREAM_ERRORS.labels(service="inference", kind=exc.code).inc()
                    if exc.status_code < 500 and exc.status_code != 429:
                        log.error("inference refused a generate call: %s", exc)
                        return None
                    self.pool.eject(replica, str(exc))
                    failures += 1
                    if failures >= self.settings.replica_attempts:
                        return None
                    continue
            clock.upstream_s += time.perf_counter() - started
            result = GenerateResponse.model_validate_json(response.content)
            if len(result.results) != len(slots):
                raise ValueError(f"inference answered {len(result.results)} results for {len(slots)} prompts")
            for s, r in zip(slots, result.results, strict=True):
                s.samples, s.prompt_ids = r.samples, r.prompt_token_ids
            return result
        return None

    async def _generate(self, slots: list[Slot], step: int, clock: StepClock) -> None:
        # One seed per call, from its first prompt's (epoch, position, level); the service gives prompt i
        # seed + i. Reproducible whenever the same prompts are drawn together (max_policy_lag = 0 and
        # prompts_per_step = batch_groups: one step at a time).
        first = min(slots, key=lambda s: s.g)
        seed = generation_seed(self.settings.seed, first.epoch, first.position, first.level)
        sampling = SamplingParams(
            n=self.settings.group_size,
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_tokens=self.settings.max_tokens,
            seed=seed,
        )
        min_version = max(0, step - self.settings.max_policy_lag)
        failed = await self._call_generate(list(slots), sampling, min_version, clock) is None
        for s in slots:
            if s.drop is None and failed:
                s.drop = DropReason.inference_failed
            elif s.drop is None:
                s.generated += len(s.samples)

    async def _verify(self, slots: list[Slot], clock: StepClock) -> None:
        items = [
            VerifyItem(completion=sample.text or "", gold=s.record.answer)
            for s in slots
            for sample in s.samples
        ]
        request = VerifyRequest(items=items, weights=self.settings.reward_weights)
        try:
            response: VerifyResponse = await self._timed(
                clock,
                self.verifier.request_json(
                    "POST",
                    "/v1/verify",
                    json=request,
                    response_model=VerifyResponse,
                    idempotency_key=f"verify-{uuid.uuid4().hex}",  # scoring is pure: safe to retry
                ),
            )
        except GhpoError as exc:
            metrics.UPSTREAM_ERRORS.labels(service="verifier", kind=exc.code).inc()
            log.error("verify failed, dropping %d groups: %s", len(slots), exc)
            for s in slots:
                s.drop = DropReason.verifier_failed
            return
        it = iter(response.results)
        for s in slots:
            results = [next(it) for _ in s.samples]
            statuses = {r.status for r in results}
            if "unparsable_gold" in statuses:
                log.warning("gold answer of %s does not parse: %r", s.record.id, s.record.answer[:80])
                s.drop = DropReason.gold_unparseable
            elif statuses & {"timeout", "error"}:
                s.drop = DropReason.verifier_failed
            else:
                s.rewards = [r.total for r in results]
                s.accuracies = checked_accuracies([r.rewards.get("accuracy", 0.0) for r in results])

    def _decide(self, s: Slot, step: int) -> None:
        correct = sum(1 for a in s.accuracies if a == 1.0)
        hinted = "true" if s.level > 0 else "false"
        metrics.COMPLETIONS.labels(hinted=hinted).inc(len(s.accuracies))
        metrics.CORRECT.labels(hinted=hinted).inc(correct)
        s.results.append((s.level, correct, len(s.accuracies)))
        if s.level == 0:
            s.plain_accuracy = correct / len(s.accuracies)
            s.plain_prompt_ids = list(s.prompt_ids)
            if correct == 0 and step >= self.cfg.cold_start_steps:
                metrics.DIFFICULT.inc()
        nxt = plan_next_level(
            s.accuracies,
            s.level,
            self.cfg.hint_ladder,
            step=step,
            cold_start_steps=self.cfg.cold_start_steps,
            solvable=s.record.hintable,
        )
        if nxt is None or nxt > s.max_level:
            s.final = True
        else:
            if s.level == 0 and self.cfg.keep_unhinted:  # NuRL: the rescued group keeps some plain rollouts
                keep = self.cfg.keep_unhinted
                s.kept = list(zip(s.samples[:keep], s.rewards[:keep], s.accuracies[:keep], strict=True))
            s.level = nxt

    async def _plain_prompt_ids(self, slots: list[Slot], clock: StepClock) -> None:
        """condition_on=plain: the unhinted prompt's token ids of groups that never ran at level 0."""
        if not slots:
            return
        levels = [s.level for s in slots]
        for s in slots:
            s.level = 0
        saved = [(s.samples, s.prompt_ids) for s in slots]
        sampling = SamplingParams(n=1, max_tokens=1, temperature=0.0)
        ok = await self._call_generate(list(slots), sampling, 0, clock)
        for s, level, (samples, prompt_ids) in zip(slots, levels, saved, strict=True):
            s.plain_prompt_ids = s.prompt_ids if ok is not None else None
            s.level, s.samples, s.prompt_ids = level, samples, prompt_ids
            if ok is None and s.drop is None:
                s.drop = DropReason.inference_failed

    def group(self, s: Slot) -> ScoredGroup:
        """The final group of a slot (`Slot.rows`), with advantages."""
        rows = s.rows()
        advantages = group_advantages(
            s.final_rewards(), eps=self.cfg.advantage_eps, scale=self.cfg.scale_advantages
        )
        use_plain = self.cfg.condition_on == "plain" and s.plain_prompt_ids is not None
        return ScoredGroup(
            group_id=s.group_id,
            prompt_id=s.record.id,
            epoch=s.epoch,
            hint_level=s.level,
            hint_ratio=ratio_for_level(s.level, self.cfg.hint_ladder),
            condition_on="plain" if use_plain else "hinted",
            prompt_token_ids=s.plain_prompt_ids if use_plain else s.prompt_ids,
            plain_prompt_token_ids=s.plain_prompt_ids if s.kept else None,
            temperature=self.settings.temperature,
            completions=[
                Completion(
                    token_ids=sample.token_ids,
                    behaviour_logprobs=sample.logprobs,
                    finish_reason=sample.finish_reason,
                    reward=reward,
                    accuracy=accuracy,
                    advantage=advantage,
                    policy_version=sample.policy_version,
                    text=sample.text if self.settings.include_text else None,
                    unhinted=unhinted,
                )
                for (sample, reward, accuracy, unhinted), advantage in zip(rows, advantages, strict=True)
            ],
            generation_rounds=len(s.results),
            plain_accuracy=s.plain_accuracy,
            created_at=time.time(),
        )

    async def _report(self, finals: list[Slot], step: int, clock: StepClock) -> None:
        """Every round of each finished prompt to the broker, idempotently (update id = group id + step)."""
        if not finals:
            return
        outcomes = [
            Outcome(
                prompt_id=s.record.id,
                update_id=f"{s.group_id}-s{step}",
                step=step,
                policy_version=min(sample.policy_version for sample in s.samples),
                results=[LevelResult(level=lv, correct=c, G=g) for lv, c, g in s.results],
            )
            for s in finals
        ]
        key = f"outcomes-{finals[0].group_id}-s{step}-{len(finals)}"
        try:
            await self._timed(
                clock,
                self.broker.request_json(
                    "POST", "/v1/outcomes", json=OutcomesRequest(outcomes=outcomes), idempotency_key=key
                ),
            )
        except GhpoError as exc:  # the groups are still good to train on; the broker misses one visit
            metrics.UPSTREAM_ERRORS.labels(service="broker", kind=exc.code).inc()
            log.error("outcomes of %d groups not recorded by the broker: %s", len(finals), exc)
