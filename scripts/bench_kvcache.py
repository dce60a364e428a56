#!/usr/bin/env python
"""Rerun the KV-cache chapter's measurements and record them in BENCHMARKS.md.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_kvcache.py            # update BENCHMARKS.md
    .venv/bin/python scripts/bench_kvcache.py --print    # only print the section

Writes (or replaces) the section ``## KV cache measurements`` of BENCHMARKS.md
and leaves every other section alone; creates the file with a ``# Benchmarks``
heading if it is missing. On a CUDA machine it adds the allocator and
bandwidth measurements; on a CPU it says they were not measured.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

import torch

from llmserve.world import mode
from llmserve.kvcache import formula, measure, paging, report

HEADING = "## KV cache measurements"
REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def section(device: str) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [HEADING, "",
             f"Measured {now} by `.venv/bin/python scripts/bench_kvcache.py` "
             f"(code: `llmserve/kvcache/measure.py`, `paging.py`, `report.py`; chapter: book/kv-cache.md).", "",
             f"- Machine: {cpu_name()}, {os.cpu_count()} CPU cores visible; torch {torch.__version__}; "
             f"load average {os.getloadavg()[0]:.1f} when the run started (other work on a shared machine "
             "inflates the recompute times most, since they are the longest runs)."]
    if device == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)}.")
    else:
        lines.append("- GPU: none on this machine, so the GPU figures below are **not measured** here.")

    # Bytes: every cache against the formula.
    rows = (measure.measure_tokens(formula.QWEN25_CODER_7B, (16, 256, 1024), "bf16")
            + measure.measure_layers(tokens=256) + measure.measure_kv_heads(tokens=256)
            + measure.measure_dtypes(tokens=256) + measure.measure_growth())
    unequal = [r for r in rows if r.measured != r.formula]
    lines += ["", "### Cache bytes against the formula", "",
              f"{len(rows)} caches (Qwen2.5-Coder-7B's shape at 16/256/1,024 tokens; 1–28 layers; MHA/GQA/MQA; "
              f"{'/'.join(measure.available_cache_dtypes('cpu'))}; a tiny decoder while it generates): "
              + ("measured bytes equal the formula in every case (ratio 1.000000)." if not unequal
                 else f"**{len(unequal)} differ**: " + ", ".join(r.label for r in unequal))]

    # Time: cached decoding vs recomputation, on the CPU with the tiny model (as the notebook does).
    timing = measure.time_decode(contexts=(128, 256, 512, 1024, 2048), repeats=7)
    r2k = timing.row(2048)
    lines += ["", "### Cached decoding vs recomputing the context (CPU)", "",
              f"Tiny random-weight decoder `{timing.model}` ({timing.dtype}), {timing.device}, "
              f"{timing.threads} thread, best of {timing.repeats}:", "",
              str(report.timing_table(timing)), "",
              f"**At 2,048 tokens of context, cached decoding is {r2k.speedup:.0f}× faster per token** "
              f"({r2k.cached_s * 1e3:.2f} ms vs {r2k.recompute_s * 1e3:.1f} ms). "
              "The ratio grows with the context; its size depends on the machine and the model."]

    # Paging: reserved vs used.
    lengths = paging.sample_lengths(200, max_model_len=8192, seed=0)
    cmp = paging.compare(lengths, 8192, 8 * 2**30)
    lines += ["", "### Reserved vs used: contiguous vs paged (computed, seed 0)", "",
              "200 requests, log-normal mix, Qwen2.5-Coder-7B bf16, `--max-model-len 8192`, "
              "16-token blocks, 8 GiB of KV cache.", "",
              str(report.paging_table(cmp))]

    # GPU.
    lines += ["", "### GPU (allocator, copy bandwidth, decode attention)", ""]
    if device == "cuda":
        alloc = measure.measure_allocator(formula.QWEN25_CODER_7B, (16, 256, 1024), "bf16")
        ok = all(r.measured == r.formula for r in alloc)
        copy, bw = measure.measure_bandwidth((1, 16, 64), (1024, 8192), device="cuda")
        lines += [f"`torch.cuda.memory_allocated` delta equals the formula: {'yes' if ok else '**no**'}.", "",
                  str(report.bandwidth_table(copy, bw))]
    else:
        lines.append("Not measured: this machine has no CUDA GPU, and book/kv-cache.md quotes no GPU "
                     "figure as measured. On a CUDA machine, `bash scripts/gpu-check.sh` measures them "
                     "and rewrites this section.")
    return "\n".join(lines) + "\n"


def update(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--print", action="store_true", help="print the section instead of writing it")
    args = ap.parse_args(argv)
    device, reason = mode.detect_device()
    print(f"device: {device} ({reason})", file=sys.stderr)
    text = section(device)
    if args.print:
        print(text)
    else:
        update(args.out, text)
        print(f"updated {HEADING!r} in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
