"""The client, metrics and load-test helpers against one real CPU vLLM engine (tiny model).

One engine for the whole module (start-up costs 20-60 s on 2 cores). The tiny
model's text is gibberish by design, so only structure and measured quantities
are checked. Error messages come from :mod:`llmserve.core.http` (the one place that
words HTTP failures) unless the chat's context adds to them (a wrong model name).
Behaviours relied on (vLLM 0.32 OpenAI server docs / source):
``ignore_eos`` makes a request produce exactly ``max_tokens`` tokens
(SamplingParams); ``stream_options.include_usage`` adds a final usage chunk;
``--api-key`` guards the /v1 routes (401 otherwise) while /health and /metrics
stay open; an unknown model name is a 404.
"""
from __future__ import annotations

import threading
import time

import pytest

from llmserve.core.errors import InputError, ServerError
from llmserve.kvcache.planner import plan_from_kv_bytes
from llmserve.serving.client import Connection, chat, health, list_models, stream_chat
from llmserve.serving.engine import LocalVLLM, free_port
from llmserve.serving.loadtest import requests_for, run_load_test
from llmserve.serving.metrics import fetch_metrics
from llmserve.serving.report import summary_table
from llmserve.serving.tinymodel import TINY
from tests.support import KEYED_ENGINE_KEY, KEYED_ENGINE_KV_BYTES, KEYED_ENGINE_MAX_MODEL_LEN

# Skipped by tests/conftest.py when .venv-vllm is missing (outside CI).
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(400),
]

KEY = KEYED_ENGINE_KEY
HI = [{"role": "user", "content": "Say hello."}]
KV_BYTES = KEYED_ENGINE_KV_BYTES
# 10 requests × (≈13 prompt + 480 output tokens) need 10 × 4 blocks = 40 > 16: they queue or
# are preempted, so the burst lasts long enough to be seen in /metrics.
BURST, BURST_TOKENS = 10, 480


@pytest.fixture
def server(keyed_engine):
    """The session's keyed engine (tests/conftest.py: it also checks that it stops cleanly)."""
    return keyed_engine


def test_startup_log_and_kv_report(server):
    assert server.log_path.exists()
    log = server.log_path.read_text()
    assert "KV cache size:" in log
    # Two processes: the CPU worker logs from inside the engine core (engine.LOCAL_ENGINE_ENV).
    assert "(EngineCore pid=" in log and "(Worker pid=" not in log and "(VllmWorker" not in log
    assert server.progress_seen and server.progress_seen[-1][1] == "ready"
    # The engine's own report equals the planner's CPU path for the same bytes.
    p = plan_from_kv_bytes(KV_BYTES, TINY.model_shape(), TINY.kv_dtype(), KEYED_ENGINE_MAX_MODEL_LEN, block_size=128, device="CPU")
    assert server.kv_report["kv_cache_tokens"] == p.kv_tokens
    assert server.kv_report["max_concurrency"] == round(p.max_concurrency, 2)
    assert health(server.base_url)


def test_list_models(server):
    assert list_models(server.base_url, KEY) == [server.model]


def test_chat(server):
    r = chat(server.base_url, server.model, HI, KEY, max_tokens=8, extra_body={"ignore_eos": True})
    assert r.model == server.model
    assert r.completion_tokens == 8
    assert r.finish_reason == "length"
    assert r.prompt_tokens > 0
    assert isinstance(r.text, str)
    assert r.latency_s > 0


def test_stream_timings_use_reported_usage(server):
    r = stream_chat(server.base_url, server.model, HI, KEY, max_tokens=24, ignore_eos=True)
    assert r.completion_tokens == 24                 # from the usage block
    assert 0 < r.ttft_s <= r.latency_s
    assert r.itl_s is not None and r.itl_s >= 0
    assert r.itl_s == pytest.approx((r.latency_s - r.ttft_s) / 23)
    assert r.tokens_per_s == pytest.approx(24 / r.latency_s)
    assert r.chunks == len(r.chunk_times_s) >= 1
    assert r.chunk_times_s == sorted(r.chunk_times_s)
    assert r.finish_reason == "length"
    # vLLM's benchmark ends a request at its last text chunk, and so does the course.
    assert r.latency_s == r.chunk_times_s[-1] and r.ttft_s == r.chunk_times_s[0]
    assert len(r.chunk_gaps_s) == r.chunks - 1


def test_one_connection_serves_many_requests_and_the_clock_starts_after_connecting(server):
    # The client's own costs stay outside the timed region: the connection is opened first,
    # and kept alive, as in vLLM's benchmark (one aiohttp session for all requests).
    with Connection(server.base_url) as conn:
        sock = conn._conn.sock
        results = [stream_chat(server.base_url, server.model, HI, KEY, max_tokens=8, ignore_eos=True,
                               connection=conn) for _ in range(3)]
        assert conn._conn.sock is sock                 # the same socket: keep-alive, no reconnect
    assert all(r.completion_tokens == 8 for r in results)
    # With the first token sent alone (vllm/v1/engine/output_processor.py), text arrives in
    # several chunks spread over the request, not in one lump at the end.
    assert all(r.chunks > 1 and r.latency_s - r.ttft_s > 0 for r in results)


def test_metrics_while_busy(server):
    before = fetch_metrics(server.url)
    assert before.names["kv_cache_usage"] == "vllm:kv_cache_usage_perc"
    assert before.names["preemptions"] == "vllm:num_preemptions_total"
    busy, errors = [], []

    def one_request():
        try:
            stream_chat(server.base_url, server.model, HI, KEY, max_tokens=BURST_TOKENS, ignore_eos=True,
                        timeout_s=180)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def wave():
        threads = [threading.Thread(target=one_request) for _ in range(BURST)]
        for t in threads:
            t.start()
        return threads

    # The gauges are sampled, so a short burst on an idle machine can slip between two
    # polls: send up to five waves, polling while each runs, until the server is seen busy
    # (requests running or waiting, or cache in use).
    for _ in range(5):
        threads = wave()
        while any(t.is_alive() for t in threads):
            snap = fetch_metrics(server.url)
            if snap.running or snap.waiting or (snap.kv_cache_usage or 0) > 0:
                busy.append(snap)
            time.sleep(0.05)
        if busy:
            break
    after = fetch_metrics(server.url)
    assert not errors, errors[:3]
    assert busy, "never saw a running or waiting request, or cache in use, in /metrics during five bursts"
    assert all(0.0 <= (s.kv_cache_usage or 0) <= 1.0 for s in busy)
    assert max((s.kv_cache_usage or 0) for s in busy) > 0 or max((s.running or 0) for s in busy) > 0
    assert after.generation_tokens - before.generation_tokens >= BURST * BURST_TOKENS
    # 40 blocks wanted, 16 available: requests queue or are preempted, depending on timing
    # (the counter is cumulative, so it can only grow).
    assert after.preemptions >= before.preemptions
    assert all((s.running or 0) <= BURST for s in busy)


def test_load_test_structure(server):
    res = run_load_test(server.base_url, server.model, [1, 3], max_tokens=32, api_key=KEY,
                        max_duration_s=90, sample_interval_s=0.2)
    assert not res["stopped_early"], res["reason"]
    assert [lv["concurrency"] for lv in res["levels"]] == [1, 3]
    assert len(res["warmup"]) == 1                                  # one warm-up request, not counted
    for lv in res["levels"]:
        assert lv["ok"] == requests_for(lv["concurrency"]) >= 10 and lv["errors"] == 0
        assert all(r["output_tokens"] == 32 for r in lv["requests"])
        assert all(0 < r["ttft_s"] <= r["latency_s"] for r in lv["requests"])
        assert lv["throughput_tok_s"] > 0
        assert lv["ttft_p50_s"] <= lv["ttft_p90_s"]
        assert lv["ttft"]["n"] == lv["ok"]                          # every percentile says its count
        # The server's own account of the level: one TTFT and one e2e observation per request.
        server_latency = lv["server"]["latency"]
        assert server_latency["ttft"]["n"] == lv["ok"] == server_latency["e2e"]["n"]
        assert 0 < server_latency["ttft"]["mean_s"] <= lv["ttft"]["mean"]
        assert lv["server"]["requests"] == lv["ok"]
    assert res["samples"], res["recorder"]["errors"]
    assert set(res["samples"][0]) >= {"t_s", "concurrency", "kv_cache_usage", "running", "waiting", "preemptions"}
    assert "conc" in summary_table(res)


def test_wrong_model_lists_served_models(server):
    with pytest.raises(ServerError) as err:
        chat(server.base_url, "qwen25-coder-7b", HI, KEY, max_tokens=4)
    assert "'qwen25-coder-7b'" in err.value.what and server.model in err.value.what


def test_wrong_or_missing_api_key(server):
    with pytest.raises(ServerError, match="401") as err:
        chat(server.base_url, server.model, HI, "not-the-key", max_tokens=4)
    assert "is not the server's" in err.value.what and "VLLM_API_KEY" in err.value.fix
    with pytest.raises(ServerError, match="wants an API key") as err:
        stream_chat(server.base_url, server.model, HI, None, max_tokens=4)
    assert "--api-key" in err.value.what


def test_timeout(server):
    with pytest.raises(ServerError, match="did not answer within"):
        stream_chat(server.base_url, server.model, HI, KEY, max_tokens=400, ignore_eos=True, timeout_s=0.01)


def test_server_down_on_closed_port():
    url = f"http://127.0.0.1:{free_port()}/v1"   # nothing listens there
    with pytest.raises(ServerError, match="nothing listens there") as err:
        chat(url, "tiny-qwen2", HI, max_tokens=4, timeout_s=5)
    assert "port-forward" in err.value.fix
    with pytest.raises(ServerError, match="nothing listens there"):
        fetch_metrics(url)


def test_port_busy_is_refused_before_starting(server):
    with pytest.raises(ServerError, match="already in use"):
        LocalVLLM(TINY, port=server.port).start()


def test_load_test_refuses_non_loopback():
    with pytest.raises(InputError, match="loopback"):
        run_load_test("http://10.0.0.5:8000/v1", "m", [1])
