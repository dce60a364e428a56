"""The KV-cache chapter's tables and sentences (llmserve/kvcache/report.py)."""
from __future__ import annotations

from llmserve.kvcache import formula, measure, paging, report


def test_report_tables_render_as_markdown_and_html():
    t = report.bytes_table(measure.measure_layers(layers=(1, 2), tokens=4), title="layers")
    md = str(t)
    assert md.startswith("layers\n\n| cache |") and md.count("\n| ") == 4     # header, separator, 2 rows
    assert "---:" in md and "| 1 |" in md          # ratio exactly 1
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "<b>layers</b>" in html
    timing = report.timing_table(measure.time_decode((16,), repeats=1))
    assert "speedup" in str(timing) and "×" in str(timing)


def test_formula_table_renders_the_formula_rows():
    md = str(report.formula_table(formula.formula_rows()))
    assert "| Qwen2.5-Coder-7B-Instruct | 28 | 28 / 4 | 3584 | bf16 | 57,344 | 401,408 | 7× |" in md
    assert md.count("\n| ") == 5                   # separator + 2 models × 2 dtypes


def test_paging_table_says_what_its_totals_count():
    # The issue a learner met: "used 20.96 GiB" beside an 8 GiB cache, unexplained.
    cmp = paging.compare(paging.sample_lengths(200, 8192, seed=0), 8192, 8 * 2**30)
    summary = report.paging_summary(cmp)
    assert summary.startswith("200 requests of 1,962 tokens on average hold 392,376 tokens = 20.96 GiB")
    assert "more than the 8.0 GiB cache" in summary and "as if they were in memory at once" in summary
    table = report.paging_table(cmp)
    assert table.title == summary
    md = str(table)
    assert "| contiguous | 8,192 tokens = 448.0 MiB | 76.1% | 87.50 GiB | 18 |" in md
    assert "| paged |" in md and "| 71 |" in md and "held at once in 8.0 GiB" in md


def test_paging_summary_within_the_cache():
    cmp = paging.compare([100] * 10, 8192, 8 * 2**30)
    assert "within the 8.0 GiB cache" in report.paging_summary(cmp)


def test_bandwidth_table_names_the_copy_rate():
    copy, rows = measure.measure_bandwidth((1,), (32,), device="cpu", copy_nbytes=1 << 20, repeats=1,
                                           dtype="fp32", heads=4, kv_heads=2, head_dim=8)
    t = report.bandwidth_table(copy, rows)
    assert t.title.startswith("Device-to-device copy:") and len(t.rows) == 2
    assert [r[0] for r in t.rows] == ["sdpa", "repeat"]
