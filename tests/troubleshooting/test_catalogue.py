"""The troubleshooting catalogue and its book page agree, and every quoted error is recognised.

The quoted errors live on the book page (``book/troubleshooting.md``), each in a
```text block inside the section of its entry; they were copied from the
public issue threads and docs each section links (see its "Source:" line).
This test reads them from the page, so the page is the one home of the quotes
and the module (llmserve.troubleshooting.catalogue) the one home of slugs, titles
and patterns.
"""
from __future__ import annotations

import re

import pytest

from llmserve.core import names
from llmserve.troubleshooting import catalogue as ts
from llmserve.world import mode

from tests.support import REPO

PAGE = REPO / "book" / "troubleshooting.md"
LABEL_RE = re.compile(r"^\((ts-[a-z0-9-]+)\)=\s*$", re.MULTILINE)
TEXT_BLOCK_RE = re.compile(r"^```text\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Labels on the page that frame entries rather than being entries.
FRAME_LABELS = {"ts-how-to-look"} | {f"ts-{c}" for c in ts.CATEGORIES}


def _sections() -> dict[str, str]:
    """label -> the page text from that label up to the next label."""
    text = PAGE.read_text(encoding="utf-8")
    marks = list(LABEL_RE.finditer(text))
    return {m.group(1): text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
            for i, m in enumerate(marks)}


SECTIONS = _sections()
QUOTES = [(slug, block.strip())
          for slug in (e.slug for e in ts.entries())
          for block in TEXT_BLOCK_RE.findall(SECTIONS.get(f"ts-{slug}", ""))]


def test_every_entry_has_a_section_and_every_section_an_entry():
    entry_labels = {e.label for e in ts.entries()}
    page_labels = set(SECTIONS) - FRAME_LABELS
    assert entry_labels - page_labels == set(), "entries without a (ts-…)= section on the page"
    assert page_labels - entry_labels == set(), "sections on the page without a catalogue entry"
    assert FRAME_LABELS <= set(SECTIONS), "every category needs its (ts-<category>)= section"


def test_section_heading_is_the_entry_title():
    for e in ts.entries():
        heading = SECTIONS[e.label].lstrip().splitlines()[0]
        assert heading == f"### {e.title}", (e.slug, heading)


def test_entries_sit_under_their_category_section():
    order = list(SECTIONS)
    for e in ts.entries():
        assert e.category in ts.CATEGORIES, e.slug
        # The nearest category label above the entry's label is its own category.
        above = [lab for lab in order[: order.index(e.label)] if lab in FRAME_LABELS - {"ts-how-to-look"}]
        assert above[-1] == f"ts-{e.category}", (e.slug, above[-1])


def test_every_entry_quotes_at_least_one_real_error_and_links_a_source():
    for e in ts.entries():
        body = SECTIONS[e.label]
        assert TEXT_BLOCK_RE.search(body), f"{e.slug}: no ```text quote of the error"
        assert "Source:" in body and "https://" in body.split("Source:")[1], f"{e.slug}: no source link"


@pytest.mark.parametrize("slug,quote", QUOTES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(QUOTES)])
def test_each_quoted_error_matches_its_entry(slug, quote):
    found = [e.slug for e in ts.match(quote)]
    assert slug in found, f"{quote!r} matched {found}"
    # Patterns must stay specific: one quote may point at two related entries, not at half the page.
    assert len(found) <= 2, f"{quote!r} matched too many entries: {found}"


def test_quotes_were_found():
    # Every entry quotes at least one error, some several: a parsing slip would silently shrink this.
    assert len(QUOTES) >= len(ts.entries())


@pytest.mark.parametrize("line", [
    # Healthy lines from a normal start (kubelet events and vLLM's own startup log).
    'Successfully assigned ai-platform/vllm-qwen25-coder-7b-5d9c to gpu-box',
    'Started container vllm',
    'Pulling image "vllm/vllm-openai:v0.32.0"',
    'INFO:     Application startup complete.',
    'GPU KV cache size: 123,456 tokens',
    '"GET /health HTTP/1.1" 200 OK',
    '',
])
def test_healthy_lines_match_nothing(line):
    assert ts.match(line) == []


def test_matches_are_ordered_by_where_they_occur():
    # A describe output with a scheduling message first and a probe message later.
    text = ("Warning FailedScheduling 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.\n"
            "Warning Unhealthy Startup probe failed: Get \"http://10.0.0.1:8000/health\": connect: connection refused")
    slugs = [e.slug for e in ts.match(text)]
    assert slugs[0] == "insufficient-gpu"
    assert slugs[-1] == "startup-probe"


def test_match_events_reads_kubernetes_event_dicts():
    events = [{"reason": "FailedScheduling",
               "message": "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims."}]
    assert [e.slug for e in ts.match_events(events)] == ["pvc-unbound"]
    assert ts.match_events([]) == []


def test_anchor_and_links():
    e = ts.by_slug("oomkilled")
    assert e.doc_anchor == "troubleshooting.html#ts-oomkilled"
    assert e.link("notebooks") == "../book/troubleshooting.html#ts-oomkilled"
    with pytest.raises(KeyError, match="known"):
        ts.by_slug("no-such-entry")


def test_slugs_are_unique_and_url_safe():
    slugs = [e.slug for e in ts.entries()]
    assert len(slugs) == len(set(slugs))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", s) for s in slugs)


def test_advice_names_the_fix_and_the_link():
    note = ts.advice("ValueError: No available memory for the cache blocks.")
    assert "gpu-memory-utilization" in note and "#ts-no-cache-blocks" in note
    assert "No known failure" in ts.advice("all good")


def test_advice_uses_the_names_of_the_manifests():
    n = names.system()
    crash = ts.by_slug("crashloop").fix
    assert f"-n {n.namespace} deploy/{n.deployment}" in crash
    assert f"svc/{n.service} {n.service_port}:{n.service_port}" in ts.by_slug("client-connection-refused").fix
    assert n.shm_size in ts.by_slug("shm-bus-error").fix
    assert n.served_model_name in ts.by_slug("model-not-found-404").fix


def test_no_entry_repeats_what_vllm_0_32_no_longer_does():
    """Issue 9 #3 and #8: AWQ-Marlin needs 7.5, not 8.0; 0.32 has no CPU swap space (--swap-space is gone)."""
    text = " ".join(f"{e.title} {e.cause} {e.fix}" for e in ts.entries())
    assert "--swap-space" not in text and "swap space" not in text.lower()
    gpu = ts.by_slug("quantization-capability")
    assert "7.5" in gpu.cause and "8.0" not in gpu.cause + gpu.fix and "instead of awq_marlin" not in gpu.fix


def test_k3s_refusal_of_a_read_only_many_claim_is_recognised():
    # The event local-path writes for a ReadOnlyMany claim (rancher/local-path-provisioner, provisioner.go).
    event = ('failed to provision volume with StorageClass "local-path": NodePath only supports '
             'ReadWriteOnce and ReadWriteOncePod (1.22+) access modes')
    assert [e.slug for e in ts.match(event)] == ["pvc-default-storageclass"]


@pytest.mark.vllm
def test_vllm_0_32_has_no_swap_space():
    """The claim the OOMKilled section makes about the pinned release, read from its source."""
    src = _vllm_file("config/cache.py")
    fields = re.findall(r"^    (\w+): ", src, re.MULTILINE)
    assert "kv_offloading_size" in fields and not [f for f in fields if "swap" in f]
    assert "--swap-space" not in _vllm_file("engine/arg_utils.py")


def _vllm_file(rel: str) -> str:
    """A file of the pinned vLLM release, in the environment scripts/setup.sh makes (.venv-vllm)."""
    [src] = mode.vllm_python().parent.parent.glob("lib/python3*/site-packages/vllm")
    return (src / rel).read_text()
