"""The load test's settings per target and the prediction from a server's own figures.

The /metrics text is CONSTRUCTED in the Prometheus text format, with the names of
vllm/v1/metrics/loggers.py (0.32); it is not a recorded observation.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmserve.serving.loadtest import requests_for
from llmserve.stack import lab, load, target

CONSTRUCTED_METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2000"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
"""


def test_load_settings_per_target():
    local = target.Target("local", "http://127.0.0.1:1", "k")
    remote = target.Target("cluster", "http://127.0.0.1:2/", "k")
    assert load.load_settings(local, 178)["max_tokens"] == lab.LOCAL_LAB.max_tokens_for(178)
    assert load.load_settings(remote, 60)["max_tokens"] == 256
    assert max(load.load_settings(remote, 60, overlay="laptop-cpu")["levels"]) == 4
    settings = load.load_settings(local, 178)
    # Ten readings a second, as book/stack.md says; every level enough requests for its p90.
    assert settings["sample_interval_s"] == 0.1
    assert all(requests_for(c) >= 10 for c in settings["levels"])


def test_nothing_to_load():
    nothing = target.Target("none", reason="no engine")
    assert load.run_load(nothing, levels=[1]) is None and load.predicted_max_concurrency(nothing) is None
    # The cross-check runs on the local engine only (on a cluster the benchmark runs as a Job).
    cluster = target.Target("cluster", "http://127.0.0.1:2", "k")
    assert load.cross_check(nothing) is None and load.cross_check(cluster) is None
    assert load.planted_fault_check(cluster, None) is None


def test_local_prediction_is_the_plan():
    shape = lab.LOCAL_LAB.tiny_shape()
    plan = lab.LOCAL_LAB.plan(shape.model_shape(), shape.kv_dtype())
    assert load.predicted_max_concurrency(target.Target("local", "http://x", "k", plan=plan)) == plan.max_concurrency


@pytest.fixture
def stand_in_server():
    """A loopback server with the constructed /metrics and a /v1/models card (max_model_len 8192)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                body, kind = CONSTRUCTED_METRICS.encode(), "text/plain; version=0.0.4"
            elif self.path == "/v1/models" and self.headers.get("Authorization") == "Bearer k":
                body = json.dumps({"object": "list", "data": [{"id": "m", "max_model_len": 8192}]}).encode()
                kind = "application/json"
            else:
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_the_cluster_path_predicts_from_the_servers_own_figures(stand_in_server):
    # 8192 tokens = 512 blocks of 16: 2000 / 512
    remote = target.Target("cluster", stand_in_server, "k")
    assert load.predicted_max_concurrency(remote) == 2000 / 512
    assert load.predicted_max_concurrency(remote, max_model_len=4096) == 2000 / 256
