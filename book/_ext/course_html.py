"""Small fixes to the HTML pages Jupyter Book 1 emits (a local Sphinx extension).

* sphinx-thebe registers its inline configuration script twice, which throws
  "Identifier 'THEBE_JS_URL' has already been declared" in every page's console:
  keep one copy of each identical script.
* A panel (an ipywidgets output) in the static book shows the state it was saved
  in and cannot react: put a note saying so before each one. The note exists only
  in the built pages, so a lab opened in JupyterLab, where the panels react,
  never says it needs a live kernel.
"""
from __future__ import annotations

from docutils import nodes

#: How myst-nb writes a widget view into the page (myst_nb/core/render.py, render_widget_view).
WIDGET_VIEW_START = '<script type="application/vnd.jupyter.widget-view+json">'
STATIC_PANEL_CLASS = "course-static-panel"


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        key = (getattr(script, "filename", None) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    scripts[:] = kept


def static_panel_note() -> nodes.note:
    text = nodes.paragraph("", "")
    text += nodes.strong("", "This panel needs a live kernel.")
    text += nodes.Text(" Here it shows its initial state; to change its controls, open the lab in "
                       "JupyterLab (")
    text += nodes.literal("", "bash scripts/lab.sh")
    text += nodes.Text(", or the workshop's hub).")
    return nodes.note("", text, classes=[STATIC_PANEL_CLASS])


def note_static_panels(app, doctree, docname) -> None:
    """Insert :func:`static_panel_note` before every widget view of the page."""
    for raw in list(doctree.findall(nodes.raw)):
        if raw.get("format") == "html" and raw.astext().startswith(WIDGET_VIEW_START):
            raw.parent.insert(raw.parent.index(raw), static_panel_note())


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("doctree-resolved", note_static_panels)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
