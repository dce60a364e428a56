"""The troubleshooting page restates the manifests, the pinned vLLM and the KV-cache chapter truthfully (issue 9).

Each number below is read from where it comes from; the page must say exactly that,
and the values the page used to get wrong (a 24Gi limit, Marlin needing 8.0, CPU swap
space, an empty volume for a ReadOnlyMany claim on k3s) must not come back.
"""
from __future__ import annotations

import re

import pytest

from llmserve.core import names
from llmserve.core.objects import arg_value, vllm_container
from llmserve.core.quantity import GIB
from llmserve.kvcache import formula
from llmserve.troubleshooting import catalogue
from tests.support import REPO

PAGE = (REPO / "book" / "troubleshooting.md").read_text(encoding="utf-8")


def _facts() -> dict[str, str]:
    dep = next(o for o in names.base_objects() if o["kind"] == "Deployment")
    c = vllm_container(dep)
    probe = c["startupProbe"]
    n = names.system()
    return {
        "memory limit": str(c["resources"]["limits"]["memory"]),
        "shm": n.shm_size,
        "claim request": n.pvc_request,
        "claim mode": n.pvc_access_modes[0],
        "startup probe": f"{probe['failureThreshold']} × {probe['periodSeconds']} s",
        "max model len": arg_value(c, "--max-model-len"),
        "max position": str(formula.QWEN25_CODER_7B.max_position_embeddings),
        "awq tensors": f"{formula.weight_bytes(formula.QWEN25_CODER_7B_AWQ) / GIB:.2f}",
        "bf16 tensors": f"{formula.weight_bytes(formula.QWEN25_CODER_7B) / GIB:.2f}",
    }


RESTATED = [
    ("memory limit", r"the course's Deployment: (\w+)\)"),
    ("shm", r"`/dev/shm`'s `sizeLimit` \((\w+)\)"),
    ("shm", r"sizeLimit: (\w+)\}` at `/dev/shm`"),
    ("claim request", r"at least the requested capacity \((\w+)\)"),
    ("claim mode", r"a matching access mode \(`(\w+)`\)"),
    ("startup probe", r"the course's Deployment allows (\d+ × \d+ s)"),
    ("max model len", r"the course's Deployment uses (\d+)"),
    ("max position", r"(\d+) for Qwen2\.5-Coder-7B"),
    ("awq tensors", r"(\d+\.\d\d) GiB of tensors instead of"),
    ("bf16 tensors", r"instead of (\d+\.\d\d) GiB in bf16"),
]


@pytest.mark.parametrize("fact,pattern", RESTATED, ids=[f"{f}:{i}" for i, (f, _) in enumerate(RESTATED)])
def test_every_restated_value_is_the_sources(fact, pattern):
    found = re.findall(pattern, PAGE)
    assert found, f"the page no longer says {pattern!r}: update the prose and this table together"
    assert set(found) == {_facts()[fact]}, (fact, found)


def test_what_the_page_used_to_get_wrong_is_gone():
    section = PAGE[PAGE.index("(ts-oomkilled)="):PAGE.index("(ts-kv-cache-max-model-len)=")]
    assert "may reserve CPU swap space" not in PAGE and "no CPU swap space" in section
    assert not re.search(r"\b24Gi\b", PAGE)
    gpu = PAGE[PAGE.index("(ts-quantization-capability)="):PAGE.index("(ts-bf16-capability)=")]
    assert "minimum is 75" in gpu and "change the argument to `--quantization=awq`" not in gpu
    trap = PAGE[PAGE.index("(ts-pvc-default-storageclass)="):PAGE.index("(ts-hostpath-missing)=")]
    assert "NodePath only supports ReadWriteOnce and ReadWriteOncePod" in trap and "ProvisioningFailed" in trap


def test_the_code_the_page_names_exists():
    assert "from llmserve.troubleshooting import catalogue" in PAGE
    assert callable(catalogue.advice) and callable(catalogue.match)
    assert "troubleshooting.explain" not in PAGE and "from llmserve import troubleshooting" not in PAGE
