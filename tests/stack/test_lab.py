"""The local lab's settings and the planner's prediction for exactly those settings."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.kvcache.formula import ModelShape
from llmserve.stack import lab


def test_local_lab_plan_matches_the_formula():
    # kv_cache_utils.get_max_concurrency_for_kv_cache_config: blocks / ceil(max_model_len / block_size)
    shape = ModelShape("t", layers=2, attention_heads=4, kv_heads=2, head_dim=64, hidden_size=256)
    local = lab.LocalLab(max_model_len=512, block_size=128, cache_blocks=17)
    per_token = 2 * 2 * 2 * 64 * 2                      # K and V × layers × kv_heads × head_dim × bf16 bytes
    assert local.kv_cache_bytes(shape, "bfloat16") == 17 * 128 * per_token
    plan = local.plan(shape, "bfloat16")
    assert plan.num_blocks == 17 and plan.max_concurrency == 17 / 4 and plan.fits and plan.device == "CPU"


def test_local_lab_sizes_requests_to_nearly_max_model_len():
    local = lab.LocalLab(max_model_len=512, margin_tokens=8)
    assert local.max_tokens_for(178) == 326
    with pytest.raises(InputError):
        local.max_tokens_for(600)
    assert local.messages()[0]["content"].count("Kubernetes") == local.prompt_repeats
    assert lab.LocalLab(stream_interval=1).engine_args() == ["--no-enable-prefix-caching"]
    assert lab.LocalLab(prefix_caching=True, stream_interval=8).engine_args() == ["--stream-interval", "8"]


def test_the_lab_model_is_the_capstones_shape():
    assert lab.LOCAL_LAB.tiny_shape() == lab.lab_shape()
    assert lab.lab_shape().head_dim == 64              # vLLM's CPU attention needs a supported head size


def test_the_cross_check_runs_the_labs_engine_with_a_shorter_prompt():
    # Same engine (so one plan), and every compared request fits in the cache at the top level.
    check, local = lab.CROSS_CHECK_LAB, lab.LOCAL_LAB
    assert check.engine_args() == local.engine_args() and check.cache_blocks == local.cache_blocks
    shape = check.tiny_shape().model_shape()
    plan = check.plan(shape, check.tiny_shape().kv_dtype())
    per_request = -(-(check.block_size + lab.CROSS_CHECK_MAX_TOKENS) // check.block_size)  # a prompt under one block
    assert max(lab.CROSS_CHECK_LEVELS) * per_request <= plan.num_blocks - 1         # one block is the null block
    assert all(lab.CROSS_CHECK_REQUESTS[c] >= 10 for c in lab.CROSS_CHECK_LEVELS)
