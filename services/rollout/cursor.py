"""Where the rollout servers are in the dataset: epoch order, position claims and the trained cursor.

Positions are global draw indices g = epoch * N + position (N = dataset size), so one Redis counter
(`INCRBY P draws k`) hands out k positions that no other rollout server can also get, across epoch
boundaries. `position` indexes the epoch's shuffled order, a permutation of the dataset fixed by
(seed, epoch) (`epoch_order`), so the same seed draws the same prompts in the same order.

A drawn position is *claimed*: `P claims` (zset g -> lease expiry, ms) and `P owner` (hash g -> server
id). The producer renews its claims while it generates; when a server dies (kill -9) its claims expire
and the next draw takes those positions again before new ones (same seeds: the same group comes out).
A claim ends when its group is enqueued (queue.py) or dropped. A server whose claim was taken over (or
removed by a rewind) can no longer enqueue that position, so nothing is ever queued twice.

The *trained* cursor is the first g not yet settled (acknowledged in a batch, or dropped): `P trained`
is that watermark and `P done` (zset) holds settled g above it; `SETTLE_LUA` advances the watermark.
`rewind` moves drawing and the watermark to a position and drops (as `rewound`) everything queued,
claimed or delivered-unacked; given a count it also sets `P acked_groups` back (a trainer resuming from a
checkpoint takes back what its lost steps acknowledged). What this module does not do: hold groups or batches (queue.py).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from functools import lru_cache

import redis.asyncio as aioredis

# Lua helper shared by every script that settles a position: mark g done, advance the watermark.
SETTLE_LUA = """
local function settle(P, g)
  redis.call('ZADD', P .. 'done', g, g)
  local w = tonumber(redis.call('GET', P .. 'trained') or '0')
  while redis.call('ZSCORE', P .. 'done', w) do
    redis.call('ZREM', P .. 'done', w)
    w = w + 1
  end
  redis.call('SET', P .. 'trained', w)
end
"""

_DRAW = """
local P, k, now, expiry, me = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local out = redis.call('ZRANGEBYSCORE', P .. 'claims', '-inf', now, 'LIMIT', 0, k)
local rest = k - #out
if rest > 0 then
  local last = redis.call('INCRBY', P .. 'draws', rest)
  for g = last - rest, last - 1 do table.insert(out, tostring(g)) end
end
for _, g in ipairs(out) do
  redis.call('ZADD', P .. 'claims', expiry, g)
  redis.call('HSET', P .. 'owner', g, me)
end
return out
"""

_RENEW = """
local P, expiry, me = ARGV[1], ARGV[2], ARGV[3]
local lost = 0
for i = 4, #ARGV do
  if redis.call('HGET', P .. 'owner', ARGV[i]) == me then
    redis.call('ZADD', P .. 'claims', 'XX', expiry, ARGV[i])
  else
    lost = lost + 1
  end
end
return lost
"""

_REWIND = (
    SETTLE_LUA
    + """
local P, target, batch, acked = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local dropped = redis.call('ZCARD', P .. 'claims') + redis.call('LLEN', P .. 'ready')
for _, id in ipairs(redis.call('ZRANGE', P .. 'pending', 0, -1)) do
  local members = redis.call('HGET', P .. 'batches', id)
  if members then
    for _ in string.gmatch(members, '[^,]+') do dropped = dropped + 1 end
  end
end
redis.call('DEL', P .. 'claims', P .. 'owner', P .. 'ready', P .. 'groups', P .. 'gver', P .. 'done',
           P .. 'pending', P .. 'batches', P .. 'deliveries')
redis.call('SET', P .. 'draws', target)
redis.call('SET', P .. 'trained', target)
if acked ~= '' then redis.call('SET', P .. 'acked_groups', acked) end
if dropped > 0 then redis.call('HINCRBY', P .. 'dropped', 'rewound', dropped) end
return dropped
"""
)


@lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, size: int) -> tuple[int, ...]:
    """Dataset indices in the order epoch `epoch` draws them: a permutation fixed by (seed, epoch)."""
    order = list(range(size))
    random.Random(f"ghpo-rollout:{seed}:{epoch}").shuffle(order)
    return tuple(order)


def split_index(g: int, size: int) -> tuple[int, int]:
    """Global draw index -> (epoch, position)."""
    return divmod(g, size)


def generation_seed(seed: int, epoch: int, position: int, level: int) -> int:
    """The sampling seed of one prompt's group at one hint level: reproducible from where it was drawn."""
    mixed = random.Random(f"ghpo-gen:{seed}:{epoch}:{position}:{level}").getrandbits(62)
    return mixed


class Cursor:
    """Draws, claims and rewinds positions in Redis for one rollout server (`owner`)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, size: int, *, owner: str, claim_ttl_s: float):
        if size < 1:
            raise ValueError("the dataset is empty: nothing to draw")
        self.redis = redis
        self.prefix = prefix
        self.size = size
        self.owner = owner
        self.claim_ttl_ms = int(claim_ttl_s * 1000)
        self._draw = redis.register_script(_DRAW)
        self._renew = redis.register_script(_RENEW)
        self._rewind = redis.register_script(_REWIND)

    async def check_dataset(self, seed: int) -> None:
        """Refuse to share a queue with servers drawing another dataset or seed (cursors would mix).

        Also names this queue state once (`P meta` field `run`, random): batch ids carry it, so a
        trainer resuming against a new Redis (nothing survived) never mistakes a new batch for one
        its checkpoint remembers as trained (the batch counter starts again at 1).
        """
        meta = self.prefix + "meta"
        await self.redis.hsetnx(meta, "size", self.size)
        await self.redis.hsetnx(meta, "seed", seed)
        await self.redis.hsetnx(meta, "run", uuid.uuid4().hex[:12])
        size, stored_seed = await self.redis.hmget(meta, ["size", "seed"])
        if int(size) != self.size or int(stored_seed) != seed:
            raise RuntimeError(
                f"Redis prefix {self.prefix!r} belongs to a run with dataset size {size} and seed "
                f"{stored_seed}; this server has {self.size} and {seed}: use another key_prefix"
            )

    async def draw(self, k: int, now_ms: int) -> list[int]:
        """Claim k positions: expired claims of dead servers first, then fresh ones."""
        got = await self._draw(args=[self.prefix, k, now_ms, now_ms + self.claim_ttl_ms, self.owner], keys=[])
        return [int(g) for g in got]

    async def renew(self, positions: Sequence[int], now_ms: int) -> int:
        """Extend our claims; returns how many were no longer ours."""
        if not positions:
            return 0
        args = [self.prefix, now_ms + self.claim_ttl_ms, self.owner, *positions]
        return int(await self._renew(args=args, keys=[]))

    async def rewind(
        self, epoch: int, position: int, batch_groups: int, acked_groups: int | None = None
    ) -> int:
        """Move drawing and the trained cursor to (epoch, position), and set the acknowledged-groups count
        back when given; returns groups dropped as rewound."""
        if not 0 <= position < self.size:
            raise ValueError(f"position must be in 0..{self.size - 1} (the dataset size is {self.size})")
        target = epoch * self.size + position
        acked = "" if acked_groups is None else str(acked_groups)
        return int(await self._rewind(args=[self.prefix, target, batch_groups, acked], keys=[]))

    async def trained(self) -> tuple[int, int]:
        return split_index(int(await self.redis.get(self.prefix + "trained") or 0), self.size)

    async def next_draw(self) -> tuple[int, int]:
        return split_index(int(await self.redis.get(self.prefix + "draws") or 0), self.size)
