"""Read a vLLM server's Prometheus ``/metrics``: KV-cache usage, queue, preemptions.

Used by the capstone (book/stack.md) and the load test. Parsing uses
``prometheus_client.parser.text_string_to_metric_families``. Metric names
changed between releases, so each figure accepts the current name first and
older ones after (vLLM docs, "Production Metrics"; vllm/v1/metrics/loggers.py):

* KV-cache usage (fraction 0–1): ``vllm:kv_cache_usage_perc`` (V1), older
  ``vllm:gpu_cache_usage_perc`` (and ``vllm:cpu_cache_usage_perc`` on old CPU builds).
* ``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges).
* Preemptions (counter): ``vllm:num_preemptions_total``, older
  ``vllm:num_preemptions`` / ``vllm:num_preemption_total``.
* Token counters: ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``.

Values are summed over label sets (one engine has one; several engines behind
one exporter add up, which is what a dashboard shows for counters and queues).
"""
from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

from llmserve.core.errors import InputError, ServerError

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
    names: dict = field(default_factory=dict)    # canonical field → the metric name found
    samples: dict = field(default_factory=dict)  # every vllm:* sample name → value (summed over labels)
    time_s: float = 0.0                          # time.time() when parsed

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        return d


def parse_metrics(text: str) -> MetricsSnapshot:
    """Parse Prometheus exposition text into a :class:`MetricsSnapshot`."""
    from prometheus_client.parser import text_string_to_metric_families
    if not isinstance(text, str):
        raise InputError(f"Expected the /metrics text, got {type(text).__name__}.",
                         "Pass the body of GET /metrics (fetch_metrics does it for you).")
    sums: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("vllm:"):
                    continue
                if sample.name.endswith(("_bucket", "_created")):
                    continue
                value = float(sample.value)
                if math.isnan(value):
                    continue
                sums[sample.name] = sums.get(sample.name, 0.0) + value
    except ValueError as exc:
        raise InputError(f"This is not Prometheus text format: {exc}.",
                         "Fetch /metrics from the server's root URL (not /v1/metrics).") from exc
    values: dict[str, float | None] = {}
    names: dict[str, str] = {}
    for key, candidates in ALIASES.items():
        values[key] = None
        for name in candidates:
            if name in sums:
                values[key] = sums[name]
                names[key] = name
                break
    return MetricsSnapshot(**values, names=names, samples=sums, time_s=time.time())


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
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(target, headers=headers), timeout=timeout_s) as resp:
            body = resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise ServerError(f"{target} answered {exc.code}.",
                          "Check the URL: vLLM serves /metrics at the server root, next to /health."
                          if exc.code == 404 else "Send the server's API key (api_key=…).") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"Cannot reach {target}.",
                          "Start the server (LocalVLLM) or port-forward the Service "
                          "(kubectl -n ai-platform port-forward svc/vllm-qwen25-coder-7b 8000:8000).") from exc
    snap = parse_metrics(body)
    if not snap.samples:
        raise ServerError(f"{target} answered, but with no vllm:* metrics.",
                          "Point it at a vLLM server (an ingress or another app answered instead).")
    return snap
