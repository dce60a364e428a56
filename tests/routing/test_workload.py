"""The shared-prefix workload and its block arithmetic (llmserve/routing/workload.py)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.routing.workload import SharedPrefixWorkload, cache_plan, sticky_hit_rate

W = SharedPrefixWorkload()


def test_tenants_share_exactly_their_system_prompt():
    a0, a1, b0 = W.request(0, 0), W.request(0, 1), W.request(1, 0)
    assert a0.messages[0] == a1.messages[0] != b0.messages[0]
    assert a0.messages[1] != a1.messages[1]
    # Different from the first character on: no two tenants share a block.
    assert W.system_prompt(0)[:28] != W.system_prompt(1)[:28]
    assert W.request(0, 0) == SharedPrefixWorkload().request(0, 0)       # seeded: the same every run
    assert SharedPrefixWorkload(seed=1).system_prompt(0) != W.system_prompt(0)


def test_rounds_are_bursts_of_one_request_per_tenant():
    bursts = W.bursts()
    assert len(bursts) == W.rounds and all([r.tenant for r in b] == list(range(W.tenants)) for b in bursts)
    assert W.total_requests == sum(map(len, bursts)) == 18
    # The first round answers longer: its requests overlap, so a load-aware router spreads them.
    assert {r.max_tokens for r in bursts[0]} == {W.first_max_tokens} and bursts[1][0].max_tokens == W.max_tokens
    assert bursts[0][2].user == "tenant-2"


def test_the_default_sizes_make_routing_matter():
    # Token counts as the tiny model's tokenizer gives them (measured by the live tests).
    plan = cache_plan(W, prefix_tokens=672, prompt_tokens=695, block_size=128, kv_cache_blocks=12, engines=2)
    assert plan.prefix_blocks == 5 and plan.request_blocks == 6
    assert plan.all_prefixes_blocks == 15 and not plan.one_engine_holds_all
    assert plan.share_blocks == 12 and plan.share_fits and plan.routing_matters
    assert "does not fit" in plan.text() and "(fits)" in plan.text()
    bigger = cache_plan(W, 672, 695, 128, kv_cache_blocks=16, engines=2)
    assert bigger.one_engine_holds_all and not bigger.routing_matters


def test_sticky_hit_rate_counts_whole_blocks_after_each_tenants_first_request():
    # 5 of 6 requests find the prompt's 5 full blocks (640 of 695 tokens).
    assert sticky_hit_rate(W, 672, 695, 128) == pytest.approx(5 / 6 * 640 / 695)
    assert sticky_hit_rate(SharedPrefixWorkload(rounds=1), 672, 695, 128) == 0


def test_bad_sizes_are_refused_with_a_fix():
    with pytest.raises(InputError, match="tenants"):
        SharedPrefixWorkload(tenants=0)
    with pytest.raises(InputError, match="requests"):
        SharedPrefixWorkload(tenants=50, rounds=5)
    with pytest.raises(InputError):
        cache_plan(W, 800, 700, 128, 12, 2)
