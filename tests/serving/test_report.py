"""The load test's text table, from a CONSTRUCTED result (the shape run_load_test documents)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.serving.report import summary_table


def level(conc, n, p90):
    return {"concurrency": conc, "ok": n, "errors": 0, "throughput_tok_s": 100.0 * conc, "ttft_p50_s": 0.05,
            "ttft_p90_s": p90, "latency_p50_s": 0.5, "itl_p50_s": 0.01}


def test_summary_table_shows_counts_and_dashes_for_unsupported_percentiles():
    result = {"levels": [level(1, 10, 0.07), level(2, 4, None)], "warmup": [0.02],
              "samples": [{"kv_cache_usage": 0.5, "waiting": 2.0, "preemptions": 3.0},
                          {"kv_cache_usage": 0.9, "waiting": 0.0, "preemptions": 5.0}]}
    rows = summary_table(result).splitlines()
    assert rows[1].split()[:2] == ["1", "10"] and "70ms" in rows[1]
    assert rows[2].split()[:2] == ["2", "4"] and "—" in rows[2]
    assert "p90 needs n ≥ 10" in rows[3] and "1 warm-up request(s) not counted" in rows[3]
    assert "peak KV-cache usage 90%" in rows[4] and "preemptions during the test 2" in rows[4]


def test_summary_table_needs_a_result():
    with pytest.raises(InputError):
        summary_table({"nope": 1})
