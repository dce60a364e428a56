"""A small, bounded load test at rising concurrency, watching /metrics while it runs.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb; the stack
chapter plots the result with ``llmserve.plots.stack``). For each concurrency
level it sends a fixed number of streamed chat requests through a thread pool,
records each request's TTFT, latency and (reported) output tokens, and
meanwhile samples ``/metrics`` (KV-cache usage, running, waiting, preemptions).

Safety bounds: loopback addresses only (the local engine or a
``kubectl port-forward``), at most :data:`MAX_REQUESTS` requests in all, a
wall-clock budget (``max_duration_s``) after which no new request starts, and
a per-request timeout. The result is plain data (dicts and lists), ready for
plots or ``json.dump``.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from llmserve.core.errors import CourseError, InputError, require
from llmserve.serving.client import root_url, stream_chat
from llmserve.serving.metrics import fetch_metrics

MAX_REQUESTS = 256
MAX_CONCURRENCY = 64
LOOPBACK = ("127.0.0.1", "localhost", "::1")

DEFAULT_PROMPT = [{"role": "user", "content": "Write a Python function that parses a Kubernetes manifest."}]


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0–100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _check(base_url, levels, requests_per_level, max_tokens, max_duration_s):
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
    total = sum(requests_per_level if requests_per_level else 2 * c for c in levels)
    require(total <= MAX_REQUESTS, f"{total} requests in all is more than this test allows ({MAX_REQUESTS}).",
            "Use fewer levels or fewer requests per level.")


def run_load_test(base_url: str, model: str, levels: list[int] = (1, 2, 4, 8), *,
                  requests_per_level: int | None = None, messages: list[dict] | None = None,
                  max_tokens: int = 64, ignore_eos: bool = True, api_key: str | None = None,
                  max_duration_s: float = 120, request_timeout_s: float = 60,
                  sample_interval_s: float = 0.25, progress=None) -> dict:
    """Run the load test; see the module docstring.

    ``requests_per_level`` defaults to twice the concurrency (so every level
    has a second wave that may queue). ``ignore_eos`` makes each request
    produce exactly ``max_tokens`` tokens (equal work per request).
    ``progress(level_index, concurrency, done, total)`` is called as requests
    finish.

    Returns ``{"base_url", "model", "max_tokens", "levels": [...], "samples": [...],
    "stopped_early", "reason", "duration_s"}``. Each level: ``concurrency``,
    ``started_s``, ``wall_s``, ``requests`` (each: ``level``, ``concurrency``,
    ``start_s``, ``end_s``, ``ttft_s``, ``latency_s``, ``itl_s``,
    ``output_tokens``, ``prompt_tokens``, ``error``), ``ok``, ``errors``,
    ``output_tokens``, ``throughput_tok_s`` (output tokens ÷ wall time),
    ``ttft_p50_s``, ``ttft_p90_s``, ``latency_p50_s``, ``latency_p90_s``,
    ``itl_p50_s``. Each sample: ``t_s``, ``level``, ``concurrency``,
    ``kv_cache_usage``, ``running``, ``waiting``, ``preemptions`` (times are
    seconds since the test started).
    """
    levels = list(levels)
    _check(base_url, levels, requests_per_level, max_tokens, max_duration_s)
    messages = messages or DEFAULT_PROMPT
    t0 = time.perf_counter()
    deadline = t0 + max_duration_s
    samples: list[dict] = []
    current = {"level": -1, "concurrency": 0}
    stop = threading.Event()
    sample_errors: list[str] = []

    def sampler() -> None:
        while not stop.is_set():
            try:
                snap = fetch_metrics(root_url(base_url), api_key=api_key, timeout_s=2)
                samples.append({"t_s": time.perf_counter() - t0, "level": current["level"],
                                "concurrency": current["concurrency"],
                                "kv_cache_usage": snap.kv_cache_usage, "running": snap.running,
                                "waiting": snap.waiting, "preemptions": snap.preemptions})
            except CourseError as err:
                sample_errors.append(err.what)
            stop.wait(sample_interval_s)

    watcher = threading.Thread(target=sampler, name="metrics-sampler", daemon=True)
    watcher.start()
    out_levels: list[dict] = []
    stopped_early, reason = False, ""
    try:
        for index, conc in enumerate(levels):
            if time.perf_counter() >= deadline:
                stopped_early, reason = True, f"time budget of {max_duration_s:.0f} s used up"
                break
            current.update(level=index, concurrency=conc)
            n = requests_per_level or 2 * conc
            results: list[dict] = []
            lock = threading.Lock()
            level_start = time.perf_counter()

            def one(i: int, index=index, conc=conc, n=n, results=results, lock=lock) -> None:
                rec = {"level": index, "concurrency": conc, "start_s": time.perf_counter() - t0}
                if time.perf_counter() >= deadline:
                    rec.update(end_s=rec["start_s"], ttft_s=None, latency_s=None, itl_s=None,
                               output_tokens=0, prompt_tokens=0, error="skipped: time budget used up")
                else:
                    try:
                        r = stream_chat(base_url, model, messages, api_key, max_tokens=max_tokens,
                                        ignore_eos=ignore_eos, timeout_s=request_timeout_s)
                        rec.update(ttft_s=r.ttft_s, latency_s=r.latency_s, itl_s=r.itl_s,
                                   output_tokens=r.completion_tokens, prompt_tokens=r.prompt_tokens, error=None)
                    except CourseError as err:
                        rec.update(ttft_s=None, latency_s=None, itl_s=None, output_tokens=0, prompt_tokens=0,
                                   error=err.what)
                    rec["end_s"] = time.perf_counter() - t0
                with lock:
                    results.append(rec)
                    if progress:
                        progress(index, conc, len(results), n)

            with ThreadPoolExecutor(max_workers=conc, thread_name_prefix=f"load-c{conc}") as pool:
                list(pool.map(one, range(n)))
            wall = time.perf_counter() - level_start
            out_levels.append(_summarise(index, conc, level_start - t0, wall, results))
            if any(r["error"] and not r["error"].startswith("skipped") for r in results) and all(
                    r["error"] for r in results):
                stopped_early, reason = True, f"every request at concurrency {conc} failed: {results[0]['error']}"
                break
    finally:
        stop.set()
        watcher.join(timeout=5)
    return {"base_url": base_url, "model": model, "max_tokens": max_tokens, "levels": out_levels,
            "samples": samples, "sample_errors": sample_errors[:5], "stopped_early": stopped_early,
            "reason": reason, "duration_s": time.perf_counter() - t0}


def _summarise(index: int, conc: int, started: float, wall: float, results: list[dict]) -> dict:
    ok = [r for r in results if r["error"] is None]
    ttft = [r["ttft_s"] for r in ok]
    lat = [r["latency_s"] for r in ok]
    itl = [r["itl_s"] for r in ok if r["itl_s"] is not None]
    tokens = sum(r["output_tokens"] for r in ok)
    return {"level": index, "concurrency": conc, "started_s": started, "wall_s": wall,
            "requests": sorted(results, key=lambda r: r["start_s"]), "ok": len(ok),
            "errors": len(results) - len(ok), "output_tokens": tokens,
            "throughput_tok_s": tokens / wall if wall > 0 else 0.0,
            "ttft_p50_s": _percentile(ttft, 50), "ttft_p90_s": _percentile(ttft, 90),
            "latency_p50_s": _percentile(lat, 50), "latency_p90_s": _percentile(lat, 90),
            "itl_p50_s": statistics.median(itl) if itl else None}


def summary_table(result: dict) -> str:
    """A plain-text table of a load test's levels (for printing in a notebook)."""
    if not isinstance(result, dict) or "levels" not in result:
        raise InputError("Expected the dict returned by run_load_test.", "Pass run_load_test(...)'s result.")
    head = f"{'conc':>4} {'ok':>3} {'err':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p90':>9} {'lat p50':>8} {'ITL p50':>8}"
    rows = [head]

    def ms(v):
        return f"{v * 1000:7.0f}ms" if v is not None else "      —"
    for lv in result["levels"]:
        rows.append(f"{lv['concurrency']:>4} {lv['ok']:>3} {lv['errors']:>3} {lv['throughput_tok_s']:8.1f} "
                    f"{ms(lv['ttft_p50_s']):>9} {ms(lv['ttft_p90_s']):>9} {ms(lv['latency_p50_s']):>8} "
                    f"{ms(lv['itl_p50_s']):>8}")
    peak = [s for s in result["samples"] if s["kv_cache_usage"] is not None]
    if peak:
        rows.append(f"peak KV-cache usage {max(s['kv_cache_usage'] for s in peak):.0%}, "
                    f"max waiting {max((s['waiting'] or 0) for s in peak):.0f}, "
                    f"preemptions {max((s['preemptions'] or 0) for s in peak):.0f}")
    if result.get("stopped_early"):
        rows.append(f"stopped early: {result['reason']}")
    return "\n".join(rows)
