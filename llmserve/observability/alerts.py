"""Pure rules of the observability chapter: the course's recording rules and alerts, as data.

Used by book/observability.md, notebooks/observability-lab.ipynb (the lab's Prometheus loads the
rules file), notebooks/full-stack-lab.ipynb and the tests (which run ``promtool`` on the same
file). Layer: pure rules (reads the manifests through the core; no I/O beyond that).

The rules live once, in ``manifests/components/observability/rules/vllm.rules.yml`` (a plain
Prometheus rules file); ``prometheus-rule.yaml`` beside it carries the same groups as a
``PrometheusRule`` for the Prometheus Operator, and :func:`prometheus_rule` builds that object
from the file so a test can compare them. The engines' ``job`` label is the Pods'
``app.kubernetes.io/name`` (the PodMonitor's ``jobLabel``): :func:`engine_job` reads it from the
PodMonitor, so the lab names its scrape job the way the cluster does.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmserve.core.errors import ManifestError
from llmserve.core.manifest_files import load_one, path

#: Where the chapter's monitoring objects live, relative to manifests/.
COMPONENT = "components/observability"
RULES_FILE = f"{COMPONENT}/rules/vllm.rules.yml"
RULES_TEST_FILE = f"{COMPONENT}/rules/vllm.rules.test.yml"
PROMETHEUS_RULE = f"{COMPONENT}/prometheus-rule.yaml"
POD_MONITOR = f"{COMPONENT}/podmonitor-vllm.yaml"
ROUTER_MONITOR = f"{COMPONENT}/podmonitor-router.yaml"


@dataclass(frozen=True)
class Rule:
    """One rule of the file: a recording rule (``record``) or an alert (``alert``)."""

    group: str
    name: str
    kind: str            # "record" or "alert"
    expr: str
    for_: str = ""
    severity: str = ""
    summary: str = ""

    @property
    def is_alert(self) -> bool:
        return self.kind == "alert"


def rules_path() -> Path:
    return path(RULES_FILE)


def rules_test_path() -> Path:
    return path(RULES_TEST_FILE)


def rule_groups(text: str | None = None) -> list[dict]:
    """The ``groups`` of the rules file (or of ``text``), as Prometheus reads them."""
    source = text if text is not None else rules_path().read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(source) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"The rules file is not valid YAML: {exc}", f"Fix {RULES_FILE}.") from exc
    groups = data.get("groups")
    if not isinstance(groups, list) or not groups:
        raise ManifestError(f"{RULES_FILE} has no rule groups.", "A rules file is `groups: [{name, rules}]`.")
    return groups


def rules(groups: list[dict] | None = None) -> list[Rule]:
    """Every rule, in file order."""
    found = []
    for group in groups if groups is not None else rule_groups():
        for r in group.get("rules") or []:
            kind = "alert" if "alert" in r else "record"
            found.append(Rule(group=group["name"], name=r[kind], kind=kind, expr=" ".join(str(r["expr"]).split()),
                              for_=str(r.get("for", "")), severity=(r.get("labels") or {}).get("severity", ""),
                              summary=(r.get("annotations") or {}).get("summary", "")))
    return found


def recording_rules() -> list[Rule]:
    return [r for r in rules() if not r.is_alert]


def alert_rules() -> list[Rule]:
    return [r for r in rules() if r.is_alert]


def find(name: str) -> Rule:
    """The rule (recording or alert) called ``name``."""
    for r in rules():
        if r.name == name:
            return r
    raise ManifestError(f"No rule named {name!r} in {RULES_FILE}.",
                        f"Use one of: {', '.join(r.name for r in rules())}.")


def prometheus_rule(groups: list[dict] | None = None, name: str = "vllm-course") -> dict:
    """The same groups as a Prometheus Operator ``PrometheusRule`` (metadata as committed)."""
    committed = load_one(PROMETHEUS_RULE)
    obj = copy.deepcopy(committed)
    obj["metadata"]["name"] = name
    obj["spec"] = {"groups": copy.deepcopy(groups if groups is not None else rule_groups())}
    return obj


def job_of(monitor_file: str = POD_MONITOR) -> str:
    """The ``job`` label of a PodMonitor's series: its ``jobLabel``, read off its selector."""
    monitor = load_one(monitor_file)
    label = monitor["spec"].get("jobLabel")
    labels = monitor["spec"]["selector"].get("matchLabels") or {}
    if not label or label not in labels:
        raise ManifestError(f"{monitor_file}: jobLabel {label!r} is not one of the selector's labels.",
                            "Set spec.jobLabel to a label the selector matches (app.kubernetes.io/name).")
    return labels[label]


def engine_job() -> str:
    """The engines' ``job`` (the vLLM Pods' app.kubernetes.io/name): what the rules and the lab use."""
    return job_of(POD_MONITOR)


def router_job() -> str:
    """The router's ``job`` (its Pods' app.kubernetes.io/name)."""
    return job_of(ROUTER_MONITOR)


def table(rule_list: list[Rule] | None = None) -> list[dict]:
    """One plain row per rule (for a notebook table): name, kind, for, severity, expression."""
    return [{"name": r.name, "kind": r.kind, "for": r.for_ or "—", "severity": r.severity or "—", "expr": r.expr}
            for r in (rule_list if rule_list is not None else rules())]
