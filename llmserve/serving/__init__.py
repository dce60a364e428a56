"""Talking to a vLLM server: local CPU engine, OpenAI client, metrics, load tests (capstone and KV-cache chapters)."""
