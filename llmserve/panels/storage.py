"""Storage chapter panels: the binding explorer and the claim checker.

Used by ``notebooks/storage-lab.ipynb``. Each function returns an ipywidgets
container that shows its result at creation (so the static HTML book shows
the initial state) and shows any :class:`~llmserve.core.errors.CourseError` as a
message in the panel, never as a traceback.
"""
from __future__ import annotations

import copy
import html

import ipywidgets as W

from llmserve import storage
from llmserve.world import manifests
from llmserve.core.errors import CourseError

UNSET = "(unset)"
_CLASS_OPTIONS = [("(unset) — the default class is filled in", UNSET), ('"" — no class', ""),
                  ("standard", "standard"), ("local-path", "local-path"), ("fast-ssd", "fast-ssd")]
_DEFAULT_OPTIONS = [("standard (kind)", "standard"), ("local-path (k3s)", "local-path"),
                    ("none: no default class", None)]
_COLORS = {"binds": "#1a7f37", "pending": "#9a6700", "provisions": "#cf222e", "pending-or-provisions": "#9a6700"}


def _esc(text: str) -> str:
    return html.escape(str(text))


def _verdict_html(verdict: storage.Verdict, pv: dict) -> str:
    color = _COLORS.get(verdict.outcome, "#333")
    name = pv["metadata"]["name"]
    where = f"to {_esc(name)}" if verdict.binds else f"(does not bind to {_esc(name)})"
    head = (f"<div style='font-size:1.1em;color:{color}'><b>{_esc(storage.OUTCOME_WORDS[verdict.outcome])}</b>"
            f" {where}</div>"
            f"<div style='color:#555'>Controller path: {_esc(verdict.path)}; "
            f"claim's class after admission: '{_esc(verdict.claim_class)}'</div>")
    items = "".join(f"<li>✗ {_esc(r)}</li>" for r in verdict.reasons)
    items += "".join(f"<li style='color:#9a6700'>! {_esc(w)}</li>" for w in verdict.warnings)
    return head + (f"<ul style='margin-top:4px'>{items}</ul>" if items else "")


def _error_html(err: CourseError) -> str:
    fix = f"<br><b>Fix:</b> {_esc(err.fix)}" if err.fix else ""
    return f"<div style='color:#cf222e'><b>Input problem:</b> {_esc(err.what)}{fix}</div>"


def binding_explorer(pv: dict | None = None, pvc: dict | None = None) -> W.Widget:
    """Change the claim; see whether it binds to the course's PV and exactly why (not)."""
    pv = pv or storage.course_volume()
    base = pvc or storage.course_claim()
    spec = base["spec"]
    style = {"description_width": "140px"}
    layout = W.Layout(width="480px")
    cls = W.Dropdown(options=_CLASS_OPTIONS, value=spec.get("storageClassName", UNSET) if
                     spec.get("storageClassName", UNSET) in [v for _, v in _CLASS_OPTIONS] else UNSET,
                     description="storageClassName", style=style, layout=layout)
    default = W.Dropdown(options=_DEFAULT_OPTIONS, value="standard", description="cluster default class",
                         style=style, layout=layout)
    size = W.Text(value=str(spec["resources"]["requests"]["storage"]), description="requests.storage",
                  style=style, layout=layout, continuous_update=False)
    modes = W.SelectMultiple(options=list(storage.ACCESS_MODES), value=tuple(spec.get("accessModes", [])),
                             rows=4, description="accessModes", style=style, layout=layout)
    selector = W.Text(value=storage.describe_selector(spec.get("selector")) if spec.get("selector") else "",
                      placeholder="e.g. app.kubernetes.io/component=model-storage", description="selector",
                      style=style, layout=layout, continuous_update=False)
    volume_name = W.Text(value=spec.get("volumeName", ""), placeholder="(empty: let the controller search)",
                         description="volumeName", style=style, layout=layout, continuous_update=False)
    claim_ref = W.Checkbox(value=bool(pv["spec"].get("claimRef")), description="PV reserved by claimRef",
                           style=style, layout=layout, indent=False)
    out = W.HTML()
    yaml_view = W.HTML()

    def claim() -> dict:
        obj = copy.deepcopy(base)
        s = obj["spec"]
        if cls.value == UNSET:
            s.pop("storageClassName", None)
        else:
            s["storageClassName"] = cls.value
        s["resources"]["requests"]["storage"] = size.value.strip()
        s["accessModes"] = list(modes.value)
        sel = storage.parse_selector_text(selector.value)
        if sel:
            s["selector"] = sel
        else:
            s.pop("selector", None)
        if volume_name.value.strip():
            s["volumeName"] = volume_name.value.strip()
        else:
            s.pop("volumeName", None)
        return obj

    def volume() -> dict:
        obj = copy.deepcopy(pv)
        if not claim_ref.value:
            obj["spec"].pop("claimRef", None)
        elif not obj["spec"].get("claimRef"):
            obj["spec"]["claimRef"] = {"namespace": base["metadata"].get("namespace"), "name": base["metadata"]["name"]}
        return obj

    def update(_=None) -> None:
        try:
            c, v = claim(), volume()
            verdict = storage.binding_verdict(v, c, default.value)
            out.value = _verdict_html(verdict, v)
            yaml_view.value = ("<details><summary>the claim as YAML</summary><pre>"
                               + _esc(manifests.to_yaml(c)) + "</pre></details>")
        except CourseError as err:
            out.value = _error_html(err)

    for w in (cls, default, size, modes, selector, volume_name, claim_ref):
        w.observe(update, names="value")
    update()
    pv_text = (f"Volume <code>{_esc(pv['metadata']['name'])}</code>: "
               f"{_esc(pv['spec']['capacity']['storage'])}, {_esc(', '.join(pv['spec']['accessModes']))}, "
               f"class '{_esc(pv['spec'].get('storageClassName', ''))}', labels "
               f"<code>{_esc(storage.describe_selector({'matchLabels': pv['metadata'].get('labels', {})}))}</code>")
    return W.VBox([W.HTML(f"<b>Binding explorer</b> — change the claim. {pv_text}"),
                   W.VBox([cls, default, size, modes, selector, volume_name, claim_ref]),
                   out, yaml_view])


def _report_html(report: storage.Report) -> str:
    color = "#1a7f37" if report.ok else "#cf222e"
    rows = []
    for f in report.findings:
        c = {"error": "#cf222e", "warning": "#9a6700", "ok": "#1a7f37"}[f.level]
        mark = {"error": "✗", "warning": "!", "ok": "✓"}[f.level]
        fix = f"<br><span style='color:#555'>fix: {_esc(f.fix)}</span>" if f.fix else ""
        rows.append(f"<li style='color:{c}'>{mark} {_esc(f.what)}{fix}</li>")
    status = "OK" if report.ok else f"{len(report.errors)} problem(s)"
    return (f"<div style='color:{color}'><b>{_esc(report.subject)}: {status}</b></div>"
            f"<ul>{''.join(rows)}</ul>")


def claim_checker(initial: str | None = None) -> W.Widget:
    """Paste a PersistentVolumeClaim (YAML); see what is wrong with it and how to fix it."""
    text = initial if initial is not None else manifests.path("examples/storage/claim-without-class.yaml").read_text()
    area = W.Textarea(value=text, layout=W.Layout(width="100%", height="260px"))
    default = W.Dropdown(options=_DEFAULT_OPTIONS, value="standard", description="default class",
                         style={"description_width": "90px"}, layout=W.Layout(width="260px"))
    unreserved = "examples/storage/volume-unreserved.yaml"
    volume = W.Dropdown(options=[("model-storage with claimRef (course)", storage.COURSE_PV),
                                 ("model-storage, no claimRef", unreserved)],
                        value=unreserved if initial is None else storage.COURSE_PV, description="volume",
                        style={"description_width": "60px"}, layout=W.Layout(width="330px"))
    button = W.Button(description="Check", button_style="primary")
    out = W.HTML()

    def update(_=None) -> None:
        try:
            out.value = _report_html(storage.check_claim(area.value, pv=volume.value,
                                                         default_storage_class=default.value))
        except CourseError as err:
            out.value = _error_html(err)

    button.on_click(update)
    default.observe(update, names="value")
    volume.observe(update, names="value")
    update()
    return W.VBox([W.HTML("<b>Claim checker</b> — edit the claim's YAML, pick the volume, then press Check."),
                   area, W.HBox([volume, default, button]), out])


def report_view(report: storage.Report) -> W.HTML:
    """A checker report as a coloured list (for notebook cells)."""
    return W.HTML(_report_html(report))
