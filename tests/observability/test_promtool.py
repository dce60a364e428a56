"""promtool on the course's rules: they parse, their unit tests pass, and a wrong rule fails them."""
from __future__ import annotations

import shutil

import yaml

from llmserve.observability import alerts, promtool
from llmserve.observability.prometheus import scrape_config


def test_the_rules_file_passes_promtool_check_rules(promtool_bin):
    checked = promtool.check_rules()
    assert checked.ok, checked.output
    assert f"SUCCESS: {len(alerts.rules())} rules found" in checked.output


def test_the_rules_unit_tests_pass(promtool_bin):
    checked = promtool.run_rule_tests()
    assert checked.ok, checked.output


def _copy_rules(tmp_path, edit) -> None:
    shutil.copy(alerts.rules_test_path(), tmp_path / alerts.rules_test_path().name)
    (tmp_path / alerts.rules_path().name).write_text(edit(alerts.rules_path().read_text()))


def test_a_changed_threshold_fails_the_unit_tests(promtool_bin, tmp_path):
    """The unit tests bite: the TTFT alert at 5 s instead of 2 s no longer fires on a p95 of 4.875 s."""
    _copy_rules(tmp_path, lambda text: text.replace("job:vllm_time_to_first_token_seconds:p95_1m > 2",
                                                    "job:vllm_time_to_first_token_seconds:p95_1m > 5"))
    checked = promtool.run_rule_tests(tmp_path / alerts.rules_test_path().name)
    assert not checked.ok and "VLLMTimeToFirstTokenHigh" in checked.output


def test_a_shorter_for_fails_the_unit_tests(promtool_bin, tmp_path):
    _copy_rules(tmp_path, lambda text: text.replace("== 0\n        for: 15m", "== 0\n        for: 1m"))
    checked = promtool.run_rule_tests(tmp_path / alerts.rules_test_path().name)
    assert not checked.ok and "VLLMReplicaDown" in checked.output


def test_broken_promql_fails_check_rules(promtool_bin, tmp_path):
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: sum(rate(x[1m])\n")
    checked = promtool.check_rules(bad)
    assert not checked.ok and "parse error" in checked.output.lower()


def test_the_labs_scrape_config_passes_promtool_check_config(promtool_bin, tmp_path):
    (tmp_path / "targets").mkdir()
    config = scrape_config(["vllm-qwen25-coder-7b", "vllm-router"], tmp_path / "targets", [alerts.rules_path()])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = promtool.check_config(tmp_path / "prometheus.yml")
    assert checked.ok, checked.output
