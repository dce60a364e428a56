"""book/api-key.md says what llmserve.security holds: the guarded prefixes, the open routes that
run the model, the gateway's commands and files; and its code cell runs."""
from __future__ import annotations

import nbclient
from myst_nb.core.read import read_myst_markdown_notebook

from llmserve.security import live, policy, routes
from tests.support import REPO

PAGE = REPO / "book" / "api-key.md"
TEXT = PAGE.read_text(encoding="utf-8")


def test_the_page_names_every_guarded_prefix_and_every_open_inference_route():
    assert all(f'"{p}"' in TEXT for p in routes.GUARDED_PREFIXES)
    assert all(f"`POST {r.path}`" in TEXT for r in routes.bypasses())


def test_the_client_routes_of_the_page_are_the_policys():
    for method, path in policy.CLIENT_ROUTES:
        assert f"`{method} {path}`" in TEXT


def test_the_by_hand_commands_are_the_helpers():
    assert live.apply_command() in TEXT
    name, port = policy.gateway_service()
    assert live.port_forward_commands()[1] in TEXT
    assert f"localhost:{port}/invocations" in TEXT and f"deployment/{name}" in TEXT


def test_the_page_never_applies_the_overlay_with_the_placeholder_secret():
    commands = [line for line in TEXT.splitlines() if line.startswith("kubectl apply")]
    assert commands and all("components/api-gateway" in c for c in commands)


def test_the_table_cell_runs():
    nb = read_myst_markdown_notebook(TEXT)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(PAGE.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<code>/invocations</code>" in html and "NOT asked" in html
    assert f"{len(routes.guarded_routes())} routes ask for the key" in "".join(o.get("text", "") for o in outputs)
