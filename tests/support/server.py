"""The pytest fixture `serve_app`: a factory (`base_url = serve_app(app)`) of real uvicorn servers on free
loopback ports (`ghpo.shared.serving.running_app`), all stopped at teardown."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ghpo.shared.serving import running_app


@pytest.fixture
def serve_app() -> Iterator[Callable[..., str]]:
    """Factory fixture: `serve_app(app, **uvicorn_config) -> base_url`; every server stops at teardown."""
    with contextlib.ExitStack() as stack:

        def start(app: Any, **config: Any) -> str:
            return stack.enter_context(running_app(app, **config))

        yield start
