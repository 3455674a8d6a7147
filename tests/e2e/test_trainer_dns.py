"""The trainer finds its inference replicas by DNS (`services.inference_dns`), as behind a Kubernetes
headless Service: pushes go to every address the name resolves to, a replica that appears is brought to
the current version, one that disappears is forgotten.

Two real inference services (vLLM CPU build, `ghpo serve inference` subprocesses) listen on the same port
at 127.0.0.1 and 127.0.0.2, as pods of one Service do. The name `inference.test` resolves to them through
the lookup seam of ghpo.shared.replica_dns, whose records the tests change between pushes as a headless
Service's change when pods come and go (editing /etc/hosts would reach beyond the test). Everything
else is real: HTTP, the weight-update protocol, the engines loading the pushed weights.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

from ghpo.local.batches import READY_TIMEOUT_S
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.weights import WeightSync
from tests.e2e.trainer_support import TOKEN

pytestmark = pytest.mark.slow

NAME = "inference.test"
ADDRESSES = ("127.0.0.1", "127.0.0.2")
ROOT = Path(__file__).resolve().parents[2]


def _port_free_on_both() -> int:
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind((ADDRESSES[0], 0))
            port = probe.getsockname()[1]
            with socket.socket() as other:
                try:
                    other.bind((ADDRESSES[1], port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


def _weights_updates(url: str) -> float:
    """The replica's own count of committed weight updates (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(li for li in text.splitlines() if li.startswith("ghpo_inference_weight_updates_total "))
    return float(line.split()[1])


def _served(url: str) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.get(f"{url}/v1/weights", headers=headers, timeout=10).json()["policy_version"]


@pytest.fixture(scope="module")
def replicas(model_dir, tmp_path_factory):
    """{address: base URL} of two inference replicas on one port."""
    logs = tmp_path_factory.mktemp("replicas")
    port = _port_free_on_both()
    env = os.environ | {
        "GHPO_INFERENCE_MODEL": str(model_dir),
        "GHPO_INFERENCE_TOKEN": TOKEN,
        "GHPO_INFERENCE_MAX_MODEL_LEN": "512",
        "GHPO_INFERENCE_KV_CACHE_GIB": "1",
        "GHPO_INFERENCE_MAX_NUM_SEQS": "8",
        "OMP_NUM_THREADS": "1",
    }
    urls = {address: f"http://{address}:{port}" for address in ADDRESSES}
    with contextlib.ExitStack() as stack:
        for address in ADDRESSES:
            log = stack.enter_context((logs / f"{address}.log").open("wb"))
            cmd = [sys.executable, "-m", "ghpo", "serve", "inference", "--host", address, "--port", str(port)]
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, proc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for address, url in urls.items():
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    tail = (logs / f"{address}.log").read_text()[-3000:]
                    raise AssertionError(f"inference replica {address} did not get ready:\n{tail}")
                time.sleep(1.0)
        yield urls


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


@pytest.fixture(scope="module")
def train(model_dir, tmp_path_factory):
    config = parse_config(
        {
            "model": {"path": str(model_dir)},
            "run": {"steps": 1, "checkpoint_dir": str(tmp_path_factory.mktemp("ckpt")), "num_threads": 1},
        }
    )
    return build_engine(config)


class Records:
    """The DNS records of `NAME`, as the lookup seam sees them (a headless Service's A records)."""

    def __init__(self, *addresses: str):
        self.addresses = list(addresses)
        self.failing = False  # the resolver is down

    def __call__(self, host: str, port: int) -> list[str]:
        if host != NAME or self.failing:
            raise socket.gaierror(f"{host}: unknown name")
        return list(self.addresses)


def make_sync(records: Records, port: int) -> WeightSync:
    return WeightSync([], token=TOKEN, bucket_bytes=256 * 1024, dns=f"http://{NAME}:{port}", lookup=records)


def test_a_name_resolving_to_two_replicas_gets_every_push_on_both(replicas, train):
    port = int(replicas[ADDRESSES[0]].rsplit(":", 1)[1])
    sync = make_sync(Records(*ADDRESSES), port)
    version = max(_served(url) for url in replicas.values()) + 1
    assert sync.push(train, version) == 2
    assert sync.served_versions() == {url: version for url in replicas.values()}
    assert [_served(url) for url in replicas.values()] == [version, version]
    sync.close()


def test_a_replica_that_appears_gets_the_current_version_and_one_that_disappears_is_forgotten(
    replicas, train
):
    first, second = (replicas[address] for address in ADDRESSES)
    port = int(first.rsplit(":", 1)[1])
    records = Records(ADDRESSES[0])
    sync = make_sync(records, port)
    version = max(_served(url) for url in replicas.values()) + 1
    assert sync.push(train, version) == 1  # only the first replica is in the records
    assert _served(first) == version and _served(second) < version

    records.addresses.append(ADDRESSES[1])  # a pod became ready
    updates_of_first = _weights_updates(first)
    assert sync.catch_up(train, version) == 2
    assert _served(second) == version
    assert _weights_updates(first) == updates_of_first  # the replica already current was left alone

    records.addresses.remove(ADDRESSES[0])  # a pod went away
    assert sync.push(train, version + 1) == 1
    assert [r.url for r in sync.replicas] == [second]
    assert _served(second) == version + 1 and _served(first) == version

    records.failing = True  # a failed resolution keeps the known replicas
    assert sync.push(train, version + 2) == 1
    assert _served(second) == version + 2
    sync.close()
