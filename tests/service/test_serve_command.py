"""`ghpo serve` as a process: a port already taken ends it at once, before the service starts any work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ghpo.shared.redis_local import free_port


def test_serve_on_a_taken_port_exits_at_once_naming_the_error_and_starts_nothing():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "ghpo", "serve", "verifier", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,  # a hang (the old failure) raises here
            env={**os.environ, "GHPO_VERIFIER_TOKEN": "t" * 24},
        )

    assert proc.returncode == 3
    output = proc.stdout + proc.stderr
    assert "address already in use" in output.lower(), output[-2000:]
    # The verifier's lifespan starts its math-verify worker pool; none of it ran.
    assert "Application startup" not in output, output[-2000:]
