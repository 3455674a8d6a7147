"""HTTP API of the guidance broker, under /v1: plan, outcomes, prompt state, stats, snapshot/restore, and
the GHPO settings it plans with (`GET /v1/algorithm`, which the rollout server compares with its own).

Checks the service's own limits (batch size -> 413; ladder and escalation rules -> 422 naming the
outcome and field) for the WHOLE batch before anything is written, then hands over to the state store.
Not here: Redis details (engine.py), policy rules (policies.py), the app shell (app.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ghpo.services.broker.engine import MEMORY_FIELDS, BrokerState, memory_from, plans_for
from ghpo.services.broker.metrics import DUPLICATES, PLANNED, SparsityWindow
from ghpo.services.broker.policies import REMEMBERING, Memory, outcome_problem, plan, summarize
from ghpo.services.broker.settings import Settings
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.errors import NotFound, PayloadTooLarge, Unprocessable
from ghpo.shared.schemas.broker import (
    BrokerStats,
    LevelStats,
    OutcomeAck,
    OutcomesRequest,
    OutcomesResponse,
    PlanRequest,
    PlanResponse,
    PromptPlan,
    PromptState,
    RestoreResponse,
)

router = APIRouter(prefix="/v1", tags=["broker"])
PROMPT_ID = re.compile(r"^[A-Za-z0-9._:@/+-]+$")
NDJSON = "application/x-ndjson"


def _state(request: Request) -> tuple[Settings, BrokerState]:
    return request.app.state.settings, request.app.state.broker


def _check_batch(n: int, settings: Settings, field: str) -> None:
    if n > settings.max_batch_prompts:
        raise PayloadTooLarge(
            f"batch has {n} {field}; max_batch_prompts is {settings.max_batch_prompts}", field=field
        )


@router.get("/algorithm", response_model=GHPOConfig)
async def algorithm(request: Request) -> GHPOConfig:
    """The GHPO settings this broker was given (GHPO_ALGORITHM_*): every component must have the same."""
    settings, _ = _state(request)
    return settings.ghpo


@router.post("/plan", response_model=PlanResponse)
async def plan_levels(body: PlanRequest, request: Request) -> PlanResponse:
    """Start and max hint level per prompt at `step`; unknown prompts are new (start at level 0)."""
    settings, state = _state(request)
    _check_batch(len(body.prompt_ids), settings, "prompt_ids")
    cfg = settings.policy_config()
    if cfg.name in REMEMBERING and body.step >= cfg.cold_start_steps:
        memories = await state.memories(body.prompt_ids)
    else:  # the other policies (and the cold start) do not depend on what the broker remembers
        memories = [Memory()] * len(body.prompt_ids)
    levels = plans_for(cfg, memories, body.step)
    window: SparsityWindow = request.app.state.window
    for start, count in Counter(start for start, _ in levels).items():
        PLANNED.labels(level=window.levels[start]).inc(count)
    return PlanResponse(
        step=body.step,
        policy=cfg.name,
        ladder=list(settings.ghpo.hint_ladder),
        plans=[
            PromptPlan(prompt_id=pid, start_level=start, max_level=top)
            for pid, (start, top) in zip(body.prompt_ids, levels, strict=True)
        ],
    )


@router.post("/outcomes", response_model=OutcomesResponse)
async def record_outcomes(body: OutcomesRequest, request: Request) -> OutcomesResponse:
    """Record each prompt's groups of one step; a repeated update id is acknowledged but not re-applied."""
    settings, state = _state(request)
    _check_batch(len(body.outcomes), settings, "outcomes")
    n_levels = len(settings.ghpo.hint_ladder)
    batch = []
    for i, o in enumerate(body.outcomes):
        results = [(r.level, r.correct, r.G) for r in o.results]
        problem = outcome_problem(results, n_levels, settings.group_size)
        if problem is not None:
            raise Unprocessable(
                f"outcome {i} ({o.prompt_id}): {problem[1]}", field=f"outcomes.{i}.{problem[0]}"
            )
        batch.append((o.prompt_id, o.update_id, o.step, o.policy_version, results))
    flags = await state.record(batch)
    request.app.state.window.observe([summarize(b[4]) for b, f in zip(batch, flags, strict=True) if f])
    duplicates = flags.count(False)
    DUPLICATES.inc(duplicates)
    return OutcomesResponse(
        applied=len(flags) - duplicates,
        duplicates=duplicates,
        acks=[
            OutcomeAck(update_id=o.update_id, applied=f) for o, f in zip(body.outcomes, flags, strict=True)
        ],
    )


def _opt(fields: dict[str, str], name: str) -> int | None:
    return int(fields[name]) if name in fields else None


@router.get("/prompts/{prompt_id:path}", response_model=PromptState)
async def prompt_state(prompt_id: str, request: Request) -> PromptState:
    settings, state = _state(request)
    if not PROMPT_ID.match(prompt_id) or len(prompt_id) > 128:
        raise Unprocessable(f"invalid prompt id {prompt_id[:80]!r}", field="prompt_id")
    fields = await state.prompt(prompt_id)
    if not fields:
        raise NotFound(f"no outcome has been recorded for prompt {prompt_id!r}", field="prompt_id")
    memory = memory_from([fields.get(f) for f in MEMORY_FIELDS])
    nxt = plan(settings.policy_config(), memory, (memory.last_step or 0) + 1)
    return PromptState(
        prompt_id=prompt_id,
        visits=int(fields.get("visits", 0)),
        levels=[
            LevelStats(
                level=k,
                groups=_opt(fields, f"n{k}") or 0,
                correct=_opt(fields, f"c{k}") or 0,
                wrong=_opt(fields, f"w{k}") or 0,
            )
            for k in range(len(settings.ghpo.hint_ladder) + 1)
        ],
        last_informative_level=_opt(fields, "last_ok"),
        last_start_level=memory.last_start,
        last_final_level=memory.last_final,
        last_final_correct=memory.last_final_correct,
        last_final_G=memory.last_final_g,
        last_step=memory.last_step,
        last_policy_version=_opt(fields, "last_version"),
        next_plan=PromptPlan(prompt_id=prompt_id, start_level=nxt.start_level, max_level=nxt.max_level),
    )


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _levels(stats: dict[str, str], prefix: str, n: int) -> Sequence[int]:
    return [int(stats.get(f"{prefix}{k}", 0)) for k in range(n)]


@router.get("/stats", response_model=BrokerStats)
async def stats(request: Request) -> BrokerStats:
    """All-time reward-sparsity totals from Redis (durable; the Prometheus gauges are a recent window)."""
    settings, state = _state(request)
    s = await state.stats()
    get = lambda name: int(s.get(name, 0))  # noqa: E731
    n = len(settings.ghpo.hint_ladder) + 1
    attempts, rescues = _levels(s, "att", n), _levels(s, "res", n)
    return BrokerStats(
        policy=settings.policy,
        ladder=list(settings.ghpo.hint_ladder),
        prompts=get("prompts"),
        groups=get("groups"),
        nohint_groups=get("nohint_groups"),
        difficult_groups=get("difficult"),
        difficult_fraction=_ratio(get("difficult"), get("nohint_groups")),
        nohint_accuracy=_ratio(get("nohint_correct"), get("nohint_rollouts")),
        zero_advantage_fraction=_ratio(get("zero_adv"), get("groups")),
        final_level_groups=list(_levels(s, "final", n)),
        level_attempts=list(attempts),
        level_rescues=list(rescues),
        rescue_rate=[_ratio(r, a) for r, a in zip(rescues, attempts, strict=True)],
        duplicates=get("duplicates"),
    )


@router.get("/snapshot")
async def snapshot(request: Request) -> StreamingResponse:
    """The whole state as NDJSON (header line, then one line per prompt), for trainer checkpoints."""
    settings, state = _state(request)
    header = {
        "policy": settings.policy,
        "ladder": list(settings.ghpo.hint_ladder),
        "key_prefix": settings.key_prefix,
    }
    lines = state.snapshot_lines(header)
    first = await anext(lines)  # fail with 503 here, before the 200 status line goes out

    async def stream():
        yield first
        async for line in lines:
            yield line

    return StreamingResponse(
        stream(),
        media_type=NDJSON,
        headers={"Content-Disposition": "attachment; filename=broker-snapshot.ndjson"},
    )


@router.put("/snapshot", response_model=RestoreResponse)
async def restore(request: Request) -> RestoreResponse:
    """Replace the whole state with a snapshot (validated in full first; 422 naming the bad line)."""
    settings, state = _state(request)
    body = await request.body()
    return RestoreResponse(prompts=await state.restore(body, PROMPT_ID, list(settings.ghpo.hint_ladder)))
