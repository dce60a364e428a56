"""How the cross-check turns each tool's runs into compared figures (CONSTRUCTED runs, no engine), and
the planted client delay the capstone lab shows the check failing on."""
from __future__ import annotations

import time

import pytest

from llmserve.serving.client import Connection
from llmserve.serving.crosscheck import CrossCheck, course_figures, planted_client_delay, pool


def request(ttft, itl, latency, error=None):
    return {"ttft_s": ttft, "itl_s": itl, "latency_s": latency, "chunk_gaps_s": [itl * 8] if itl else [], "error": error}


def test_course_figures_are_medians_of_the_successful_requests():
    level = {"requests": [request(0.1, 0.01, 0.7), request(0.3, 0.02, 0.9), request(None, None, None, "boom")],
             "throughput_tok_s": 120.0, "errors": 1, "wall_s": 2.0}
    f = course_figures(level)
    assert f["ttft_s"] == pytest.approx(0.2) and f["itl_s"] == pytest.approx(0.015)   # np.median of two
    assert (f["completed"], f["failed"], f["output_tok_s"]) == (2, 1, 120.0)
    assert f["ttfts"] == [0.1, 0.3] and f["chunk_gap_s"] == pytest.approx(0.12)


def test_pooling_rounds_keeps_every_request_and_measures_the_noise():
    rounds = [{1: {"ttft_s": 0.08, "itl_s": 0.011, "output_tok_s": 80.0, "ttfts": [0.07, 0.09], "itls": [0.011]}},
              {1: {"ttft_s": 0.10, "itl_s": 0.013, "output_tok_s": 70.0, "ttfts": [0.10, 0.10], "itls": [0.013]}}]
    pooled = pool(rounds)[1]
    assert pooled["n"] == 4 and pooled["ttft_s"] == pytest.approx(0.095)      # median of all four TTFTs
    assert pooled["itl_s"] == pytest.approx(0.012) and pooled["output_tok_s"] == pytest.approx(75.0)
    assert pooled["noise"] == pytest.approx({"ttft_s": 0.02, "itl_s": 0.002, "output_tok_s": 10.0})


def test_the_references_noise_is_allowed_but_not_more():
    ref = {1: {"ttft_s": 0.100, "itl_s": 0.010, "output_tok_s": 80.0,
               "noise": {"ttft_s": 0.060, "itl_s": 0.0, "output_tok_s": 0.0}}}
    within = {1: {"ttft_s": 0.155, "itl_s": 0.010, "output_tok_s": 80.0}}
    beyond = {1: {"ttft_s": 0.170, "itl_s": 0.010, "output_tok_s": 80.0}}
    assert CrossCheck(ours=within, reference=ref).agreement().ok         # 55 ms off, the reference varied 60
    assert not CrossCheck(ours=beyond, reference=ref).agreement().ok


def test_the_planted_delay_runs_before_each_send_and_is_removed_after_the_block(monkeypatch):
    sent = []
    monkeypatch.setattr(Connection, "start", lambda self, *args: sent.append((time.perf_counter(), args)))
    plain = Connection.start
    with planted_client_delay(0.05):
        assert Connection.start is not plain
        before = time.perf_counter()
        Connection.start(object(), "/chat/completions", {}, None)
    assert sent[0][0] - before >= 0.05 and sent[0][1] == ("/chat/completions", {}, None)
    assert Connection.start is plain
    with pytest.raises(RuntimeError), planted_client_delay(0.0):
        raise RuntimeError("a failing cell")
    assert Connection.start is plain              # also after an error inside the block
