"""The lab's figures draw what they are given (synthetic series; the lab itself draws the real ones)."""
from __future__ import annotations

import math

from matplotlib.figure import Figure

from llmserve.observability import plots, scaling
from llmserve.observability.autoscaler import Action, Tick
from llmserve.observability.lab import ScalingRun
from llmserve.observability.prometheus import Series
from llmserve.observability.scaling import Behavior, Decision


def _series(instance: str, values: list[float]) -> Series:
    return Series({"instance": instance} if instance else {}, tuple((100.0 + i, v) for i, v in enumerate(values)))


def test_replica_panels_draw_one_line_per_replica_and_skip_nan():
    per = [_series("127.0.0.1:1", [0.1, 0.5, math.nan]), _series("127.0.0.1:2", [0.2, 0.4, 0.9])]
    series = {"kv_cache_usage": per, "ttft_p50": [_series("", [0.1, 0.2, 0.3])]}
    fig = plots.replica_panels(series, 100.0, "title")
    assert isinstance(fig, Figure)
    kv_axis = fig.axes[0]
    assert [line.get_label() for line in kv_axis.get_lines()] == [":1", ":2"]
    assert len(kv_axis.get_lines()[0].get_xdata()) == 2        # the NaN point is not drawn


def test_the_scaling_run_figure_marks_the_cold_start():
    decisions = [Decision(100.0 + t, 1, 3.0 if t > 2 else 0.0, 2, 2 if t > 2 else 1, "formula") for t in range(10)]
    ticks = [Tick(d.time_s, 1 if d.time_s < 107 else 2, d) for d in decisions]
    run = ScalingRun(start=100.0, end=110.0, phases=[(100.0, "low"), (102.0, "high")], ticks=ticks,
                     actions=[Action("up", 103.0, 107.0, "http://127.0.0.1:9", 3.5)],
                     load={"requests": 1}, requests=[{"start": 104.0, "ttft_s": 0.4, "error": None}],
                     behavior=Behavior(max_replicas=2, scale_down_window_s=15), target_per_replica=1.0)
    fig = plots.scaling_run(run, [_series("", [0, 3, 3])], [_series("", [0.1, 0.5, 0.4])])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "cold start 4 s" in texts and "high" in texts


def test_the_windows_figure_draws_each_replay():
    queue = [(float(t), 3.0 if (t // 3) % 2 == 0 else 0.0) for t in range(30)]
    replays = {f"{w} s": scaling.replay(queue, scaling.Controller(1.0, Behavior(max_replicas=3,
                                                                                scale_down_window_s=w)))
               for w in (0, 20)}
    fig = plots.windows(replays, 0.0)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["0 s", "20 s"]
