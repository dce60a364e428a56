"""Every notebook runs top to bottom offline (no cluster, no GPU, no internet)."""
from __future__ import annotations

import ast
import json

import nbformat
import pytest

from tests.support import BUILD_TIMEOUT_S, REPO
from tests.support import check_executed_notebook

# The first test to ask for the book waits for the whole strict build (every lab executed).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S)
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: The widest code line the book's page shows without a scroll bar.
MAX_LINE = 100


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_says_its_mode_first(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "mode.detect()" in first_code.source and "banner()" in first_code.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_offline(path, book_build):
    """Read the notebook as the strict book build executed it (each notebook runs once per test run)."""
    nb = check_executed_notebook(book_build, path)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Cluster mode: OFFLINE" in text, "the notebook did not print its mode banner"


def untagged_assertion_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Code cells made only of ``assert`` statements that would show their input in the HTML."""
    found = []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or "remove-input" in c.metadata.get("tags", []):
            continue
        try:
            body = ast.parse(c.source).body
        except SyntaxError:  # IPython magics: not an assertion cell
            continue
        if body and all(isinstance(n, ast.Assert) for n in body):
            found.append(i)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_assertion_cells_hide_their_input(path):
    """A cell that only asserts what the cell above showed is hidden in the HTML (cell tag remove-input)."""
    cells = untagged_assertion_cells(nbformat.read(path, as_version=4))
    assert not cells, f"{path.name}: assertion cells {cells} need the tag remove-input"


def test_an_untagged_assertion_cell_is_found():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("assert x == 1\nassert x"),
                nbformat.v4.new_code_cell("assert x", metadata={"tags": ["remove-input"]})]
    assert untagged_assertion_cells(nb) == [1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_code_line_runs_off_the_page(path):
    wide = [f"cell {i}: {len(ln)} chars" for i, c in enumerate(nbformat.read(path, as_version=4).cells)
            if c.cell_type == "code"
            for ln in c.source.splitlines() if len(ln) > MAX_LINE]
    assert not wide, wide
