"""llmserve.security.report: the route table and the two probe runs as HTML."""
from __future__ import annotations

import re

from llmserve.core.findings import COLORS, ERROR, OK, WARNING
from llmserve.security import checks, report, routes


def test_the_route_table_has_one_row_per_route_coloured_by_its_risk():
    html = report.routes_html()
    assert html.count("<tr>") == len(routes.ROUTES) + 1
    row = re.search(r"<tr>(?:(?!</tr>).)*<code>/invocations</code>.*?</tr>", html).group(0)
    assert f"color:{COLORS[ERROR]}" in row and "NOT asked" in row
    row = re.search(r"<tr>(?:(?!</tr>).)*<code>/tokenize</code>.*?</tr>", html).group(0)
    assert f"color:{COLORS[WARNING]}" in row
    row = re.search(r"<tr>(?:(?!</tr>).)*<code>/v1/models</code>.*?</tr>", html).group(0)
    assert f"color:{COLORS[OK]}" in row


def test_the_probe_table_puts_the_two_runs_side_by_side():
    direct = [checks.Answer(p, 200 if p.path in ("/invocations", "/tokenize") or p.with_key else 401, "")
              for p in checks.PROBES]
    gateway = [checks.Answer(p, 404 if p.path in ("/invocations", "/tokenize") else a.status, "")
               for p, a in zip(checks.PROBES, direct)]
    html = report.probes_html(direct, gateway)
    assert html.count("<tr>") == len(checks.PROBES) + 1
    row = re.search(r"<tr><td[^>]*>the same chat body to /invocations, no key</td>.*?</tr>", html).group(0)
    assert f"color:{COLORS[ERROR]}'>200<" in row and f"color:{COLORS[OK]}'>404<" in row


def test_a_missing_run_shows_a_dash():
    assert report.probes_html([], []).count("–") == 2 * len(checks.PROBES)
