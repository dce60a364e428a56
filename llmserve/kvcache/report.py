"""Tables and sentences of the KV-cache chapter's results.

Used by the KV-cache lab (notebooks/kv-cache-lab.ipynb), its paging panel and
scripts/bench_kvcache.py. Presentation: rows in, text out, nothing measured.
Each table function returns a :class:`Table`: ``str(table)`` is a Markdown pipe
table (the benchmark script writes it into BENCHMARKS.md); in a notebook the
table shows itself as HTML, which renders the same in Jupyter and in the built book.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Sequence

from llmserve.core.quantity import GIB
from llmserve.kvcache.formula import FormulaRow
from llmserve.kvcache.measure import BytesRow, CopyResult, DecodeAttentionRow, TimingResult
from llmserve.kvcache.paging import Comparison
from llmserve.kvcache.planner import MIB


@dataclass(frozen=True)
class Table:
    """Headers and rows of cells (already formatted as text), with a title above."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    title: str = ""
    align: str = ""          # one "l" or "r" per column; default: first left, the rest right

    def _align(self) -> str:
        return self.align or "l" + "r" * (len(self.headers) - 1)

    def markdown(self) -> str:
        sep = ["---:" if a == "r" else ":---" for a in self._align()]
        lines = ["| " + " | ".join(self.headers) + " |", "| " + " | ".join(sep) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        head = f"{self.title}\n\n" if self.title else ""
        return head + "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_html_(self) -> str:
        def cell(tag: str, text: str, a: str) -> str:
            side = "right" if a == "r" else "left"
            return (f'<{tag} style="text-align:{side};padding:2px 8px;white-space:nowrap">'
                    f"{html.escape(text)}</{tag}>")
        al = self._align()
        head = "".join(cell("th", h, a) for h, a in zip(self.headers, al))
        body = "".join("<tr>" + "".join(cell("td", c, a) for c, a in zip(row, al)) + "</tr>" for row in self.rows)
        title = f"<p><b>{html.escape(self.title)}</b></p>" if self.title else ""
        return f'{title}<table style="font-size:0.85em"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None,
                   title: str = "") -> Table:
    """A :class:`Table`; ``align``: one of ``l``/``r`` per column (default: right but the first)."""
    return Table(tuple(str(h) for h in headers), tuple(tuple(str(c) for c in row) for row in rows), title,
                 align or "")


def _b(n: int) -> str:
    return f"{n:,}"


def bytes_table(rows: Sequence[BytesRow], title: str = "") -> Table:
    """Measured bytes, formula bytes and their ratio, one row per cache."""
    return markdown_table(
        ["cache", "layers", "KV heads", "head size", "dtype", "tokens", "measured (B)", "formula (B)", "ratio"],
        [[r.label, r.layers, r.kv_heads, r.head_dim, r.dtype, _b(r.tokens * r.batch), _b(r.measured),
          _b(r.formula), f"{r.ratio:.6g}"] for r in rows], title=title)


def formula_table(rows: Sequence[FormulaRow]) -> Table:
    """Per-token bytes with GQA against the shortcut ``2 × layers × hidden × bytes``
    (rows from :func:`llmserve.kvcache.formula.formula_rows`)."""
    return markdown_table(
        ["model", "layers", "heads / KV heads", "hidden", "KV dtype", "formula B/token", "shortcut B/token",
         "shortcut ÷ formula", "one sequence", "at context"],
        [[r.model, r.layers, f"{r.attention_heads} / {r.kv_heads}", r.hidden_size, r.dtype, _b(r.per_token),
          _b(r.naive_per_token), f"{r.naive_ratio:g}×", f"{r.per_sequence / GIB:.3g} GiB", _b(r.context)]
         for r in rows])


def timing_table(result: TimingResult) -> Table:
    """Milliseconds per new token, cached and recomputed, and the speedup."""
    return markdown_table(
        ["context (tokens)", "with KV cache (ms)", "recompute (ms)", "speedup"],
        [[_b(r.context), f"{r.cached_s * 1e3:.3f}", f"{r.recompute_s * 1e3:.2f}", f"{r.speedup:.1f}×"]
         for r in result.rows])


def paging_summary(cmp: Comparison) -> str:
    """What the paging table's numbers are about, in two sentences.

    The requests' total is a sum over all of them, as if every one were in memory
    at the same time; the cache holds only some of them at once. Said outright,
    because "20.96 GiB used" beside an 8 GiB cache reads like a contradiction.
    """
    n, used, budget = len(cmp.lengths), cmp.paged.used_bytes, cmp.budget_bytes
    verdict = "more than" if used > budget else "within"
    return (f"{n} requests of {cmp.mean_length:,.0f} tokens on average hold "
            f"{cmp.paged.used_tokens:,} tokens = {used / GIB:.2f} GiB of KV cache in total, "
            f"{verdict} the {budget / GIB:.1f} GiB cache: the totals below count all {n} as if they "
            f"were in memory at once; the last column counts how many fit in the cache together "
            f"(the rest wait their turn).")


def paging_table(cmp: Comparison) -> Table:
    """Both schemes side by side for one mix of requests, titled by :func:`paging_summary`."""
    n = len(cmp.lengths)
    rows = []
    for s, fit in ((cmp.contiguous, cmp.fit_contiguous), (cmp.paged, cmp.fit_paged)):
        per_request = s.reserved_tokens / n if n else 0
        rows.append([s.scheme, f"{per_request:,.0f} tokens = {per_request * s.bytes_per_token / MIB:,.1f} MiB",
                     f"{s.waste_fraction:.1%}", f"{s.reserved_bytes / GIB:.2f} GiB", fit])
    return markdown_table(["scheme", "reserved per request (mean)", "of it never filled",
                           f"all {n} at once would reserve", f"held at once in {cmp.budget_bytes / GIB:.1f} GiB"],
                          rows, title=paging_summary(cmp))


def bandwidth_table(copy: CopyResult, rows: Sequence[DecodeAttentionRow]) -> Table:
    """Decode attention steps as bandwidth and as a fraction of the device's copy rate."""
    title = (f"Device-to-device copy: {copy.bytes_per_s / 1e12:.2f} TB/s "
             f"(bytes read + written, {copy.nbytes / GIB:.2f} GiB tensor)")
    return markdown_table(
        ["method", "batch", "context", "cache (MiB)", "time (µs)", "TB/s", "of copy rate"],
        [[r.method, r.batch, _b(r.context), f"{r.cache_bytes / MIB:,.0f}", f"{r.seconds * 1e6:,.1f}",
          f"{r.bytes_per_s / 1e12:.2f}", f"{r.fraction_of_copy:.0%}" if r.fraction_of_copy else "–"]
         for r in rows], title=title)


__all__ = ["Table", "markdown_table", "bytes_table", "formula_table", "timing_table", "paging_summary",
           "paging_table", "bandwidth_table"]
