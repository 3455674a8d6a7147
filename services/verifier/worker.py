"""The verifier's worker process: scores chunks of items with math-verify, one result message per item.

Runs in a process of its own (math-verify's timeouts use SIGALRM, which only works in a main thread, and
it is not thread-safe). Protocol on its pipe: it first sends ("ready", pid); then for each received chunk
[(index, completion, gold, weights), ...] it sends one (index, status, rewards, total, extracted, detail)
per item, in order, as soon as that item is done, so the parent always knows which item is running and
can enforce a per-item deadline by killing this process. A received None (or a closed pipe) ends it.
Gold answers are parsed once per process (scoring's LRU cache). Not here: deadlines, restarts (engine.py).
"""

from __future__ import annotations

import os
import resource
import signal
from multiprocessing.connection import Connection

from ghpo.shared.schemas.verifier import MAX_DETAIL_CHARS, MAX_EXTRACTED_CHARS
from ghpo.shared.scoring import rewards
from ghpo.shared.scoring.answers import score

Outcome = tuple[int, str, dict[str, float], float, str | None, str | None]


def score_item(
    index: int, completion: str, gold: str, weights: dict[str, float], math_timeout_s: int
) -> Outcome:
    try:
        result = score(completion, gold, timeout_s=math_timeout_s)
        values, total = rewards.compute(completion, result, weights)
    except Exception as exc:
        return (
            index,
            "error",
            dict.fromkeys(weights, 0.0),
            0.0,
            None,
            f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS],
        )
    extracted = result.extracted[:MAX_EXTRACTED_CHARS] if result.extracted is not None else None
    detail = result.detail[:MAX_DETAIL_CHARS] if result.detail is not None else None
    return index, result.status, values, total, extracted, detail


def run(conn: Connection, math_timeout_s: int, memory_mib: int = 0) -> None:
    # Ctrl-C of the server reaches the whole process group; the parent shuts workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mib:
        limit = memory_mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    score_item(-1, "\\boxed{1}", "1", {"accuracy": 1.0}, math_timeout_s)  # compile math-verify's regexes
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, completion, gold, weights in chunk:
            conn.send(score_item(index, completion, gold, weights, math_timeout_s))
