"""The metrics to watch, the lab's PromQL and the dashboards' queries (pure)."""
from __future__ import annotations

import pytest

from llmserve.core.errors import InputError, ManifestError
from llmserve.observability import catalogue


def test_quantile_builds_the_histogram_query():
    assert catalogue.quantile(0.95, "vllm:time_to_first_token_seconds", "1m", by="instance") == (
        "histogram_quantile(0.95, sum by (instance, le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))")
    with pytest.raises(InputError, match="between 0 and 1"):
        catalogue.quantile(95, "vllm:time_to_first_token_seconds")
    with pytest.raises(InputError, match="not a metric this course watches"):
        catalogue.quantile(0.5, "vllm:no_such_histogram")


def test_the_lab_queries_cover_the_issues_list():
    q = catalogue.lab_queries()
    for name in ("kv_cache_usage", "running", "waiting", "queue_p95", "ttft_p95", "itl_p95", "prefix_hit_rate",
                 "preemptions", "ttft_p95_replica"):
        assert name in q
    assert "by (instance" in q["ttft_p95_replica"] and "[10s]" in q["ttft_p50"]


def test_every_dashboard_panel_queries_prometheus_through_the_datasource_variable():
    for relative in (catalogue.COURSE_DASHBOARD, catalogue.GPU_DASHBOARD):
        board = catalogue.load_dashboard(relative)
        assert board["uid"] and board["templating"]["list"][0]["query"] == "prometheus"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_dashboard_queries_need_no_grafana_variables():
    queries = catalogue.dashboard_queries(catalogue.load_dashboard())
    assert len(queries) >= 15
    assert [q for q in queries if catalogue.template_variables(q.expr)] == []
    assert catalogue.template_variables("rate(x[$__rate_interval]) / ${job:raw}") == ["__rate_interval", "job"]


def test_the_gpu_dashboard_reads_only_dcgm_metrics():
    queries = catalogue.dashboard_queries(catalogue.load_dashboard(catalogue.GPU_DASHBOARD))
    assert queries and all("DCGM_FI_DEV_" in q.expr and "vllm:" not in q.expr for q in queries)


def test_nested_row_panels_are_found():
    board = {"panels": [{"title": "row", "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "up"}]}]}]}
    assert [(q.panel, q.expr) for q in catalogue.dashboard_queries(board)] == [("inner", "up")]


def test_a_missing_dashboard_is_a_clear_error():
    with pytest.raises(ManifestError, match="No dashboard"):
        catalogue.load_dashboard("components/observability/dashboards/nope.json")
