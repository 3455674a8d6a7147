"""What the trainer tests share beyond `ghpo.local.batches` (real batches from the served tiny model): the
token their services use, and `ListSource`, a `BatchSource` over recorded batches.

Not a test module: imported by tests/e2e/test_trainer*.py and the trainer workers they start.
"""

from __future__ import annotations

from ghpo.shared.schemas.rollout import Batch

TOKEN = "trainer-test-token"


class ListSource:
    """A `BatchSource` over recorded batches (the trainer under test pulls, acks and announces as it would
    against the rollout server; what it sent is kept for assertions)."""

    def __init__(self, batches: list[Batch]):
        self.batches = list(batches)
        self.position = 0
        self.acked: list[tuple[str, int]] = []
        self.announced: list[int] = []
        self.cursor_sets: list[dict] = []

    def next_batch(self, wait_s: float) -> Batch | None:
        if self.position >= len(self.batches):  # a test asking for more than it recorded is a test bug
            raise AssertionError(f"ListSource: all {len(self.batches)} recorded batches were consumed")
        self.position += 1
        return self.batches[self.position - 1]

    def ack(self, batch_id: str, policy_version: int) -> None:
        self.acked.append((batch_id, policy_version))

    def announce_policy_version(self, policy_version: int) -> int | None:
        self.announced.append(policy_version)
        return max(self.announced)

    def get_cursor(self):
        from ghpo.shared.schemas.rollout import RolloutCursor

        return RolloutCursor(epoch=0, position=self.position)

    def set_cursor(self, cursor) -> None:
        self.cursor_sets.append(cursor.model_dump(exclude_none=True))  # acked_groups: not kept here
        self.position = cursor.position

    def close(self) -> None:
        pass
