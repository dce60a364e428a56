"""The book builds strictly (warnings are errors, notebooks executed), and the strictness bites."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.support import BUILD_TIMEOUT_S, REPO, BookBuild, NotebookFailed, build_book, check_executed_notebook

# The first test to ask for the book waits for the whole strict build (every lab executed).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S)]


def test_the_book_builds_strictly(built_book):
    assert (built_book / "index.html").exists()
    for page in ["book/intro", "book/storage", "notebooks/storage-lab", "book/kv-cache",
                 "notebooks/kv-cache-lab", "notebooks/stack-lab", "book/troubleshooting"]:
        assert (built_book / f"{page}.html").exists(), page


def test_notebook_pages_carry_executed_outputs(built_book):
    """Executed at build time: the storage lab shows its mode banner in the HTML."""
    html = (built_book / "notebooks" / "storage-lab.html").read_text()
    assert "Cluster mode: OFFLINE" in html


def test_no_top_level_static_folder():
    # Jupyter Book 1 would inject every script in it into every page.
    assert not (REPO / "_static").exists()


def _tiny_book(tmp_path: Path, page_md: str, notebook_cells: list[str]) -> Path:
    """A two-page book with the course's own _config.yml and vendored assets."""
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    (src / "notebooks").mkdir()
    shutil.copy(REPO / "_config.yml", src / "_config.yml")
    for folder in ("_vendor", "_ext", "_assets", "_root"):
        shutil.copytree(REPO / "book" / folder, src / "book" / folder, symlinks=True)
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                  "  - file: book/page\n  - file: notebooks/lab\n")
    (src / "book" / "intro.md").write_text("# Intro\n\nHello.\n")
    (src / "book" / "page.md").write_text(page_md)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab")] + [nbformat.v4.new_code_cell(c) for c in notebook_cells]
    nbformat.write(nb, src / "notebooks" / "lab.ipynb")
    return src


def test_a_tiny_good_book_builds(tmp_path):
    """Control for the two tests below: the same tiny book, without the planted fault, builds."""
    src = _tiny_book(tmp_path, "# Page\n\nSee [the intro](intro.md).\n", ["print(1 + 1)"])
    proc = build_book(src, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_failing_cell_fails_the_build_and_its_notebook_test(tmp_path):
    src = _tiny_book(tmp_path, "# Page\n\nFine.\n", ["print('ok')", "raise RuntimeError('planted failure')"])
    proc = build_book(src, tmp_path / "out")
    assert proc.returncode != 0
    assert "planted failure" in proc.stdout + proc.stderr
    # The per-notebook check (tests/test_notebooks.py) reads this build's executed notebook and names the cell.
    build = BookBuild(tmp_path / "out", proc.returncode, proc.stdout + proc.stderr)
    with pytest.raises(NotebookFailed, match="planted failure"):
        check_executed_notebook(build, src / "notebooks" / "lab.ipynb")


def test_a_broken_internal_link_fails_the_build(tmp_path):
    src = _tiny_book(tmp_path, "# Page\n\nSee [the missing chapter](missing-chapter.md).\n", ["print(1)"])
    proc = build_book(src, tmp_path / "out")
    assert proc.returncode != 0
    assert "missing-chapter" in proc.stdout + proc.stderr


def test_tables_a_cell_displays_render_as_tables(built_book):
    # nb_render_markdown_format: myst in _config.yml: CommonMark, the default, has no tables, and the
    # routing lab's policy table once printed as lines of pipes.
    for page, header in [("notebooks/routing-lab", "router flag"), ("notebooks/stack-lab", "vllm bench serve")]:
        html = (built_book / f"{page}.html").read_text()
        headers = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th\b[^>]*>(.*?)</th>", html, re.S)]
        assert header in headers, (page, headers)
        assert "<p>| " not in html, page
