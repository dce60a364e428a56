"""The storage chapter's panels: the binding explorer and the claim checker.

Presentation (ipywidgets) for ``notebooks/storage-lab.ipynb``. Each function returns a
widget that shows its result at creation (so the static HTML book shows the initial
state) and shows any :class:`~llmserve.core.errors.CourseError` as a message in the
panel, never as a traceback.
"""
from __future__ import annotations

import copy

import ipywidgets as W

from llmserve.core.errors import CourseError
from llmserve.core.findings import COLORS, ERROR, OK, WARNING, error_html, esc, report_html
from llmserve.core.names import system
from llmserve.storage import checks, live, rules
from llmserve.world import manifests

UNSET = "(unset)"
_CLASS_OPTIONS = [("(unset) — the default class is filled in", UNSET), ('"" — no class', ""),
                  ("standard", "standard"), ("local-path", "local-path"), ("fast-ssd", "fast-ssd")]
_DEFAULT_OPTIONS = [("standard (kind)", "standard"), ("local-path (k3s)", "local-path"),
                    ("none: no default class", None)]
_OUTCOME_COLORS = {"binds": COLORS[OK], "pending": COLORS[WARNING], "provisions": COLORS[ERROR],
                   "pending-or-provisions": COLORS[WARNING]}
#: The example the claim checker opens with, and the volume it is checked against first.
FIRST_EXAMPLE = "claim-without-class"
UNRESERVED_VOLUME = "volume-unreserved"


def verdict_html(verdict: rules.Verdict, pv: dict) -> str:
    """A binding verdict as the explorer shows it: the outcome, the controller path, every reason."""
    color = _OUTCOME_COLORS.get(verdict.outcome, "#333")
    name = pv["metadata"]["name"]
    where = f"to {esc(name)}" if verdict.binds else f"(does not bind to {esc(name)})"
    head = (f"<div style='font-size:1.1em;color:{color}'><b>{esc(rules.OUTCOME_WORDS[verdict.outcome])}</b>"
            f" {where}</div>"
            f"<div style='color:#555'>Controller path: {esc(verdict.path)}; "
            f"claim's class after admission: '{esc(verdict.claim_class)}'</div>")
    items = "".join(f"<li>✗ {esc(r)}</li>" for r in verdict.reasons)
    items += "".join(f"<li style='color:{COLORS[WARNING]}'>! {esc(w)}</li>" for w in verdict.warnings)
    return head + (f"<ul style='margin-top:4px'>{items}</ul>" if items else "")


def _volume_summary(pv: dict) -> str:
    labels = rules.describe_selector({"matchLabels": pv["metadata"].get("labels", {})})
    return (f"Volume <code>{esc(pv['metadata']['name'])}</code>: "
            f"{esc(pv['spec']['capacity']['storage'])}, {esc(', '.join(pv['spec']['accessModes']))}, "
            f"class '{esc(pv['spec'].get('storageClassName', ''))}', labels <code>{esc(labels)}</code>")


def _claim_controls(spec: dict, pv: dict) -> dict[str, W.Widget]:
    """One input per field of the claim the binding depends on, set to the course's values."""
    style = {"description_width": "140px"}
    layout = W.Layout(width="480px")
    known = [v for _, v in _CLASS_OPTIONS]
    cls = spec.get("storageClassName", UNSET)
    return {
        "class": W.Dropdown(options=_CLASS_OPTIONS, value=cls if cls in known else UNSET,
                            description="storageClassName", style=style, layout=layout),
        "default": W.Dropdown(options=_DEFAULT_OPTIONS, value="standard", description="cluster default class",
                              style=style, layout=layout),
        "size": W.Text(value=str(spec["resources"]["requests"]["storage"]), description="requests.storage",
                       style=style, layout=layout, continuous_update=False),
        "modes": W.SelectMultiple(options=list(rules.ACCESS_MODES), value=tuple(spec.get("accessModes", [])),
                                  rows=4, description="accessModes", style=style, layout=layout),
        "selector": W.Text(value=rules.describe_selector(spec.get("selector")) if spec.get("selector") else "",
                           placeholder="e.g. app.kubernetes.io/component=model-storage", description="selector",
                           style=style, layout=layout, continuous_update=False),
        "volume_name": W.Text(value=spec.get("volumeName", ""), placeholder="(empty: let the controller search)",
                              description="volumeName", style=style, layout=layout, continuous_update=False),
        "claim_ref": W.Checkbox(value=bool(pv["spec"].get("claimRef")), description="PV reserved by claimRef",
                                style=style, layout=layout, indent=False),
    }


def _edited_claim(base: dict, c: dict[str, W.Widget]) -> dict:
    """The course's claim with the fields the controls set."""
    obj = copy.deepcopy(base)
    s = obj["spec"]
    if c["class"].value == UNSET:
        s.pop("storageClassName", None)
    else:
        s["storageClassName"] = c["class"].value
    s["resources"]["requests"]["storage"] = c["size"].value.strip()
    s["accessModes"] = list(c["modes"].value)
    sel = rules.parse_selector_text(c["selector"].value)
    if sel:
        s["selector"] = sel
    else:
        s.pop("selector", None)
    if c["volume_name"].value.strip():
        s["volumeName"] = c["volume_name"].value.strip()
    else:
        s.pop("volumeName", None)
    return obj


def _edited_volume(pv: dict, base: dict, reserved: bool) -> dict:
    """The course's volume, with or without the claimRef that reserves it for the claim."""
    obj = copy.deepcopy(pv)
    if not reserved:
        obj["spec"].pop("claimRef", None)
    elif not obj["spec"].get("claimRef"):
        obj["spec"]["claimRef"] = {"namespace": base["metadata"].get("namespace"), "name": base["metadata"]["name"]}
    return obj


def binding_explorer(pv: dict | None = None, pvc: dict | None = None) -> W.Widget:
    """Change the claim; see whether it binds to the course's PV and exactly why (not)."""
    pv = pv or live.course_volume()
    base = pvc or live.course_claim()
    controls = _claim_controls(base["spec"], pv)
    out = W.HTML()
    yaml_view = W.HTML()

    def update(_=None) -> None:
        try:
            claim = _edited_claim(base, controls)
            volume = _edited_volume(pv, base, controls["claim_ref"].value)
            out.value = verdict_html(rules.binding_verdict(volume, claim, controls["default"].value), volume)
            yaml_view.value = ("<details><summary>the claim as YAML</summary><pre>"
                               + esc(manifests.to_yaml(claim)) + "</pre></details>")
        except CourseError as err:
            out.value = error_html(err)

    for w in controls.values():
        w.observe(update, names="value")
    update()
    return W.VBox([W.HTML(f"<b>Binding explorer</b> — change the claim. {_volume_summary(pv)}"),
                   W.VBox(list(controls.values())), out, yaml_view])


def claim_checker(initial: str | None = None) -> W.Widget:
    """Paste a PersistentVolumeClaim (YAML); see what is wrong with it and how to fix it."""
    text = initial if initial is not None else live.example_text(FIRST_EXAMPLE)
    area = W.Textarea(value=text, layout=W.Layout(width="100%", height="260px"))
    default = W.Dropdown(options=_DEFAULT_OPTIONS, value="standard", description="default class",
                         style={"description_width": "90px"}, layout=W.Layout(width="260px"))
    volumes = {"course": live.course_volume(), "unreserved": live.example(UNRESERVED_VOLUME)}
    volume = W.Dropdown(options=[(f"{system().pv} with claimRef (course)", "course"),
                                 (f"{system().pv}, no claimRef", "unreserved")],
                        value="unreserved" if initial is None else "course", description="volume",
                        style={"description_width": "60px"}, layout=W.Layout(width="330px"))
    button = W.Button(description="Check", button_style="primary")
    out = W.HTML()

    def update(_=None) -> None:
        try:
            claim = live.read_object(area.value, "PersistentVolumeClaim")
            out.value = report_html(checks.check_claim(claim, volumes[volume.value],
                                                       default_storage_class=default.value))
        except CourseError as err:
            out.value = error_html(err)

    button.on_click(update)
    default.observe(update, names="value")
    volume.observe(update, names="value")
    update()
    return W.VBox([W.HTML("<b>Claim checker</b> — edit the claim's YAML, pick the volume, then press Check."),
                   area, W.HBox([volume, default, button]), out])

