"""One GHPOConfig across the deployment: the broker answers the GHPO settings it plans with, and a rollout
server whose settings differ refuses to start, naming each differing key with the broker's value and its
own. Real broker over HTTP, real Redis; the rollout app's own start-up (lifespan) is what refuses."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from ghpo.services.broker.app import create_app as create_broker
from ghpo.services.broker.settings import Settings as BrokerSettings
from ghpo.services.rollout.app import agree_with_broker
from ghpo.services.rollout.app import create_app as create_rollout
from ghpo.services.rollout.settings import Settings as RolloutSettings
from ghpo.shared.algorithm.config import ConfigError, GHPOConfig
from ghpo.shared.http import ServiceClient

TOKEN = "agreement-test-token"
SHORT = GHPOConfig(hint_ladder=(0.25, 0.5), cold_start_steps=0)


@pytest.fixture
def broker_url(serve_app, redis_url):
    return serve_app(create_broker(BrokerSettings(redis_url=redis_url, token=TOKEN, ghpo=SHORT)))


def rollout_settings(broker_url: str, redis_url: str, ghpo: GHPOConfig) -> RolloutSettings:
    return RolloutSettings(
        inference_urls=["http://127.0.0.1:9"],  # never reached: the server must not get that far
        broker_url=broker_url,
        upstream_token=TOKEN,
        upstream_budget_s=5,
        redis_url=redis_url,
        arith_per_level=5,
        arith_levels=[1],
        ghpo=ghpo,
    )


def start_and_stop(app: FastAPI) -> None:
    """Run the app's start-up and shutdown (its lifespan), as uvicorn would, within a minute."""

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(asyncio.wait_for(run(), 60))


def test_the_broker_answers_the_ghpo_settings_it_plans_with(broker_url):
    answer = httpx.get(f"{broker_url}/v1/algorithm", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert GHPOConfig.model_validate(answer.json()) == SHORT
    assert httpx.get(f"{broker_url}/v1/algorithm").status_code == 401  # behind the token like every route


def test_a_rollout_server_with_another_ladder_refuses_to_start_naming_both_values(broker_url, redis_url):
    app = create_rollout(rollout_settings(broker_url, redis_url, GHPOConfig(cold_start_steps=0)))
    with pytest.raises(ConfigError) as refused:
        start_and_stop(app)
    assert str(refused.value).startswith(
        "broker hint_ladder=[0.25, 0.5] differs from rollout's [0.25, 0.5, 0.75]; "
        "give every component the same GHPO_ALGORITHM_* settings"
    )
    assert app.state.producer is None  # refused before drawing anything


def test_every_differing_key_is_named(broker_url):
    ours = GHPOConfig(hint_ladder=(0.25, 0.5), cold_start_steps=20, condition_on="plain")

    async def check() -> None:
        async with ServiceClient(broker_url, token=TOKEN) as broker:
            await agree_with_broker(broker, SHORT)  # the same settings: no complaint
            await agree_with_broker(broker, ours)

    with pytest.raises(
        ConfigError, match="cold_start_steps=0 differs from rollout's 20; broker condition_on"
    ):
        asyncio.run(check())


def test_a_delivery_only_server_does_not_ask_the_broker(redis_url):
    settings = rollout_settings("http://127.0.0.1:9", redis_url, GHPOConfig()).model_copy(
        update={"producer_enabled": False}
    )
    start_and_stop(create_rollout(settings))  # the broker URL leads nowhere: asking it would fail
