"""Talking to a vLLM server and measuring it (the capstone, the KV-cache and API-key chapters).

* ``tinymodel``   (live) a tiny random Qwen2 model + BPE tokenizer made offline (``ensure_tiny_model``);
* ``engine``      (live) ``LocalVLLM``: the real vLLM 0.32 CPU engine as a context manager,
  ``measure_kv_capacity``;
* ``client``      (live) ``chat``, ``stream_chat`` (TTFT, ITL, chunk gaps from a kept-alive
  ``Connection``), ``list_models``, ``health``;
* ``metrics``     (live) ``fetch_metrics`` / ``parse_metrics`` for ``/metrics``: gauges, counters and
  latency histograms, current and older names;
* ``metrics_recorder`` (live) ``MetricsRecorder``: ``/metrics`` read from a separate process;
* ``loadtest``    (live) ``run_load_test`` at rising concurrency, with the server's histograms per level;
* ``vllm_bench``  (live) vLLM's own benchmark, ``vllm bench serve``, run against the same server;
* ``crosscheck``  (live) the load test and ``vllm bench serve`` in turns, compared;
* ``stats``       (pure rules) percentiles with their counts, histogram deltas, agreement;
* ``report``      (presentation) the load test's table.

Nothing is imported here, so ``import llmserve.serving.metrics`` stays light.
"""
