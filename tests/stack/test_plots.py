"""The capstone's figures build from CONSTRUCTED sample data (made up here, labelled so, never shown as measured)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import pytest

from llmserve.core.errors import InputError
from llmserve.stack import plots

# Constructed, not measured: shapes only.
CONSTRUCTED_LEVELS = [
    {"concurrency": 4, "ttft_p50_s": 0.09, "ttft_p90_s": 0.2, "output_tokens_per_s": 300.0, "requests": 8},
    {"concurrency": 1, "ttft_p50_s": 0.03, "ttft_p90_s": 0.05, "output_tokens_per_s": 100.0, "requests": 2},
    plots.LevelRow(concurrency=16, ttft_p50_s=0.9, ttft_p90_s=None, output_tokens_per_s=400.0, requests=32),
]


class Sample:   # an object with attributes, as a dataclass from the serving helpers would be
    def __init__(self, t, kv, running, waiting, level, preemptions=None):
        self.elapsed_s, self.kv_cache_usage, self.num_requests_running = t, kv, running
        self.num_requests_waiting, self.concurrency, self.num_preemptions = waiting, level, preemptions


CONSTRUCTED_SAMPLES = [Sample(0.5 * i, min(1.0, 0.1 * i), min(i, 5), max(0, i - 5), 1 if i < 4 else 16, i // 6)
                       for i in range(20)]


def test_rows_are_converted_and_sorted():
    rows = plots.level_rows(CONSTRUCTED_LEVELS)
    assert [r.concurrency for r in rows] == [1, 4, 16]
    samples = plots.sample_rows(reversed(CONSTRUCTED_SAMPLES))
    assert [s.t_s for s in samples] == sorted(s.t_s for s in samples)
    assert samples[-1].waiting == 14 and samples[-1].preemptions == 3


def test_load_figure_draws_the_prediction_line():
    fig = plots.load_figure(CONSTRUCTED_LEVELS, predicted_max_concurrency=5.0, title="constructed data")
    ax_ttft, ax_tput = fig.axes
    # Each p50 point says how many requests are behind it.
    assert [t.get_text() for t in ax_ttft.texts] == ["n=2", "n=8", "n=32"]
    labels = [line.get_label() for line in ax_ttft.get_lines()]
    assert "TTFT p50" in labels and "TTFT p90" in labels
    assert any("planner: max concurrency 5.00" == lbl for lbl in labels)
    # p50 in milliseconds, in concurrency order
    p50 = next(line for line in ax_ttft.get_lines() if line.get_label() == "TTFT p50")
    assert list(p50.get_xdata()) == [1, 4, 16] and list(p50.get_ydata()) == pytest.approx([30, 90, 900])
    assert ax_tput.get_xscale() == "log"


def test_metrics_figure_shows_running_waiting_and_prediction():
    fig = plots.metrics_figure(CONSTRUCTED_SAMPLES, predicted_max_concurrency=5.0)
    ax_kv, ax_req = fig.axes
    labels = {line.get_label() for line in ax_req.get_lines()}
    assert {"running", "waiting", "requests sent at once", "planner: max concurrency 5.00"} <= labels
    assert ax_kv.get_ylim()[1] <= 1.1
    assert any("preemptions during the run: 3" in t.get_text() for t in ax_req.texts)
    fig.savefig(io.BytesIO(), format="png")   # renders without error


def test_bad_inputs_are_explained():
    with pytest.raises(InputError, match="fraction"):
        plots.sample_rows([{"t_s": 0, "kv_usage": 85.0, "running": 1, "waiting": 0}])
    with pytest.raises(InputError, match="No load-test levels"):
        plots.level_rows([])
    with pytest.raises(InputError, match="ttft_p50_s"):
        plots.level_rows([{"concurrency": 1, "output_tokens_per_s": 1.0}])


def test_load_test_result_shape_is_accepted():
    # The shape llmserve.serving.loadtest.run_load_test documents (constructed here, not measured).
    level = {"level": 0, "concurrency": 2, "requests": [{}, {}, {}, {}], "ok": 4, "errors": 0,
             "throughput_tok_s": 50.0, "ttft_p50_s": 0.01, "ttft_p90_s": 0.02}
    row = plots.level_rows([level])[0]
    assert (row.requests, row.output_tokens_per_s, row.ttft_p90_s, row.queue_mean_s) == (4, 50.0, 0.02, None)
    with_server = plots.level_rows([dict(level, server={"queue_mean_s": 0.5, "requests": 4.0,
                                                        "latency": {"ttft": {"n": 4.0, "mean_s": 0.25}}})])
    assert with_server[0].server_ttft_s == 0.25
    fig = plots.load_figure(with_server)
    queue = next(l for l in fig.axes[0].get_lines() if "waiting queue" in l.get_label())
    assert list(queue.get_ydata()) == [500.0]
    server_ttft = next(l for l in fig.axes[0].get_lines() if "server's mean TTFT" in l.get_label())
    assert list(server_ttft.get_ydata()) == [250.0]
    sample = {"t_s": 1.0, "level": 0, "concurrency": 2, "kv_cache_usage": 0.5, "running": 2.0, "waiting": 0.0,
              "preemptions": 0.0}
    failed = dict(sample, kv_cache_usage=None)
    assert [s.kv_usage for s in plots.sample_rows([sample, failed])] == [0.5]


def test_show_displays_png_images(monkeypatch):
    shown = []
    monkeypatch.setattr(plots, "display", lambda obj: shown.append(obj))
    plots.show(plots.load_figure(CONSTRUCTED_LEVELS), plots.metrics_figure(CONSTRUCTED_SAMPLES))
    assert len(shown) == 2 and all(img.data[:8] == b"\x89PNG\r\n\x1a\n" for img in shown)
