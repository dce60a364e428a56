"""Pure statistics of a load test: percentiles with their sample counts, histogram deltas, agreement.

Used by the capstone (book/stack.md, notebooks/stack-lab.ipynb) through
:mod:`llmserve.serving.loadtest`, :mod:`llmserve.serving.crosscheck` and
:mod:`llmserve.stack.stats`. Layer: pure rules (no I/O, no clock).

* **Percentiles** are nearest-rank: the q-th percentile of n values is the
  ``ceil(q × n / 100)``-th smallest. One is reported only when at least one
  value lies above it, that is when ``n ≥ 100 / (100 − q)`` (p50: 2 values,
  p90: 10, p99: 100); otherwise it is ``None`` and the count says why.
* **Histograms** from ``/metrics`` are cumulative counters: what happened
  between two readings is the difference of every bucket, of ``_sum`` and of
  ``_count``. Their quantiles are estimated as Prometheus'
  ``histogram_quantile`` does, by linear interpolation inside the bucket that
  holds the rank, so they are only as fine as the buckets.
* **Agreement** of two tools on the same server: each median must lie within
  a relative tolerance of the other tool's, or within an absolute floor for
  figures too small to compare relatively (see :func:`agreement`).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from llmserve.core.errors import require
from llmserve.core.findings import ERROR, OK, Finding, Report, report

#: The percentiles the course prints.
DEFAULT_QUANTILES = (50, 90)


def min_samples(q: float) -> int:
    """The fewest values for which the nearest-rank q-th percentile has a value above it."""
    require(0 < q < 100, f"A percentile must lie strictly between 0 and 100, got {q!r}.", "Use e.g. 50 or 90.")
    return math.ceil(100 / (100 - q) - 1e-9)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0–100) of the values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100 - 1e-9)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    """How one figure (TTFT, ITL, …) was distributed over ``n`` requests, in seconds."""

    n: int
    mean: float | None
    p50: float | None
    p90: float | None

    def get(self, q: int) -> float | None:
        return {50: self.p50, 90: self.p90}[q]

    def text(self, q: int = 50, scale: float = 1000.0, unit: str = "ms") -> str:
        """``"412 ms (p50 of 16)"``, or ``"— (p90 needs ≥ 10, have 4)"`` when there are too few values."""
        value = self.get(q)
        if value is None:
            return f"— (p{q} needs ≥ {min_samples(q)}, have {self.n})"
        return f"{value * scale:.1f} {unit} (p{q} of {self.n})"


def spread(values: list[float]) -> Spread:
    """The mean and the percentiles of :data:`DEFAULT_QUANTILES` that ``len(values)`` supports."""
    values = [v for v in values if v is not None]
    n = len(values)

    def pct(q: int) -> float | None:
        return percentile(values, q) if n >= min_samples(q) else None

    return Spread(n=n, mean=statistics.fmean(values) if values else None, p50=pct(50), p90=pct(90))


def median(values: list[float]) -> float | None:
    """The ordinary median (the mean of the two middle values for an even count), as vLLM's benchmark
    reports it (``np.median`` in vllm/benchmarks/serve.py); None for no values."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ----------------------------------------------------------------- server histograms

@dataclass(frozen=True)
class Histogram:
    """One Prometheus histogram (summed over label sets): ``buckets`` are ``(le, cumulative count)``."""

    count: float
    total: float
    buckets: tuple[tuple[float, float], ...] = ()

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def minus(self, earlier: "Histogram | None") -> "Histogram":
        """What was observed after ``earlier`` (the same histogram read before)."""
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        return Histogram(self.count - earlier.count, self.total - earlier.total,
                         tuple((le, c - before.get(le, 0.0)) for le, c in self.buckets))

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile(q/100, …)``: linear inside the bucket holding the rank.

        The lowest bucket interpolates from 0; a rank in the ``+Inf`` bucket returns the
        highest finite bound (the estimate can say no more).
        """
        if not self.count or not self.buckets:
            return None
        rank = q / 100 * self.count
        lower_bound, lower_count = 0.0, 0.0
        finite = [(le, c) for le, c in self.buckets if math.isfinite(le)]
        for le, cumulative in sorted(self.buckets):
            if cumulative >= rank:
                if not math.isfinite(le):
                    return finite[-1][0] if finite else None
                in_bucket = cumulative - lower_count
                if in_bucket <= 0:
                    return le
                return lower_bound + (le - lower_bound) * (rank - lower_count) / in_bucket
            lower_bound, lower_count = le, cumulative
        return finite[-1][0] if finite else None

    def bucket_of(self, value: float) -> tuple[float, float]:
        """The bounds ``(lower, upper]`` of the bucket a value falls in: the resolution of an estimate."""
        lower = 0.0
        for le, _ in sorted(self.buckets):
            if value <= le:
                return lower, le
            lower = le
        return lower, math.inf


QUEUE_TIME = "vllm:request_queue_time_seconds"
PREEMPTIONS = "vllm:num_preemptions_total"


def server_delta(before: dict, after: dict) -> dict:
    """What the server's own counters say happened between two /metrics snapshots (``samples`` dicts).

    ``requests``: finished requests (the queue-time histogram's count);
    ``queue_mean_s``: their mean time in the WAITING queue before first being
    scheduled (``vllm:request_queue_time_seconds``, observed as
    ``scheduled_ts − queued_ts`` in vllm/v1/metrics/stats.py); ``preemptions``.
    """
    def d(name):
        a, b = after.get(name), before.get(name, 0.0)
        return None if a is None else a - (b or 0.0)
    count, total = d(QUEUE_TIME + "_count"), d(QUEUE_TIME + "_sum")
    return {"requests": count, "queue_mean_s": (total / count) if count else None,
            "preemptions": d(PREEMPTIONS)}


def histogram_deltas(before: dict[str, Histogram], after: dict[str, Histogram]) -> dict[str, dict]:
    """Each histogram's observations between two readings: ``n``, ``mean_s`` (exact, from ``_sum``),
    ``p50_s`` / ``p90_s`` (estimated from the buckets, None when ``n`` is too small) and
    ``p50_bucket`` (the bounds the median estimate lies between: its resolution)."""
    out = {}
    for key, h in after.items():
        d = h.minus(before.get(key))
        p50 = d.quantile(50) if d.count >= min_samples(50) else None
        out[key] = {"n": d.count, "mean_s": d.mean, "p50_s": p50,
                    "p90_s": d.quantile(90) if d.count >= min_samples(90) else None,
                    "p50_bucket": d.bucket_of(p50) if p50 is not None else None}
    return out


# ----------------------------------------------------------------- /metrics readings in time

def align_samples(readings: list[dict], levels: list[dict], offset_s: float = 0.0) -> list[dict]:
    """Readings (``time_s`` since the recorder started) → load-test samples with the level running then.

    ``levels`` are the load test's levels (``started_s``, ``wall_s``, ``concurrency``, seconds since
    the test started); ``offset_s`` is when the test started, in the recorder's time. A reading
    between levels gets concurrency 0.
    """
    out = []
    for r in readings:
        t = r["time_s"] - offset_s
        conc, index = 0, -1
        for i, lv in enumerate(levels):
            if lv["started_s"] <= t <= lv["started_s"] + lv["wall_s"]:
                conc, index = lv["concurrency"], i
        out.append({"t_s": t, "level": index, "concurrency": conc, "kv_cache_usage": r.get("kv_cache_usage"),
                    "running": r.get("running"), "waiting": r.get("waiting"), "preemptions": r.get("preemptions")})
    return out


# ----------------------------------------------------------------- two tools, one server

#: Figures compared by :func:`agreement`, with the absolute floor (seconds, or tokens/s) under
#: which a difference is not read as disagreement.
COMPARED = {"ttft_s": 0.010, "itl_s": 0.002, "output_tok_s": 20.0}
LABELS = {"ttft_s": "median TTFT", "itl_s": "median ITL (per token)", "output_tok_s": "output throughput"}


def show(name: str, value: float) -> str:
    """One compared figure in its unit (ms for the times, tok/s for the throughput)."""
    return f"{value:.0f} tok/s" if name == "output_tok_s" else f"{value * 1000:.1f} ms"


def agreement(ours: dict[int, dict], reference: dict[int, dict], tolerance: float,
              floors: dict[str, float] | None = None, noise: dict[int, dict] | None = None,
              subject: str = "load test vs vllm bench serve") -> Report:
    """Do two tools agree, level by level? One Finding per (level, figure); ERROR when they differ.

    ``ours`` and ``reference`` map a concurrency to ``{"ttft_s", "itl_s", "output_tok_s"}`` (medians
    and the throughput of that level). A figure agrees when
    ``|ours − reference| ≤ max(tolerance × reference, floor, noise)``, where ``noise`` (per level
    and figure, optional) is how far the reference tool's own repeated runs lay apart: a
    difference the reference shows against itself is not a disagreement.
    """
    require(0 < tolerance < 1, f"tolerance is a fraction between 0 and 1, got {tolerance!r}.", "Use e.g. 0.35.")
    floors = {**COMPARED, **(floors or {})}
    found = []
    for conc in sorted(set(ours) & set(reference)):
        for name, floor in floors.items():
            a, b = ours[conc].get(name), reference[conc].get(name)
            check = f"c={conc} {LABELS.get(name, name)}"
            if a is None or b is None:
                found.append(Finding(ERROR, f"missing ({'ours' if a is None else 'reference'} has no value)",
                                     "Run both tools on the same levels.", check=check))
                continue
            allowed = max(tolerance * b, floor, ((noise or {}).get(conc) or {}).get(name) or 0.0)
            level = OK if abs(a - b) <= allowed else ERROR
            found.append(Finding(level, f"{show(name, a)} vs {show(name, b)} (allowed ± {show(name, allowed)})",
                                 "" if level == OK else "The two clients disagree: the slower one measures itself.",
                                 check=check))
    missing = sorted(set(ours) ^ set(reference))
    if missing:
        found.append(Finding(ERROR, f"levels measured by one tool only: {missing}",
                             "Run both tools on the same concurrency levels.", check="levels"))
    return report(subject, found, ok_text="the two tools agree")
