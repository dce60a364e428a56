"""Figures of the observability lab (notebooks/observability-lab.ipynb) and the full-stack lab.

Presentation. Each function takes what the live modules returned — Prometheus range queries
(:class:`~llmserve.observability.prometheus.Series`), a
:class:`~llmserve.observability.lab.ScalingRun`, replayed
:class:`~llmserve.observability.scaling.Decision` lists — and returns a closed matplotlib
``Figure``. Times are drawn in seconds since the start of the run. Nothing here measures.
"""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from llmserve.observability.lab import ScalingRun
from llmserve.observability.prometheus import Series
from llmserve.observability.scaling import Decision

#: The observability panels: (title, y label, [(series name, legend prefix)], y max or None).
PANELS = (
    ("KV-cache usage per replica", "fraction of blocks", [("kv_cache_usage", "")], 1.05),
    ("Requests running and waiting", "requests", [("running", "running "), ("waiting", "waiting ")], None),
    ("Time to first token (server histogram)", "seconds",
     [("ttft_p50", "p50"), ("ttft_p95", "p95"), ("ttft_p95_replica", "p95 ")], None),
    ("Inter-token latency (server histogram)", "seconds", [("itl_p50", "p50"), ("itl_p95", "p95")], None),
    ("Time in the queue, p95", "seconds", [("queue_p95", "p95")], None),
    ("Prefix-cache hit rate per replica", "hits / queries", [("prefix_hit_rate", "")], 1.05),
    ("Preemptions per replica (per 10 s)", "preemptions", [("preemptions", "")], None),
)


def _done(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)
    return fig


def _short(instance: str) -> str:
    return f":{instance.rsplit(':', 1)[-1]}" if instance else ""


def _draw(ax, series: Sequence[Series], t0: float, prefix: str, style: str = "-") -> None:
    for s in series:
        points = [(t - t0, v) for t, v in s.points if not math.isnan(v)]
        if points:
            ax.plot(*zip(*points), style, lw=1.4, label=(prefix + _short(s.instance)).strip() or None)


def replica_panels(series: dict[str, list[Series]], t0: float, title: str = "") -> Figure:
    """The observability figure: one panel per question, a line per replica where the metric has one."""
    fig, axes = plt.subplots(4, 2, figsize=(11, 11), sharex=True)
    for ax, (name, ylabel, lines, ymax) in zip(axes.flat, PANELS):
        for key, prefix in lines:
            _draw(ax, series.get(key, []), t0, prefix, "--" if key.endswith("_replica") else "-")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0, top=ymax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    axes.flat[-1].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the load started")
    if title:
        fig.suptitle(title)
    return _done(fig)


def _phases(ax, run: ScalingRun) -> None:
    """Shade the load's phases and name them at the top."""
    bounds = [t - run.start for t, _ in run.phases] + [run.end - run.start]
    for i, (_, name) in enumerate(run.phases):
        ax.axvspan(bounds[i], bounds[i + 1], color=f"C{i}", alpha=0.07)
        ax.text((bounds[i] + bounds[i + 1]) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=8, color="0.3")


def scaling_run(run: ScalingRun, waiting: Sequence[Series], ttft_p95: Sequence[Series]) -> Figure:
    """Replicas (wanted and serving), the queue, and TTFT over one autoscaling run, with each cold start marked."""
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    t = [k.time - run.start for k in run.ticks]
    ax1.step(t, [k.decision.desired for k in run.ticks], where="post", color="C1", label="wanted by the loop")
    ax1.step(t, [k.ready for k in run.ticks], where="post", color="C0", lw=2, label="engines serving")
    for a in run.actions:
        if a.direction == "up" and a.done_at:
            ax1.annotate("", xy=(a.done_at - run.start, 1.5), xytext=(a.wanted_at - run.start, 1.5),
                         arrowprops={"arrowstyle": "<->", "color": "C3"})
            ax1.text((a.wanted_at + a.done_at) / 2 - run.start, 1.55, f"cold start {a.lag_s:.0f} s",
                     ha="center", va="bottom", fontsize=8, color="C3")
    ax1.set_ylabel("replicas")
    ax1.set_ylim(0, max([k.decision.desired for k in run.ticks] + [2]) + 0.8)
    ax1.legend(fontsize=8, loc="upper left")
    _draw(ax2, waiting, run.start, "waiting (Prometheus)")
    ax2.plot(t, [k.decision.metric if k.decision.metric is not None else math.nan for k in run.ticks], ".",
             ms=3, color="C1", label="what the loop read")
    ax2.axhline(run.target_per_replica, color="0.5", ls=":", label=f"target {run.target_per_replica:g} per replica")
    ax2.set_ylabel("requests waiting")
    ax2.legend(fontsize=8, loc="upper left")
    _draw(ax3, ttft_p95, run.start, "server p95 (10 s window)")
    ok = [r for r in run.requests if r["error"] is None]
    ax3.plot([r["start"] - run.start for r in ok], [r["ttft_s"] for r in ok], ".", ms=2, color="0.6",
             label="each request (client)")
    ax3.set_ylabel("time to first token (s)")
    ax3.set_xlabel("seconds since the run started")
    ax3.legend(fontsize=8, loc="upper left")
    for ax in (ax1, ax2, ax3):
        _phases(ax, run)
        ax.grid(alpha=0.3)
    ax2.set_ylim(bottom=0)
    ax3.set_ylim(bottom=0)
    fig.suptitle(f"The loop (scale-down window {run.behavior.scale_down_window_s:g} s) on the real queue", y=1.0)
    return _done(fig)


def windows(replays: dict[str, list[Decision]], t0: float, title: str = "") -> Figure:
    """The replica counts different stabilisation windows set on the same measured queue."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for i, (label, decisions) in enumerate(replays.items()):
        ax.step([d.time_s - t0 for d in decisions], [d.desired + 0.04 * i for d in decisions], where="post",
                lw=1.6, label=label)
    ax.set_ylabel("replicas")
    ax.set_xlabel("seconds since the run started")
    ax.set_title(title or "Same queue, different scale-down windows")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _done(fig)
