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
   implementation), and their outcomes (every round, in escalation order) go to the broker. With
   `condition_on = plain`, a group that never ran unhinted gets its plain prompt's token ids from the
   inference service's /v1/tokenize (the prompt as generation would have seen it; nothing generated).

A prompt that cannot finish is dropped whole with its reason (prompt too long, gold unparseable, an
upstream that kept failing). Time spent awaiting upstream calls is accounted per step, so the rest
(the server's own overhead) can be reported. What this module does not do: draw positions, queue
groups or decide admission (producer.py), fail over between replicas or wait for fresh weights
(inference_calls.py).
"""

from __future__ import annotations

import time
import uuid

from ghpo.services.rollout import metrics
from ghpo.services.rollout.cursor import generation_seed
from ghpo.services.rollout.inference_calls import InferenceCalls
from ghpo.services.rollout.replicas import ReplicaPool
from ghpo.services.rollout.settings import Settings
from ghpo.services.rollout.slot import Round, Row, Slot, StepClock
from ghpo.shared.algorithm.advantages import group_advantages
from ghpo.shared.algorithm.difficulty import checked_accuracies, plan_next_level
from ghpo.shared.algorithm.hints import ratio_for_level
from ghpo.shared.errors import Conflict, GhpoError
from ghpo.shared.http import ServiceClient
from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.broker import LevelResult, Outcome, OutcomesRequest, PlanRequest, PlanResponse
from ghpo.shared.schemas.inference import Prompt, SamplingParams
from ghpo.shared.schemas.rollout import Completion, DropReason, ScoredGroup
from ghpo.shared.schemas.verifier import VerifyItem, VerifyRequest, VerifyResponse

log = get_logger(__name__)


class Sampler:
    def __init__(self, settings: Settings, pool: ReplicaPool, verifier: ServiceClient, broker: ServiceClient):
        self.settings = settings
        self.cfg = settings.ghpo
        self.template = settings.template()
        self.pool = pool
        self.inference = InferenceCalls(settings, pool)
        self.verifier = verifier
        self.broker = broker

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
            plan: PlanResponse = await clock.timed(
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

    def _prompt(self, s: Slot, level: int) -> Prompt:
        return Prompt.model_validate({"id": s.group_id, "messages": self._messages(s, level)})

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
        prompts = [self._prompt(s, s.level) for s in slots]
        results = await self.inference.generate(slots, prompts, sampling, min_version, clock)
        for s, r in results or []:
            s.samples, s.prompt_ids = r.samples, r.prompt_token_ids
            s.generated += len(r.samples)
        for s in slots if results is None else []:
            s.drop = s.drop or DropReason.inference_failed

    async def _verify(self, slots: list[Slot], clock: StepClock) -> None:
        items = [
            VerifyItem(completion=sample.text or "", gold=s.record.answer)
            for s in slots
            for sample in s.samples
        ]
        request = VerifyRequest(items=items, weights=self.settings.reward_weights)
        try:
            response: VerifyResponse = await clock.timed(
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
        s.rounds.append(Round(level=s.level, correct=correct, size=len(s.accuracies)))
        if s.level == 0:
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
                plain = zip(s.samples[:keep], s.rewards[:keep], s.accuracies[:keep], strict=True)
                s.kept = [Row(sample, reward, accuracy, unhinted=True) for sample, reward, accuracy in plain]
            s.level = nxt

    async def _plain_prompt_ids(self, slots: list[Slot], clock: StepClock) -> None:
        """condition_on=plain: the unhinted prompt's token ids of groups that never ran at level 0."""
        if not slots:
            return
        results = await self.inference.tokenize(slots, [self._prompt(s, 0) for s in slots], clock)
        for s, r in results or []:
            s.plain_prompt_ids = r.prompt_token_ids
        for s in slots if results is None else []:
            s.drop = s.drop or DropReason.inference_failed

    def group(self, s: Slot) -> ScoredGroup:
        """The final group of a slot (`Slot.rows`), with advantages."""
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
                    token_ids=row.sample.token_ids,
                    behaviour_logprobs=row.sample.logprobs,
                    finish_reason=row.sample.finish_reason,
                    reward=row.reward,
                    accuracy=row.accuracy,
                    advantage=advantage,
                    policy_version=row.sample.policy_version,
                    text=row.sample.text if self.settings.include_text else None,
                    unhinted=row.unhinted,
                )
                for row, advantage in zip(s.rows(), advantages, strict=True)
            ],
            generation_rounds=len(s.rounds),
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
                results=[LevelResult(level=r.level, correct=r.correct, G=r.size) for r in s.rounds],
            )
            for s in finals
        ]
        key = f"outcomes-{finals[0].group_id}-s{step}-{len(finals)}"
        try:
            await clock.timed(
                self.broker.request_json(
                    "POST", "/v1/outcomes", json=OutcomesRequest(outcomes=outcomes), idempotency_key=key
                ),
            )
        except GhpoError as exc:  # the groups are still good to train on; the broker misses one visit
            metrics.UPSTREAM_ERRORS.labels(service="broker", kind=exc.code).inc()
            log.error("outcomes of %d groups not recorded by the broker: %s", len(finals), exc)
