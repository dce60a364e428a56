"""The built book in a real headless Chromium: links, images, widgets, maths, console, no CDN."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from tests.support import BUILD_TIMEOUT_S, CHROMIUM_ARGS, chromium_path

# The first test to ask for the book waits for the whole strict build (every lab executed).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S)]

# Console messages that are not faults of the book (none known today).
EXPECTED_CONSOLE = ()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path):
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def pages_of(html_root: Path) -> list[str]:
    skip = {"genindex.html", "search.html"}
    return sorted(str(p.relative_to(html_root)) for p in html_root.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts and p.name not in skip)


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


#: Pages loading at once (Chromium fetches them side by side; each waits out its own network-idle half second).
PAGES_AT_ONCE = 6


def visit(browser, url: str) -> dict:
    """Load one page like a reader; return what the page did and what it links to."""
    return visit_all(browser, [url])[url]


def visit_all(browser, urls: list[str]) -> dict[str, dict]:
    """:func:`visit` for many pages, :data:`PAGES_AT_ONCE` loading at a time."""
    seen = {}
    for start in range(0, len(urls), PAGES_AT_ONCE):
        opened = [_open(browser, url) for url in urls[start:start + PAGES_AT_ONCE]]
        for url, (page, events) in zip(urls[start:start + PAGES_AT_ONCE], opened):
            seen[url] = _read(page, events)
    return seen


def _open(browser, url: str):
    page = browser.new_page()
    seen = {"console": [], "failed": [], "external": []}
    page.on("console", lambda m: m.type == "error" and seen["console"].append(m.text))
    page.on("pageerror", lambda e: seen["console"].append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: seen["failed"].append(f"{r.url} ({r.failure})"))
    page.on("request", lambda r: urlparse(r.url).hostname not in ("127.0.0.1", None)
            and not r.url.startswith("data:") and seen["external"].append(r.url))
    page.goto(url, wait_until="commit")
    return page, seen


def _read(page, seen: dict) -> dict:
    page.wait_for_load_state("load")
    page.wait_for_load_state("networkidle")
    has_widgets = page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() > 0
    if has_widgets:
        page.wait_for_selector(".jupyter-widgets", timeout=15000)
    has_math = page.locator(".math").count() > 0
    if has_math:
        page.wait_for_selector("mjx-container", timeout=15000)
    seen.update(
        links=page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"),
        ids=set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)")),
        broken_images=page.eval_on_selector_all(
            "img", "els => els.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"),
        images=page.locator("img").count(),
        widgets=page.locator(".jupyter-widgets").count() if has_widgets else 0,
        widget_views=page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count(),
        widget_errors=page.locator(".jupyter-widgets-error-widget, .jupyter-widget-error").count(),
        has_widgets=has_widgets, has_math=has_math,
        mathjax=page.locator("mjx-container").count() if has_math else 0,
    )
    page.close()
    return seen


def broken_internal_links(browser, base: str, html_root: Path, visits: dict[str, dict]) -> list[str]:
    """Every internal link (of the visited pages) whose target page or #anchor does not exist."""
    ids_of = {f"{base}/{p}": v["ids"] for p, v in visits.items()}
    broken = []
    for p, v in visits.items():
        for href in v["links"]:
            if not href.startswith(base):
                continue
            target, fragment = urldefrag(href)
            rel = target[len(base) + 1:] or "index.html"
            if rel.endswith("/"):
                rel += "index.html"
            if not (html_root / rel).exists():
                broken.append(f"{p} -> {href} (no such page)")
                continue
            if fragment and rel.endswith(".html"):
                ids = ids_of.get(f"{base}/{rel}")
                if ids is None:
                    ids = visit(browser, f"{base}/{rel}")["ids"]
                    ids_of[f"{base}/{rel}"] = ids
                if fragment not in ids:
                    broken.append(f"{p} -> {href} (no #{fragment} there)")
    return broken


@pytest.fixture(scope="module")
def site(built_book, browser):
    server, base = serve(built_book)
    pages = pages_of(built_book)
    seen = visit_all(browser, [f"{base}/{p}" for p in pages])
    visits = {p: seen[f"{base}/{p}"] for p in pages}
    yield {"root": built_book, "base": base, "pages": pages, "visits": visits}
    server.shutdown()


def test_every_page_loads_without_console_errors(site):
    bad = {p: v["console"] for p, v in site["visits"].items()
           if [m for m in v["console"] if not any(e in m for e in EXPECTED_CONSOLE)]}
    assert not bad, bad


def test_nothing_is_fetched_from_outside(site):
    """The book reads offline: no CDN, no web fonts, no analytics."""
    external = {p: v["external"] for p, v in site["visits"].items() if v["external"]}
    assert not external, external
    failed = {p: v["failed"] for p, v in site["visits"].items() if v["failed"]}
    assert not failed, failed


def test_every_internal_link_resolves(site, browser):
    broken = broken_internal_links(browser, site["base"], site["root"], site["visits"])
    assert not broken, "\n".join(broken)


def test_images_and_plots_load(site):
    assert sum(v["images"] for v in site["visits"].values()) > 0, "the book shows no image at all"
    broken = {p: v["broken_images"] for p, v in site["visits"].items() if v["broken_images"]}
    assert not broken, broken


def test_widgets_render_without_a_kernel(site):
    with_widgets = {p: v for p, v in site["visits"].items() if v["has_widgets"]}
    assert with_widgets, "no page carries widget state: the panels were not saved at build time"
    for p, v in with_widgets.items():
        assert v["widgets"] >= v["widget_views"] > 0, f"{p}: {v['widgets']} rendered of {v['widget_views']}"
        assert v["widget_errors"] == 0, p


def test_maths_renders_offline(site):
    with_math = {p: v for p, v in site["visits"].items() if v["has_math"]}
    assert with_math, "no page has maths"
    assert all(v["mathjax"] > 0 for v in with_math.values()), {p: v["mathjax"] for p, v in with_math.items()}


def test_the_link_check_bites(browser, tmp_path):
    (tmp_path / "index.html").write_text('<html><body id="top"><a href="other.html#here">ok</a>'
                                         '<a href="missing.html">bad</a><a href="other.html#nowhere">bad</a></body></html>')
    (tmp_path / "other.html").write_text('<html><body><h1 id="here">x</h1></body></html>')
    server, base = serve(tmp_path)
    try:
        visits = {p: visit(browser, f"{base}/{p}") for p in ["index.html", "other.html"]}
        broken = broken_internal_links(browser, base, tmp_path, visits)
    finally:
        server.shutdown()
    assert len(broken) == 2
    assert any("missing.html" in b for b in broken) and any("#nowhere" in b for b in broken)
