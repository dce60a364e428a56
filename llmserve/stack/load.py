"""The capstone's load test: its settings per target, the run, and the planner's prediction to compare with.

Used by notebooks/stack-lab.ipynb and book/stack.md. Layer: live. The load test itself
(levels, workers, the ``/metrics`` recorder, the server's histograms per level) is
:func:`llmserve.serving.loadtest.run_load_test`; this module chooses what to send.
"""
from __future__ import annotations

from llmserve.core import http
from llmserve.serving.loadtest import run_load_test
from llmserve.serving.metrics import fetch_metrics, server_max_concurrency
from llmserve.stack.lab import LOCAL_LAB, LocalLab
from llmserve.stack.target import Target

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
