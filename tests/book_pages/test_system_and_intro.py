"""The opening pages say what is true (issue 9): the key's reach, the EndpointSlice, the k3s
default-class trap, where the key may come from, and what the book's outputs are."""
from __future__ import annotations

from tests.support import REPO

SYSTEM = (REPO / "book" / "system.md").read_text(encoding="utf-8")
INTRO = (REPO / "book" / "intro.md").read_text(encoding="utf-8")


def test_system_says_the_key_guards_v1_only_and_links_the_gateway():
    assert "asks every request for" not in SYSTEM
    assert "POST /invocations" in SYSTEM and "(api-key.md)" in SYSTEM
    assert "`--config FILE`" in SYSTEM and "`--config=FILE`" in SYSTEM   # the spelling that is ignored


def test_system_says_an_endpointslice_lists_not_ready_pods():
    assert "Ready Pod IPs" not in SYSTEM
    assert "ready: false" in SYSTEM


def test_system_says_k3s_refuses_the_read_only_many_claim():
    assert "the claim gets a new, empty volume from it" not in SYSTEM
    assert "ProvisioningFailed" in SYSTEM and "NodePath only supports ReadWriteOnce and ReadWriteOncePod" in SYSTEM


def test_intro_promises_only_what_the_notebooks_do():
    assert "Nothing on these pages is a pasted log" not in INTRO
    assert "**shape**" in INTRO and "cites the public issue" in INTRO
    assert "seven-fold" not in INTRO and "fresh, *empty* volume" not in INTRO
    assert "<source-notes>" in INTRO
