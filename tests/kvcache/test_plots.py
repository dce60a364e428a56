"""The KV-cache chapter's figures (llmserve/kvcache/plots.py): built from data, nothing measured there."""
from __future__ import annotations

from matplotlib.figure import Figure

from llmserve.kvcache import measure, paging, plots


def test_figures_are_built_from_data():
    assert isinstance(plots.growth(measure.measure_growth(new_tokens=8)), Figure)
    assert isinstance(plots.timing(measure.time_decode((16, 32), repeats=1)), Figure)
    cmp = paging.compare(paging.sample_lengths(50, 4096), 4096, 2**30)
    assert isinstance(plots.paging(cmp), Figure)
    copy, rows = measure.measure_bandwidth((1,), (32,), device="cpu", copy_nbytes=1 << 20, repeats=1,
                                           dtype="fp32", heads=4, kv_heads=2, head_dim=8)
    assert isinstance(plots.bandwidth(copy, rows), Figure)


def test_paging_figure_draws_the_cache_beside_the_totals():
    cmp = paging.compare(paging.sample_lengths(200, 8192, seed=0), 8192, 8 * 2**30)
    left, right = plots.paging(cmp).axes
    assert "All 200 requests at once" in left.get_title()
    assert any(t.get_text() == "the KV cache: 8.0 GiB" for t in left.get_legend().get_texts())
    assert "8.0 GiB cache together" in right.get_title()
