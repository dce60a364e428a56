"""Figures of the KV-cache chapter (notebooks/kv-cache-lab.ipynb and its paging panel).

Presentation.

Each function takes data returned by :mod:`llmserve.kvcache.measure` or
:mod:`llmserve.kvcache.paging` and returns a closed matplotlib ``Figure``
(a notebook shows it once when it is the cell's last expression; a script
calls ``fig.savefig``). Nothing here measures anything.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from llmserve.core.quantity import GIB
from llmserve.kvcache.measure import BytesRow, CopyResult, DecodeAttentionRow, TimingResult, cumulative_cost
from llmserve.kvcache.paging import Comparison


def _done(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)
    return fig


def growth(rows: Sequence[BytesRow], title: str | None = None) -> Figure:
    """Cache bytes after each generated token: measured points on the formula's line."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    tokens = [r.tokens for r in rows]
    ax.plot(tokens, [r.formula / 1024 for r in rows], "-", color="0.6", label="formula: tokens × per-token bytes")
    ax.plot(tokens, [r.measured / 1024 for r in rows], "o", color="C0", label="measured: numel × element_size")
    ax.set_xlabel("tokens in the cache (prompt + generated)")
    ax.set_ylabel("KV cache (KiB)")
    ax.set_title(title or f"KV cache of {rows[0].model} ({rows[0].dtype}) grows by a fixed amount per token")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _done(fig)


def timing(result: TimingResult) -> Figure:
    """Left: seconds per new token vs context. Right: estimated total time to generate a sequence."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ctx = [r.context for r in result.rows]
    ax1.plot(ctx, [r.recompute_s * 1e3 for r in result.rows], "s-", color="C3", label="recompute whole context")
    ax1.plot(ctx, [r.cached_s * 1e3 for r in result.rows], "o-", color="C0", label="with KV cache (1 token)")
    for r in result.rows:
        ax1.annotate(f"{r.speedup:.0f}×", (r.context, r.recompute_s * 1e3), textcoords="offset points",
                     xytext=(0, 6), ha="center", fontsize=8)
    ax1.set_xlabel("tokens of context already there")
    ax1.set_ylabel("ms for the next token (log scale)")
    ax1.set_title("Per token (measured; label = speedup)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3, which="both")
    cum = cumulative_cost(result)
    n = [c[0] for c in cum]
    ax2.plot(n, [c[2] for c in cum], "-", color="C3", label="recompute: grows like n²")
    ax2.plot(n, [c[1] for c in cum], "-", color="C0", label="KV cache: grows like n")
    ax2.set_xlabel("tokens generated from an empty context")
    ax2.set_ylabel("total seconds")
    ax2.set_title("Whole sequence (estimate: sum of the left curve)")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=8, loc="upper left")
    ax2.grid(alpha=0.3)
    last = cum[-1]
    ax2.text(0.97, 0.45, f"{last[0]:,} tokens:\nrecompute ≈ {last[2]:.2g} s\nKV cache ≈ {last[1]:.2g} s",
             transform=ax2.transAxes, ha="right", va="center", fontsize=8,
             bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    fig.suptitle(f"{result.model}, {result.dtype}, {result.device}, torch {result.torch_version}, "
                 f"{result.threads} thread(s)", fontsize=9)
    return _done(fig)


def paging(cmp: Comparison) -> Figure:
    """Left: KV memory all the requests would reserve at once, against the cache. Right: how many fit."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    schemes = [cmp.contiguous, cmp.paged]
    names = [f"contiguous\n(reserve {cmp.max_model_len:,})", f"paged\n({cmp.block_size}-token blocks)"]
    used = [s.used_bytes / GIB for s in schemes]
    wasted = [s.wasted_bytes / GIB for s in schemes]
    ax1.bar(names, used, color="C0", label="filled by tokens")
    ax1.bar(names, wasted, bottom=used, color="C1", alpha=0.6, label="reserved, never filled")
    for i, s in enumerate(schemes):
        ax1.annotate(f"{s.waste_fraction:.1%} never filled", (i, s.reserved_bytes / GIB),
                     textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    budget = cmp.budget_bytes / GIB
    ax1.axhline(budget, color="k", ls="--", lw=1, label=f"the KV cache: {budget:.1f} GiB")
    ax1.set_ylim(0, max(s.reserved_bytes for s in schemes) / GIB * 1.12)   # room for the labels
    ax1.set_ylabel("GiB of KV cache")
    ax1.set_title(f"All {len(cmp.lengths)} requests at once (mean {cmp.mean_length:,.0f} tokens; "
                  f"{cmp.model}, {cmp.dtype})", fontsize=9)
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)
    ax2.bar(["contiguous", "paged"], [cmp.fit_contiguous, cmp.fit_paged], color=["C1", "C0"])
    for i, v in enumerate([cmp.fit_contiguous, cmp.fit_paged]):
        ax2.annotate(str(v), (i, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    ax2.set_ylim(0, max(cmp.fit_contiguous, cmp.fit_paged, 1) * 1.12)
    ax2.set_ylabel("requests held at once")
    ax2.set_title(f"What fits in the {budget:.1f} GiB cache together", fontsize=9)
    ax2.grid(axis="y", alpha=0.3)
    return _done(fig)


def bandwidth(copy: CopyResult, rows: Sequence[DecodeAttentionRow]) -> Figure:
    """Effective bandwidth of a decode attention step, per method, against the measured copy rate."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = [f"B={r.batch}\nS={r.context}" for r in rows if r.method == rows[0].method]
    for j, method in enumerate(sorted({r.method for r in rows})):
        sel = [r for r in rows if r.method == method]
        xs = [i + 0.4 * j for i in range(len(sel))]
        ax.bar(xs, [r.bytes_per_s / 1e12 for r in sel], width=0.4, label=method)
    ax.axhline(copy.bytes_per_s / 1e12, color="k", ls="--", lw=1, label="device-to-device copy")
    ax.set_xticks([i + 0.2 for i in range(len(labels))], labels, fontsize=8)
    ax.set_ylabel("TB/s (cache bytes ÷ time)")
    ax.set_title(f"One decode step of attention on {copy.device}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _done(fig)


__all__ = ["growth", "timing", "paging", "bandwidth"]
