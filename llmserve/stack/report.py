"""The capstone's results as plain text for the lab's cells. Layer: presentation.

Used by notebooks/stack-lab.ipynb: the ``kubectl`` commands of one step
(:func:`by_hand_text`), the planned cache beside what the engine logged, in units that
show it (:func:`cache_text`), a reply and a stream in a few lines, the load test's table
with its sample counts, the client's view of each level beside the server's own
(:func:`client_server_table`), what ``/metrics`` said, and the load test beside vLLM's own
benchmark (:func:`crosscheck_table`, also printed by scripts/bench_crosscheck.py). Every ``*_text`` function takes
the :class:`~llmserve.stack.target.Target` too: when it has nothing to talk to, the text
is the target's reason and what to install, so the lab's cells need no guard.
"""
from __future__ import annotations

from llmserve.serving import stats
from llmserve.serving.report import summary_table
from llmserve.stack.order import by_hand
from llmserve.stack.stats import (client_and_server, peak_kv_usage, preemptions_during, queue_by_level,
                                  reading_rate, waiting_by_level)


def _ms(value: float | None, width: int = 7) -> str:
    return f"{value * 1000:{width}.1f}" if value is not None else " " * (width - 1) + "—"


def client_server_table(result: dict) -> str:
    """Per level: the client's means beside the server's histogram means (milliseconds): the same
    statistic on both sides, over the same requests."""
    lines = [f"{'conc':>4} {'n':>3} | {'TTFT client':>11} {'server':>7} | {'ITL client':>10} {'server':>7} | "
             f"{'e2e client':>10} {'server':>7} | {'queue':>7}"]
    for r in client_and_server(result):
        lines.append(f"{r['concurrency']:>4} {r['n']:>3} | {_ms(r['client_ttft_mean_s'], 11)} "
                     f"{_ms(r['server_ttft_s'])} | {_ms(r['client_itl_mean_s'], 10)} {_ms(r['server_itl_s'])} | "
                     f"{_ms(r['client_e2e_mean_s'], 10)} {_ms(r['server_e2e_s'])} | {_ms(r['server_queue_s'])}")
    lines.append("means over the level's n requests, in ms: the client's timings, and vLLM's own histograms "
                 "over the same level (vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds, "
                 "vllm:e2e_request_latency_seconds, vllm:request_queue_time_seconds)")
    return "\n".join(lines)


def cache_text(plan, kv_report: dict | None) -> str:
    """The planned KV cache (the planner's summary: a few MiB print as MiB) beside what the engine logged."""
    lines = [f"model shape: {plan.model}", "planner: " + plan.summary().replace("\n", "\n         ")]
    if kv_report:
        lines.append(f"vLLM logged: {kv_report.get('device')} KV cache size: {kv_report.get('kv_cache_tokens'):,} "
                     f"tokens, maximum concurrency {kv_report.get('max_concurrency')}x")
    return "\n".join(lines)


def by_hand_text(step: str, overlay: str = "gpu-box") -> str:
    """``By hand:`` and the step's commands, one per line."""
    return "By hand:\n" + "\n".join(f"  $ {c}" for c in by_hand(step, overlay))


def engine_cache_text(target) -> str:
    """Locally, the planner's cache beside the engine's log line; on a cluster, where the figures come from."""
    if not target:
        return target.describe()
    if target.plan is None:
        return ("On a cluster the planner's prediction comes from the server's own figures "
                "(vllm:cache_config_info and /v1/models), read with the load test below.")
    return cache_text(target.plan, target.server.kv_report if target.server else None)


def reply_text(reply, target) -> str:
    if reply is None:
        return target.describe()
    counts = {k: v for k, v in reply.to_dict().items() if k != "text"}
    return f"{counts}\ntext (first 60 characters, gibberish locally): {reply.text[:60]!r}"


def stream_text(s, target) -> str:
    if s is None:
        return target.describe()
    return (f"TTFT {s.ttft_s * 1000:.1f} ms, ITL {s.itl_s * 1000:.2f} ms per token, "
            f"{s.tokens_per_s:.0f} tokens/s, latency {s.latency_s * 1000:.0f} ms\n"
            f"{s.completion_tokens} tokens reported in {s.chunks} text chunks; prompt {s.prompt_tokens} tokens")


def load_text(result, target) -> str:
    """The load test's table (each percentile with its n), how often /metrics was read, the queue."""
    if result is None:
        return target.describe()
    rate = reading_rate(result)
    every = f"one every {rate['every_s']:.2f} s" if rate["every_s"] else "none"
    queue = {c: None if q is None else round(q, 3) for c, q in queue_by_level(result).items()}
    return "\n".join([summary_table(result),
                      f"/metrics: {rate['readings']} readings in {rate['duration_s']:.0f} s ({every}; asked for "
                      f"one every {rate['asked_s']:g} s: a busy machine answers late)",
                      f"mean time in vLLM's waiting queue by concurrency (server histogram, s): {queue}"])


def client_server_text(result, target) -> str:
    return target.describe() if result is None else client_server_table(result)


def metrics_text(result, target, predicted: float | None, snapshot) -> str:
    """The gauges per level beside the prediction, and the metric names this server exposes."""
    if result is None:
        return target.describe()
    return "\n".join([f"planner's maximum concurrency (requests of max_model_len tokens): {predicted}",
                      f"most requests waiting, by concurrency: {waiting_by_level(result)}",
                      f"preemptions during the load: {preemptions_during(result)}; "
                      f"peak KV-cache usage: {peak_kv_usage(result)}",
                      f"metric names this server exposes: {snapshot.names}"])


def crosscheck_table(check) -> str:
    """Per level and figure: the course's load test beside ``vllm bench serve`` (pooled over the
    rounds) and their difference, as a Markdown table."""
    lines = ["| concurrency | requests | figure | course load test | vllm bench serve | difference |",
             "| ---: | ---: | :--- | ---: | ---: | ---: |"]
    for c in sorted(check.ours):
        ours, ref = check.ours[c], check.reference[c]
        for name in stats.COMPARED:
            a, b = ours[name], ref[name]
            lines.append(f"| {c} | {ours['n']} | {stats.LABELS[name]} | {stats.show(name, a)} | {stats.show(name, b)} "
                         f"| {100 * (a - b) / b:+.0f} % |")
    return "\n".join(lines)


def crosscheck_text(check, target) -> str:
    """The cross-check's verdict and the benchmark's command (the lab shows :func:`crosscheck_table`
    as a table above it); on a cluster, the Job that runs it there."""
    if check is None:
        if target.kind == "cluster":
            return (by_hand_text("bench") + "\nvLLM's benchmark inside the cluster, against the Service: "
                    "compare its medians with section 6's at the same concurrency.")
        return target.describe()
    return "\n".join([f"{len(check.runs)} round(s), the two tools in turns on the same engine.",
                       str(check.agreement()), "vllm bench serve, as run at concurrency "
                       f"{min(check.reference)} (the CPU wheel's `vllm` command does not start: the same parser "
                       "and main):", "  " + check.commands[0].replace(str(target.server.model_dir), "<model folder>")])
