"""The durable group queue and batch delivery in Redis: enqueue, next batch, ack, redelivery, drops.

Why lists and a pending zset rather than streams with consumer groups: a batch is formed at delivery
time (whole groups, stale ones dropped first, against the trainer's version *then*), must keep its id and
contents across redeliveries, and its acknowledgement must settle the positions of exactly its groups in
the same atomic step. Streams would give per-entry ids and a PEL but not batch-level ids nor the
settle step, so they would need the same bookkeeping on top. Every state change below is one Lua script,
so Redis applies it whole or not at all, and the rollout server keeps no queue state in memory: a kill -9
between any two calls loses nothing that was queued or delivered, and duplicates nothing.

Keys under the prefix P (see cursor.py for draws/claims/owner/trained/done/meta):
- `P groups`  hash g -> ScoredGroup JSON     `P gver` hash g -> oldest policy version of the group
- `P ready`   list of g, FIFO (RPUSH on enqueue, LPOP when a batch is formed)
- `P batch_seq` counter (batch ids are b<seq>-<run>, run: `P meta` field, one per Redis state);
  `P batches` hash batch_id -> "g1,g2,..."; `P deliveries` hash batch_id -> n
- `P pending` zset batch_id -> redelivery deadline (ms): delivered, not yet acknowledged
- `P dropped` hash DropReason -> groups (all time); `P acked_groups` counter; `P version` trainer version
- `P stats` hash of generation counters (all time, every server): completions_generated, groups_sampled,
  difficult_groups, no_signal_groups (the study's generation budget and signal figures)

The scripts build key names from the prefix instead of declaring them in KEYS: fine on a standalone
Redis/Valkey (what deploy/ runs), not on Redis Cluster. What this module does not do: generate or score
anything, or decide admission (producer.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from ghpo.services.rollout.cursor import SETTLE_LUA

_ENQUEUE = """
local P, g, me, body, version = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('HGET', P .. 'owner', g) ~= me then return 0 end
redis.call('ZREM', P .. 'claims', g)
redis.call('HDEL', P .. 'owner', g)
redis.call('HSET', P .. 'groups', g, body)
redis.call('HSET', P .. 'gver', g, version)
redis.call('RPUSH', P .. 'ready', g)
return 1
"""

_DROP = (
    SETTLE_LUA
    + """
local P, g, me, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', P .. 'owner', g) ~= me then return 0 end
redis.call('ZREM', P .. 'claims', g)
redis.call('HDEL', P .. 'owner', g)
settle(P, tonumber(g))
redis.call('HINCRBY', P .. 'dropped', reason, 1)
return 1
"""
)

# Returns {batch_id, delivery, stale_dropped, stale_lags..., '|', versions..., '|', bodies...}.
_NEXT = (
    SETTLE_LUA
    + """
local P, B, now, deadline, floor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local function reply(id, delivery, stale, lags, members)
  local out = {id, delivery, stale}
  for _, lag in ipairs(lags) do table.insert(out, lag) end
  table.insert(out, '|')
  if #members == 0 then return out end
  for _, v in ipairs(redis.call('HMGET', P .. 'gver', unpack(members))) do table.insert(out, v) end
  table.insert(out, '|')
  for _, b in ipairs(redis.call('HMGET', P .. 'groups', unpack(members))) do table.insert(out, b) end
  return out
end
local due = redis.call('ZRANGEBYSCORE', P .. 'pending', '-inf', now, 'LIMIT', 0, 1)
if #due > 0 then
  local id = due[1]
  redis.call('ZADD', P .. 'pending', deadline, id)
  local delivery = redis.call('HINCRBY', P .. 'deliveries', id, 1)
  local members = {}
  for g in string.gmatch(redis.call('HGET', P .. 'batches', id), '[^,]+') do table.insert(members, g) end
  return reply(id, delivery, 0, {}, members)
end
local got, lags, stale = {}, {}, 0
while #got < B do
  local g = redis.call('LPOP', P .. 'ready')
  if not g then break end
  local v = tonumber(redis.call('HGET', P .. 'gver', g))
  if v < floor then
    stale = stale + 1
    table.insert(lags, floor - v)
    redis.call('HDEL', P .. 'groups', g)
    redis.call('HDEL', P .. 'gver', g)
    settle(P, tonumber(g))
  else
    table.insert(got, g)
  end
end
if stale > 0 then redis.call('HINCRBY', P .. 'dropped', 'stale_policy', stale) end
if #got < B then
  for i = #got, 1, -1 do redis.call('LPUSH', P .. 'ready', got[i]) end
  return reply('', 0, stale, lags, {})
end
-- 'b<seq>-<run>': <run> names this Redis state (cursor.py check_dataset), so ids never repeat across a
-- resume onto a new Redis, where batch_seq starts again (state from before run tags: 'b<seq>').
local run = redis.call('HGET', P .. 'meta', 'run')
local id = 'b' .. redis.call('INCR', P .. 'batch_seq') .. (run and ('-' .. run) or '')
redis.call('HSET', P .. 'batches', id, table.concat(got, ','))
redis.call('HSET', P .. 'deliveries', id, 1)
redis.call('ZADD', P .. 'pending', deadline, id)
return reply(id, 1, stale, lags, got)
"""
)

_ACK = (
    SETTLE_LUA
    + """
local P, id = ARGV[1], ARGV[2]
if redis.call('ZREM', P .. 'pending', id) == 0 then return -1 end
local n = 0
for g in string.gmatch(redis.call('HGET', P .. 'batches', id), '[^,]+') do
  settle(P, tonumber(g))
  redis.call('HDEL', P .. 'groups', g)
  redis.call('HDEL', P .. 'gver', g)
  n = n + 1
end
redis.call('HDEL', P .. 'batches', id)
redis.call('HDEL', P .. 'deliveries', id)
redis.call('INCRBY', P .. 'acked_groups', n)
return n
"""
)

_SET_VERSION = """
local key, v = ARGV[1], tonumber(ARGV[2])
local old = tonumber(redis.call('GET', key) or '0')
if v > old then redis.call('SET', key, v) return v end
return old
"""


@dataclass
class Delivery:
    """What `next_batch` took out of Redis: a batch (or none) and the groups it dropped as stale."""

    batch_id: str | None
    delivery: int
    stale_lags: list[int]
    versions: list[int]
    bodies: list[str]


@dataclass
class QueueCounts:
    queued: int
    in_flight: int
    unacked: int


class GroupQueue:
    """Async access to the queue keys; one instance per app, created in the lifespan."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, owner: str):
        self.redis = redis
        self.prefix = prefix
        self.owner = owner
        self._enqueue = redis.register_script(_ENQUEUE)
        self._drop = redis.register_script(_DROP)
        self._next = redis.register_script(_NEXT)
        self._ack = redis.register_script(_ACK)
        self._set_version = redis.register_script(_SET_VERSION)

    async def enqueue(self, g: int, body: str, oldest_version: int) -> bool:
        """Queue a finished group; False when our claim on its position was lost (nothing written)."""
        return bool(await self._enqueue(args=[self.prefix, g, self.owner, body, oldest_version], keys=[]))

    async def drop(self, g: int, reason: str) -> bool:
        """Settle a claimed position as dropped with `reason`; False when the claim was not ours."""
        return bool(await self._drop(args=[self.prefix, g, self.owner, reason], keys=[]))

    async def next_batch(self, batch_groups: int, now_ms: int, ack_timeout_ms: int, floor: int) -> Delivery:
        """A due redelivery, else a new batch of `batch_groups` fresh groups (stale ones dropped)."""
        reply = await self._next(
            args=[self.prefix, batch_groups, now_ms, now_ms + ack_timeout_ms, floor], keys=[]
        )
        batch_id, delivery, _stale = reply[0], int(reply[1]), int(reply[2])
        rest = reply[3:]
        bar = rest.index("|")
        lags = [int(x) for x in rest[:bar]]
        rest = rest[bar + 1 :]
        if not batch_id:
            return Delivery(None, 0, lags, [], [])
        bar = rest.index("|")
        versions = [int(x) for x in rest[:bar]]
        return Delivery(batch_id, delivery, lags, versions, list(rest[bar + 1 :]))

    async def ack(self, batch_id: str) -> int | None:
        """Acknowledge a delivered batch; its groups' positions are settled. None if unknown/already."""
        n = int(await self._ack(args=[self.prefix, batch_id], keys=[]))
        return None if n < 0 else n

    async def set_version(self, version: int) -> int:
        """Record the trainer's policy version (monotonic); returns the version now stored."""
        return int(await self._set_version(args=[self.prefix + "version", version], keys=[]))

    async def version(self) -> int:
        return int(await self.redis.get(self.prefix + "version") or 0)

    async def counts(self, now_ms: int) -> QueueCounts:
        """Queued groups, live claims (expired ones belong to dead servers: not counted), unacked batches."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.prefix + "ready")
            pipe.zcount(self.prefix + "claims", now_ms, "+inf")
            pipe.zcard(self.prefix + "pending")
            queued, in_flight, unacked = await pipe.execute()
        return QueueCounts(int(queued), int(in_flight), int(unacked))

    async def dropped(self) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.redis.hgetall(self.prefix + "dropped")).items()}

    async def acked_groups(self) -> int:
        return int(await self.redis.get(self.prefix + "acked_groups") or 0)

    async def add_stats(self, counts: dict[str, int]) -> None:
        """Add one step's generation counters (one transaction: all of a step's figures or none)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, n in counts.items():
                if n:
                    pipe.hincrby(self.prefix + "stats", name, n)
            await pipe.execute()

    async def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.redis.hgetall(self.prefix + "stats")).items()}
