"""The capstone's text outputs: the client beside the server, the cache in units that show it, by hand."""
from __future__ import annotations

from types import SimpleNamespace

from llmserve.serving.crosscheck import CrossCheck
from llmserve.stack import lab, report, target
from tests.stack.test_stats import RESULT


def test_client_server_table_has_one_row_per_level_in_milliseconds():
    text = report.client_server_table(RESULT).splitlines()
    assert text[0].split()[:2] == ["conc", "n"] and len(text) == 1 + len(RESULT["levels"]) + 1
    assert "900.0" in text[2] and "800.0" in text[2] and "500.0" in text[2]      # ms, client and server


def test_a_few_mib_of_cache_print_as_mib_not_zero_gib():
    # The stack lab once printed "KV cache memory: 0.00 GiB = 17 blocks".
    shape = lab.LOCAL_LAB.tiny_shape()
    plan = lab.LOCAL_LAB.plan(shape.model_shape(), shape.kv_dtype())
    text = report.cache_text(plan, {"device": "CPU", "kv_cache_tokens": plan.kv_tokens,
                                    "max_concurrency": round(plan.max_concurrency, 2)})
    assert "0.00 GiB" not in text and "MiB" in text and f"{plan.num_blocks} blocks" in text
    assert f"{plan.kv_tokens:,} tokens" in text


def test_by_hand_text_prints_each_command():
    text = report.by_hand_text("apply")
    assert text.startswith("By hand:\n  $ kubectl") and "create secret generic" in text


def _check():
    figures = {"ttft_s": 0.06, "itl_s": 0.009, "output_tok_s": 100.0}
    return CrossCheck(ours={1: {**figures, "n": 10}, 4: {**figures, "ttft_s": 0.2, "n": 20}},
                      reference={1: {**figures, "ttft_s": 0.05, "n": 10}, 4: {**figures, "ttft_s": 0.2, "n": 20}},
                      runs=[{}], commands=["python -c ... --tokenizer /somewhere/tiny --max-concurrency 1"])


def test_the_crosscheck_table_has_three_figures_per_level_and_the_difference():
    rows = report.crosscheck_table(_check()).splitlines()
    assert rows[0].startswith("| concurrency | requests | figure") and len(rows) == 2 + 2 * 3
    assert rows[2] == "| 1 | 10 | median TTFT | 60.0 ms | 50.0 ms | +20 % |"
    assert rows[5] == "| 4 | 20 | median TTFT | 200.0 ms | 200.0 ms | +0 % |"


def test_the_crosscheck_text_says_where_it_runs():
    local = target.Target("local", "http://127.0.0.1:1", "k", server=SimpleNamespace(model_dir="/somewhere/tiny"))
    text = report.crosscheck_text(_check(), local)
    assert "1 round(s)" in text and "<model folder>" in text and "/somewhere/tiny" not in text
    cluster = report.crosscheck_text(None, target.Target("cluster", "http://127.0.0.1:2", "k"))
    assert "kubectl apply -f manifests/examples/stack/vllm-bench-job.yaml" in cluster
    assert report.crosscheck_text(None, target.Target("none", reason="no engine")).startswith("Nothing to send")
