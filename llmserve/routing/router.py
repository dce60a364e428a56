"""One ``vllm-router`` process on loopback: start it, talk to its admin API, stop it.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) through
:mod:`llmserve.routing.fleet`, and by part 2's autoscaling loop. Layer: live (a server process).

``vllm-router`` 0.1.17 (PyPI; a Rust binary in a wheel, installed into ``.venv-router`` by
scripts/setup.sh; ``COURSE_VLLM_ROUTER`` overrides the path) is told its workers with
``--worker-urls`` and waits for every worker's ``/health`` before it listens. While it runs,
``POST /add_worker?url=…`` and ``POST /remove_worker?url=…`` change the workers and
``GET /list_workers`` lists them; its own Prometheus metrics (``vllm_router_*``) are on a
second loopback port (``--prometheus-host/--prometheus-port``). The process runs in its own
process group; :meth:`Router.stop` ends it (also when the ``with`` body raises) and an
``atexit`` hook ends any router still running when Python exits.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families

from llmserve.core import http
from llmserve.core.errors import CourseError, ServerError, require
from llmserve.core.paths import REPO_ROOT
from llmserve.core.waiting import wait_until
from llmserve.routing.policy import POLICIES
from llmserve.serving.engine import free_port
from llmserve.serving.tinymodel import default_cache_root
from llmserve.world.processes import kill_groups_now

#: The router release the course pins (PyPI ``vllm-router``).
ROUTER_VERSION = "0.1.17"
LOOPBACK = "127.0.0.1"
_LIVE: "set[Router]" = set()


def router_binary() -> Path:
    """Where scripts/setup.sh installs ``vllm-router`` (override: ``COURSE_VLLM_ROUTER``); may not exist."""
    return Path(os.environ.get("COURSE_VLLM_ROUTER", REPO_ROOT / ".venv-router" / "bin" / "vllm-router"))


class Router:
    """One ``vllm-router`` process in front of ``worker_urls`` (a context manager)."""

    def __init__(self, worker_urls: Sequence[str], policy: str = "cache_aware", *, port: int | None = None,
                 metrics_port: int | None = None, binary: str | Path | None = None,
                 extra_args: Sequence[str] = (), startup_timeout_s: float = 120,
                 log_path: str | Path | None = None) -> None:
        require(policy in POLICIES and POLICIES[policy].flag,
                f"{policy!r} is not a vllm-router policy the course runs.",
                f"Use one of: {', '.join(n for n, p in POLICIES.items() if p.flag)}.")
        require(all(u.startswith(f"http://{LOOPBACK}:") for u in worker_urls),
                f"The lab router only fronts loopback engines, got {list(worker_urls)}.",
                "Start the engines with Fleet (they listen on 127.0.0.1).")
        self.worker_urls = list(worker_urls)
        self.policy = policy
        self.port, self.metrics_port = port, metrics_port
        self.binary = Path(binary) if binary else router_binary()
        self.extra_args = list(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``…/v1``) clients send requests to."""
        return f"{self.url}/v1"

    @property
    def metrics_url(self) -> str:
        """The router's own Prometheus metrics (``vllm_router_*``)."""
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        # Worker checks every second (default 30 s): the engines are already healthy when it starts.
        return [str(self.binary), "--host", LOOPBACK, "--port", str(self.port),
                "--worker-urls", *self.worker_urls, "--policy", self.policy,
                "--prometheus-host", LOOPBACK, "--prometheus-port", str(self.metrics_port),
                "--worker-startup-check-interval", "1",
                "--worker-startup-timeout-secs", str(int(self.startup_timeout_s)),
                "--log-level", "warning", *self.extra_args]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").rstrip().splitlines()[-lines:])
        return ""

    def start(self) -> "Router":
        if self.is_running():
            return self
        if not self.binary.exists():
            raise ServerError(f"No vllm-router at {self.binary}.",
                              f"Run `bash scripts/setup.sh` (it installs vllm-router=={ROUTER_VERSION} into "
                              ".venv-router), or set COURSE_VLLM_ROUTER to the binary.")
        self.port = self.port or free_port(LOOPBACK)
        self.metrics_port = self.metrics_port or free_port(LOOPBACK)
        if self.log_path is None:
            logs = default_cache_root() / "vllm-logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.log_path = logs / f"router-{self.port}.log"
        self._log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _LIVE.add(self)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _wait(self) -> None:
        def look() -> tuple[bool, str]:
            if self.proc.poll() is not None:
                raise ServerError(f"vllm-router exited during start-up (code {self.proc.returncode}).\n"
                                  f"Last lines of {self.log_path}:\n{self.log_tail()}",
                                  "Read the error above: a worker URL that never answers /health, or a "
                                  "port already in use.")
            try:
                return http.get(self.url, "/health", timeout=2).status == 200, "ready"
            except CourseError as err:
                return False, err.what

        def timed_out(status: str, elapsed: float) -> ServerError:
            return ServerError(f"vllm-router did not answer /health within {self.startup_timeout_s:.0f} s "
                               f"({status}).\nLast lines of {self.log_path}:\n{self.log_tail()}",
                               "It waits until every worker answers /health: check the engines are up.")

        wait_until(look, timeout_s=self.startup_timeout_s, interval_s=0.2, on_timeout=timed_out)

    def stop(self, timeout_s: float = 10) -> None:
        """SIGTERM the router's process group, SIGKILL after ``timeout_s``."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    # ---------------------------------------------------------------- while running
    def list_workers(self) -> list[str]:
        return list((http.get(self.url, "/list_workers").json or {}).get("urls", []))

    def add_worker(self, url: str, timeout_s: float = 30) -> None:
        """Register a running engine (``POST /add_worker?url=…``); the router checks its health first."""
        http.request(self.url, f"/add_worker?url={quote(url, safe='')}", method="POST", timeout=timeout_s)
        self.worker_urls.append(url)

    def remove_worker(self, url: str) -> None:
        """Deregister an engine (``POST /remove_worker?url=…``): no new request goes there."""
        http.request(self.url, f"/remove_worker?url={quote(url, safe='')}", method="POST", timeout=10)
        if url in self.worker_urls:
            self.worker_urls.remove(url)

    def metrics_text(self) -> str:
        return http.get(self.metrics_url, "", timeout=5).text

    def processed(self) -> dict[str, float]:
        """Requests the router sent to each worker since it started (``vllm_router_processed_requests_total``)."""
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == "vllm_router_processed_requests_total":
                    out[s.labels["worker"]] = out.get(s.labels["worker"], 0.0) + float(s.value)
        return out

    def __enter__(self) -> "Router":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Router({self.policy}, {self.url}, {len(self.worker_urls)} workers, " \
               f"{'running' if self.is_running() else 'stopped'})"


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_all() -> None:
    kill_groups_now(router.proc for router in list(_LIVE))
