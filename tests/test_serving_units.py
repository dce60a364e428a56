"""Pure unit tests of the serving helpers (no server started).

The /metrics text below is CONSTRUCTED input in the Prometheus text format
(https://prometheus.io/docs/instrumenting/exposition_formats/), shaped like a
vLLM server's output with the metric names from vLLM's docs ("Production
Metrics") and vllm/v1/metrics/loggers.py. It is not a recorded observation.
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.serving.client import chat, root_url
from llmserve.serving.loadtest import _percentile, run_load_test, summary_table
from llmserve.serving.local_vllm import LocalVLLM, free_port, port_is_free
from llmserve.serving.metrics import metrics_url, parse_metrics
from llmserve.serving.tinymodel import TINY, TINY_WIDE, TinyShape

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


def test_parse_current_names():
    snap = parse_metrics(CONSTRUCTED_CURRENT)
    assert snap.kv_cache_usage == 0.875
    assert (snap.running, snap.waiting, snap.preemptions) == (3.0, 5.0, 2.0)
    assert snap.generation_tokens == 1234.0
    assert snap.prompt_tokens is None            # not in this text
    assert snap.names["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert snap.names["preemptions"] == "vllm:num_preemptions_total"
    # Histogram buckets are left out; count and sum are kept; other exporters' metrics ignored.
    assert "vllm:time_to_first_token_seconds_count" in snap.samples
    assert not any(k.endswith("_bucket") for k in snap.samples)
    assert not any(k.startswith("python_") for k in snap.samples)
    assert "samples" not in snap.to_dict()


def test_parse_older_names_and_sum_over_engines():
    snap = parse_metrics(CONSTRUCTED_OLDER)
    assert snap.kv_cache_usage == 0.25
    assert snap.names["kv_cache_usage"] == "vllm:gpu_cache_usage_perc"
    assert snap.running == 3.0                   # 1 + 2 over the two engines
    assert snap.preemptions == 7.0
    assert snap.names["preemptions"] == "vllm:num_preemption_total"


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


def test_percentile_nearest_rank():
    # Nearest rank: p50 of 1..4 is the 2nd value, p90 the 4th.
    assert _percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert _percentile([4.0, 1.0, 3.0, 2.0], 90) == 4.0
    assert _percentile([], 50) is None


@pytest.mark.parametrize("kwargs", [dict(levels=[0]), dict(levels=[100]), dict(levels=[]),
                                    dict(levels=[64, 64, 64]), dict(max_tokens=0), dict(max_duration_s=0)])
def test_load_test_bounds(kwargs):
    args = dict(levels=[1, 2])
    args.update(kwargs)
    with pytest.raises(InputError):
        run_load_test("http://127.0.0.1:9/v1", "m", **args)


def test_summary_table_needs_a_result():
    with pytest.raises(InputError):
        summary_table({"nope": 1})


def test_client_input_checks():
    with pytest.raises(InputError):
        chat("127.0.0.1:8000", "m", [{"role": "user", "content": "x"}])
    with pytest.raises(InputError):
        chat("http://127.0.0.1:8000/v1", "", [{"role": "user", "content": "x"}])
    with pytest.raises(InputError):
        chat("http://127.0.0.1:8000/v1", "m", [{"content": "x"}])


def test_chat_to_closed_port_is_a_server_error():
    with pytest.raises(ServerError, match="Cannot reach"):
        chat(f"http://127.0.0.1:{free_port()}/v1", "m", [{"role": "user", "content": "x"}], timeout_s=3)


def test_missing_vllm_env_names_setup(tmp_path):
    srv = LocalVLLM(TINY, python=tmp_path / "no-such-python", model_dir=tmp_path)
    with pytest.raises(ServerError) as err:
        srv.start()
    assert "bash scripts/setup.sh" in err.value.fix
    assert not srv.is_running()


def test_local_vllm_command_and_env(tmp_path):
    # VLLM_CPU_KVCACHE_SPACE goes in the environment (vllm/platforms/cpu.py reads it);
    # otherwise --kv-cache-memory-bytes on the command line, and never both.
    a = LocalVLLM(TINY, model_dir=tmp_path, kvcache_space_gib=2, port=1234, api_key="k")
    assert a.environment()["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert "--kv-cache-memory-bytes" not in a.command()
    cmd = a.command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert "--enforce-eager" in cmd and cmd[cmd.index("--api-key") + 1] == "k"
    assert a.environment()["HF_HUB_OFFLINE"] == "1"
    b = LocalVLLM(TINY, model_dir=tmp_path, kv_cache_memory_bytes=12345, port=1234)
    assert "VLLM_CPU_KVCACHE_SPACE" not in b.environment()
    assert b.command()[b.command().index("--kv-cache-memory-bytes") + 1] == "12345"
    with pytest.raises(InputError):
        LocalVLLM(TINY, host="0.0.0.0")
    with pytest.raises(InputError):
        LocalVLLM(TINY, kvcache_space_gib=1.5)


def test_port_helpers():
    port = free_port()
    assert port_is_free(port)


def test_tiny_shapes():
    # Head size = hidden / heads = 64 for both (vLLM's CPU attention refuses 16).
    assert TINY.head_dim == 64 and TINY_WIDE.head_dim == 64
    assert TINY.model_shape().kv_heads == 2 and TINY.kv_dtype() == "bf16"
    # The cache directory name follows the shape.
    assert TINY.key() != TINY_WIDE.key()
    assert TinyShape().key() == TINY.key()
