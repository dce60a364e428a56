"""A load test's result as a plain-text table, for a notebook cell. Layer: presentation.

Used by notebooks/stack-lab.ipynb and the tests of the load test. Each percentile comes
with the number of requests behind it; one the count does not support prints as ``—``
(:func:`llmserve.serving.stats.min_samples`).
"""
from __future__ import annotations

from llmserve.core.errors import InputError
from llmserve.serving.stats import min_samples


def _ms(value: float | None) -> str:
    return f"{value * 1000:7.0f}ms" if value is not None else "      —"


def summary_table(result: dict) -> str:
    """One row per level: requests (n), errors, throughput, TTFT p50/p90, latency p50, ITL p50."""
    if not isinstance(result, dict) or "levels" not in result:
        raise InputError("Expected the dict returned by run_load_test.", "Pass run_load_test(...)'s result.")
    head = (f"{'conc':>4} {'n':>3} {'err':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p90':>9} {'lat p50':>8} "
            f"{'ITL p50':>8}")
    rows = [head]
    for lv in result["levels"]:
        rows.append(f"{lv['concurrency']:>4} {lv['ok']:>3} {lv['errors']:>3} {lv['throughput_tok_s']:8.1f} "
                    f"{_ms(lv['ttft_p50_s']):>9} {_ms(lv['ttft_p90_s']):>9} {_ms(lv['latency_p50_s']):>8} "
                    f"{_ms(lv['itl_p50_s']):>8}")
    rows.append(f"n = requests behind each percentile (p90 needs n ≥ {min_samples(90)}, else —); "
                f"{len(result.get('warmup') or [])} warm-up request(s) not counted")
    peak = [s for s in result["samples"] if s["kv_cache_usage"] is not None]
    if peak:
        counter = [s["preemptions"] for s in peak if s["preemptions"] is not None]
        rows.append(f"peak KV-cache usage {max(s['kv_cache_usage'] for s in peak):.0%}, "
                    f"max waiting {max((s['waiting'] or 0) for s in peak):.0f}, "
                    f"preemptions during the test {counter[-1] - counter[0] if counter else 0:.0f} "
                    f"({len(result['samples'])} readings of /metrics)")
    if result.get("stopped_early"):
        rows.append(f"stopped early: {result['reason']}")
    return "\n".join(rows)
