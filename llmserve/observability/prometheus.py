"""Live: a real Prometheus on loopback (Debian's ``prometheus`` binary), scraping the lab's engines and router.

Used by notebooks/observability-lab.ipynb, notebooks/full-stack-lab.ipynb, the autoscaler
(:mod:`llmserve.observability.autoscaler`) and tests/observability. Typical use::

    with LocalPrometheus(rule_files=[alerts.rules_path()]) as prom:
        prom.set_targets("vllm-qwen25-coder-7b", [engine.url for engine in engines])
        prom.wait_for_targets(len(engines))
        prom.query("sum(vllm:num_requests_waiting)")      # -> [Sample(labels, value)]

The server runs as ``prometheus --config.file … --storage.tsdb.path …`` with its configuration,
its targets and its data in a fresh temporary folder (deleted on stop), listens on 127.0.0.1 only,
scrapes every second and evaluates the rules every second (a cluster's Prometheus scrapes every
15-30 s: the lab is short). Targets are ``file_sd_configs`` files: :meth:`set_targets` rewrites one
and Prometheus picks it up within a few seconds, so engines can come and go while it runs. The
binary comes from ``apt-get install prometheus`` (scripts/setup.sh); its systemd service is never
used. Stopping terminates the process group, also at interpreter exit.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlencode, urlparse

import yaml

from llmserve.core import http
from llmserve.core.errors import CourseError, ServerError
from llmserve.core.waiting import wait_until
from llmserve.serving.engine import free_port
from llmserve.world.processes import kill_groups_now

INSTALL_FIX = ("Install Debian's Prometheus: `sudo apt-get update && sudo apt-get install -y prometheus` "
               "(scripts/setup.sh does it; the course runs the binary, never the service), "
               "or set COURSE_PROMETHEUS to a prometheus binary.")
_LIVE: "set[LocalPrometheus]" = set()


def binary(name: str = "prometheus") -> str:
    """``prometheus`` or ``promtool``: ``$COURSE_PROMETHEUS`` (its folder for promtool), else PATH or /usr/bin."""
    override = os.environ.get("COURSE_PROMETHEUS")
    if override:
        found = override if name == "prometheus" else str(Path(override).with_name(name))
    else:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if not found or not Path(found).exists():
        raise ServerError(f"No {name} binary on this machine.", INSTALL_FIX)
    return found


def version() -> str:
    """``2.42.0+ds``: the first line of ``prometheus --version``."""
    proc = subprocess.run([binary(), "--version"], capture_output=True, text=True, timeout=20)
    first = (proc.stdout or proc.stderr).splitlines()[0]
    return first.split("version", 1)[-1].split()[0]


def host_port(url: str) -> str:
    """``127.0.0.1:8001`` for ``http://127.0.0.1:8001`` (a scrape target is host:port)."""
    parsed = urlparse(url if "//" in url else f"http://{url}")
    return f"{parsed.hostname}:{parsed.port}"


def scrape_config(jobs: Iterable[str], targets_dir: Path, rule_files: Iterable[Path] = (),
                  scrape_interval_s: float = 1.0, evaluation_interval_s: float = 1.0) -> dict:
    """The ``prometheus.yml`` of the lab: one file-discovered job per name, the given rule files."""
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": f"{evaluation_interval_s:g}s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "metrics_path": "/metrics",
                            "file_sd_configs": [{"files": [str(targets_dir / f"{_safe(job)}.json")],
                                                 "refresh_interval": "5s"}]}
                           for job in jobs],
    }


def _safe(job: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in job)


@dataclass(frozen=True)
class Sample:
    """One series of a query's answer at one time: its labels and value."""

    labels: dict
    value: float
    time_s: float

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")


@dataclass(frozen=True)
class Series:
    """One series of a range query: labels, and (time, value) points."""

    labels: dict
    points: tuple

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")


class LocalPrometheus:
    """A context manager around one Prometheus server process (see the module docstring)."""

    def __init__(self, jobs: Iterable[str] = (), *, rule_files: Iterable[str | Path] = (),
                 scrape_interval_s: float = 1.0, evaluation_interval_s: float = 1.0,
                 port: int | None = None, startup_timeout_s: float = 60.0) -> None:
        self.jobs = list(jobs)
        self.rule_files = [Path(p) for p in rule_files]
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None   # time.time() when it answered ready
        self._log = None

    # ------------------------------------------------------------------ info
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.dir / "prometheus.log" if self.dir else None

    def log_tail(self, lines: int = 15) -> str:
        p = self.log_path
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:]) if p and p.exists() else ""

    def command(self) -> list[str]:
        return [binary(), f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2h", "--log.level=warn"]

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalPrometheus":
        if self.is_running():
            return self
        for rules in self.rule_files:
            if not rules.is_file():
                raise ServerError(f"No rules file at {rules}.", "Pass alerts.rules_path() or an existing file.")
        prometheus = binary()
        self.dir = Path(tempfile.mkdtemp(prefix="course-prometheus-"))
        (self.dir / "targets").mkdir()
        self.port = self.port or free_port()
        for job in self.jobs:
            self._write_targets(job, [])
        config = scrape_config(self.jobs, self.dir / "targets", self.rule_files,
                               self.scrape_interval_s, self.evaluation_interval_s)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([prometheus] + self.command()[1:], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir)
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()
        return self

    def _wait_ready(self) -> None:
        def look() -> tuple[bool, str]:
            if self.proc.poll() is not None:
                raise ServerError(f"Prometheus exited at start (code {self.proc.returncode}):\n{self.log_tail()}",
                                  "Read its log above: a bad rules file or configuration is named there.")
            try:
                return http.get(self.url, "/-/ready", timeout=2).status == 200, "ready"
            except CourseError as err:
                return False, err.what

        def timed_out(status: str, elapsed: float) -> ServerError:
            return ServerError(f"Prometheus was not ready after {elapsed:.0f} s ({status}).\n{self.log_tail()}",
                               "The machine may be very busy: raise startup_timeout_s.")

        wait_until(look, timeout_s=self.startup_timeout_s, interval_s=0.3, on_timeout=timed_out)

    def stop(self, timeout_s: float = 10) -> None:
        """Terminate Prometheus (SIGTERM, then SIGKILL) and delete its folder."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout_s)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalPrometheus({self.url}, {'running' if self.is_running() else 'stopped'})"

    # ------------------------------------------------------------------ targets
    def _write_targets(self, job: str, urls: Iterable[str]) -> None:
        """Atomically replace a job's file_sd file (write, then rename: Prometheus never reads half a file)."""
        groups = [{"targets": [host_port(u) for u in urls], "labels": {}}]
        final = self.dir / "targets" / f"{_safe(job)}.json"
        temp = final.with_suffix(".tmp")
        temp.write_text(json.dumps(groups))
        temp.replace(final)

    def set_targets(self, job: str, urls: Iterable[str]) -> None:
        """Scrape exactly ``urls`` (``http://127.0.0.1:PORT``) as ``job`` from now on."""
        if job not in self.jobs:
            raise ServerError(f"Prometheus has no job {job!r}.", f"Start it with jobs={self.jobs + [job]!r}.")
        self._write_targets(job, urls)

    def targets(self) -> list[dict]:
        """The active targets: job, instance, health (up/down/unknown), last error."""
        data = self._api("/api/v1/targets", {"state": "active"})
        return [{"job": t["labels"].get("job"), "instance": t["labels"].get("instance"), "health": t.get("health"),
                 "error": t.get("lastError", "")} for t in data.get("activeTargets", [])]

    def wait_for_targets(self, count: int, job: str | None = None, timeout_s: float = 30.0) -> list[dict]:
        """Wait until ``count`` targets (of ``job``) are up, i.e. scraped successfully at least once."""
        def look() -> tuple[bool, list]:
            up = [t for t in self.targets() if t["health"] == "up" and (job is None or t["job"] == job)]
            return len(up) >= count, up

        def timed_out(up: list, elapsed: float) -> ServerError:
            return ServerError(f"Only {len(up)} of {count} targets up after {elapsed:.0f} s: {self.targets()}",
                               "Check that the engines answer /metrics and that set_targets() named them.")

        return wait_until(look, timeout_s=timeout_s, interval_s=0.5, on_timeout=timed_out).status

    # ------------------------------------------------------------------ the HTTP API
    def _api(self, endpoint: str, params: dict) -> dict:
        try:
            result = http.get(self.url, f"{endpoint}?{urlencode(params)}", timeout=10)
        except CourseError as err:
            body = err.what
            raise ServerError(f"Prometheus refused {endpoint} with {params}: {body}",
                              "Check the PromQL (metric names, brackets, the range in [...]); "
                              "try it in Prometheus' own UI at " + self.url + "/graph") from None
        answer = result.json or {}
        if answer.get("status") != "success":
            raise ServerError(f"Prometheus answered {answer.get('errorType')}: {answer.get('error')}",
                              "Fix the query; Prometheus' message above names the problem.")
        return answer.get("data") or {}

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query: every series of ``expr`` now (or at time ``at``), as :class:`Sample`."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            t, v = data["result"]
            return [Sample({}, float(v), float(t))]
        return [Sample(r.get("metric", {}), float(r["value"][1]), float(r["value"][0]))
                for r in data.get("result", [])]

    def raw_result(self, expr: str) -> list[dict]:
        """The instant query's ``data.result`` as Prometheus sends it (what KEDA's trigger reads)."""
        return self._api("/api/v1/query", {"query": expr}).get("result", [])

    def value(self, expr: str, default: float | None = None) -> float | None:
        """The single value of ``expr`` (summed over series), or ``default`` when it returns nothing."""
        samples = self.query(expr)
        return sum(s.value for s in samples) if samples else default

    def query_range(self, expr: str, start: float, end: float, step_s: float = 1.0) -> list[Series]:
        """A range query: every series of ``expr`` from ``start`` to ``end`` (unix seconds), one point per step."""
        data = self._api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step_s:g}s"})
        return [Series(r.get("metric", {}), tuple((float(t), float(v)) for t, v in r.get("values", [])))
                for r in data.get("result", [])]

    def rule_groups(self) -> list[dict]:
        """The loaded rule groups, each rule with its health and last error (``/api/v1/rules``)."""
        return self._api("/api/v1/rules", {}).get("groups", [])

    def alerts(self) -> list[dict]:
        """Alerts pending or firing now (``/api/v1/alerts``)."""
        return self._api("/api/v1/alerts", {}).get("alerts", [])


@atexit.register
def _stop_all() -> None:
    kill_groups_now(prom.proc for prom in list(_LIVE))
