"""The capstone's figures (``book/stack.md``, ``notebooks/stack-lab.ipynb``). Layer: presentation.

* :func:`load_figure`: time to first token and output throughput against the
  number of concurrent requests, with the number of requests behind each point,
  the server's own TTFT (``vllm:time_to_first_token_seconds``) and its time in the
  waiting queue beside the client's, and the planner's predicted maximum
  concurrency drawn as a vertical reference line;
* :func:`metrics_figure`: what vLLM's ``/metrics`` said while the load ran:
  KV-cache usage (0–1), requests running and waiting, over time, with the same
  prediction as a horizontal line on the request axis.

Both take plain rows (:class:`LevelRow`, :class:`SampleRow`) so they can be
tested on constructed data; :func:`level_rows` and :func:`sample_rows` convert
whatever the serving helpers return (objects with attributes or dicts) by
trying the field names listed in ``_ALIASES``.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

from IPython.display import Image, display
from matplotlib.figure import Figure

from llmserve.core.errors import InputError, require

# Colours that stay apart for the common colour-vision deficiencies (Okabe–Ito).
BLUE, ORANGE, GREEN, VERMILION, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#6b7280"
PURPLE = "#CC79A7"


@dataclass(frozen=True)
class LevelRow:
    """One concurrency level of a load test."""

    concurrency: int
    ttft_p50_s: float
    ttft_p90_s: float | None
    output_tokens_per_s: float
    requests: int = 0                   # requests behind the percentiles (n)
    queue_mean_s: float | None = None   # the server's mean time in the waiting queue (histogram)
    server_ttft_s: float | None = None  # the server's mean TTFT over the level (histogram)


@dataclass(frozen=True)
class SampleRow:
    """One reading of /metrics (seconds since the load began)."""

    t_s: float
    kv_usage: float          # vllm:kv_cache_usage_perc, a fraction 0–1 despite the name
    running: float           # vllm:num_requests_running
    waiting: float           # vllm:num_requests_waiting
    preemptions: float | None = None   # vllm:num_preemptions (cumulative counter)
    concurrency: int | None = None     # the load level running when it was read


# Field names tried, in order, when converting the serving helpers' results.
_ALIASES = {
    "concurrency": ("concurrency", "level", "clients"),
    "ttft_p50_s": ("ttft_p50_s", "ttft_median_s", "median_ttft_s", "ttft_p50"),
    "ttft_p90_s": ("ttft_p90_s", "p90_ttft_s", "ttft_p90"),
    "output_tokens_per_s": ("output_tokens_per_s", "throughput_tok_s", "throughput_tokens_per_s",
                            "tokens_per_s", "output_throughput", "throughput"),
    "requests": ("ok", "requests", "n_requests", "completed", "num_requests"),
    "t_s": ("t_s", "t", "elapsed_s", "time_s"),
    "kv_usage": ("kv_usage", "kv_cache_usage", "kv_cache_usage_perc", "kv_usage_perc"),
    "running": ("running", "num_requests_running", "requests_running"),
    "waiting": ("waiting", "num_requests_waiting", "requests_waiting"),
    "preemptions": ("preemptions", "num_preemptions", "num_preemptions_total"),
}


def _field(row: Any, name: str, required: bool = True):
    for alias in _ALIASES.get(name, (name,)):
        if isinstance(row, dict) and alias in row:
            return row[alias]
        if not isinstance(row, dict) and hasattr(row, alias):
            return getattr(row, alias)
    if required:
        raise InputError(f"A row has no {name!r} (tried {', '.join(_ALIASES.get(name, (name,)))}): {str(row)[:120]}",
                         "Pass the load test's per-level results and the /metrics samples as returned by "
                         "llmserve.serving, or LevelRow / SampleRow objects.")
    return None


def _number(value, what: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            f"{what} must be a finite number, got {value!r}.", "Check the load test's results.")
    return float(value)


def level_rows(levels: Iterable[Any]) -> list[LevelRow]:
    """Per-level load-test results (any shape, see ``_ALIASES``) as sorted :class:`LevelRow` s."""
    rows = []
    for row in levels:
        if isinstance(row, LevelRow):
            rows.append(row)
            continue
        requests = _field(row, "requests", False)
        server = _field(row, "server", False) or {}
        queue = server.get("queue_mean_s") if isinstance(server, dict) else getattr(server, "queue_mean_s", None)
        latency = (server.get("latency") if isinstance(server, dict) else None) or {}
        server_ttft = (latency.get("ttft") or {}).get("mean_s")
        rows.append(LevelRow(
            concurrency=int(_number(_field(row, "concurrency"), "concurrency")),
            ttft_p50_s=_number(_field(row, "ttft_p50_s"), "ttft_p50_s"),
            ttft_p90_s=_number(_field(row, "ttft_p90_s", False), "ttft_p90_s", allow_none=True),
            output_tokens_per_s=_number(_field(row, "output_tokens_per_s"), "output_tokens_per_s"),
            requests=len(requests) if isinstance(requests, (list, tuple)) else int(requests or 0),
            queue_mean_s=_number(queue, "queue_mean_s", allow_none=True),
            server_ttft_s=_number(server_ttft, "server TTFT", allow_none=True),
        ))
    require(bool(rows), "No load-test levels to plot.", "Run the load test first (at least one level).")
    for r in rows:
        require(r.concurrency >= 1, f"Concurrency {r.concurrency} is not a number of requests.", "Use levels ≥ 1.")
    return sorted(rows, key=lambda r: r.concurrency)


def sample_rows(samples: Iterable[Any]) -> list[SampleRow]:
    """/metrics readings (any shape, see ``_ALIASES``) as time-sorted :class:`SampleRow` s.

    A reading that lacks the KV usage, running or waiting figure (``None``: the
    server did not expose it, or the scrape failed) is left out.
    """
    rows = []
    for row in samples:
        if isinstance(row, SampleRow):
            rows.append(row)
            continue
        if any(_field(row, name, False) is None for name in ("kv_usage", "running", "waiting")):
            continue
        level = _field(row, "concurrency", False)
        rows.append(SampleRow(
            t_s=_number(_field(row, "t_s"), "t_s"),
            kv_usage=_number(_field(row, "kv_usage"), "kv_usage"),
            running=_number(_field(row, "running"), "running"),
            waiting=_number(_field(row, "waiting"), "waiting"),
            preemptions=_number(_field(row, "preemptions", False), "preemptions", allow_none=True),
            concurrency=int(level) if level is not None else None,
        ))
    require(bool(rows), "No /metrics samples to plot.", "Sample /metrics while the load runs.")
    for r in rows:
        require(0.0 <= r.kv_usage <= 1.0, f"KV-cache usage {r.kv_usage} is outside 0–1.",
                "vllm:kv_cache_usage_perc is a fraction (1 = 100 %); do not multiply it by 100.")
    return sorted(rows, key=lambda r: r.t_s)


def _new_figure(ncols: int, width: float = 11.0, height: float = 3.8):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _prediction_label(predicted: float) -> str:
    return f"planner: max concurrency {predicted:.2f}"


def load_figure(levels: Iterable[Any], predicted_max_concurrency: float | None = None,
                title: str = "Load test", note: str | None = None):
    """TTFT (p50, p90) and output throughput against concurrency; returns a matplotlib Figure.

    Each p50 point is labelled with the number of requests behind it; p90 is drawn only
    where there are enough of them (``None`` otherwise). When the levels carry the
    server's own account (``level["server"]``, from
    :func:`llmserve.serving.loadtest.run_load_test`), the server's mean TTFT and the
    mean time requests spent in vLLM's waiting queue (part of TTFT) are drawn too.

    ``predicted_max_concurrency`` (the planner's ``Plan.max_concurrency``) is
    drawn as a vertical dashed line: beyond it, requests of the planned length
    no longer all fit in the KV cache at once and some wait.
    """
    rows = level_rows(levels)
    x = [r.concurrency for r in rows]
    fig, (ax_ttft, ax_tput) = _new_figure(2)
    ax_ttft.plot(x, [r.ttft_p50_s * 1000 for r in rows], "o-", color=BLUE, label="TTFT p50")
    for r in rows:
        if r.requests:
            ax_ttft.annotate(f"n={r.requests}", (r.concurrency, r.ttft_p50_s * 1000), textcoords="offset points",
                             xytext=(4, -12), fontsize="x-small", color=BLUE)
    if any(r.ttft_p90_s is not None for r in rows):
        pts = [(r.concurrency, r.ttft_p90_s * 1000) for r in rows if r.ttft_p90_s is not None]
        ax_ttft.plot(*zip(*pts), "s--", color=ORANGE, label="TTFT p90")
    if any(r.server_ttft_s is not None for r in rows):
        pts = [(r.concurrency, r.server_ttft_s * 1000) for r in rows if r.server_ttft_s is not None]
        ax_ttft.plot(*zip(*pts), "d:", color=PURPLE, label="server's mean TTFT (/metrics)")
    if any(r.queue_mean_s is not None for r in rows):
        pts = [(r.concurrency, r.queue_mean_s * 1000) for r in rows if r.queue_mean_s is not None]
        ax_ttft.plot(*zip(*pts), "^-", color=GREY, label="mean time in vLLM's waiting queue")
    ax_ttft.set_ylabel("time to first token (ms)")
    ax_tput.plot(x, [r.output_tokens_per_s for r in rows], "o-", color=GREEN, label="output tokens/s (all requests)")
    ax_tput.set_ylabel("output tokens per second")
    for ax in (ax_ttft, ax_tput):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("concurrent requests")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if predicted_max_concurrency is not None:
            ax.axvline(predicted_max_concurrency, color=VERMILION, linestyle=":", linewidth=2,
                       label=_prediction_label(predicted_max_concurrency))
        ax.legend(fontsize="small", loc="upper left")
    ax_ttft.set_title("Latency to the first token")
    ax_tput.set_title("Throughput")
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize="medium")
    return fig


def metrics_figure(samples: Iterable[Any], predicted_max_concurrency: float | None = None,
                   title: str = "/metrics during the load", note: str | None = None):
    """KV-cache usage and running / waiting requests over time; returns a matplotlib Figure.

    Left panel: ``vllm:kv_cache_usage_perc`` (0–1). Right panel:
    ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``, with the
    planner's predicted maximum concurrency as a horizontal line, and the load
    level (when the samples carry it) as a grey step line.
    """
    rows = sample_rows(samples)
    t = [r.t_s for r in rows]
    fig, (ax_kv, ax_req) = _new_figure(2)
    ax_kv.plot(t, [r.kv_usage for r in rows], "-", color=BLUE, drawstyle="steps-post", label="KV-cache usage")
    ax_kv.axhline(1.0, color=GREY, linewidth=1, linestyle="--", label="cache full")
    ax_kv.set_ylim(0, 1.05)
    ax_kv.set_ylabel("vllm:kv_cache_usage_perc (fraction)")
    ax_kv.set_title("KV cache")
    ax_req.plot(t, [r.running for r in rows], "-", color=GREEN, drawstyle="steps-post", label="running")
    ax_req.plot(t, [r.waiting for r in rows], "-", color=ORANGE, drawstyle="steps-post", label="waiting")
    if any(r.concurrency for r in rows):
        ax_req.plot(t, [r.concurrency if r.concurrency else math.nan for r in rows], "-",
                    color=GREY, alpha=0.6, drawstyle="steps-post", label="requests sent at once")
    if predicted_max_concurrency is not None:
        ax_req.axhline(predicted_max_concurrency, color=VERMILION, linestyle=":", linewidth=2,
                       label=_prediction_label(predicted_max_concurrency))
    ax_req.set_ylim(bottom=0)
    ax_req.set_ylabel("requests")
    ax_req.set_title("Scheduler queues")
    preempt = [r.preemptions for r in rows if r.preemptions is not None]
    if preempt:
        ax_req.text(0.99, 0.02, f"preemptions during the run: {preempt[-1] - preempt[0]:g}",
                    transform=ax_req.transAxes, ha="right", va="bottom", fontsize="small")
    for ax in (ax_kv, ax_req):
        ax.set_xlabel("seconds since the load began")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="upper left")
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize="medium")
    return fig


def show(*figures, dpi: int = 96) -> None:
    """Display figures as PNG images in a notebook (works without pyplot or an inline backend)."""
    for fig in figures:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        display(Image(buf.getvalue()))


def show_load(result: dict | None, predicted: float | None, kind: str) -> None:
    """The lab's two figures for a load test's result (nothing when there was no load test)."""
    if result is None:
        return
    note = "tiny random model on this CPU: mechanics, not Qwen's speed" if kind == "local" else None
    show(load_figure(result["levels"], predicted, title=f"Load test ({kind})", note=note),
         metrics_figure(result["samples"], predicted, note=note))
