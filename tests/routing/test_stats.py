"""Prefix-cache hit rates from counter deltas and a run's summary (llmserve/routing/stats.py)."""
from __future__ import annotations

import pytest

from llmserve.routing import stats


def test_hit_rate_is_the_ratio_of_the_counters_increases():
    before = {"vllm:prefix_cache_queries_total": 1000.0, "vllm:prefix_cache_hits_total": 100.0,
              "vllm:request_success_total": 3.0}
    after = {"vllm:prefix_cache_queries_total": 3000.0, "vllm:prefix_cache_hits_total": 1600.0,
             "vllm:request_success_total": 6.0}
    d = stats.engine_delta("http://e", before, after)
    assert (d.queries, d.hits, d.requests) == (2000.0, 1500.0, 3.0) and d.hit_rate == 0.75


def test_the_older_counter_names_count_too_and_missing_ones_count_zero():
    old = {"vllm:gpu_prefix_cache_queries_total": 10.0, "vllm:gpu_prefix_cache_hits_total": 5.0}
    assert stats.engine_delta("u", {}, old).hit_rate == 0.5
    nothing = stats.engine_delta("u", {}, {})
    assert nothing.hit_rate is None and stats.hit_rate(0, 0) is None


def _rec(round_, tenant, ttft, error=None):
    return {"round": round_, "tenant": tenant, "ttft_s": ttft, "output_tokens": 4 if error is None else 0,
            "error": error}


def test_summary_pools_engines_and_keeps_the_first_round_apart():
    deltas = [stats.EngineDelta("a", 3000, 2400, 8), stats.EngineDelta("b", 1000, 0, 2)]
    records = [_rec(0, t, 0.5) for t in range(2)] + [_rec(r, t, 0.1) for r in range(1, 5) for t in range(2)]
    records.append(_rec(5, 0, None, error="timed out"))
    s = stats.summarise("cache", "cache_aware", deltas, records, wall_s=2.0)
    assert s.hit_rate == pytest.approx(2400 / 4000) and s.requests == 11 and s.errors == 1
    assert s.busiest_share == 0.8 and [e["share"] for e in s.engines] == [0.8, 0.2]
    assert s.ttft["n"] == 8 and s.ttft["p50"] == 0.1 and s.ttft_first_round["n"] == 2
    assert s.output_tok_s == 40 / 2.0 and s.requests_per_s == 5.0
    row = stats.table([s])[0]
    assert row["hit rate"] == s.hit_rate and row["TTFT n"] == 8


def test_tenant_homes_reads_where_each_tenant_went():
    s = stats.summarise("x", "cache_aware", [], [{**_rec(1, 0, 0.1), "engine": "a"},
                                                {**_rec(2, 0, 0.1), "engine": "a"},
                                                {**_rec(1, 1, 0.1), "engine": "b"},
                                                {**_rec(2, 1, 0.1), "engine": None}], 1.0)
    assert stats.tenant_homes(s) == {0: {"a"}, 1: {"b"}}
