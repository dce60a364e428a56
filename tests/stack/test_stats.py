"""The capstone's reading of a load test, from a CONSTRUCTED result (the shape run_load_test documents)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.stack import stats

SAMPLES = [{"t_s": 0.0, "concurrency": 0, "waiting": 5.0, "preemptions": 1.0, "kv_cache_usage": 0.1},
           {"t_s": 0.1, "concurrency": 1, "waiting": 0.0, "preemptions": 1.0, "kv_cache_usage": 0.3},
           {"t_s": 0.2, "concurrency": 8, "waiting": 3.0, "preemptions": 2.0, "kv_cache_usage": 0.95},
           {"t_s": 0.3, "concurrency": 8, "waiting": None, "preemptions": None, "kv_cache_usage": None},
           {"t_s": 0.4, "concurrency": 8, "waiting": 1.0, "preemptions": 6.0, "kv_cache_usage": 0.5}]


def spread(p50, mean=None, n=10):
    return {"n": n, "mean": mean if mean is not None else p50, "p50": p50, "p90": None}


def level(conc, ttft, itl, queue, server_ttft=None):
    return {"concurrency": conc, "ok": 10, "ttft": spread(ttft), "itl": spread(itl), "latency": spread(1.0, 1.1),
            "server": {"queue_mean_s": queue, "latency": {
                "ttft": {"n": 10.0, "mean_s": server_ttft}, "itl": {"n": 500.0, "mean_s": itl},
                "e2e": {"n": 10.0, "mean_s": 0.9}, "queue": {"n": 10.0, "mean_s": queue}}}}


RESULT = {"samples": SAMPLES, "duration_s": 20.0, "recorder": {"interval_s": 0.1, "readings": 80},
          "levels": [level(1, 0.08, 0.012, 0.0, 0.06), level(16, 0.9, 0.02, 0.5, 0.8)]}


def test_waiting_by_level_and_preemptions():
    assert stats.waiting_by_level(RESULT) == {1: 0.0, 8: 3.0}
    assert stats.waiting_by_level(SAMPLES) == {1: 0.0, 8: 3.0}
    assert stats.preemptions_during(RESULT) == 5.0
    assert stats.preemptions_during({"samples": []}) is None
    assert stats.peak_kv_usage(RESULT) == 0.95
    with pytest.raises(InputError):
        stats.waiting_by_level({"levels": []})


def test_queue_by_level_and_the_client_beside_the_server():
    assert stats.queue_by_level(RESULT) == {1: 0.0, 16: 0.5}
    rows = stats.client_and_server(RESULT)
    assert [r["concurrency"] for r in rows] == [1, 16]
    assert rows[1]["client_ttft_s"] == 0.9 and rows[1]["server_ttft_s"] == 0.8 and rows[1]["server_queue_s"] == 0.5
    assert rows[0]["n"] == 10 and rows[0]["server_n"] == 10.0
    assert rows[0]["client_e2e_s"] == 1.0 and rows[0]["client_e2e_mean_s"] == 1.1 and rows[0]["server_e2e_s"] == 0.9


def test_reading_rate_says_what_the_recorder_achieved():
    rate = stats.reading_rate(RESULT)
    assert rate == {"asked_s": 0.1, "readings": 80, "duration_s": 20.0, "every_s": 0.25}


def test_levels_around_the_prediction():
    assert stats.levels_around([1, 2, 4, 8, 16], 4.25) == ([1, 2, 4], [16])
    with pytest.raises(InputError):
        stats.levels_around([1], 0)


def test_enough_requests_for_a_percentile():
    assert stats.enough_for(90, RESULT)
    assert not stats.enough_for(90, {"levels": [dict(RESULT["levels"][0], ok=4)]})
