"""The trainer's status API over real HTTP: status, checkpoint list, checkpoint requests, metrics names."""

from __future__ import annotations

import json

import httpx

from ghpo.shared.settings import ServiceSettings
from ghpo.trainer.train import metrics  # noqa: F401  (registers the ghpo_trainer_* metrics)
from ghpo.trainer.train.checkpoint import LATEST, STATE_FILE, Checkpointer
from ghpo.trainer.train.loop import StatusBoard
from ghpo.trainer.train.status import create_app

TOKEN = "status-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_status_checkpoints_and_a_checkpoint_request_over_http(serve_app, tmp_path):
    folder = tmp_path / "step-000000007"
    folder.mkdir()
    state = {"step": 7, "policy_version": 9, "created_at": 1.0e9}
    (folder / STATE_FILE).write_text(json.dumps(state))
    (tmp_path / LATEST).write_text(folder.name)
    (tmp_path / ".tmp-step-000000008").mkdir()  # an unfinished save is never listed
    board = StatusBoard(step=7, policy_version=9)
    url = serve_app(create_app(ServiceSettings(port=8105, token=TOKEN), board, Checkpointer(tmp_path)))

    assert httpx.get(f"{url}/v1/status").status_code == 401
    status = httpx.get(f"{url}/v1/status", headers=AUTH).json()
    assert (status["phase"], status["step"], status["policy_version"]) == ("starting", 7, 9)
    listed = httpx.get(f"{url}/v1/checkpoints", headers=AUTH).json()
    assert listed["latest"] == "step-000000007"
    assert [(c["name"], c["step"], c["policy_version"]) for c in listed["checkpoints"]] == [
        ("step-000000007", 7, 9)
    ]
    assert httpx.post(f"{url}/v1/checkpoints", json={}, headers=AUTH).status_code == 202
    assert board.checkpoint_requested.is_set()
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "ghpo_trainer_steps_total",
        "ghpo_trainer_logprob_mismatch_kl",
        "ghpo_trainer_weight_sync_seconds",
    ):
        assert name in text
