"""Every {ref} and {doc} link and every literalinclude of the pages helper G writes points at
something that exists (the strict build says so too, but only for the whole book at once)."""
from __future__ import annotations

import re

import pytest

from tests.support import REPO

BOOK = REPO / "book"
PAGES = ["api-key.md", "source-notes.md", "system.md", "intro.md", "sources.md"]
REF = re.compile(r"\{ref\}`(?:[^`<]*<)?([^`>]+)>?`")
DOC = re.compile(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`")
MD_LINK = re.compile(r"\]\(((?!https?:)[^)#\s]+)(?:#[^)]*)?\)")
INCLUDE = re.compile(r"^```\{literalinclude\} (\S+)", re.M)


def labels() -> set[str]:
    found = set()
    for page in BOOK.rglob("*.md"):
        found |= set(re.findall(r"^\(([\w-]+)\)=$", page.read_text(encoding="utf-8"), re.M))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_refs_point_at_labels_that_exist(page):
    text = (BOOK / page).read_text(encoding="utf-8")
    missing = sorted(set(REF.findall(text)) - labels())
    assert not missing, f"{page} links to labels no page defines: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_and_includes_exist(page):
    text = (BOOK / page).read_text(encoding="utf-8")
    targets = MD_LINK.findall(text) + INCLUDE.findall(text)
    targets += [d + ".md" for d in DOC.findall(text)]
    missing = [t for t in targets if not (BOOK / t).resolve().exists()]
    assert not missing, f"{page} points at files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_no_machine_paths_or_team_files(page):
    text = (BOOK / page).read_text(encoding="utf-8")
    assert not re.search(r"/work/|/root/|shared/|facts\.md", text)
