"""Presentation: the API-key chapter's tables as HTML (the route table, the two probe runs side by side).

Used by the API-key lab (notebooks/api-key-lab.ipynb); the book page shows the same
route table. Plain strings, so the HTML book and a live notebook show the same thing.
"""
from __future__ import annotations

from llmserve.core.findings import COLORS, ERROR, OK, WARNING, esc
from llmserve.security import checks, routes

_CELL = "padding:2px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th style='{_CELL}'>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table style='border-collapse:collapse;font-size:90%'><tr>{th}</tr>{body}</table>"


def routes_html() -> str:
    """vLLM 0.32's routes: kind, path, methods, whether the key is asked, what it does."""
    rows = []
    for r in routes.table_rows():
        color = COLORS[OK] if r["key"] == "asked" else COLORS[ERROR] if r["kind"] in ("inference", "control") \
            else COLORS[WARNING]
        rows.append([esc(r["kind"]), f"<code>{esc(r['path'])}</code>", esc(r["methods"]),
                     f"<b style='color:{color}'>{esc(r['key'])}</b>", esc(r["what"])])
    return _table(["kind", "path", "methods", "API key", "what it does"], rows)


def probes_html(direct: list[checks.Answer], through_gateway: list[checks.Answer]) -> str:
    """The same probes straight to vLLM and through the gateway: one row per probe, the status
    coloured by its verdict (green: key asked or blocked, amber: open, red: inference without key)."""
    def cell(answers: list[checks.Answer], probe: checks.Probe, gateway: bool) -> str:
        a = next((a for a in answers if a.probe == probe), None)
        if a is None:
            return "–"
        level = checks.verdict(a, gateway).level
        return f"<b style='color:{COLORS[level]}'>{a.status}</b>"
    rows = [[esc(p.name), f"<code>{esc(p.method)} {esc(p.path)}</code>", cell(direct, p, False),
             cell(through_gateway, p, True)] for p in checks.PROBES]
    return _table(["probe", "request", "straight to vLLM", "through the gateway"], rows)
