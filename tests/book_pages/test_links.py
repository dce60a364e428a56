"""Every {ref} and {doc} link and every literalinclude of the pages helper G writes points at
something that exists (the strict build says so too, but only for the whole book at once)."""
from __future__ import annotations

import re
from pathlib import Path

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


def _private_names() -> list[str]:
    """What readers do not have, read from this machine rather than written here: the checkout's
    absolute path and its parent, the home folder, and the team's notes beside the checkout."""
    notes = REPO.parent / TEAM_NOTES
    folders = [str(REPO.parent), str(Path.home())]
    names = [f + "/" for f in folders if f != "/"] + [f"{TEAM_NOTES}/"]
    # A note's name counts unless the book has a page of the same name (its own source-notes.md).
    files = [p.name for p in notes.iterdir() if p.is_file()] if notes.is_dir() else []
    return names + [f for f in files if not any(BOOK.rglob(f))]


#: The folder of team notes next to a working checkout (absent in CI and for readers).
TEAM_NOTES = "shared"


@pytest.mark.parametrize("page", PAGES)
def test_no_machine_paths_or_team_files(page):
    text = (BOOK / page).read_text(encoding="utf-8")
    found = [name for name in _private_names() if name in text]
    assert not found, f"{page} names what readers do not have: {found}"
