"""The capstone's text outputs: the client beside the server, the cache in units that show it, by hand."""
from __future__ import annotations

from llmserve.stack import lab, report
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
