"""Parsing /metrics: current and older names, histograms, the cache settings.

The /metrics text below is CONSTRUCTED input in the Prometheus text format
(https://prometheus.io/docs/instrumenting/exposition_formats/), shaped like a
vLLM server's output with the metric names from vLLM's docs ("Production
Metrics") and vllm/v1/metrics/loggers.py (0.32). It is not a recorded observation.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.serving.client import root_url
from llmserve.serving.metrics import metrics_url, parse_metrics, server_max_concurrency


CONSTRUCTED_CURRENT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-qwen2"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny-qwen2"} 5.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny-qwen2"} 0.875
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="tiny-qwen2"} 2.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="tiny-qwen2"} 1234.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="tiny-qwen2"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny-qwen2"} 6.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny-qwen2"} 6.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny-qwen2"} 0.9
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 100.0
"""

# Older names (V0 engine / early V1): gpu_cache_usage_perc and a preemption counter without
# "s". Two engines (two label sets) to check that values add up. CONSTRUCTED input.
CONSTRUCTED_OLDER = """\
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 1.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 0.0
# TYPE vllm:num_preemption counter
vllm:num_preemption_total{model_name="m"} 7.0
"""



# Histograms as vLLM 0.32 names them, and the pre-0.11 name of the inter-token histogram
# (vllm:time_per_output_token_seconds, deprecated in 0.11 in favour of
# vllm:inter_token_latency_seconds). Two engines, to check that buckets add up. CONSTRUCTED.
CONSTRUCTED_HISTOGRAMS = """\
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.3",model_name="m"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.5",model_name="m"} 3.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 4.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="m"} 1.6
vllm:e2e_request_latency_seconds_bucket{engine="1",le="0.3",model_name="m"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="1",le="0.5",model_name="m"} 1.0
vllm:e2e_request_latency_seconds_bucket{engine="1",le="+Inf",model_name="m"} 2.0
vllm:e2e_request_latency_seconds_count{engine="1",model_name="m"} 2.0
vllm:e2e_request_latency_seconds_sum{engine="1",model_name="m"} 1.4
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="m"} 90.0
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="m"} 100.0
vllm:time_per_output_token_seconds_count{model_name="m"} 100.0
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.8
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2000"} 1.0
"""


def test_parse_current_names():
    snap = parse_metrics(CONSTRUCTED_CURRENT)
    assert snap.kv_cache_usage == 0.875
    assert (snap.running, snap.waiting, snap.preemptions) == (3.0, 5.0, 2.0)
    assert snap.generation_tokens == 1234.0
    assert snap.prompt_tokens is None            # not in this text
    assert snap.names["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert snap.names["preemptions"] == "vllm:num_preemptions_total"
    # Histogram buckets are left out of the samples; count and sum are kept; other exporters ignored.
    assert "vllm:time_to_first_token_seconds_count" in snap.samples
    assert not any(k.endswith("_bucket") for k in snap.samples)
    assert not any(k.startswith("python_") for k in snap.samples)
    assert "samples" not in snap.to_dict() and "histograms" not in snap.to_dict()
    # ... and the histogram itself is there, with its buckets.
    ttft = snap.histograms["ttft"]
    assert (ttft.count, ttft.total) == (6.0, 0.9) and dict(ttft.buckets)[0.1] == 4.0
    assert snap.names["ttft"] == "vllm:time_to_first_token_seconds"


def test_parse_older_names_and_sum_over_engines():
    snap = parse_metrics(CONSTRUCTED_OLDER)
    assert snap.kv_cache_usage == 0.25
    assert snap.names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert snap.running == 3.0                   # 1 + 2 over the two engines
    assert snap.preemptions == 7.0
    assert snap.names["preemptions"] == "vllm:num_preemption_total"


def test_histograms_current_and_older_names_and_the_cache_settings():
    snap = parse_metrics(CONSTRUCTED_HISTOGRAMS)
    e2e = snap.histograms["e2e"]
    assert (e2e.count, e2e.total) == (6.0, 3.0) and dict(e2e.buckets) == {0.3: 2.0, 0.5: 4.0, float("inf"): 6.0}
    assert snap.names["itl"] == "vllm:time_per_output_token_seconds"       # the older name is read too
    assert snap.histograms["itl"].mean == pytest.approx(0.008)
    assert snap.cache_config["num_gpu_blocks"] == "2000" and snap.cache_config["block_size"] == "16"
    assert "ttft" not in snap.histograms                                     # not in this text


def test_prediction_from_a_servers_own_figures():
    labels = parse_metrics(CONSTRUCTED_HISTOGRAMS).cache_config
    # 8192 tokens = 512 blocks of 16: 2000 / 512
    assert server_max_concurrency(labels, 8192) == 2000 / 512
    assert server_max_concurrency({}, 8192) is None
    assert parse_metrics("# nothing here\n").cache_config == {}
    with pytest.raises(InputError):
        server_max_concurrency(labels, 0)


def test_parse_rejects_garbage():
    with pytest.raises(InputError):
        parse_metrics("this is { not prometheus")
    with pytest.raises(InputError):
        parse_metrics(None)


def test_urls():
    assert metrics_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("http://127.0.0.1:8000/metrics") == "http://127.0.0.1:8000/metrics"
    assert root_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
