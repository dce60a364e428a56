"""book/stack.md says what the code and the manifests say: every helper it names exists, every
{ref} resolves, the by-hand commands are the lab's, and each figure it restates is the code's."""
from __future__ import annotations

import importlib
import re

import pytest

from llmserve.serving import crosscheck, loadtest, stats
from llmserve.stack import lab, load, order
from tests.support import REPO

PAGE = (REPO / "book" / "stack.md").read_text(encoding="utf-8")


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_helper_the_page_names_exists():
    named = set(re.findall(r"`(llmserve(?:\.\w+)+)`", PAGE))
    assert named, "the page names no helper"
    missing = sorted(n for n in named if not resolves(n))
    assert not missing, missing


def test_every_ref_resolves():
    labels = set()
    for page in (REPO / "book").rglob("*.md"):
        labels |= set(re.findall(r"^\(([\w-]+)\)=$", page.read_text(encoding="utf-8"), re.M))
    refs = set(re.findall(r"\{ref\}`(?:[^`<]*<)?([^`>]+)>?`", PAGE))
    assert refs and not sorted(refs - labels)


def test_the_by_hand_apply_is_the_labs_and_creates_the_secret_first():
    block = PAGE[PAGE.index("(stack-api-key)="):PAGE.index("(stack-readiness)=")]
    typed = [line[2:] for line in block.replace("\\\n    ", "").splitlines() if line.startswith("$ ")]
    assert typed == order.by_hand("apply", "gpu-box")
    assert "change-me" not in "\n".join(typed)


@pytest.mark.parametrize("phrase, value", [
    ("within 35 %", round(crosscheck.TOLERANCE * 100)),
    ("10 ms of\nTTFT", stats.COMPARED["ttft_s"] * 1000),
    ("2 ms of ITL", stats.COMPARED["itl_s"] * 1000),
    ("exactly 64 output tokens", lab.CROSS_CHECK_MAX_TOKENS),
])
def test_figures_restated_in_prose_are_the_codes(phrase, value):
    assert phrase in PAGE.replace("(TTFT", "TTFT"), phrase
    assert float(re.search(r"\d+", phrase).group()) == value


def test_the_cross_check_settings_in_prose_are_the_codes():
    levels = " and ".join(str(c) for c in lab.CROSS_CHECK_LEVELS)
    requests = " and ".join(str(lab.CROSS_CHECK_REQUESTS[c]) for c in lab.CROSS_CHECK_LEVELS)
    assert f"at two concurrency levels ({levels})" in PAGE.replace("\n", " ")
    assert f"({requests} per round)" in PAGE.replace("\n", " ")


def test_sampling_and_request_counts_in_prose_are_the_codes():
    text = PAGE.replace("\n", " ")
    assert load.SAMPLE_INTERVAL_S == 0.1 and "ten times a second" in text
    assert loadtest.MIN_REQUESTS == 10 and "at least ten requests" in text
    assert stats.min_samples(90) == 10 and "from 10 requests for p90" in text and stats.min_samples(99) == 100
