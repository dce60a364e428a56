"""Only the static book says a panel needs a live kernel: book/_ext/course_html.py adds the note.

The note is put into the built pages before every widget view, so the notebooks
themselves (what JupyterLab shows) need no such sentence.
"""
from __future__ import annotations

import importlib.util

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

from tests.support import REPO


def _extension():
    spec = importlib.util.spec_from_file_location("course_html", REPO / "book" / "_ext" / "course_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page_with(*outputs: str) -> nodes.document:
    doc = new_document("lab", get_default_settings(Parser))
    for html in outputs:
        cell = nodes.container(classes=["cell_output"])
        cell += nodes.raw("", html, format="html")
        doc += cell
    return doc


def test_every_widget_view_gets_the_note_and_nothing_else_does():
    ext = _extension()
    view = f'{ext.WIDGET_VIEW_START}{{"model_id": "abc"}}</script>'
    doc = _page_with(view, "<p>a table</p>", view)
    ext.note_static_panels(None, doc, "notebooks/storage-lab")
    cells = list(doc.findall(nodes.container))
    notes = [list(c.findall(nodes.note)) for c in cells]
    assert [len(n) for n in notes] == [1, 0, 1]
    first = cells[0]
    assert isinstance(first[0], nodes.note) and isinstance(first[1], nodes.raw), "the note comes before the panel"
    text = first[0].astext()
    assert "needs a live kernel" in text and "bash scripts/lab.sh" in text
    assert ext.STATIC_PANEL_CLASS in first[0]["classes"]


def test_the_extension_registers_the_note():
    ext = _extension()
    connected = []

    class App:
        def connect(self, event, handler, priority=500):
            connected.append((event, handler))

    ext.setup(App())
    assert ("doctree-resolved", ext.note_static_panels) in connected
