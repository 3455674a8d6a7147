"""The broker's state in Redis: plan reads, the atomic idempotent outcome script, prompt state, stats,
snapshot and restore.

Layout under the key prefix P (default "ghpo:broker:"):
- `P p:<prompt_id>` hash: visits; n<k>/c<k>/w<k> groups, correct and wrong rollouts at level k;
  last_ok (last level whose group had non-zero reward variance); last_start, last_final, last_final_c,
  last_final_g, last_step, last_version (the most recent outcome by step).
- `P u:<prompt_id>:<update_id>` string with a TTL (update_id_ttl_s): the record that this update was
  applied. It is the idempotency record, bounded in time rather than count: a retry or duplicate inside
  the TTL is skipped; prompts x steps within a week is a few million small keys at most.
- `P stats` hash: running totals for /v1/stats (groups, difficult, zero_adv, final<k>, att<k>, res<k>...).

Every outcome batch is ONE Lua script (record_outcomes.lua, run by EVALSHA via register_script): Redis
runs it atomically, so a batch is applied entirely or not at all, and a duplicated update id (even two
concurrent copies of the same request) is applied once. Batches are validated in full before the script
runs. A plan batch's reads are one read-only script too (read_memories.lua: one reply to parse instead
of one per prompt); snapshots read in pipelined SCAN chunks; restore writes in one MULTI/EXEC.
Redis connection failures become `Unavailable` (503 + Retry-After).

Not here: HTTP (api.py), the policy decisions (policies.py), Prometheus (metrics.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from importlib.resources import files
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ghpo.services.broker.policies import Memory, PolicyConfig, plan
from ghpo.shared.errors import Unavailable, Unprocessable

SNAPSHOT_FORMAT = "ghpo-broker-snapshot/1"
MEMORY_FIELDS = ("last_start", "last_final", "last_final_c", "last_final_g", "last_step")
_STATE_FIELD = re.compile(
    r"^(visits|last_ok|last_start|last_final|last_final_c|last_final_g|last_step|last_version|[ncw]\d{1,2})$"
)
_STATS_FIELD = re.compile(
    r"^(prompts|groups|duplicates|zero_adv|nohint_groups|nohint_correct|nohint_rollouts|difficult|(final|att|res)\d{1,2})$"
)
_SCAN_COUNT = 1000
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

Results = Sequence[tuple[int, int, int]]


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def memory_from(values: Sequence[Any]) -> Memory:
    return Memory(*(_int(v) for v in values))


class BrokerState:
    """Async access to the broker's keys; one instance per app, created in the lifespan."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float, update_id_ttl_s: int, retry_after_s: int):
        self.url = url
        self.prefix = prefix
        self.ttl = update_id_ttl_s
        self.retry_after_s = retry_after_s
        # One retry on a dropped connection: safe for outcomes because they are idempotent by update id.
        self.redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )
        package = files("ghpo.services.broker")
        self._record = self.redis.register_script(package.joinpath("record_outcomes.lua").read_text())
        self._read = self.redis.register_script(package.joinpath("read_memories.lua").read_text())
        self.stats_key = f"{prefix}stats"

    def prompt_key(self, prompt_id: str) -> str:
        return f"{self.prefix}p:{prompt_id}"

    def update_key(self, prompt_id: str, update_id: str) -> str:
        return f"{self.prefix}u:{prompt_id}:{update_id}"

    def unavailable(self, exc: BaseException) -> Unavailable:
        return Unavailable(
            f"Redis is unreachable: {type(exc).__name__}: {exc}", retry_after=self.retry_after_s
        )

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except REDIS_ERRORS:
            return False

    async def memories(self, prompt_ids: Sequence[str]) -> list[Memory]:
        try:
            flat = await self._read(keys=[self.prompt_key(pid) for pid in prompt_ids])
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        width = len(MEMORY_FIELDS)
        return [memory_from(flat[i : i + width]) for i in range(0, len(flat), width)]

    async def record(self, outcomes: Sequence[tuple[str, str, int, int, Results]]) -> list[bool]:
        """Apply (prompt_id, update_id, step, policy_version, results) outcomes; True where applied."""
        keys = [self.stats_key]
        args: list[Any] = [self.ttl, len(outcomes)]
        for prompt_id, update_id, step, version, results in outcomes:
            keys += [self.prompt_key(prompt_id), self.update_key(prompt_id, update_id)]
            args += [step, version, len(results)]
            for level, correct, g in results:
                args += [level, correct, g]
        try:
            flags = await self._record(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        return [bool(f) for f in flags]

    async def prompt(self, prompt_id: str) -> dict[str, str]:
        try:
            return await self.redis.hgetall(self.prompt_key(prompt_id))
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    async def stats(self) -> dict[str, str]:
        try:
            return await self.redis.hgetall(self.stats_key)
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    async def _keys(self, pattern: str) -> list[str]:
        return [k async for k in self.redis.scan_iter(match=f"{self.prefix}{pattern}", count=_SCAN_COUNT)]

    async def snapshot_lines(self, header: dict[str, Any]) -> AsyncIterator[bytes]:
        """NDJSON: a header line {format, stats, ...} then one {prompt_id, fields} line per prompt.

        Read in SCAN chunks, so it is not a point-in-time view if outcomes arrive meanwhile; take it
        between trainer steps (as checkpoints do).
        """
        try:
            stats = await self.redis.hgetall(self.stats_key)
            yield (json.dumps({"format": SNAPSHOT_FORMAT, **header, "stats": stats}) + "\n").encode()
            batch: list[str] = []
            start = len(self.prefix) + 2
            async for key in self.redis.scan_iter(match=f"{self.prefix}p:*", count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _SCAN_COUNT:
                    for line in await self._dump(batch, start):
                        yield line
                    batch = []
            for line in await self._dump(batch, start):
                yield line
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc

    async def _dump(self, keys: list[str], start: int) -> list[bytes]:
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        return [
            (json.dumps({"prompt_id": key[start:], "fields": row}) + "\n").encode()
            for key, row in zip(keys, rows, strict=True)
            if row
        ]

    async def restore(self, body: bytes, prompt_id_pattern: re.Pattern[str], ladder: list[float]) -> int:
        """Replace the whole state (prompts, stats, applied update ids) by a snapshot; returns prompts.

        The snapshot is parsed and validated completely first (422 naming the line), then written in one
        MULTI/EXEC transaction. Applied-update records are cleared: a trainer resuming from a checkpoint
        may legitimately re-send the update ids of steps after it.
        """
        stats, prompts = parse_snapshot(body, prompt_id_pattern, ladder)
        try:
            old = await self._keys("p:*") + await self._keys("u:*") + [self.stats_key]
            async with self.redis.pipeline(transaction=True) as pipe:
                for i in range(0, len(old), _SCAN_COUNT):
                    pipe.delete(*old[i : i + _SCAN_COUNT])
                if stats:
                    pipe.hset(self.stats_key, mapping=stats)
                for pid, fields in prompts.items():
                    pipe.hset(self.prompt_key(pid), mapping=fields)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise self.unavailable(exc) from exc
        return len(prompts)


def parse_snapshot(
    body: bytes, prompt_id_pattern: re.Pattern[str], ladder: list[float]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    lines = [line for line in body.split(b"\n") if line.strip()]
    if not lines:
        raise Unprocessable("empty snapshot: expected a header line", field="snapshot.0")
    try:
        header = json.loads(lines[0])
    except ValueError as exc:
        raise Unprocessable(f"line 0 is not JSON: {exc}", field="snapshot.0") from None
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        raise Unprocessable(
            f"line 0 must be a header with format {SNAPSHOT_FORMAT!r}", field="snapshot.0.format"
        )
    if header.get("ladder") != ladder:
        # Levels are indices into the ladder: counts taken under another ladder would mean other hints.
        raise Unprocessable(
            f"snapshot ladder {header.get('ladder')!r} differs from this broker's {ladder!r}",
            field="snapshot.0.ladder",
        )
    stats = _int_fields(header.get("stats", {}), _STATS_FIELD, "snapshot.0.stats")
    prompts: dict[str, dict[str, int]] = {}
    for i, line in enumerate(lines[1:], start=1):
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise Unprocessable(f"line {i} is not JSON: {exc}", field=f"snapshot.{i}") from None
        if not isinstance(row, dict) or set(row) != {"prompt_id", "fields"}:
            raise Unprocessable(f"line {i} must be {{prompt_id, fields}}", field=f"snapshot.{i}")
        pid = row["prompt_id"]
        if not isinstance(pid, str) or not prompt_id_pattern.match(pid) or len(pid) > 128:
            raise Unprocessable(
                f"line {i}: invalid prompt_id {str(pid)[:80]!r}", field=f"snapshot.{i}.prompt_id"
            )
        if pid in prompts:
            raise Unprocessable(f"line {i}: prompt {pid!r} appears twice", field=f"snapshot.{i}.prompt_id")
        prompts[pid] = _int_fields(row["fields"], _STATE_FIELD, f"snapshot.{i}.fields")
    return stats, prompts


def _int_fields(fields: Any, allowed: re.Pattern[str], where: str) -> dict[str, int]:
    if not isinstance(fields, dict):
        raise Unprocessable("must be an object of counters", field=where)
    out = {}
    for name, value in fields.items():
        if not allowed.match(name):
            raise Unprocessable(f"unknown field {name!r}", field=f"{where}.{name}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise Unprocessable(f"{value!r} is not an integer", field=f"{where}.{name}") from None
        if not -1 <= number <= 2**53:
            raise Unprocessable(f"{number} is out of range", field=f"{where}.{name}")
        out[name] = number
    return out


def plans_for(cfg: PolicyConfig, memories: Sequence[Memory], step: int) -> list[tuple[int, int]]:
    return [(p.start_level, p.max_level) for p in (plan(cfg, m, step) for m in memories)]
