"""Where batches come from and where run state lives: the `BatchSource` protocol, its HTTP client for the
rollout server, and the broker's snapshot/restore client (used by checkpoints).

The rollout API (contract in shared/schemas/rollout.py): GET /v1/batches/next?wait_s= (200 Batch | 204),
POST /v1/batches/{id}/ack {policy_version}, POST /v1/policy-version {policy_version}, GET/PUT /v1/cursor.
POSTs carry idempotency keys so the shared client may retry them. The trainer loop sees only the
protocol, so it runs against any source (the tests feed recorded batches). Not here: training.
"""

from __future__ import annotations

from typing import Protocol

from ghpo.shared.http import SyncServiceClient
from ghpo.shared.schemas.rollout import Batch, BatchAck, BatchAckResult, PolicyVersionUpdate, RolloutCursor


class BatchSource(Protocol):
    def next_batch(self, wait_s: float) -> Batch | None:
        """The next batch, or None when none is ready within `wait_s` seconds."""

    def ack(self, batch_id: str, policy_version: int) -> RolloutCursor | None:
        """Acknowledge a trained (or untrainable) batch; returns the source's trained cursor after it, or
        None if it keeps none."""

    def announce_policy_version(self, policy_version: int) -> int | None:
        """Tell the source which version inference serves; returns the version the source now holds (it
        never goes back, so it can be ahead after a restart of inference alone), or None if it keeps none."""

    def get_cursor(self) -> RolloutCursor | None: ...

    def set_cursor(self, cursor: RolloutCursor) -> None: ...

    def close(self) -> None: ...


class RolloutClient:
    """`BatchSource` over the rollout server's HTTP API."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 120.0):
        self.client = SyncServiceClient(base_url, token=token, timeout=timeout_s, total_budget=4 * timeout_s)
        self.timeout_s = timeout_s

    def next_batch(self, wait_s: float) -> Batch | None:
        response = self.client.request(
            "GET", "/v1/batches/next", params={"wait_s": wait_s}, timeout=self.timeout_s + wait_s
        )
        if response.status_code == 204:
            return None
        return Batch.model_validate_json(response.content)

    def ack(self, batch_id: str, policy_version: int) -> RolloutCursor | None:
        result = self.client.request_json(
            "POST",
            f"/v1/batches/{batch_id}/ack",
            json=BatchAck(policy_version=policy_version),
            response_model=BatchAckResult,
            idempotency_key=f"ack-{batch_id}-{policy_version}",
        )
        return result.cursor

    def announce_policy_version(self, policy_version: int) -> int | None:
        held = self.client.request_json(
            "POST",
            "/v1/policy-version",
            json=PolicyVersionUpdate(policy_version=policy_version),
            response_model=PolicyVersionUpdate,
            idempotency_key=f"policy-version-{policy_version}",
        )
        return held.policy_version

    def get_cursor(self) -> RolloutCursor | None:
        return self.client.request_json("GET", "/v1/cursor", response_model=RolloutCursor)

    def set_cursor(self, cursor: RolloutCursor) -> None:
        self.client.request_json("PUT", "/v1/cursor", json=cursor)

    def close(self) -> None:
        self.client.close()


class BrokerClient:
    """The guidance broker's whole-state snapshot (GET /v1/snapshot) and restore (PUT /v1/snapshot)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 120.0):
        self.client = SyncServiceClient(base_url, token=token, timeout=timeout_s, total_budget=4 * timeout_s)

    def snapshot(self) -> bytes:
        return self.client.request("GET", "/v1/snapshot").content

    def restore(self, snapshot: bytes) -> None:
        self.client.request(
            "PUT", "/v1/snapshot", content=snapshot, headers={"Content-Type": "application/x-ndjson"}
        )

    def close(self) -> None:
        self.client.close()
