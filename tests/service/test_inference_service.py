"""The inference service over real HTTP with a real vLLM engine (CPU build) and a tiny random Qwen2 model.

One server (and engine) per module: vLLM takes tens of seconds to start on CPU. Tests do not depend on
each other's order: each reads the served version and pushes versions above it. The model is built here
from a config (random weights, the project's tiny tokenizer), not the SFT'd tiny model, whose build takes
minutes: these tests need a Qwen2 checkpoint, not a good one.
"""

from __future__ import annotations

import hashlib
import threading
import time

import httpx
import pytest

pytest.importorskip("vllm")

import torch
from safetensors.torch import save

from ghpo.services.inference.app import create_app
from ghpo.services.inference.settings import Settings
from ghpo.shared.errors import Conflict
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.serving import running_app
from ghpo.trainer.tiny.random_model import build_random_qwen2
from ghpo.trainer.train.push_http import HEADER_ROOM_BYTES, pack_chunks, push_weights, tensor_specs
from ghpo.trainer.train.push_nccl import push_weights_nccl

pytestmark = pytest.mark.slow

TOKEN = "inference-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_MODEL_LEN = 256
READY_TIMEOUT_S = 600
# fp32 on both sides; vLLM's CPU kernels sum in another order than torch's, so not bit-equal.
LOGPROB_TOLERANCE = 1e-3
# Several chunks for the ~1.3 MB model, and smaller than its embedding (~160 KiB) and MLP matrices (128 KiB),
# which therefore travel as byte-range slices.
CHUNK_BYTES = 96 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_random_qwen2(tmp_path_factory.mktemp("tiny-qwen2") / "model")


@pytest.fixture(scope="module")
def service(model_dir):
    settings = Settings(
        model=str(model_dir),
        token=TOKEN,
        max_model_len=MAX_MODEL_LEN,
        kv_cache_gib=1,
        max_chunk_bytes=CHUNK_BYTES,
        max_body_bytes=1024 * 1024,
    )
    app = create_app(settings)
    with running_app(app) as url:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "engine did not load"
            time.sleep(0.5)
        yield url


@pytest.fixture
def client(service):
    with SyncServiceClient(service, token=TOKEN, timeout=120, total_budget=300) as c:
        yield c


def generate(url: str, prompts: list[dict], **sampling) -> httpx.Response:
    body = {"prompts": prompts, "sampling": sampling}
    return httpx.post(f"{url}/v1/generate", json=body, headers=AUTH, timeout=300)


def samples(response: httpx.Response) -> list[list[list[int]]]:
    assert response.status_code == 200, response.text
    return [[s["token_ids"] for s in r["samples"]] for r in response.json()["results"]]


def served_version(url: str) -> int:
    return httpx.get(f"{url}/v1/weights", headers=AUTH).json()["policy_version"]


def new_weights(model_dir, seed: int) -> dict[str, torch.Tensor]:
    """A full set of checkpoint tensors: the served ones, perturbed with seeded noise."""
    from safetensors.torch import load_file

    base = load_file(model_dir / "model.safetensors")
    generator = torch.Generator().manual_seed(seed)
    return {name: t + 0.05 * torch.randn(t.shape, generator=generator) for name, t in base.items()}


PROMPTS = [{"token_ids": [10, 20, 30, 40]}, {"messages": [{"role": "user", "content": "What is 12 + 34?"}]}]


def test_same_seed_gives_same_samples_and_each_sample_is_complete(service):
    first = generate(service, PROMPTS, n=4, max_tokens=12, seed=7, temperature=1.0)
    again = generate(service, PROMPTS, n=4, max_tokens=12, seed=7, temperature=1.0)
    other = generate(service, PROMPTS, n=4, max_tokens=12, seed=8, temperature=1.0)
    assert samples(first) == samples(again)
    assert samples(first) != samples(other)
    version = served_version(service)
    for result in first.json()["results"]:
        assert len(result["samples"]) == 4
        assert len({tuple(s["token_ids"]) for s in result["samples"]}) > 1  # G samples differ
        for s in result["samples"]:
            assert len(s["logprobs"]) == len(s["token_ids"]) > 0
            assert all(lp <= 0.0 for lp in s["logprobs"])
            assert s["policy_version"] == version
            assert s["finish_reason"] in ("stop", "length")
    chat = first.json()["results"][1]["prompt_token_ids"]
    assert len(chat) > 5  # rendered with the chat template, not empty


def test_update_changes_samples_and_bumps_the_version(service, client, model_dir):
    before_version = served_version(service)
    before = samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0))
    status = push_weights(client, new_weights(model_dir, seed=before_version + 100), before_version + 1)
    assert status.policy_version == before_version + 1 and status.pending_update is None
    after = generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0)
    assert samples(after) != before
    assert {s["policy_version"] for r in after.json()["results"] for s in r["samples"]} == {
        before_version + 1
    }
    assert served_version(service) == before_version + 1
    metrics = httpx.get(f"{service}/metrics").text
    assert f"ghpo_inference_weights_version {float(before_version + 1)}" in metrics


def test_returned_logprobs_match_a_transformers_forward_pass(service, client, model_dir):
    from transformers import Qwen2ForCausalLM

    version = served_version(service) + 1
    weights = new_weights(model_dir, seed=version + 200)
    push_weights(client, weights, version)
    response = generate(service, PROMPTS, n=3, max_tokens=24, temperature=1.0, seed=3)
    assert response.status_code == 200, response.text
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.load_state_dict(weights, strict=False)  # lm_head is tied to embed_tokens
    model.eval()
    worst = 0.0
    for result in response.json()["results"]:
        prompt = result["prompt_token_ids"]
        for s in result["samples"]:
            ids = torch.tensor([prompt + s["token_ids"]])
            with torch.no_grad():
                logits = model(ids).logits[0, len(prompt) - 1 : -1]
            expected = torch.log_softmax(logits.float(), -1).gather(
                -1, torch.tensor(s["token_ids"])[:, None]
            )[:, 0]
            worst = max(worst, (expected - torch.tensor(s["logprobs"])).abs().max().item())
    assert worst < LOGPROB_TOLERANCE, f"max |logprob difference| {worst}"


def _begin(url, body) -> httpx.Response:
    return httpx.post(f"{url}/v1/weights/updates", json=body, headers=AUTH)


def _chunk(url, update_id, index, data, checksum=None, piece=None) -> httpx.Response:
    params = {"checksum": checksum or hashlib.sha256(data).hexdigest()}
    if piece is not None:
        params.update(tensor=piece.tensor, start=piece.start, stop=piece.stop)
    return httpx.put(
        f"{url}/v1/weights/updates/{update_id}/chunks/{index}", content=data, params=params, headers=AUTH
    )


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_each_bad_update_is_rejected_naming_the_problem_and_nothing_changes(service, model_dir):
    version = served_version(service)
    greedy = samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0))
    weights = new_weights(model_dir, seed=999)
    # The small tensors in whole-tensor chunks for the checks below (bad slices: their own test).
    weights = {n: t for n, t in weights.items() if t.numel() * t.element_size() < CHUNK_BYTES // 2}
    chunks = [c.body for c in pack_chunks(weights, 40 * 1024)]
    big = {n: t for n, t in new_weights(model_dir, seed=999).items() if n not in weights}
    big_chunks = pack_chunks(big, CHUNK_BYTES - 16 * 1024)  # some of them slices
    assert len(chunks) > 2 and any(c.piece is not None for c in big_chunks)
    checksum = hashlib.sha256(b"".join(chunks + [c.body for c in big_chunks])).hexdigest()
    specs = [s.model_dump() for s in tensor_specs(weights)] + [s.model_dump() for s in tensor_specs(big)]
    begin = {
        "version": version + 1,
        "tensors": specs,
        "total_bytes": sum(map(len, chunks)) + sum(len(c.body) for c in big_chunks),
        "num_chunks": len(chunks) + len(big_chunks),
        "checksum": checksum,
    }
    # stale or repeated version
    if version > 0:
        assert "not newer" in _error(_begin(service, {**begin, "version": version}), 409)["message"]
    # bad specs at begin
    renamed = [dict(specs[0], name="model.layers.0.mlp.wrong.weight"), *specs[1:]]
    err = _error(_begin(service, {**begin, "tensors": renamed}), 422)
    assert err["field"] == "tensors.0.name" and "unknown tensor name" in err["message"]
    reshaped = [dict(specs[0], shape=[1, 2]), *specs[1:]]
    assert _error(_begin(service, {**begin, "tensors": reshaped}), 422)["field"] == "tensors.0.shape"
    retyped = [dict(specs[0], dtype="int64"), *specs[1:]]
    assert _error(_begin(service, {**begin, "tensors": retyped}), 422)["field"] == "tensors.0.dtype"
    assert "missing" in _error(_begin(service, {**begin, "tensors": specs[1:]}), 422)["message"]
    assert _error(_begin(service, {**begin, "tenssors": specs}), 422)["field"] == "tenssors"
    # bad chunks
    session = _begin(service, begin)
    assert session.status_code == 201, session.text
    update_id = session.json()["update_id"]
    assert (
        "checksum"
        in _error(
            _chunk(service, update_id, 0, chunks[0][:-10], checksum=hashlib.sha256(chunks[0]).hexdigest()),
            422,
        )["message"]
    )
    first_name = next(n for n, t in weights.items() if t.dim() == 2)
    nan = dict(weights)
    nan[first_name] = weights[first_name].clone()
    nan[first_name][0, 0] = float("nan")
    assert (
        "NaN or Inf"
        in _error(_chunk(service, update_id, 0, save({first_name: nan[first_name]})), 422)["message"]
    )
    wrong_shape = save({first_name: weights[first_name][:1]})
    assert "announced" in _error(_chunk(service, update_id, 0, wrong_shape), 422)["message"]
    assert "not a safetensors" in _error(_chunk(service, update_id, 0, b"garbage" * 10), 422)["message"]
    assert _chunk(service, update_id, 0, chunks[0]).status_code == 200
    assert _chunk(service, update_id, 0, chunks[0]).json()["repeated"] is True
    assert _error(_chunk(service, update_id, 1, chunks[0]), 409)["field"] == "body"  # same tensors twice
    assert _error(_chunk(service, update_id, begin["num_chunks"], chunks[1]), 422)["field"] == "index"
    # truncated upload: commit before every chunk arrived
    commit = {"version": version + 1, "checksum": checksum}
    err = _error(
        httpx.post(f"{service}/v1/weights/updates/{update_id}/commit", json=commit, headers=AUTH), 422
    )
    assert "incomplete" in err["message"]
    for index in range(1, len(chunks)):
        assert _chunk(service, update_id, index, chunks[index]).status_code == 200
    for index, chunk in enumerate(big_chunks, start=len(chunks)):
        assert _chunk(service, update_id, index, chunk.body, piece=chunk.piece).status_code == 200
    wrong = {"version": version + 1, "checksum": "0" * 64}
    err = _error(
        httpx.post(f"{service}/v1/weights/updates/{update_id}/commit", json=wrong, headers=AUTH), 422
    )
    assert "checksum" in err["message"]
    # the checksum failure discarded the update; its id is gone
    gone = httpx.post(f"{service}/v1/weights/updates/{update_id}/commit", json=commit, headers=AUTH)
    assert _error(gone, 404)["field"] == "update_id"
    assert served_version(service) == version
    assert samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0)) == greedy


EMBED = "model.embed_tokens.weight"


def _sliced_update(url, weights, version, chunks) -> str:
    body = {
        "version": version,
        "tensors": [s.model_dump() for s in tensor_specs(weights)],
        "total_bytes": sum(len(c.body) for c in chunks),
        "num_chunks": len(chunks),
        "checksum": hashlib.sha256(b"".join(c.body for c in chunks)).hexdigest(),
    }
    session = _begin(url, body)
    assert session.status_code == 201, session.text
    return session.json()["update_id"]


def _commit(url, update_id, chunks, version) -> httpx.Response:
    checksum = hashlib.sha256(b"".join(c.body for c in chunks)).hexdigest()
    body = {"version": version, "checksum": checksum}
    return httpx.post(f"{url}/v1/weights/updates/{update_id}/commit", json=body, headers=AUTH)


def test_a_tensor_bigger_than_max_chunk_bytes_travels_in_slices_and_is_served(service, client, model_dir):
    version = served_version(service)
    before = samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0))
    weights = new_weights(model_dir, seed=version + 400)
    assert len(save({EMBED: weights[EMBED]})) > CHUNK_BYTES  # refused with 413 before slicing existed
    chunks = pack_chunks(weights, CHUNK_BYTES - HEADER_ROOM_BYTES)
    embed = [c.piece for c in chunks if c.piece is not None and c.piece.tensor == EMBED]
    assert len(embed) == 2 and embed[-1].stop == weights[EMBED].numel() * 4
    status = push_weights(client, weights, version + 1, chunks=chunks)
    assert status.policy_version == version + 1
    after = generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0)
    assert samples(after) != before
    assert {s["policy_version"] for r in after.json()["results"] for s in r["samples"]} == {version + 1}


def test_bad_slices_are_rejected_and_nothing_changes(service, model_dir):
    version = served_version(service)
    greedy = samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0))
    weights = new_weights(model_dir, seed=version + 500)
    chunks = pack_chunks(weights, CHUNK_BYTES - HEADER_ROOM_BYTES)
    first, second = [i for i, c in enumerate(chunks) if c.piece is not None and c.piece.tensor == EMBED]
    piece, body = chunks[first].piece, chunks[first].body
    update_id = _sliced_update(service, weights, version + 1, chunks)
    nbytes = weights[EMBED].numel() * 4
    past = piece.model_copy(update={"start": nbytes - 8, "stop": nbytes - 8 + len(body)})
    err = _error(_chunk(service, update_id, first, body, piece=past), 422)
    assert err["field"] == "stop" and "past the end" in err["message"]
    err = _error(_chunk(service, update_id, first, body[:-4], piece=piece), 422)  # truncated body
    assert err["field"] == "body" and "truncated" in err["message"]
    half = httpx.put(
        f"{service}/v1/weights/updates/{update_id}/chunks/{first}",
        content=body,
        params={"checksum": hashlib.sha256(body).hexdigest(), "tensor": EMBED, "start": 0},
        headers=AUTH,
    )
    assert "needs all of" in _error(half, 422)["message"]
    later = chunks[second].piece
    empty = later.model_copy(update={"stop": later.start})  # stop must be past start
    assert _error(_chunk(service, update_id, first, b"", piece=empty), 422)["field"] == "stop"
    assert _chunk(service, update_id, first, body, piece=piece).status_code == 200
    shifted = piece.model_copy(update={"start": piece.start + 4, "stop": piece.stop + 4})
    err = _error(_chunk(service, update_id, second, body, piece=shifted), 409)
    assert err["field"] == "start" and "overlaps" in err["message"]
    # a missing slice: announced and sent consistently, but one range of the embedding never comes
    gappy = chunks[:first] + chunks[first + 1 :]
    update_id = _sliced_update(service, weights, version + 1, gappy)
    for index, chunk in enumerate(gappy):
        assert _chunk(service, update_id, index, chunk.body, piece=chunk.piece).status_code == 200
    err = _error(_commit(service, update_id, gappy, version + 1), 422)
    assert err["field"] == "tensors" and f"of tensor {EMBED!r} never arrived" in err["message"]
    assert served_version(service) == version
    assert samples(generate(service, PROMPTS, n=1, max_tokens=16, temperature=0.0)) == greedy


def test_an_nccl_update_is_refused_on_the_cpu_engine_and_nothing_changes(service, client, model_dir):
    version = served_version(service)
    assert httpx.get(f"{service}/v1/weights", headers=AUTH).json()["nccl_workers"] == 0
    weights = new_weights(model_dir, seed=version + 600)
    body = {
        "version": version + 1,
        "master_address": "127.0.0.1",
        "master_port": 29555,
        "world_size": 2,
        "tensors": [s.model_dump() for s in tensor_specs(weights)],
        "bucket_bytes": 1 << 20,
    }
    err = _error(httpx.post(f"{service}/v1/weights/nccl", json=body, headers=AUTH), 409)
    assert "need the CUDA engine" in err["message"] and "/v1/weights/updates" in err["message"]
    assert (
        'ghpo_inference_weight_update_failures_total{reason="not_gpu"}'
        in httpx.get(f"{service}/metrics").text
    )
    with pytest.raises(Conflict, match="cannot receive NCCL updates"):  # refused before any NCCL or GPU work
        push_weights_nccl(client, weights, version + 1, master_address="127.0.0.1", master_port=29555)
    assert served_version(service) == version
    assert httpx.get(f"{service}/readyz").status_code == 200


def test_bad_generate_requests_get_4xx_naming_the_field(service):
    too_long = generate(service, [{"token_ids": [5] * MAX_MODEL_LEN}], max_tokens=4)
    assert _error(too_long, 422)["field"] == "prompts.0"
    assert "max_model_len" in too_long.json()["error"]["message"]
    out_of_vocab = generate(service, [{"token_ids": [5, 10**6]}], max_tokens=4)
    assert _error(out_of_vocab, 422)["field"] == "prompts.0.token_ids"
    unknown = generate(service, PROMPTS, max_tokens=4, temprature=0.5)
    assert _error(unknown, 422)["field"] == "sampling.temprature"
    both = generate(service, [{"token_ids": [1], "messages": [{"role": "user", "content": "x"}]}])
    assert _error(both, 422)["field"].startswith("prompts.0")
    assert httpx.post(f"{service}/v1/generate", json={"prompts": PROMPTS}).status_code == 401
    stale = httpx.post(
        f"{service}/v1/generate", json={"prompts": PROMPTS, "min_policy_version": 10**6}, headers=AUTH
    )
    assert _error(stale, 409)["field"] == "min_policy_version"


def test_tokenize_gives_the_prompt_ids_generate_uses_and_the_same_refusal_for_a_prompt_too_long(service):
    prompts = [{"id": f"q{i}", **prompt} for i, prompt in enumerate(PROMPTS)]
    generated = generate(service, prompts, max_tokens=2).json()["results"]
    tokenized = httpx.post(f"{service}/v1/tokenize", json={"prompts": prompts}, headers=AUTH, timeout=60)
    assert tokenized.status_code == 200, tokenized.text
    assert tokenized.json()["results"] == [
        {"prompt_id": r["prompt_id"], "prompt_token_ids": r["prompt_token_ids"]} for r in generated
    ]
    too_long = {"prompts": [*prompts, {"token_ids": [5] * MAX_MODEL_LEN}]}
    refused = httpx.post(f"{service}/v1/tokenize", json=too_long, headers=AUTH, timeout=60)
    assert _error(refused, 422)["field"] == "prompts.2"


def test_generation_in_flight_during_an_update_finishes_on_the_old_version(service, client, model_dir):
    version = served_version(service)
    results: list[httpx.Response] = []
    long_prompts = [{"token_ids": [7, 8, 9, i]} for i in range(16)]
    worker = threading.Thread(
        target=lambda: results.append(
            generate(service, long_prompts, n=4, max_tokens=200, temperature=1.0, seed=1)
        )
    )
    worker.start()
    time.sleep(1.0)  # let the generation start
    status = push_weights(client, new_weights(model_dir, seed=version + 300), version + 1)
    worker.join(300)
    assert status.policy_version == version + 1
    versions = {s["policy_version"] for r in results[0].json()["results"] for s in r["samples"]}
    assert versions == {version}
    later = generate(service, PROMPTS, n=1, max_tokens=4)
    assert {s["policy_version"] for r in later.json()["results"] for s in r["samples"]} == {version + 1}


def test_a_seeded_batch_larger_than_one_engine_step_keeps_the_engine_alive(service):
    # 48 prompts x 120 tokens exceed one step's token budget: with vLLM's chunked prefill a prompt is
    # split across steps, which with a seed kills vLLM 0.32's CPU engine (the engine disables it).
    prompts = [{"token_ids": [11 + (i % 50)] * 120} for i in range(48)]
    response = generate(service, prompts, n=2, max_tokens=2, seed=5)
    assert response.status_code == 200, response.text
    assert httpx.get(f"{service}/readyz").status_code == 200
    assert samples(generate(service, PROMPTS, n=1, max_tokens=2, seed=5))


def test_a_completion_stops_at_the_model_length(service):
    prompt_len = MAX_MODEL_LEN - 6
    response = generate(service, [{"token_ids": [9] * prompt_len}], n=2, max_tokens=50, seed=1)
    assert response.status_code == 200, response.text
    for s in response.json()["results"][0]["samples"]:
        assert len(s["token_ids"]) <= MAX_MODEL_LEN - prompt_len
        assert s["finish_reason"] in ("length", "stop")
