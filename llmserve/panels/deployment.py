"""ipywidgets panels of the Deployment chapter (notebooks/deployment-lab.ipynb), layer 3.

* :func:`probe_panel`: does the startupProbe give vLLM time to load its
  weights? (:func:`llmserve.workloads.probe_budget`)
* :func:`memory_panel`: would the container be OOM-killed?
  (:func:`llmserve.workloads.memory_budget`)
* :func:`rollout_progress`: a one-line live display for
  :meth:`llmserve.world.cluster.Cluster.follow_rollout`.

Both calculators start from the values in ``manifests/base/vllm-deployment.yaml``
and render their result at creation (the static HTML book shows it). The
inputs are text boxes, so a learner can type anything: a value that is not a
valid number shows the :class:`~llmserve.core.errors.CourseError` message in the
panel, never a traceback. The ``*_html`` functions hold everything but the
widgets, so the tests call them directly.
"""
from __future__ import annotations

import html

import ipywidgets as w

from llmserve import workloads
from llmserve.world import manifests
from llmserve.core.errors import CourseError

_STYLE = {"description_width": "230px"}
_LAYOUT = w.Layout(width="380px")

#: The weights vLLM reports after loading the AWQ build (/work/shared/facts.md: "about 5.3 GiB").
AWQ_WEIGHTS_GIB = 5.3


def _error_html(err: CourseError) -> str:
    fix = f"<br><b>Fix:</b> {html.escape(err.fix)}" if err.fix else ""
    return (f'<div style="border-left:4px solid #c0392b;padding:6px 10px;background:#fdecea">'
            f"<b>Cannot compute this:</b> {html.escape(err.what)}{fix}</div>")


def _result_html(ok: bool, text: str, rows: list[tuple[str, str]]) -> str:
    colour = "#1e8449" if ok else "#c0392b"
    table = "".join(f"<tr><td style='padding-right:1em'>{html.escape(k)}</td><td><b>{html.escape(v)}</b></td></tr>"
                    for k, v in rows)
    return (f'<div style="border-left:4px solid {colour};padding:6px 10px">'
            f"<table>{table}</table><p>{html.escape(text)}</p></div>")


def probe_html(initial_delay_s, period_s, failure_threshold, timeout_s, weights_gib, disk_mb_s, overhead_s) -> str:
    """The probe calculator's output; raises CourseError on invalid input."""
    b = workloads.probe_budget(initial_delay_s, period_s, failure_threshold, timeout_s,
                               weights_gib=weights_gib, disk_mb_s=disk_mb_s, overhead_s=overhead_s)
    rows = [("start-up window (probe)", f"{b.window_s:.0f} s"),
            ("reading the weights (estimate)", f"{b.load_s:.0f} s"),
            ("engine start (your estimate)", f"{b.overhead_s:.0f} s"),
            ("failureThreshold for 1.5× headroom", str(b.suggested_failure_threshold))]
    return _result_html(b.fits, b.verdict, rows)


def memory_html(limit_gib, process_gib, shm_used_gib, shm_size_limit_gib, weights_gib) -> str:
    """The memory calculator's output; raises CourseError on invalid input."""
    b = workloads.memory_budget(limit_gib, process_gib, shm_used_gib, shm_size_limit_gib, weights_gib)
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
            out.value = _error_html(err)

    for b in boxes.values():
        b.observe(refresh, names="value")
    refresh()
    return w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), *boxes.values(), out])


def probe_panel(deployment: dict | None = None, weights_gib: float = AWQ_WEIGHTS_GIB, disk_mb_s: float = 200.0,
                overhead_s: float = workloads.DEFAULT_ENGINE_OVERHEAD_S) -> w.VBox:
    """Probe-budget calculator, starting from the Deployment's startupProbe."""
    try:
        vals = workloads.budgets_from_deployment(deployment or manifests.load_one("base/vllm-deployment.yaml"))
    except CourseError as err:
        return w.VBox([w.HTML(_error_html(err))])
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


def memory_panel(deployment: dict | None = None, process_gib: float = workloads.DEFAULT_PROCESS_GIB,
                 weights_gib: float = AWQ_WEIGHTS_GIB) -> w.VBox:
    """Memory-budget calculator, starting from the Deployment's limit and /dev/shm sizeLimit."""
    try:
        vals = workloads.budgets_from_deployment(deployment or manifests.load_one("base/vllm-deployment.yaml"))
    except CourseError as err:
        return w.VBox([w.HTML(_error_html(err))])
    fields = {
        "limit_gib": ("limits.memory (GiB)", f"{vals['limit_gib']:g}"),
        "process_gib": ("vLLM processes (GiB, your estimate)", process_gib),
        "shm_used_gib": ("/dev/shm in use (GiB)", f"{vals['shm_size_limit_gib']:g}"),
        "shm_size_limit_gib": ("/dev/shm sizeLimit (GiB)", f"{vals['shm_size_limit_gib']:g}"),
        "weights_gib": ("weight files read (GiB)", weights_gib),
    }
    return _panel("Memory budget: would the container be OOM-killed?", fields, memory_html)


def rollout_progress() -> tuple[w.HTML, object]:
    """A display and a ``progress(elapsed_s, diagnosis)`` callback that updates it."""
    out = w.HTML("<i>waiting for the first look…</i>")
    colours = {"ready": "#1e8449", "waiting": "#2471a3", "stuck": "#c0392b", "failing": "#c0392b"}

    def progress(elapsed: float, diagnosis) -> None:
        colour = colours.get(getattr(diagnosis, "state", ""), "#555")
        out.value = (f'<div style="border-left:4px solid {colour};padding:4px 8px">'
                     f"<b>{elapsed:4.0f} s</b> — {html.escape(str(diagnosis)).replace(chr(10), '<br>')}</div>")

    return out, progress
