"""Small fixes to the HTML pages Jupyter Book 1 emits (a local Sphinx extension).

* sphinx-thebe registers its inline configuration script twice, which throws
  "Identifier 'THEBE_JS_URL' has already been declared" in every page's console:
  keep one copy of each identical script.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
