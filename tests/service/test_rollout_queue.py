"""The rollout server's Redis queue and cursor against a real Redis server: claims, enqueue, batches,
redelivery, acks, stale drops, the trained cursor and rewinds. No HTTP, no model."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis

from ghpo.services.rollout.cursor import Cursor, epoch_order
from ghpo.services.rollout.queue import GroupQueue

SIZE = 10


def run(coro):
    return asyncio.run(coro)


async def _open(url: str, owner: str = "a", ttl: float = 60.0):
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    cursor = Cursor(redis, "t:", SIZE, owner=owner, claim_ttl_s=ttl)
    return redis, cursor, GroupQueue(redis, "t:", owner=owner)


async def _fill(cursor: Cursor, queue: GroupQueue, n: int, version: int = 0, now: int = 1000) -> list[int]:
    draws = await cursor.draw(n, now)
    for g in draws:
        assert await queue.enqueue(g, json.dumps({"g": g}), version)
    return draws


def test_epoch_order_is_a_seeded_permutation():
    assert sorted(epoch_order(0, 0, 50)) == list(range(50))
    assert epoch_order(0, 0, 50) == epoch_order(0, 0, 50)
    assert epoch_order(0, 0, 50) != epoch_order(0, 1, 50)
    assert epoch_order(0, 0, 50) != epoch_order(1, 0, 50)


def test_batches_hold_whole_groups_and_an_unacked_batch_is_redelivered_with_its_id(redis_url):
    async def scenario():
        redis, cursor, queue = await _open(redis_url)
        await _fill(cursor, queue, 3)
        first = await queue.next_batch(2, now_ms=2000, ack_timeout_ms=1000, floor=0)
        assert first.batch_id and first.delivery == 1 and len(first.bodies) == 2
        assert (await queue.next_batch(2, 2000, 1000, 0)).batch_id is None  # one group left: no partial
        again = await queue.next_batch(2, now_ms=3001, ack_timeout_ms=1000, floor=0)
        assert (again.batch_id, again.delivery, again.bodies) == (first.batch_id, 2, first.bodies)
        assert await queue.ack(first.batch_id) == 2
        assert await queue.ack(first.batch_id) is None  # a repeated ack changes nothing
        assert (await queue.next_batch(2, 9000, 1000, 0)).batch_id is None  # acked: never redelivered
        assert await cursor.trained() == (0, 2)
        await redis.aclose()

    run(scenario())


def test_stale_groups_are_dropped_at_delivery_and_counted(redis_url):
    async def scenario():
        redis, cursor, queue = await _open(redis_url)
        await _fill(cursor, queue, 2, version=0)
        await _fill(cursor, queue, 2, version=3)
        got = await queue.next_batch(2, 2000, 1000, floor=2)
        assert got.stale_lags == [2, 2] and got.versions == [3, 3]
        assert [json.loads(b)["g"] for b in got.bodies] == [2, 3]
        assert await queue.dropped() == {"stale_policy": 2}
        assert await cursor.trained() == (0, 2)  # the dropped positions are settled
        await redis.aclose()

    run(scenario())


def test_claims_of_a_dead_server_are_drawn_again_and_the_dead_server_cannot_enqueue(redis_url):
    async def scenario():
        redis, dead, dead_queue = await _open(redis_url, owner="dead", ttl=1.0)
        _, alive, alive_queue = await _open(redis_url, owner="alive", ttl=1.0)
        assert await dead.draw(3, now_ms=1000) == [0, 1, 2]
        assert await alive.draw(2, now_ms=1500) == [3, 4]  # dead's claims have not expired yet
        assert await alive.draw(4, now_ms=2200) == [0, 1, 2, 5]  # expired claims come first
        assert not await dead_queue.enqueue(0, "{}", 0)
        assert await alive_queue.enqueue(0, "{}", 0)
        assert (await alive_queue.counts(now_ms=2200)).queued == 1
        await redis.aclose()

    run(scenario())


def test_draws_run_across_epochs_and_rewind_drops_everything_pending(redis_url):
    async def scenario():
        redis, cursor, queue = await _open(redis_url)
        draws = await _fill(cursor, queue, SIZE + 2)
        assert draws[-1] == SIZE + 1 and await cursor.next_draw() == (1, 2)
        batch = await queue.next_batch(4, 2000, 1000, 0)
        await cursor.draw(1, 2000)  # one claim in flight
        dropped = await cursor.rewind(epoch=0, position=5, batch_groups=4)
        assert dropped == SIZE + 2 + 1  # 8 queued + 4 unacked + 1 in flight
        assert await queue.dropped() == {"rewound": dropped}
        assert await cursor.trained() == (0, 5) and await cursor.next_draw() == (0, 5)
        assert await queue.ack(batch.batch_id) is None
        assert await cursor.draw(1, 3000) == [5]
        assert await queue.acked_groups() == 0
        await cursor.rewind(epoch=0, position=5, batch_groups=4, acked_groups=7)
        assert await queue.acked_groups() == 7  # set back with the cursor when given
        await cursor.rewind(epoch=0, position=5, batch_groups=4)
        assert await queue.acked_groups() == 7  # left as it is when not
        await redis.aclose()

    run(scenario())
