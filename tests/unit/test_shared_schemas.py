"""ghpo.shared.schemas: unknown fields rejected, bounds enforced, cross-field rules."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from ghpo.shared.schemas.inference import GenerateRequest, Prompt, Sample, SamplingParams, WeightUpdateBegin
from ghpo.shared.schemas.rollout import Batch, Completion, ScoredGroup
from ghpo.shared.schemas.trainer import TrainerStatus


def _completion(**overrides) -> dict:
    base = {
        "token_ids": [5, 6],
        "behaviour_logprobs": [-0.1, -2.0],
        "finish_reason": "stop",
        "reward": 1.5,
        "accuracy": 1.0,
        "advantage": 0.7,
        "policy_version": 3,
    }
    return {**base, **overrides}


def _group(**overrides) -> dict:
    base = {
        "group_id": "e0:p1",
        "prompt_id": "p1",
        "epoch": 0,
        "hint_level": 1,
        "hint_ratio": 0.25,
        "prompt_token_ids": [1, 2, 3],
        "completions": [_completion()],
        "created_at": 1.7e9,
    }
    return {**base, **overrides}


def test_unknown_field_is_rejected_by_name():
    with pytest.raises(ValidationError, match="temprature"):
        SamplingParams.model_validate({"temprature": 0.5})


def test_prompt_needs_exactly_one_of_messages_or_token_ids():
    assert Prompt(token_ids=[1]).messages is None
    assert Prompt(messages=[{"role": "user", "content": "2+2?"}]).token_ids is None
    for bad in ({}, {"token_ids": [1], "messages": [{"role": "user", "content": "x"}]}, {"token_ids": []}):
        with pytest.raises(ValidationError):
            Prompt.model_validate(bad)


def test_sampling_bounds_are_enforced():
    for bad in ({"n": 0}, {"top_p": 0.0}, {"temperature": -1}, {"max_tokens": 10**7}, {"stop": ["x"] * 17}):
        with pytest.raises(ValidationError):
            SamplingParams.model_validate(bad)


def test_greedy_sampling_with_several_samples_is_refused_naming_n():
    assert SamplingParams(temperature=0.0, n=1).n == 1
    with pytest.raises(ValidationError, match="n must be 1 when temperature is 0"):
        SamplingParams(temperature=0.0, n=4)


def test_generate_request_refuses_an_empty_prompt_list():
    with pytest.raises(ValidationError, match="prompts"):
        GenerateRequest(prompts=[])


def test_sample_logprobs_must_align_with_tokens_and_be_finite():
    with pytest.raises(ValidationError, match="logprobs has 1 entries for 2 tokens"):
        Sample(token_ids=[1, 2], logprobs=[-0.5], finish_reason="stop", policy_version=0)
    with pytest.raises(ValidationError):
        Sample(token_ids=[1], logprobs=[math.nan], finish_reason="stop", policy_version=0)


def test_weight_update_begin_refuses_version_zero_and_bad_checksum():
    spec = {"name": "w", "dtype": "float32", "shape": [2, 2]}
    ok = {"version": 1, "tensors": [spec], "total_bytes": 16, "num_chunks": 1, "checksum": "0" * 64}
    WeightUpdateBegin.model_validate(ok)
    for bad in (
        {**ok, "version": 0},
        {**ok, "checksum": "xyz"},
        {**ok, "tensors": [{**spec, "dtype": "f8"}]},
    ):
        with pytest.raises(ValidationError):
            WeightUpdateBegin.model_validate(bad)


def test_scored_group_round_trips_and_reports_its_policy_versions():
    group = ScoredGroup.model_validate(_group(completions=[_completion(), _completion(policy_version=4)]))
    assert group.policy_versions == (3, 4)
    batch = Batch(batch_id="b1", groups=[group], created_at=1.7e9)
    assert Batch.model_validate_json(batch.model_dump_json()) == batch


def test_scored_group_rejects_inconsistent_hint_and_nan_reward():
    with pytest.raises(ValidationError, match="hint_ratio must be 0"):
        ScoredGroup.model_validate(_group(hint_level=0, hint_ratio=0.5))
    with pytest.raises(ValidationError, match="reward"):
        Completion.model_validate(_completion(reward=math.nan))
    with pytest.raises(ValidationError, match="behaviour_logprobs"):
        Completion.model_validate(_completion(behaviour_logprobs=[-0.1]))


def test_trainer_status_phase_is_a_closed_set():
    TrainerStatus(phase="training", step=1, policy_version=1)
    with pytest.raises(ValidationError, match="phase"):
        TrainerStatus(phase="dancing", step=1, policy_version=1)
