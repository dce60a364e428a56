"""Read a vLLM server's ``/metrics``: the gauges, counters and latency histograms the course watches.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb) through the load
test and the ``/metrics`` recorder, and by the tests of the local engine. Layer:
live (it fetches through :func:`llmserve.core.http.get`).

``/metrics`` is the Prometheus text format, parsed with
``prometheus_client.parser.text_string_to_metric_families``. Metric names changed
between releases, so each figure accepts the current name first and older ones
after (vLLM docs, "Production Metrics"; ``vllm/v1/metrics/loggers.py`` in 0.32):

* KV-cache usage (fraction 0–1): ``vllm:kv_cache_usage_perc`` (V1), older
  ``vllm:gpu_cache_usage_perc`` (and ``vllm:cpu_cache_usage_perc`` on old CPU builds).
* ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges).
* Preemptions (counter): ``vllm:num_preemptions_total``, older
  ``vllm:num_preemptions`` / ``vllm:num_preemption_total``.
* Token counters: ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``.
* Latency histograms (seconds, one observation per request unless said):
  ``vllm:time_to_first_token_seconds`` (arrival → first token, measured in the API
  server's process), ``vllm:inter_token_latency_seconds`` (one observation per
  output step of each request; called ``vllm:time_per_output_token_seconds`` before
  0.11, which deprecated that name), ``vllm:e2e_request_latency_seconds``,
  ``vllm:request_queue_time_seconds`` (time in the WAITING queue before first
  being scheduled) and ``vllm:request_time_per_output_token_seconds`` (each
  request's mean time per output token).
* ``vllm:cache_config_info``: an info gauge whose labels carry the cache settings
  (``block_size``, ``num_gpu_blocks`` …).

Values are summed over label sets (one engine has one; several engines behind one
exporter add up, which is what a dashboard shows for counters and queues).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from llmserve.core import http
from llmserve.core.errors import InputError, ServerError
from llmserve.serving.stats import Histogram

#: Canonical field → names to look for, newest first.
ALIASES: dict[str, tuple[str, ...]] = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc"),
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "preemptions": ("vllm:num_preemptions_total", "vllm:num_preemptions", "vllm:num_preemption_total",
                    "vllm:num_preemption"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
    "generation_tokens": ("vllm:generation_tokens_total", "vllm:generation_tokens"),
    "requests_succeeded": ("vllm:request_success_total", "vllm:request_success"),
}

#: Canonical histogram → names to look for, newest first.
HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
    "queue": ("vllm:request_queue_time_seconds",),
    "tpot": ("vllm:request_time_per_output_token_seconds",),
}
CACHE_CONFIG = ("vllm:cache_config_info", "vllm:cache_config")


@dataclass(frozen=True)
class MetricsSnapshot:
    """The figures the course watches, at one moment. ``None`` = not exposed by this server."""

    kv_cache_usage: float | None      # fraction 0–1 of the KV blocks in use
    running: float | None
    waiting: float | None
    preemptions: float | None         # cumulative since the server started
    prompt_tokens: float | None
    generation_tokens: float | None
    requests_succeeded: float | None
    names: dict = field(default_factory=dict)       # canonical field or histogram → the metric name found
    samples: dict = field(default_factory=dict)     # every vllm:* sample name → value (summed over labels)
    histograms: dict = field(default_factory=dict)  # canonical histogram → stats.Histogram
    cache_config: dict = field(default_factory=dict)  # the labels of vllm:cache_config_info
    time_s: float = 0.0                             # time.time() when parsed

    def to_dict(self) -> dict:
        d = asdict(self)
        for bulky in ("samples", "histograms"):
            d.pop(bulky)
        return d


def _histograms(families: list) -> dict[str, dict]:
    """Every vllm:* histogram: name → {"count", "sum", "buckets": {le: cumulative}} summed over labels."""
    out: dict[str, dict] = {}
    for family in families:
        if family.type != "histogram" or not family.name.startswith("vllm:"):
            continue
        h = out.setdefault(family.name, {"count": 0.0, "sum": 0.0, "buckets": {}})
        for s in family.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                h["buckets"][le] = h["buckets"].get(le, 0.0) + float(s.value)
            elif s.name.endswith("_count"):
                h["count"] += float(s.value)
            elif s.name.endswith("_sum"):
                h["sum"] += float(s.value)
    return out


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse Prometheus exposition text into a :class:`MetricsSnapshot`."""
    if not isinstance(text, str):
        raise InputError(f"Expected the /metrics text, got {type(text).__name__}.",
                         "Pass the body of GET /metrics (fetch_metrics does it for you).")
    sums: dict[str, float] = {}
    cache_labels: dict = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise InputError(f"This is not Prometheus text format: {exc}.",
                         "Fetch /metrics from the server's root URL (not /v1/metrics).") from exc
    for family in families:
        for sample in family.samples:
            if not sample.name.startswith("vllm:") or sample.name.endswith(("_bucket", "_created")):
                continue
            if family.name in CACHE_CONFIG and not cache_labels:
                cache_labels = dict(sample.labels)
            value = float(sample.value)
            if not math.isnan(value):
                sums[sample.name] = sums.get(sample.name, 0.0) + value
    values: dict[str, float | None] = {}
    names: dict[str, str] = {}
    for key, candidates in ALIASES.items():
        found = next((n for n in candidates if n in sums), None)
        values[key] = sums[found] if found else None
        if found:
            names[key] = found
    raw = _histograms(families)
    histograms = {}
    for key, candidates in HISTOGRAMS.items():
        found = next((n for n in candidates if n in raw), None)
        if found:
            h = raw[found]
            histograms[key] = Histogram(h["count"], h["sum"], tuple(sorted(h["buckets"].items())))
            names[key] = found
    return MetricsSnapshot(**values, names=names, samples=sums, histograms=histograms,
                           cache_config=cache_labels, time_s=time.time())


def metrics_url(url: str) -> str:
    """``…/metrics`` for a server root or an OpenAI base URL ending in ``/v1``."""
    base = url.rstrip("/")
    if base.endswith("/metrics"):
        return base
    if base.endswith("/v1"):
        base = base[:-3]
    return base + "/metrics"


def fetch_metrics(url: str, api_key: str | None = None, timeout_s: float = 5) -> MetricsSnapshot:
    """GET and parse ``/metrics`` (``url``: server root, ``…/v1`` or ``…/metrics``)."""
    target = metrics_url(url)
    snap = parse_metrics(http.get(target, "", timeout=timeout_s, api_key=api_key).text)
    if not snap.samples:
        raise ServerError(f"{target} answered, but with no vllm:* metrics.",
                          "Point it at a vLLM server (an ingress or another app answered instead).")
    return snap


def server_max_concurrency(cache_labels: dict, max_model_len: int) -> float | None:
    """``blocks ÷ ceil(max_model_len ÷ block_size)``: the figure vLLM logs, from a live server's own settings
    (the labels of ``vllm:cache_config_info``); None when the labels do not say."""
    try:
        blocks = int(cache_labels["num_gpu_blocks"])
        block_size = int(cache_labels["block_size"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(max_model_len, int) or max_model_len <= 0:
        raise InputError("max_model_len must be > 0.", "Read it from /v1/models (the model card's max_model_len).")
    return blocks / (-(-max_model_len // block_size))
