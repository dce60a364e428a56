"""How the course runs ``vllm bench serve``: its options, its dataset file, its per-request results.

The saved result below is CONSTRUCTED in the shape ``--save-result --save-detailed`` writes
(vllm/benchmarks/serve.py: ``ttfts``, ``latencies``, ``output_lens``, ``errors`` in seconds,
``median_*_ms`` in milliseconds). The real benchmark runs in the capstone lab (notebooks/stack-lab.ipynb, section 7).
"""
from __future__ import annotations

import json
import shlex

import pytest

from llmserve.serving import vllm_bench

MESSAGES = [{"role": "user", "content": "Write a Python function that parses a Kubernetes manifest."}]


def test_the_dataset_is_the_load_tests_message_once_per_request(tmp_path):
    path = vllm_bench.sharegpt_dataset(MESSAGES, 3, tmp_path / "p.json")
    data = json.loads(path.read_text())
    # ShareGPT format: vllm/benchmarks/datasets/datasets.py ShareGPTDataset reads conversations[0]["value"].
    assert len(data) == 3 and data[0]["conversations"][0]["value"] == MESSAGES[0]["content"]
    assert len(data[0]["conversations"]) >= 2
    with pytest.raises(ValueError):
        vllm_bench.sharegpt_dataset(MESSAGES * 2, 1, tmp_path / "q.json")


def test_the_options_send_what_the_course_sends():
    args = vllm_bench.bench_args("http://127.0.0.1:8000/", "tiny-qwen2", "/models/t", "p.json", 64, 4, 20,
                                 result_dir="/tmp/r", result_name="c4.json")
    opts = dict(zip(args[::1], args[1::1]))
    assert opts["--backend"] == "openai-chat" and opts["--endpoint"] == "/v1/chat/completions"
    assert opts["--base-url"] == "http://127.0.0.1:8000" and opts["--max-concurrency"] == "4"
    assert opts["--num-prompts"] == "20" and opts["--sharegpt-output-len"] == "64"
    assert opts["--temperature"] == "0" and "--ignore-eos" in args                   # greedy, exact length
    assert "--save-detailed" in args and opts["--result-filename"] == "c4.json"
    line = vllm_bench.command_line(args)
    assert line.startswith("vllm bench serve --backend openai-chat") and shlex.split(line)[3:] == args


def test_per_request_figures_from_a_detailed_result():
    saved = {"ttfts": [0.08, 0.09, 0.5], "latencies": [0.71, 0.72, 0.5], "output_lens": [64, 64, 0],
             "errors": ["", "", "timeout"]}
    ttfts, tpots = vllm_bench.per_request(saved)
    assert ttfts == [0.08, 0.09]                                         # the failed request is left out
    assert tpots == pytest.approx([(0.71 - 0.08) / 63, (0.72 - 0.09) / 63])
