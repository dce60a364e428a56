"""Cross-check the course's load test against vLLM's own benchmark (`vllm bench serve`) on the local
CPU engine, and print BENCHMARKS.md's table.

    .venv/bin/python scripts/bench_crosscheck.py [ROUNDS]

Same engine, same messages, same request counts and lengths, the two tools in turns; the settings
are llmserve.stack.lab.CROSS_CHECK_* (the capstone's lab engine, a one-block prompt, 64 tokens).
"""
from __future__ import annotations

import os
import platform
import sys
import time

from llmserve.stack import lab, load, report, target


def main(rounds: int = 2) -> None:
    check_lab = lab.CROSS_CHECK_LAB
    levels = list(lab.CROSS_CHECK_LEVELS)
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0]
    engine = target.open_local(check_lab)
    try:
        prompt = engine.stream(check_lab.messages(), max_tokens=4).prompt_tokens
        check = load.cross_check(engine, rounds=rounds, max_rounds=rounds)   # exactly ``rounds``
    finally:
        engine.close()
    print(f"Measured {started}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}); "
          f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"prompt {prompt} tokens, {lab.CROSS_CHECK_MAX_TOKENS} output tokens, {len(check.runs)} rounds.\n")
    print(report.crosscheck_table(check))
    print("\nPer round (course / benchmark):\n")
    for i, run in enumerate(check.runs, 1):
        cells = [f"c={c}: TTFT {run['ours'][c]['ttft_s'] * 1000:.0f} / {run['reference'][c]['ttft_s'] * 1000:.0f} ms, "
                 f"ITL {run['ours'][c]['itl_s'] * 1000:.1f} / {run['reference'][c]['itl_s'] * 1000:.1f} ms, "
                 f"{run['ours'][c]['output_tok_s']:.0f} / {run['reference'][c]['output_tok_s']:.0f} tok/s"
                 for c in levels]
        print(f"- round {i}: " + "; ".join(cells))
    print("\n" + str(check.agreement()))
    print("\nThe benchmark's command, per level:\n")
    for line in check.commands:
        print("    " + line.replace(str(engine.server.model_dir), "<the tiny model's folder>"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
