"""book/source-notes.md, the annotated appendix: every quoted claim of the notes is followed by what
is true and a link to the section that explains it, and its numbers come from its code cells."""
from __future__ import annotations

import re

import nbclient
from myst_nb.core.read import read_myst_markdown_notebook

from llmserve.core.names import system
from llmserve.kvcache import formula
from tests.support import REPO, environment, offline_env

PAGE = REPO / "book" / "source-notes.md"
TEXT = PAGE.read_text(encoding="utf-8")


def claims() -> list[tuple[str, str]]:
    """(the quoted claim, the text after it up to the next claim or section)."""
    parts = re.split(r"((?:^>.*\n)+)", TEXT, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def test_every_claim_has_its_truth_and_a_section_of_the_book():
    found = claims()
    assert len(found) >= 20
    for quote, after in found:
        after = re.split(r"^#{1,3} ", after, flags=re.M)[0]
        # A claim quoted in several pieces is annotated after its last piece; the code
        # cell and picture between pieces carry no quote.
        if "**What is true.**" not in after:
            continue
        assert "**In the book:**" in after, quote
        book_part = after.split("**In the book:**", 1)[1]
        assert re.search(r"\{ref\}`[^`]+`|\{doc\}`[^`]+`|\]\([\w./-]+\.md", book_part), quote
    annotated = sum("**What is true.**" in re.split(r"^#{1,3} ", a, flags=re.M)[0] for _, a in claims())
    assert annotated >= 18


def test_every_section_has_a_label_and_the_diagrams_are_kept():
    headings = re.findall(r"^(?:\(([\w-]+)\)=\n)?## (.+)$", TEXT, re.M)
    assert headings and all(label for label, _ in headings), headings
    assert TEXT.count("```text") == 4   # the architecture, PV/PVC, Deployment and Service pictures


def test_the_code_cells_compute_the_numbers_the_annotations_rely_on():
    nb = read_myst_markdown_notebook(TEXT)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(PAGE.parent)}})
    env = offline_env()
    with environment({k: env[k] for k in ("COURSE_MODE", "KUBECONFIG")}):
        client.execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    qwen, llama = formula.QWEN25_CODER_7B, formula.LLAMA2_7B
    assert f"{formula.kv_bytes_per_token(qwen):,} B/token" in out
    assert f"{formula.naive_kv_bytes_per_token(qwen):,} B/token" in out
    assert f"{formula.naive_kv_bytes_per_token(qwen) / formula.kv_bytes_per_token(qwen):g} ×" in out
    assert f"{formula.naive_kv_bytes_per_token(llama) // 2**10:,} KiB" in out   # the notes' ~512KB
    assert f"--gpu-memory-utilization={system().gpu_memory_utilization}" in out
    assert f"{system().shm_size}" in out and "4Gi RAM" in out
