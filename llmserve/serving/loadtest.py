"""A small, bounded load test at rising concurrency, timed the way vLLM's own benchmark times it.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb, through
:mod:`llmserve.stack.load`) and by the cross-check against ``vllm bench serve``
(:mod:`llmserve.serving.crosscheck`). Layer: live.

Each level keeps ``concurrency`` streamed chat requests in flight (a closed loop:
each of ``concurrency`` workers sends its next request when the last one ends, as
``vllm bench serve --max-concurrency`` does) until the level's requests are sent.
What makes the timings the server's rather than the client's:

* every worker has its own keep-alive :class:`~llmserve.serving.client.Connection`,
  opened before the level starts, so no client is built and no connection is made
  inside a timed request;
* ``warmup_requests`` requests go first and are not counted (the server's first
  request and the client's first use pay one-off costs);
* ``/metrics`` is read by a separate process (:mod:`llmserve.serving.metrics_recorder`),
  not by a thread competing with the workers for the interpreter;
* between levels, with the server idle, ``/metrics`` is read once more: the
  difference of its histograms is the **server's own account** of the level
  (TTFT, inter-token latency, end-to-end latency, time in the waiting queue).

Every level sends at least 10 requests, so that its p90 has a value above it
(:func:`llmserve.serving.stats.min_samples`). Safety bounds: loopback addresses
only (the local engine or a ``kubectl port-forward``), at most :data:`MAX_REQUESTS`
requests in all, a wall-clock budget (``max_duration_s``) after which no new
request starts, and a per-request timeout. The result is plain data.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict
from urllib.parse import urlparse

from llmserve.core.errors import CourseError, require
from llmserve.serving import stats
from llmserve.serving.client import Connection, root_url, stream_chat
from llmserve.serving.metrics import fetch_metrics
from llmserve.serving.metrics_recorder import MetricsRecorder

MAX_REQUESTS = 256
MAX_CONCURRENCY = 64
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Requests per level at least: enough for a p90 with a value above it.
MIN_REQUESTS = stats.min_samples(90)

DEFAULT_PROMPT = [{"role": "user", "content": "Write a Python function that parses a Kubernetes manifest."}]


def requests_for(concurrency: int, requests_per_level: int | dict[int, int] | None = None) -> int:
    """How many requests a level sends: as asked (one number, or one per concurrency), else twice
    the concurrency but at least :data:`MIN_REQUESTS`."""
    if isinstance(requests_per_level, dict):
        requests_per_level = requests_per_level.get(concurrency)
    return requests_per_level or max(2 * concurrency, MIN_REQUESTS)


def _check(base_url, levels, requests_per_level, max_tokens, max_duration_s, warmup_requests):
    host = urlparse(base_url).hostname
    require(host in LOOPBACK, f"The load test only targets loopback addresses, not {host!r}.",
            "Use the local engine's base_url or a port-forward (http://127.0.0.1:8000/v1); "
            "never load-test a shared endpoint from a notebook.")
    require(isinstance(levels, (list, tuple)) and levels and all(
        isinstance(c, int) and 1 <= c <= MAX_CONCURRENCY for c in levels),
        f"levels must be a list of concurrencies between 1 and {MAX_CONCURRENCY}, got {levels!r}.",
        "Use e.g. [1, 2, 4, 8].")
    require(isinstance(max_tokens, int) and max_tokens > 0, f"max_tokens must be > 0, got {max_tokens!r}.",
            "Use e.g. 64.")
    require(max_duration_s > 0, f"max_duration_s must be > 0, got {max_duration_s!r}.", "Use e.g. 60.")
    require(isinstance(warmup_requests, int) and warmup_requests >= 0,
            f"warmup_requests must be a whole number ≥ 0, got {warmup_requests!r}.", "Use 1 (the default).")
    total = sum(requests_for(c, requests_per_level) for c in levels) + warmup_requests
    require(total <= MAX_REQUESTS, f"{total} requests in all is more than this test allows ({MAX_REQUESTS}).",
            "Use fewer levels or fewer requests per level.")


class _Level:
    """One level's closed loop: ``concurrency`` workers, each on its own open connection."""

    def __init__(self, request, index: int, concurrency: int, n: int, t0: float, deadline: float,
                 progress) -> None:
        self.request, self.index, self.concurrency, self.n = request, index, concurrency, n
        self.t0, self.deadline, self.progress = t0, deadline, progress
        self.results: list[dict] = []
        self._next = 0
        self._lock = threading.Lock()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.n:
                return None
            self._next += 1
            return self._next - 1

    def _worker(self, conn: Connection) -> None:
        while self._take() is not None:
            rec = {"level": self.index, "concurrency": self.concurrency, "start_s": time.perf_counter() - self.t0}
            if time.perf_counter() >= self.deadline:
                rec.update(end_s=rec["start_s"], ttft_s=None, latency_s=None, itl_s=None, chunk_gaps_s=[],
                           output_tokens=0, prompt_tokens=0, error="skipped: time budget used up")
            else:
                try:
                    r = self.request(conn)
                    rec.update(ttft_s=r.ttft_s, latency_s=r.latency_s, itl_s=r.itl_s, chunk_gaps_s=r.chunk_gaps_s,
                               output_tokens=r.completion_tokens, prompt_tokens=r.prompt_tokens, error=None)
                except CourseError as err:
                    rec.update(ttft_s=None, latency_s=None, itl_s=None, chunk_gaps_s=[], output_tokens=0,
                               prompt_tokens=0, error=err.what)
                rec["end_s"] = time.perf_counter() - self.t0
            with self._lock:
                self.results.append(rec)
                if self.progress:
                    self.progress(self.index, self.concurrency, len(self.results), self.n)

    def run(self, base_url: str, timeout_s: float) -> float:
        """Run the level; returns when it started (seconds since the test began)."""
        conns = [Connection(base_url, timeout_s).open() for _ in range(self.concurrency)]
        workers = [threading.Thread(target=self._worker, args=(c,), name=f"load-c{self.concurrency}-{i}")
                   for i, c in enumerate(conns)]
        started = time.perf_counter() - self.t0
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            for c in conns:
                c.close()
        return started


def run_load_test(base_url: str, model: str, levels: list[int] = (1, 2, 4, 8), *,
                  requests_per_level: int | dict[int, int] | None = None, messages: list[dict] | None = None,
                  max_tokens: int = 64, ignore_eos: bool = True, api_key: str | None = None,
                  max_duration_s: float = 120, request_timeout_s: float = 60, warmup_requests: int = 1,
                  sample_interval_s: float | None = 0.1, progress=None) -> dict:
    """Run the load test; see the module docstring.

    ``requests_per_level`` defaults to :func:`requests_for`. ``ignore_eos`` makes each
    request produce exactly ``max_tokens`` tokens (equal work per request).
    ``sample_interval_s=None`` runs no ``/metrics`` recorder (no samples): the recorder and
    the server's rendering of ``/metrics`` take CPU from the engine, which on two cores
    shows in the timings; the cross-check against vLLM's benchmark runs without it.
    ``progress(level_index, concurrency, done, total)`` is called as requests finish.

    Returns ``{"base_url", "model", "max_tokens", "warmup", "levels": [...], "samples": [...],
    "recorder": {...}, "stopped_early", "reason", "duration_s"}``. Each level: ``concurrency``,
    ``started_s``, ``wall_s``, ``requests`` (each: ``level``, ``concurrency``, ``start_s``,
    ``end_s``, ``ttft_s``, ``latency_s``, ``itl_s``, ``chunk_gaps_s``, ``output_tokens``,
    ``prompt_tokens``, ``error``), ``ok``, ``errors``, ``output_tokens``, ``throughput_tok_s``
    (output tokens ÷ the level's wall time), ``ttft``, ``itl``, ``latency`` and ``chunk_gap``
    (:class:`~llmserve.serving.stats.Spread` as dicts: ``n``, ``mean``, ``p50``, ``p90``; a
    percentile the count does not support is None), the same p50/p90 as ``ttft_p50_s`` …
    for plotting, and ``server`` (:func:`~llmserve.serving.stats.server_delta` and the
    histograms' ``latency``). Each sample (a reading of ``/metrics``): ``t_s``, ``level``,
    ``concurrency``, ``kv_cache_usage``, ``running``, ``waiting``, ``preemptions``.
    """
    levels = list(levels)
    _check(base_url, levels, requests_per_level, max_tokens, max_duration_s, warmup_requests)
    messages = messages or DEFAULT_PROMPT

    def request(conn: Connection):
        return stream_chat(base_url, model, messages, api_key, max_tokens=max_tokens, ignore_eos=ignore_eos,
                           timeout_s=request_timeout_s, connection=conn)

    with Connection(base_url, request_timeout_s) as conn:
        warmup = [request(conn).ttft_s for _ in range(warmup_requests)]
    out_levels: list[dict] = []
    stopped_early, reason = False, ""
    recorder = MetricsRecorder(root_url(base_url), sample_interval_s) if sample_interval_s else None
    with recorder or contextlib.nullcontext():
        offset = recorder.started_at() if recorder else 0.0
        t0 = time.perf_counter()
        deadline = t0 + max_duration_s
        before = fetch_metrics(root_url(base_url))
        for index, conc in enumerate(levels):
            if time.perf_counter() >= deadline:
                stopped_early, reason = True, f"time budget of {max_duration_s:.0f} s used up"
                break
            level = _Level(request, index, conc, requests_for(conc, requests_per_level), t0, deadline, progress)
            started = level.run(base_url, request_timeout_s)
            wall = time.perf_counter() - t0 - started
            after = fetch_metrics(root_url(base_url))
            out_levels.append(_summarise(index, conc, started, wall, level.results, before, after))
            before = after
            failed = [r for r in level.results if r["error"] and not r["error"].startswith("skipped")]
            if failed and len(failed) == len(level.results):
                stopped_early, reason = True, f"every request at concurrency {conc} failed: {failed[0]['error']}"
                break
        duration = time.perf_counter() - t0
    samples = recorder.samples_for(out_levels, offset) if recorder else []
    return {"base_url": base_url, "model": model, "max_tokens": max_tokens, "warmup": warmup,
            "levels": out_levels, "samples": samples,
            "recorder": {"interval_s": sample_interval_s, "readings": len(recorder.readings) if recorder else 0,
                         "errors": recorder.errors[:5] if recorder else []},
            "stopped_early": stopped_early, "reason": reason, "duration_s": duration}


def _summarise(index: int, conc: int, started: float, wall: float, results: list[dict], before, after) -> dict:
    ok = [r for r in results if r["error"] is None]
    tokens = sum(r["output_tokens"] for r in ok)
    figures = {"ttft": stats.spread([r["ttft_s"] for r in ok]),
               "itl": stats.spread([r["itl_s"] for r in ok]),
               "latency": stats.spread([r["latency_s"] for r in ok]),
               "chunk_gap": stats.spread([g for r in ok for g in r["chunk_gaps_s"]])}
    server = dict(stats.server_delta(before.samples, after.samples),
                  latency=stats.histogram_deltas(before.histograms, after.histograms))
    level = {"level": index, "concurrency": conc, "started_s": started, "wall_s": wall,
             "requests": sorted(results, key=lambda r: r["start_s"]), "ok": len(ok),
             "errors": len(results) - len(ok), "output_tokens": tokens,
             "throughput_tok_s": tokens / wall if wall > 0 else 0.0, "server": server}
    for name, s in figures.items():
        level[name] = asdict(s)
        level[f"{name}_p50_s"], level[f"{name}_p90_s"] = s.p50, s.p90
    return level
