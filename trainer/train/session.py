"""Wire a whole training run from a `TrainConfig`: engine, rollout client, weight sync, broker client,
checkpointer, status server (rank 0), then start (resume + weight sync) and run. Used by `ghpo train`.
Not here: any of those parts' logic.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from ghpo.trainer.train.board import StatusBoard
from ghpo.trainer.train.checkpoint import Checkpointer
from ghpo.trainer.train.config import TrainConfig
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer
from ghpo.trainer.train.ranks import rank
from ghpo.trainer.train.source import BatchSource, BrokerClient, RolloutClient
from ghpo.trainer.train.step import StepResult
from ghpo.trainer.train.weights import WeightSync


def run_training(config: TrainConfig, source: BatchSource | None = None) -> list[StepResult]:
    services = config.services
    rank0 = rank() == 0
    serve_status = bool(config.run.port) and rank0
    if serve_status:  # checked before the engine is built: a refused token fails in a second
        from ghpo.trainer.train.status import create_app, serving, status_settings

        settings = status_settings(config.run.host, config.run.port, services.token)
    train = build_engine(config)
    if source is None:
        if services.rollout_url is None:
            raise ValueError("services.rollout_url is required")
        source = RolloutClient(services.rollout_url, token=services.token, timeout_s=services.timeout_s)
    sync = (
        WeightSync(
            services.inference_urls,
            token=services.token,
            bucket_bytes=services.weight_bucket_bytes,
            dtype=services.push_dtype,
            timeout_s=services.timeout_s,
            transport=services.weight_transport,
            nccl_master_address=services.nccl_master_address,
            nccl_port=services.nccl_port,
            nccl_timeout_s=services.nccl_timeout_s,
            dns=services.inference_dns,
            dns_refresh_s=services.dns_refresh_s,
        )
        # on every rank: ZeRO-3 gathers for a push are collective
        if services.inference_urls or services.inference_dns
        else None
    )
    broker = (
        BrokerClient(services.broker_url, token=services.token, timeout_s=services.timeout_s)
        if services.broker_url
        else None
    )
    checkpointer = Checkpointer(config.run.checkpoint_dir, keep=config.run.keep_checkpoints)
    board = StatusBoard()
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        if sync is not None:
            stack.callback(sync.close)
        if broker is not None:
            stack.callback(broker.close)
        if serve_status:
            stack.enter_context(
                serving(create_app(settings, board, checkpointer), config.run.host, config.run.port)
            )
        trainer = Trainer(train, source, checkpointer, weight_sync=sync, broker=broker, status=board)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (docker stop, Kubernetes, `ghpo run` on Ctrl-C): end after the current step with a
            # checkpoint, so a resume loses nothing.
            previous = signal.signal(signal.SIGTERM, lambda *_: trainer.request_stop())
            stack.callback(signal.signal, signal.SIGTERM, previous)
        trainer.start()
        return trainer.run()
