"""The package's layer rule, written once and enforced by walking every import with ``ast``.

* ``llmserve.core`` imports only the standard library, yaml and the core itself;
* ``llmserve.world`` (mode, cluster, port-forward, manifests) imports the core and the world,
  never a chapter;
* a chapter's *pure rule* modules (named like ``rules``, ``budgets``, ``formula``, ``planner`` …)
  import only the core (not its ``http`` and ``waiting``, which act through what a caller
  passes), other pure modules, the standard library's pure parts and yaml: no I/O, no torch,
  no widgets, no plotting, no Kubernetes client, no subprocess;
* nothing imports a *presentation* module (``panel``, ``plots``, ``report``, ``figure``)
  except another presentation module (notebooks are not in the package);
* no import cycles, counting imports inside functions too.

A module's kind follows from its name (see :func:`kind_of`), so a new chapter folder is
checked as soon as it exists. The bite tests plant each kind of violation in a copy of the
package and expect the checker to name it.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = "llmserve"

PURE_NAMES = {"rules", "routes", "budgets", "formula", "paging", "planner", "diagnose", "catalogue", "checks",
              "order", "workload", "stats", "policy", "alerts", "scaling"}
PRESENTATION_NAMES = {"panel", "plots", "report", "figure"}
#: Modules a pure rule may not import: each one reaches the outside world or draws.
WORLDLY = {"os", "subprocess", "socket", "urllib", "http", "shutil", "threading", "multiprocessing",
           "select", "time", "requests", "httpx", "openai", "torch", "ipywidgets", "IPython",
           "matplotlib", "kubernetes", "urllib3", "prometheus_client", "nbclient", "websocket"}
#: The two core modules that act (through what a caller passes): they may use the network and the clock.
CORE_WITH_EFFECTS = {f"{PACKAGE}.core.http", f"{PACKAGE}.core.waiting"}


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def kind_of(module: str) -> str:
    """``core``, ``world``, ``pure``, ``presentation`` or ``live``."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] == "core":
        return "core"
    if len(parts) >= 2 and parts[1] == "world":
        return "world"
    leaf = parts[-1]
    if leaf in PURE_NAMES:
        return "pure"
    if leaf in PRESENTATION_NAMES:
        return "presentation"
    return "live"


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Every module this one imports (absolute names), with the line, including imports in functions."""
    out = []
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                target = ".".join(prefix + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, node.lineno))
            # `from llmserve.core import names` imports the module llmserve.core.names
            out += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return out


def import_graph(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Module → the package modules (and outside top-level names) it imports.

    A package's ``__init__`` is a namespace, not a module with a layer: importing it is ignored.
    """
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = []
        for target, line in _imports(tree, mod, path.name == "__init__.py"):
            if target.split(".")[0] == PACKAGE:
                if target in files and target not in packages:
                    found.append((target, line))
            else:
                found.append((target.split(".")[0], line))
        graph[mod] = sorted(set(found))
    return graph


def violations(root: Path) -> list[str]:
    graph = import_graph(root)
    inside = set(graph)
    problems = []
    for mod, targets in graph.items():
        kind = kind_of(mod)
        for target, line in targets:
            where = f"{mod} (line {line}) imports {target}"
            if target in inside:
                tkind = kind_of(target)
                if target == mod or target == PACKAGE:
                    continue
                if tkind == "presentation" and kind != "presentation":
                    problems.append(f"{where}: only presentation may import presentation")
                if kind == "core" and tkind != "core":
                    problems.append(f"{where}: the core imports only the core")
                if kind == "world" and tkind not in ("core", "world"):
                    problems.append(f"{where}: the world never imports a chapter")
                if kind == "pure" and (tkind not in ("core", "pure") or target in CORE_WITH_EFFECTS):
                    problems.append(f"{where}: a pure rule imports only the core's pure parts and pure rules")
            elif kind in ("pure", "core") and target in WORLDLY and mod not in CORE_WITH_EFFECTS:
                problems.append(f"{where}: a {kind} module does no I/O, drawing or device work")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as a path through it."""
    edges = {m: sorted({t for t, _ in ts if t in graph and t != m and not m.startswith(t + ".")})
             for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_package_follows_the_layer_rule():
    problems = violations(REPO / PACKAGE)
    assert not problems, "\n".join(problems)


def test_every_module_says_its_chapter_in_a_docstring():
    missing = [module_name(REPO / PACKAGE, p) for p in (REPO / PACKAGE).rglob("*.py")
               if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring saying who uses them: {missing}"


# -- the rule bites --------------------------------------------------------------------
@pytest.fixture
def package_copy(tmp_path) -> Path:
    copy = tmp_path / PACKAGE
    shutil.copytree(REPO / PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _plant(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.parent / "__init__.py").exists():
        (path.parent / "__init__.py").write_text('"""planted"""\n')
    text = path.read_text(encoding="utf-8") if path.exists() else '"""planted"""\n'
    path.write_text(text + "\n" + line + "\n", encoding="utf-8")


@pytest.mark.parametrize("where, line, expected", [
    ("planted/rules.py", "import torch", "does no I/O"),
    ("planted/rules.py", "from llmserve.core import http", "pure rule imports only"),
    ("planted/rules.py", "from llmserve.world import cluster", "pure rule imports only"),
    ("planted/live.py", "from llmserve.planted import panel", "only presentation may import presentation"),
    ("core/quantity.py", "from llmserve.world import mode", "the core imports only the core"),
    ("world/manifests.py", "from llmserve.planted import live", "the world never imports a chapter"),
])
def test_a_planted_violation_is_named(package_copy, where, line, expected):
    for leaf in ("panel", "live", "rules"):
        _plant(package_copy / "planted" / f"{leaf}.py", "")
    _plant(package_copy / where, line)
    found = violations(package_copy)
    assert any(expected in p and Path(where).stem in p for p in found), found


def test_a_planted_cycle_is_named(package_copy):
    _plant(package_copy / "planted" / "alpha.py", "from llmserve.planted import beta")
    _plant(package_copy / "planted" / "beta.py", "import llmserve.planted.alpha")
    found = violations(package_copy)
    assert "import cycle: llmserve.planted.alpha -> llmserve.planted.beta -> llmserve.planted.alpha" in found
