"""Read ``/metrics`` ten times a second from a separate Python process while a load test runs.

Used by the load test (:mod:`llmserve.serving.loadtest`) and so by the capstone's time
plots (book/stack.md, notebooks/stack-lab.ipynb). Layer: live (a child process).

Why a process: a sampling thread inside the load test's process competes for the
interpreter lock with the client's threads and, on two cores, gets a reading only
every second or so; a process of its own does not (it still shares the cores, so
a busy machine answers late: the recorder reports how many readings it got).

Run as ``python -m llmserve.serving.metrics_recorder URL INTERVAL_S T0``: one JSON
line per reading on stdout (``time_s`` since ``T0``, the gauges, or ``error``) until
it is terminated.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from llmserve.core.errors import CourseError, require
from llmserve.core.waiting import wait_until
from llmserve.serving.metrics import fetch_metrics
from llmserve.serving.stats import align_samples


class MetricsRecorder:
    """A context manager around the recorder process; ``samples_for(levels, offset)`` afterwards.

    ``started_at()`` (seconds since the recorder started) taken right before the load test
    is the offset that lines the readings up with the test's own clock.
    """

    def __init__(self, url: str, interval_s: float = 0.1) -> None:
        require(interval_s > 0, "interval_s must be > 0.", "Use e.g. 0.1 (ten readings a second).")
        self.url, self.interval_s = url, interval_s
        self.readings: list[dict] = []
        self.errors: list[str] = []
        self._lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> "MetricsRecorder":
        self._t0 = time.time()
        # vLLM leaves /metrics open (no API key), so no secret goes on this command line.
        args = [sys.executable, "-m", "llmserve.serving.metrics_recorder", self.url, str(self.interval_s),
                repr(self._t0)]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()
        # Start the load only once the recorder reads: its interpreter takes a moment to start.
        wait_until(lambda: (bool(self._lines) or self._proc.poll() is not None, "starting"),
                   timeout_s=30, interval_s=0.05)
        return self

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.append(line)

    def started_at(self) -> float:
        """Seconds since the recorder started."""
        return time.time() - self._t0

    def __exit__(self, *exc) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join(timeout=5)
        for line in self._lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            (self.errors if "error" in item else self.readings).append(item)

    def samples_for(self, levels: list[dict], offset_s: float) -> list[dict]:
        """The readings as load-test samples, each with the level running then (see
        :func:`llmserve.serving.stats.align_samples`)."""
        return align_samples(self.readings, levels, offset_s)


def record(url: str, interval_s: float, t0: float) -> None:
    """The recorder process: one JSON line per reading until terminated."""
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        try:
            snap = fetch_metrics(url, timeout_s=5)
            print(json.dumps({"time_s": time.time() - t0, "kv_cache_usage": snap.kv_cache_usage,
                              "running": snap.running, "waiting": snap.waiting,
                              "preemptions": snap.preemptions}), flush=True)
        except CourseError as err:
            print(json.dumps({"time_s": time.time() - t0, "error": err.what}), flush=True)
        time.sleep(interval_s)


if __name__ == "__main__":
    record(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
