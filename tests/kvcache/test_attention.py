"""The readable decoder with a KV cache (llmserve/kvcache/attention.py).

Expected byte counts are worked out here from each model's config.json
numbers (Qwen/Qwen2.5-Coder-7B-Instruct: 28 layers, 28 heads, 4 KV heads,
head_dim 128 — https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct/blob/main/config.json)
and from element sizes documented by PyTorch (torch.Tensor.element_size:
https://docs.pytorch.org/docs/stable/generated/torch.Tensor.element_size.html;
float32 = 4, bfloat16 = 2, float8_e4m3fn = 1 byte, https://docs.pytorch.org/docs/stable/tensor_attributes.html).
A cache stores, per layer, one K and one V tensor of shape (B, kv_heads, T, head_dim)
(vLLM: AttentionSpec.page_size_bytes = num_kv_heads × block_size × (head_size + head_size_v) × dtype size,
vllm/v1/kv_cache_interface.py, with head_size_v = head_size).
"""
from __future__ import annotations

import pytest
import torch

from llmserve.core.errors import CourseError, InputError
from llmserve.kvcache import formula
from llmserve.kvcache.attention import KVCache, TinyDecoder, attend, fp8_supported, tiny_shape

BYTES = {"fp32": 4, "bf16": 2, "fp8": 1}


def fill(cache: KVCache, tokens: int, chunk: int = 7) -> None:
    s = cache.shape
    done = 0
    while done < tokens:
        t = min(chunk, tokens - done)
        for layer in range(s.layers):
            k = torch.randn(cache.batch, s.kv_heads, t, s.head_dim)
            cache.append(layer, k, -k)
        done += t


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp8"])
@pytest.mark.parametrize("layers,heads,kv_heads,head_dim,batch,tokens", [
    (1, 4, 4, 8, 1, 1),        # multi-head, one token
    (2, 4, 2, 32, 1, 37),      # grouped, odd token count
    (3, 8, 1, 16, 2, 50),      # multi-query, batch of 2
    (28, 28, 4, 128, 1, 16),   # Qwen2.5-Coder-7B's exact shape
])
def test_growing_cache_holds_exactly_the_formula(dtype, layers, heads, kv_heads, head_dim, batch, tokens):
    shape = tiny_shape(layers, heads, kv_heads, head_dim)
    cache = KVCache(shape, batch=batch, dtype=dtype)
    fill(cache, tokens)
    by_hand = 2 * layers * batch * kv_heads * tokens * head_dim * BYTES[dtype]
    assert cache.length == tokens
    assert cache.nbytes == by_hand == cache.used_bytes
    assert cache.nbytes == formula.kv_bytes(shape, batch * tokens, dtype)


def test_qwen_shape_is_57344_bytes_per_token_in_bf16():
    # 2 × 28 × 4 × 128 × 2: K and V × layers × KV heads × head_dim × 2 bytes (config.json numbers)
    cache = KVCache(formula.QWEN25_CODER_7B, dtype="bf16")
    fill(cache, 3, chunk=3)
    assert cache.nbytes == 3 * 2 * 28 * 4 * 128 * 2 == 3 * 57_344


def test_preallocated_cache_reserves_max_tokens_and_reports_use():
    shape = tiny_shape(2, 4, 2, 16)
    cache = KVCache(shape, dtype="bf16", max_tokens=64)
    fill(cache, 10)
    per_token = 2 * 2 * 2 * 16 * 2
    assert cache.nbytes == 64 * per_token          # reserved whether used or not
    assert cache.used_bytes == 10 * per_token
    with pytest.raises(InputError, match="preallocated for 64"):
        fill(cache, 60)


def test_append_with_wrong_heads_is_a_clear_error():
    cache = KVCache(tiny_shape(1, 4, 2, 8))
    with pytest.raises(CourseError, match="KV heads"):
        cache.append(0, torch.zeros(1, 4, 1, 8), torch.zeros(1, 4, 1, 8))


def test_fp8_cache_works_on_this_cpu_and_stores_one_byte():
    ok, why = fp8_supported("cpu")
    assert ok, why
    cache = KVCache(tiny_shape(1, 2, 2, 8), dtype="fp8")
    fill(cache, 4)
    assert cache.k[0].dtype == torch.float8_e4m3fn and cache.k[0].element_size() == 1
    k, v = cache.get(0, 4)
    assert k.dtype == torch.float32                 # upcast for the matmul


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_cached_decoding_equals_recomputation(kv_heads):
    model = TinyDecoder(tiny_shape(2, 4, kv_heads, 16), vocab=64, max_positions=128, seed=1)
    prompt = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    cached = model.generate(prompt, 10, use_cache=True)
    recomputed = model.generate(prompt, 10, use_cache=False)
    assert torch.equal(cached.tokens, recomputed.tokens)
    # and the logits of the last step agree numerically
    cache = model.new_cache(batch=2)
    model(cached.tokens[:, :-1], cache)
    step = model(cached.tokens[:, -1:], cache)[:, -1]
    full = model(cached.tokens)[:, -1]
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)


def test_chunked_prefill_with_a_past_uses_an_end_aligned_mask():
    model = TinyDecoder(tiny_shape(2, 4, 2, 16), vocab=64, max_positions=64)
    idx = torch.randint(0, 64, (1, 20), generator=torch.Generator().manual_seed(3))
    for max_tokens in (None, 32):
        cache = model.new_cache(max_tokens=max_tokens)
        model(idx[:, :7], cache)
        second = model(idx[:, 7:], cache)
        torch.testing.assert_close(second, model(idx)[:, 7:], rtol=1e-5, atol=1e-5)


def test_cache_grows_by_the_formula_at_every_generated_token():
    shape = tiny_shape(2, 4, 2, 16)
    out = TinyDecoder(shape, vocab=32, max_positions=64).generate(torch.zeros(1, 5, dtype=torch.long), 6)
    assert out.cache_bytes == [formula.kv_bytes(shape, n, "fp32") for n in range(5, 12)]


@pytest.mark.parametrize("cache_dtype,tol", [("bf16", 0.05), ("fp8", 0.3)])
def test_lower_precision_caches_stay_close_to_fp32(cache_dtype, tol):
    shape = tiny_shape(2, 4, 2, 16)
    ref = TinyDecoder(shape, vocab=64, max_positions=64, seed=2)
    low = TinyDecoder(shape, vocab=64, max_positions=64, seed=2, cache_dtype=cache_dtype)
    idx = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(4))
    c1, c2 = ref.new_cache(), low.new_cache()
    a, b = ref(idx, c1), low(idx, c2)
    assert c2.nbytes * (4 // BYTES[cache_dtype]) == c1.nbytes
    assert (a - b).abs().max().item() < tol * a.abs().max().item()


def test_bf16_model_runs_on_cpu():
    model = TinyDecoder(tiny_shape(1, 4, 2, 16), vocab=32, max_positions=32, dtype="bf16")
    out = model.generate(torch.zeros(1, 4, dtype=torch.long), 3)
    assert out.cache.k[0].dtype == torch.bfloat16 and out.cache_bytes[-1] == formula.kv_bytes(model.shape, 7, "bf16")


def test_gqa_by_sdpa_and_by_repeat_interleave_agree():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 5, 16, generator=g)        # (B, H, T, D)
    k = torch.randn(2, 2, 9, 16, generator=g)        # (B, Hkv, S, D)
    v = torch.randn(2, 2, 9, 16, generator=g)
    a = attend(q, k, v, past=4, method="sdpa")
    b = attend(q, k, v, past=4, method="repeat")
    torch.testing.assert_close(a, b)
    # and both equal explicit softmax attention with the end-aligned causal mask
    kk, vv = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
    scores = q @ kk.transpose(-1, -2) / 16 ** 0.5
    mask = torch.arange(9)[None, :] <= (torch.arange(5)[:, None] + 4)
    ref = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ vv
    torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-5)


def test_bad_settings_are_course_errors():
    with pytest.raises(CourseError):
        TinyDecoder(tiny_shape(), dtype="fp8")           # fp8 is storage only
    with pytest.raises(CourseError):
        KVCache(tiny_shape(), dtype="int3")
    with pytest.raises(CourseError):
        attend(torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4), past=0, method="x")
    with pytest.raises(CourseError):
        tiny_shape(1, 6, 4, 8)                           # 4 KV heads cannot share 6 query heads


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,cache_dtype", [("bf16", "bf16"), ("bf16", "fp8")])
def test_cached_decoding_on_cuda(dtype, cache_dtype):
    model = TinyDecoder(tiny_shape(2, 8, 2, 64), vocab=64, max_positions=256, dtype=dtype,
                        cache_dtype=cache_dtype, device="cuda")
    prompt = torch.randint(0, 64, (2, 32), device="cuda")
    cache = model.new_cache(batch=2)
    model(prompt, cache)
    assert cache.k[0].device.type == "cuda"
    assert cache.nbytes == formula.kv_bytes(model.shape, 2 * 32, cache_dtype)
    step = model(prompt[:, -1:], cache)[:, -1].float()
    full = model(torch.cat([prompt, prompt[:, -1:]], 1))[:, -1].float()
    assert (step - full).abs().max().item() < 0.1 * full.abs().max().item()
