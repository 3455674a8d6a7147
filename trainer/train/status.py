"""The trainer's small HTTP API on the metrics port: GET /v1/status, GET /v1/checkpoints, and
POST /v1/checkpoints (ask for a checkpoint at the next batch boundary), plus the shared shell's
/healthz, /readyz and /metrics (where the ghpo_trainer_* metrics are). Served by uvicorn in a daemon
thread of the trainer process (rank 0 only).

Its settings are the services' (`StatusSettings`, prefix GHPO_TRAINER_): host, port and token come from
the trainer's config file, the deployment kind from GHPO_TRAINER_ENVIRONMENT, so in production a missing
or weak token refuses to start the API, as every other service does. Not here: anything that changes
training state directly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from pydantic_settings import SettingsConfigDict

from ghpo.shared.app import create_service_app
from ghpo.shared.schemas.trainer import CheckpointList, CheckpointRequest, TrainerStatus
from ghpo.shared.settings import ServiceSettings, build_settings
from ghpo.trainer.train.board import StatusBoard
from ghpo.trainer.train.checkpoint import Checkpointer

router = APIRouter(prefix="/v1", tags=["trainer"])


class StatusSettings(ServiceSettings):
    """The status API's settings: GHPO_TRAINER_ENVIRONMENT (and LOG_LEVEL, MAX_BODY_BYTES...) from the
    environment; host, port and token given by the trainer config (`status_settings`)."""

    model_config = SettingsConfigDict(env_prefix="GHPO_TRAINER_")


def status_settings(host: str, port: int, token: str | None) -> StatusSettings:
    """The API's settings for the config's host, port and token; raises SettingsError naming the
    variable when they cannot serve (production without a strong token)."""
    return build_settings(StatusSettings, host=host, port=port, token=token)


@router.get("/status", response_model=TrainerStatus)
async def status(request: Request) -> TrainerStatus:
    return request.app.state.board.snapshot()


@router.get("/checkpoints", response_model=CheckpointList)
async def checkpoints(request: Request) -> CheckpointList:
    checkpointer: Checkpointer = request.app.state.checkpointer
    latest = checkpointer.latest()
    listed = [checkpointer.info(folder) for folder in checkpointer.complete()]
    return CheckpointList(checkpoints=listed, latest=latest.name if latest else None)


@router.post("/checkpoints", response_model=TrainerStatus, status_code=202)
async def request_checkpoint(body: CheckpointRequest, request: Request) -> TrainerStatus:
    board: StatusBoard = request.app.state.board
    board.checkpoint_requested.set()
    return board.snapshot()


def create_app(settings: ServiceSettings, board: StatusBoard, checkpointer: Checkpointer) -> FastAPI:
    app = create_service_app(name="trainer", settings=settings, routers=[router])
    app.state.board = board
    app.state.checkpointer = checkpointer
    return app


@contextlib.contextmanager
def serving(app: FastAPI, host: str, port: int) -> Iterator[None]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="trainer-status", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
