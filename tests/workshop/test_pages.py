"""The workshop pages tell the truth about the manifests, the box check and the API key (issue 9 #4, #7).

Every number the pages restate is compared with where it comes from: the manifests
(read through llmserve.core.names and the Deployment itself), the box check's sizes,
the KV-cache chapter's formula. Every path that applies the stack creates the Secret
from a generated key first and leaves the placeholder Secret out.
"""
from __future__ import annotations

import importlib
import re

import pytest

from llmserve.core import names
from llmserve.core.objects import arg_value, vllm_container
from llmserve.core.quantity import GIB
from llmserve.kvcache import formula
from llmserve.storage.rules import parse_selector_text, selector_matches
from llmserve.workshop import checks
from llmserve.world import manifests
from tests.support import REPO

PAGES = {name: (REPO / "book" / "workshop" / f"{name}.md").read_text(encoding="utf-8")
         for name in ("gpu-box", "instructors", "participants")}
ALL = "\n".join(PAGES.values())


def _deployment() -> dict:
    return next(o for o in names.base_objects() if o["kind"] == "Deployment")


def _facts() -> dict[str, str]:
    """Each restated value, as the pages must write it, from its source."""
    dep = _deployment()
    c = vllm_container(dep)
    res = c["resources"]
    probe = c["startupProbe"]
    uid, _ = checks.pod_user(dep)
    n = names.system()
    return {
        "memory request": str(res["requests"]["memory"]),
        "memory limit": str(res["limits"]["memory"]),
        "cpu request": str(res["requests"]["cpu"]),
        "shm": n.shm_size,
        "pod user": str(uid),
        "gpu memory utilization": f"{n.gpu_memory_utilization:.2f}",
        "max model len": arg_value(c, "--max-model-len"),
        "startup window": f"{probe['initialDelaySeconds']} s + {probe['failureThreshold']} × "
                          f"{probe['periodSeconds']} s",
        "free disk": f"{checks.MIN_FREE_BYTES / 1e9:.0f}",
        "awq files": f"{checks.AWQ_WEIGHT_BYTES / 1e9:.1f}",
        "image size": f"{checks.VLLM_IMAGE_BYTES_SEEN / 1e9:.1f}",
        "awq tensors": f"{formula.weight_bytes(formula.QWEN25_CODER_7B_AWQ) / GIB:.2f}",
        "min capability": checks.capability_text(max(checks.MIN_CAPABILITY.values())),
    }


#: (fact, pattern whose group 1 restates it); each pattern must occur on the pages at least once.
RESTATED = [
    ("memory request", r"requests \d+ CPUs and (\w+) of memory"),
    ("cpu request", r"requests (\d+) CPUs"),
    ("memory limit", r"limits memory to (\w+)"),
    ("shm", r"the (\w+) `/dev/shm` included"),
    ("pod user", r"runs as user (\d+)"),
    ("pod user", r"the Deployment's user \((\d+), read from the manifest\)"),
    ("gpu memory utilization", r"--gpu-memory-utilization=(\d\.\d+)"),
    ("max model len", r"Maximum concurrency for (\d+) tokens per request"),
    ("free disk", r"About (\d+) GB of free disk"),
    ("awq files", r"the AWQ files are (\d\.\d) GB"),
    ("awq files", r"about (\d\.\d) GB in total"),
    ("image size", r"is (\d+\.\d) GB \(`vllm-openai:latest`"),
    ("awq tensors", r"(\d+\.\d\d) GiB of tensors"),
    ("min capability", r"compute capability \*\*(\d\.\d) or newer"),
]


@pytest.mark.parametrize("fact,pattern", RESTATED, ids=[f"{f}:{i}" for i, (f, _) in enumerate(RESTATED)])
def test_every_restated_value_is_the_sources(fact, pattern):
    found = re.findall(pattern, ALL)
    assert found, f"the pages no longer say {pattern!r}: update the prose and this table together"
    assert set(found) == {_facts()[fact]}, (fact, found)


def test_no_stale_value_survives():
    # Issue 9 #3 and #4: a 24Gi limit, the container as UID 1000, Marlin needing 8.0, 35 GB of disk.
    for stale in (r"\b24Gi\b", r"runs as user 1000\b", r"user 1000 can read", r"kernels need 8\.0",
                  r"About 35 GB", r"`PASS`"):
        assert not re.search(stale, ALL), stale


def test_the_kubernetes_versions_are_the_ones_the_manifests_are_validated_against():
    low, high = re.search(r"validated against Kubernetes (\d\.\d+)–(\d\.\d+)", PAGES["gpu-box"]).groups()
    supported = [v.rsplit(".", 1)[0] for v in manifests.SUPPORTED_K8S_VERSIONS]
    assert (low, high) == (supported[0], supported[-1])
    assert f"INSTALL_K3S_CHANNEL=v{low}" in PAGES["gpu-box"]


def test_the_startup_window_in_the_guide_is_the_patched_one():
    # The staged failure keeps the Deployment's delay and period and sets 3 tries.
    probe = vllm_container(_deployment())["startupProbe"]
    assert f"{probe['initialDelaySeconds']} s + 3 × {probe['periodSeconds']} s" in PAGES["instructors"]


# -------------------------------------------------------------------- the API key
APPLY_K = re.compile(r"^kubectl apply -k (\S+)(.*)$", re.MULTILINE)
CREATE_SECRET = re.compile(r"create secret generic (\S+) --from-literal=api-key=\"\$\(openssl rand -hex \d+\)\"")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_apply_leaves_the_placeholder_secret_out_and_the_key_comes_first(page):
    text = PAGES[page]
    applies = list(APPLY_K.finditer(text))
    for m in applies:
        assert "-l 'app.kubernetes.io/component!=api-key'" in m.group(2), (page, m.group(0))
    first_secret = CREATE_SECRET.search(text)
    if applies:
        assert first_secret and first_secret.start() < applies[0].start(), f"{page}: the key must come first"
        assert first_secret.group(1) == names.system().api_key_secret


def test_the_selector_leaves_out_exactly_the_secret():
    objs = manifests.render("overlays/gpu-box")
    selector = parse_selector_text("app.kubernetes.io/component!=api-key")
    left_out = [o for o in objs if not selector_matches(selector, o["metadata"].get("labels"))[0]]
    assert [(o["kind"], o["metadata"]["name"]) for o in left_out] == [("Secret", names.system().api_key_secret)]
    # The placeholder is what the overlay would write (the reason for leaving it out).
    assert left_out[0]["stringData"]["api-key"] == "change-me"


def test_the_generated_secret_gets_the_labels_of_the_manifests_secret():
    secret = next(o for o in names.base_objects() if o["kind"] == "Secret")
    for page in ("gpu-box", "instructors"):
        [line] = re.findall(r"label secret \S+ (.+)$", PAGES[page], re.MULTILINE)
        assert dict(kv.split("=") for kv in line.split()) == secret["metadata"]["labels"], page


# ------------------------------------------------------------ module references
@pytest.mark.parametrize("page", sorted(PAGES))
def test_named_modules_exist(page):
    """Every `llmserve.…` the page names imports (a module, then attributes of it)."""
    for dotted in set(re.findall(r"`(llmserve(?:\.\w+)+)", PAGES[page])):
        parts, obj = dotted.split("."), None
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            break
        assert obj is not None, dotted
