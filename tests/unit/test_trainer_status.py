"""The trainer's status API over real HTTP: status, checkpoint list, checkpoint requests, metrics names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from ghpo.shared.settings import ServiceSettings, SettingsError
from ghpo.trainer.train import metrics  # noqa: F401  (registers the ghpo_trainer_* metrics)
from ghpo.trainer.train.board import StatusBoard
from ghpo.trainer.train.checkpoint import LATEST, STATE_FILE, Checkpointer
from ghpo.trainer.train.status import create_app, status_settings

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


def _train(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    config = tmp_path / "trainer.toml"
    config.write_text(
        f'[model]\npath = "{tmp_path}"\n[run]\nsteps = 1\ncheckpoint_dir = "{tmp_path / "ckpt"}"\n'
        '[services]\nrollout_url = "http://127.0.0.1:9"\n'
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GHPO_")}
    return subprocess.run(
        [sys.executable, "-m", "ghpo", "train", "--config", str(config)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("token", "why"), [(None, "token is required"), ("short-token", "too weak")], ids=["none", "weak"]
)
def test_trainer_in_production_refuses_to_start_its_api_without_a_strong_token(tmp_path, token, why):
    env = {"GHPO_TRAINER_ENVIRONMENT": "production"} | ({"GHPO_TRAINER_TOKEN": token} if token else {})
    result = _train(tmp_path, env)
    assert result.returncode == 2, result.stderr
    assert why in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_status_settings_take_the_environment_from_the_trainers_own_variable(monkeypatch):
    monkeypatch.setenv("GHPO_TRAINER_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="too weak"):
        status_settings("0.0.0.0", 8105, "x" * 8)
    strong = "k7Qp2vX9mZ4rT1wY8bN3cF6hJ0sL5dGa"
    assert status_settings("0.0.0.0", 8105, strong).environment == "production"
    monkeypatch.delenv("GHPO_TRAINER_ENVIRONMENT")
    assert status_settings("127.0.0.1", 8105, None).environment == "dev"
