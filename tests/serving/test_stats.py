"""The load test's statistics: percentiles with their counts, histogram deltas and quantiles, agreement.

All inputs are CONSTRUCTED here. Histogram quantiles are checked against Prometheus'
documented ``histogram_quantile`` rule (linear interpolation inside the bucket,
https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile).
"""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError
from llmserve.serving import stats

INF = float("inf")


def test_percentile_nearest_rank():
    # Nearest rank: p50 of 1..4 is the 2nd value, p90 the 4th.
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 90) == 4.0
    assert stats.percentile([], 50) is None
    assert stats.percentile(list(range(1, 11)), 90) == 9          # one value above it


def test_a_percentile_needs_a_value_above_it():
    assert (stats.min_samples(50), stats.min_samples(90), stats.min_samples(99)) == (2, 10, 100)
    four = stats.spread([0.4, 0.1, 0.3, 0.2])
    assert (four.n, four.p50, four.p90) == (4, 0.2, None)            # the lab once printed p90 of 4
    assert four.text(90) == "— (p90 needs ≥ 10, have 4)" and four.text(50) == "200.0 ms (p50 of 4)"
    ten = stats.spread([i / 10 for i in range(10)] + [None])
    assert ten.n == 10 and ten.p90 == 0.8 and ten.mean == pytest.approx(0.45)
    assert stats.spread([]) == stats.Spread(0, None, None, None)
    with pytest.raises(InputError):
        stats.min_samples(100)


def test_median_is_the_benchmarks_median():
    # vllm bench serve reports np.median: the mean of the middle two for an even count.
    assert stats.median([1.0, 2.0, 3.0, 10.0]) == 2.5 and stats.median([None, 3.0]) == 3.0
    assert stats.median([]) is None


def test_histogram_delta_and_quantile():
    before = stats.Histogram(2.0, 0.3, ((0.1, 1.0), (0.2, 2.0), (INF, 2.0)))
    after = stats.Histogram(12.0, 1.9, ((0.1, 5.0), (0.2, 10.0), (INF, 12.0)))
    d = after.minus(before)
    assert (d.count, d.total, d.buckets) == (10.0, pytest.approx(1.6), ((0.1, 4.0), (0.2, 8.0), (INF, 10.0)))
    assert d.mean == pytest.approx(0.16)
    # rank 5 of 10 lies in (0.1, 0.2], which holds ranks 5..8: 0.1 + 0.1 × (5 − 4) / 4
    assert d.quantile(50) == pytest.approx(0.125)
    assert d.quantile(90) == 0.2                                  # in +Inf: the highest finite bound
    assert d.quantile(20) == pytest.approx(0.05)                  # the first bucket starts at 0
    assert d.bucket_of(0.125) == (0.1, 0.2) and d.bucket_of(5.0) == (0.2, INF)
    assert stats.Histogram(0.0, 0.0).quantile(50) is None and stats.Histogram(0.0, 0.0).mean is None
    assert after.minus(None) is after


def test_server_delta_reads_the_queue_time_histogram_and_preemptions():
    # Exposition names: a histogram exports <name>_sum and <name>_count; a counter <name>_total
    # (Prometheus exposition format). Values constructed here.
    before = {"vllm:request_queue_time_seconds_sum": 1.0, "vllm:request_queue_time_seconds_count": 10.0,
              "vllm:num_preemptions_total": 2.0}
    after = {"vllm:request_queue_time_seconds_sum": 5.0, "vllm:request_queue_time_seconds_count": 18.0,
             "vllm:num_preemptions_total": 7.0}
    delta = stats.server_delta(before, after)
    assert delta == {"requests": 8.0, "queue_mean_s": 0.5, "preemptions": 5.0}
    assert stats.server_delta({}, {})["queue_mean_s"] is None


def test_histogram_deltas_give_counts_means_and_estimates_with_their_resolution():
    before = {"ttft": stats.Histogram(1.0, 0.05, ((0.04, 0.0), (0.06, 1.0), (INF, 1.0)))}
    after = {"ttft": stats.Histogram(11.0, 0.55, ((0.04, 0.0), (0.06, 11.0), (INF, 11.0))),
             "e2e": stats.Histogram(1.0, 0.4, ((0.3, 0.0), (0.5, 1.0), (INF, 1.0)))}
    d = stats.histogram_deltas(before, after)
    assert d["ttft"]["n"] == 10.0 and d["ttft"]["mean_s"] == pytest.approx(0.05)
    assert d["ttft"]["p50_bucket"] == (0.04, 0.06) and 0.04 < d["ttft"]["p50_s"] <= 0.06
    assert d["ttft"]["p90_s"] is not None
    assert d["e2e"]["n"] == 1.0 and d["e2e"]["p50_s"] is None          # one observation: no median


def test_align_samples_assigns_the_level_running_at_each_reading():
    levels = [{"started_s": 0.0, "wall_s": 1.0, "concurrency": 1}, {"started_s": 1.5, "wall_s": 1.0, "concurrency": 8}]
    readings = [{"time_s": t, "kv_cache_usage": 0.5, "running": 1.0, "waiting": 0.0, "preemptions": 0.0}
                for t in (0.4, 1.0, 1.7, 2.2, 2.9, 3.0)]
    samples = stats.align_samples(readings, levels, offset_s=0.5)
    assert [(round(s["t_s"], 2), s["concurrency"]) for s in samples] == [
        (-0.1, 0), (0.5, 1), (1.2, 0), (1.7, 8), (2.4, 8), (2.5, 8)]


REFERENCE = {1: {"ttft_s": 0.080, "itl_s": 0.011, "output_tok_s": 80.0},
             4: {"ttft_s": 0.240, "itl_s": 0.013, "output_tok_s": 230.0}}


def test_agreement_within_the_tolerance():
    close = {1: {"ttft_s": 0.090, "itl_s": 0.012, "output_tok_s": 70.0},
             4: {"ttft_s": 0.200, "itl_s": 0.014, "output_tok_s": 250.0}}
    report = stats.agreement(close, REFERENCE, tolerance=0.35)
    assert report.ok and len(report.findings) == 6
    assert report.checks() == ["c=1 median TTFT", "c=1 median ITL (per token)", "c=1 output throughput",
                               "c=4 median TTFT", "c=4 median ITL (per token)", "c=4 output throughput"]


def test_disagreement_is_named_level_and_figure():
    # What the course's first client reported beside vLLM's benchmark: TTFT ≈ 30 times larger.
    lumped = {1: dict(REFERENCE[1]), 4: dict(REFERENCE[4], ttft_s=30 * 0.240, output_tok_s=60.0)}
    report = stats.agreement(lumped, REFERENCE, tolerance=0.35)
    assert not report.ok and report.checks("error") == ["c=4 median TTFT", "c=4 output throughput"]


def test_floors_and_the_references_own_noise_widen_what_is_allowed():
    tiny = {1: {"ttft_s": 0.004, "itl_s": 0.0015, "output_tok_s": 10.0}}
    ref = {1: {"ttft_s": 0.002, "itl_s": 0.0010, "output_tok_s": 25.0}}
    assert stats.agreement(tiny, ref, 0.35).ok                        # under the absolute floors
    far = {1: {"ttft_s": 0.200, "itl_s": 0.0010, "output_tok_s": 25.0}}
    assert not stats.agreement(far, ref, 0.35).ok
    assert stats.agreement(far, ref, 0.35, noise={1: {"ttft_s": 0.25}}).ok   # the reference varies that much


def test_agreement_reports_missing_figures_and_levels():
    report = stats.agreement({1: {"ttft_s": None, "itl_s": 0.01, "output_tok_s": 1.0}, 2: {}},
                             {1: REFERENCE[1]}, tolerance=0.35)
    assert "c=1 median TTFT" in report.checks("error") and "levels" in report.checks("error")
    with pytest.raises(InputError):
        stats.agreement({}, {}, tolerance=1.5)
