"""Contiguous reservation vs paged blocks (llmserve/kvcache/paging.py).

Invariants from the PagedAttention paper (Kwon et al., SOSP 2023,
https://arxiv.org/abs/2309.06180, §3.1 and §4.1): a contiguous scheme reserves
the maximum length per request; with blocks, a request wastes at most one
partly filled block; vLLM's block size is 16 tokens on GPUs
(CacheConfig.DEFAULT_BLOCK_SIZE, vllm/config/cache.py).
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import CourseError, InputError
from llmserve.kvcache import formula, paging


def test_lengths_are_seeded_and_capped():
    a = paging.sample_lengths(300, 4096, seed=7)
    assert a == paging.sample_lengths(300, 4096, seed=7)
    assert a != paging.sample_lengths(300, 4096, seed=8)
    assert all(isinstance(t, int) and 1 <= t <= 4096 for t in a)
    assert max(a) == 4096                  # the log-normal tail reaches the cap at this size
    fixed = paging.sample_lengths(5, 8192, mix=paging.LengthMix(100, 0, 20, 0))
    assert fixed == [120] * 5              # sigma 0 = exactly the medians


@pytest.mark.parametrize("tokens,blocks", [(1, 1), (15, 1), (16, 1), (17, 2), (32, 2), (33, 3)])
def test_blocks_round_up(tokens, blocks):
    assert paging.blocks_for(tokens, 16) == blocks


def test_default_block_is_vllms_gpu_block():
    # Without a block size, paging uses 16-token blocks, as vLLM does on a GPU.
    assert paging.blocks_for(17) == 2 and paging.paged([17]).reserved_tokens == 32


@pytest.mark.parametrize("seed", range(5))
def test_paging_invariants(seed):
    lengths = paging.sample_lengths(200, 8192, seed=seed)
    c = paging.contiguous(lengths, 8192)
    p = paging.paged(lengths, 16, max_model_len=8192)
    assert c.used_tokens == p.used_tokens == sum(lengths)
    assert c.reserved_tokens == 200 * 8192
    assert p.reserved_tokens % 16 == 0
    assert 0 <= p.wasted_tokens <= 15 * len(lengths)             # at most one partial block each
    assert p.reserved_tokens <= c.reserved_tokens
    assert 0 <= p.waste_fraction < c.waste_fraction < 1


def test_fits_in_a_budget():
    bpt = formula.kv_bytes_per_token(formula.QWEN25_CODER_7B)     # 57,344 B
    budget = 8 * 2**30
    assert paging.fit_contiguous(budget, 8192, bpt) == budget // (8192 * 57_344) == 18
    lengths = [100] * 1000                                          # 7 blocks each
    assert paging.fit_paged(lengths, budget, bpt) == min(1000, (budget // (16 * bpt)) // 7)
    assert paging.fit_paged([], budget, bpt) == 0


@pytest.mark.parametrize("seed", range(3))
def test_paging_never_fits_fewer_when_max_len_is_whole_blocks(seed):
    lengths = paging.sample_lengths(400, 4096, seed=seed)
    cmp = paging.compare(lengths, 4096, 4 * 2**30)
    assert cmp.fit_paged >= cmp.fit_contiguous
    assert cmp.contiguous.bytes_per_token == formula.kv_bytes_per_token(formula.QWEN25_CODER_7B)
    assert cmp.paged.reserved_bytes == cmp.paged.reserved_tokens * 57_344
    assert cmp.fit_ratio >= 1


def test_invalid_input_is_explained():
    with pytest.raises(InputError, match="max-model-len"):
        paging.contiguous([10, 9000], 8192)
    with pytest.raises(CourseError):
        paging.sample_lengths(-1)
    with pytest.raises(CourseError):
        paging.compare([10], 8192, -5)
    with pytest.raises(CourseError):
        paging.LengthMix(prompt_median=0)
    with pytest.raises(CourseError):
        paging.paged([10], block_size=0)
