"""Measurements paired with the formula (llmserve/kvcache/measure.py).

Reference numbers: Qwen2.5-Coder-7B-Instruct's config.json (28 layers, 28 heads,
4 KV heads, head_dim 128, hidden 3584;
https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct/blob/main/config.json):
2 × 28 × 4 × 128 × 2 = 57,344 B per token in bf16, worked out by hand here.
The GPU measurements run only in @gpu tests (scripts/gpu-check.sh).
"""
from __future__ import annotations

import pytest
import torch

from llmserve.core.errors import CourseError
from llmserve.kvcache import formula, measure
from llmserve.kvcache.attention import TinyDecoder, tiny_shape


def test_qwen_cache_holds_57344_bytes_per_token():
    rows = measure.measure_tokens(formula.QWEN25_CODER_7B, (16, 256, 1024), "bf16")
    assert [r.measured for r in rows] == [n * 57_344 for n in (16, 256, 1024)]
    assert all(r.equal and r.ratio == 1.0 for r in rows)


def test_layers_kv_heads_and_dtypes_all_equal_the_formula():
    rows = (measure.measure_layers(tokens=32) + measure.measure_kv_heads(tokens=32)
            + measure.measure_dtypes(tokens=32) + measure.measure_growth(new_tokens=16))
    assert rows and all(r.measured == r.formula for r in rows), [r for r in rows if not r.equal]


def test_cache_scales_with_layers():
    rows = measure.measure_layers(layers=(1, 7, 28), tokens=16)
    assert rows[1].measured == 7 * rows[0].measured and rows[2].measured == 28 * rows[0].measured


def test_mha_is_seven_times_gqa_and_28_times_mqa_for_qwen():
    mha, gqa, mqa = measure.measure_kv_heads(tokens=16)
    assert (mha.kv_heads, gqa.kv_heads, mqa.kv_heads) == (28, 4, 1)
    assert mha.measured == 7 * gqa.measured == 28 * mqa.measured


def test_dtype_sizes_are_4_2_1_bytes():
    rows = {r.dtype: r.measured for r in measure.measure_dtypes(tokens=16, dtypes=["fp32", "bf16", "fp8"])}
    assert rows["fp32"] == 2 * rows["bf16"] == 4 * rows["fp8"]
    assert "fp8" in measure.available_cache_dtypes("cpu")     # torch 2.13 stores float8_e4m3fn on a CPU


def test_growth_rows_follow_generation():
    rows = measure.measure_growth(prompt_tokens=8, new_tokens=16, every=4)
    assert [r.tokens for r in rows] == [8, 12, 16, 20, 24]
    assert rows[0].label == "after prompt"


def test_time_decode_returns_a_row_per_context_and_restores_threads():
    before = torch.get_num_threads()
    res = measure.time_decode((16, 64), repeats=2)
    assert torch.get_num_threads() == before
    assert [r.context for r in res.rows] == [16, 64] and res.threads == 1
    assert all(r.cached_s > 0 and r.recompute_s > 0 and r.speedup > 0 for r in res.rows)
    assert res.row(64).context == 64
    with pytest.raises(CourseError):
        res.row(999)


def test_cumulative_cost_is_increasing_and_ends_at_the_longest_context():
    res = measure.time_decode((16, 32, 64), repeats=1)
    cum = measure.cumulative_cost(res, step=8)
    assert cum[-1][0] == 64
    assert all(a[1] < b[1] and a[2] < b[2] for a, b in zip(cum, cum[1:]))


def test_time_decode_rejects_a_context_the_model_cannot_hold():
    small = TinyDecoder(tiny_shape(), max_positions=32)
    with pytest.raises(CourseError, match="positions"):
        measure.time_decode((64,), model=small)


def test_copy_and_decode_attention_run_on_a_cpu_at_small_sizes():
    copy = measure.copy_bandwidth(1 << 20, "cpu", repeats=2)
    assert copy.nbytes == 1 << 20 and copy.bytes_per_s > 0
    row = measure.decode_attention(2, 64, heads=8, kv_heads=2, head_dim=16, dtype="fp32", device="cpu",
                                   repeats=2, copy_bytes_per_s=copy.bytes_per_s)
    assert row.cache_bytes == 2 * (2 * 2 * 64 * 16 * 4)           # K and V, (B, Hkv, S, D) fp32
    assert row.bytes_per_s > 0 and row.fraction_of_copy > 0
    copy2, rows = measure.measure_bandwidth((1,), (32,), device="cpu", copy_nbytes=1 << 20, repeats=1,
                                            dtype="fp32", heads=4, kv_heads=2, head_dim=8)
    assert [r.method for r in rows] == ["sdpa", "repeat"]


def test_allocator_rounding_and_cpu_refusal():
    # CUDACachingAllocator rounds each allocation to 512 bytes (kMinBlockSize).
    q = formula.QWEN25_CODER_7B
    assert measure.allocator_rounded(q, 2, "bf16") == 2 * 28 * 2048        # 4×2×128×2 = 2048 B: multiple of 512
    assert measure.allocator_rounded(q, 1, "fp8") == 2 * 28 * 512          # 512 B exactly
    tiny = tiny_shape(1, 2, 1, 8)
    assert measure.allocator_rounded(tiny, 1, "fp32") == 2 * 512           # 32 B rounds up to 512
    if not torch.cuda.is_available():
        with pytest.raises(CourseError, match="CUDA"):
            measure.measure_allocator(q, (16,), device="cpu")


@pytest.mark.gpu
def test_cuda_allocator_delta_equals_the_formula():
    rows = measure.measure_allocator(formula.QWEN25_CODER_7B, (16, 256, 1024), "bf16")
    assert all(r.measured == r.formula for r in rows)


@pytest.mark.gpu
def test_grouped_attention_reads_the_cache_much_faster_than_repeating_heads():
    # At batch 16 and 8k tokens the cache is 16 × 8,192 × 4 KV heads × 128 × 2 B × 2 (K, V) = 256 MiB, enough
    # to keep a GPU's memory busy: enable_gqa reads it in place, near the copy rate; repeat_interleave first
    # writes and reads a 7× larger copy, so it must be several times slower.
    copy, rows = measure.measure_bandwidth((16,), (8192,), device="cuda")
    sdpa = next(r for r in rows if r.method == "sdpa")
    rep = next(r for r in rows if r.method == "repeat")
    assert sdpa.bytes_per_s > 3 * rep.bytes_per_s
    assert 0.3 < sdpa.fraction_of_copy < 1.5
