"""Service chapter panel: the selector checker.

Used by ``notebooks/service-lab.ipynb``. The learner edits the Service's
selector, its targetPort and its name, and sees at once whether traffic would
reach the vLLM Pods of ``manifests/base/vllm-deployment.yaml`` (the verdict of
:func:`llmserve.services.selector_report`). The panel shows its verdict at
creation, so the static HTML book shows the initial state; input mistakes are
shown as messages, never as tracebacks.
"""
from __future__ import annotations

import copy
import html

import ipywidgets as W

from llmserve import services
from llmserve.world import manifests
from llmserve.core.errors import CourseError

_COLORS = {services.OK: "#1a7f37", services.WARNING: "#9a6700", services.ERROR: "#cf222e"}
_MARKS = {services.OK: "✓", services.WARNING: "!", services.ERROR: "✗"}


def _esc(text) -> str:
    return html.escape(str(text))


def report_html(report: services.Report) -> str:
    """A Report as HTML: a verdict line, then one coloured line per finding."""
    if report.errors:
        head, color = f"No traffic reaches the Pods ({len(report.errors)} problem(s))", _COLORS["error"]
    elif report.warnings:
        head, color = "Traffic reaches the Pods (with warnings)", _COLORS["ok"]
    else:
        head, color = "Traffic reaches the Pods", _COLORS["ok"]
    items = []
    for f in report.findings:
        fix = f"<br><span style='color:#555'><b>Fix:</b> {_esc(f.fix)}</span>" if f.fix else ""
        items.append(f"<li style='color:{_COLORS[f.level]}'>{_MARKS[f.level]} <b>{_esc(f.check)}</b>: "
                     f"{_esc(f.message)}{fix}</li>")
    return (f"<div style='font-size:1.1em;color:{color}'><b>{_esc(head)}</b></div>"
            f"<div style='color:#555'>{_esc(report.subject)}</div>"
            f"<ul style='margin-top:4px'>{''.join(items)}</ul>")


def _error_html(err: CourseError) -> str:
    fix = f"<br><b>Fix:</b> {_esc(err.fix)}" if err.fix else ""
    return f"<div style='color:#cf222e'><b>Input problem:</b> {_esc(err.what)}{fix}</div>"


def edited_service(base: dict, name: str, selector_text: str, target_port: str) -> dict:
    """A copy of ``base`` with the panel's name, selector and first targetPort."""
    svc = copy.deepcopy(base)
    if name.strip():
        svc["metadata"]["name"] = name.strip()
    svc["spec"]["selector"] = services.parse_selector(selector_text)
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
    labels = services.pod_shape(dep).labels
    ports = ", ".join(f"{n or '(unnamed)'}={p}" for _, n, p, _ in services.container_ports(services.pod_shape(dep)))
    context = W.HTML(f"<div style='color:#555'>The Pods of {_esc(dep['metadata']['name'])} carry "
                     f"<code>{_esc(services._labels_text(labels))}</code>; their container ports: "
                     f"<code>{_esc(ports)}</code>.</div>")
    out = W.HTML()

    def refresh(*_):
        try:
            svc = edited_service(base, name.value, selector.value, target.value)
            out.value = report_html(services.selector_report(svc, dep))
        except CourseError as err:
            out.value = _error_html(err)

    for w in (name, selector, target):
        w.observe(refresh, names="value")
    refresh()
    return W.VBox([W.HTML("<b>Selector checker</b>: does the Service reach the vLLM Pods?"), context,
                   name, selector, target, out])
