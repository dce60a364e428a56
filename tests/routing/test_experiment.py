"""The routing lab's claims, measured on real CPU vLLM engines behind the real vllm-router.

What is asserted is what the engines' own counters say (vllm:prefix_cache_queries/hits), never
the tiny model's text. Why the margins cannot flake: with the lab's sizes (test_workload) round
robin sends each tenant to the other engine every round (the burst arrives in tenant order and
three tenants do not divide over two engines), and each engine's 12 blocks cannot keep the
prompts it saw two rounds ago, so it finds (almost) nothing; cache-aware routing keeps each
tenant on one engine, whose blocks hold its prompts, so it finds all but each tenant's first
request: the sticky rate of about 0.77 against round robin's 0 to 0.1 measured here.
"""
from __future__ import annotations

import re

import pytest

from llmserve.routing import experiment, stats
from llmserve.routing.workload import SharedPrefixWorkload, sticky_hit_rate
from tests.support import REPO

pytestmark = pytest.mark.vllm
W = SharedPrefixWorkload()


@pytest.fixture(scope="module")
def compared(fleet):
    return {r.policy: r for r in experiment.compare_policies(fleet, W, ("round_robin", "cache_aware"))}


def test_the_cache_is_too_small_for_every_prompt_on_one_engine(fleet):
    plan = experiment.plan_for(experiment.endpoints_of(fleet), W, block_size=128, kv_cache_blocks=12)
    assert plan.prefix_blocks == 5 and plan.routing_matters, plan.text()
    # The page states the same arithmetic.
    page = re.sub(r"\s+", " ", (REPO / "book" / "routing.md").read_text())
    for phrase in (f"a system prompt fills {plan.prefix_blocks} full blocks and a running request "
                   f"{plan.request_blocks}", f"would need {plan.all_prefixes_blocks}",
                   f"needs {plan.share_blocks} while both run"):
        assert phrase in page, phrase


def test_cache_aware_routing_finds_far_more_of_the_prompts_than_round_robin(fleet, compared):
    rr, ca = compared["round_robin"], compared["cache_aware"]
    assert rr.errors == ca.errors == 0 and rr.requests == ca.requests == W.total_requests
    prefix, prompt = experiment.measure_tokens(experiment.endpoints_of(fleet), W)
    sticky = sticky_hit_rate(W, prefix, prompt, 128)
    assert ca.hit_rate >= 0.85 * sticky, (ca.hit_rate, sticky)
    assert ca.hit_rate - rr.hit_rate >= 0.4, (rr.hit_rate, ca.hit_rate)


def test_round_robin_spreads_evenly_and_cache_aware_keeps_tenants_together(compared):
    assert [e["requests"] for e in compared["round_robin"].engines] == [9, 9]
    # Three tenants on two engines: one engine serves two of them (12 requests), the other one (6).
    assert sorted(e["requests"] for e in compared["cache_aware"].engines) == [6, 12]


def test_the_router_really_tokenized_every_request(fleet):
    # With --enable-scale-out the router reads token ids from /v1/chat/completions/render; without
    # it every decision is counted as "missing_tokens" and falls back to the least-loaded engine.
    text = fleet.router.metrics_text()
    assert 'outcome="missing_tokens"' not in text
    assert "vllm_router_policy_decisions_total" in text


def test_a_router_restart_forgets_where_each_prompt_is(fleet):
    demo = experiment.restart_demo(fleet, W)
    kept, restarted = demo["kept"], demo["restarted"]
    homes = stats.tenant_homes(kept)
    # Same router: each tenant stays on its engine, and both engines keep working.
    assert all(len(h) == 1 for h in homes.values()) and len(set().union(*homes.values())) == 2
    assert kept.hit_rate >= 0.8, kept.hit_rate
    # Restarted: one request at a time finds every engine idle, and ties go to the same engine,
    # which cannot hold three prompts: the hit rate collapses although no cache was lost.
    assert restarted.busiest_share == 1.0
    assert kept.hit_rate - restarted.hit_rate >= 0.4, (kept.hit_rate, restarted.hit_rate)
