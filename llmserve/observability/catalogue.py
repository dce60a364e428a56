"""Pure rules of the observability chapter: the vLLM metrics to watch, the lab's PromQL, the dashboards' queries.

Used by book/observability.md, notebooks/observability-lab.ipynb, notebooks/full-stack-lab.ipynb
and the tests that evaluate every dashboard query against the lab's Prometheus. Layer: pure
rules (reads the dashboards' JSON through the core's paths; no I/O beyond that).

The metric names are vLLM 0.32's, registered in ``vllm/v1/metrics/loggers.py``
(``PrometheusStatLogger``); the Prometheus client adds ``_total`` to counters and
``_bucket``/``_sum``/``_count`` to histograms. Every series carries ``model_name`` (the served
name) and ``engine`` (the engine index); Prometheus adds ``job`` and ``instance`` (the replica).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from llmserve.core.errors import InputError, ManifestError
from llmserve.core.manifest_files import path


@dataclass(frozen=True)
class Metric:
    """One vLLM metric as it appears in Prometheus, and what to read from it."""

    name: str
    type: str        # gauge, counter, histogram
    meaning: str
    watch: str


#: What the course watches, with the name Prometheus stores (vllm/v1/metrics/loggers.py in 0.32).
METRICS: tuple[Metric, ...] = (
    Metric("vllm:num_requests_running", "gauge", "requests in the engine's batch this step",
           "flat at --max-num-seqs: the replica is full"),
    Metric("vllm:num_requests_waiting", "gauge", "requests admitted but not yet scheduled",
           "above 0 for long: too few replicas (the autoscaler's signal)"),
    Metric("vllm:kv_cache_usage_perc", "gauge", "fraction (0-1) of KV-cache blocks held by running requests",
           "near 1: new requests wait for blocks, running ones may be preempted"),
    Metric("vllm:num_preemptions_total", "counter", "requests evicted from the cache mid-generation",
           "any rate above 0: the cache is too small for the batch"),
    Metric("vllm:prefix_cache_queries_total", "counter", "prompt tokens looked up in the prefix cache",
           "the denominator of the hit rate"),
    Metric("vllm:prefix_cache_hits_total", "counter", "prompt tokens found in the prefix cache",
           "hits / queries: what cache-aware routing buys"),
    Metric("vllm:prompt_tokens_total", "counter", "prompt tokens processed (prefill)", "rate: prefill work"),
    Metric("vllm:generation_tokens_total", "counter", "tokens generated (decode)", "rate: output throughput"),
    Metric("vllm:request_success_total", "counter", "requests finished, by finish_reason",
           "rate per replica: how the router spreads the load"),
    Metric("vllm:time_to_first_token_seconds", "histogram", "arrival to first token, per request",
           "p95 against the target: what users feel first"),
    Metric("vllm:inter_token_latency_seconds", "histogram", "time between output tokens, per step",
           "p95 rising with the batch: decode slowed by sharing"),
    Metric("vllm:request_queue_time_seconds", "histogram", "time in the WAITING queue before first scheduled",
           "the part of TTFT spent queueing, not computing"),
    Metric("vllm:e2e_request_latency_seconds", "histogram", "arrival to last token, per request",
           "long tails: long outputs or queueing"),
)


def metric(name: str) -> Metric:
    for m in METRICS:
        if m.name == name:
            return m
    raise InputError(f"{name!r} is not a metric this course watches.",
                     f"Use one of: {', '.join(m.name for m in METRICS)}.")


# --------------------------------------------------------------------------- the lab's queries

def quantile(q: float, histogram: str, window: str = "1m", by: str = "") -> str:
    """PromQL for a percentile of a vLLM histogram: ``histogram_quantile(q, sum by (le…) (rate(…_bucket[w])))``."""
    if not 0 < q < 1:
        raise InputError(f"A quantile is between 0 and 1, got {q!r}.", "Use 0.5, 0.95 or 0.99.")
    metric(histogram)
    labels = ", ".join([x.strip() for x in by.split(",") if x.strip()] + ["le"])
    return f"histogram_quantile({q:g}, sum by ({labels}) (rate({histogram}_bucket[{window}])))"


def per_replica(expr_metric: str, func: str = "sum") -> str:
    """``sum by (instance) (metric)``: one series per replica (``instance`` = host:port)."""
    return f"{func} by (instance) ({expr_metric})"


def hit_rate(window: str = "1m", by: str = "instance") -> str:
    """The prefix-cache hit rate: hits over queries, both as rates."""
    return (f"sum by ({by}) (rate(vllm:prefix_cache_hits_total[{window}]))"
            f" / sum by ({by}) (rate(vllm:prefix_cache_queries_total[{window}]))")


#: The series the lab plots, named: PromQL with short windows, for a run of a minute or two.
def lab_queries(window: str = "10s") -> dict[str, str]:
    return {
        "kv_cache_usage": per_replica("vllm:kv_cache_usage_perc", "max"),
        "running": per_replica("vllm:num_requests_running"),
        "waiting": per_replica("vllm:num_requests_waiting"),
        "ttft_p50": quantile(0.5, "vllm:time_to_first_token_seconds", window),
        "ttft_p95": quantile(0.95, "vllm:time_to_first_token_seconds", window),
        "ttft_p95_replica": quantile(0.95, "vllm:time_to_first_token_seconds", window, by="instance"),
        "itl_p50": quantile(0.5, "vllm:inter_token_latency_seconds", window),
        "itl_p95": quantile(0.95, "vllm:inter_token_latency_seconds", window),
        "queue_p95": quantile(0.95, "vllm:request_queue_time_seconds", window),
        "prefix_hit_rate": hit_rate(window),
        "preemptions": per_replica(f"increase(vllm:num_preemptions_total[{window}])"),
    }


# --------------------------------------------------------------------------- the dashboards

DASHBOARDS_DIR = "components/observability/dashboards"
#: The dashboard every query of which must answer in the lab, and the GPU one only a GPU cluster answers.
COURSE_DASHBOARD = f"{DASHBOARDS_DIR}/vllm-course.json"
GPU_DASHBOARD = f"{DASHBOARDS_DIR}/gpu-dcgm.json"


_VARIABLE = re.compile(r"\$\{(\w+)[^}]*\}|\$(\w+)")


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str
    legend: str


def load_dashboard(relative: str = COURSE_DASHBOARD) -> dict:
    p: Path = path(relative)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"No dashboard at {p}.",
                            f"The course's dashboards are under manifests/{DASHBOARDS_DIR}.") from None
    except ValueError as exc:
        raise ManifestError(f"{p} is not valid JSON: {exc}.", "Export the dashboard from Grafana again.") from None


def dashboard_queries(dashboard: dict) -> list[PanelQuery]:
    """Every Prometheus query of a Grafana dashboard (rows' nested panels included)."""
    found = []

    def walk(panels: list) -> None:
        for panel in panels or []:
            walk(panel.get("panels"))
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    found.append(PanelQuery(panel.get("title", "?"), target.get("refId", "?"),
                                            " ".join(target["expr"].split()), target.get("legendFormat", "")))

    walk(dashboard.get("panels"))
    return found


def template_variables(expr: str) -> list[str]:
    """Grafana variables (``$name``, ``${name}``) in a query: the lab cannot evaluate those as they are."""
    return [a or b for a, b in _VARIABLE.findall(expr)]
