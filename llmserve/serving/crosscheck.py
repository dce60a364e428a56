"""The course's load test and ``vllm bench serve`` on the same server, one after the other.

Used by the capstone's lab (notebooks/stack-lab.ipynb, section 7, through
:mod:`llmserve.stack.load`: the agreement and the planted fault that must fail it) and by
BENCHMARKS.md's cross-check (scripts/bench_crosscheck.py); book/stack.md explains it. Layer: live.

Both tools send the same messages, the same number of requests with exactly
``max_tokens`` output tokens each, at the same concurrency levels, to the same running
engine, in turns (``rounds`` times course then benchmark, more when they disagree: see
:func:`cross_check`), so that a slow moment of the machine hits both. Per level, the medians of each tool's requests are compared with
:func:`llmserve.serving.stats.agreement`: median TTFT, median per-token ITL (the
benchmark's TPOT) and output throughput.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from llmserve.core.findings import Report
from llmserve.serving import loadtest, stats, vllm_bench
from llmserve.serving.client import Connection, root_url

#: The tolerance the agreement test uses; book/stack.md and BENCHMARKS.md justify it.
TOLERANCE = 0.35


@dataclass
class CrossCheck:
    """Both tools' figures per level (medians over every round) and the runs behind them."""

    ours: dict[int, dict] = field(default_factory=dict)
    reference: dict[int, dict] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)     # each round's figures, both tools
    commands: list[str] = field(default_factory=list)  # the vllm bench serve command per level

    def agreement(self, tolerance: float = TOLERANCE) -> Report:
        """Each of our figures against the reference, allowing the larger of the two tools' own
        round-to-round spreads: a difference either tool shows against itself is no disagreement."""
        noise = {c: {k: max(f.get("noise", {}).get(k, 0.0), self.ours.get(c, {}).get("noise", {}).get(k, 0.0))
                     for k in stats.COMPARED} for c, f in self.reference.items()}
        return stats.agreement(self.ours, self.reference, tolerance, noise=noise)


def course_figures(level: dict) -> dict:
    """One level of :func:`llmserve.serving.loadtest.run_load_test` as the compared figures (medians),
    with each request's TTFT and ITL for pooling."""
    ok = [r for r in level["requests"] if r["error"] is None]
    ttfts, itls = [r["ttft_s"] for r in ok], [r["itl_s"] for r in ok if r["itl_s"] is not None]
    return {"ttft_s": stats.median(ttfts), "itl_s": stats.median(itls),
            "chunk_gap_s": stats.median([g for r in ok for g in r["chunk_gaps_s"]]),
            "latency_s": stats.median([r["latency_s"] for r in ok]), "output_tok_s": level["throughput_tok_s"],
            "completed": len(ok), "failed": level["errors"], "duration_s": level["wall_s"],
            "ttfts": ttfts, "itls": itls}


def pool(rounds: list[dict[int, dict]]) -> dict[int, dict]:
    """Per level: the median TTFT and ITL over every request of every round, the median throughput
    of the rounds, the request count, and ``noise``: how far the rounds' own medians lie apart."""
    out: dict[int, dict] = {}
    for conc in rounds[0]:
        runs = [r[conc] for r in rounds]
        out[conc] = {"ttft_s": stats.median([v for r in runs for v in r["ttfts"]]),
                     "itl_s": stats.median([v for r in runs for v in r["itls"]]),
                     "output_tok_s": stats.median([r["output_tok_s"] for r in runs]),
                     "n": sum(len(r["ttfts"]) for r in runs),
                     "noise": {k: max(r[k] for r in runs) - min(r[k] for r in runs)
                               for k in ("ttft_s", "itl_s", "output_tok_s")}}
    return out


def _round(base_url: str, model: str, tokenizer, messages: list[dict], max_tokens: int, levels: list[int],
           requests_per_level: dict[int, int], api_key: str | None, python) -> tuple[dict, dict]:
    """One turn of each tool: the course's load test, then vllm bench serve, on the same levels."""
    # No /metrics recorder: vllm bench serve runs none, and on two cores its CPU would slow the engine.
    result = loadtest.run_load_test(base_url, model, levels, requests_per_level=requests_per_level,
                                    messages=messages, max_tokens=max_tokens, api_key=api_key, max_duration_s=600,
                                    sample_interval_s=None)
    ours = {lv["concurrency"]: course_figures(lv) for lv in result["levels"]}
    reference = vllm_bench.run(root_url(base_url), model, tokenizer, messages, max_tokens, levels,
                               requests_per_level, api_key, python)
    return ours, reference


def cross_check(base_url: str, model: str, tokenizer, messages: list[dict], *, max_tokens: int,
                levels: list[int], requests_per_level: dict[int, int], api_key: str | None, python,
                rounds: int = 2, max_rounds: int = 4, tolerance: float = TOLERANCE) -> CrossCheck:
    """Run both tools ``rounds`` times in turn (see the module docstring); ``python`` is
    ``.venv-vllm``'s interpreter, ``tokenizer`` the served model's folder.

    When the pooled figures disagree, one more round of both runs, up to ``max_rounds``, and
    everything is pooled again: on a machine busy with other work a single slow moment can
    hit one tool's round, and more requests per tool average it out. A client that is
    really slower stays slower in every round.
    """
    check = CrossCheck()
    ours_rounds, ref_rounds = [], []
    while len(ours_rounds) < max_rounds:
        ours, reference = _round(base_url, model, tokenizer, messages, max_tokens, levels, requests_per_level,
                                 api_key, python)
        ours_rounds.append(ours)
        ref_rounds.append(reference)
        check = CrossCheck(ours=pool(ours_rounds), reference=pool(ref_rounds))
        if len(ours_rounds) >= rounds and check.agreement(tolerance).ok:
            break
    check.runs = [{"ours": o, "reference": r} for o, r in zip(ours_rounds, ref_rounds)]
    check.commands = [vllm_bench.command_line(vllm_bench.bench_args(
        root_url(base_url), model, str(tokenizer), "prompts.json", max_tokens, c, requests_per_level[c]))
        for c in levels]
    return check


@contextmanager
def planted_client_delay(seconds: float) -> Iterator[None]:
    """Plant the fault the cross-check guards against, for the block: each request of the course's
    client waits ``seconds`` after its clock has started and before it is sent, as the course's
    first client did when it built its HTTP client inside the timed region (book/stack.md).
    For showing that the check fails; never for measuring."""
    original = Connection.start

    def delayed(self, *args, **kwargs):
        time.sleep(seconds)
        return original(self, *args, **kwargs)

    Connection.start = delayed
    try:
        yield
    finally:
        Connection.start = original


def planted_fault_check(base_url: str, model: str, messages: list[dict], check: CrossCheck, *, level: int,
                        requests: int, max_tokens: int, api_key: str | None, delay_s: float = 0.25) -> Report:
    """The course's load test at one ``level`` with :func:`planted_client_delay`, against the
    benchmark's figures that ``check`` measured there: the agreement report, which must fail.
    The lowest level shows the delay best: there TTFT is shortest."""
    with planted_client_delay(delay_s):
        slow = loadtest.run_load_test(base_url, model, [level], requests_per_level={level: requests},
                                      messages=messages, max_tokens=max_tokens, api_key=api_key,
                                      warmup_requests=0, max_duration_s=300, sample_interval_s=None)
    planted = CrossCheck(ours=pool([{lv["concurrency"]: course_figures(lv) for lv in slow["levels"]}]),
                         reference={level: check.reference[level]})
    return planted.agreement()
