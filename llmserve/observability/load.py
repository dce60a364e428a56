"""Live: a load whose concurrency changes while it runs, sent through the router, bounded in time and requests.

Used by the autoscaling lab (:mod:`llmserve.observability.autoscaler`, notebooks/observability-lab.ipynb,
notebooks/full-stack-lab.ipynb) and tests/observability. The fixed-level load test of the capstone
(:mod:`llmserve.serving.loadtest`) measures one concurrency at a time; an autoscaler needs the load
to *change* under it, so here ``MAX`` client threads each hold one keep-alive
:class:`~llmserve.serving.client.Connection`, and client ``i`` sends its next streamed request only
while the current :class:`~llmserve.observability.workload.Phase` asks for more than ``i`` requests
in flight. Requests use :func:`~llmserve.serving.client.stream_chat` (the course's timed client).

Bounds: loopback URLs only, at most ``max_requests`` requests, every request with a timeout, and
:meth:`Load.stop` (also on leaving the ``with`` block) ends every thread. Results are plain dicts
with wall-clock times (``time.time()``), so they line up with Prometheus' samples.
"""
from __future__ import annotations

import threading
import time
from typing import Callable
from urllib.parse import urlparse

from llmserve.core.errors import CourseError, require
from llmserve.observability.workload import MAX_CONCURRENCY, Phase
from llmserve.serving.client import Connection, stream_chat

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_MESSAGES = [{"role": "user", "content": "Write a Python function that parses a Kubernetes manifest."}]


class Load:
    """Closed-loop clients whose number in flight follows the phase set with :meth:`set_phase`."""

    def __init__(self, base_url: str, model: str, *, clients: int = MAX_CONCURRENCY,
                 messages: list[dict] | Callable[[int], list[dict]] | None = None,
                 max_tokens: int = 48, max_requests: int = 4000, request_timeout_s: float = 60,
                 api_key: str | None = None) -> None:
        host = urlparse(base_url).hostname
        require(host in LOOPBACK, f"The lab's load only targets loopback addresses, not {host!r}.",
                "Use the fleet's router (fleet.base_url) or a port-forward (http://127.0.0.1:PORT/v1).")
        require(1 <= clients <= MAX_CONCURRENCY, f"clients must be between 1 and {MAX_CONCURRENCY}.",
                "The phases' largest concurrency is enough.")
        self.base_url, self.model = base_url, model
        self.clients = clients
        self.messages = messages or DEFAULT_MESSAGES
        self.max_tokens, self.max_requests = max_tokens, max_requests
        self.request_timeout_s, self.api_key = request_timeout_s, api_key
        self.results: list[dict] = []
        self._pending = 0                                # requests sent, not yet recorded
        self.phases: list[tuple[float, str]] = []        # (time.time() when it began, phase name)
        self._phase: Phase | None = None
        self._phase_t0 = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- control
    def set_phase(self, phase: Phase) -> None:
        require(phase.concurrency <= self.clients, f"Phase {phase.name!r} wants {phase.concurrency} in flight "
                f"but the load has {self.clients} clients.", "Create the Load with more clients.")
        with self._lock:
            self._phase, self._phase_t0 = phase, time.time()
            self.phases.append((self._phase_t0, phase.name))

    def in_flight_wanted(self) -> int:
        with self._lock:
            phase, t0 = self._phase, self._phase_t0
        return phase.concurrency_at(time.time() - t0) if phase else 0

    def start(self) -> "Load":
        self._stop.clear()
        self._threads = [threading.Thread(target=self._client, args=(i,), name=f"lab-load-{i}", daemon=True)
                         for i in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop sending; wait for requests in flight (each bounded by its own timeout)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=timeout_s if timeout_s is not None else self.request_timeout_s + 5)
        self._threads = []

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- the clients
    def _take(self) -> bool:
        with self._lock:
            if len(self.results) + self._pending >= self.max_requests:
                return False
            self._pending += 1
            return True

    def _client(self, index: int) -> None:
        conn = Connection(self.base_url, self.request_timeout_s)
        try:
            while not self._stop.is_set():
                if index >= self.in_flight_wanted() or not self._take():
                    self._stop.wait(0.1)
                    continue
                self._one(conn, index)
        finally:
            conn.close()

    def _one(self, conn: Connection, index: int) -> None:
        with self._lock:
            phase = self._phase.name if self._phase else ""
        with self._lock:
            number = len(self.results) + self._pending
        messages = self.messages(number) if callable(self.messages) else self.messages
        rec = {"client": index, "phase": phase, "start": time.time()}
        try:
            r = stream_chat(self.base_url, self.model, messages, self.api_key, max_tokens=self.max_tokens,
                            ignore_eos=True, timeout_s=self.request_timeout_s, connection=conn)
            rec.update(ttft_s=r.ttft_s, latency_s=r.latency_s, output_tokens=r.completion_tokens, error=None)
        except CourseError as err:
            rec.update(ttft_s=None, latency_s=None, output_tokens=0, error=err.what)
        rec["end"] = time.time()
        with self._lock:
            self._pending -= 1
            self.results.append(rec)
        if rec["error"]:
            self._stop.wait(0.5)     # a failing request answers at once: do not spin

    # ---------------------------------------------------------------- what happened
    def ok(self) -> list[dict]:
        with self._lock:
            return [r for r in self.results if r["error"] is None]

    def errors(self) -> list[dict]:
        with self._lock:
            return [r for r in self.results if r["error"] is not None]

    def summary(self) -> dict:
        ok, bad = self.ok(), self.errors()
        return {"requests": len(ok) + len(bad), "ok": len(ok), "errors": len(bad),
                "first_error": bad[0]["error"] if bad else None}
