"""The routing lab's figures (llmserve/routing/plots.py), drawn from constructed runs."""
from __future__ import annotations

import pytest

from llmserve.routing import plots, stats


def _run(label, hits, requests):
    deltas = [stats.EngineDelta(f"http://127.0.0.1:{9000 + i}", 1000.0, h, r)
              for i, (h, r) in enumerate(zip(hits, requests))]
    records = [{"round": k % 6, "tenant": k % 3, "ttft_s": 0.05 + 0.01 * (k % 6), "output_tokens": 4,
                "error": None} for k in range(int(sum(requests)))]
    return stats.summarise(label, label, deltas, records, 2.0)


def test_compare_figure_has_a_bar_per_engine_and_run_and_the_sticky_line():
    runs = [_run("round_robin", [0, 0], [9, 9]), _run("cache_aware", [770, 760], [12, 6])]
    fig = plots.compare_figure(runs, sticky_rate=0.77)
    hit, share, ttft = fig.axes
    assert len(hit.patches) == 2 * 3 and len(share.patches) == 2 * 2 and len(ttft.patches) == 2 * 2
    assert [t.get_text() for t in hit.get_xticklabels()] == ["round_robin", "cache_aware"]
    assert hit.lines and hit.lines[0].get_ydata()[0] == pytest.approx(0.77)
    shares = sorted(round(p.get_height(), 2) for p in share.patches)
    assert shares == [0.33, 0.5, 0.5, 0.67]
    assert any("n=" in t.get_text() for t in ttft.texts)


def test_restart_figure_shows_the_three_phases():
    demo = {"learn": _run("learn", [700, 700], [12, 6]), "kept": _run("kept", [900, 900], [6, 3]),
            "restarted": _run("restarted", [100, 0], [9, 0])}
    fig = plots.restart_figure(demo)
    hit, share = fig.axes
    assert [t.get_text() for t in hit.get_xticklabels()] == ["learn", "kept", "restarted"]
    assert max(p.get_height() for p in share.patches) == 12
