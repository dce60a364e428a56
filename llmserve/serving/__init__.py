"""Talking to a vLLM server: local CPU engine, OpenAI client, metrics, load tests (capstone and KV-cache chapters).

* ``tinymodel``  — a tiny random Qwen2 model + BPE tokenizer made offline (``ensure_tiny_model``).
* ``local_vllm`` — ``LocalVLLM`` context manager (real vLLM 0.32 CPU engine), ``measure_kv_capacity``.
* ``client``     — ``chat``, ``stream_chat`` (TTFT, ITL, tokens/s from reported usage), ``list_models``.
* ``metrics``    — ``fetch_metrics`` / ``parse_metrics`` for ``/metrics`` (current and older names).
* ``loadtest``   — ``run_load_test`` at rising concurrency, sampling ``/metrics``; ``summary_table``.

Nothing is imported here, so ``import llmserve.serving.metrics`` stays light.
"""
