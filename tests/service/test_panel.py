"""service.panel: the selector checker renders at creation, reacts, never shows a traceback."""
from __future__ import annotations

from llmserve.service import panel, rules
from llmserve.world import manifests


def _widgets(box):
    name, selector, target, out = box.children[2], box.children[3], box.children[4], box.children[5]
    return name, selector, target, out


def test_initial_verdict_is_rendered():
    name, selector, target, out = _widgets(panel.selector_checker())
    assert selector.value == "app.kubernetes.io/name=vllm-qwen25-coder-7b"
    assert target.value == "http"
    assert "Traffic reaches the Pods" in out.value


def test_wrong_selector_and_port_and_name():
    name, selector, target, out = _widgets(panel.selector_checker())
    selector.value = "app=vllm"
    assert "No traffic reaches the Pods" in out.value and "app=vllm" in out.value
    selector.value = "app.kubernetes.io/name=vllm-qwen25-coder-7b"
    target.value = "8080"
    assert "8080" in out.value and "No traffic" in out.value
    target.value = "http"
    name.value = "vllm"
    # The course's Deployment turns service links off, which defuses the name...
    assert "enableServiceLinks: false" in out.value and "No traffic" not in out.value
    # ...and with the Kubernetes default (links on) the collision is reported.
    dep = manifests.load_one("base/vllm-deployment.yaml")
    dep["spec"]["template"]["spec"].pop("enableServiceLinks", None)
    name, selector, target, out = _widgets(panel.selector_checker(deployment=dep))
    name.value = "vllm"
    assert "VLLM_PORT" in out.value


def test_bad_input_is_a_message_not_a_traceback():
    name, selector, target, out = _widgets(panel.selector_checker())
    selector.value = "app"
    assert "Input problem" in out.value and "Traceback" not in out.value


def test_verdict_counts_problems_and_keeps_every_finding():
    bad = manifests.load_one("examples/service/wrong-selector.yaml")
    html = panel.verdict_html(rules.selector_report(bad, manifests.load_one("base/vllm-deployment.yaml")))
    assert "No traffic reaches the Pods (1 problem)" in html
    assert "service selector" in html and "targetPort" in html and "Fix:" in html
