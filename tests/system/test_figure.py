"""The system figure (book/figures/system.svg, drawn by llmserve.system.figure).

Checks: the committed SVG is exactly what the code draws from today's manifests;
it is well-formed, accessible and self-contained (renders offline); it prints the
real object names, and a name too long for its box fails loudly. The names
themselves are read by llmserve.core.names (tests/core/test_names.py).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from llmserve.core import names
from llmserve.system import figure as system

SVG_NS = "{http://www.w3.org/2000/svg}"
REGENERATE = "run `.venv/bin/python -m llmserve.system.figure` and commit book/figures/system.svg"


# --------------------------------------------------------------------------- #
# The committed file
# --------------------------------------------------------------------------- #
def test_committed_figure_is_what_the_code_draws_from_the_manifests():
    expected = system.build_svg(names.system())
    committed = system.FIGURE_PATH.read_text(encoding="utf-8")
    assert committed == expected, f"book/figures/system.svg is stale (a manifest or the drawing changed): {REGENERATE}"


def test_regenerating_gives_the_same_bytes(tmp_path):
    a = system.render(tmp_path / "a.svg").read_bytes()
    b = system.render(tmp_path / "b.svg").read_bytes()
    assert a == b
    assert a == system.FIGURE_PATH.read_bytes(), REGENERATE


@pytest.fixture(scope="module")
def root():
    return ET.fromstring(system.FIGURE_PATH.read_text(encoding="utf-8"))


def test_svg_is_well_formed_and_accessible(root):
    assert root.tag == SVG_NS + "svg"
    assert root.get("role") == "img"
    # aria-labelledby must point at the <title> and <desc> ids (WAI-ARIA: labelled by existing ids).
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert set(root.get("aria-labelledby").split()) <= ids
    title = root.find(SVG_NS + "title")
    desc = root.find(SVG_NS + "desc")
    assert title is not None and len(title.text) > 20
    assert desc is not None and "PersistentVolume" in desc.text and "ClusterIP" in desc.text
    w, h = (float(v) for v in root.get("viewBox").split()[2:])
    assert (w, h) == (float(root.get("width")), float(root.get("height")))


def test_svg_renders_offline_with_generic_fonts_only(root):
    text = system.FIGURE_PATH.read_text(encoding="utf-8")
    families = {el.get("font-family") for el in root.iter() if el.get("font-family")}
    # CSS generic families always resolve to an installed font: no web font to fetch.
    assert families <= {"sans-serif", "monospace"}, families
    assert "@font-face" not in text and "@import" not in text
    assert not [el for el in root.iter() if el.tag in (SVG_NS + "image", SVG_NS + "foreignObject", SVG_NS + "script")]
    hrefs = [v for el in root.iter() for k, v in el.attrib.items() if k.endswith("href")]
    assert not [h for h in hrefs if not h.startswith("#")], hrefs
    # every marker the paths use is defined in the file
    used = set(re.findall(r'url\(#([\w-]+)\)', text))
    assert used and used <= {el.get("id") for el in root.iter()}


def _texts(root) -> str:
    return "\n".join("".join(el.itertext()) for el in root.iter(SVG_NS + "text")).replace("\u00a0", " ")


def test_figure_prints_the_real_object_names(root):
    n = names.system()
    texts = _texts(root)
    for name in (n.namespace, n.pv, n.pvc, n.deployment, n.service, n.image, n.model_path,
                 n.host_model_dir, n.models_mount_path, n.pv_host_path):
        assert name in texts, name
    host, tail = n.dns_name.split(".", 1)
    assert host in texts and tail in texts


def test_both_paths_are_drawn_in_their_colours_with_every_step(root):
    strokes = [el.get("stroke") for el in root.iter(SVG_NS + "path")]
    assert strokes.count(system.REQUEST) >= 6   # 1→2, 2→3, 3→4, 4→5, 5→6, P (+ legend)
    assert strokes.count(system.WEIGHTS) >= 4   # A→B, B→C, C→D, D→E (+ legend)
    badges = {"".join(el.itertext()) for el in root.iter(SVG_NS + "text") if el.get("fill") == "#ffffff"}
    assert {"1", "2", "3", "4", "5", "6", "P", "A", "B", "C", "D", "E"} <= badges


def test_a_name_too_long_for_its_box_fails_loudly_instead_of_overflowing():
    objs = names.base_objects()
    pv = next(o for o in objs if o["kind"] == "PersistentVolume")
    pv["metadata"]["name"] = "a-persistent-volume-name-far-too-long-for-the-box-it-is-drawn-in"
    with pytest.raises(ValueError, match="does not fit"):
        system.build_svg(names.names_from_manifests(objs))


# --------------------------------------------------------------------------- #
# In a real browser: does every label fit where the generator thinks it does?
# --------------------------------------------------------------------------- #
@pytest.mark.slow
def test_every_boxed_label_fits_its_box_in_a_real_browser():
    """Each label drawn in a box carries ``data-room``, the width it must fit in; Chromium measures it.

    Chromium lays the SVG out with the fonts the generic families resolve to on this
    machine (DejaVu on Debian, the widest common sans-serif). The generator's own
    estimate (``text_width``) must also be an upper bound for those labels, or it could
    let a too-long name through.
    """
    from tests.support import chromium_path
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright

    svg = system.FIGURE_PATH.read_text(encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.set_content(f"<!doctype html><html><body style='margin:0'>{svg}</body></html>")
        measured = page.evaluate("""() => [...document.querySelectorAll('svg text[data-room]')].map(t => ({
            text: t.textContent, width: t.getComputedTextLength(),
            room: parseFloat(t.getAttribute('data-room')),
            size: parseFloat(t.getAttribute('font-size')),
            bold: t.getAttribute('font-weight') === 'bold',
            mono: t.getAttribute('font-family') === 'monospace'}))""")
        browser.close()
    assert len(measured) > 40
    problems = []
    for m in measured:
        style = "mono" if m["mono"] else ("bold" if m["bold"] else "sans")
        estimate = system.text_width(m["text"], m["size"], style)
        if m["width"] > m["room"]:
            problems.append(f"{m['text']!r}: rendered {m['width']:.1f}px, room {m['room']:.1f}px")
        if m["width"] > estimate:
            problems.append(f"{m['text']!r}: rendered {m['width']:.1f}px > estimate {estimate:.1f}px")
    assert not problems, "\n".join(problems)
