"""Presentation of the Deployment chapter: the ipywidgets calculators and the live progress line.

Used by ``notebooks/deployment-lab.ipynb``; :func:`progress_line` is the course's one
label-plus-progress widget, reused by the other labs' waits (a Ready endpoint, a claim
binding). Layer: presentation.

* :func:`probe_panel`: does the startupProbe give vLLM time to load its weights?
  (:func:`llmserve.deployment.budgets.probe_budget`)
* :func:`memory_panel`: would the container be OOM-killed?
  (:func:`llmserve.deployment.budgets.memory_budget`)
* :func:`rollout_progress`: the progress line for
  :func:`llmserve.deployment.live.follow_rollout`, coloured by the diagnosis.

Both calculators start from the values in ``manifests/base/vllm-deployment.yaml`` and render
their result at creation (the static HTML book shows it). The inputs are text boxes, so a
learner can type anything: a value that is not a valid number shows the
:class:`~llmserve.core.errors.CourseError` message in the panel, never a traceback. The
``*_html`` functions hold everything but the widgets, so the tests call them directly.
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as w

from llmserve.core.errors import CourseError
from llmserve.core.findings import COLORS, ERROR, OK, error_html, esc
from llmserve.deployment import budgets
from llmserve.deployment.diagnose import FAILING, READY, STUCK, WAITING
from llmserve.world import manifests

_STYLE = {"description_width": "230px"}
_LAYOUT = w.Layout(width="380px")
_ERROR_TITLE = "Cannot compute this"


def _result_html(ok: bool, text: str, rows: list[tuple[str, str]]) -> str:
    colour = COLORS[OK] if ok else COLORS[ERROR]
    table = "".join(f"<tr><td style='padding-right:1em'>{esc(k)}</td><td><b>{esc(v)}</b></td></tr>"
                    for k, v in rows)
    return (f'<div style="border-left:4px solid {colour};padding:6px 10px">'
            f"<table>{table}</table><p>{esc(text)}</p></div>")


def probe_html(initial_delay_s, period_s, failure_threshold, timeout_s, weights_gib, disk_mb_s, overhead_s) -> str:
    """The probe calculator's output; raises CourseError on invalid input."""
    b = budgets.probe_budget(initial_delay_s, period_s, failure_threshold, timeout_s,
                             weights_gib=weights_gib, disk_mb_s=disk_mb_s, overhead_s=overhead_s)
    rows = [("start-up window (probe)", f"{b.window_s:.0f} s"),
            ("reading the weights (estimate)", f"{b.load_s:.0f} s"),
            ("engine start (your estimate)", f"{b.overhead_s:.0f} s"),
            ("failureThreshold for 1.5× headroom", str(b.suggested_failure_threshold))]
    return _result_html(b.fits, b.verdict, rows)


def memory_html(limit_gib, process_gib, shm_used_gib, shm_size_limit_gib, weights_gib) -> str:
    """The memory calculator's output; raises CourseError on invalid input."""
    b = budgets.memory_budget(limit_gib, process_gib, shm_used_gib, shm_size_limit_gib, weights_gib)
    rows = [("limits.memory", f"{b.limit_gib:g} GiB"),
            ("processes + /dev/shm (cannot be reclaimed)", f"{b.pinned_gib:g} GiB"),
            ("headroom", f"{b.headroom_gib:g} GiB")]
    return _result_html(not b.oom, b.verdict, rows)


def _panel(title: str, fields: dict[str, tuple[str, object]], compute) -> w.VBox:
    boxes = {k: w.Text(value=str(v), description=label, style=_STYLE, layout=_LAYOUT)
             for k, (label, v) in fields.items()}
    out = w.HTML()

    def refresh(*_):
        try:
            out.value = compute(**{k: b.value.strip() for k, b in boxes.items()})
        except CourseError as err:
            out.value = error_html(err, _ERROR_TITLE)

    for b in boxes.values():
        b.observe(refresh, names="value")
    refresh()
    return w.VBox([w.HTML(f"<b>{esc(title)}</b>"), *boxes.values(), out])


def _manifest_values(deployment: dict | None) -> dict:
    return budgets.budgets_from_deployment(deployment or manifests.load_one("base/vllm-deployment.yaml"))


def probe_panel(deployment: dict | None = None, weights_gib: float = budgets.AWQ_WEIGHT_FILES_GIB,
                disk_mb_s: float = 200.0, overhead_s: float = budgets.DEFAULT_ENGINE_OVERHEAD_S) -> w.VBox:
    """Probe-budget calculator, starting from the Deployment's startupProbe."""
    try:
        vals = _manifest_values(deployment)
    except CourseError as err:
        return w.VBox([w.HTML(error_html(err, _ERROR_TITLE))])
    fields = {
        "initial_delay_s": ("startupProbe initialDelaySeconds", int(vals["initial_delay_s"])),
        "period_s": ("startupProbe periodSeconds", int(vals["period_s"])),
        "failure_threshold": ("startupProbe failureThreshold", int(vals["failure_threshold"])),
        "timeout_s": ("startupProbe timeoutSeconds", int(vals["timeout_s"])),
        "weights_gib": ("weights to read (GiB)", weights_gib),
        "disk_mb_s": ("disk read speed (MB/s)", disk_mb_s),
        "overhead_s": ("engine start besides reading (s)", overhead_s),
    }
    return _panel("Probe budget: does vLLM start before the probe gives up?", fields, probe_html)


def memory_panel(deployment: dict | None = None, process_gib: float = budgets.DEFAULT_PROCESS_GIB,
                 weights_gib: float = budgets.AWQ_WEIGHT_FILES_GIB) -> w.VBox:
    """Memory-budget calculator, starting from the Deployment's limit and /dev/shm sizeLimit."""
    try:
        vals = _manifest_values(deployment)
    except CourseError as err:
        return w.VBox([w.HTML(error_html(err, _ERROR_TITLE))])
    fields = {
        "limit_gib": ("limits.memory (GiB)", f"{vals['limit_gib']:g}"),
        "process_gib": ("vLLM processes (GiB, your estimate)", process_gib),
        "shm_used_gib": ("/dev/shm in use (GiB)", f"{vals['shm_size_limit_gib']:g}"),
        "shm_size_limit_gib": ("/dev/shm sizeLimit (GiB)", f"{vals['shm_size_limit_gib']:g}"),
        "weights_gib": ("weight files read (GiB)", weights_gib),
    }
    return _panel("Memory budget: would the container be OOM-killed?", fields, memory_html)


# -- the one label-plus-progress widget of the course ----------------------------------------
def progress_line(waiting_text: str = "waiting for the first look…",
                  colour_of: Callable[[object], str] | None = None) -> tuple[w.HTML, Callable[[float, object], None]]:
    """A one-line display and the ``progress(elapsed_s, status)`` callback that updates it.

    Every wait of the course (:func:`llmserve.core.waiting.wait_until`) reports through such
    a callback; ``colour_of(status)`` picks the bar's colour (grey by default). Multi-line
    statuses keep their line breaks.
    """
    out = w.HTML(f"<i>{esc(waiting_text)}</i>")

    def progress(elapsed: float, status) -> None:
        colour = colour_of(status) if colour_of else COLORS["skip"]
        out.value = (f'<div style="border-left:4px solid {colour};padding:4px 8px">'
                     f"<b>{elapsed:4.0f} s</b> — {esc(status).replace(chr(10), '<br>')}</div>")

    return out, progress


_STATE_COLOURS = {READY: COLORS[OK], WAITING: "#2471a3", STUCK: COLORS[ERROR], FAILING: COLORS[ERROR]}


def rollout_progress() -> tuple[w.HTML, Callable[[float, object], None]]:
    """The progress line for a rollout: coloured by the diagnosis's state."""
    return progress_line(colour_of=lambda d: _STATE_COLOURS.get(getattr(d, "state", ""), COLORS["skip"]))
