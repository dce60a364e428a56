"""Pure rules of the capstone: what a load test's result says, level by level, beside the prediction.

Used by notebooks/stack-lab.ipynb, book/stack.md and :mod:`llmserve.stack.report`. Layer:
pure rules (core and :mod:`llmserve.serving.stats` only). Input: the dict that
:func:`llmserve.serving.loadtest.run_load_test` returns (or its ``samples`` list).

* the ``/metrics`` gauges over time: the most requests seen waiting per level
  (:func:`waiting_by_level`), preemptions (:func:`preemptions_during`), how often the
  recorder really got a reading (:func:`reading_rate`);
* the server's own histograms per level: mean time in the waiting queue
  (:func:`queue_by_level`) and the server's TTFT, ITL and end-to-end latency beside the
  client's (:func:`client_and_server`);
* the planner's prediction against the levels (:func:`levels_around`).
"""
from __future__ import annotations

from llmserve.core.errors import require
from llmserve.serving.stats import min_samples


def _samples(result_or_samples) -> list[dict]:
    if isinstance(result_or_samples, dict):
        require("samples" in result_or_samples, "Expected the dict run_load_test returns, or a list of samples.",
                "Pass run_load_test(...)'s result or its 'samples'.")
        return list(result_or_samples["samples"])
    return list(result_or_samples)


def waiting_by_level(result_or_samples) -> dict[int, float]:
    """The most requests seen waiting in /metrics at each concurrency level of a load test."""
    out: dict[int, float] = {}
    for s in _samples(result_or_samples):
        if s.get("waiting") is None or not s.get("concurrency"):
            continue
        out[s["concurrency"]] = max(out.get(s["concurrency"], 0.0), s["waiting"])
    return dict(sorted(out.items()))


def preemptions_during(result_or_samples) -> float | None:
    """How many preemptions the counter grew by during the load test (None if not exposed)."""
    values = [s["preemptions"] for s in _samples(result_or_samples) if s.get("preemptions") is not None]
    return values[-1] - values[0] if values else None


def peak_kv_usage(result_or_samples) -> float | None:
    """The highest KV-cache usage (fraction 0–1) any reading saw."""
    values = [s["kv_cache_usage"] for s in _samples(result_or_samples) if s.get("kv_cache_usage") is not None]
    return max(values) if values else None


def reading_rate(result: dict) -> dict:
    """How often ``/metrics`` was really read: ``asked_s`` (the interval asked for), ``readings``,
    ``duration_s`` and ``every_s`` (the interval achieved: a busy machine answers late)."""
    readings, duration = result["recorder"]["readings"], result["duration_s"]
    return {"asked_s": result["recorder"]["interval_s"], "readings": readings, "duration_s": duration,
            "every_s": duration / readings if readings else None}


def queue_by_level(result: dict) -> dict[int, float | None]:
    """Mean seconds a request spent waiting to be scheduled, per concurrency (the server's histogram)."""
    return {lv["concurrency"]: (lv.get("server") or {}).get("queue_mean_s") for lv in result["levels"]}


def client_and_server(result: dict) -> list[dict]:
    """Per level, the client's view beside the server's own account (seconds; None = not measured).

    Client: the mean and the median TTFT, per-token ITL and end-to-end latency of the level's
    requests (``n`` of them). Server: the means of ``vllm:time_to_first_token_seconds``,
    ``vllm:inter_token_latency_seconds``, ``vllm:e2e_request_latency_seconds`` and
    ``vllm:request_queue_time_seconds`` over the same level (exact: ``_sum ÷ _count``), and
    how many observations each had. The server starts its clocks when the request reaches
    the engine's input processor and stops them when the engine hands out the token, so the
    client's figures are larger by the HTTP and streaming path; the gap is what the client sees
    and the server cannot.
    """
    rows = []
    for lv in result["levels"]:
        latency = (lv.get("server") or {}).get("latency") or {}

        def server(key: str, latency=latency):
            h = latency.get(key) or {}
            return h.get("mean_s"), h.get("n")

        rows.append({"concurrency": lv["concurrency"], "n": lv["ok"],
                     "client_ttft_s": lv["ttft"]["p50"], "client_ttft_mean_s": lv["ttft"]["mean"],
                     "client_itl_s": lv["itl"]["p50"], "client_itl_mean_s": lv["itl"]["mean"],
                     "client_e2e_s": lv["latency"]["p50"], "client_e2e_mean_s": lv["latency"]["mean"],
                     "server_ttft_s": server("ttft")[0], "server_itl_s": server("itl")[0],
                     "server_e2e_s": server("e2e")[0], "server_queue_s": server("queue")[0],
                     "server_n": server("ttft")[1]})
    return rows


def levels_around(levels: list[int], predicted: float) -> tuple[list[int], list[int]]:
    """The levels at or under the planner's maximum concurrency, and those at twice it or more."""
    require(predicted is not None and predicted > 0, "The prediction must be a positive number.",
            "Use the planner's Plan.max_concurrency (or predicted_max_concurrency(target)).")
    return [c for c in levels if c <= predicted], [c for c in levels if c >= 2 * predicted]


def enough_for(q: int, result: dict) -> bool:
    """True when every level of the result has enough requests for its q-th percentile."""
    return all(lv["ok"] >= min_samples(q) for lv in result["levels"])
