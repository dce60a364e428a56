"""The capstone's load test: its settings per target, the run, the planner's prediction to compare
with, and the cross-check of the load test against ``vllm bench serve`` on the local engine.

Used by notebooks/stack-lab.ipynb and book/stack.md. Layer: live. The load test itself
(levels, workers, the ``/metrics`` recorder, the server's histograms per level) is
:func:`llmserve.serving.loadtest.run_load_test` and the cross-check
:mod:`llmserve.serving.crosscheck`; this module chooses what to send.
"""
from __future__ import annotations

from llmserve.core import http
from llmserve.core.errors import require
from llmserve.core.findings import Report
from llmserve.serving import crosscheck
from llmserve.serving.loadtest import run_load_test
from llmserve.serving.metrics import fetch_metrics, server_max_concurrency
from llmserve.stack.lab import (CROSS_CHECK_LAB, CROSS_CHECK_LEVELS, CROSS_CHECK_MAX_TOKENS, CROSS_CHECK_REQUESTS,
                                LOCAL_LAB, LocalLab)
from llmserve.stack.target import Target
from llmserve.world import mode

#: Readings of /metrics per second the recorder is asked for (book/stack.md says "ten times a second").
SAMPLE_INTERVAL_S = 0.1


def load_settings(target: Target, prompt_tokens: int | None, lab: LocalLab = LOCAL_LAB,
                  overlay: str | None = None) -> dict:
    """Keyword arguments for :func:`run_load` on this target (none when there is nothing to talk to).

    ``prompt_tokens``: the lab prompt's length as the server counted it (a stream's
    ``prompt_tokens``).

    Locally every request grows to nearly ``max_model_len`` tokens (the case the
    planner predicts for). On the GPU box each asks for 256 output tokens; on a
    laptop cluster (``overlay="laptop-cpu"``, a real 0.5B model on a laptop CPU)
    the test stays small: 64 tokens, concurrency up to 4. Every level sends at least
    the requests its p90 needs (:func:`llmserve.serving.loadtest.requests_for`).
    """
    if not target:
        return {}
    common = {"messages": lab.messages(), "max_duration_s": 180, "sample_interval_s": SAMPLE_INTERVAL_S}
    if target.kind == "local":
        return {"levels": list(lab.levels), "max_tokens": lab.max_tokens_for(prompt_tokens), **common}
    if overlay == "laptop-cpu":
        return {"levels": [1, 2, 4], "max_tokens": 64, "request_timeout_s": 120, **common}
    return {"levels": list(lab.levels), "max_tokens": 256, **common}


def run_load(target: Target, **settings) -> dict | None:
    """The load test on ``target`` (None when there is nothing to talk to)."""
    if not target:
        return None
    return run_load_test(target.base_url, target.served_model(), api_key=target.api_key, **settings)


def predicted_max_concurrency(target: Target, max_model_len: int | None = None) -> float | None:
    """The planner's prediction for the server in use (None when there is none).

    Local: the plan computed from the settings the engine was started with.
    Cluster: the same formula on the server's own figures
    (``vllm:cache_config_info`` and the model card's ``max_model_len``).
    """
    if not target:
        return None
    if target.plan is not None:
        return target.plan.max_concurrency
    labels = fetch_metrics(target.url).cache_config
    if max_model_len is None:
        cards = (http.get(target.base_url, "/models", api_key=target.api_key, timeout=10).json or {}).get("data")
        max_model_len = next((c.get("max_model_len") for c in cards or [] if c.get("max_model_len")), None)
    return server_max_concurrency(labels, max_model_len) if max_model_len else None


def cross_check(target: Target, rounds: int = 1, max_rounds: int = 4) -> crosscheck.CrossCheck | None:
    """The course's load test and ``vllm bench serve`` in turns on the local engine, with the
    cross-check's settings (:data:`llmserve.stack.lab.CROSS_CHECK_LAB`: a one-block prompt, 64
    tokens, levels 1 and 4); more rounds, up to ``max_rounds``, while they disagree. None elsewhere: on a
    cluster the benchmark runs as a Job inside it (``by_hand("bench")``)."""
    if target.kind != "local":
        return None
    messages = CROSS_CHECK_LAB.messages()
    prompt = target.stream(messages, max_tokens=4).prompt_tokens
    require(prompt < CROSS_CHECK_LAB.block_size,
            f"The cross-check's prompt is {prompt} tokens, more than one {CROSS_CHECK_LAB.block_size}-token "
            "block: at concurrency 4 requests could wait for the cache and both tools would time the queue.",
            "Shorten CROSS_CHECK_LAB's prompt (prompt_repeats).")
    return crosscheck.cross_check(target.base_url, target.served_model(), target.server.model_dir, messages,
                                  max_tokens=CROSS_CHECK_MAX_TOKENS, levels=list(CROSS_CHECK_LEVELS),
                                  requests_per_level=dict(CROSS_CHECK_REQUESTS), api_key=target.api_key,
                                  python=mode.vllm_python(), rounds=rounds, max_rounds=max_rounds)


def planted_fault_check(target: Target, check: crosscheck.CrossCheck | None, delay_s: float = 0.25) -> Report | None:
    """The cross-check again at its lowest level, with a client that spends ``delay_s`` before each
    request inside the timed region: the report that must fail (None without a cross-check)."""
    if check is None:
        return None
    level = min(CROSS_CHECK_LEVELS)
    return crosscheck.planted_fault_check(target.base_url, target.served_model(), CROSS_CHECK_LAB.messages(), check,
                                          level=level, requests=CROSS_CHECK_REQUESTS[level],
                                          max_tokens=CROSS_CHECK_MAX_TOKENS, api_key=target.api_key, delay_s=delay_s)
