"""The recording rules and alerts as data: one source, two forms, names that vLLM really exports (pure)."""
from __future__ import annotations

import re

from llmserve.core.paths import REPO_ROOT
from llmserve.observability import alerts, catalogue
from llmserve.world import manifests

LOGGERS = REPO_ROOT / ".venv-vllm" / "lib" / "python3.11" / "site-packages" / "vllm" / "v1" / "metrics" / "loggers.py"
METRIC = re.compile(r"\bvllm:[a-z0-9_]+")


def test_the_prometheus_rule_carries_exactly_the_plain_files_groups():
    committed = manifests.load_one(alerts.PROMETHEUS_RULE)
    assert committed["spec"]["groups"] == alerts.rule_groups()
    assert alerts.prometheus_rule() == committed


def test_the_rules_cover_what_the_issue_asks_for():
    names = {r.name for r in alerts.alert_rules()}
    assert {"VLLMTimeToFirstTokenHigh", "VLLMRequestsQueueGrowing", "VLLMKVCacheFull", "VLLMReplicaDown"} <= names
    for rule in alerts.alert_rules():
        assert rule.severity in ("warning", "critical") and rule.summary and rule.for_, rule
    assert all(":" in r.name for r in alerts.recording_rules())     # level:metric:operations


def test_the_engines_job_is_the_pods_app_label():
    deployment = manifests.load_one("base/vllm-deployment.yaml")
    assert alerts.engine_job() == deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    for rule in alerts.rules():
        for job in re.findall(r'job="([^"]+)"', rule.expr):
            assert job == alerts.engine_job(), rule


def test_the_replica_down_alert_waits_longer_than_the_startup_probe_allows():
    pod = manifests.load_one("base/vllm-deployment.yaml")["spec"]["template"]["spec"]
    probe = pod["containers"][0]["startupProbe"]
    allowed_s = probe["initialDelaySeconds"] + probe["periodSeconds"] * probe["failureThreshold"]
    minutes = int(alerts.find("VLLMReplicaDown").for_.removesuffix("m"))
    assert minutes * 60 > allowed_s


def _exported_names() -> set[str]:
    """Every vllm:* metric the installed vLLM registers, with the suffixes Prometheus stores."""
    source = LOGGERS.read_text(encoding="utf-8")
    names = set()
    for m in re.finditer(r'name="(vllm:[a-z0-9_]+)"', source):
        base = m.group(1)
        names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def test_every_vllm_metric_named_in_rules_and_dashboards_is_exported_by_vllm_032():
    exported = _exported_names()
    assert "vllm:num_requests_waiting" in exported and "vllm:prefix_cache_hits_total" in exported
    used = {n for r in alerts.rules() for n in METRIC.findall(r.expr)}
    used |= {n for q in catalogue.dashboard_queries(catalogue.load_dashboard()) for n in METRIC.findall(q.expr)}
    used |= {n for e in catalogue.lab_queries().values() for n in METRIC.findall(e)}
    used |= {m.name for m in catalogue.METRICS}
    assert used and used <= exported, sorted(used - exported)


def test_the_table_has_one_row_per_rule():
    rows = alerts.table()
    assert len(rows) == len(alerts.rules()) and rows[0]["kind"] == "record"
