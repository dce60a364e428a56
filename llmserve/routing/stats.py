"""Prefix-cache hit rates from ``/metrics`` counters, per engine and in all, and a run's summary.

Used by the routing chapter (book/routing.md, notebooks/routing-lab.ipynb) through
:mod:`llmserve.routing.experiment`, and by part 2's dashboards (the same ratio).
Pure rules: counter values in, figures out; percentiles come from
:func:`llmserve.serving.stats.spread` (nearest rank, with their sample counts).

vLLM 0.32 counts the prefix cache in **tokens** (vllm/v1/metrics/loggers.py):
``vllm:prefix_cache_queries`` — prompt tokens looked up — and ``vllm:prefix_cache_hits``
— of those, tokens found cached; as Prometheus counters they are exposed with a
``_total`` suffix. Earlier V1 releases called them ``vllm:gpu_prefix_cache_queries`` /
``…_hits`` (deprecated, then removed; accepted here as well). The hit rate of a run is the ratio of the two counters'
**increases** over the run, summed over engines — the same figure as the PromQL
``sum(rate(vllm:prefix_cache_hits_total[5m])) / sum(rate(vllm:prefix_cache_queries_total[5m]))``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmserve.serving import stats as serving_stats

QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
REQUESTS = ("vllm:request_success_total",)


def _first(samples: dict, names: tuple[str, ...]) -> float | None:
    return next((samples[n] for n in names if n in samples), None)


@dataclass(frozen=True)
class EngineDelta:
    """What one engine's counters say happened between two readings."""

    url: str
    queries: float
    hits: float
    requests: float

    @property
    def hit_rate(self) -> float | None:
        return hit_rate(self.queries, self.hits)


def hit_rate(queries: float, hits: float) -> float | None:
    """Cached tokens ÷ looked-up tokens; None when nothing was looked up."""
    return hits / queries if queries else None


def engine_delta(url: str, before: dict, after: dict) -> EngineDelta:
    """The increase of one engine's counters (``samples`` dicts of two readings of /metrics).

    A counter missing from the later reading means this server does not expose it: 0.
    """
    def d(names):
        a, b = _first(after, names), _first(before, names)
        return 0.0 if a is None else a - (b or 0.0)
    return EngineDelta(url, d(QUERIES), d(HITS), d(REQUESTS))


@dataclass(frozen=True)
class RunSummary:
    """One run of the workload through the router with one policy (plain data)."""

    label: str
    policy: str
    requests: int
    errors: int
    wall_s: float
    hit_rate: float | None              # all engines together
    engines: list[dict]                 # url, requests, queries, hits, hit_rate, share of requests
    ttft: dict                          # Spread as a dict (n, mean, p50, p90) of rounds after the first
    ttft_first_round: dict              # the first burst (every prefix new to the router)
    output_tok_s: float
    requests_per_s: float
    records: list[dict] = field(default_factory=list)   # one per request, as measured

    @property
    def busiest_share(self) -> float:
        """The largest fraction of the requests one engine served (1/N is perfectly even)."""
        return max((e["share"] for e in self.engines), default=0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(label: str, policy: str, deltas: list[EngineDelta], records: list[dict], wall_s: float) -> RunSummary:
    """A run's figures from its engines' counter increases and its request records.

    Each record: ``round``, ``tenant``, ``ttft_s``, ``output_tokens``, ``error`` (None when it worked),
    and whatever else the caller measured (kept as it is).
    """
    ok = [r for r in records if r.get("error") is None]
    served = sum(d.requests for d in deltas)
    engines = [{"url": d.url, "requests": d.requests, "queries": d.queries, "hits": d.hits,
                "hit_rate": d.hit_rate, "share": d.requests / served if served else 0.0} for d in deltas]
    later = serving_stats.spread([r["ttft_s"] for r in ok if r["round"] > 0])
    first = serving_stats.spread([r["ttft_s"] for r in ok if r["round"] == 0])
    tokens = sum(r["output_tokens"] for r in ok)
    return RunSummary(label, policy, len(records), len(records) - len(ok), wall_s,
                      hit_rate(sum(d.queries for d in deltas), sum(d.hits for d in deltas)), engines,
                      asdict(later), asdict(first), tokens / wall_s if wall_s > 0 else 0.0,
                      len(ok) / wall_s if wall_s > 0 else 0.0, list(records))


def table(runs: list[RunSummary]) -> list[dict]:
    """One row per run, for a table (plain data; rates as fractions, times in seconds)."""
    return [{"run": r.label, "policy": r.policy, "requests": r.requests, "errors": r.errors,
             "hit rate": r.hit_rate, "busiest engine's share": r.busiest_share,
             "TTFT p50 (s)": r.ttft["p50"], "TTFT p90 (s)": r.ttft["p90"],
             "TTFT n": r.ttft["n"], "output tok/s": r.output_tok_s} for r in runs]


def tenant_homes(summary: RunSummary) -> dict[int, set[str]]:
    """For a sequential run: the engines each tenant's requests went to (one engine each = sticky)."""
    homes: dict[int, set[str]] = {}
    for rec in summary.records:
        if rec.get("engine"):
            homes.setdefault(rec["tenant"], set()).add(rec["engine"])
    return homes
