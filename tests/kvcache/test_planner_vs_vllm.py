"""The planner against the real engine: what vLLM 0.32 logs at start-up must equal plan(...) exactly.

Starts the CPU build of vLLM (``.venv-vllm``) with the tiny locally made models,
three times in parallel, each only until it logs its KV-cache sizing
("CPU KV cache size: N tokens, Maximum concurrency for M tokens per request: X.XXx",
vllm/v1/core/kv_cache_utils.py update_kv_cache_capacity) or refuses to start.
The CPU backend takes the KV bytes as given (vllm/v1/worker/cpu_worker.py
determine_available_memory; VLLM_CPU_KVCACHE_SPACE × GiB from vllm/platforms/cpu.py),
so the planner's CPU path (plan_from_kv_bytes) must match to the token.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from llmserve.core.vllm import CPU_DEFAULT_BLOCK_SIZE
from llmserve.kvcache.planner import cpu_kv_cache_bytes, plan_from_kv_bytes
from llmserve.serving.engine import measure_kv_capacity
from llmserve.serving.tinymodel import TINY, TINY_WIDE, ensure_tiny_model

# Skipped by tests/conftest.py when .venv-vllm is missing (outside CI).
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.timeout(600),
]

# (shape, max_model_len, VLLM_CPU_KVCACHE_SPACE GiB, --kv-cache-memory-bytes, --block-size)
CASES = {
    # 1 GiB through the environment variable, the CPU's default 128-token blocks.
    "tiny-1GiB-env": (TINY, 1000, 1, None, None),
    # A second shape (3 layers, 4 KV heads), an odd byte count, 32-token blocks and a
    # max_model_len that is not a multiple of the block size.
    "wide-5MB-block32": (TINY_WIDE, 700, None, 5_000_000, 32),
    # Too small for one 2,000-token request: vLLM must refuse with the planner's message.
    "tiny-too-small": (TINY, 2000, None, 1_500_000, None),
}


@pytest.fixture(scope="module")
def measured():
    for shape in {TINY, TINY_WIDE}:
        ensure_tiny_model(shape)

    def probe(case):
        shape, max_len, space, kv_bytes, block = case
        return measure_kv_capacity(shape, max_model_len=max_len, kvcache_space_gib=space,
                                   kv_cache_memory_bytes=kv_bytes, block_size=block, startup_timeout_s=400)

    with ThreadPoolExecutor(len(CASES)) as pool:
        return dict(zip(CASES, pool.map(probe, CASES.values())))


def planned(name):
    shape, max_len, space, kv_bytes, block = CASES[name]
    return plan_from_kv_bytes(cpu_kv_cache_bytes(space, kv_bytes), shape.model_shape(), shape.kv_dtype(),
                              max_len, block_size=block or CPU_DEFAULT_BLOCK_SIZE, device="CPU")


@pytest.mark.parametrize("name", ["tiny-1GiB-env", "wide-5MB-block32"])
def test_started_engine_matches_plan_exactly(measured, name):
    got, p = measured[name], planned(name)
    assert got["started"], got
    assert p.fits
    assert got["device"] == "CPU"
    assert got["max_model_len"] == p.max_model_len
    assert got["kv_cache_tokens"] == p.kv_tokens
    # vLLM logs the concurrency with two decimals ("%.2fx").
    assert got["max_concurrency"] == round(p.max_concurrency, 2)


def test_one_gib_env_case_by_hand(measured):
    # By hand: 1 KiB per token (2 × 2 layers × 2 KV heads × 64 × 2 B) → 2**30 / (128 × 1,024)
    # = 8,192 blocks; a 1,000-token request takes ceil(1000/128) = 8 → 1,024 requests,
    # 1,024 × 1,000 = 1,024,000 tokens.
    assert measured["tiny-1GiB-env"]["kv_cache_tokens"] == 1_024_000
    assert measured["tiny-1GiB-env"]["cpu_kv_gib"] == 1.0


def test_refusal_matches_plan_message(measured):
    got, p = measured["tiny-too-small"], planned("tiny-too-small")
    assert not p.fits
    assert not got["started"], got
    assert got["error"] == "ValueError: " + p.message
