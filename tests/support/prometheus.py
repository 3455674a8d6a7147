"""A real Prometheus server for tests: scrape running ghpo services on loopback, query it over its HTTP API.

`running_prometheus({"ghpo-broker": ["http://127.0.0.1:PORT"]}, work_dir=tmp_path)` writes a scrape config
(one job per key, a 1 s scrape interval, optional rule files), starts the `prometheus` binary (Debian's
package; `prometheus_binary()` is None when it is absent, so callers can skip) on a free loopback port, waits
for /-/ready, and yields a `PrometheusServer` whose `query()` / `wait_for()` read series back through
/api/v1/query. Point it at any service's base URL: the broker today, the rollout server for the
reward-sparsity series. Deliberately no pytest fixture here (tests/conftest.py loads the plugins): call the
context manager from a test. The server is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from ghpo.shared.redis_local import free_port

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 2000

Result = list[dict]


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def get(self, path: str, **params: str) -> dict:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10.0)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> Result:
        """Instant query; the `result` list of /api/v1/query (each: {"metric": {...}, "value": [t, "v"]})."""
        return self.get("/api/v1/query", query=promql)["result"]

    def wait_for(
        self, promql: str, predicate: Callable[[Result], bool] = bool, *, timeout_s: float = 30.0
    ) -> Result:
        """Poll `promql` until `predicate(result)` holds; TimeoutError naming the last result otherwise."""
        deadline = time.monotonic() + timeout_s
        result: Result = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise TimeoutError(f"{promql!r} did not match in {timeout_s} s; last result {result}")


def scrape_config(
    jobs: Mapping[str, Sequence[str]], *, scrape_interval_s: float, rule_files: Sequence[Path]
) -> dict:
    """Prometheus config scraping each job's base URLs at /metrics."""
    interval = f"{int(scrape_interval_s * 1000)}ms"
    configs = []
    for job, urls in jobs.items():
        parts = [urlsplit(url) for url in urls]
        configs.append(
            {
                "job_name": job,
                "scheme": parts[0].scheme or "http",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [p.netloc for p in parts]}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": configs,
    }


@contextlib.contextmanager
def running_prometheus(
    jobs: Mapping[str, Sequence[str]],
    *,
    work_dir: Path,
    scrape_interval_s: float = 1.0,
    rule_files: Sequence[Path] = (),
) -> Iterator[PrometheusServer]:
    binary = prometheus_binary()
    if binary is None:
        raise FileNotFoundError(
            "no `prometheus` binary on PATH (deploy/tools/install-validators.sh installs it)"
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(
        yaml.safe_dump(scrape_config(jobs, scrape_interval_s=scrape_interval_s, rule_files=rule_files))
    )
    port = free_port()  # Prometheus binds it itself (see free_port on why that is safe)
    log_path = work_dir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={work_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/-/ready", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready in {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
