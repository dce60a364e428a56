"""Presentation of the Service chapter: the selector checker.

Used by ``notebooks/service-lab.ipynb``. Layer: presentation. The learner edits the
Service's selector, its targetPort and its name, and sees at once whether traffic would
reach the vLLM Pods of ``manifests/base/vllm-deployment.yaml`` (the verdict of
:func:`llmserve.service.rules.selector_report`, drawn by the core's
:func:`~llmserve.core.findings.report_html`). The panel shows its verdict at creation, so
the static HTML book shows the initial state; input mistakes are shown as messages, never
as tracebacks.
"""
from __future__ import annotations

import copy

import ipywidgets as W

from llmserve.core.errors import CourseError
from llmserve.core.findings import COLORS, ERROR, OK, Report, error_html, esc, report_html
from llmserve.service import rules
from llmserve.world import manifests


def verdict_html(report: Report) -> str:
    """The checker's answer: one verdict line the learner reads first, then every finding."""
    if report.ok:
        head, colour = ("Traffic reaches the Pods" + (" (with warnings)" if report.warnings else "")), COLORS[OK]
    else:
        n = len(report.errors)
        head, colour = f"No traffic reaches the Pods ({n} problem{'s' * (n != 1)})", COLORS[ERROR]
    return f"<div style='font-size:1.1em;color:{colour}'><b>{esc(head)}</b></div>{report_html(report)}"


def edited_service(base: dict, name: str, selector_text: str, target_port: str) -> dict:
    """A copy of ``base`` with the panel's name, selector and first targetPort."""
    svc = copy.deepcopy(base)
    if name.strip():
        svc["metadata"]["name"] = name.strip()
    svc["spec"]["selector"] = rules.parse_selector(selector_text)
    tp = target_port.strip()
    port = svc["spec"]["ports"][0]
    if not tp:
        port.pop("targetPort", None)
    else:
        port["targetPort"] = int(tp) if tp.isdigit() else tp
    return svc


def selector_checker(service: dict | None = None, deployment: dict | None = None) -> W.Widget:
    """Edit the Service's selector, targetPort and name; see whether it reaches the vLLM Pods."""
    base = service or manifests.load_one("base/vllm-service.yaml")
    dep = deployment or manifests.load_one("base/vllm-deployment.yaml")
    style = {"description_width": "120px"}
    layout = W.Layout(width="560px")
    sel = base["spec"].get("selector") or {}
    name = W.Text(value=base["metadata"]["name"], description="metadata.name", style=style, layout=layout,
                  continuous_update=False)
    selector = W.Text(value=", ".join(f"{k}={v}" for k, v in sel.items()), description="spec.selector",
                      placeholder="key=value, key=value", style=style, layout=layout, continuous_update=False)
    target = W.Text(value=str(base["spec"]["ports"][0].get("targetPort", "")), description="targetPort",
                    placeholder="a port name (http) or number (8000)", style=style, layout=layout,
                    continuous_update=False)
    pods = rules.pod_shape(dep)
    ports = ", ".join(f"{n or '(unnamed)'}={p}" for _, n, p, _ in rules.container_ports(pods))
    context = W.HTML(f"<div style='color:#555'>The Pods of {esc(dep['metadata']['name'])} carry "
                     f"<code>{esc(rules.labels_text(pods.labels))}</code>; their container ports: "
                     f"<code>{esc(ports)}</code>.</div>")
    out = W.HTML()

    def refresh(*_):
        try:
            svc = edited_service(base, name.value, selector.value, target.value)
            out.value = verdict_html(rules.selector_report(svc, dep))
        except CourseError as err:
            out.value = error_html(err)

    for box in (name, selector, target):
        box.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HTML("<b>Selector checker</b>: does the Service reach the vLLM Pods?"), context,
                   name, selector, target, out])
