"""The routing lab's figures (book/routing.md, notebooks/routing-lab.ipynb). Layer: presentation.

* :func:`compare_figure`: the same workload under several policies, side by side — the
  prefix-cache hit rate of each engine and of all together (with the rate a sticky policy
  reaches drawn as a line), the share of requests each engine served, and the time to first
  token (median and p90 of the rounds after the first, with the number of requests);
* :func:`restart_figure`: the router-restart failure mode — hit rate and requests per engine
  before and after the restart.

Both take :class:`llmserve.routing.stats.RunSummary` objects (plain data) and return a
matplotlib :class:`~matplotlib.figure.Figure`; :func:`show` displays figures in a notebook.
"""
from __future__ import annotations

import io
from typing import Sequence

from IPython.display import Image, display
from matplotlib.figure import Figure

from llmserve.routing.stats import RunSummary

# Okabe–Ito colours (apart for the common colour-vision deficiencies), one per engine.
ENGINE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")
ALL_COLOUR, LINE_COLOUR = "#6b7280", "#D55E00"


def _engine_labels(runs: Sequence[RunSummary]) -> list[str]:
    urls = []
    for run in runs:
        urls += [e["url"] for e in run.engines if e["url"] not in urls]
    return urls


def _short(url: str) -> str:
    return url.rsplit(":", 1)[-1] if ":" in url else url


def _bars(ax, runs: Sequence[RunSummary], value, ylabel: str, title: str, with_all: bool) -> None:
    """Grouped bars: one group per run, one bar per engine (and one for all engines together)."""
    urls = _engine_labels(runs)
    width = 0.8 / (len(urls) + (1 if with_all else 0))
    for i, url in enumerate(urls):
        heights = [next((value(e) or 0.0 for e in r.engines if e["url"] == url), 0.0) for r in runs]
        ax.bar([k + i * width for k in range(len(runs))], heights, width,
               color=ENGINE_COLOURS[i % len(ENGINE_COLOURS)], label=f"engine :{_short(url)}")
    if with_all:
        bars = ax.bar([k + len(urls) * width for k in range(len(runs))], [r.hit_rate or 0.0 for r in runs],
                      width, color=ALL_COLOUR, label="all engines")
        # The value over the "all engines" bar: a rate of 0 is otherwise an empty space.
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([k + width * (len(urls) - (0 if with_all else 1)) / 2 for k in range(len(runs))],
                  [r.label for r in runs])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def compare_figure(runs: Sequence[RunSummary], sticky_rate: float | None = None) -> Figure:
    """Hit rate, request share and TTFT of each run (see the module docstring)."""
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    hit, share, ttft = fig.subplots(1, 3)
    _bars(hit, runs, lambda e: e["hit_rate"], "prefix-cache hit rate (cached ÷ prompt tokens)",
          "Prompt tokens found in the cache", with_all=True)
    hit.set_ylim(0, 1)
    if sticky_rate is not None:
        hit.axhline(sticky_rate, color=LINE_COLOUR, linestyle="--", linewidth=1,
                    label=f"every tenant on one engine: {sticky_rate:.2f}")
    hit.legend(fontsize=7, loc="upper left")
    _bars(share, runs, lambda e: e["share"], "share of the requests", "Who did the work", with_all=False)
    share.set_ylim(0, 1)
    xs = range(len(runs))
    p50 = [(r.ttft["p50"] or 0.0) * 1000 for r in runs]
    p90 = [(r.ttft["p90"] or 0.0) * 1000 for r in runs]
    ttft.bar([x - 0.2 for x in xs], p50, 0.4, color=ENGINE_COLOURS[0], label="median")
    ttft.bar([x + 0.2 for x in xs], p90, 0.4, color=ENGINE_COLOURS[1], label="p90")
    for x, r in zip(xs, runs):
        ttft.annotate(f"n={r.ttft['n']}", (x, max(p50[x], p90[x])), ha="center", va="bottom", fontsize=7)
    ttft.set_xticks(list(xs), [r.label for r in runs])
    ttft.set_ylabel("time to first token (ms)")
    ttft.set_title("TTFT, rounds after the first", fontsize=10)
    ttft.legend(fontsize=7)
    return fig


def restart_figure(demo: dict[str, RunSummary]) -> Figure:
    """Hit rate and requests per engine: learning, kept router, restarted router."""
    runs = [demo[k] for k in ("learn", "kept", "restarted") if k in demo]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    hit, share = fig.subplots(1, 2)
    _bars(hit, runs, lambda e: e["hit_rate"], "prefix-cache hit rate", "Before and after a router restart",
          with_all=True)
    hit.set_ylim(0, 1)
    hit.legend(fontsize=7, loc="upper right")
    _bars(share, runs, lambda e: e["requests"], "requests served", "Where the requests went", with_all=False)
    return fig


def show(*figures: Figure, dpi: int = 96) -> None:
    """Display figures in a notebook as PNG (the book build keeps them as images)."""
    for fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        display(Image(buf.getvalue()))
