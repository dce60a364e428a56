"""The /metrics recorder runs in its own process and lines its readings up with the load test's levels.

The stand-in server answers CONSTRUCTED /metrics text (names from vllm/v1/metrics/loggers.py).
"""
from __future__ import annotations

import http.server
import threading
import time

from llmserve.serving.metrics_recorder import MetricsRecorder

CONSTRUCTED = ("# TYPE vllm:num_requests_waiting gauge\n"
               'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n'
               "# TYPE vllm:kv_cache_usage_perc gauge\n"
               'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n')


def test_metrics_recorder_reads_from_its_own_process():
    seen_from = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 - http.server's name
            seen_from.add(self.client_address[1] and self.headers.get("User-Agent"))
            body = CONSTRUCTED.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with MetricsRecorder(f"http://127.0.0.1:{server.server_port}", interval_s=0.05) as rec:
            offset = rec.started_at()
            child = rec._proc.pid
            time.sleep(2.0)
        samples = rec.samples_for([{"started_s": 0.0, "wall_s": 10.0, "concurrency": 4}], offset)
    finally:
        server.shutdown()
    assert child and rec._proc is None                       # a child process, ended on exit
    assert rec.errors == [] and len(rec.readings) >= 3
    assert {s["kv_cache_usage"] for s in samples} == {0.25} and samples[-1]["concurrency"] == 4
    assert all(s["waiting"] == 0.0 for s in samples)


def test_a_recorder_without_a_server_records_errors_not_readings():
    with MetricsRecorder("http://127.0.0.1:9", interval_s=0.05) as rec:
        time.sleep(0.5)
    assert rec.readings == [] and rec.errors and "127.0.0.1:9" in rec.errors[0]["error"]
